//! `ObjectStore`: the S3 client GPS uses for every object, through
//! `aws-sdk-s3` against whichever endpoint the settings name.

use std::ops::Range;
use std::path::Path;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use gps_domain::ids::BrandId;
use gps_domain::values::ContentHash;
use sha2::{Digest, Sha256};

use crate::embedded::EmbeddedS3;
use crate::key::ObjectKey;
use crate::settings::{MIN_PART_SIZE, StorageSettings};

/// What went wrong talking to the object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object under this key.
    #[error("no object {key}")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// A byte range outside the object.
    #[error("range {start}..{end} is outside object {key} of {size} bytes")]
    RangeNotSatisfiable {
        /// The key asked for.
        key: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// The settings cannot work (bad part size, unusable bucket).
    #[error("object storage is misconfigured: {detail}")]
    Misconfigured {
        /// What to fix.
        detail: String,
    },
    /// The embedded endpoint could not start.
    #[error("the embedded object store cannot start: {detail}")]
    Embedded {
        /// Why.
        detail: String,
    },
    /// The endpoint failed or could not be reached.
    #[error("object storage request {operation} failed: {detail}")]
    Request {
        /// The S3 operation.
        operation: &'static str,
        /// The client's description of the failure (never contains credentials).
        detail: String,
    },
}

pub(crate) fn request_error<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> StorageError {
    move |error| {
        // The SDK's Display is terse ("service error"); the source chain says why.
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        StorageError::Request { operation, detail }
    }
}

fn client(settings: &StorageSettings) -> Client {
    let credentials = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.expose().to_owned(),
        None,
        None,
        "gps-settings",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .endpoint_url(settings.endpoint.clone())
        .credentials_provider(credentials)
        .force_path_style(settings.path_style)
        // Checksums only where the API requires them: several S3-compatible
        // servers (GCS interoperability, older MinIO) reject the newer
        // default trailing checksums. Integrity comes from the content hash.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    let config = match settings.pinned_address {
        Some(address) => config.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_with_resolver(PinnedResolver(address)),
        ),
        None => config,
    };
    Client::from_conf(config.build())
}

/// A resolver that answers every name with one address: the one the caller
/// checked against the address rules before the client was made.
#[derive(Debug, Clone, Copy)]
struct PinnedResolver(std::net::IpAddr);

impl aws_smithy_runtime_api::client::dns::ResolveDns for PinnedResolver {
    fn resolve_dns<'a>(&'a self, _name: &'a str) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::ready(Ok(vec![self.0]))
    }
}

/// A bucket that belongs to a brand, written to as an export destination:
/// GPS puts objects under the keys the export names and never creates,
/// lists or deletes anything there. Unlike [`ObjectStore`], keys are not
/// content-addressed — they are the brand's file names.
#[derive(Debug, Clone)]
pub struct ExternalBucket {
    client: Client,
    bucket: String,
}

impl ExternalBucket {
    /// The bucket `settings.bucket` at `settings.endpoint` (nothing is sent yet).
    pub fn new(settings: &StorageSettings) -> Self {
        ExternalBucket { client: client(settings), bucket: settings.bucket.clone() }
    }

