//! The Export aggregate: approved predictions formatted for one channel and
//! delivered to one destination.
//!
//! An export is requested with the predictions' review states passed in (the
//! export does not load them): only approved predictions can be exported. It
//! snapshots the channel preset, so later edits of the brand's presets do not
//! change what an export meant. A formatting step produces one rendition per
//! prediction; a delivery step marks each rendition delivered with where it went
//! and the checksum of what arrived. The export completes when every prediction's
//! rendition is delivered.
//!
//! Lifecycle: in progress → completed | failed. A failed export whose failure is
//! retryable may be retried; renditions produced and delivered before the failure
//! stay, so a retry resumes rather than starts over. A completed export is final.
//!
//! Destinations hold references to secrets (a name the delivery role resolves
//! from its environment or secret store), never the secrets themselves: events are
//! immutable and widely read, so a secret in one could never be removed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, ExportId, PredictionId, ProductId, RenditionId};
use crate::prediction::ReviewState;
use crate::values::{AssetRef, Channel, ChannelPresetSpec, ContentHash, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most predictions one export may carry.
pub const MAX_PREDICTIONS: usize = 1000;
/// The most prediction ids one rejection message names before summarising.
const NAMED_IN_MESSAGES: usize = 20;

use crate::values::checked_string;

fn check_bucket(input: &str) -> Result<String, String> {
    if !(3..=63).contains(&input.len()) {
        return Err("a bucket name is 3 to 63 characters long".into());
    }
    if let Some(c) =
        input.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')))
    {
        return Err(format!("it contains {c:?}; use lowercase letters, digits, '.' and '-'"));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(input.chars().next()) || !edge_ok(input.chars().last()) || input.contains("..") {
        return Err("it must start and end with a letter or digit and contain no '..'".into());
    }
    Ok(input.to_owned())
}

checked_string!(
    /// An S3 bucket name, e.g. `acme-dam-inbox`.
    S3Bucket, "S3 bucket", check_bucket,
    { "type": "string", "pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "description": "An S3 bucket name." }
);

fn check_prefix(input: &str) -> Result<String, String> {
    if input.len() > 900 {
        return Err(format!("it is {} bytes long; the limit is 900", input.len()));
    }
    if input.starts_with('/') {
        return Err("it must not start with '/'; write e.g. exports/summer/".into());
    }
    if input.split('/').any(|segment| segment == "..") {
        return Err("it must not contain a '..' segment".into());
    }
    if input.chars().any(|c| c.is_control()) {
        return Err("it contains control characters".into());
    }
    Ok(input.to_owned())
}

checked_string!(
    /// A key prefix inside an S3 bucket, e.g. `exports/summer-26/`; empty for the
    /// bucket's root.
    S3Prefix, "S3 key prefix", check_prefix,
    { "type": "string", "maxLength": 900, "description": "A key prefix, without a leading '/'." }
);

fn check_secret_name(input: &str) -> Result<String, String> {
    if input.is_empty() || input.len() > 256 {
        return Err("give the secret's name, 1 to 256 characters".into());
    }
    match input.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))) {
        Some(c) => Err(format!(
            "it contains {c:?}; give the name of a stored secret (letters, digits, '_', '-', '.', '/', ':'), never the secret itself"
        )),
        None => Ok(input.to_owned()),
    }
}

checked_string!(
    /// The name of a secret the delivery role resolves at run time, e.g.
    /// `ACME_DAM_S3` or a secret manager's key — never the secret itself.
    SecretName, "secret name", check_secret_name,
    { "type": "string", "pattern": "^[A-Za-z0-9_./:-]{1,256}$", "description": "The name of a stored secret." }
);

fn check_webhook_url(input: &str) -> Result<String, String> {
    let url = input.trim();
    if url.len() > 2048 {
        return Err(format!("it is {} characters long; the limit is 2048", url.len()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace; percent-encode it".into());
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => ("https", rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => ("http", rest),
        _ => {
            return Err(
                "it must start with https:// (or http:// for an endpoint on a private network)".into()
            );
        }
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(
            "it contains credentials; store them as a secret and give the secret's name instead".into()
        );
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("an IPv6 host needs its closing ']'")?;
        if !after.is_empty() && !after.starts_with(':') {
            return Err("after an IPv6 host ']' only ':port' may follow".into());
        }
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')) {
        return Err("it has no valid host name".into());
    }
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|port| port > 0)
    {
        return Err(format!("port {port:?} is not a number from 1 to 65535"));
    }
    Ok(format!("{scheme}://{rest}"))
}

checked_string!(
    /// An http(s) URL a webhook delivery posts to, without credentials in it.
    WebhookUrl, "webhook URL", check_webhook_url,
    { "type": "string", "pattern": "^https?://[^@/?#\\s]+([/?#]\\S*)?$", "maxLength": 2048, "description": "An http(s) URL." }
);

fn check_file_name(input: &str) -> Result<String, String> {
    if input.is_empty() || input.len() > 255 {
        return Err("a file name is 1 to 255 bytes long".into());
    }
    if input.contains(['/', '\\']) || input.starts_with('.') {
        return Err("a file name has no '/' or '\\' and does not start with '.'".into());
    }
    if input.chars().any(|c| c.is_control()) {
        return Err("it contains control characters".into());
    }
    Ok(input.to_owned())
}

checked_string!(
    /// The file name of a rendition, e.g. `DR-2041_front_1.jpg`.
    FileName, "file name", check_file_name,
    { "type": "string", "pattern": "^[^./\\\\][^/\\\\]{0,254}$", "description": "A file name without a path." }
);

fn check_location(input: &str) -> Result<String, String> {
    if input.is_empty() || input.len() > 2048 {
        return Err("a location is 1 to 2048 characters long".into());
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace; percent-encode it".into());
    }
    Ok(input.to_owned())
}

checked_string!(
    /// Where a delivered rendition can be found, e.g.
    /// `s3://acme-dam-inbox/exports/DR-2041_front_1.jpg`, a webhook's receipt URL or
    /// an entry of the zip download.
    DeliveryLocation, "delivery location", check_location,
    { "type": "string", "pattern": "^\\S{1,2048}$", "description": "Where a rendition was delivered." }
);

/// Where an export's renditions go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportDestination {
    /// A zip file the brand downloads from GPS.
    ZipDownload,
    /// Objects written to an S3-compatible bucket.
    S3 {
        /// The bucket.
        bucket: S3Bucket,
        /// The key prefix inside it.
        prefix: S3Prefix,
        /// The name of the stored credentials for the bucket.
        credentials: SecretName,
    },
    /// Each rendition posted to an HTTP endpoint.
    Webhook {
        /// Where to post.
        url: WebhookUrl,
        /// The name of the stored secret that signs the requests.
        secret: SecretName,
    },
}

/// Where an export stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Renditions are being produced and delivered (also after a retry).
    InProgress,
    /// Every rendition was delivered.
    Completed,
    /// Stopped by an error; see whether it is retryable.
    Failed,
}

