//! GPS compute agents: the workflow engine, its steps, AI provider adapters and
//! the compute task state (its own database).
//!
//! Layout:
//! - `workflow`: declarative DAG files (`schemas/workflows/*.toml`), parsed and checked.
//! - `engine`: runs one attempt of a generation, node by node, concurrently
//!   where the DAG allows, persisting each node (and each remote job) so a
//!   redelivered generation resumes instead of paying twice.
//! - `providers`: the `Provider` trait with capabilities and the adapters
//!   `local`, `fal`, `gemini`, `http-worker`.
//! - `router`: routing by capability, retries with jittered backoff on retryable
//!   errors only, fallback, concurrency and rate limits, circuit breaker, prices.
//! - `quality`: the quality gate (resolution, blur, CIEDE2000 colour fidelity).
//! - `imaging`: deterministic image operations.
//! - `blobs`: the object-storage operations the engine needs.
//! - `store`: the compute database (`gps_compute`): runs, steps, dead letters.
//! - `consume`: the shared durable JetStream consumer loop of both worker roles
//!   (pulls only what it can start, heartbeats what it holds).
//! - `supervise`: restarts a role's consume loop with backoff and reports it
//!   in readiness (`RoleHealth`).
//! - `agent`: the compute agent on it, and the command path back.
//! - `delivery`: stage 5 — the delivery worker (formatting, C2PA content
//!   credentials, ZIP / S3 / webhook destinations) on the same consumer loop.
//! - `secrets`: the sealed delivery secrets (webhook secrets, S3 credentials).
//!
//! Architecture invariant: an agent needs nothing but a generation-requested
//! event (it reads no business read model), and it writes results back only
//! through the command path; it depends on no HTTP server crate.

pub mod agent;
pub mod animation;
pub mod blobs;
pub mod consume;
pub mod delivery;
pub mod engine;
pub mod imaging;
pub mod providers;
pub mod quality;
pub mod router;
pub mod secrets;
pub mod store;
pub mod supervise;
pub mod workflow;
