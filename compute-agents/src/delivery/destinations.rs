//! Where renditions go: a ZIP download kept in GPS's object storage, a
//! brand's S3-compatible bucket, or a webhook.
//!
//! Each destination gets every rendition of an export in one pass and
//! answers with where each one is now, or with why it failed and whether
//! trying again later may help. The worker records every pass as a delivery
//! attempt and schedules the next one.
//!
//! The webhook protocol (also in `docs/webhooks.md`): one `POST` per export,
//! `Content-Type: application/json`, body [`WebhookBody`] with a signed,
//! expiring URL per rendition; headers `X-GPS-Timestamp` (unix seconds),
//! `X-GPS-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`,
//! `Idempotency-Key` (the same for every retry of the same export content, so
//! a receiver that saw it already can answer 2xx and do nothing) and
//! `X-GPS-Delivery-Attempt`. Any 2xx is success; anything else, a timeout or
//! a refused connection is retried with backoff.
//!
//! A brand's S3 bucket keeps one object per file name, and file names repeat
//! across exports (`{sku}_{view}_{n}`), so two exports can write the same key;
//! retries and backoff can make an older export arrive after a newer one.
//! The rule: a key never goes back to older content than the log says was
//! delivered there last. Exports are ordered by the stream sequence of their
//! `export.requested` event (a retry keeps its export's place). Every object
//! carries user metadata naming its writer ([`EXPORT_METADATA`],
//! [`ORDER_METADATA`], [`LOG_METADATA`], plus the rendition and its
//! checksum). Before writing a key the worker reads it (`HEAD`); when an
//! export requested later in the same log wrote it, the rendition is not
//! written and the pass reports it as superseded (the worker records that in
//! the delivery attempt and fails the export, not retryable, naming the newer
//! export: putting the older content back takes a new export, which is then
//! the newest). Otherwise it writes conditionally: `If-Match` with the entity
//! tag the `HEAD` saw, or `If-None-Match: *` when there was nothing, so a
//! newer export that writes between our `HEAD` and our `PUT` makes the
//! server refuse ours (412), and the worker looks again. Objects GPS did not
//! write, or wrote from another log (whose sequences do not compare), are
//! replaced as before.
//!
//! Endpoints without conditional writes: one that answers 501 Not
//! Implemented is written unconditionally after the `HEAD` check (a warning
//! is logged); one that ignores the headers behaves the same way silently.
//! There the check still stops every late export that starts after the newer
//! one finished writing the key, but two deliveries of the same key racing
//! within the milliseconds between one's `HEAD` and its `PUT` can end with
//! the older content, and nothing in the pass notices. AWS S3 (since
//! 2024), MinIO, Ceph RGW and the embedded endpoint implement both headers.

use std::collections::BTreeMap;
use std::io::Write;

use aws_lc_rs::hmac;
use bytes::Bytes;
use gps_domain::export::{DeliveryLocation, ExportRequested, Rendition, S3Bucket, S3Prefix, WebhookUrl};
use gps_domain::ids::RenditionId;
use gps_storage::{
    ExternalBucket, ExternalObject, ObjectKey, ObjectStore, SafeFetcher, StorageSettings, WriteCondition,
    WriteOutcome,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::{SecretError, SecretValue};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-GPS-Signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "X-GPS-Timestamp";
/// The header that stays the same across retries of one export.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The header numbering the attempt.
pub const ATTEMPT_HEADER: &str = "X-GPS-Delivery-Attempt";

/// One rendition as a destination sees it.
#[derive(Debug, Clone)]
pub struct Delivered<'a> {
    /// The rendition recorded on the export.
    pub rendition: &'a Rendition,
    /// The SKUs of the products it shows.
    pub skus: Vec<String>,
    /// The channel preset's name.
    pub preset: String,
}

/// Why a destination pass failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What happened, for the attempt record.
    pub detail: String,
    /// Whether trying again later may help.
    pub retryable: bool,
}

impl Failure {
    fn later(detail: impl Into<String>) -> Self {
        Failure { detail: detail.into(), retryable: true }
    }
}

impl From<SecretError> for Failure {
    fn from(error: SecretError) -> Self {
        // A missing secret may be stored later; an unreadable one needs a person.
        let retryable = matches!(error, SecretError::Missing { .. } | SecretError::Postgres(_));
        Failure { detail: error.to_string(), retryable }
    }
}