/// A prediction offered for export, with its review state as the command path
/// read it from the Prediction aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCandidate {
    /// The prediction.
    pub prediction_id: PredictionId,
    /// Its review state now.
    pub review_state: ReviewState,
}

/// Export commands.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportCommand {
    /// Exports approved predictions to one destination, formatted for one channel.
    RequestExport {
        /// The new export's id.
        export_id: ExportId,
        /// The owning brand.
        brand_id: BrandId,
        /// The predictions, with their current review states.
        predictions: Vec<ExportCandidate>,
        /// The channel preset's name.
        channel: Channel,
        /// The channel preset as it is now.
        preset: ChannelPresetSpec,
        /// Where the renditions go.
        destination: ExportDestination,
    },
    /// A formatting step produced the rendition of one prediction.
    ProduceRendition {
        /// The rendition's id.
        rendition_id: RenditionId,
        /// The prediction it renders.
        prediction_id: PredictionId,
        /// The stored rendition.
        asset: AssetRef,
        /// Its file name at the destination.
        file_name: FileName,
        /// The sha256 of its bytes; must match the asset's content hash.
        checksum: ContentHash,
        /// The products it shows (from the prediction's generation), so
        /// deliveries can be tracked per product.
        products: Vec<ProductId>,
    },
    /// A delivery step delivered one rendition.
    MarkRenditionDelivered {
        /// The rendition delivered.
        rendition_id: RenditionId,
        /// Where it is now.
        location: DeliveryLocation,
        /// The sha256 of the bytes the destination received.
        checksum: ContentHash,
    },
    /// The export failed.
    FailExport {
        /// What went wrong, in words a person understands.
        reason: Text,
        /// Whether a retry may succeed.
        retryable: bool,
    },
    /// Records one attempt to reach the destination (a webhook call, an
    /// upload), successful or not, so every attempt is visible.
    RecordDeliveryAttempt {
        /// The attempt's number within the export, from 1; recording the same
        /// number again records nothing.
        number: u32,
        /// Whether the destination accepted the delivery.
        succeeded: bool,
        /// What happened, e.g. `HTTP 503` or `accepted (HTTP 200)`.
        detail: Text,
        /// When the next attempt is due, in seconds, after a failure.
        retry_in_seconds: Option<u64>,
    },
    /// Every rendition was delivered: the export is done.
    CompleteExport,
    /// Runs a failed, retryable export again, keeping what was already delivered.
    RetryExport {
        /// The new attempt's number: the current attempt plus one.
        attempt: u32,
    },
}

/// An export was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportRequested {
    /// The export's id.
    pub export_id: ExportId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// The predictions to export; all were approved when it was requested.
    pub prediction_ids: Vec<PredictionId>,
    /// The channel preset's name.
    pub channel: Channel,
    /// The channel preset as it was when the export was requested.
    pub preset: ChannelPresetSpec,
    /// Where the renditions go.
    pub destination: ExportDestination,
}

/// A rendition of one prediction was produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportRenditionProduced {
    /// The rendition's id.
    pub rendition_id: RenditionId,
    /// The prediction it renders.
    pub prediction_id: PredictionId,
    /// The stored rendition.
    pub asset: AssetRef,
    /// Its file name at the destination.
    pub file_name: FileName,
    /// The sha256 of its bytes.
    pub checksum: ContentHash,
    /// The products it shows; absent in renditions recorded before products
    /// travelled with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ProductId>,
}

/// One attempt to reach the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportDeliveryAttempted {
    /// The attempt's number within the export, from 1.
    pub number: u32,
    /// Whether the destination accepted the delivery.
    pub succeeded: bool,
    /// What happened.
    pub detail: Text,
    /// When the next attempt is due, in seconds, after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<u64>,
}

/// A rendition was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportRenditionDelivered {
    /// The rendition delivered.
    pub rendition_id: RenditionId,
    /// Where it is now.
    pub location: DeliveryLocation,
    /// The sha256 of the bytes the destination received.
    pub checksum: ContentHash,
}

/// The export failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportFailed {
    /// What went wrong.
    pub reason: Text,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// The attempt that failed.
    pub attempt: u32,
}

/// Every rendition was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportCompleted {
    /// How many renditions were delivered.
    pub delivered: u32,
}

/// A failed export was retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportRetried {
    /// The new attempt's number.
    pub attempt: u32,
}