    /// Writes `bytes` at `key`, replacing what is there, and reads back its
    /// size, so a write the server did not keep whole is an error.
    pub async fn put(&self, key: &str, bytes: Bytes, media_type: &str) -> Result<(), StorageError> {
        let size = bytes.len() as i64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(media_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(request_error("PutObject"))?;
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(request_error("HeadObject"))?;
        if head.content_length() != Some(size) {
            return Err(StorageError::Request {
                operation: "PutObject",
                detail: format!("the bucket kept {:?} bytes of {size}", head.content_length()),
            });
        }
        Ok(())
    }
}

impl ExternalBucket {
    /// What a `HEAD` of `key` says: its entity tag, size and user metadata
    /// (keys without the `x-amz-meta-` prefix, lower case); `None` when
    /// there is no object.
    pub async fn head(&self, key: &str) -> Result<Option<ExternalObject>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(head) => Ok(Some(ExternalObject {
                e_tag: head.e_tag().map(str::to_owned),
                bytes: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                metadata: head
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(request_error("HeadObject")(error)),
        }
    }

    /// Writes `bytes` at `key` with user `metadata`, only if `condition`
    /// holds when the server applies the write (`If-None-Match: *` or
    /// `If-Match: <etag>`). A refused precondition (HTTP 412, or 409
    /// `ConditionalRequestConflict` from a concurrent write) and an endpoint
    /// that does not implement conditional writes (HTTP 501) are outcomes,
    /// not errors. When the object written still carries `metadata`, its
    /// size is read back, so a write the server did not keep whole is an
    /// error.
    pub async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        media_type: &str,
        metadata: &std::collections::BTreeMap<String, String>,
        condition: &WriteCondition,
    ) -> Result<WriteOutcome, StorageError> {
        let size = bytes.len() as u64;
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(media_type)
            .body(ByteStream::from(bytes));
        for (name, value) in metadata {
            put = put.metadata(name, value);
        }
        put = match condition {
            WriteCondition::Always => put,
            WriteCondition::IfAbsent => put.if_none_match("*"),
            WriteCondition::IfMatch(e_tag) => put.if_match(e_tag),
        };
        match put.send().await {
            Ok(_) => {}
            Err(error) => {
                use aws_sdk_s3::error::ProvideErrorMetadata;
                let status = error.raw_response().map(|r| r.status().as_u16());
                let code = error.code().unwrap_or_default().to_owned();
                if status == Some(412) || code == "PreconditionFailed" || code == "ConditionalRequestConflict"
                {
                    return Ok(WriteOutcome::ConditionFailed);
                }
                if !matches!(condition, WriteCondition::Always)
                    && (status == Some(501) || code == "NotImplemented")
                {
                    return Ok(WriteOutcome::ConditionUnsupported);
                }
                return Err(request_error("PutObject")(error));
            }
        }
        if let Some(written) = self.head(key).await?
            && metadata.iter().all(|(k, v)| written.metadata.get(&k.to_ascii_lowercase()) == Some(v))
            && written.bytes != size
        {
            return Err(StorageError::Request {
                operation: "PutObject",
                detail: format!("the bucket kept {} bytes of {size}", written.bytes),
            });
        }
        Ok(WriteOutcome::Written)
    }
}

/// An object in a bucket GPS does not own, as a `HEAD` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalObject {
    /// The entity tag, quoted as the server sent it.
    pub e_tag: Option<String>,
    /// Size in bytes.
    pub bytes: u64,
    /// User metadata, keys lower case without `x-amz-meta-`.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// When [`ExternalBucket::put_if`] may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Whatever is there.
    Always,
    /// Only if no object is there (`If-None-Match: *`).
    IfAbsent,
    /// Only if the object there has this entity tag (`If-Match`).
    IfMatch(String),
}

/// What [`ExternalBucket::put_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The object was written.
    Written,
    /// The condition no longer held: someone else wrote (or deleted) the
    /// object since it was read; nothing was written.
    ConditionFailed,
    /// The endpoint does not implement conditional writes; nothing was written.
    ConditionUnsupported,
}

/// The outcome of a put: where the bytes are and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// `<brand>/<sha256 hex>`.
    pub key: ObjectKey,
    /// The sha256 of the bytes.
    pub hash: ContentHash,
    /// Size in bytes.
    pub bytes: u64,
    /// The media type stored with the object.
    pub media_type: String,
    /// False when identical bytes were already stored (nothing was written).
    pub newly_stored: bool,
}

/// What `head` knows about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub bytes: u64,
    /// The media type stored with the object.
    pub media_type: String,
}

/// An object read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The bytes.
    pub body: Bytes,
    /// The media type stored with the object.
    pub media_type: String,
}

/// The object store: a bucket on an S3-compatible endpoint.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    part_size: usize,
}

