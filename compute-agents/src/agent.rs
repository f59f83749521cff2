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
use gps_domain::generation::{Generation, GenerationCommand, GenerationStatus, GenerationStepCompleted};
use gps_domain::ids::{BrandId, GenerationId, PredictionId};
use gps_domain::prediction::{Prediction, PredictionCommand, Provenance};
use gps_domain::values::{CostMicros, Name, Text};
use gps_domain::wire::EventEnvelope;
use gps_domain::{AggregateKind, DomainError};
use gps_nats::{AggregateAddress, EventLog};
use sha2::{Digest, Sha256};

use crate::consume::{self, AbortOnDrop, ConsumerSpec, ack, header};
use crate::engine::{Engine, RunControl, RunEnd};
use crate::store::{CompletedStep, Lease, LeaseOutcome, NodeKey};
use crate::supervise::{self, RoleHealth};

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
        wanted: |message| header(message, "Gps-Event-Type").is_none_or(is_work),
    }
}

/// Whether an event of type `event_type` starts work for an agent.
fn is_work(event_type: &str) -> bool {
    matches!(event_type, "generation.requested" | "generation.retried")
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
/// unacknowledged and go to another agent. Unsupervised health: see [`run_with`].
pub async fn run(
    commands: CommandHandler,
    engine: Arc<Engine>,
    settings: AgentSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    run_with(commands, engine, settings, RoleHealth::new("compute-agent"), shutdown).await
}

/// The name of the stream that keeps the max-deliveries advisories of the
/// consumer `durable` on `stream`.
pub fn gave_up_stream(stream: &str, durable: &str) -> String {
    format!("{stream}_GAVE_UP_{}", durable.replace(['.', '*', '>', ' '], "_"))
}

/// Refuses a compute database that belongs to another event log, recording
/// this one on first use.
pub async fn check_log_binding(
    log: &EventLog,
    store: &crate::store::ComputeStore,
    what: &str,
) -> Result<(), AgentError> {
    let refuse = |message: String| consume::ConsumeError { durable: what.to_owned(), message };
    let state = log.state().await.map_err(|e| refuse(e.to_string()))?;
    store.bind_to_log(&state, what).await.map_err(|e| refuse(e.to_string()))
}

/// Runs the agent under supervision until `shutdown` resolves: the consume
/// loop is restarted with backoff when its consumer is deleted or its pull
/// fails, and `health` says whether it is bound. Refuses to start (an error,
/// no work taken) when the compute database belongs to another event log.
pub async fn run_with(
    commands: CommandHandler,
    engine: Arc<Engine>,
    settings: AgentSettings,
    health: RoleHealth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let log = commands.log().clone();
    check_log_binding(&log, &engine.store, "compute database").await?;
    tracing::info!(agent = %settings.name, durable = %settings.durable, "compute agent consuming generation events");
    let spec = spec(&settings);
    let shared = Arc::new(Shared { commands, engine, settings });
    let name = shared.settings.name.clone();
    let gave_up = {
        let shared = shared.clone();
        AbortOnDrop::spawn(async move {
            supervise::supervise(
                RoleHealth::new("compute-agent-gave-up"),
                supervise::Backoff::default(),
                |stop| {
                    let shared = shared.clone();
                    async move { run_gave_up(&shared, stop).await }
                },
                std::future::pending::<()>(),
            )
            .await;
        })
    };
    let session_health = health.clone();
    supervise::supervise(
        health,
        supervise::Backoff::default(),
        |stop| {
            let shared = shared.clone();
            let log = log.clone();
            let spec = spec.clone();
            let health = session_health.clone();
            async move {
                let handler_shared = shared.clone();
                consume::run(
                    &log,
                    &spec,
                    &health,
                    move |message| {
                        let shared = handler_shared.clone();
                        async move { handle(&shared, message).await }
                    },
                    stop,
                )
                .await
            }
        },
        shutdown,
    )
    .await;
    drop(gave_up);
    tracing::info!(agent = %name, "compute agent stopped");
    Ok(())
}

/// One session of the max-deliveries watcher: fails each generation whose
/// last allowed delivery was not acknowledged (its agent died), once.
async fn run_gave_up(
    shared: &Shared,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), consume::ConsumeError> {
    use async_nats::jetstream::{consumer, stream};
    let log = shared.commands.log();
    let durable = &shared.settings.durable;
    let problem =
        |message: String| consume::ConsumeError { durable: format!("{durable} (gave up)"), message };
    let name = gave_up_stream(&log.settings().name, durable);
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{durable}", log.settings().name);
    let advisories = log
        .jetstream()
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(30 * 24 * 3600),
            // As many copies as the log: losing one node must not stop this loop.
            num_replicas: log.settings().replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| problem(e.to_string()))?;
    let consumer: consumer::PullConsumer = advisories
        .get_or_create_consumer(
            "gave-up",
            consumer::pull::Config {
                durable_name: Some("gave-up".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| problem(e.to_string()))?;
    tokio::pin!(stop);
    loop {
        let mut batch = tokio::select! {
            () = &mut stop => return Ok(()),
            batch = consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages() => {
                batch.map_err(|e| problem(e.to_string()))?
            }
        };
        while let Some(message) = tokio::select! {
            () = &mut stop => return Ok(()),
            next = futures::StreamExt::next(&mut batch) => next,
        } {
            let message = message.map_err(|e| problem(e.to_string()))?;
            match gave_up(shared, &message.payload).await {
                Ok(()) => ack(&message, AckKind::Ack).await,
                Err(reason) => {
                    tracing::warn!(%reason, "a generation that ran out of deliveries could not be failed yet");
                    ack(&message, AckKind::Nak(Some(Duration::from_secs(5)))).await;
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// Fails the generation whose event at the advisory's stream sequence ran
/// out of deliveries, if that attempt is still unfinished.
async fn gave_up(shared: &Shared, advisory: &[u8]) -> Result<(), String> {
    let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(advisory) else {
        tracing::error!("an unreadable max-deliveries advisory; skipped");
        return Ok(());
    };
    let log = shared.commands.log();
    let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(|e| e.to_string())?;
    let message = stream.direct_get(advisory.stream_seq).await.map_err(|e| e.to_string())?;
    let Some(address) = AggregateAddress::from_subject(&message.subject) else { return Ok(()) };
    let Ok(envelope) = serde_json::from_slice::<EventEnvelope>(&message.payload) else { return Ok(()) };
    if !matches!(envelope.event_type.as_str(), "generation.requested" | "generation.retried") {
        return Ok(());
    }
    let loaded = shared.commands.load::<Generation>(&address).await.map_err(|e| e.to_string())?;
    let state = loaded.state;
    let attempt = state.attempt();
    let current = match envelope.event_type.as_str() {
        "generation.retried" => {
            envelope.payload.get("attempt").and_then(|a| a.as_u64()) == Some(u64::from(attempt))
        }
        _ => attempt == 1,
    };
    if !current || !matches!(state.status(), Some(GenerationStatus::Requested | GenerationStatus::Running)) {
        return Ok(());
    }
    let plural = if advisory.deliveries == 1 { "delivery" } else { "deliveries" };
    let reason = format!(
        "gave up after {} {plural}: the agent working on it stopped before finishing (it crashed or was killed); retry the generation",
        advisory.deliveries
    );
    tracing::error!(generation = %address, %reason, "failing a generation that ran out of deliveries");
    // Recorded first, so whoever sees the failure on the log finds the dead letter.
    if let Ok(generation) = GenerationId::parse(address.id()) {
        let store = &shared.engine.store;
        store
            .dead_letter(
                address.brand(),
                &generation,
                attempt,
                advisory.stream_seq,
                advisory.deliveries,
                &reason,
            )
            .await
            .map_err(|e| e.to_string())?;
        let _ = store.end_unleased_run(address.brand(), &generation, attempt, "failed", &reason).await;
    }
    fail(shared, &address, &envelope, &reason, true, attempt).await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn handle(shared: &Shared, message: Arc<Message>) {
    let envelope: EventEnvelope = match serde_json::from_slice(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "undecodable event on the generation subjects; skipped");
            ack(&message, AckKind::Term).await;
            return;
        }
    };
    if !is_work(&envelope.event_type) {
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
    // The consume loop heartbeats the message from its receipt until this returns.
    match work(shared, &address, &envelope).await {
        Ok(Done::Ack) => ack(&message, AckKind::Ack).await,
        // The copy that took the lease over holds (and will acknowledge) it.
        Ok(Done::LeaseLost) => {}
        Err(Retry { reason, attempt }) if delivered >= shared.settings.max_deliver => {
            tracing::error!(generation = %address, %reason, delivered, "delivery limit reached; failing and dead-lettering the generation");
            let brand = address.brand().clone();
            if let Ok(generation) = GenerationId::parse(address.id()) {
                let _ = shared
                    .engine
                    .store
                    .dead_letter(&brand, &generation, attempt, stream_sequence, delivered as u64, &reason)
                    .await;
            }
            let failed = fail(shared, &address, &envelope, &reason, true, attempt).await;
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

/// How a delivery ended without a failure.
enum Done {
    /// Finished (or nothing to do): acknowledge.
    Ack,
    /// Another copy took the run over: leave the message to it.
    LeaseLost,
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

async fn work(shared: &Shared, address: &AggregateAddress, envelope: &EventEnvelope) -> Result<Done, Retry> {
    let (state, _) = shared.commands.current::<Generation>(address).await.map_err(|e| retry_on(e, 0))?;
    let (Some(request), Some(status)) = (state.request().cloned(), state.status()) else {
        return Ok(Done::Ack);
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
        return Ok(Done::Ack);
    }
    let agent = &shared.settings.name;
    let store = &shared.engine.store;
    let ttl = shared.settings.ack_wait;
    // This copy's lease on the attempt; another copy holding it is waited for.
    let owner = format!("{agent}#{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let lease = loop {
        match store.acquire_lease(&request.brand_id, &request.generation_id, attempt, &owner, ttl).await {
            Ok(LeaseOutcome::Acquired(lease)) => break lease,
            Ok(LeaseOutcome::Held { owner: holder, remaining }) => {
                tracing::info!(generation = %address, %holder, ?remaining, "another copy runs this generation; waiting");
                tokio::time::sleep(
                    remaining.clamp(Duration::from_millis(100), ttl / 3) + Duration::from_millis(50),
                )
                .await;
                let (state, _) =
                    shared.commands.current::<Generation>(address).await.map_err(|e| retry_on(e, attempt))?;
                if state.attempt() != attempt
                    || !matches!(
                        state.status(),
                        Some(GenerationStatus::Requested | GenerationStatus::Running)
                    )
                {
                    return Ok(Done::Ack);
                }
            }
            Err(error) => return Err(Retry { reason: error.to_string(), attempt }),
        }
    };
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _renewal = {
        let (store, lease, lost) = (store.clone(), lease.clone(), lost.clone());
        AbortOnDrop::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.renew_lease(&lease, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    // Unknown: the check before the next paid call decides.
                    Err(error) => tracing::warn!(%error, "lease renewal failed"),
                }
            }
        })
    };
    let outcome = run_leased(shared, address, envelope, &request, attempt, &lease, &lost).await;
    if outcome.is_err() {
        // Redelivered later: the next copy may take the lease at once.
        let _ = store.release_lease(&lease).await;
    }
    outcome
}

async fn run_leased(
    shared: &Shared,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    request: &gps_domain::generation::GenerationRequested,
    attempt: u32,
    lease: &Lease,
    lost: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Done, Retry> {
    let agent = &shared.settings.name;
    let store = &shared.engine.store;
    let start = GenerationCommand::StartGeneration { agent: name(agent) };
    let start_meta = meta(envelope, &["start", address.id(), &attempt.to_string(), agent]);
    match shared.commands.execute::<Generation>(address, &start_meta, &start).await {
        Ok(_) => {}
        // Cancelled or finished meanwhile.
        Err(CommandError::Rejected { .. }) => {
            let _ = store.end_run(lease, "cancelled", None).await;
            return Ok(Done::Ack);
        }
        Err(error) => return Err(retry_on(error, attempt)),
    }
    let control = AgentControl { shared, address, envelope, attempt, lease, lost };
    let end = shared.engine.run(request, attempt, &control).await;
    let end_run = |status: &'static str, reason: Option<String>| async move {
        let _ = store.end_run(lease, status, reason.as_deref()).await;
        gps_nats::metrics::metrics()
            .generations_finished
            .get_or_create(&gps_nats::metrics::OutcomeLabels { outcome: status.to_owned() })
            .inc();
    };
    match end {
        RunEnd::LeaseLost { reason } => {
            tracing::warn!(generation = %address, %reason, "lease lost; this copy stops without calling");
            Ok(Done::LeaseLost)
        }
        RunEnd::Cancelled => {
            end_run("cancelled", None).await;
            Ok(Done::Ack)
        }
        RunEnd::OutcomeUnknown { reason } => {
            // Retryable by a person (generation.retried runs a new attempt),
            // never redelivered automatically.
            fail(shared, address, envelope, &reason, true, attempt)
                .await
                .map_err(|e| retry_on(e, attempt))?;
            end_run("failed", Some(reason)).await;
            Ok(Done::Ack)
        }
        RunEnd::Failed { reason, retryable: false } => {
            fail(shared, address, envelope, &reason, false, attempt)
                .await
                .map_err(|e| retry_on(e, attempt))?;
            end_run("failed", Some(reason)).await;
            Ok(Done::Ack)
        }
        RunEnd::Failed { reason, retryable: true } => Err(Retry { reason, attempt }),
        RunEnd::Completed(outputs) => {
            // The predictions are new aggregates with deterministic ids: all of
            // them are appended at once, without reading them first; then the
            // generation's completion.
            let (state, _) =
                shared.commands.current::<Generation>(address).await.map_err(|e| retry_on(e, attempt))?;
            let status = state.status().unwrap_or(GenerationStatus::Requested);
            if status == GenerationStatus::Cancelled {
                end_run("cancelled", None).await;
                return Ok(Done::Ack);
            }
            let produced = futures::future::join_all(
                outputs.iter().map(|output| produce(shared, envelope, request, attempt, output, status)),
            )
            .await;
            let mut ids = Vec::new();
            let mut refusal = None;
            for result in produced {
                match result {
                    Ok(id) => ids.push(id),
                    Err(Produced::Refused(error)) => {
                        refusal.get_or_insert(error);
                    }
                    Err(Produced::Unavailable(error)) => return Err(retry_on(error, attempt)),
                }
            }
            if let Some(error) = refusal {
                // Cancelled meanwhile: it produces nothing more.
                let (state, _) =
                    shared.commands.current::<Generation>(address).await.map_err(|e| retry_on(e, attempt))?;
                if state.status() == Some(GenerationStatus::Cancelled) {
                    end_run("cancelled", None).await;
                    return Ok(Done::Ack);
                }
                let reason = format!("a prediction was refused: {error}");
                fail(shared, address, envelope, &reason, false, attempt)
                    .await
                    .map_err(|e| retry_on(e, attempt))?;
                end_run("failed", Some(reason)).await;
                return Ok(Done::Ack);
            }
            let complete = GenerationCommand::CompleteGeneration { prediction_ids: ids };
            let complete_meta = meta(envelope, &["complete", address.id(), &attempt.to_string()]);
            match shared.commands.execute::<Generation>(address, &complete_meta, &complete).await {
                Ok(_) => {
                    end_run("completed", None).await;
                    Ok(Done::Ack)
                }
                Err(CommandError::Rejected { error, .. }) => {
                    tracing::info!(generation = %address, %error, "generation not completed (cancelled or finished meanwhile)");
                    end_run("cancelled", Some(error.to_string())).await;
                    Ok(Done::Ack)
                }
                Err(error) => Err(retry_on(error, attempt)),
            }
        }
    }
}

/// Why a prediction was not produced.
enum Produced {
    /// The domain refused it (the generation is over, or the output is invalid).
    Refused(DomainError),
    /// The log failed; a redelivery produces it.
    Unavailable(CommandError),
}

/// Produces the prediction of one output (a new aggregate with a
/// deterministic id, so a redelivery produces nothing twice).
async fn produce(
    shared: &Shared,
    envelope: &EventEnvelope,
    request: &gps_domain::generation::GenerationRequested,
    attempt: u32,
    output: &crate::engine::VariantOutput,
    generation_status: GenerationStatus,
) -> Result<PredictionId, Produced> {
    let prediction_id = prediction_id(&request.brand_id, &request.generation_id, attempt, output.index);
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
            input_hashes: request.input_hashes(),
            prompt: output.prompt.as_deref().map(text),
        },
        quality: output.quality.clone(),
        generation_status,
    };
    let prediction =
        AggregateAddress::new(request.brand_id.clone(), AggregateKind::Prediction, prediction_id.as_str())
            .map_err(|e| Produced::Unavailable(CommandError::Invalid(e.to_string())))?;
    let produce_meta = meta(envelope, &["produce", prediction_id.as_str()]);
    match shared.commands.execute_new::<Prediction>(&prediction, &produce_meta, &command).await {
        Ok(_) => Ok(prediction_id),
        Err(CommandError::Rejected { error, .. }) => Err(Produced::Refused(error)),
        Err(error) => Err(Produced::Unavailable(error)),
    }
}

struct AgentControl<'a> {
    shared: &'a Shared,
    address: &'a AggregateAddress,
    envelope: &'a EventEnvelope,
    attempt: u32,
    lease: &'a Lease,
    lost: &'a Arc<std::sync::atomic::AtomicBool>,
}

impl RunControl for AgentControl<'_> {
    fn before_paid_call<'a>(
        &'a self,
        intent: Option<(&'a NodeKey<'a>, &'a str)>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let lost = || {
                format!(
                    "the lease on generation {} (attempt {}) was taken over by another copy; this copy stops without calling",
                    self.address, self.attempt
                )
            };
            if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(lost());
            }
            let store = &self.shared.engine.store;
            let ttl = self.shared.settings.ack_wait;
            let held = match intent {
                Some((node, provider)) => {
                    store.renew_lease_and_record_intent(self.lease, ttl, node, provider).await
                }
                None => store.renew_lease(self.lease, ttl).await,
            };
            match held {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    Err(lost())
                }
                Err(error) => Err(format!(
                    "the lease could not be checked (and the call's intent recorded) before a paid call: {error}"
                )),
            }
        })
    }

    fn may_resume(&self) -> bool {
        // Runs are never deleted, so a lease taken with the first fencing
        // token is the first copy ever to run this attempt: it has no nodes
        // to resume. Any later copy reads what the earlier ones stored.
        self.lease.fencing > 1
    }

    fn cancelled(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            match self.shared.commands.current::<Generation>(self.address).await {
                Ok((state, _)) => state.status() == Some(GenerationStatus::Cancelled),
                // Unknown: keep working; the next check decides.
                Err(_) => false,
            }
        })
    }

    fn steps_completed<'a>(
        &'a self,
        steps: &'a [(String, CompletedStep)],
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let steps: Vec<GenerationStepCompleted> = steps
                .iter()
                .map(|(step, done)| GenerationStepCompleted {
                    step: name(step),
                    provider: name(&done.provider),
                    model: name(&done.model),
                    duration_ms: done.duration_ms,
                    cost: CostMicros(done.cost_micros),
                    attempt: done.tries.max(1),
                })
                .collect();
            let names: Vec<&str> = steps.iter().map(|s| s.step.as_str()).collect();
            let attempt = self.attempt.to_string();
            let mut parts = vec!["steps", self.address.id(), &attempt];
            parts.extend(names);
            let meta = meta(self.envelope, &parts);
            let command = GenerationCommand::CompleteSteps { steps };
            match self.shared.commands.execute::<Generation>(self.address, &meta, &command).await {
                Ok(_) => Ok(true),
                // Cancelled (or taken over and finished) meanwhile: the run
                // stops before starting anything else.
                Err(CommandError::Rejected { error, .. }) => {
                    tracing::info!(generation = %self.address, %error, "step report refused; the run stops");
                    Ok(false)
                }
                Err(error) => Err(error.to_string()),
            }
        })
    }
}
