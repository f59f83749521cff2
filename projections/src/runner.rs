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
//! block the events behind it: a batch is applied with multi-row statements
//! where the model has them, and bisected under savepoints when an event
//! fails, so the faulty event alone is dead-lettered ([`apply_events`]).
//!
//! No event is skipped: JetStream counts a message as delivered once it is
//! sent into a pull request, so messages in flight when a connection drops
//! are gone until their ack wait ends while newer ones keep coming. The
//! runner therefore checks that consumer sequences (not stream sequences:
//! the filters skip subjects) are contiguous, and ends its session on a gap
//! or on any reconnect of the client. Postgres remains the source of truth
//! for the position: a session starts by recreating the durable consumer
//! from the checkpoint whenever the server has delivered beyond it, holds
//! unacknowledged deliveries, or still has a pull request waiting, so the
//! lost messages are read again at once, before anything newer.
//!
//! A read model knows its log: the checkpoint records the identity of the
//! stream it was built from (`gps_nats::identity`) and the subject filters.
//! A session refuses to apply anything when the store was built from
//! another log or is beyond the log's end (the runner reports
//! [`RunnerState::Refused`] and logs the reason; `gps projections rebuild`
//! is the way out), and rebuilds from sequence 1 when the filters changed
//! (events of newly consumed subjects lie below the checkpoint).

use std::future::Future;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gps_nats::EventLog;
use gps_nats::identity::{BindingError, check_binding};
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
    /// The read model does not belong to this log (or is beyond its end).
    #[error("{0}")]
    Binding(#[from] BindingError),
    /// The session ended so the next one re-reads from the checkpoint (a
    /// reconnect, or deliveries lost in flight).
    #[error("session ended to re-read from the checkpoint: {0}")]
    Interrupted(String),
    /// Another rebuild of the same projection holds its rebuild lock.
    #[error(
        "a rebuild of {projection} is already running (started by {holder}); wait for it to finish, \
         or stop that process and run the rebuild again"
    )]
    RebuildRunning {
        /// The projection.
        projection: String,
        /// Who holds the lock, as Postgres knows the session.
        holder: String,
    },
}

fn nats(error: impl std::fmt::Display) -> RunError {
    RunError::Nats(error.to_string())
}

/// What a runner is doing, for tests and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerState {
    /// Connecting.
    Starting,
    /// Another runner holds the projection's lock; this one waits.
    WaitingForLock,
    /// Rebuilding the read model from sequence 1 (its filters changed).
    Rebuilding,
    /// Holding the lock and applying events.
    Active,
    /// Refusing to apply anything: the read model belongs to another log or
    /// is beyond its end. The text says which and the ways out; the runner
    /// checks again every [`RunnerOptions::refused_retry`].
    Refused(String),
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
    /// How often a refused runner checks its binding again (a rebuild may
    /// have fixed it).
    pub refused_retry: Duration,
    /// Reports the runner's state, when set.
    pub state: Option<watch::Sender<RunnerState>>,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            batch_size: 500,
            idle_tick: Duration::from_millis(200),
            lock_poll: Duration::from_millis(500),
            refused_retry: Duration::from_secs(5),
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