impl ObjectStore {
    /// Connects to the endpoint in `settings` and makes sure the bucket exists
    /// (creating it if it does not), so a wrong endpoint or key fails here,
    /// at start, rather than on the first upload.
    pub async fn connect(settings: &StorageSettings) -> Result<Self, StorageError> {
        if settings.multipart_part_size < MIN_PART_SIZE {
            return Err(StorageError::Misconfigured {
                detail: format!(
                    "the multipart part size is {} bytes; S3 needs at least {MIN_PART_SIZE}",
                    settings.multipart_part_size
                ),
            });
        }
        let store = ObjectStore {
            client: client(settings),
            bucket: settings.bucket.clone(),
            part_size: settings.multipart_part_size,
        };
        store.ensure_bucket().await?;
        Ok(store)
    }

    /// Starts the embedded endpoint over `dir` and connects to it.
    /// Keep the returned server alive as long as the store is used.
    pub async fn embedded(dir: &Path) -> Result<(Self, EmbeddedS3), StorageError> {
        let server = EmbeddedS3::start(dir).await?;
        let store = ObjectStore::connect(server.settings()).await?;
        Ok((store, server))
    }

    async fn ensure_bucket(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                self.client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .map_err(request_error("CreateBucket"))?;
                Ok(())
            }
            Err(error) => Err(request_error("HeadBucket")(error)),
        }
    }

    /// Stores `bytes` as a content object of `brand` under `<brand>/<sha256>`.
    /// Idempotent: identical bytes map to the same key and are written once
    /// (`newly_stored` says whether this call wrote them).
    pub async fn put(
        &self,
        brand: &BrandId,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<StoredObject, StorageError> {
        let hash = content_hash(&bytes);
        let key = ObjectKey::content(brand, &hash);
        let size = bytes.len() as u64;
        let newly_stored = self.put_at(&key, bytes, media_type).await?;
        if !newly_stored {
            // The caller is about to refer to these bytes: the sweep must see
            // them as just stored, however long ago they first were.
            self.touch(&key, media_type).await?;
        }
        Ok(StoredObject { key, hash, bytes: size, media_type: media_type.to_owned(), newly_stored })
    }

    /// Stores `bytes` under a caller-chosen key (a derivative), unless an
    /// object is already there. Returns whether this call wrote it.
    pub async fn put_at(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<bool, StorageError> {
        if self.exists(key).await? {
            return Ok(false);
        }
        if bytes.len() >= self.part_size {
            self.put_multipart(key, bytes, media_type).await?;
        } else {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.to_string())
                .content_type(media_type)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(request_error("PutObject"))?;
        }
        Ok(true)
    }

    async fn put_multipart(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<(), StorageError> {
        let key_text = key.to_string();
        let started = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&key_text)
            .content_type(media_type)
            .send()
            .await
            .map_err(request_error("CreateMultipartUpload"))?;
        let upload_id = started.upload_id().unwrap_or_default().to_owned();
        // Marked before the first part, so a process that dies from here on
        // leaves an upload the sweep finds and aborts.
        let uploaded = match self.mark_upload(&key_text, &upload_id).await {
            Ok(()) => self.upload_parts(&key_text, &upload_id, &bytes).await,
            Err(error) => Err(error),
        };
        let completed = match uploaded {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&key_text)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map(|_| ())
                .map_err(request_error("CompleteMultipartUpload")),
            Err(error) => Err(error),
        };
        if completed.is_err() {
            // Leave no orphaned parts behind; the first error is the one to report.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key_text)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        self.unmark_upload(&upload_id).await;
        completed
    }

    /// Refreshes an object's time (a copy onto itself), leaving its bytes.
    async fn touch(&self, key: &ObjectKey, media_type: &str) -> Result<(), StorageError> {
        let key_text = key.to_string();
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(&key_text)
            .copy_source(format!("{}/{key_text}", self.bucket))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .content_type(media_type)
            .send()
            .await
            .map_err(request_error("CopyObject (touch)"))?;
        Ok(())
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        bytes: &Bytes,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let mut parts = Vec::new();
        for (index, start) in (0..bytes.len()).step_by(self.part_size).enumerate() {
            let end = (start + self.part_size).min(bytes.len());
            let part_number = i32::try_from(index + 1).map_err(|_| StorageError::Misconfigured {
                detail: "an object needs more parts than S3 allows; raise the part size".into(),
            })?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(bytes.slice(start..end)))
                .send()
                .await
                .map_err(request_error("UploadPart"))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .part_number(part_number)
                    .build(),
            );
        }
        Ok(parts)
    }

    /// Size and media type of an object, or `None` when there is none.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectInfo>, StorageError> {
        match self.client.head_object().bucket(&self.bucket).key(key.to_string()).send().await {
            Ok(head) => Ok(Some(ObjectInfo {
                bytes: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                media_type: head.content_type().unwrap_or("application/octet-stream").to_owned(),
            })),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(error) => Err(request_error("HeadObject")(error)),
        }
    }

    /// Whether an object exists under `key`.
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        Ok(self.head(key).await?.is_some())
    }

    /// How many derivatives of `source` are stored, counting at most `up_to`.
    pub async fn count_derivatives(&self, source: &ObjectKey, up_to: usize) -> Result<usize, StorageError> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(source.derivatives_prefix())
            .max_keys(i32::try_from(up_to).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(request_error("ListObjectsV2"))?;
        Ok(listed.contents().len())
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Object, StorageError> {
        let output = match self.client.get_object().bucket(&self.bucket).key(key.to_string()).send().await {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Err(StorageError::NotFound { key: key.to_string() });
            }
            Err(error) => return Err(request_error("GetObject")(error)),
        };
        let media_type = output.content_type().unwrap_or("application/octet-stream").to_owned();
        let body = output.body.collect().await.map_err(request_error("GetObject body"))?.into_bytes();
        Ok(Object { body, media_type })
    }

    /// Reads the bytes `range` (end exclusive) of an object; the range must be
    /// non-empty and inside the object.
    pub async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, StorageError> {
        let info = self.head(key).await?.ok_or_else(|| StorageError::NotFound { key: key.to_string() })?;
        if range.start >= range.end || range.end > info.bytes {
            return Err(StorageError::RangeNotSatisfiable {
                key: key.to_string(),
                start: range.start,
                end: range.end,
                size: info.bytes,
            });
        }
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.to_string())
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(request_error("GetObject range"))?;
        Ok(output.body.collect().await.map_err(request_error("GetObject body"))?.into_bytes())
    }
}

