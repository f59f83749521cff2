//! The shared durable JetStream consumer both worker roles run on: compute
//! agents (generation events) and delivery workers (export events).
//!
//! Every process of a role binds the same durable consumer, so processes share
//! the work and a crashed one's unacknowledged event is redelivered to another
//! after the ack wait. Acknowledgement is explicit and left to the handler,
//! which acknowledges only once the outcome is on the log.
//!
//! The loop accounts for what it was handed:
//! - it pulls only what it can start now: one pull request for exactly as many
//!   messages as it has free slots (`max_in_flight` at most), never a
//!   free-running prefetch, so no message waits in a local buffer while its ack
//!   wait runs out (a waiting copy would be redelivered and run twice);
//! - every held message is heartbeaten (`Progress`) from the moment it is
//!   received until its handler ends; the heartbeat is an [`AbortOnDrop`]
//!   guard owned by the work task, so it dies with a panicking handler too;
//! - a pull that fails (consumer deleted, stream gone) or a consumer that no
//!   longer answers ends the session with an error, and [`crate::supervise`]
//!   binds again with backoff and reports the role not ready meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use gps_commands::CommandMeta;
use gps_domain::values::Text;
use gps_domain::wire::{Actor, EventEnvelope};
use gps_nats::EventLog;

use crate::supervise::RoleHealth;

/// How a role's shared consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// The durable consumer's name.
    pub durable: String,
    /// The subjects it reads.
    pub filter: String,
    /// How long a delivery may go without an acknowledgement or heartbeat
    /// before JetStream hands it to another process.
    pub ack_wait: Duration,
    /// Deliveries before JetStream stops redelivering (-1: no limit; the
    /// handler decides when to give up).
    pub max_deliver: i64,
    /// Delays between redeliveries after an ack wait ran out (empty: the ack wait).
    pub backoff: Vec<Duration>,
    /// Events handled at once by this process.
    pub max_in_flight: usize,
    /// Whether an event, judged by its headers alone, may be work for the
    /// handler. Those that cannot (a role reads every event of its
    /// aggregates but acts on a few types) are acknowledged by the loop at
    /// once: no task, no heartbeat, no slot.
    pub wanted: fn(&Message) -> bool,
}

/// How long one pull request waits for messages before the loop asks again.
/// Short, because slots freed while a pull is open wait for its end.
const PULL_EXPIRY: Duration = Duration::from_millis(1000);

/// How often an idle loop checks that its consumer still exists (a pull on a
/// deleted consumer just times out).
const CONSUMER_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
#[error("{durable} consumer: {message}")]
pub struct ConsumeError {
    /// The durable consumer.
    pub durable: String,
    /// What went wrong.
    pub message: String,
}

fn error(spec: &ConsumerSpec, message: impl ToString) -> ConsumeError {
    ConsumeError { durable: spec.durable.clone(), message: message.to_string() }
}

