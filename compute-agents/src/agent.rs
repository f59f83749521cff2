//! A compute agent: the shared durable JetStream consumer (`consume`) of
//! generation events, the engine, and the command path for results.
//!
//! Every agent process binds the same durable consumer, so agents share the
//! work and a crashed agent's unacknowledged generation is redelivered to
//! another after the ack wait. Acknowledgement is explicit and only after the
//! outcome is on the log; a long run sends in-progress heartbeats so it is not
//! redelivered while alive. A retryable failure is negatively acknowledged with
//! a growing delay; at the delivery limit the generation is failed (retryable,
//! so a person can retry it) and recorded as a dead letter, so it never blocks
//! the others. Results go back as commands with deterministic ids, so a
//! redelivered generation reports nothing twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use futures::future::BoxFuture;
use gps_commands::{CommandError, CommandHandler, CommandMeta};
use gps_domain::generation::{Generation, GenerationCommand, GenerationStatus};
use gps_domain::ids::{BrandId, GenerationId, PredictionId};
use gps_domain::prediction::{Prediction, PredictionCommand, Provenance};
use gps_domain::values::{CostMicros, Name, Text};
use gps_domain::wire::EventEnvelope;
use gps_domain::{AggregateKind, DomainError};
use gps_nats::{AggregateAddress, EventLog};
use sha2::{Digest, Sha256};

use crate::consume::{self, ConsumerSpec, ack, header};
use crate::engine::{Engine, RunControl, RunEnd};
use crate::store::CompletedStep;

/// The durable consumer every agent shares.
pub const DURABLE: &str = "gps-compute-agents";
/// The subjects it reads: every generation's events (it acts on requests and retries).
pub const FILTER: &str = "gps.evt.*.generation.*";

/// How an agent consumes.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// This agent's name in `generation.started` (unique per process).
    pub name: String,
    /// The durable consumer's name.
    pub durable: String,
    /// How long a delivery may go without an acknowledgement or heartbeat
    /// before JetStream hands it to another agent.
    pub ack_wait: Duration,
    /// Deliveries before a generation is dead-lettered.
    pub max_deliver: i64,
    /// Generations run at once by this agent.
    pub max_in_flight: usize,
}

impl AgentSettings {
    /// Defaults for an agent named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        AgentSettings {
            name: name.into(),
            durable: DURABLE.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_in_flight: 32,
        }
    }
}

/// Why the agent stopped.
pub type AgentError = crate::consume::ConsumeError;

/// The backoff between redeliveries: the ack wait, then doubling.
fn redelivery_backoff(settings: &AgentSettings) -> Vec<Duration> {
    let count = usize::try_from(settings.max_deliver.max(1)).unwrap_or(1).min(10);
    (0..count).map(|i| settings.ack_wait.saturating_mul(1 << i.min(6))).collect()
}

fn spec(settings: &AgentSettings) -> ConsumerSpec {
    ConsumerSpec {
        durable: settings.durable.clone(),
        filter: FILTER.to_owned(),
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        backoff: redelivery_backoff(settings),
        max_in_flight: settings.max_in_flight,
    }
}

/// Creates (or binds) the shared durable consumer.
pub async fn consumer(log: &EventLog, settings: &AgentSettings) -> Result<PullConsumer, AgentError> {
    consume::bind(log, &spec(settings)).await
}

/// Generation events not yet handed to an agent, and those being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting for an agent.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub in_flight: u64,
}

/// The shared consumer's queue depth.
pub async fn queue_depth(log: &EventLog, settings: &AgentSettings) -> Result<QueueDepth, AgentError> {
    let mut consumer = consumer(log, settings).await?;
    let info = consumer
        .info()
        .await
        .map_err(|e| consume::ConsumeError { durable: settings.durable.clone(), message: e.to_string() })?;
    Ok(QueueDepth { pending: info.num_pending, in_flight: info.num_ack_pending as u64 })
}