crate::domain_events! {
    aggregate: Export,
    /// Export events.
    pub enum ExportEvent {
        /// See [`ExportRequested`].
        Requested(ExportRequested) = ("export.requested", 1),
        /// See [`ExportRenditionProduced`].
        RenditionProduced(ExportRenditionProduced) = ("export.rendition_produced", 1),
        /// See [`ExportRenditionDelivered`].
        RenditionDelivered(ExportRenditionDelivered) = ("export.rendition_delivered", 1),
        /// See [`ExportFailed`].
        Failed(ExportFailed) = ("export.failed", 1),
        /// See [`ExportCompleted`].
        Completed(ExportCompleted) = ("export.completed", 1),
        /// See [`ExportRetried`].
        Retried(ExportRetried) = ("export.retried", 1),
        /// See [`ExportDeliveryAttempted`].
        DeliveryAttempted(ExportDeliveryAttempted) = ("export.delivery_attempted", 1),
    }
}

/// A rendition as the state keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rendition {
    /// What was produced.
    pub produced: ExportRenditionProduced,
    /// Where it went, once delivered.
    pub delivered_to: Option<DeliveryLocation>,
}

/// The state of an export, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Export {
    request: Option<ExportRequested>,
    status: Option<ExportStatus>,
    attempt: u32,
    renditions: BTreeMap<RenditionId, Rendition>,
    failure: Option<ExportFailed>,
    #[serde(default)]
    delivery_attempts: u32,
}

impl Export {
    /// The status, or `None` if the export was never requested.
    pub fn status(&self) -> Option<ExportStatus> {
        self.status
    }

    /// The request, once made.
    pub fn request(&self) -> Option<&ExportRequested> {
        self.request.as_ref()
    }

    /// The current attempt (1 for the first; 0 before the request).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The renditions by id.
    pub fn renditions(&self) -> &BTreeMap<RenditionId, Rendition> {
        &self.renditions
    }

    /// How many delivery attempts were recorded (the last one's number).
    pub fn delivery_attempts(&self) -> u32 {
        self.delivery_attempts
    }

    /// The last failure, while the export is failed.
    pub fn failure(&self) -> Option<&ExportFailed> {
        self.failure.as_ref()
    }

    fn existing(&self) -> Result<(&ExportRequested, ExportStatus), DomainError> {
        match (&self.request, self.status) {
            (Some(request), Some(status)) => Ok((request, status)),
            _ => Err(DomainError::NotFound { kind: AggregateKind::Export }),
        }
    }

    /// The export as long as it is in progress; otherwise why it refuses `action`.
    fn in_progress(&self, action: &str) -> Result<&ExportRequested, DomainError> {
        let (request, status) = self.existing()?;
        let id = &request.export_id;
        match (status, &self.failure) {
            (ExportStatus::InProgress, _) => Ok(request),
            (ExportStatus::Completed, _) => Err(DomainError::invalid_state(format!(
                "export {id} is already completed, so it cannot {action}; request a new export to deliver again"
            ))),
            (ExportStatus::Failed, Some(failure)) if failure.retryable => Err(DomainError::invalid_state(
                format!("export {id} failed ({}), so it cannot {action}; retry it first", failure.reason),
            )),
            (ExportStatus::Failed, failure) => Err(DomainError::invalid_state(format!(
                "export {id} failed{} and cannot be retried, so it cannot {action}; request a new export instead",
                failure.as_ref().map(|f| format!(" ({})", f.reason)).unwrap_or_default()
            ))),
        }
    }
}

/// Names up to [`NAMED_IN_MESSAGES`] items, then says how many more there are.
fn name_some(items: &[String]) -> String {
    let shown = items.iter().take(NAMED_IN_MESSAGES).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(NAMED_IN_MESSAGES) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn check_candidates(candidates: &[ExportCandidate]) -> Result<(), DomainError> {
    if candidates.is_empty() {
        return Err(DomainError::rule(
            "an export needs at least one approved prediction; choose some to export",
        ));
    }
    if candidates.len() > MAX_PREDICTIONS {
        return Err(DomainError::rule(format!(
            "an export carries at most {MAX_PREDICTIONS} predictions; {} were given — split them into several exports",
            candidates.len()
        )));
    }
    let mut twice: Vec<String> = candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| candidates[..*i].iter().any(|earlier| earlier.prediction_id == c.prediction_id))
        .map(|(_, c)| c.prediction_id.to_string())
        .collect();
    twice.dedup();
    if !twice.is_empty() {
        return Err(DomainError::rule(format!(
            "predictions listed more than once: {}; list each prediction once",
            name_some(&twice)
        )));
    }
    let not_approved: Vec<&ExportCandidate> =
        candidates.iter().filter(|c| c.review_state != ReviewState::Approved).collect();
    if !not_approved.is_empty() {
        let named: Vec<String> =
            not_approved.iter().map(|c| format!("{} ({})", c.prediction_id, c.review_state)).collect();
        let any_rejected = not_approved.iter().any(|c| c.review_state == ReviewState::Rejected);
        let any_open = not_approved.iter().any(|c| c.review_state != ReviewState::Rejected);
        let mut message =
            format!("only approved predictions can be exported; not approved: {}.", name_some(&named));
        if any_rejected {
            message.push_str(" A rejected prediction cannot be exported: leave it out.");
        }
        if any_open {
            message.push_str(" Approve the others first or leave them out.");
        }
        return Err(DomainError::rule(message));
    }
    Ok(())
}

impl Aggregate for Export {
    const KIND: AggregateKind = AggregateKind::Export;
    const STATE_VERSION: u32 = 1;
    type Command = ExportCommand;
    type Event = ExportEvent;

