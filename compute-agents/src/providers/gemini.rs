//! `gemini`: the Gemini API `generateContent` for images.
//!
//! `POST {base}/v1beta/models/{model}:generateContent` with `x-goog-api-key`,
//! the prompt and input images as `inline_data` parts, and
//! `generationConfig.responseModalities: ["TEXT", "IMAGE"]` with
//! `imageConfig.aspectRatio` (the nearest ratio Gemini supports). An HTTP 200
//! whose candidate ends with `finishReason` `IMAGE_SAFETY`,
//! `PROHIBITED_CONTENT`, `SAFETY`, `NO_IMAGE` (or a `promptFeedback.blockReason`)
//! is a refusal with that reason: retrying the same request cannot help.
//! `usageMetadata.totalTokenCount` is reported as usage for the price table.
//!
//! A call is not idempotent (each one is paid, and the API takes no request
//! id): a timeout after sending or an unreadable 200 is an unknown outcome,
//! which the engine surfaces instead of calling again.

use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiKey, Capability, Output, Provider, ProviderError, Submitted, Task, classify_status, transport_error,
};

const NAME: &str = "gemini";
const CAPABILITIES: &[Capability] = &[Capability::Generate, Capability::Edit];

/// The aspect ratios Gemini's image models accept.
const SUPPORTED_RATIOS: &[(&str, f64)] = &[
    ("1:1", 1.0),
    ("2:3", 2.0 / 3.0),
    ("3:2", 1.5),
    ("3:4", 0.75),
    ("4:3", 4.0 / 3.0),
    ("4:5", 0.8),
    ("5:4", 1.25),
    ("9:16", 9.0 / 16.0),
    ("16:9", 16.0 / 9.0),
    ("21:9", 21.0 / 9.0),
];

/// Where and how to reach Gemini.
#[derive(Debug, Clone)]
pub struct GeminiSettings {
    /// `https://generativelanguage.googleapis.com` in production.
    pub base_url: String,
    /// The image model, e.g. `gemini-2.5-flash-image`.
    pub model: String,
    /// The key (from `GEMINI_API_KEY`).
    pub key: ApiKey,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// The Gemini adapter.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    settings: GeminiSettings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    usage_metadata: Option<Usage>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    #[serde(default)]
    total_token_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    #[serde(default, alias = "inline_data")]
    inline_data: Option<InlineData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData {
    #[serde(alias = "mime_type")]
    mime_type: String,
    data: String,
}

/// The supported ratio nearest to `width` × `height`.
pub fn nearest_ratio(width: u32, height: u32) -> &'static str {
    let wanted = f64::from(width) / f64::from(height.max(1));
    SUPPORTED_RATIOS
        .iter()
        .min_by(|a, b| (a.1 - wanted).abs().total_cmp(&(b.1 - wanted).abs()))
        .map(|(name, _)| *name)
        .unwrap_or("1:1")
}

impl GeminiProvider {
    /// An adapter for `settings`.
    pub fn new(settings: GeminiSettings) -> Self {
        let client = super::http_client(settings.timeout);
        GeminiProvider { settings, client }
    }

    async fn generate(&self, task: &Task) -> Result<Output, ProviderError> {
        let mut parts = vec![json!({ "text": task.prompt })];
        for image in &task.images {
            parts.push(json!({ "inline_data": {
                "mime_type": image.media_type,
                "data": base64::engine::general_purpose::STANDARD.encode(&image.bytes),
            }}));
        }
        let body = json!({
            "contents": [{ "role": "user", "parts": parts }],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "seed": task.seed % (i32::MAX as u64),
                "imageConfig": { "aspectRatio": nearest_ratio(task.width, task.height) },
            },
        });
        let url = format!(
            "{}/v1beta/models/{}:generateContent",
            self.settings.base_url.trim_end_matches('/'),
            self.settings.model
        );
        let response = self
            .client
            .post(&url)
            .header("x-goog-api-key", self.settings.key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(NAME, &e))?;
        let status = response.status();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).cloned();
        let text = response.text().await.map_err(|e| transport_error(NAME, &e))?;
        if !status.is_success() {
            return Err(classify_status(NAME, status, retry_after.as_ref(), &text));
        }
        let answer: Answer = serde_json::from_str(&text)
            .map_err(|e| ProviderError::unknown(NAME, format!("malformed generateContent answer: {e}")))?;
        if let Some(reason) = answer.prompt_feedback.and_then(|f| f.block_reason) {
            return Err(ProviderError::refused(NAME, format!("the prompt was blocked ({reason})")));
        }
        let candidate = answer
            .candidates
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::retryable(NAME, "the answer has no candidate", None))?;
        let image = candidate.content.into_iter().flat_map(|c| c.parts).find_map(|p| p.inline_data);
        match (image, candidate.finish_reason.as_deref()) {
            (
                _,
                Some(
                    reason @ ("IMAGE_SAFETY" | "PROHIBITED_CONTENT" | "SAFETY" | "NO_IMAGE" | "BLOCKLIST"
                    | "SPII"),
                ),
            ) => Err(ProviderError::refused(
                NAME,
                format!("Gemini refused to make the image (finishReason {reason})"),
            )),
            (Some(image), _) => {
                let bytes =
                    base64::engine::general_purpose::STANDARD.decode(image.data.as_bytes()).map_err(|e| {
                        ProviderError::unknown(NAME, format!("the image is not valid base64: {e}"))
                    })?;
                Ok(Output {
                    bytes: bytes.into(),
                    media_type: image.mime_type,
                    model: self.settings.model.clone(),
                    usage_units: answer.usage_metadata.map(|u| u.total_token_count).unwrap_or(0),
                    seed: Some(task.seed),
                })
            }
            (None, reason) => Err(ProviderError::refused(
                NAME,
                format!("Gemini returned no image (finishReason {})", reason.unwrap_or("missing")),
            )),
        }
    }
}

impl Provider for GeminiProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> &[Capability] {
        CAPABILITIES
    }

    fn model(&self, _capability: Capability) -> String {
        self.settings.model.clone()
    }

    fn submit<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Submitted, ProviderError>> {
        Box::pin(async move { self.generate(task).await.map(Submitted::Done) })
    }
}

#[cfg(test)]
mod tests {
    use super::nearest_ratio;

    #[test]
    fn an_output_size_maps_to_the_nearest_ratio_gemini_supports() {
        assert_eq!(nearest_ratio(1600, 2000), "4:5");
        assert_eq!(nearest_ratio(1920, 1080), "16:9");
        assert_eq!(nearest_ratio(1000, 1000), "1:1");
    }
}