/// The sha256 content hash of `bytes`, as keys and events write it.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    let digest = Sha256::digest(bytes);
    ContentHash::parse(format!("sha256:{}", hex::encode(digest))).expect("a sha256 digest is a content hash")
}

#[cfg(test)]
mod tests {
    //! Against the embedded endpoint over real HTTP with SigV4.

    use super::*;
    use crate::settings::SecretKey;

    fn brand(id: &str) -> BrandId {
        BrandId::parse(id).expect("brand")
    }

    #[tokio::test]
    async fn a_put_object_reads_back_whole_and_in_ranges_and_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let bytes = Bytes::from_static(b"the quick brown fox jumps over the lazy dog");

        let first = store.put(&brand("acme"), bytes.clone(), "text/plain").await.expect("put");
        assert!(first.newly_stored);
        assert_eq!(first.hash, content_hash(&bytes));
        assert_eq!(
            first.key.to_string(),
            format!("acme/{}", first.hash.as_str().trim_start_matches("sha256:"))
        );
        assert_eq!(first.bytes, bytes.len() as u64);

        let again = store.put(&brand("acme"), bytes.clone(), "text/plain").await.expect("put again");
        assert!(!again.newly_stored, "identical bytes must not be written twice");
        assert_eq!(again.key, first.key);

        let object = store.get(&first.key).await.expect("get");
        assert_eq!(object.body, bytes);
        assert_eq!(object.media_type, "text/plain");
        assert_eq!(
            store.head(&first.key).await.expect("head"),
            Some(ObjectInfo { bytes: bytes.len() as u64, media_type: "text/plain".into() })
        );
        assert_eq!(store.get_range(&first.key, 4..9).await.expect("range"), Bytes::from_static(b"quick"));
        assert!(matches!(
            store.get_range(&first.key, 40..50).await,
            Err(StorageError::RangeNotSatisfiable { size: 43, .. })
        ));