/// A command id from its parts; hashed when it would exceed the log's limit.
pub fn command_id(parts: &[&str]) -> String {
    let joined = parts.join(":");
    if joined.len() <= 128 {
        return joined;
    }
    format!("h:{}", hex::encode(Sha256::digest(joined.as_bytes())))
}

/// The prediction id of variant `index` of an attempt: deterministic, so a
/// redelivered generation reports the same predictions.
pub fn prediction_id(brand: &BrandId, generation: &GenerationId, attempt: u32, index: u8) -> PredictionId {
    let digest = Sha256::digest(format!("{brand}/{generation}/{attempt}/{index}").as_bytes());
    PredictionId::parse(format!("p{}", &hex::encode(digest)[..23]))
        .unwrap_or_else(|_| unreachable!("hex digits are a valid id"))
}

struct Shared {
    commands: CommandHandler,
    engine: Arc<Engine>,
    settings: AgentSettings,
}

/// Runs the agent until `shutdown` resolves; generations in flight are left
/// unacknowledged and go to another agent.
pub async fn run(
    commands: CommandHandler,
    engine: Arc<Engine>,
    settings: AgentSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    tracing::info!(agent = %settings.name, durable = %settings.durable, "compute agent consuming generation events");
    let spec = spec(&settings);
    let log = commands.log().clone();
    let shared = Arc::new(Shared { commands, engine, settings });
    let name = shared.settings.name.clone();
    consume::run(
        &log,
        &spec,
        move |message| {
            let shared = shared.clone();
            async move { handle(&shared, message).await }
        },
        shutdown,
    )
    .await?;
    tracing::info!(agent = %name, "compute agent stopped");
    Ok(())
}

async fn handle(shared: &Shared, message: Message) {
    let event_type = header(&message, "Gps-Event-Type").map(str::to_owned);
    if !matches!(event_type.as_deref(), Some("generation.requested" | "generation.retried") | None) {
        ack(&message, AckKind::Ack).await;
        return;
    }
    let envelope: EventEnvelope = match serde_json::from_slice(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "undecodable event on the generation subjects; skipped");
            ack(&message, AckKind::Term).await;
            return;
        }
    };
    if !matches!(envelope.event_type.as_str(), "generation.requested" | "generation.retried") {
        ack(&message, AckKind::Ack).await;
        return;
    }
    let (delivered, stream_sequence) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(_) => (1, 0),
    };
    let Some(address) = AggregateAddress::from_subject(&message.subject) else {
        ack(&message, AckKind::Term).await;
        return;
    };
    let message = Arc::new(message);
    let heartbeat = consume::heartbeat(message.clone(), shared.settings.ack_wait / 3);
    let outcome = work(shared, &address, &envelope).await;
    heartbeat.abort();
    match outcome {
        Ok(()) => ack(&message, AckKind::Ack).await,
        Err(Retry { reason, attempt }) if delivered >= shared.settings.max_deliver => {
            tracing::error!(generation = %address, %reason, delivered, "delivery limit reached; failing and dead-lettering the generation");
            let failed = fail(shared, &address, &envelope, &reason, true, attempt).await;
            let brand = address.brand().clone();
            if let Ok(generation) = GenerationId::parse(address.id()) {
                let _ = shared
                    .engine
                    .store
                    .dead_letter(&brand, &generation, attempt, stream_sequence, delivered as u64, &reason)
                    .await;
            }
            match failed {
                Ok(()) => ack(&message, AckKind::Term).await,
                Err(_) => ack(&message, AckKind::Nak(Some(shared.settings.ack_wait))).await,
            }
        }
        Err(Retry { reason, .. }) => {
            let delay = redelivery_backoff(&shared.settings)
                .get(usize::try_from(delivered - 1).unwrap_or(0))
                .copied()
                .unwrap_or(shared.settings.ack_wait);
            tracing::warn!(generation = %address, %reason, delivered, ?delay, "retryable failure; redelivering later");
            ack(&message, AckKind::Nak(Some(delay))).await;
        }
    }
}

/// A failure worth another delivery.
struct Retry {
    reason: String,
    attempt: u32,
}

