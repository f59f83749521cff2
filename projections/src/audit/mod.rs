//! What auditors need: the history of any aggregate with the state after each
//! event, the read models as they stood at any instant, proof that the log was
//! not altered (and that the read models are what the log says), and a
//! self-contained export bundle an outsider can verify with its files alone.
//!
//! Layout:
//! - [`verify`]: walks the log: hash chains, contiguous versions, each event
//!   decoding against its schema version, a valid actor; names the first break.
//! - [`history`]: every event of one aggregate with actor, time, command and
//!   correlation ids, and the aggregate's state after it (the domain's own
//!   `evolve`, step by step), optionally as of an instant.
//! - [`trail`]: who read which history, when (every read is on the record).
//! - [`as_of`]: every read model rebuilt into separate schemas from the events
//!   the log held at an instant, through the projections' own replay (a time
//!   cutoff on [`crate::rebuild`]'s path, not a second implementation).
//! - [`compare`]: rebuilds each read model into a shadow schema up to the live
//!   checkpoint and compares table by table (row counts and content checksums).
//! - [`bundle`]: export of a brand's events for a time window with the schemas
//!   they use, the verification report and a checksum file; and its offline
//!   verification, which checks payloads against the bundle's own schema
//!   files with [`schema_check`].
//!
//! "As of T" means: the events the server had stored at T (its storage time,
//! the log's own clock), so an as-of view shows what anyone could have seen
//! then, independent of client clocks.
//!
//! Architecture invariant: reads the log through `gps-nats` and writes only
//! schemas it names after a projection (`<schema>_asof_…`, `<schema>_verify`);
//! it changes no event and no live read model.

pub mod as_of;
pub mod bundle;
pub mod compare;
pub mod history;
pub mod schema_check;
pub mod trail;
pub mod verify;

/// Why an audit operation failed (as opposed to finding a problem, which is a
/// report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The event log could not be read.
    #[error("event log: {0}")]
    Log(#[from] gps_nats::LoadError),
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A projection replay failed.
    #[error("{0}")]
    Run(#[from] crate::RunError),
    /// A file of a bundle could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The request itself is not valid (an unknown aggregate type, a bad time).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn file_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::File { path: path.display().to_string(), source }
}

/// Formats an instant as RFC 3339 in UTC.
pub(crate) fn rfc3339(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