fn location(text: String) -> Result<DeliveryLocation, Failure> {
    DeliveryLocation::parse(text.replace(' ', "%20"))
        .map_err(|e| Failure { detail: format!("no valid location: {e}"), retryable: false })
}

/// One line of an export's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The SKUs of the products shown, `|`-separated in the CSV.
    pub skus: Vec<String>,
    /// The channel preset.
    pub preset: String,
    /// The file name.
    pub file_name: String,
    /// The prediction rendered.
    pub prediction_id: String,
    /// The rendition.
    pub rendition_id: String,
    /// The sha256 of the file, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

fn manifest(renditions: &[Delivered<'_>]) -> Vec<ManifestEntry> {
    renditions
        .iter()
        .map(|d| {
            let produced = &d.rendition.produced;
            ManifestEntry {
                skus: d.skus.clone(),
                preset: d.preset.clone(),
                file_name: produced.file_name.to_string(),
                prediction_id: produced.prediction_id.to_string(),
                rendition_id: produced.rendition_id.to_string(),
                sha256: produced.checksum.as_str().trim_start_matches("sha256:").to_owned(),
                bytes: produced.asset.bytes,
            }
        })
        .collect()
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The manifest as CSV (RFC 4180, header line first).
pub fn manifest_csv(entries: &[ManifestEntry]) -> String {
    let mut csv = String::from("sku,preset,file_name,prediction_id,rendition_id,sha256,bytes\r\n");
    for e in entries {
        let fields = [
            csv_field(&e.skus.join("|")),
            csv_field(&e.preset),
            csv_field(&e.file_name),
            csv_field(&e.prediction_id),
            csv_field(&e.rendition_id),
            e.sha256.clone(),
            e.bytes.to_string(),
        ];
        csv.push_str(&fields.join(","));
        csv.push_str("\r\n");
    }
    csv
}

/// Builds the ZIP of `files` (name, bytes) plus `manifest.csv` and
/// `manifest.json`. Deterministic (fixed timestamps, sorted names), so a
/// redelivered export stores the same archive under the same key.
pub fn build_zip(files: &[(String, Bytes)], entries: &[ManifestEntry]) -> Result<Vec<u8>, String> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default());
        let deflated = stored.compression_method(zip::CompressionMethod::Deflated);
        let mut sorted: Vec<&(String, Bytes)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let failed = |e: zip::result::ZipError| format!("building the ZIP failed: {e}");
        for (name, bytes) in sorted {
            // Images are compressed already; storing them keeps the ZIP fast.
            zip.start_file(name.as_str(), stored).map_err(failed)?;
            zip.write_all(bytes).map_err(|e| e.to_string())?;
        }
        zip.start_file("manifest.csv", deflated).map_err(failed)?;
        zip.write_all(manifest_csv(entries).as_bytes()).map_err(|e| e.to_string())?;
        let json = serde_json::to_vec_pretty(entries).map_err(|e| e.to_string())?;
        zip.start_file("manifest.json", deflated).map_err(failed)?;
        zip.write_all(&json).map_err(|e| e.to_string())?;
        zip.finish().map_err(failed)?;
    }
    Ok(cursor.into_inner())
}

/// The location of a file inside a ZIP download: `zip:<object key>/<file>`.
pub fn zip_location(key: &ObjectKey, file_name: &str) -> String {
    format!("zip:{key}/{file_name}")
}