/// Creates (or binds) the shared durable consumer.
pub async fn bind(log: &EventLog, spec: &ConsumerSpec) -> Result<PullConsumer, ConsumeError> {
    let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(|e| error(spec, e))?;
    let config = consumer::pull::Config {
        durable_name: Some(spec.durable.clone()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: spec.ack_wait,
        max_deliver: spec.max_deliver,
        backoff: spec.backoff.clone(),
        filter_subject: spec.filter.clone(),
        max_ack_pending: 20_000,
        ..Default::default()
    };
    stream.get_or_create_consumer(&spec.durable, config).await.map_err(|e| error(spec, e))
}

/// A task aborted when this guard is dropped: a heartbeat or lease renewal
/// never outlives the work it belongs to, even when that work panics.
#[derive(Debug)]
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Spawns `task` under the guard.
    pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(task))
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one session of `handle` on every event of the shared consumer, at
/// most `max_in_flight` at once, until `shutdown` resolves (then `Ok`: events
/// in flight are left unacknowledged and go to another process) or the
/// consumer fails (then `Err`; run it under [`crate::supervise::supervise`]).
/// `health` is marked ready once the consumer is bound.
pub async fn run<H, F>(
    log: &EventLog,
    spec: &ConsumerSpec,
    health: &RoleHealth,
    handle: H,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ConsumeError>
where
    H: Fn(Arc<Message>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut consumer = bind(log, spec).await?;
    health.set_ready();
    let slots = spec.max_in_flight.clamp(1, 1000);
    let limit = Arc::new(tokio::sync::Semaphore::new(slots));
    let beat = (spec.ack_wait / 3).max(Duration::from_millis(100));
    let mut last_check = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            () = &mut shutdown => return Ok(()),
            permit = limit.clone().acquire_owned() => permit.map_err(|e| error(spec, e))?,
        };
        let mut permits = vec![first];
        while let Ok(permit) = limit.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let batch = consumer.batch().max_messages(permits.len()).expires(PULL_EXPIRY).messages();
        let mut batch = tokio::select! {
            () = &mut shutdown => return Ok(()),
            batch = batch => batch.map_err(|e| error(spec, format!("pull request failed: {e}")))?,
        };
        let mut received = 0usize;
        loop {
            let next = tokio::select! {
                () = &mut shutdown => return Ok(()),
                next = batch.next() => next,
            };
            match next {
                None => break,
                Some(Ok(message)) => {
                    received += 1;
                    if !(spec.wanted)(&message) {
                        ack(&message, AckKind::Ack).await;
                        continue;
                    }
                    let Some(permit) = permits.pop() else {
                        // The server never sends more than asked; should it, the
                        // message goes back at once rather than wait unheld.
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                        continue;
                    };
                    let message = Arc::new(message);
                    let heartbeat = heartbeat(message.clone(), beat);
                    let work = handle(message);
                    tokio::spawn(async move {
                        let _heartbeat = heartbeat;
                        let _permit = permit;
                        work.await;
                    });
                }
                Some(Err(problem)) => return Err(error(spec, format!("pull failed: {problem}"))),
            }
        }
        // Unused slots go back before the next pull.
        drop(permits);
        if received > 0 {
            last_check = Instant::now();
        } else if last_check.elapsed() >= CONSUMER_CHECK_EVERY {
            consumer.info().await.map_err(|e| error(spec, format!("the consumer no longer answers: {e}")))?;
            last_check = Instant::now();
        }
    }
}

/// The value of header `name`, if present.
pub fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// Acknowledges `message` with `kind`; a lost acknowledgement only means a redelivery.
pub async fn ack(message: &Message, kind: AckKind) {
    if let Err(problem) = message.ack_with(kind).await {
        tracing::warn!(error = %problem, "acknowledgement not sent; the event will be redelivered");
    }
}

/// Tells JetStream every `every` that `message` is still being worked on,
/// until the returned guard is dropped.
pub fn heartbeat(message: Arc<Message>, every: Duration) -> AbortOnDrop {
    AbortOnDrop::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let _ = message.ack_with(AckKind::Progress).await;
        }
    })
}

/// The metadata of a command a worker sends because of `envelope`: a
/// deterministic id from `parts` (so re-processing sends nothing twice),
/// `actor` as the system actor, and the event as cause and correlation.
pub fn caused_by(envelope: &EventEnvelope, actor: &str, parts: &[&str]) -> CommandMeta {
    let mut meta = CommandMeta::new(crate::agent::command_id(parts), Actor::System(actor.into()));
    meta.correlation_id = envelope.correlation_id.clone();
    meta.causation_id = envelope.event_id.clone();
    meta
}

/// `s` as event text: clipped to the limit, never empty.
pub fn clipped_text(s: &str) -> Text {
    let clipped: String = s.chars().take(Text::MAX_CHARS).collect();
    Text::parse(if clipped.trim().is_empty() { "unknown error".to_owned() } else { clipped })
        .unwrap_or_else(|_| unreachable!("clipped, non-empty text"))
}