/// Counts a live batch in the metrics: what it applied and set aside, where
/// the checkpoint stands, and how many events of the projection's filter the
/// server still holds for it (its lag, in events).
fn record_batch(projection: &str, report: &BatchReport, pending: Option<u64>) {
    let metrics = gps_nats::metrics::metrics();
    let labels = gps_nats::metrics::ProjectionLabels { projection: projection.to_owned() };
    metrics.projection_applied.get_or_create(&labels).inc_by(report.applied as u64);
    metrics.projection_dead_letters.get_or_create(&labels).inc_by(report.dead_lettered as u64);
    metrics
        .projection_checkpoint
        .get_or_create(&labels)
        .set(i64::try_from(report.checkpoint).unwrap_or(i64::MAX));
    if let Some(pending) = pending {
        metrics.projection_lag.get_or_create(&labels).set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
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
    let mut refused: Option<String> = None;
    loop {
        options.report(RunnerState::Starting);
        let session = session(&pool, &log, projection, &options, shutdown.clone());
        let pause = match session.await {
            Ok(()) => {
                options.report(RunnerState::Stopped);
                return Ok(());
            }
            Err(RunError::Binding(error)) => {
                let message = error.to_string();
                // Once per distinct reason: the runner checks again and again.
                if refused.as_deref() != Some(message.as_str()) {
                    tracing::error!(projection = projection.name, "refusing to run: {message}");
                }
                options.report(RunnerState::Refused(message.clone()));
                refused = Some(message);
                options.refused_retry
            }
            Err(RunError::Interrupted(reason)) => {
                tracing::info!(projection = projection.name, %reason, "projection runner restarting");
                Duration::from_millis(10)
            }
            Err(error) => {
                tracing::warn!(projection = projection.name, %error, "projection runner failed; restarting");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = shutdown.clone() => {
                options.report(RunnerState::Stopped);
                return Ok(());
            }
            () = tokio::time::sleep(pause) => {}
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
    prepare_schema(&mut conn, projection, projection.schema).await?;
    // Every reconnect from here on ends the session: deliveries in flight
    // when a connection drops are lost to this consumer until their ack wait
    // ends, and the events behind them must not be applied before them.
    let connects = connects(log);
    let state = log.state().await.map_err(nats)?;
    let mut stored = read_stored_checkpoint(&mut conn, projection, projection.schema).await?;
    check_binding(&projection.store_name(), stored.log_identity.as_deref(), stored.last_sequence, &state)?;
    if let Some(recorded) = stored.filters.as_ref().filter(|recorded| !same_filters(recorded, projection)) {
        // Events of the subjects the old filters did not take were never
        // applied and lie below the checkpoint: only a replay from 1 sees them.
        tracing::warn!(
            projection = projection.name,
            recorded = %recorded.join(" "),
            now = %projection.filters.join(" "),
            "the read model was built with other subject filters; rebuilding it from sequence 1"
        );
        options.report(RunnerState::Rebuilding);
        let report = crate::rebuild::rebuild(pool, log, projection).await?;
        tracing::info!(projection = projection.name, events = report.events, "rebuilt for the new filters");
        stored = read_stored_checkpoint(&mut conn, projection, projection.schema).await?;
    }
    let identity = state.identity.token();
    let checkpoint = stored.last_sequence;
    let (consumer, mut last_delivery) = ensure_consumer(log, projection, checkpoint).await?;
    options.report(RunnerState::Active);
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
                check_connection(log, connects)?;
                catch_up_when_idle(&mut conn, log, &consumer, projection, &identity).await?;
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
        // Every delivery of this consumer has the next consumer sequence
        // (stream sequences may jump: the filters skip other subjects). A
        // jump means deliveries were lost in flight; the events after them
        // must wait, or the checkpoint would pass the lost ones for good.
        let mut gap = None;
        for (index, message) in batch.iter().enumerate() {
            let delivery = message.info().map_err(nats)?.consumer_sequence;
            if delivery != last_delivery + 1 {
                gap = Some((index, delivery));
                break;
            }
            last_delivery = delivery;
        }
        if let Some((index, _)) = gap {
            batch.truncate(index);
        }
        if !batch.is_empty() {
            let raws = batch
                .iter()
                .map(RawEvent::from_message)
                .collect::<Result<Vec<_>, _>>()
                .map_err(RunError::Nats)?;
            let report =
                apply_with_connection(&mut conn, projection, projection.schema, &raws, Some(&identity))
                    .await?;
            if report.dead_lettered > 0 {
                tracing::warn!(
                    projection = projection.name,
                    count = report.dead_lettered,
                    "events sent to dead letters"
                );
            }
            record_batch(
                projection.name,
                &report,
                batch.last().and_then(|last| last.info().ok()).map(|info| info.pending),
            );
            for message in &batch {
                message.ack().await.map_err(nats)?;
            }
            announce(log, projection, &raws).await;
        }
        if let Some((_, delivery)) = gap {
            return Err(RunError::Interrupted(format!(
                "delivery {delivery} follows {last_delivery}: deliveries were lost in flight"
            )));
        }
        check_connection(log, connects)?;
    }
}

/// How many times the client has connected (the first connect included).
fn connects(log: &EventLog) -> u64 {
    log.client().statistics().connects.load(std::sync::atomic::Ordering::Relaxed)
}

/// Ends the session when the client reconnected since `connects` was read.
fn check_connection(log: &EventLog, connects_then: u64) -> Result<(), RunError> {
    let now = connects(log);
    if now != connects_then {
        return Err(RunError::Interrupted(format!(
            "the NATS connection was re-established ({} reconnect(s)); deliveries in flight may be lost",
            now.saturating_sub(connects_then)
        )));
    }
    Ok(())
}

/// Whether the recorded filters are the projection's (in any order).
pub(crate) fn same_filters(recorded: &[String], projection: &Projection) -> bool {
    let mut recorded: Vec<&str> = recorded.iter().map(String::as_str).collect();
    let mut now: Vec<&str> = projection.filters.to_vec();
    recorded.sort_unstable();
    now.sort_unstable();
    recorded == now
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
        // Live notices are per brand; platform-level events (persons) have none.
        if address.brand().is_platform() {
            continue;
        }
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

/// Gets the durable consumer and the consumer sequence of its last delivery,
/// recreating it from the checkpoint when the server's state could hand this
/// session anything but the events after the checkpoint, in order: it has
/// delivered beyond the checkpoint (a crash before commit, deliveries lost
/// with a connection), deliveries are unacknowledged, a pull request of an
/// earlier session is still waiting (it could take messages nobody reads),
/// or its filters changed. Only the lock holder calls this.
async fn ensure_consumer(
    log: &EventLog,
    projection: &Projection,
    checkpoint: u64,
) -> Result<(async_nats::jetstream::consumer::PullConsumer, u64), RunError> {
    let name = projection.durable_name();
    let filters = projection.filter_subjects();
    let mut consumer = log.durable_consumer(&name, filters.clone(), checkpoint).await.map_err(nats)?;
    let mut info = consumer.get_info().await.map_err(nats)?;
    let configured = if info.config.filter_subjects.is_empty() {
        vec![info.config.filter_subject.clone()]
    } else {
        info.config.filter_subjects.clone()
    };
    if info.delivered.stream_sequence > checkpoint
        || info.num_ack_pending > 0
        || info.num_waiting > 0
        || configured != filters
    {
        tracing::debug!(
            projection = projection.name,
            checkpoint,
            delivered = info.delivered.stream_sequence,
            ack_pending = info.num_ack_pending,
            waiting = info.num_waiting,
            "recreating the durable consumer from the checkpoint"
        );
        let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(nats)?;
        stream.delete_consumer(&name).await.map_err(nats)?;
        consumer = log.durable_consumer(&name, filters, checkpoint).await.map_err(nats)?;
        info = consumer.get_info().await.map_err(nats)?;
    }
    Ok((consumer, info.delivered.consumer_sequence))
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
    identity: &str,
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
        "UPDATE checkpoint SET last_sequence = GREATEST(last_sequence, $2), log_identity = $3, filters = $4,
                updated_at = now()
         WHERE projection = $1
           AND (last_sequence < $2 OR log_identity IS DISTINCT FROM $3 OR filters IS DISTINCT FROM $4)",
    )
    .bind(projection.name)
    .bind(to_i64(last))
    .bind(identity)
    .bind(projection.filter_subjects())
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
    Ok(read_stored_checkpoint(conn, projection, schema).await?.last_sequence)
}

/// A projection's checkpoint row: its position, and the log and filters it
/// was built with (`None`: not recorded yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredCheckpoint {
    pub(crate) last_sequence: u64,
    pub(crate) log_identity: Option<String>,
    pub(crate) filters: Option<Vec<String>>,
}

/// Reads the checkpoint row of `schema` (a live or shadow schema). Read as
/// JSON so that a schema whose bookkeeping predates a column still answers.
pub(crate) async fn read_stored_checkpoint(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
) -> Result<StoredCheckpoint, sqlx::Error> {
    // `schema` is a projection's static schema name or its checked shadow name.
    let sql = format!("SELECT to_jsonb(c) FROM \"{schema}\".checkpoint c WHERE projection = $1");
    let row: Option<serde_json::Value> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(projection.name).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(StoredCheckpoint::default()) };
    Ok(StoredCheckpoint {
        last_sequence: row.get("last_sequence").and_then(serde_json::Value::as_u64).unwrap_or(0),
        log_identity: row.get("log_identity").and_then(serde_json::Value::as_str).map(str::to_owned),
        filters: row
            .get("filters")
            .and_then(serde_json::Value::as_array)
            .map(|filters| filters.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect()),
    })
}

/// Applies `events` to `projection` in its schema in one transaction with
/// the checkpoint; events at or below the checkpoint are skipped. For tests
/// that apply the same batch twice; it records no log identity.
pub async fn apply_batch(
    pool: &PgPool,
    projection: &Projection,
    events: &[RawEvent],
) -> Result<BatchReport, RunError> {
    let mut conn = pool.acquire().await?;
    prepare_schema(&mut conn, projection, projection.schema).await?;
    let report = apply_with_connection(&mut conn, projection, projection.schema, events, None).await;
    // The pooled connection goes back with the default search_path.
    sqlx::query("RESET search_path").execute(&mut *conn).await?;
    report
}

/// Applies `events` to `schema` (live or shadow) in one transaction with the
/// checkpoint, which records `identity` (the log's token) when given.
pub(crate) async fn apply_with_connection(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
    events: &[RawEvent],
    identity: Option<&str>,
) -> Result<BatchReport, RunError> {
    let mut tx = conn.begin().await?;
    begin_batch(&mut tx, projection, schema).await?;
    let report = apply_events(&mut tx, projection, events, identity).await?;
    tx.commit().await?;
    Ok(report)
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

/// Whether a Postgres error is the event's fault (the same event would fail
/// again: data exception, constraint violation) rather than the database's.
pub(crate) fn is_event_fault(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
        }
        _ => false,
    }
}