fn meta(envelope: &EventEnvelope, parts: &[&str]) -> CommandMeta {
    consume::caused_by(envelope, "compute-agent", parts)
}

fn text(s: &str) -> Text {
    consume::clipped_text(s)
}

fn name(s: &str) -> Name {
    let clipped: String = s.chars().take(Name::MAX_CHARS).collect();
    Name::parse(if clipped.trim().is_empty() { "unknown".to_owned() } else { clipped })
        .unwrap_or_else(|_| unreachable!("clipped, non-empty name"))
}

fn retry_on(error: CommandError, attempt: u32) -> Retry {
    Retry { reason: error.to_string(), attempt }
}

async fn fail(
    shared: &Shared,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    reason: &str,
    retryable: bool,
    attempt: u32,
) -> Result<(), CommandError> {
    let command = GenerationCommand::FailGeneration { reason: text(reason), retryable };
    let meta = meta(envelope, &["fail", address.id(), &attempt.to_string()]);
    match shared.commands.execute::<Generation>(address, &meta, &command).await {
        Ok(_) | Err(CommandError::Rejected { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

async fn work(shared: &Shared, address: &AggregateAddress, envelope: &EventEnvelope) -> Result<(), Retry> {
    let loaded = shared.commands.load::<Generation>(address).await.map_err(|e| retry_on(e, 0))?;
    let state = loaded.state;
    let (Some(request), Some(status)) = (state.request().cloned(), state.status()) else {
        return Ok(());
    };
    let attempt = state.attempt();
    // A request whose generation was retried since is run by the retry's event.
    let current = match envelope.event_type.as_str() {
        "generation.retried" => {
            envelope.payload.get("attempt").and_then(|a| a.as_u64()) == Some(u64::from(attempt))
        }
        _ => attempt == 1,
    };
    if !current || !matches!(status, GenerationStatus::Requested | GenerationStatus::Running) {
        return Ok(());
    }
    let agent = &shared.settings.name;
    let start = GenerationCommand::StartGeneration { agent: name(agent) };
    let start_meta = meta(envelope, &["start", address.id(), &attempt.to_string(), agent]);
    match shared.commands.execute::<Generation>(address, &start_meta, &start).await {
        Ok(_) => {}
        // Cancelled or finished meanwhile.
        Err(CommandError::Rejected { .. }) => return Ok(()),
        Err(error) => return Err(retry_on(error, attempt)),
    }
    let store = &shared.engine.store;
    store
        .begin_run(&request.brand_id, &request.generation_id, attempt, agent)
        .await
        .map_err(|e| Retry { reason: e.to_string(), attempt })?;
    let control = AgentControl { shared, address, envelope, attempt };
    let end = shared.engine.run(&request, attempt, &control).await;
    let (brand, generation) = (request.brand_id.clone(), request.generation_id.clone());
    let end_run = |status: &'static str, reason: Option<String>| {
        let (brand, generation) = (brand.clone(), generation.clone());
        async move {
            let _ = store.end_run(&brand, &generation, attempt, status, reason.as_deref()).await;
        }
    };
    match end {
        RunEnd::Cancelled => {
            end_run("cancelled", None).await;
            Ok(())
        }
        RunEnd::Failed { reason, retryable: false } => {
            fail(shared, address, envelope, &reason, false, attempt)
                .await
                .map_err(|e| retry_on(e, attempt))?;
            end_run("failed", Some(reason)).await;
            Ok(())
        }
        RunEnd::Failed { reason, retryable: true } => Err(Retry { reason, attempt }),
        RunEnd::Completed(outputs) => {
            let input_hashes = request.input_hashes();
            let mut ids = Vec::new();
            for output in outputs {
                let status = match shared.commands.load::<Generation>(address).await {
                    Ok(loaded) => loaded.state.status().unwrap_or(GenerationStatus::Requested),
                    Err(error) => return Err(retry_on(error, attempt)),
                };
                let prediction_id =
                    prediction_id(&request.brand_id, &request.generation_id, attempt, output.index);
                let command = PredictionCommand::ProducePrediction {
                    prediction_id: prediction_id.clone(),
                    brand_id: request.brand_id.clone(),
                    generation_id: request.generation_id.clone(),
                    look_id: request.look_id.clone(),
                    shot_type: request.shot_type.clone(),
                    variant_index: output.index,
                    asset: output.asset.clone(),
                    provenance: Provenance {
                        workflow: request.workflow.clone(),
                        provider: name(&output.provider),
                        model: name(&output.model),
                        seed: output.seed,
                        input_hashes: input_hashes.clone(),
                        prompt: output.prompt.as_deref().map(text),
                    },
                    quality: output.quality.clone(),
                    generation_status: status,
                };
                let prediction = AggregateAddress::new(
                    request.brand_id.clone(),
                    AggregateKind::Prediction,
                    prediction_id.as_str(),
                )
                .map_err(|e| Retry { reason: e.to_string(), attempt })?;
                let produce_meta = meta(envelope, &["produce", prediction_id.as_str()]);
                match shared.commands.execute::<Prediction>(&prediction, &produce_meta, &command).await {
                    Ok(_) => ids.push(prediction_id),
                    // Cancelled meanwhile: it produces nothing more.
                    Err(CommandError::Rejected { error: DomainError::InvalidState(_), .. })
                        if status == GenerationStatus::Cancelled =>
                    {
                        end_run("cancelled", None).await;
                        return Ok(());
                    }
                    Err(CommandError::Rejected { error, .. }) => {
                        let reason = format!("a prediction was refused: {error}");
                        fail(shared, address, envelope, &reason, false, attempt)
                            .await
                            .map_err(|e| retry_on(e, attempt))?;
                        end_run("failed", Some(reason)).await;
                        return Ok(());
                    }
                    Err(error) => return Err(retry_on(error, attempt)),
                }
            }
            let complete = GenerationCommand::CompleteGeneration { prediction_ids: ids };
            let complete_meta = meta(envelope, &["complete", address.id(), &attempt.to_string()]);
            match shared.commands.execute::<Generation>(address, &complete_meta, &complete).await {
                Ok(_) => {
                    end_run("completed", None).await;
                    Ok(())
                }
                Err(CommandError::Rejected { error, .. }) => {
                    tracing::info!(generation = %address, %error, "generation not completed (cancelled or finished meanwhile)");
                    end_run("cancelled", Some(error.to_string())).await;
                    Ok(())
                }
                Err(error) => Err(retry_on(error, attempt)),
            }
        }
    }
}

struct AgentControl<'a> {
    shared: &'a Shared,
    address: &'a AggregateAddress,
    envelope: &'a EventEnvelope,
    attempt: u32,
}

impl RunControl for AgentControl<'_> {
    fn cancelled(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.shared.commands.load::<Generation>(self.address).await {
                Ok(loaded) => loaded.state.status() == Some(GenerationStatus::Cancelled),
                // Unknown: keep working; the next check decides.
                Err(_) => false,
            }
        })
    }

    fn step_completed<'a>(
        &'a self,
        step: &'a str,
        done: &'a CompletedStep,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let command = GenerationCommand::CompleteStep {
                step: name(step),
                provider: name(&done.provider),
                model: name(&done.model),
                duration_ms: done.duration_ms,
                cost: CostMicros(done.cost_micros),
                attempt: done.tries.max(1),
            };
            let meta = meta(self.envelope, &["step", self.address.id(), &self.attempt.to_string(), step]);
            match self.shared.commands.execute::<Generation>(self.address, &meta, &command).await {
                Ok(_) => Ok(()),
                // Cancelled (or taken over and finished) meanwhile: the engine's
                // next cancellation check stops the run.
                Err(CommandError::Rejected { error, .. }) => {
                    tracing::info!(generation = %self.address, %error, "step report refused");
                    Ok(())
                }
                Err(error) => Err(error.to_string()),
            }
        })
    }
}