        // The bytes really are in the folder, under the documented layout.
        let on_disk = dir.path().join("gps").join(first.key.to_string());
        assert_eq!(std::fs::read(on_disk).expect("file on disk"), bytes);
    }

    #[tokio::test]
    async fn the_same_bytes_of_two_brands_are_two_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let bytes = Bytes::from_static(b"shared picture");
        let a = store.put(&brand("brand-a"), bytes.clone(), "image/png").await.expect("put a");
        let b = store.put(&brand("brand-b"), bytes, "image/png").await.expect("put b");
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.key, b.key);
        assert!(b.newly_stored, "brand b's copy is its own object");
    }

    #[tokio::test]
    async fn a_pinned_external_bucket_connects_to_the_checked_address_and_never_looks_the_name_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let port =
            server.settings().endpoint.rsplit(':').next().expect("port").trim_end_matches('/').to_owned();
        // A name that resolves nowhere (RFC 6761): only the pin can reach the server.
        let named = StorageSettings {
            endpoint: format!("http://exports.invalid:{port}"),
            pinned_address: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            ..server.settings().clone()
        };
        let bucket = ExternalBucket::new(&named);
        bucket
            .put("pinned/one.txt", Bytes::from_static(b"pinned"), "text/plain")
            .await
            .expect("put through the pin");
        assert!(bucket.head("pinned/one.txt").await.expect("head").is_some());
        let unpinned = ExternalBucket::new(&StorageSettings { pinned_address: None, ..named });
        assert!(
            unpinned.head("pinned/one.txt").await.is_err(),
            "without the pin the name is looked up, and fails"
        );
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _server) = ObjectStore::embedded(dir.path()).await.expect("embedded store");
        let key = ObjectKey::content(&brand("acme"), &content_hash(b"never stored"));
        assert!(!store.exists(&key).await.expect("exists"));
        assert_eq!(store.head(&key).await.expect("head"), None);
        assert!(matches!(store.get(&key).await, Err(StorageError::NotFound { .. })));
        assert!(matches!(store.get_range(&key, 0..1).await, Err(StorageError::NotFound { .. })));
    }

    #[tokio::test]
    async fn a_large_object_goes_up_in_parts_and_reads_back_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = EmbeddedS3::start(dir.path()).await.expect("server");
        let settings = StorageSettings { multipart_part_size: MIN_PART_SIZE, ..server.settings().clone() };
        let store = ObjectStore::connect(&settings).await.expect("connect");
        let bytes: Bytes =
            (0..(2 * MIN_PART_SIZE + 1234)).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();

        let stored = store.put(&brand("acme"), bytes.clone(), "application/octet-stream").await.expect("put");
        assert_eq!(store.get(&stored.key).await.expect("get").body, bytes);
        let boundary = MIN_PART_SIZE as u64;
        assert_eq!(
            store.get_range(&stored.key, boundary - 3..boundary + 3).await.expect("range"),
            bytes.slice(MIN_PART_SIZE - 3..MIN_PART_SIZE + 3)
        );
        // Multipart leaves no part files behind once complete.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().contains("upload"))
            .collect();
        assert!(leftovers.is_empty(), "parts left behind: {leftovers:?}");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_by_the_endpoint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = EmbeddedS3::start(dir.path()).await.expect("server");
        let forged = StorageSettings {
            secret_access_key: SecretKey::new("not-the-secret"),
            ..server.settings().clone()
        };
        let refused = ObjectStore::connect(&forged).await;
        assert!(matches!(refused, Err(StorageError::Request { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn a_part_size_below_the_s3_minimum_is_a_configuration_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = EmbeddedS3::start(dir.path()).await.expect("server");
        let settings = StorageSettings { multipart_part_size: 1024, ..server.settings().clone() };
        assert!(matches!(ObjectStore::connect(&settings).await, Err(StorageError::Misconfigured { .. })));
    }

    #[test]
    fn secrets_never_print() {
        let settings = StorageSettings::new("http://x", "b", "id", SecretKey::new("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