/// Applies events inside an open transaction whose search_path is set, and
/// moves the checkpoint (recording `identity` when given, and the filters).
///
/// The events after the checkpoint are decoded (an undecodable one is a dead
/// letter) and applied as one run with the projection's multi-row
/// [`Projection::apply_many`] under a savepoint. When the run fails because
/// of an event (a data or constraint error), the savepoint is rolled back and
/// the run is bisected: each half is applied the same way, down to the
/// single faulty event, which goes to dead letters while every other event
/// is applied, in order. A healthy batch costs one savepoint; a batch with
/// one poison event about 2·log2(n) runs.
pub(crate) async fn apply_events(
    tx: &mut PgConnection,
    projection: &Projection,
    events: &[RawEvent],
    identity: Option<&str>,
) -> Result<BatchReport, sqlx::Error> {
    let events: Vec<DecodedEvent> = events.iter().cloned().map(DecodedEvent::new).collect();
    apply_decoded(tx, projection, events, identity).await
}

/// A stored message with the result of decoding it, decoded ahead of the
/// transaction that applies it (a rebuild decodes the next chunk while the
/// previous one is applied).
pub(crate) struct DecodedEvent {
    raw: RawEvent,
    decoded: Result<crate::event::Event, String>,
}

impl DecodedEvent {
    pub(crate) fn new(raw: RawEvent) -> Self {
        let decoded = decode(&raw);
        DecodedEvent { raw, decoded }
    }
}

