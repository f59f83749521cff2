//! GPS read models in Postgres: durable JetStream consumers that apply events
//! to tables in one transaction with their checkpoint, rebuildable from
//! sequence 1, and the queries the gateway answers from them.
//!
//! Layout:
//! - [`db`]: the `gps_read` database (created if missing) and its pool.
//! - [`projection`]: the [`Projection`] definition (name, subject filters,
//!   schema, migrations, `apply`) and the list of all projections.
//! - [`event`]: decoding a stored message into a typed event, or the reason
//!   it goes to the dead-letter table.
//! - [`runner`]: one runner per projection: an advisory lock (one active
//!   runner per projection), a durable pull consumer whose deliveries are
//!   checked to be contiguous (a gap or a reconnect re-reads from the
//!   checkpoint), batches applied in one transaction with the checkpoint
//!   (multi-row statements, bisected around a poison event), acknowledged
//!   after commit; the checkpoint records the log's identity and the
//!   filters, and a store of another log is refused.
//! - [`rebuild`]: replay into a shadow schema and swap it in (one rebuild per
//!   projection at a time); [`rebuild::status`] and
//!   [`rebuild::binding_problems`] (for readiness).
//! - [`dead_letters`]: applying dead-lettered events again after a fix.
//! - [`queries`]: brand-scoped get/list functions with cursor pagination, and
//!   read-your-writes ([`queries::wait_for_sequence`]).
//! - [`audit`]: history with state after each event, as-of rebuilds, log and
//!   read-model verification, export bundles (for auditors).
//! - [`accounts`]: who can sign in (the `accounts` read model of person
//!   events), opened with the privacy vault.
//! - [`privacy`]: the privacy vault (`privacy` schema of the credentials
//!   database, not of the read database): one key per person for
//!   crypto-shredding sealed personal data; queries open sealed data with it.
//! - `models`: the per-projection `apply` functions (private).
//!
//! Storage layout: one Postgres schema per projection (`brands`, `catalog`,
//! `production`, `review`, `delivery`, `activity`, `accounts`). Each schema holds its
//! tables, its own `_sqlx_migrations`, its `checkpoint` row and its
//! `dead_letters`, so a rebuilt shadow schema carries everything it needs and
//! the swap is two renames.
//!
//! Architecture invariant: projections read the event log and write their own
//! database (`gps_read`); they depend on no HTTP crate, and nothing writes
//! their tables but them.

pub mod accounts;
pub mod audit;
pub mod db;
pub mod dead_letters;
pub mod event;
mod models;
pub mod privacy;
pub mod projection;
pub mod queries;
pub mod rebuild;
pub mod runner;

pub use db::{DEFAULT_DATABASE_URL, DbError, connect};
pub use dead_letters::{RetryReport, retry_dead_letters};
pub use projection::{ALL, Projection, by_name, prepare_all};
pub use queries::{NotYetConsistent, wait_for_sequence};
pub use rebuild::{ProjectionStatus, RebuildReport, binding_problems, readiness_problems, rebuild, status};
pub use runner::{LiveNotice, RunError, RunnerOptions, RunnerState, run_all, run_projection};
