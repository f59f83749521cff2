//! Projection runners: one active runner per projection (a Postgres session
//! advisory lock; a second instance waits and takes over when the first's
//! session ends), reading a durable JetStream pull consumer and applying each
//! batch in ONE transaction together with the checkpoint, then acknowledging.
//!
//! Exactly-once effect: messages at or below the checkpoint are skipped, so a
//! redelivery (a crash between commit and ack, a reset consumer) changes
//! nothing. An event that cannot be decoded or applied (unknown type or
//! version, payload mismatch, a data or constraint error) is recorded in the
//! projection's `dead_letters` table in the same transaction and does not
//! block the events behind it.
//!
//! Postgres remains the source of truth for the position: at the start of a
//! session the durable consumer is recreated from the checkpoint when the
//! server has delivered beyond it (e.g. after a crash mid-batch), so unacked
//! messages are re-read at once instead of after the ack wait.

use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gps_nats::EventLog;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use crate::event::{RawEvent, decode, to_i64};
use crate::projection::{ALL, Projection, prepare_schema};

/// Why a runner session, a rebuild or a status report failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Postgres failed.
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// NATS failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// No projection has that name.
    #[error("no projection is called {0:?}; known: brands, catalog, production, review, delivery, activity")]
    UnknownProjection(String),
}

fn nats(error: impl std::fmt::Display) -> RunError {
    RunError::Nats(error.to_string())
}

/// What a runner is doing, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerState {
    /// Connecting.
    Starting,
    /// Another runner holds the projection's lock; this one waits.
    WaitingForLock,
    /// Holding the lock and applying events.
    Active,
    /// Shut down.
    Stopped,
}

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The most messages applied in one transaction.
    pub batch_size: usize,
    /// How long the runner waits for a message before checking whether it is
    /// caught up with the whole stream (so its checkpoint can move past
    /// events it does not consume, for read-your-writes).
    pub idle_tick: Duration,
    /// How often a waiting runner tries to take the lock.
    pub lock_poll: Duration,
    /// Reports the runner's state, when set.
    pub state: Option<watch::Sender<RunnerState>>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 500,
            idle_tick: Duration::from_millis(200),
            lock_poll: Duration::from_millis(500),
            state: None,
        }
    }
}

impl RunnerOptions {
    fn report(&self, state: RunnerState) {
        if let Some(sender) = &self.state {
            sender.send_replace(state);
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events applied to the read model.
    pub applied: usize,
    /// Events at or below the checkpoint, skipped.
    pub skipped: usize,
    /// Events recorded as dead letters.
    pub dead_lettered: usize,
    /// The checkpoint after the batch.
    pub checkpoint: u64,
}

/// Runs every projection until `shutdown` completes.
pub async fn run_all(
    pool: PgPool,
    log: EventLog,
    options: RunnerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for projection in &ALL {
        let (pool, log, options, mut stopped) = (pool.clone(), log.clone(), options.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            run_projection(pool, log, projection, options, async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            })
            .await
        }));
    }
    shutdown.await;
    stop.send_replace(true);
    for task in tasks {
        match task.await {
            Ok(result) => result?,
            Err(error) => return Err(RunError::Nats(format!("a projection runner panicked: {error}"))),
        }
    }
    Ok(())
}