/// Reads the renditions' bytes back from object storage.
async fn files(
    store: &ObjectStore,
    brand: &gps_domain::ids::BrandId,
    renditions: &[Delivered<'_>],
) -> Result<Vec<(String, Bytes)>, Failure> {
    let mut files = Vec::with_capacity(renditions.len());
    for d in renditions {
        let produced = &d.rendition.produced;
        let key = ObjectKey::content(brand, &produced.asset.hash);
        let object = store
            .get(&key)
            .await
            .map_err(|e| Failure::later(format!("reading rendition {}: {e}", produced.rendition_id)))?;
        files.push((produced.file_name.to_string(), object.body));
    }
    Ok(files)
}

/// Stores the export's ZIP and names each rendition's place in it.
pub async fn zip_download(
    store: &ObjectStore,
    request: &ExportRequested,
    renditions: &[Delivered<'_>],
) -> Result<Vec<(RenditionId, DeliveryLocation)>, Failure> {
    let files = files(store, &request.brand_id, renditions).await?;
    let entries = manifest(renditions);
    let archive = tokio::task::spawn_blocking(move || build_zip(&files, &entries))
        .await
        .map_err(|e| Failure::later(e.to_string()))?
        .map_err(|detail| Failure { detail, retryable: false })?;
    let stored = store
        .put(&request.brand_id, Bytes::from(archive), "application/zip")
        .await
        .map_err(|e| Failure::later(format!("storing the ZIP: {e}")))?;
    renditions
        .iter()
        .map(|d| {
            let produced = &d.rendition.produced;
            Ok((
                produced.rendition_id.clone(),
                location(zip_location(&stored.key, produced.file_name.as_str()))?,
            ))
        })
        .collect()
}

/// The credentials of a brand's S3 destination, stored as a JSON secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    /// The endpoint, e.g. `https://s3.eu-central-1.amazonaws.com`.
    pub endpoint: String,
    /// The signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Path-style addressing (MinIO and most non-AWS servers).
    #[serde(default)]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Which export wrote an object in a brand's bucket, and where its request
/// stands in the log: the order deliveries to one key must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportStamp {
    /// The export.
    pub export_id: String,
    /// The stream sequence of its `export.requested` event (a retry keeps it).
    pub order: u64,
    /// The log the sequence belongs to ([`gps_nats::LogIdentity::token`]).
    pub log: String,
}

/// The user metadata naming the export that wrote an object.
pub const EXPORT_METADATA: &str = "gps-export";
/// The user metadata holding the export request's stream sequence.
pub const ORDER_METADATA: &str = "gps-export-order";
/// The user metadata naming the log that sequence belongs to.
pub const LOG_METADATA: &str = "gps-log";
/// The user metadata naming the rendition written.
pub const RENDITION_METADATA: &str = "gps-rendition";
/// The user metadata holding the rendition's checksum.
pub const CHECKSUM_METADATA: &str = "gps-checksum";

impl ExportStamp {
    /// The stamp an object carries, if GPS wrote it (with readable metadata).
    pub fn of(object: &ExternalObject) -> Option<ExportStamp> {
        Some(ExportStamp {
            export_id: object.metadata.get(EXPORT_METADATA)?.clone(),
            order: object.metadata.get(ORDER_METADATA)?.parse().ok()?,
            log: object.metadata.get(LOG_METADATA)?.clone(),
        })
    }

    fn metadata(&self, rendition: &Rendition) -> BTreeMap<String, String> {
        BTreeMap::from([
            (EXPORT_METADATA.to_owned(), self.export_id.clone()),
            (ORDER_METADATA.to_owned(), self.order.to_string()),
            (LOG_METADATA.to_owned(), self.log.clone()),
            (RENDITION_METADATA.to_owned(), rendition.produced.rendition_id.to_string()),
            (CHECKSUM_METADATA.to_owned(), rendition.produced.checksum.to_string()),
        ])
    }
}

/// What to do about one key, given what a `HEAD` found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write, under this condition.
    Write(WriteCondition),
    /// Leave it: a newer export (this one) wrote it.
    Newer(ExportStamp),
}

/// Decides whether the export `ours` may write over `existing`. An object
/// written by a later request of the same log is never replaced; anything
/// else (nothing there, the same or an older export, an object GPS did not
/// write or wrote from another log, whose sequences do not compare) is
/// replaced, only if it is still the object the `HEAD` saw.
pub fn verdict(existing: Option<&ExternalObject>, ours: &ExportStamp) -> Verdict {
    let Some(existing) = existing else { return Verdict::Write(WriteCondition::IfAbsent) };
    if let Some(theirs) = ExportStamp::of(existing)
        && theirs.log == ours.log
        && theirs.order > ours.order
    {
        return Verdict::Newer(theirs);
    }
    match &existing.e_tag {
        Some(e_tag) => Verdict::Write(WriteCondition::IfMatch(e_tag.clone())),
        None => Verdict::Write(WriteCondition::Always),
    }
}

