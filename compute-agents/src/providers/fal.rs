//! `fal`: the fal.ai queue API.
//!
//! Submit: `POST {base}/{model}` with `Authorization: Key …` and the model's
//! JSON input; the answer carries `request_id`, `status_url`, `response_url` and
//! `cancel_url`, which are used as given (never rebuilt). Poll: `GET status_url`
//! (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`). Result: `GET response_url`, whose
//! `images[0].url` (or `video.url`) is downloaded at once, because fal's media
//! URLs expire; an expired one is reported as such. Cancel: `PUT cancel_url`
//! (202 accepted; 400 "already completed" means there is nothing left to stop).
//! Input images travel as data URIs, so nothing of a brand's is published.
//!
//! A submission is not idempotent (each one is a paid queue request, and the
//! queue API takes no idempotency key): its request id is recorded by the
//! engine as soon as it is known, and a submission whose answer was lost is
//! an unknown outcome, never resubmitted. Status and result reads are
//! repeated freely.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiKey, Capability, InputRole, Output, Polled, Provider, ProviderError, RemoteJob, Submitted, Task,
    classify_status, transport_error,
};

const NAME: &str = "fal";

/// Where and how to reach fal.
#[derive(Debug, Clone)]
pub struct FalSettings {
    /// The queue's base URL, `https://queue.fal.run` in production.
    pub base_url: String,
    /// The model per capability, e.g. generate → `fal-ai/flux-pro/kontext`.
    pub models: BTreeMap<Capability, String>,
    /// The key (from `FAL_KEY`).
    pub key: ApiKey,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl FalSettings {
    /// The production queue with default models and `key`.
    pub fn new(base_url: impl Into<String>, key: ApiKey) -> Self {
        let models = [
            (Capability::Generate, "fal-ai/flux-pro/kontext"),
            (Capability::Edit, "fal-ai/flux-pro/kontext"),
            (Capability::Enhance, "fal-ai/clarity-upscaler"),
            (Capability::Video, "fal-ai/kling-video/v2/master/image-to-video"),
        ]
        .into_iter()
        .map(|(c, m)| (c, m.to_owned()))
        .collect();
        FalSettings { base_url: base_url.into(), models, key, timeout: Duration::from_secs(30) }
    }
}

/// The fal adapter.
#[derive(Debug, Clone)]
pub struct FalProvider {
    settings: FalSettings,
    capabilities: Vec<Capability>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct QueueAnswer {
    request_id: String,
    status_url: String,
    response_url: String,
    cancel_url: String,
}

#[derive(Deserialize)]
struct StatusAnswer {
    status: String,
}

#[derive(Deserialize)]
struct Media {
    url: String,
    #[serde(default)]
    content_type: Option<String>,
}

#[derive(Deserialize)]
struct ResultAnswer {
    #[serde(default)]
    images: Vec<Media>,
    #[serde(default)]
    video: Option<Media>,
    #[serde(default)]
    seed: Option<u64>,
}

fn data_uri(media_type: &str, bytes: &[u8]) -> String {
    format!("data:{media_type};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl FalProvider {
    /// An adapter for `settings`.
    pub fn new(settings: FalSettings) -> Self {
        let capabilities = settings.models.keys().copied().collect();
        let client = super::http_client(settings.timeout);
        FalProvider { settings, capabilities, client }
    }

    fn auth(&self) -> String {
        format!("Key {}", self.settings.key.expose())
    }

    async fn json_or_error<T: for<'de> Deserialize<'de>>(
        response: Result<reqwest::Response, reqwest::Error>,
        what: &str,
    ) -> Result<T, ProviderError> {
        let response = response.map_err(|e| transport_error(NAME, &e))?;
        let status = response.status();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
        let body = response.text().await.map_err(|e| transport_error(NAME, &e))?;
        if !status.is_success() {
            return Err(classify_status(NAME, status, retry_after.as_ref(), &body));
        }
        serde_json::from_str(&body).map_err(|e| {
            // A malformed answer to a read can be asked again.
            ProviderError::retryable(NAME, format!("malformed {what} answer: {e}"), None)
        })
    }

    async fn download(
        &self,
        media: &Media,
        model: String,
        seed: Option<u64>,
    ) -> Result<Output, ProviderError> {
        let response = self.client.get(&media.url).send().await.map_err(|e| transport_error(NAME, &e))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(ProviderError::invalid(
                NAME,
                format!(
                    "the result media expired before it was downloaded (HTTP {status}); run the generation again"
                ),
            ));
        }
        if !status.is_success() {
            let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
            let body = response.text().await.unwrap_or_default();
            return Err(classify_status(NAME, status, retry_after.as_ref(), &body));
        }
        let header_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| transport_error(NAME, &e))?;
        let media_type =
            media.content_type.clone().or(header_type).unwrap_or_else(|| "application/octet-stream".into());
        Ok(Output { bytes, media_type, model, usage_units: 0, seed })
    }
}

fn job_field<'a>(job: &'a RemoteJob, field: &str) -> Result<&'a str, ProviderError> {
    job.0
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| ProviderError::invalid(NAME, format!("stored job has no {field}")))
}