/// Runs one projection until `shutdown` completes: waits for its lock, then
/// applies batches. Failures (Postgres or NATS gone) end the session, which
/// releases the lock, and a new session starts after a pause.
pub async fn run_projection(
    pool: PgPool,
    log: EventLog,
    projection: &'static Projection,
    options: RunnerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let shutdown = Box::pin(shutdown).shared();
    loop {
        options.report(RunnerState::Starting);
        let session = session(&pool, &log, projection, &options, shutdown.clone());
        match session.await {
            Ok(()) => {
                options.report(RunnerState::Stopped);
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(projection = projection.name, %error, "projection runner failed; restarting");
            }
        }
        tokio::select! {
            () = shutdown.clone() => {
                options.report(RunnerState::Stopped);
                return Ok(());
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn session<S>(
    pool: &PgPool,
    log: &EventLog,
    projection: &'static Projection,
    options: &RunnerOptions,
    shutdown: S,
) -> Result<(), RunError>
where
    S: Future<Output = ()> + Clone,
{
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    options.report(RunnerState::WaitingForLock);
    let mut waiting_logged = false;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(projection.runner_lock_key())
            .fetch_one(&mut conn)
            .await?;
        if locked {
            break;
        }
        if !waiting_logged {
            tracing::info!(projection = projection.name, "another runner is active; waiting to take over");
            waiting_logged = true;
        }
        tokio::select! {
            () = shutdown.clone() => return Ok(()),
            () = tokio::time::sleep(options.lock_poll) => {}
        }
    }
    options.report(RunnerState::Active);
    prepare_schema(&mut conn, projection, projection.schema).await?;
    let checkpoint = read_checkpoint(&mut conn, projection, projection.schema).await?;
    let consumer = ensure_consumer(log, projection, checkpoint).await?;
    tracing::info!(projection = projection.name, checkpoint, "projection runner active");
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(options.batch_size)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(nats)?;
    loop {
        let next = tokio::select! {
            () = shutdown.clone() => return Ok(()),
            next = tokio::time::timeout(options.idle_tick, messages.next()) => next,
        };
        let first = match next {
            Err(_idle) => {
                catch_up_when_idle(&mut conn, log, &consumer, projection).await?;
                continue;
            }
            Ok(None) => return Err(RunError::Nats("the consumer's message stream ended".into())),
            Ok(Some(Err(error))) => return Err(nats(error)),
            Ok(Some(Ok(message))) => message,
        };
        let mut batch = vec![first];
        while batch.len() < options.batch_size {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(error))) => return Err(nats(error)),
                Some(None) | None => break,
            }
        }
        let raws = batch
            .iter()
            .map(RawEvent::from_message)
            .collect::<Result<Vec<_>, _>>()
            .map_err(RunError::Nats)?;
        let report = apply_with_connection(&mut conn, projection, projection.schema, &raws).await?;
        if report.dead_lettered > 0 {
            tracing::warn!(
                projection = projection.name,
                count = report.dead_lettered,
                "events sent to dead letters"
            );
        }
        for message in &batch {
            message.ack().await.map_err(nats)?;
        }
        announce(log, projection, &raws).await;
    }
}

/// What a live notice says: this event is now visible in this projection's
/// read model. Clients re-read with `min_sequence = sequence`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LiveNotice {
    /// The projection that applied the event.
    pub projection: String,
    /// The event's stream sequence.
    pub sequence: u64,
    /// Its type, e.g. `product.created`.
    pub event_type: String,
    /// The aggregate kind, e.g. `product`.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
}

/// Publishes one live notice per applied event on `gps.live.<brand>`. Core
/// NATS, fire and forget: a lost notice costs a client a refresh, never data.
async fn announce(log: &EventLog, projection: &Projection, raws: &[RawEvent]) {
    for raw in raws {
        let Some(address) = gps_nats::AggregateAddress::from_subject(&raw.subject) else { continue };
        let notice = LiveNotice {
            projection: projection.name.to_owned(),
            sequence: raw.sequence,
            event_type: raw.event_type_header.clone().unwrap_or_default(),
            aggregate_type: address.kind().as_str().to_owned(),
            aggregate_id: address.id().to_owned(),
        };
        let Ok(body) = serde_json::to_vec(&notice) else { continue };
        let subject = gps_nats::subjects::live_subject(address.brand());
        if let Err(error) = log.client().publish(subject, body.into()).await {
            tracing::debug!(%error, "live notice not sent");
        }
    }
}

