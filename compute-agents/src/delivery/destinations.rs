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

use std::io::Write;

use aws_lc_rs::hmac;
use bytes::Bytes;
use gps_domain::export::{DeliveryLocation, ExportRequested, Rendition, S3Bucket, S3Prefix, WebhookUrl};
use gps_domain::ids::RenditionId;
use gps_storage::{ExternalBucket, ObjectKey, ObjectStore, SafeFetcher, StorageSettings};
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

/// Writes every rendition to `bucket` under `prefix` + file name.
pub async fn s3(
    store: &ObjectStore,
    targets: &SafeFetcher,
    request: &ExportRequested,
    bucket: &S3Bucket,
    prefix: &S3Prefix,
    credentials: &SecretValue,
    renditions: &[Delivered<'_>],
) -> Result<Vec<(RenditionId, DeliveryLocation)>, Failure> {
    let credentials: S3Credentials = serde_json::from_slice(credentials.expose()).map_err(|e| Failure {
        detail: format!(
            "the stored S3 credentials are not JSON with endpoint, region, access_key_id, secret_access_key (and optional path_style): {e}"
        ),
        retryable: false,
    })?;
    // The endpoint comes from the brand: the same address rules as webhooks.
    targets
        .check_target(&credentials.endpoint)
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
    let destination = ExternalBucket::new(&settings);
    let files = files(store, &request.brand_id, renditions).await?;
    let mut delivered = Vec::with_capacity(files.len());
    for (d, (name, bytes)) in renditions.iter().zip(files) {
        let key = format!("{prefix}{name}");
        let media_type = d.rendition.produced.asset.media_type.clone();
        destination
            .put(&key, bytes, &media_type)
            .await
            .map_err(|e| Failure::later(format!("writing s3://{bucket}/{key}: {e}")))?;
        delivered
            .push((d.rendition.produced.rendition_id.clone(), location(format!("s3://{bucket}/{key}"))?));
    }
    Ok(delivered)
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
