//! The GPS event log on NATS JetStream.
//!
//! Layout:
//! - [`connect`]: connecting, and refusing servers older than 2.12.
//! - [`stream`]: the `GPS_EVENTS` stream definition, idempotent provisioning
//!   and drift reports.
//! - [`subjects`]: `gps.evt.<brand>.<aggregate>.<id>`, built only from parsed ids.
//! - [`chain`]: canonical bytes and the per-aggregate hash chain, and its verification.
//! - [`log`]: [`EventLog`]: append with optimistic concurrency (one message or one
//!   atomic batch per command), load an aggregate's events, durable consumers.
//! - [`identity`]: which log a derived store belongs to ([`check_binding`]).
//! - [`snapshots`]: the latest state of long aggregates, a cache anchored to an event.
//! - [`scan`]: [`LogScan`], the raw record in stream order with storage times (auditors),
//!   and [`LogFollow`], the same followed live (downstream event streams).
//!
//! Architecture invariant: this crate knows JetStream and the envelope, not the
//! business rules; it depends on no sqlx or axum. Everything else in GPS reaches
//! the log through [`EventLog`].

pub mod chain;
pub mod connect;
pub mod error;
pub mod identity;
pub mod log;
pub mod metrics;
pub mod scan;
pub mod server;
pub mod snapshots;
pub mod stream;
pub mod subjects;

pub use chain::ChainBreak;
pub use connect::{
    ConnectSettings, Credentials, MIN_SERVER_VERSION, Password, ServerVersion, connect, connect_as,
    connect_with,
};
pub use error::{AppendError, ConnectError, LoadError, ProvisionError};
pub use identity::{Binding, BindingError, LogIdentity, LogState, check_binding};
pub use log::{
    AppendRequest, Appended, ChainReport, CommandMeta, EventLog, ExpectedPosition, LoadedStream, NewEvent,
};
pub use scan::{LogFollow, LogScan, ScannedMessage};
pub use snapshots::Snapshot;
pub use stream::{Drift, ProvisionReport, StreamSettings};
pub use subjects::AggregateAddress;

/// Header naming the event type, so consumers can filter without parsing bodies.
pub const HEADER_EVENT_TYPE: &str = "Gps-Event-Type";
/// Header carrying the event's schema version.
pub const HEADER_SCHEMA_VERSION: &str = "Gps-Schema-Version";
/// Header carrying the event's aggregate version.
pub const HEADER_AGGREGATE_VERSION: &str = "Gps-Aggregate-Version";
/// JetStream's deduplication header; the command id on a command's first event.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header carrying the command id on every event of a command (the first
/// message also carries it as `Nats-Msg-Id`).
pub const HEADER_COMMAND_ID: &str = "Gps-Command-Id";
