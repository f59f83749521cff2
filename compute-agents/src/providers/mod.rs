//! AI provider adapters behind one trait with declared capabilities.
//!
//! An adapter only speaks its provider's protocol: it turns a [`Task`] into a
//! request, a response into an [`Output`] or a classified [`ProviderError`].
//! Routing, retries with backoff, fallbacks, concurrency and rate limits, the
//! circuit breaker and cost accounting belong to the engine ([`crate::router`]),
//! not to each adapter.
//!
//! Paid calls are made once: every adapter says, per capability, whether its
//! submission is idempotent ([`Provider::idempotent`]: repeating it cannot
//! cost or make anything twice — the local provider, or a worker that honours
//! the `Idempotency-Key` sent with each task). A failure after which the
//! provider may have done the work (a timeout or dropped connection after the
//! request went out, an unreadable success answer) is
//! [`FailureKind::OutcomeUnknown`]; the router retries it only on an
//! idempotent call, and the engine records the intent of every other call
//! before making it, so an unknown outcome is surfaced, never repeated blindly. A provider that works asynchronously (fal's queue)
//! answers a submission with a [`RemoteJob`]; the engine persists it before
//! polling, so a redelivered generation polls the same job instead of paying
//! for a second one. Keys are read from the environment by the caller and never
//! appear in an error, a log line or an event.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use gps_domain::values::ContentHash;
use serde::{Deserialize, Serialize};

pub mod fal;
pub mod gemini;
pub mod http_worker;
pub mod local;

/// What a provider can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Make a new image from inputs and a prompt.
    Generate,
    /// Change an existing image following an instruction.
    Edit,
    /// Improve an image: upscale, clean up, sharpen.
    Enhance,
    /// Describe inputs (text out).
    Analyse,
    /// Make a short clip from an image.
    Video,
}

impl Capability {
    /// The capability's name in configuration and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Generate => "generate",
            Capability::Edit => "edit",
            Capability::Enhance => "enhance",
            Capability::Analyse => "analyse",
            Capability::Video => "video",
        }
    }

    /// Parses a configuration name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Generate, Self::Edit, Self::Enhance, Self::Analyse, Self::Video]
            .into_iter()
            .find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an input image is to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    /// A product photo.
    Product,
    /// A base image of the subject (the model).
    Subject,
    /// A style reference.
    Reference,
    /// The image being edited, enhanced or animated.
    Source,
}

/// One input image with its bytes.
#[derive(Debug, Clone)]
pub struct InputImage {
    /// What it is to the task.
    pub role: InputRole,
    /// Its content address.
    pub hash: ContentHash,
    /// Its media type, e.g. `image/png`.
    pub media_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

/// One unit of provider work.
#[derive(Debug, Clone)]
pub struct Task {
    /// What is asked.
    pub capability: Capability,
    /// The instruction; empty for purely mechanical work.
    pub prompt: String,
    /// The seed: the same task with the same seed gives the same result where
    /// the provider allows it.
    pub seed: u64,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// The aspect ratio `W:H` (some providers take the ratio, not pixels).
    pub aspect_ratio: String,
    /// A solid background colour the style asks for, if any.
    pub background: Option<[u8; 3]>,
    /// The input images.
    pub images: Vec<InputImage>,
    /// Names this unit of work (brand, generation, attempt, node): sent as the
    /// provider's idempotency key where its API takes one.
    pub idempotency_key: String,
}

impl Task {
    /// The first input image with `role`.
    pub fn image(&self, role: InputRole) -> Option<&InputImage> {
        self.images.iter().find(|i| i.role == role)
    }
}

/// What a provider made.
#[derive(Debug, Clone)]
pub struct Output {
    /// The bytes.
    pub bytes: Bytes,
    /// Their media type.
    pub media_type: String,
    /// The model that made them.
    pub model: String,
    /// Metered usage beyond the call itself (tokens for Gemini), for the price table.
    pub usage_units: u64,
    /// The seed the provider reports having used, when it reports one.
    pub seed: Option<u64>,
}

/// A provider's handle on asynchronous work: opaque to the engine, persisted as
/// JSON so a later agent can poll or cancel it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteJob(pub serde_json::Value);

/// The answer to a submission.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Done at once.
    Done(Output),
    /// Accepted; poll the job.
    Pending(RemoteJob),
}

/// The answer to a poll.
#[derive(Debug, Clone)]
pub enum Polled {
    /// Still queued or running.
    Pending,
    /// Finished.
    Done(Output),
}