/// A rendition an S3 pass did not write because a newer export owns its key.
#[derive(Debug, Clone)]
pub struct Superseded {
    /// The rendition left out.
    pub rendition_id: RenditionId,
    /// Why, for the attempt record and the export's failure.
    pub reason: String,
}

/// What an S3 pass did.
#[derive(Debug, Clone, Default)]
pub struct S3Outcome {
    /// The renditions written, and where.
    pub delivered: Vec<(RenditionId, DeliveryLocation)>,
    /// The renditions left out because a newer export already delivered their key.
    pub superseded: Vec<Superseded>,
}

/// How often a write is decided again after its condition failed (someone
/// else wrote the key between our `HEAD` and our `PUT`).
const CONDITION_ROUNDS: usize = 5;

/// Writes every rendition to `bucket` under `prefix` + file name, unless a
/// newer export already wrote that key (see the module's comment).
#[allow(clippy::too_many_arguments)]
pub async fn s3(
    store: &ObjectStore,
    targets: &SafeFetcher,
    request: &ExportRequested,
    stamp: &ExportStamp,
    bucket: &S3Bucket,
    prefix: &S3Prefix,
    credentials: &SecretValue,
    renditions: &[Delivered<'_>],
) -> Result<S3Outcome, Failure> {
    let credentials: S3Credentials = serde_json::from_slice(credentials.expose()).map_err(|e| Failure {
        detail: format!(
            "the stored S3 credentials are not JSON with endpoint, region, access_key_id, secret_access_key (and optional path_style): {e}"
        ),
        retryable: false,
    })?;
    // The endpoint comes from the brand: the same address rules as webhooks,
    // and the client connects to the address checked, never to a second
    // answer of the endpoint's DNS (rebinding).
    let checked = targets
        .resolve_target(&credentials.endpoint)
        .await
        .map_err(|e| Failure { detail: format!("S3 endpoint refused: {e}"), retryable: false })?;
    let mut settings = StorageSettings::new(
        credentials.endpoint.clone(),
        bucket.as_str(),
        credentials.access_key_id.clone(),
        gps_storage::SecretKey::new(credentials.secret_access_key.clone()),
    );
    settings.region = credentials.region.clone();
    settings.path_style = credentials.path_style;
    settings.pinned_address = Some(checked.ip());
    let destination = ExternalBucket::new(&settings);
    let files = files(store, &request.brand_id, renditions).await?;
    let mut outcome = S3Outcome::default();
    // Set once the endpoint answered that it does not implement conditional writes.
    let mut unconditional = false;
    for (d, (name, bytes)) in renditions.iter().zip(files) {
        let key = format!("{prefix}{name}");
        let url = format!("s3://{bucket}/{key}");
        let media_type = d.rendition.produced.asset.media_type.clone();
        let metadata = stamp.metadata(d.rendition);
        let rendition_id = d.rendition.produced.rendition_id.clone();
        let mut settled = false;
        for _ in 0..CONDITION_ROUNDS {
            let existing =
                destination.head(&key).await.map_err(|e| Failure::later(format!("reading {url}: {e}")))?;
            let condition = match verdict(existing.as_ref(), stamp) {
                Verdict::Newer(theirs) => {
                    outcome.superseded.push(Superseded {
                        rendition_id: rendition_id.clone(),
                        reason: format!(
                            "a newer export ({}, requested at log position {}) already delivered {url}; this export (requested at log position {}) did not overwrite it with older content",
                            theirs.export_id, theirs.order, stamp.order
                        ),
                    });
                    settled = true;
                    break;
                }
                Verdict::Write(_) if unconditional => WriteCondition::Always,
                Verdict::Write(condition) => condition,
            };
            match destination
                .put_if(&key, bytes.clone(), &media_type, &metadata, &condition)
                .await
                .map_err(|e| Failure::later(format!("writing {url}: {e}")))?
            {
                WriteOutcome::Written => {
                    outcome.delivered.push((rendition_id.clone(), location(url.clone())?));
                    settled = true;
                    break;
                }
                // Someone wrote the key since the HEAD: look again.
                WriteOutcome::ConditionFailed => {}
                WriteOutcome::ConditionUnsupported => {
                    tracing::warn!(endpoint = %credentials.endpoint, %bucket, "the S3 endpoint does not implement conditional writes; writing after the HEAD check alone");
                    unconditional = true;
                }
            }
        }
        if !settled {
            return Err(Failure::later(format!(
                "{url} changed between reading and writing it {CONDITION_ROUNDS} times in a row"
            )));
        }
    }
    Ok(outcome)
}

/// A rendition in a webhook body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRendition {
    /// The rendition.
    pub rendition_id: String,
    /// The prediction it renders.
    pub prediction_id: String,
    /// The SKUs of the products shown.
    pub skus: Vec<String>,
    /// The file name.
    pub file_name: String,
    /// The media type.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Pixel width.
    pub width: Option<u32>,
    /// Pixel height.
    pub height: Option<u32>,
    /// The sha256 of the file (`sha256:<hex>`).
    pub checksum: String,
    /// A signed, expiring URL to download it.
    pub url: String,
}

