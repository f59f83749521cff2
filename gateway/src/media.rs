//! Media: the object store as the gateway uses it — upload limits, and signed
//! URLs for the CDN route.
//!
//! Brand content is private. A URL the API hands out is
//! `<public base>/cdn/<key>?exp=<unix seconds>&sig=<hex HMAC-SHA256>`, the
//! HMAC over `<key>\n<exp>` with a secret only the gateways know. The route
//! refuses URLs without a valid, unexpired signature, so a key alone — even a
//! guessed or leaked one of another brand — reads nothing. Expiry is rounded
//! up to the next whole lifetime window, so the same object gets the same URL
//! for a while and browsers and a CDN in front can cache it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::net::SocketAddr;

use aws_lc_rs::hmac;
use gps_storage::fetch::{FetchLimits, SafeFetcher};
use gps_storage::{ObjectKey, ObjectStore};

use crate::archive::ArchiveLimits;
use crate::images::ImageLimits;

/// The secret that signs CDN URLs. Never printed.
#[derive(Clone)]
pub struct UrlSigningKey(Vec<u8>);

impl UrlSigningKey {
    /// Wraps a secret of at least 32 bytes (e.g. 64 hex digits).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, String> {
        let secret = secret.into();
        if secret.len() < 32 {
            return Err(format!("the URL signing key has {} bytes; give at least 32", secret.len()));
        }
        Ok(UrlSigningKey(secret))
    }

    /// A fresh random key (for tests and a first `gps up`).
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source is available");
        UrlSigningKey(hex::encode(secret).into_bytes())
    }
}

impl fmt::Debug for UrlSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UrlSigningKey(***)")
    }
}

/// How the gateway takes uploads and hands out URLs.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// The largest request body an upload may have, in bytes.
    pub max_upload_bytes: u64,
    /// The pixel limits of uploaded images.
    pub image_limits: ImageLimits,
    /// Where `/cdn/…` is reachable from browsers, e.g. `https://cdn.example.com`;
    /// empty means URLs are relative (`/cdn/…`, served by this gateway).
    pub public_base_url: String,
    /// The secret signing CDN URLs.
    pub url_signing_key: UrlSigningKey,
    /// How long a handed-out URL stays valid (at least this, at most twice).
    pub url_lifetime: Duration,
    /// The limits of catalog imports.
    pub imports: ImportSettings,
}

/// The limits of catalog imports (`POST …/imports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSettings {
    /// The largest request body (catalog plus ZIP), in bytes. The body is held
    /// in memory while it is checked, so this bounds an import's memory.
    pub max_body_bytes: u64,
    /// The largest catalog file, in bytes.
    pub max_catalog_bytes: u64,
    /// The most data rows one catalog may have.
    pub max_rows: u32,
    /// The most image references one catalog may have (all rows together).
    pub max_images: u32,
    /// The limits of the image ZIP (entries, per-file and total inflated size).
    pub archive: ArchiveLimits,
    /// The limits of fetching one image URL (size, time, redirects).
    pub fetch: FetchLimits,
    /// Socket addresses image URLs may reach although they are internal
    /// (e.g. an on-premises image server). Empty by default: image URLs reach
    /// public internet addresses only.
    pub fetch_allow: Vec<SocketAddr>,
    /// How many rows make one progress event.
    pub progress_every_rows: u32,
    /// How often a gateway looks for running imports that have no runner
    /// (their gateway died, or their start was never answered) and resumes them.
    pub resume_unfinished_every: std::time::Duration,
    /// The most imports one gateway runs at once (each holds its files in
    /// memory and a database connection for its runner lock).
    pub max_running: usize,
    /// The most imports of one brand running at once.
    pub max_running_per_brand: usize,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            max_body_bytes: 256 * 1024 * 1024,
            max_catalog_bytes: 20 * 1024 * 1024,
            max_rows: 10_000,
            max_images: 50_000,
            archive: ArchiveLimits::default(),
            fetch: FetchLimits::default(),
            fetch_allow: Vec::new(),
            progress_every_rows: 50,
            resume_unfinished_every: std::time::Duration::from_secs(30),
            max_running: 4,
            max_running_per_brand: 2,
        }
    }
}

impl MediaSettings {
    /// Defaults: 40 MB uploads, 50-megapixel images, relative URLs valid for a day.
    pub fn new(url_signing_key: UrlSigningKey) -> Self {
        MediaSettings {
            max_upload_bytes: 40 * 1024 * 1024,
            image_limits: ImageLimits::default(),
            public_base_url: String::new(),
            url_signing_key,
            url_lifetime: Duration::from_secs(24 * 3600),
            imports: ImportSettings::default(),
        }
    }
}

/// The object store and the settings, shared by the handlers.
#[derive(Debug, Clone)]
pub struct Media {
    inner: Arc<MediaInner>,
}

#[derive(Debug)]
struct MediaInner {
    store: ObjectStore,
    settings: MediaSettings,
    key: hmac::Key,
    fetcher: SafeFetcher,
}

/// Why a CDN URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No `exp` / `sig` parameters.
    Unsigned,
    /// The expiry has passed.
    Expired,
    /// The signature does not match the key and expiry.
    Forged,
}

impl Media {
    /// Media over `store` with `settings`.
    pub fn new(store: ObjectStore, settings: MediaSettings) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &settings.url_signing_key.0);
        let fetcher = settings
            .imports
            .fetch_allow
            .iter()
            .fold(SafeFetcher::new(settings.imports.fetch), |fetcher, address| fetcher.allowing(*address));
        Media { inner: Arc::new(MediaInner { store, settings, key, fetcher }) }
    }

    /// The SSRF-safe fetcher of catalog image URLs.
    pub fn fetcher(&self) -> &SafeFetcher {
        &self.inner.fetcher
    }

    /// The object store.
    pub fn store(&self) -> &ObjectStore {
        &self.inner.store
    }

    /// The settings.
    pub fn settings(&self) -> &MediaSettings {
        &self.inner.settings
    }

    fn message(key: &str, expires: u64) -> String {
        format!("{key}\n{expires}")
    }

    /// A signed URL of `key`, valid for at least the configured lifetime.
    pub fn signed_url(&self, key: &ObjectKey) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let window = self.inner.settings.url_lifetime.as_secs().max(60);
        let expires = (now / window + 2) * window;
        self.signed_url_expiring(key, expires)
    }

    /// A signed URL of `key` that expires at `expires` (unix seconds).
    pub fn signed_url_expiring(&self, key: &ObjectKey, expires: u64) -> String {
        let key_text = key.to_string();
        let tag = hmac::sign(&self.inner.key, Self::message(&key_text, expires).as_bytes());
        format!(
            "{}/cdn/{key_text}?exp={expires}&sig={}",
            self.inner.settings.public_base_url.trim_end_matches('/'),
            hex::encode(tag.as_ref())
        )
    }

    /// Checks a request's `exp` and `sig` for `key`.
    pub fn verify(
        &self,
        key: &str,
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<(), SignatureProblem> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(SignatureProblem::Unsigned);
        };
        let expires: u64 = expires.parse().map_err(|_| SignatureProblem::Forged)?;
        let signature = hex::decode(signature).map_err(|_| SignatureProblem::Forged)?;
        hmac::verify(&self.inner.key, Self::message(key, expires).as_bytes(), &signature)
            .map_err(|_| SignatureProblem::Forged)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
        if expires < now {
            return Err(SignatureProblem::Expired);
        }
        Ok(())
    }
}