    fn decide(&self, command: &ExportCommand) -> Result<Vec<ExportEvent>, DomainError> {
        match command {
            ExportCommand::RequestExport {
                export_id,
                brand_id,
                predictions,
                channel,
                preset,
                destination,
            } => {
                if self.request.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Export,
                        id: export_id.to_string(),
                    });
                }
                check_candidates(predictions)?;
                preset.validate().map_err(|invalid| {
                    DomainError::rule(format!("channel preset {channel} cannot be used: {invalid}"))
                })?;
                Ok(vec![
                    ExportRequested {
                        export_id: export_id.clone(),
                        brand_id: brand_id.clone(),
                        prediction_ids: predictions.iter().map(|c| c.prediction_id.clone()).collect(),
                        channel: channel.clone(),
                        preset: preset.clone(),
                        destination: destination.clone(),
                    }
                    .into(),
                ])
            }
            ExportCommand::ProduceRendition {
                rendition_id,
                prediction_id,
                asset,
                file_name,
                checksum,
                products,
            } => {
                let produced = ExportRenditionProduced {
                    rendition_id: rendition_id.clone(),
                    prediction_id: prediction_id.clone(),
                    asset: asset.clone(),
                    file_name: file_name.clone(),
                    checksum: checksum.clone(),
                    products: products.clone(),
                };
                // A redelivered formatting step reports the same rendition again.
                if self.renditions.get(rendition_id).is_some_and(|r| r.produced == produced) {
                    return Ok(vec![]);
                }
                let request = self.in_progress("produce renditions")?;
                let id = &request.export_id;
                if !request.prediction_ids.contains(prediction_id) {
                    return Err(DomainError::rule(format!(
                        "prediction {prediction_id} is not part of export {id}; only its {} predictions get renditions",
                        request.prediction_ids.len()
                    )));
                }
                if *checksum != asset.hash {
                    return Err(DomainError::rule(format!(
                        "the checksum {checksum} of rendition {rendition_id} does not match its stored content {}; compute it from the stored bytes",
                        asset.hash
                    )));
                }
                if let Some(existing) = self.renditions.get(rendition_id) {
                    return Err(DomainError::rule(format!(
                        "rendition {rendition_id} already exists for prediction {}; give a new rendition its own id",
                        existing.produced.prediction_id
                    )));
                }
                for (other_id, other) in &self.renditions {
                    if other.produced.prediction_id == *prediction_id {
                        return Err(DomainError::rule(format!(
                            "prediction {prediction_id} already has rendition {other_id}; an export makes one rendition per prediction"
                        )));
                    }
                    if other.produced.file_name == *file_name {
                        return Err(DomainError::rule(format!(
                            "file name {file_name} is already used by rendition {other_id}; file names must be unique within an export — check the preset's naming pattern"
                        )));
                    }
                }
                Ok(vec![produced.into()])
            }
            ExportCommand::MarkRenditionDelivered { rendition_id, location, checksum } => {
                let existing = self.renditions.get(rendition_id);
                // A redelivered delivery report changes nothing.
                if existing.is_some_and(|r| {
                    r.delivered_to.as_ref() == Some(location) && r.produced.checksum == *checksum
                }) {
                    return Ok(vec![]);
                }
                let request = self.in_progress("deliver renditions")?;
                let id = &request.export_id;
                let rendition = existing.ok_or_else(|| {
                    DomainError::rule(format!(
                        "export {id} has no rendition {rendition_id}; produce it before delivering it"
                    ))
                })?;
                if *checksum != rendition.produced.checksum {
                    return Err(DomainError::rule(format!(
                        "the destination received {checksum} but rendition {rendition_id} is {}; the bytes changed on the way — deliver it again",
                        rendition.produced.checksum
                    )));
                }
                if let Some(earlier) = &rendition.delivered_to {
                    return Err(DomainError::rule(format!(
                        "rendition {rendition_id} was already delivered to {earlier}; an export delivers each rendition once"
                    )));
                }
                Ok(vec![
                    ExportRenditionDelivered {
                        rendition_id: rendition_id.clone(),
                        location: location.clone(),
                        checksum: checksum.clone(),
                    }
                    .into(),
                ])
            }
            ExportCommand::FailExport { reason, retryable } => {
                let (request, status) = self.existing()?;
                match status {
                    ExportStatus::InProgress => Ok(vec![
                        ExportFailed { reason: reason.clone(), retryable: *retryable, attempt: self.attempt }
                            .into(),
                    ]),
                    ExportStatus::Failed => Ok(vec![]),
                    ExportStatus::Completed => Err(DomainError::invalid_state(format!(
                        "export {} is already completed, so it cannot fail; request a new export if a delivery is missing",
                        request.export_id
                    ))),
                }
            }
            ExportCommand::RecordDeliveryAttempt { number, succeeded, detail, retry_in_seconds } => {
                // A redelivered worker reports an attempt it already recorded.
                if *number <= self.delivery_attempts {
                    return Ok(vec![]);
                }
                self.in_progress("record delivery attempts")?;
                if *number != self.delivery_attempts + 1 {
                    return Err(DomainError::rule(format!(
                        "the next delivery attempt is number {}, not {number}",
                        self.delivery_attempts + 1
                    )));
                }
                Ok(vec![
                    ExportDeliveryAttempted {
                        number: *number,
                        succeeded: *succeeded,
                        detail: detail.clone(),
                        retry_in_seconds: if *succeeded { None } else { *retry_in_seconds },
                    }
                    .into(),
                ])
            }
            ExportCommand::CompleteExport => {
                if self.status == Some(ExportStatus::Completed) {
                    return Ok(vec![]);
                }
                let request = self.in_progress("complete")?;
                let delivered: Vec<&PredictionId> = self
                    .renditions
                    .values()
                    .filter(|r| r.delivered_to.is_some())
                    .map(|r| &r.produced.prediction_id)
                    .collect();
                let missing: Vec<String> = request
                    .prediction_ids
                    .iter()
                    .filter(|p| !delivered.contains(p))
                    .map(ToString::to_string)
                    .collect();
                if !missing.is_empty() {
                    return Err(DomainError::invalid_state(format!(
                        "export {} is not finished: no delivered rendition yet for {}; deliver them or fail the export",
                        request.export_id,
                        name_some(&missing)
                    )));
                }
                let delivered = u32::try_from(delivered.len()).unwrap_or(u32::MAX);
                Ok(vec![ExportCompleted { delivered }.into()])
            }
            ExportCommand::RetryExport { attempt } => {
                let (request, status) = self.existing()?;
                let id = &request.export_id;
                let next = self.attempt + 1;
                match (status, &self.failure) {
                    (ExportStatus::Failed, Some(failure)) if !failure.retryable => {
                        Err(DomainError::invalid_state(format!(
                            "export {id} failed with an error a retry cannot fix ({}); request a new export instead",
                            failure.reason
                        )))
                    }
                    (ExportStatus::Failed, _) if *attempt == next => {
                        Ok(vec![ExportRetried { attempt: next }.into()])
                    }
                    (ExportStatus::Failed, _) => Err(DomainError::rule(format!(
                        "the next attempt of export {id} is {next}, not {attempt}"
                    ))),
                    (ExportStatus::InProgress, _) if *attempt == self.attempt && self.attempt > 1 => {
                        Ok(vec![])
                    }
                    (ExportStatus::InProgress, _) => Err(DomainError::invalid_state(format!(
                        "export {id} is in progress, not failed; only a failed export can be retried"
                    ))),
                    (ExportStatus::Completed, _) => Err(DomainError::invalid_state(format!(
                        "export {id} is already completed, so there is nothing to retry; request a new export to deliver again"
                    ))),
                }
            }
        }
    }

    fn evolve(mut self, event: &ExportEvent) -> Self {
        match event {
            ExportEvent::Requested(requested) => {
                self.request = Some(requested.clone());
                self.status = Some(ExportStatus::InProgress);
                self.attempt = 1;
            }
            ExportEvent::RenditionProduced(produced) => {
                self.renditions.insert(
                    produced.rendition_id.clone(),
                    Rendition { produced: produced.clone(), delivered_to: None },
                );
            }
            ExportEvent::RenditionDelivered(delivered) => {
                if let Some(rendition) = self.renditions.get_mut(&delivered.rendition_id) {
                    rendition.delivered_to = Some(delivered.location.clone());
                }
            }
            ExportEvent::Failed(failed) => {
                self.status = Some(ExportStatus::Failed);
                self.failure = Some(failed.clone());
            }
            ExportEvent::Completed(_) => self.status = Some(ExportStatus::Completed),
            ExportEvent::Retried(retried) => {
                self.status = Some(ExportStatus::InProgress);
                self.attempt = retried.attempt;
                self.failure = None;
            }
            ExportEvent::DeliveryAttempted(attempted) => self.delivery_attempts = attempted.number,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{asset, given, preset_spec as preset};

    fn prediction(id: &str) -> PredictionId {
        PredictionId::parse(id).expect("id")
    }

    fn rendition(id: &str) -> RenditionId {
        RenditionId::parse(id).expect("id")
    }

    fn text(s: &str) -> Text {
        Text::parse(s).expect("text")
    }

    fn s3() -> ExportDestination {
        ExportDestination::S3 {
            bucket: S3Bucket::parse("acme-dam-inbox").expect("bucket"),
            prefix: S3Prefix::parse("exports/summer/").expect("prefix"),
            credentials: SecretName::parse("ACME_DAM_S3").expect("secret"),
        }
    }

    fn approved(id: &str) -> ExportCandidate {
        ExportCandidate { prediction_id: prediction(id), review_state: ReviewState::Approved }
    }

    fn request_with(predictions: Vec<ExportCandidate>) -> ExportCommand {
        ExportCommand::RequestExport {
            export_id: ExportId::parse("e1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            predictions,
            channel: Channel::parse("marketplace-main").expect("channel"),
            preset: preset(),
            destination: s3(),
        }
    }

    fn request() -> ExportCommand {
        request_with(vec![approved("pr1"), approved("pr2")])
    }

    fn requested() -> ExportEvent {
        ExportRequested {
            export_id: ExportId::parse("e1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            prediction_ids: vec![prediction("pr1"), prediction("pr2")],
            channel: Channel::parse("marketplace-main").expect("channel"),
            preset: preset(),
            destination: s3(),
        }
        .into()
    }

    fn produced(rendition_id: &str, prediction_id: &str, seed: u8) -> ExportRenditionProduced {
        ExportRenditionProduced {
            rendition_id: rendition(rendition_id),
            prediction_id: prediction(prediction_id),
            asset: asset(seed),
            file_name: FileName::parse(format!("{prediction_id}.jpg")).expect("file name"),
            checksum: asset(seed).hash,
            products: vec![ProductId::parse("dress-1").expect("id")],
        }
    }

    fn produce(rendition_id: &str, prediction_id: &str, seed: u8) -> ExportCommand {
        let p = produced(rendition_id, prediction_id, seed);
        ExportCommand::ProduceRendition {
            rendition_id: p.rendition_id,
            prediction_id: p.prediction_id,
            asset: p.asset,
            file_name: p.file_name,
            checksum: p.checksum,
            products: p.products,
        }
    }

    fn location(key: &str) -> DeliveryLocation {
        DeliveryLocation::parse(format!("s3://acme-dam-inbox/exports/summer/{key}")).expect("location")
    }

    fn delivered(rendition_id: &str, seed: u8) -> ExportEvent {
        ExportRenditionDelivered {
            rendition_id: rendition(rendition_id),
            location: location(rendition_id),
            checksum: asset(seed).hash,
        }
        .into()
    }

    fn deliver(rendition_id: &str, seed: u8) -> ExportCommand {
        ExportCommand::MarkRenditionDelivered {
            rendition_id: rendition(rendition_id),
            location: location(rendition_id),
            checksum: asset(seed).hash,
        }
    }

    fn failed(retryable: bool, attempt: u32) -> ExportEvent {
        ExportFailed { reason: text("the bucket refused the upload"), retryable, attempt }.into()
    }

    fn fail(retryable: bool) -> ExportCommand {
        ExportCommand::FailExport { reason: text("the bucket refused the upload"), retryable }
    }

    fn all_delivered() -> Vec<ExportEvent> {
        vec![
            requested(),
            produced("r1", "pr1", 1).into(),
            produced("r2", "pr2", 2).into(),
            delivered("r1", 1),
            delivered("r2", 2),
        ]
    }

    fn with(mut history: Vec<ExportEvent>, more: ExportEvent) -> Vec<ExportEvent> {
        history.push(more);
        history
    }

    fn rule_containing(needle: &'static str) -> impl Fn(&DomainError) -> bool {
        move |e| matches!(e, DomainError::RuleViolated(m) if m.contains(needle))
    }

    fn invalid_state_containing(needle: &'static str) -> impl Fn(&DomainError) -> bool {
        move |e| matches!(e, DomainError::InvalidState(m) if m.contains(needle))
    }

    // Requesting

    #[test]
    fn requesting_an_export_of_approved_predictions_records_export_requested() {
        given::<Export>(&[]).when(&request()).then(&[requested()]);
    }

    #[test]
    fn requesting_an_export_that_exists_is_rejected() {
        given::<Export>(&[requested()])
            .when(&request())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn requesting_an_export_of_nothing_is_rejected() {
        given::<Export>(&[]).when(&request_with(vec![])).then_rejected(rule_containing("at least one"));
    }

    #[test]
    fn requesting_more_than_a_thousand_predictions_is_rejected() {
        let many = (0..=MAX_PREDICTIONS).map(|i| approved(&format!("pr{i}"))).collect();
        given::<Export>(&[]).when(&request_with(many)).then_rejected(rule_containing("split them"));
    }

    #[test]
    fn requesting_a_prediction_twice_is_rejected() {
        given::<Export>(&[])
            .when(&request_with(vec![approved("pr1"), approved("pr2"), approved("pr1")]))
            .then_rejected(rule_containing("more than once: pr1;"));
    }

    #[test]
    fn a_rejected_prediction_cannot_be_exported_and_the_message_names_it() {
        let candidates = vec![
            approved("pr1"),
            ExportCandidate { prediction_id: prediction("pr2"), review_state: ReviewState::Rejected },
            ExportCandidate { prediction_id: prediction("pr3"), review_state: ReviewState::Pending },
        ];
        given::<Export>(&[]).when(&request_with(candidates)).then_rejected(|e| {
            matches!(e, DomainError::RuleViolated(m)
                if m.contains("A rejected prediction cannot be exported")
                    && m.contains("pr2 (rejected)")
                    && m.contains("pr3 (pending)")
                    && !m.contains("pr1"))
        });
    }

    #[test]
    fn a_pending_prediction_cannot_be_exported_until_approved() {
        let candidates = vec![ExportCandidate {
            prediction_id: prediction("pr1"),
            review_state: ReviewState::RevisionRequested,
        }];
        given::<Export>(&[])
            .when(&request_with(candidates))
            .then_rejected(rule_containing("pr1 (revision requested)"));
    }

    #[test]
    fn requesting_an_export_with_an_invalid_channel_preset_is_rejected() {
        let ExportCommand::RequestExport { export_id, brand_id, predictions, channel, destination, .. } =
            request()
        else {
            unreachable!()
        };
        let command = ExportCommand::RequestExport {
            export_id,
            brand_id,
            predictions,
            channel,
            preset: ChannelPresetSpec { naming_pattern: "{colour}.jpg".into(), ..preset() },
            destination,
        };
        given::<Export>(&[]).when(&command).then_rejected(rule_containing("marketplace-main cannot be used"));
    }

    #[test]
    fn destinations_hold_secret_names_and_clean_urls_only() {
        assert!(SecretName::parse("ACME_DAM_S3").is_ok());
        assert!(SecretName::parse("arn:aws:secretsmanager:eu-west-1:123:secret/dam").is_ok());
        assert!(SecretName::parse("-----BEGIN PRIVATE KEY-----\nMII").is_err());
        assert!(SecretName::parse("").is_err());
        assert_eq!(
            WebhookUrl::parse("HTTPS://dam.acme.example:8443/hooks/gps?x=1").map(String::from),
            Ok("https://dam.acme.example:8443/hooks/gps?x=1".to_owned())
        );
        assert!(WebhookUrl::parse("http://[::1]:8080/hook").is_ok());
        assert!(WebhookUrl::parse("http://[::1]x/hook").is_err());
        for bad in [
            "ftp://dam.example/hook",
            "https://user:pass@dam.example/hook",
            "https:///hook",
            "https://dam.example:0/hook",
            "https://dam.example:99999/hook",
            "https://dam example/hook",
            "dam.example/hook",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(S3Bucket::parse("acme.dam-inbox").is_ok());
        for bad in ["ab", "Acme", "-acme", "acme..dam", "acme_dam"] {
            assert!(S3Bucket::parse(bad).is_err(), "{bad}");
        }
        assert!(S3Prefix::parse("").is_ok());
        for bad in ["/exports", "exports/../other"] {
            assert!(S3Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_destination_round_trips_through_json_with_its_kind() {
        let encoded = serde_json::to_value(s3()).expect("encodes");
        assert_eq!(encoded["kind"], "s3");
        assert_eq!(encoded["credentials"], "ACME_DAM_S3");
        assert_eq!(serde_json::from_value::<ExportDestination>(encoded).expect("decodes"), s3());
        let zip = serde_json::to_value(ExportDestination::ZipDownload).expect("encodes");
        assert_eq!(zip, serde_json::json!({ "kind": "zip_download" }));
    }

    // Renditions

    #[test]
    fn producing_a_rendition_of_an_exported_prediction_records_it() {
        given::<Export>(&[requested()])
            .when(&produce("r1", "pr1", 1))
            .then(&[produced("r1", "pr1", 1).into()]);
    }

    #[test]
    fn producing_the_same_rendition_again_records_nothing() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&produce("r1", "pr1", 1))
            .then(&[]);
    }

    #[test]
    fn producing_a_rendition_of_a_prediction_outside_the_export_is_rejected() {
        given::<Export>(&[requested()])
            .when(&produce("r1", "pr9", 1))
            .then_rejected(rule_containing("not part of export e1"));
    }

    #[test]
    fn producing_a_second_rendition_of_a_prediction_is_rejected() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&produce("r2", "pr1", 3))
            .then_rejected(rule_containing("one rendition per prediction"));
    }

    #[test]
    fn producing_another_rendition_under_a_taken_rendition_id_is_rejected() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&produce("r1", "pr2", 2))
            .then_rejected(rule_containing("its own id"));
    }

    #[test]
    fn producing_a_rendition_with_a_file_name_already_used_is_rejected() {
        let mut command = produce("r2", "pr2", 2);
        if let ExportCommand::ProduceRendition { file_name, .. } = &mut command {
            *file_name = FileName::parse("pr1.jpg").expect("file name");
        }
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&command)
            .then_rejected(rule_containing("unique within an export"));
    }

    #[test]
    fn producing_a_rendition_whose_checksum_does_not_match_its_content_is_rejected() {
        let mut command = produce("r1", "pr1", 1);
        if let ExportCommand::ProduceRendition { checksum, .. } = &mut command {
            *checksum = asset(7).hash;
        }
        given::<Export>(&[requested()]).when(&command).then_rejected(rule_containing("does not match"));
    }

    #[test]
    fn producing_a_rendition_for_a_failed_export_is_rejected_until_it_is_retried() {
        given::<Export>(&[requested(), failed(true, 1)])
            .when(&produce("r1", "pr1", 1))
            .then_rejected(invalid_state_containing("retry it first"));
    }

    #[test]
    fn producing_a_rendition_for_a_completed_export_is_rejected() {
        given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into()))
            .when(&produce("r3", "pr1", 3))
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn producing_a_rendition_for_an_export_that_was_never_requested_is_rejected() {
        given::<Export>(&[])
            .when(&produce("r1", "pr1", 1))
            .then_rejected(|e| matches!(e, DomainError::NotFound { kind: AggregateKind::Export }));
    }

    #[test]
    fn a_file_name_has_no_path() {
        assert!(FileName::parse("DR-2041_front_1.jpg").is_ok());
        for bad in ["", "../x.jpg", "a/b.jpg", "a\\b.jpg", ".hidden"] {
            assert!(FileName::parse(bad).is_err(), "{bad}");
        }
    }

    // Delivery

    #[test]
    fn delivering_a_produced_rendition_records_where_it_went() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&deliver("r1", 1))
            .then(&[delivered("r1", 1)]);
    }

    #[test]
    fn delivering_the_same_rendition_to_the_same_place_again_records_nothing() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into(), delivered("r1", 1)])
            .when(&deliver("r1", 1))
            .then(&[]);
    }

    #[test]
    fn delivering_a_rendition_again_elsewhere_is_rejected() {
        let command = ExportCommand::MarkRenditionDelivered {
            rendition_id: rendition("r1"),
            location: location("elsewhere.jpg"),
            checksum: asset(1).hash,
        };
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into(), delivered("r1", 1)])
            .when(&command)
            .then_rejected(rule_containing("already delivered"));
    }

    #[test]
    fn delivering_a_rendition_that_was_never_produced_is_rejected() {
        given::<Export>(&[requested()]).when(&deliver("r1", 1)).then_rejected(rule_containing("produce it"));
    }

    #[test]
    fn delivering_bytes_that_differ_from_the_rendition_is_rejected() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into()])
            .when(&deliver("r1", 5))
            .then_rejected(rule_containing("deliver it again"));
    }

    #[test]
    fn delivering_for_a_failed_export_is_rejected() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into(), failed(false, 1)])
            .when(&deliver("r1", 1))
            .then_rejected(invalid_state_containing("request a new export"));
    }

    #[test]
    fn delivering_for_an_export_that_was_never_requested_is_rejected() {
        given::<Export>(&[])
            .when(&deliver("r1", 1))
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Failing

    #[test]
    fn failing_an_export_records_the_reason_and_whether_to_retry() {
        given::<Export>(&[requested()]).when(&fail(true)).then(&[failed(true, 1)]);
    }

    #[test]
    fn failing_a_failed_export_records_nothing() {
        given::<Export>(&[requested(), failed(true, 1)]).when(&fail(false)).then(&[]);
    }

    #[test]
    fn failing_a_completed_export_is_rejected() {
        given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into()))
            .when(&fail(true))
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn failing_an_export_that_was_never_requested_is_rejected() {
        given::<Export>(&[]).when(&fail(true)).then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Completing

    #[test]
    fn completing_an_export_whose_renditions_are_all_delivered_records_completed() {
        given::<Export>(&all_delivered())
            .when(&ExportCommand::CompleteExport)
            .then(&[ExportCompleted { delivered: 2 }.into()]);
    }

    #[test]
    fn completing_a_completed_export_records_nothing() {
        given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into()))
            .when(&ExportCommand::CompleteExport)
            .then(&[]);
    }

    #[test]
    fn completing_before_every_rendition_is_delivered_is_rejected_naming_the_missing_ones() {
        given::<Export>(&[requested(), produced("r1", "pr1", 1).into(), delivered("r1", 1)])
            .when(&ExportCommand::CompleteExport)
            .then_rejected(invalid_state_containing("for pr2;"));
    }

    #[test]
    fn completing_a_failed_export_is_rejected() {
        given::<Export>(&with(all_delivered(), failed(true, 1)))
            .when(&ExportCommand::CompleteExport)
            .then_rejected(invalid_state_containing("retry it first"));
    }

    #[test]
    fn completing_an_export_that_was_never_requested_is_rejected() {
        given::<Export>(&[])
            .when(&ExportCommand::CompleteExport)
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Retrying

    #[test]
    fn retrying_a_retryable_failure_records_the_next_attempt() {
        given::<Export>(&[requested(), failed(true, 1)])
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then(&[ExportRetried { attempt: 2 }.into()]);
    }

    #[test]
    fn the_same_export_retry_sent_again_records_nothing() {
        given::<Export>(&[requested(), failed(true, 1), ExportRetried { attempt: 2 }.into()])
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then(&[]);
    }

    #[test]
    fn retrying_an_export_with_a_wrong_attempt_number_is_rejected() {
        given::<Export>(&[requested(), failed(true, 1)])
            .when(&ExportCommand::RetryExport { attempt: 5 })
            .then_rejected(rule_containing("next attempt"));
    }

    #[test]
    fn retrying_an_export_failure_that_is_not_retryable_is_rejected() {
        given::<Export>(&[requested(), failed(false, 1)])
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then_rejected(invalid_state_containing("request a new export instead"));
    }

    #[test]
    fn retrying_an_export_in_progress_is_rejected() {
        given::<Export>(&[requested()])
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then_rejected(invalid_state_containing("only a failed export"));
    }

    #[test]
    fn retrying_a_completed_export_is_rejected() {
        given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into()))
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then_rejected(invalid_state_containing("nothing to retry"));
    }

    #[test]
    fn retrying_an_export_that_was_never_requested_is_rejected() {
        given::<Export>(&[])
            .when(&ExportCommand::RetryExport { attempt: 2 })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn a_retried_export_resumes_with_what_was_already_delivered() {
        given::<Export>(&[
            requested(),
            produced("r1", "pr1", 1).into(),
            delivered("r1", 1),
            failed(true, 1),
            ExportRetried { attempt: 2 }.into(),
            produced("r2", "pr2", 2).into(),
            delivered("r2", 2),
        ])
        .when(&ExportCommand::CompleteExport)
        .then(&[ExportCompleted { delivered: 2 }.into()]);
    }

    // Delivery attempts

    fn attempt(number: u32, succeeded: bool) -> ExportCommand {
        ExportCommand::RecordDeliveryAttempt {
            number,
            succeeded,
            detail: text(if succeeded { "accepted (HTTP 200)" } else { "HTTP 503" }),
            retry_in_seconds: Some(60),
        }
    }

    #[test]
    fn a_failed_delivery_attempt_is_recorded_with_when_to_try_again() {
        given::<Export>(&[requested()]).when(&attempt(1, false)).then(&[ExportDeliveryAttempted {
            number: 1,
            succeeded: false,
            detail: text("HTTP 503"),
            retry_in_seconds: Some(60),
        }
        .into()]);
    }

    #[test]
    fn a_successful_delivery_attempt_has_no_retry_time() {
        let failed_first: ExportEvent = ExportDeliveryAttempted {
            number: 1,
            succeeded: false,
            detail: text("HTTP 503"),
            retry_in_seconds: Some(60),
        }
        .into();
        given::<Export>(&[requested(), failed_first]).when(&attempt(2, true)).then(&[
            ExportDeliveryAttempted {
                number: 2,
                succeeded: true,
                detail: text("accepted (HTTP 200)"),
                retry_in_seconds: None,
            }
            .into(),
        ]);
    }

    #[test]
    fn recording_an_attempt_again_records_nothing_and_skipping_a_number_is_rejected() {
        let first: ExportEvent = ExportDeliveryAttempted {
            number: 1,
            succeeded: false,
            detail: text("HTTP 503"),
            retry_in_seconds: Some(60),
        }
        .into();
        given::<Export>(&[requested(), first.clone()]).when(&attempt(1, false)).then(&[]);
        given::<Export>(&[requested(), first])
            .when(&attempt(3, false))
            .then_rejected(rule_containing("number 2"));
    }

    #[test]
    fn recording_an_attempt_for_a_completed_export_is_rejected() {
        given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into()))
            .when(&attempt(1, true))
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let state = given::<Export>(&with(all_delivered(), ExportCompleted { delivered: 2 }.into())).state();
        assert_eq!(state.status(), Some(ExportStatus::Completed));
        assert_eq!(state.attempt(), 1);
        assert_eq!(state.renditions().len(), 2);
        assert!(state.renditions().values().all(|r| r.delivered_to.is_some()));
        assert_eq!(Export::default().status(), None);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn the_catalog_lists_every_event_at_version_1_with_a_schema() {
        let catalog = <ExportEvent as crate::DomainEvent>::catalog();
        let names: Vec<&str> = catalog.iter().map(|schema| schema.event_type).collect();
        assert_eq!(
            names,
            [
                "export.requested",
                "export.rendition_produced",
                "export.rendition_delivered",
                "export.failed",
                "export.completed",
                "export.retried",
                "export.delivery_attempted"
            ]
        );
        for schema in &catalog {
            assert_eq!(schema.version, 1);
            assert!((schema.schema)().as_object().is_some(), "{}", schema.event_type);
        }
    }
}