/// The JSON body of a webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// Always `export.delivered`.
    pub event: String,
    /// The brand.
    pub brand: String,
    /// The export.
    pub export_id: String,
    /// The channel preset.
    pub channel: String,
    /// The renditions.
    pub renditions: Vec<WebhookRendition>,
}

/// The `Idempotency-Key` of an export's webhook delivery: the same for every
/// retry of the same content. The worker always sends every rendition of the
/// export, so a resume after some renditions were marked delivered keeps the
/// key of the first delivery.
pub fn idempotency_key(request: &ExportRequested, renditions: &[Delivered<'_>]) -> String {
    let mut digest = Sha256::new();
    digest.update(request.brand_id.as_str().as_bytes());
    digest.update(b"/");
    digest.update(request.export_id.as_str().as_bytes());
    let mut parts: Vec<(String, String)> = renditions
        .iter()
        .map(|d| (d.rendition.produced.rendition_id.to_string(), d.rendition.produced.checksum.to_string()))
        .collect();
    parts.sort();
    for (id, checksum) in parts {
        digest.update(format!("\n{id} {checksum}").as_bytes());
    }
    format!("gps-export-{}", &hex::encode(digest.finalize())[..32])
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Posts the export to `url`.
#[allow(clippy::too_many_arguments)]
pub async fn webhook(
    targets: &SafeFetcher,
    request: &ExportRequested,
    url: &WebhookUrl,
    secret: &SecretValue,
    renditions: &[Delivered<'_>],
    urls: &dyn super::SignedUrls,
    attempt: u32,
) -> Result<(Vec<(RenditionId, DeliveryLocation)>, String), Failure> {
    let body = WebhookBody {
        event: "export.delivered".into(),
        brand: request.brand_id.to_string(),
        export_id: request.export_id.to_string(),
        channel: request.channel.to_string(),
        renditions: renditions
            .iter()
            .map(|d| {
                let produced = &d.rendition.produced;
                WebhookRendition {
                    rendition_id: produced.rendition_id.to_string(),
                    prediction_id: produced.prediction_id.to_string(),
                    skus: d.skus.clone(),
                    file_name: produced.file_name.to_string(),
                    media_type: produced.asset.media_type.clone(),
                    bytes: produced.asset.bytes,
                    width: produced.asset.width,
                    height: produced.asset.height,
                    checksum: produced.checksum.to_string(),
                    url: urls.signed_url(&ObjectKey::content(&request.brand_id, &produced.asset.hash)),
                }
            })
            .collect(),
    };
    let body = serde_json::to_vec(&body).map_err(|e| Failure { detail: e.to_string(), retryable: false })?;
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let signature = signature(secret.expose(), timestamp, &body);
    let key = idempotency_key(request, renditions);
    let timestamp_text = timestamp.to_string();
    let attempt_text = attempt.to_string();
    let headers = [
        ("content-type", "application/json"),
        (TIMESTAMP_HEADER, timestamp_text.as_str()),
        (SIGNATURE_HEADER, signature.as_str()),
        (IDEMPOTENCY_HEADER, key.as_str()),
        (ATTEMPT_HEADER, attempt_text.as_str()),
    ];
    let posted = targets.post(url.as_str(), &headers, Bytes::from(body)).await.map_err(|e| {
        let retryable = !matches!(
            e,
            gps_storage::FetchError::Refused { .. } | gps_storage::FetchError::ForbiddenAddress { .. }
        );
        Failure { detail: e.to_string(), retryable }
    })?;
    let delivered = renditions
        .iter()
        .map(|d| {
            let produced = &d.rendition.produced;
            Ok((produced.rendition_id.clone(), location(format!("{url}#{}", produced.file_name))?))
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    Ok((delivered, format!("accepted (HTTP {})", posted.status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231-style check against an independently computed value:
        // HMAC-SHA256(key "secret", "1700000000.{}").
        let ours = signature(b"secret", 1_700_000_000, b"{}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let expected = hex::encode(hmac::sign(&key, b"1700000000.{}").as_ref());
        assert_eq!(ours, format!("sha256={expected}"));
    }

    fn stamp(export_id: &str, order: u64, log: &str) -> ExportStamp {
        ExportStamp { export_id: export_id.into(), order, log: log.into() }
    }

    fn object(e_tag: Option<&str>, writer: Option<&ExportStamp>) -> ExternalObject {
        let mut metadata = BTreeMap::new();
        if let Some(w) = writer {
            metadata.insert(EXPORT_METADATA.to_owned(), w.export_id.clone());
            metadata.insert(ORDER_METADATA.to_owned(), w.order.to_string());
            metadata.insert(LOG_METADATA.to_owned(), w.log.clone());
        }
        ExternalObject { e_tag: e_tag.map(str::to_owned), bytes: 1, metadata }
    }

    #[test]
    fn an_object_of_a_later_request_in_the_same_log_is_never_overwritten() {
        let ours = stamp("ex-old", 10, "GPS_EVENTS@1");
        let newer = stamp("ex-new", 20, "GPS_EVENTS@1");
        assert_eq!(verdict(Some(&object(Some("\"e\""), Some(&newer))), &ours), Verdict::Newer(newer.clone()));
        // Nothing there: create only if still nothing.
        assert_eq!(verdict(None, &ours), Verdict::Write(WriteCondition::IfAbsent));
        // The same or an older export: replace what the HEAD saw.
        for writer in [stamp("ex-old", 10, "GPS_EVENTS@1"), stamp("ex-older", 5, "GPS_EVENTS@1")] {
            assert_eq!(
                verdict(Some(&object(Some("\"e\""), Some(&writer))), &ours),
                Verdict::Write(WriteCondition::IfMatch("\"e\"".into()))
            );
        }
        // Another log's sequences do not compare; an object GPS did not write is replaced.
        let other_log = stamp("ex-x", 99, "GPS_EVENTS@2");
        assert!(matches!(verdict(Some(&object(Some("\"e\""), Some(&other_log))), &ours), Verdict::Write(_)));
        assert!(matches!(verdict(Some(&object(Some("\"e\""), None)), &ours), Verdict::Write(_)));
        assert_eq!(verdict(Some(&object(None, None)), &ours), Verdict::Write(WriteCondition::Always));
    }

    #[test]
    fn the_manifest_csv_quotes_fields_that_need_it() {
        let entries = vec![ManifestEntry {
            skus: vec!["DR-1".into(), "BAG,2".into()],
            preset: "web-pdp".into(),
            file_name: "DR-1_front_1.jpg".into(),
            prediction_id: "p1".into(),
            rendition_id: "r1".into(),
            sha256: "ab".repeat(32),
            bytes: 1234,
        }];
        let csv = manifest_csv(&entries);
        assert_eq!(
            csv,
            format!(
                "sku,preset,file_name,prediction_id,rendition_id,sha256,bytes\r\n\"DR-1|BAG,2\",web-pdp,DR-1_front_1.jpg,p1,r1,{},1234\r\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn the_zip_is_the_same_bytes_for_the_same_files() {
        let files = vec![
            ("b.jpg".to_owned(), Bytes::from_static(b"bbb")),
            ("a.jpg".to_owned(), Bytes::from_static(b"aaa")),
        ];
        let first = build_zip(&files, &[]).expect("zip");
        let reversed: Vec<(String, Bytes)> = files.iter().rev().cloned().collect();
        assert_eq!(first, build_zip(&reversed, &[]).expect("zip"));
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(first)).expect("readable");
        let names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).expect("entry").name().expect("name").to_string())
            .collect();
        assert_eq!(names, ["a.jpg", "b.jpg", "manifest.csv", "manifest.json"]);
    }
}
