//! Where inputs are read from and outputs written to: object storage, by
//! content hash, per brand. The agent binary implements [`Blobs`] over the S3
//! client of `gps-storage`; the engine only needs these two operations.

use bytes::Bytes;
use futures::future::BoxFuture;
use gps_domain::ids::BrandId;
use gps_domain::values::{AssetRef, ContentHash};
use sha2::{Digest, Sha256};

/// Why object storage failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("object storage: {message}")]
pub struct BlobError {
    /// What happened.
    pub message: String,
    /// Whether trying again may help (the store was unreachable).
    pub retryable: bool,
}

/// Content-addressed object storage as the engine sees it.
pub trait Blobs: Send + Sync + 'static {
    /// The bytes of `hash` in `brand`'s storage.
    fn get<'a>(
        &'a self,
        brand: &'a BrandId,
        hash: &'a ContentHash,
    ) -> BoxFuture<'a, Result<Bytes, BlobError>>;
    /// Stores `bytes` under their content hash (idempotent: the same bytes are
    /// the same object).
    fn put<'a>(
        &'a self,
        brand: &'a BrandId,
        hash: &'a ContentHash,
        bytes: Bytes,
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>>;
}

/// The content hash of `bytes`.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    let digest = Sha256::digest(bytes);
    ContentHash::parse(format!("sha256:{}", hex::encode(digest)))
        .unwrap_or_else(|_| unreachable!("a sha256 digest is 64 hex digits"))
}

/// Stores `bytes` and describes them as an asset (with pixel size for images).
pub async fn store(
    blobs: &dyn Blobs,
    brand: &BrandId,
    bytes: Bytes,
    media_type: &str,
) -> Result<AssetRef, BlobError> {
    let hash = content_hash(&bytes);
    let size = bytes.len() as u64;
    let dimensions = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_dimensions().ok());
    blobs.put(brand, &hash, bytes, media_type).await?;
    Ok(AssetRef {
        hash,
        media_type: media_type.to_owned(),
        bytes: size,
        width: dimensions.map(|d| d.0),
        height: dimensions.map(|d| d.1),
    })
}

/// The object store of `gps-storage` (S3 protocol, content-addressed keys
/// `<brand>/<sha256>`), as the engine's blob store.
impl Blobs for gps_storage::ObjectStore {
    fn get<'a>(
        &'a self,
        brand: &'a BrandId,
        hash: &'a ContentHash,
    ) -> BoxFuture<'a, Result<Bytes, BlobError>> {
        Box::pin(async move {
            let key = gps_storage::ObjectKey::content(brand, hash);
            match gps_storage::ObjectStore::get(self, &key).await {
                Ok(object) => Ok(object.body),
                Err(error @ gps_storage::StorageError::NotFound { .. }) => Err(BlobError {
                    message: format!("input {hash} is not in {brand}'s storage ({error}); upload it again"),
                    retryable: false,
                }),
                Err(error) => Err(BlobError { message: error.to_string(), retryable: true }),
            }
        })
    }

    fn put<'a>(
        &'a self,
        brand: &'a BrandId,
        hash: &'a ContentHash,
        bytes: Bytes,
        media_type: &'a str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let key = gps_storage::ObjectKey::content(brand, hash);
            gps_storage::ObjectStore::put_at(self, &key, bytes, media_type)
                .await
                .map(|_| ())
                .map_err(|error| BlobError { message: error.to_string(), retryable: true })
        })
    }
}
