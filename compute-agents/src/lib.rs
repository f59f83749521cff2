//! GPS compute agents: the workflow engine, its steps, AI provider adapters and
//! the compute task state (its own database). Filled by the compute issue.
//!
//! Architecture invariant: an agent needs nothing but a generation-requested
//! event (it reads no business read model), and it writes results back only
//! through the command path; it depends on no HTTP server crate.
