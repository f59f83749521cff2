//! Rebuilding a projection without downtime, and the status of all of them.
//!
//! `rebuild` creates a shadow schema (`<schema>_rebuild`), runs the
//! migrations there, replays the stream from sequence 1 into it through an
//! ordered consumer in batched transactions, then, in ONE transaction: takes
//! the projection's swap lock exclusively (the live runner's batches hold it
//! shared, so the swap waits for the running batch and the next one waits for
//! the swap), catches the shadow up to the live checkpoint, renames live →
//! old and shadow → live, and drops old. The checkpoint and dead letters live
//! in the schema, so they move with it. Readers keep reading the live tables
//! until the commit; the runner keeps its lock and carries on in the new schema.
//!
//! One rebuild per projection at a time: a rebuild holds the projection's
//! rebuild lock (a session advisory lock on its own connection) from before
//! it touches the shadow until after the swap, and a second one is refused at
//! once, naming the session that holds it ([`RunError::RebuildRunning`]).
//!
//! A rebuild is also the way out for a read model that belongs to another
//! log: the shadow records the identity of the log it was replayed from
//! (and the filters), and the catch-up to the live checkpoint is skipped
//! when the live store is not bound to this log (its checkpoint means
//! nothing here).

use std::time::Duration;

use futures::StreamExt;
use gps_nats::EventLog;
use sqlx::{Connection, PgConnection, PgPool};

use crate::event::{RawEvent, to_i64};
use crate::projection::{ALL, Projection, prepare_schema};
use crate::runner::{
    DecodedEvent, RunError, StoredCheckpoint, apply_decoded_with_connection, apply_events, begin_batch,
    read_checkpoint, read_stored_checkpoint, same_filters,
};

/// Events per transaction while replaying into the shadow schema.
const REPLAY_BATCH: usize = 1000;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The projection.
    pub projection: String,
    /// Events read from the stream (of this projection's subjects).
    pub events: u64,
    /// The checkpoint of the swapped-in schema.
    pub checkpoint: u64,
    /// How long it took, in milliseconds.
    pub millis: u128,
}

/// Where one projection stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionStatus {
    /// The projection.
    pub projection: String,
    /// Its checkpoint (last applied stream sequence).
    pub checkpoint: u64,
    /// The stream's last sequence.
    pub stream_last_sequence: u64,
    /// How far behind it is.
    pub lag: u64,
    /// How many events it could not apply.
    pub dead_letters: i64,
    /// The identity of the log it was built from, as recorded (`None`: not
    /// recorded yet).
    pub log_identity: Option<String>,
    /// Why its runner refuses to run, or what it will do first (a rebuild
    /// for changed filters); `None` when all is well.
    pub problem: Option<String>,
    /// Whether its runner refuses to run (`problem` says why and the ways out).
    pub refused: bool,
}

fn nats(error: impl std::fmt::Display) -> RunError {
    RunError::Nats(error.to_string())
}

/// Every projection's checkpoint, lag, dead-letter count and binding
/// problem (a store of another log, beyond the log's end, or built with
/// other filters).
pub async fn status(pool: &PgPool, log: &EventLog) -> Result<Vec<ProjectionStatus>, RunError> {
    let state = log.state().await.map_err(nats)?;
    let last = state.last_sequence;
    let mut conn = pool.acquire().await?;
    let mut out = Vec::new();
    for projection in &ALL {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("\"{}\".checkpoint", projection.schema))
            .fetch_one(&mut *conn)
            .await?;
        let (stored, dead_letters) = if exists {
            let stored = read_stored_checkpoint(&mut conn, projection, projection.schema).await?;
            // The schema is a projection's static name.
            let sql = format!("SELECT count(*) FROM \"{}\".dead_letters", projection.schema);
            let dead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *conn).await?;
            (stored, dead)
        } else {
            (StoredCheckpoint::default(), 0)
        };
        let binding = gps_nats::identity::check_binding(
            &projection.store_name(),
            stored.log_identity.as_deref(),
            stored.last_sequence,
            &state,
        );
        let refused = binding.is_err();
        let problem = match binding {
            Err(error) => Some(error.to_string()),
            Ok(_) => stored.filters.as_ref().filter(|f| !same_filters(f, projection)).map(|recorded| {
                format!(
                    "built with the subject filters {} but consumes {}; its runner rebuilds it from sequence 1",
                    recorded.join(" "),
                    projection.filters.join(" ")
                )
            }),
        };
        out.push(ProjectionStatus {
            projection: projection.name.to_owned(),
            checkpoint: stored.last_sequence,
            stream_last_sequence: last,
            lag: last.saturating_sub(stored.last_sequence),
            dead_letters,
            log_identity: stored.log_identity,
            problem,
            refused,
        });
    }
    Ok(out)
}

