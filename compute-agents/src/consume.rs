//! The shared durable JetStream consumer both worker roles run on: compute
//! agents (generation events) and delivery workers (export events).
//!
//! Every process of a role binds the same durable consumer, so processes share
//! the work and a crashed one's unacknowledged event is redelivered to another
//! after the ack wait. Acknowledgement is explicit and left to the handler,
//! which acknowledges only once the outcome is on the log; [`heartbeat`] keeps
//! a long piece of work from being redelivered while it is alive. The loop
//! takes at most `max_in_flight` events at once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use gps_commands::CommandMeta;
use gps_domain::values::Text;
use gps_domain::wire::{Actor, EventEnvelope};
use gps_nats::EventLog;

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
}

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

/// Runs `handle` on every event of the shared consumer, at most
/// `max_in_flight` at once, until `shutdown` resolves. Events in flight then
/// are left unacknowledged and go to another process.
pub async fn run<H, F>(
    log: &EventLog,
    spec: &ConsumerSpec,
    handle: H,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ConsumeError>
where
    H: Fn(Message) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let consumer = bind(log, spec).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(spec.max_in_flight.clamp(1, 1000))
        .messages()
        .await
        .map_err(|e| error(spec, e))?;
    let limit = Arc::new(tokio::sync::Semaphore::new(spec.max_in_flight.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.map_err(|e| error(spec, e))?,
        };
        let message = tokio::select! {
            () = &mut shutdown => break,
            message = messages.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(problem)) => {
                tracing::warn!(durable = %spec.durable, error = %problem, "consumer error; continuing");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => return Err(error(spec, "the consumer's message stream ended")),
        };
        let work = handle(message);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
    Ok(())
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

/// Tells JetStream every `every` that `message` is still being worked on;
/// abort the handle when the work ends.
pub fn heartbeat(message: Arc<Message>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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
