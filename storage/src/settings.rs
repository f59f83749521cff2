//! Where the object store is: any S3-compatible endpoint (AWS S3, MinIO, R2,
//! GCS interoperability) or the embedded one.

use std::fmt;

/// A secret that never prints (Debug and Display show `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wraps a secret read from the environment.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretKey(secret.into())
    }

    /// The secret itself, for the one place that signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// How to reach an S3-compatible object store.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageSettings {
    /// The endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://127.0.0.1:9000` (MinIO).
    pub endpoint: String,
    /// The signing region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// The bucket that holds every GPS object; created if missing.
    pub bucket: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: SecretKey,
    /// Address buckets in the path (`endpoint/bucket/key`) instead of the host
    /// name; MinIO and the embedded endpoint need it.
    pub path_style: bool,
    /// Objects of at least this many bytes are written with a multipart upload
    /// in parts of this size (at least 5 MiB, the S3 minimum part size).
    pub multipart_part_size: usize,
    /// When set, the endpoint's host name is never looked up: every
    /// connection goes to this address (checked by the caller), so a DNS
    /// answer that changes after the check cannot redirect the requests.
    pub pinned_address: Option<std::net::IpAddr>,
}

/// The smallest part S3 accepts (except the last part of an upload).
pub(crate) const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

impl StorageSettings {
    /// Settings for an S3-compatible endpoint with the defaults GPS uses:
    /// region `us-east-1`, path-style addressing, 8 MiB parts.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: SecretKey,
    ) -> Self {
        StorageSettings {
            endpoint: endpoint.into(),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key_id: access_key_id.into(),
            secret_access_key,
            path_style: true,
            multipart_part_size: 8 * 1024 * 1024,
            pinned_address: None,
        }
    }
}