/// What keeps the read models from being served: one line per projection
/// whose store belongs to another log, is beyond the log's end or must be
/// rebuilt first, or the reason the check itself failed. Empty when ready.
/// For readiness probes (`/readyz`).
pub async fn binding_problems(pool: &PgPool, log: &EventLog) -> Vec<String> {
    match status(pool, log).await {
        Ok(statuses) => statuses
            .into_iter()
            .filter(|status| status.refused)
            .filter_map(|status| status.problem.map(|problem| format!("{}: {problem}", status.projection)))
            .collect(),
        Err(error) => vec![format!("the read models' binding to the log cannot be checked: {error}")],
    }
}

/// What keeps the read models from being served now, for `/readyz`: the
/// [`binding_problems`], and each projection more than `max_lag` stream
/// sequences behind the log's end (its runner stopped, or cannot keep up).
/// Unreachable NATS or Postgres is a problem too. Empty when ready.
pub async fn readiness_problems(pool: &PgPool, log: &EventLog, max_lag: u64) -> Vec<String> {
    match status(pool, log).await {
        Ok(statuses) => statuses
            .into_iter()
            .filter_map(|status| {
                if status.refused {
                    return status.problem.map(|problem| format!("{}: {problem}", status.projection));
                }
                (status.lag > max_lag).then(|| {
                    format!(
                        "{}: {} stream sequences behind the log (the bound is {max_lag}): is a projector running? \
                         `gps projections status` shows every read model",
                        status.projection, status.lag
                    )
                })
            })
            .collect(),
        Err(error) => vec![format!("the read models cannot be checked: {error}")],
    }
}

/// Rebuilds `projection` from sequence 1 into a shadow schema and swaps it in.
pub async fn rebuild(
    pool: &PgPool,
    log: &EventLog,
    projection: &Projection,
) -> Result<RebuildReport, RunError> {
    let started = std::time::Instant::now();
    let shadow = format!("{}_rebuild", projection.schema);
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    take_rebuild_lock(&mut conn, projection).await?;
    // A shadow left by an interrupted rebuild is incomplete: start over.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{shadow}\" CASCADE")))
        .execute(&mut conn)
        .await?;
    prepare_schema(&mut conn, projection, &shadow).await?;

    let state = log.state().await.map_err(nats)?;
    let identity = state.identity.token();
    let target = state.last_sequence;
    let mut events = 0;
    // Reading the stream and writing Postgres overlap: the next chunk is read
    // while the previous one is applied.
    let mut chunks = Replay::open(log, projection, 0, target).await?.prefetch(REPLAY_BATCH);
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        events += chunk.len() as u64;
        apply_decoded_with_connection(&mut conn, projection, &shadow, chunk, Some(&identity)).await?;
    }
    analyze_schema(&mut conn, &shadow).await?;

    // The swap: one transaction under the exclusive swap lock.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(projection.swap_lock_key())
        .execute(&mut *tx)
        .await?;
    let now = log.state().await.map_err(nats)?;
    if now.identity != state.identity {
        return Err(RunError::Nats(format!(
            "the event log changed during the rebuild of {} (from {} to {}); run it again",
            projection.name, state.identity, now.identity
        )));
    }
    let live_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{}\".checkpoint", projection.schema))
        .fetch_one(&mut *tx)
        .await?;
    let live_stored = if live_exists {
        read_stored_checkpoint(&mut tx, projection, projection.schema).await?
    } else {
        StoredCheckpoint::default()
    };
    // A live store of another log (or beyond this log's end) is replaced as
    // it is: its checkpoint is no position in this log.
    let live_bound = gps_nats::identity::check_binding(
        &projection.store_name(),
        live_stored.log_identity.as_deref(),
        live_stored.last_sequence,
        &now,
    );
    let live = match &live_bound {
        Ok(_) => live_stored.last_sequence,
        Err(error) => {
            tracing::info!(projection = projection.name, %error, "the rebuild replaces a read model of another log");
            0
        }
    };
    let shadow_checkpoint = read_checkpoint(&mut tx, projection, &shadow).await?;
    begin_batch(&mut tx, projection, &shadow).await?;
    if shadow_checkpoint < live {
        let mut catch_up = Replay::open(log, projection, shadow_checkpoint, live).await?;
        loop {
            let chunk = catch_up.next_chunk(REPLAY_BATCH).await?;
            if chunk.is_empty() {
                break;
            }
            events += chunk.len() as u64;
            apply_events(&mut tx, projection, &chunk, Some(&identity)).await?;
        }
        // Events of other projections' subjects also moved the live checkpoint.
        sqlx::query("UPDATE checkpoint SET last_sequence = $2 WHERE projection = $1 AND last_sequence < $2")
            .bind(projection.name)
            .bind(to_i64(live))
            .execute(&mut *tx)
            .await?;
    }
    // The shadow belongs to this log and these filters, even when it applied
    // nothing (an empty log, no events of its subjects).
    sqlx::query("UPDATE checkpoint SET log_identity = $2, filters = $3 WHERE projection = $1")
        .bind(projection.name)
        .bind(&identity)
        .bind(projection.filter_subjects())
        .execute(&mut *tx)
        .await?;
    let old = format!("{}_old", projection.schema);
    let schema = projection.schema;
    // All three names are built from static projection schema names.
    let swap = if live_exists {
        format!(
            "DROP SCHEMA IF EXISTS \"{old}\" CASCADE; ALTER SCHEMA \"{schema}\" RENAME TO \"{old}\"; \
             ALTER SCHEMA \"{shadow}\" RENAME TO \"{schema}\"; DROP SCHEMA \"{old}\" CASCADE;"
        )
    } else {
        format!("ALTER SCHEMA \"{shadow}\" RENAME TO \"{schema}\";")
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(swap)).execute(&mut *tx).await?;
    let checkpoint = read_checkpoint(&mut tx, projection, schema).await?;
    tx.commit().await?;
    Ok(RebuildReport {
        projection: projection.name.to_owned(),
        events,
        checkpoint,
        millis: started.elapsed().as_millis(),
    })
}