/// Gets the durable consumer, recreating it from the checkpoint when the
/// server's position is beyond what Postgres has (a crash between delivery and
/// commit) or its filters changed. Only the lock holder calls this.
async fn ensure_consumer(
    log: &EventLog,
    projection: &Projection,
    checkpoint: u64,
) -> Result<async_nats::jetstream::consumer::PullConsumer, RunError> {
    let name = projection.durable_name();
    let filters = projection.filter_subjects();
    let mut consumer = log.durable_consumer(&name, filters.clone(), checkpoint).await.map_err(nats)?;
    let info = consumer.info().await.map_err(nats)?;
    let configured = if info.config.filter_subjects.is_empty() {
        vec![info.config.filter_subject.clone()]
    } else {
        info.config.filter_subjects.clone()
    };
    if info.delivered.stream_sequence > checkpoint || configured != filters {
        let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(nats)?;
        stream.delete_consumer(&name).await.map_err(nats)?;
        consumer = log.durable_consumer(&name, filters, checkpoint).await.map_err(nats)?;
    }
    Ok(consumer)
}

/// When nothing is pending for this projection, every event up to the
/// stream's last sequence has been applied or does not concern it, so the
/// checkpoint may move there: a reader waiting for a sequence written to
/// another projection's subjects then does not wait forever.
async fn catch_up_when_idle(
    conn: &mut PgConnection,
    log: &EventLog,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    projection: &Projection,
) -> Result<(), RunError> {
    // Read the stream's end first: whatever the consumer reports afterwards
    // covers at least everything up to it.
    let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(nats)?;
    let last = stream.cached_info().state.last_sequence;
    let info = consumer.get_info().await.map_err(nats)?;
    if info.num_pending > 0 || info.num_ack_pending > 0 {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    begin_batch(&mut tx, projection, projection.schema).await?;
    sqlx::query(
        "UPDATE checkpoint SET last_sequence = $2, updated_at = now() WHERE projection = $1 AND last_sequence < $2",
    )
    .bind(projection.name)
    .bind(to_i64(last))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn read_checkpoint(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
) -> Result<u64, sqlx::Error> {
    let sql = format!("SELECT last_sequence FROM \"{schema}\".checkpoint WHERE projection = $1");
    // `schema` is a projection's static schema name or its checked shadow name.
    let value: Option<i64> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(projection.name).fetch_optional(&mut *conn).await?;
    Ok(value.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

/// Applies `events` to `projection` in its schema (or `schema`, a shadow) in
/// one transaction with the checkpoint; events at or below the checkpoint are
/// skipped. Used by the runner, by rebuilds, and by tests that apply the same
/// batch twice.
pub async fn apply_batch(
    pool: &PgPool,
    projection: &Projection,
    events: &[RawEvent],
) -> Result<BatchReport, RunError> {
    let mut conn = pool.acquire().await?;
    prepare_schema(&mut conn, projection, projection.schema).await?;
    let report = apply_with_connection(&mut conn, projection, projection.schema, events).await;
    // The pooled connection goes back with the default search_path.
    sqlx::query("RESET search_path").execute(&mut *conn).await?;
    report
}

pub(crate) async fn apply_with_connection(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
    events: &[RawEvent],
) -> Result<BatchReport, RunError> {
    // Fast path without savepoints; if an event turns out to be faulty the
    // whole transaction is rolled back and the batch is applied again with
    // one savepoint per event, so the faulty one alone goes to dead letters.
    for careful in [false, true] {
        let mut tx = conn.begin().await?;
        begin_batch(&mut tx, projection, schema).await?;
        match apply_events(&mut tx, projection, events, careful).await {
            Ok(report) => {
                tx.commit().await?;
                return Ok(report);
            }
            Err(BatchError::EventFault) if !careful => {
                tx.rollback().await?;
            }
            Err(BatchError::EventFault) => {
                return Err(RunError::Postgres(sqlx::Error::Protocol("event fault in careful mode".into())));
            }
            Err(BatchError::Postgres(error)) => return Err(RunError::Postgres(error)),
        }
    }
    Err(RunError::Postgres(sqlx::Error::Protocol("unreachable: batch not applied".into())))
}

/// Points the transaction at `schema` and takes the projection's swap lock in
/// shared mode, so a rebuild's swap (exclusive) waits for this batch and the
/// next batch waits for the swap.
pub(crate) async fn begin_batch(
    tx: &mut PgConnection,
    projection: &Projection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    if !crate::db::is_safe_identifier(schema) {
        return Err(sqlx::Error::Protocol(format!("schema name {schema:?} is not a plain identifier")));
    }
    // Both spliced values are checked identifiers or built from static names.
    //
    // `synchronous_commit = off`: the batch commits without waiting for the
    // WAL flush (one fsync per batch per projection was the bottleneck under
    // a steady trickle of commands). It is safe because the read model is
    // derived: a Postgres crash can lose only the last few committed batches,
    // rows and checkpoint together, and the runner's next session re-reads
    // the stream from the checkpoint Postgres kept (`ensure_consumer`).
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL search_path TO \"{schema}\"; SET LOCAL synchronous_commit TO off; \
         SELECT pg_advisory_xact_lock_shared(hashtextextended('{}', 0));",
        projection.swap_lock_key()
    )))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) enum BatchError {
    EventFault,
    Postgres(sqlx::Error),
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        BatchError::Postgres(error)
    }
}

