//! `http-worker`: a small JSON protocol for custom workers (a brand's own
//! enhancement service, or ours). Documented in `docs/http-worker-protocol.md`.
//!
//! `POST {url}/v1/tasks`, optional `Authorization: Bearer <key>`, body
//! `{"capability", "prompt", "seed", "width", "height", "aspect_ratio",
//! "images": [{"role", "media_type", "data_base64"}]}` →
//! `200 {"model", "image": {"media_type", "data_base64"}, "usage_units"?}`.
//! Errors: `429` (with `Retry-After`) and `5xx` are temporary; `422
//! {"refused": "why"}` is a refusal of the content; any other `4xx` is a bad
//! request. The worker is synchronous: one request, one image.
//!
//! Each request carries `Idempotency-Key` (brand, generation, attempt and
//! node). A worker that honours it (answers a repeated key with the first
//! result, without doing the work again) is configured `idempotent`, and its
//! calls may then be retried after a timeout; otherwise a timeout, a dropped
//! connection or an unreadable answer leaves the outcome unknown and the call
//! is not repeated.

use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{
    ApiKey, Capability, InputRole, Output, Provider, ProviderError, Submitted, Task, classify_status,
    transport_error,
};

/// Where a worker is and what it offers.
#[derive(Debug, Clone)]
pub struct HttpWorkerSettings {
    /// The adapter's name in routing and provenance, e.g. `http-worker`.
    pub name: String,
    /// The worker's base URL.
    pub url: String,
    /// What it can do.
    pub capabilities: Vec<Capability>,
    /// An optional bearer key.
    pub key: Option<ApiKey>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether the worker honours `Idempotency-Key`, so a call may be repeated.
    pub idempotent: bool,
}

/// The adapter.
#[derive(Debug, Clone)]
pub struct HttpWorkerProvider {
    settings: HttpWorkerSettings,
    client: reqwest::Client,
}

/// One input image on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireImage {
    /// `product`, `subject`, `reference` or `source` (inputs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<InputRole>,
    /// e.g. `image/png`.
    pub media_type: String,
    /// The bytes, base64 (standard alphabet, padded).
    pub data_base64: String,
}

/// The request body.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireTask {
    /// What is asked.
    pub capability: Capability,
    /// The instruction.
    pub prompt: String,
    /// The seed.
    pub seed: u64,
    /// Output width.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// `W:H`.
    pub aspect_ratio: String,
    /// Inputs.
    pub images: Vec<WireImage>,
}

/// The success body.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireResult {
    /// The worker's model name, for provenance.
    pub model: String,
    /// The image made.
    pub image: WireImage,
    /// Metered units, if the worker meters.
    #[serde(default)]
    pub usage_units: u64,
}

#[derive(Deserialize)]
struct Refusal {
    refused: String,
}

impl HttpWorkerProvider {
    /// An adapter for `settings`.
    pub fn new(settings: HttpWorkerSettings) -> Self {
        let client = super::http_client(settings.timeout);
        HttpWorkerProvider { settings, client }
    }

    async fn call(&self, task: &Task) -> Result<Output, ProviderError> {
        let name = self.settings.name.as_str();
        let b64 = &base64::engine::general_purpose::STANDARD;
        let body = WireTask {
            capability: task.capability,
            prompt: task.prompt.clone(),
            seed: task.seed,
            width: task.width,
            height: task.height,
            aspect_ratio: task.aspect_ratio.clone(),
            images: task
                .images
                .iter()
                .map(|i| WireImage {
                    role: Some(i.role),
                    media_type: i.media_type.clone(),
                    data_base64: b64.encode(&i.bytes),
                })
                .collect(),
        };
        let url = format!("{}/v1/tasks", self.settings.url.trim_end_matches('/'));
        let mut request = self.client.post(&url).header("Idempotency-Key", &task.idempotency_key).json(&body);
        if let Some(key) = &self.settings.key {
            request = request.bearer_auth(key.expose());
        }
        let response = request.send().await.map_err(|e| transport_error(name, &e))?;
        let status = response.status();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
        let text = response.text().await.map_err(|e| transport_error(name, &e))?;
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
            && let Ok(refusal) = serde_json::from_str::<Refusal>(&text)
        {
            return Err(ProviderError::refused(name, format!("the worker refused: {}", refusal.refused)));
        }
        if !status.is_success() {
            return Err(classify_status(name, status, retry_after.as_ref(), &text));
        }
        let result: WireResult = serde_json::from_str(&text)
            .map_err(|e| ProviderError::unknown(name, format!("malformed worker answer: {e}")))?;
        let bytes = b64.decode(result.image.data_base64.as_bytes()).map_err(|e| {
            ProviderError::unknown(name, format!("the worker's image is not valid base64: {e}"))
        })?;
        Ok(Output {
            bytes: bytes.into(),
            media_type: result.image.media_type,
            model: result.model,
            usage_units: result.usage_units,
            seed: Some(task.seed),
        })
    }
}

impl Provider for HttpWorkerProvider {
    fn name(&self) -> &str {
        &self.settings.name
    }

    fn capabilities(&self) -> &[Capability] {
        &self.settings.capabilities
    }

    fn model(&self, _capability: Capability) -> String {
        format!("{}-worker", self.settings.name)
    }

    fn idempotent(&self, _capability: Capability) -> bool {
        self.settings.idempotent
    }

    fn submit<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Submitted, ProviderError>> {
        Box::pin(async move { self.call(task).await.map(Submitted::Done) })
    }
}