/// Gathers the planner's statistics for every table of `schema`. Tables
/// filled in one go have none until autovacuum comes by, and without them
/// the planner takes a brand's thousands of rows for a handful (the product
/// list then sorts the whole brand instead of reading its index: 2.4 times
/// slower, measured with pgbench).
async fn analyze_schema(conn: &mut PgConnection, schema: &str) -> Result<(), RunError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    if !tables.is_empty() {
        // The names were quoted by format('%I.%I').
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {}", tables.join(", "))))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Takes the projection's rebuild lock for the life of `conn` (a session
/// advisory lock, released when the connection closes), or refuses at once
/// naming the session that holds it.
async fn take_rebuild_lock(conn: &mut PgConnection, projection: &Projection) -> Result<(), RunError> {
    // Named so that a refused rebuild can say who holds the lock.
    let me = format!("gps rebuild {} (pid {} on {})", projection.name, std::process::id(), host_name());
    sqlx::query("SELECT set_config('application_name', $1, false)").bind(&me).execute(&mut *conn).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(projection.rebuild_lock_key())
        .fetch_one(&mut *conn)
        .await?;
    if locked {
        return Ok(());
    }
    // A bigint advisory key is stored as two 32-bit halves (classid, objid).
    let holder: Option<(String, i32, String)> = sqlx::query_as(
        "SELECT coalesce(nullif(a.application_name, ''), 'an unnamed session'), a.pid,
                to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)",
    )
    .bind(projection.rebuild_lock_key())
    .fetch_optional(&mut *conn)
    .await?;
    let holder = match holder {
        Some((name, pid, since)) => format!("{name}, Postgres session {pid} since {since}"),
        None => "a session that has just ended".to_owned(),
    };
    Err(RunError::RebuildRunning { projection: projection.name.to_owned(), holder })
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "an unknown host".to_owned())
}

/// Which part of the log a replay into a separate schema reads, and where it stops.
#[derive(Debug, Clone, Default)]
pub struct ReplayLimit {
    /// Only this brand's events.
    pub brand: Option<gps_domain::ids::BrandId>,
    /// Up to this stream sequence (default: the stream's last at the start).
    pub until_sequence: Option<u64>,
    /// Only events the server had stored at this instant.
    pub stored_until: Option<time::OffsetDateTime>,
}

