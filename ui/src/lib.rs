//! The GPS UI: Dioxus LiveView components served by the gateway (components
//! run on the server; the browser gets DOM patches). Filled by the UI issue.
//!
//! Architecture invariant: the UI reaches data only through the gateway's
//! queries and commands; it depends on no sqlx or NATS crate.