/// How a provider failure should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Temporary: rate limit, overload, timeout, server error. Retry with
    /// backoff, then fall back to the next provider.
    Retryable {
        /// The wait the provider asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The provider refused the content (a safety filter). Retrying the same
    /// request cannot help.
    Refused,
    /// The request is wrong (4xx, unsupported input). Retrying cannot help.
    Invalid,
    /// The request may have reached the provider and been done (a timeout or
    /// a dropped connection after sending, an unreadable success answer):
    /// repeating it may pay twice.
    OutcomeUnknown,
}

/// A classified provider failure. The message never contains a key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    /// The adapter's name.
    pub provider: String,
    /// How to treat it.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
}

impl ProviderError {
    /// A temporary failure.
    pub fn retryable(provider: &str, message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ProviderError {
            provider: provider.to_owned(),
            kind: FailureKind::Retryable { retry_after },
            message: message.into(),
        }
    }

    /// A refusal of the content.
    pub fn refused(provider: &str, message: impl Into<String>) -> Self {
        ProviderError { provider: provider.to_owned(), kind: FailureKind::Refused, message: message.into() }
    }

    /// A request that cannot succeed as it is.
    pub fn invalid(provider: &str, message: impl Into<String>) -> Self {
        ProviderError { provider: provider.to_owned(), kind: FailureKind::Invalid, message: message.into() }
    }

    /// A failure after which the provider may have done the work.
    pub fn unknown(provider: &str, message: impl Into<String>) -> Self {
        ProviderError {
            provider: provider.to_owned(),
            kind: FailureKind::OutcomeUnknown,
            message: message.into(),
        }
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, FailureKind::Retryable { .. })
    }
}

/// One provider adapter.
pub trait Provider: Send + Sync + 'static {
    /// The adapter's name in configuration, routing and provenance, e.g. `fal`.
    fn name(&self) -> &str;
    /// What it can do.
    fn capabilities(&self) -> &[Capability];
    /// The model used for `capability`.
    fn model(&self, capability: Capability) -> String;
    /// Whether submitting work of `capability` twice is harmless (no second
    /// charge, no second result). Not idempotent unless an adapter says so.
    fn idempotent(&self, capability: Capability) -> bool {
        let _ = capability;
        false
    }
    /// Starts (or does) the work.
    fn submit<'a>(&'a self, task: &'a Task) -> BoxFuture<'a, Result<Submitted, ProviderError>>;
    /// Asks about asynchronous work. Synchronous adapters never return a job,
    /// so they are never polled.
    fn poll<'a>(&'a self, job: &'a RemoteJob) -> BoxFuture<'a, Result<Polled, ProviderError>> {
        let _ = job;
        Box::pin(async move {
            Err(ProviderError::invalid(
                self.name(),
                "this provider works synchronously and has no jobs to poll",
            ))
        })
    }
    /// Cancels asynchronous work where the provider allows it.
    fn cancel<'a>(&'a self, job: &'a RemoteJob) -> BoxFuture<'a, Result<(), ProviderError>> {
        let _ = job;
        Box::pin(async { Ok(()) })
    }
}

/// A secret read from the environment: never printed, never serialized.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key from environment variable `name`, if set and not blank.
    pub fn from_env(name: &str) -> Option<Self> {
        std::env::var(name).ok().filter(|k| !k.trim().is_empty()).map(ApiKey)
    }

    /// The key itself, for a request header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Classifies an HTTP error status of a provider: 429 and 5xx (and 408) are
/// temporary, honouring `Retry-After` seconds; other 4xx are not.
pub(crate) fn classify_status(
    provider: &str,
    status: reqwest::StatusCode,
    retry_after: Option<&reqwest::header::HeaderValue>,
    body: &str,
) -> ProviderError {
    let excerpt: String = body.chars().take(300).collect();
    let retry_after = retry_after
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        ProviderError::retryable(provider, format!("HTTP {status}: {excerpt}"), retry_after)
    } else {
        ProviderError::invalid(provider, format!("HTTP {status}: {excerpt}"))
    }
}

/// Classifies a transport error: a failure to connect is temporary (the
/// request never left); any other (a timeout, a dropped connection, a body
/// that could not be read) leaves the outcome unknown, because the provider
/// may have received the request.
pub(crate) fn transport_error(provider: &str, error: &reqwest::Error) -> ProviderError {
    // reqwest's message may name the URL, never a header, so no key leaks.
    if error.is_connect() {
        return ProviderError::retryable(provider, format!("cannot connect: {error}"), None);
    }
    let what = if error.is_timeout() { "timed out" } else { "request failed" };
    ProviderError::unknown(provider, format!("{what}: {error}"))
}

/// The shared HTTP client of the remote adapters, with a per-request timeout.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