impl Provider for FalProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &[Capability] {
        &self.capabilities
    }

    fn model(&self, capability: Capability) -> String {
        self.settings.models.get(&capability).cloned().unwrap_or_default()
    }

    fn submit<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Submitted, ProviderError>> {
        Box::pin(async move {
            let model = self.settings.models.get(&task.capability).ok_or_else(|| {
                ProviderError::invalid(NAME, format!("no fal model configured for {}", task.capability))
            })?;
            let main_image = match task.capability {
                Capability::Generate => task.image(InputRole::Product),
                _ => task.image(InputRole::Source),
            };
            let mut input = json!({
                "prompt": task.prompt,
                "seed": task.seed,
                "num_images": 1,
                "image_size": { "width": task.width, "height": task.height },
                "aspect_ratio": task.aspect_ratio,
                "output_format": "png",
            });
            if let Some(image) = main_image {
                input["image_url"] = json!(data_uri(&image.media_type, &image.bytes));
            }
            let references: Vec<String> = task
                .images
                .iter()
                .filter(|i| matches!(i.role, InputRole::Subject | InputRole::Reference))
                .map(|i| data_uri(&i.media_type, &i.bytes))
                .collect();
            if !references.is_empty() {
                input["reference_image_urls"] = json!(references);
            }
            let url = format!("{}/{}", self.settings.base_url.trim_end_matches('/'), model);
            let response =
                self.client.post(&url).header("Authorization", self.auth()).json(&input).send().await;
            let response = response.map_err(|e| transport_error(NAME, &e))?;
            let status = response.status();
            let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
            let body = response.text().await.map_err(|e| transport_error(NAME, &e))?;
            if !status.is_success() {
                return Err(classify_status(NAME, status, retry_after.as_ref(), &body));
            }
            // Accepted but unreadable: the request may be running and paid for, so
            // it is not submitted again blindly.
            let answer: QueueAnswer = serde_json::from_str(&body).map_err(|e| {
                ProviderError::unknown(
                    NAME,
                    format!("malformed answer to a submission (it may have been queued): {e}"),
                )
            })?;
            Ok(Submitted::Pending(RemoteJob(json!({
                "request_id": answer.request_id,
                "status_url": answer.status_url,
                "response_url": answer.response_url,
                "cancel_url": answer.cancel_url,
                "model": model,
            }))))
        })
    }

    fn poll<'a>(&'a self, job: &'a RemoteJob) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        Box::pin(async move {
            let status_url = job_field(job, "status_url")?;
            let model = job_field(job, "model")?.to_owned();
            let response = self.client.get(status_url).header("Authorization", self.auth()).send().await;
            let status: StatusAnswer = Self::json_or_error(response, "status").await?;
            match status.status.as_str() {
                "IN_QUEUE" | "IN_PROGRESS" => Ok(Polled::Pending),
                "COMPLETED" => {
                    let response_url = job_field(job, "response_url")?;
                    let response =
                        self.client.get(response_url).header("Authorization", self.auth()).send().await;
                    let result: ResultAnswer = Self::json_or_error(response, "result").await?;
                    let media =
                        result.images.first().or(result.video.as_ref()).ok_or_else(|| {
                            ProviderError::invalid(NAME, "the result names no image or video")
                        })?;
                    Ok(Polled::Done(self.download(media, model, result.seed).await?))
                }
                other => Err(ProviderError::retryable(NAME, format!("unknown queue status {other:?}"), None)),
            }
        })
    }

    fn cancel<'a>(&'a self, job: &'a RemoteJob) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let cancel_url = job_field(job, "cancel_url")?;
            let response = self
                .client
                .put(cancel_url)
                .header("Authorization", self.auth())
                .send()
                .await
                .map_err(|e| transport_error(NAME, &e))?;
            let status = response.status();
            // 400 means it already completed and 404 that it is gone: either way
            // nothing is left to stop.
            if status.is_success()
                || status == reqwest::StatusCode::BAD_REQUEST
                || status == reqwest::StatusCode::NOT_FOUND
            {
                return Ok(());
            }
            let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
            let body = response.text().await.unwrap_or_default();
            Err(classify_status(NAME, status, retry_after.as_ref(), &body))
        })
    }
}
