//! GPS read models in Postgres: durable JetStream consumers that apply events
//! to tables in one transaction with their checkpoint, rebuildable from
//! sequence 1. Filled by the read-side issue.
//!
//! Architecture invariant: projections read the event log and write their own
//! database (`gps_read`); they depend on no HTTP crate, and nothing writes
//! their tables but them.