/// Replays `projection` from sequence 1 into `schema`, created fresh (an
/// existing one is dropped), within `limit`, calling `progress` with the
/// number of events applied after each batch. The schema is left in place for
/// the caller (as-of views, shadow comparisons); the live schema is untouched.
pub async fn replay_into(
    pool: &PgPool,
    log: &EventLog,
    projection: &Projection,
    schema: &str,
    limit: &ReplayLimit,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, RunError> {
    if schema == projection.schema || !crate::db::is_safe_identifier(schema) {
        return Err(RunError::Postgres(sqlx::Error::Protocol(format!(
            "cannot replay {} into {schema:?}: give a plain identifier other than the live schema",
            projection.name
        ))));
    }
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    // `schema` was checked above.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
        .execute(&mut conn)
        .await?;
    prepare_schema(&mut conn, projection, schema).await?;
    let state = log.state().await.map_err(nats)?;
    let identity = state.identity.token();
    let until = limit.until_sequence.unwrap_or(state.last_sequence);
    let filters = match &limit.brand {
        // `gps.evt.*.product.>` → `gps.evt.<brand>.product.>`; `gps.evt.>` → `gps.evt.<brand>.>`.
        Some(brand) => projection
            .filters
            .iter()
            .map(|filter| match filter.strip_prefix("gps.evt.*.") {
                Some(rest) => format!("gps.evt.{brand}.{rest}"),
                None => filter.replacen("gps.evt.>", &format!("gps.evt.{brand}.>"), 1),
            })
            .collect(),
        None => projection.filter_subjects(),
    };
    let mut chunks =
        Replay::open_limited(log, filters, 0, until, limit.stored_until).await?.prefetch(REPLAY_BATCH);
    let mut events = 0;
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        events += chunk.len() as u64;
        apply_decoded_with_connection(&mut conn, projection, schema, chunk, Some(&identity)).await?;
        progress(events);
    }
    Ok(events)
}

/// Reads the projection's subjects from the stream, in order, after `after`
/// and up to `until`, with an ordered (ephemeral) consumer.
struct Replay {
    messages: Option<async_nats::jetstream::consumer::pull::Ordered>,
    until: u64,
    /// Stops at the first message the server stored after this instant (an
    /// auditor's as-of rebuild).
    stored_until: Option<time::OffsetDateTime>,
}

/// How long a replay waits for the next message before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Replay {
    async fn open(log: &EventLog, projection: &Projection, after: u64, until: u64) -> Result<Self, RunError> {
        Self::open_limited(log, projection.filter_subjects(), after, until, None).await
    }

    async fn open_limited(
        log: &EventLog,
        filter_subjects: Vec<String>,
        after: u64,
        until: u64,
        stored_until: Option<time::OffsetDateTime>,
    ) -> Result<Self, RunError> {
        use async_nats::jetstream::consumer;
        if until <= after {
            return Ok(Replay { messages: None, until, stored_until });
        }
        let stream = log.jetstream().get_stream(&log.settings().name).await.map_err(nats)?;
        let deliver_policy = if after == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        // An ordered consumer on nothing waits forever: check first.
        if consumer.cached_info().num_pending == 0 {
            return Ok(Replay { messages: None, until, stored_until });
        }
        let messages = consumer.messages().await.map_err(nats)?;
        Ok(Replay { messages: Some(messages), until, stored_until })
    }

    /// Reads chunks of up to `max` events in one task and decodes them in
    /// another, each at most two chunks ahead of the next stage, so reading
    /// the stream, decoding and writing Postgres (the caller) all overlap.
    /// The returned channel closes after the last chunk or after an error.
    fn prefetch(mut self, max: usize) -> tokio::sync::mpsc::Receiver<Result<Vec<DecodedEvent>, RunError>> {
        let (read_sender, mut read) = tokio::sync::mpsc::channel::<Result<Vec<RawEvent>, RunError>>(2);
        tokio::spawn(async move {
            loop {
                match self.next_chunk(max).await {
                    Ok(chunk) if chunk.is_empty() => return,
                    result => {
                        let failed = result.is_err();
                        if read_sender.send(result).await.is_err() || failed {
                            return;
                        }
                    }
                }
            }
        });
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            while let Some(chunk) = read.recv().await {
                let decoded = chunk.map(|chunk| chunk.into_iter().map(DecodedEvent::new).collect());
                let failed = decoded.is_err();
                if sender.send(decoded).await.is_err() || failed {
                    return;
                }
            }
        });
        receiver
    }

    async fn next_chunk(&mut self, max: usize) -> Result<Vec<RawEvent>, RunError> {
        let mut chunk = Vec::new();
        while chunk.len() < max {
            let Some(messages) = self.messages.as_mut() else { break };
            let message = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| RunError::Nats("timed out replaying the stream".into()))?
                .ok_or_else(|| RunError::Nats("the replay consumer closed".into()))?
                .map_err(nats)?;
            let info = message.info().map_err(nats)?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            if sequence > self.until || self.stored_until.is_some_and(|cut| info.published > cut) {
                self.messages = None;
                break;
            }
            chunk.push(RawEvent::from_message(&message).map_err(RunError::Nats)?);
            if pending == 0 || sequence >= self.until {
                self.messages = None;
            }
        }
        Ok(chunk)
    }
}