/// [`apply_with_connection`] for events decoded ahead.
pub(crate) async fn apply_decoded_with_connection(
    conn: &mut PgConnection,
    projection: &Projection,
    schema: &str,
    events: Vec<DecodedEvent>,
    identity: Option<&str>,
) -> Result<BatchReport, RunError> {
    let mut tx = conn.begin().await?;
    begin_batch(&mut tx, projection, schema).await?;
    let report = apply_decoded(&mut tx, projection, events, identity).await?;
    tx.commit().await?;
    Ok(report)
}

/// [`apply_events`] for events decoded ahead.
pub(crate) async fn apply_decoded(
    tx: &mut PgConnection,
    projection: &Projection,
    events: Vec<DecodedEvent>,
    identity: Option<&str>,
) -> Result<BatchReport, sqlx::Error> {
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM checkpoint WHERE projection = $1 FOR UPDATE")
            .bind(projection.name)
            .fetch_one(&mut *tx)
            .await?;
    let mut report = BatchReport::default();
    let mut last = checkpoint;
    let mut decoded = Vec::with_capacity(events.len());
    let mut origins = Vec::with_capacity(events.len());
    // The events move into the run: a batch of a thousand is not copied.
    for DecodedEvent { raw, decoded: result } in events {
        let sequence = to_i64(raw.sequence);
        if sequence <= last {
            report.skipped += 1;
            continue;
        }
        last = sequence;
        match result {
            Ok(decoded_event) => {
                decoded.push(decoded_event);
                origins.push(raw);
            }
            Err(reason) => {
                dead_letter(tx, projection, &raw, None, &reason).await?;
                report.dead_lettered += 1;
            }
        }
    }
    // Ranges still to apply, the next one last (a stack keeps them in order).
    let mut ranges = vec![(0, decoded.len())];
    while let Some((start, end)) = ranges.pop() {
        if start == end {
            continue;
        }
        let run = &decoded[start..end];
        let mut savepoint = tx.begin().await?;
        let result = match projection.apply_many {
            Some(apply_many) => apply_many(&mut savepoint, run).await,
            None => apply_each(projection, &mut savepoint, run).await,
        };
        match result {
            Ok(()) => {
                savepoint.commit().await?;
                report.applied += run.len();
            }
            Err(error) if is_event_fault(&error) => {
                savepoint.rollback().await?;
                if let [event] = run {
                    let reason = format!("cannot be applied: {error}");
                    let event_type = Some(event.envelope.event_type.as_str());
                    dead_letter(tx, projection, &origins[start], event_type, &reason).await?;
                    report.dead_lettered += 1;
                } else {
                    let middle = start + run.len() / 2;
                    ranges.push((middle, end));
                    ranges.push((start, middle));
                }
            }
            Err(error) => return Err(error),
        }
    }
    if last > checkpoint {
        sqlx::query(
            "UPDATE checkpoint SET last_sequence = $2, log_identity = COALESCE($3, log_identity), filters = $4,
                    updated_at = now()
             WHERE projection = $1",
        )
        .bind(projection.name)
        .bind(last)
        .bind(identity)
        .bind(projection.filter_subjects())
        .execute(&mut *tx)
        .await?;
    }
    report.checkpoint = u64::try_from(last).unwrap_or(0);
    Ok(report)
}

/// Applies a run one event at a time, for models without a multi-row form.
async fn apply_each(
    projection: &Projection,
    conn: &mut PgConnection,
    events: &[crate::event::Event],
) -> Result<(), sqlx::Error> {
    for event in events {
        (projection.apply)(conn, event).await?;
    }
    Ok(())
}

pub(crate) async fn dead_letter(
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