/// Whether a Postgres error is the event's fault (the same event would fail
/// again: data exception, constraint violation) rather than the database's.
fn is_event_fault(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
        }
        _ => false,
    }
}

/// Applies events inside an open transaction whose search_path is set.
pub(crate) async fn apply_events(
    tx: &mut PgConnection,
    projection: &Projection,
    events: &[RawEvent],
    careful: bool,
) -> Result<BatchReport, BatchError> {
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM checkpoint WHERE projection = $1 FOR UPDATE")
            .bind(projection.name)
            .fetch_one(&mut *tx)
            .await?;
    let mut report = BatchReport::default();
    let mut last = checkpoint;
    for raw in events {
        let sequence = to_i64(raw.sequence);
        if sequence <= last {
            report.skipped += 1;
            continue;
        }
        last = sequence;
        let event = match decode(raw) {
            Ok(event) => event,
            Err(reason) => {
                dead_letter(tx, projection, raw, None, &reason).await?;
                report.dead_lettered += 1;
                continue;
            }
        };
        if careful {
            let mut savepoint = tx.begin().await?;
            match (projection.apply)(&mut savepoint, &event).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    report.applied += 1;
                }
                Err(error) if is_event_fault(&error) => {
                    savepoint.rollback().await?;
                    let reason = format!("cannot be applied: {error}");
                    dead_letter(tx, projection, raw, Some(&event.envelope.event_type), &reason).await?;
                    report.dead_lettered += 1;
                }
                Err(error) => return Err(BatchError::Postgres(error)),
            }
        } else {
            match (projection.apply)(tx, &event).await {
                Ok(()) => report.applied += 1,
                Err(error) if is_event_fault(&error) => return Err(BatchError::EventFault),
                Err(error) => return Err(BatchError::Postgres(error)),
            }
        }
    }
    if last > checkpoint {
        sqlx::query("UPDATE checkpoint SET last_sequence = $2, updated_at = now() WHERE projection = $1")
            .bind(projection.name)
            .bind(last)
            .execute(&mut *tx)
            .await?;
    }
    report.checkpoint = u64::try_from(last).unwrap_or(0);
    Ok(report)
}

async fn dead_letter(
    tx: &mut PgConnection,
    projection: &Projection,
    raw: &RawEvent,
    event_type: Option<&str>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let event_type = event_type.map(str::to_owned).or_else(|| raw.event_type_header.clone()).or_else(|| {
        serde_json::from_slice::<serde_json::Value>(&raw.body)
            .ok()
            .and_then(|body| body.get("event_type").and_then(|t| t.as_str()).map(str::to_owned))
    });
    sqlx::query(
        "INSERT INTO dead_letters (stream_sequence, projection, subject, event_type, reason, body)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_sequence) DO NOTHING",
    )
    .bind(to_i64(raw.sequence))
    .bind(projection.name)
    .bind(&raw.subject)
    .bind(event_type)
    .bind(reason)
    .bind(raw.body.as_ref())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
