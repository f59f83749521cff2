//! Object storage for GPS: immutable, content-addressed objects over the S3
//! protocol, shared by the gateway (uploads, the CDN route), the compute agents
//! (generated images) and exports.
//!
//! Layout:
//! - `key`: [`ObjectKey`], the only way to name an object (see its docs for the
//!   exact key layout);
//! - `settings`: [`StorageSettings`], endpoint, region, bucket, credentials;
//! - `store`: [`ObjectStore`], put / get / head / ranges / exists through
//!   `aws-sdk-s3`, multipart for large objects;
//! - `embedded`: [`EmbeddedS3`], an S3-compatible endpoint served in-process
//!   over a local folder (`s3s` + `s3s-fs`) on 127.0.0.1, reached by the same
//!   client code over real HTTP with SigV4, so one code path serves both;
//! - `sweep`: [`ObjectStore::sweep`], deleting orphaned objects and aborting
//!   abandoned multipart uploads;
//! - `fetch`: [`SafeFetcher`], fetching URLs given by others (catalog image
//!   URLs, export webhooks) without reaching internal addresses (SSRF).
//!
//! Objects never change: the key of a content object is the sha256 of its
//! bytes, so storing the same bytes twice stores them once, and a key read
//! today reads the same bytes forever.
//!
//! This crate depends on no HTTP framework, database or broker (no axum, sqlx,
//! NATS): it is a library every role can link.

mod embedded;
pub mod fetch;
mod key;
mod settings;
mod store;
mod sweep;

pub use embedded::EmbeddedS3;
pub use fetch::{FetchError, FetchLimits, Fetched, Posted, SafeFetcher};
pub use key::{InvalidKey, ObjectKey};
pub use settings::{SecretKey, StorageSettings};
pub use store::{
    ExternalBucket, ExternalObject, Object, ObjectInfo, ObjectStore, StorageError, StoredObject,
    WriteCondition, WriteOutcome, content_hash,
};
pub use sweep::{MIN_GRACE, References, SweepReport};
