//! Retrying dead letters: after a fix (a new build that knows an event type,
//! a corrected model), `gps projections retry-dead-letters [NAME]` applies
//! each dead-lettered event again.
//!
//! Each dead letter is read back from the log by its stream sequence (the
//! log, not the stored body, is the source of truth), decoded and applied in
//! its own transaction under the projection's swap lock (shared, like a
//! runner's batch) with the checkpoint row locked, so it never interleaves
//! with a batch or a rebuild's swap. On success the dead letter is deleted;
//! otherwise it stays, with the new reason.
//!
//! A retried event is applied after the events that followed it in the log.
//! For models whose rows record "the last event applied" (versions,
//! `last_sequence`), that can leave an older value than a replay in order
//! would; `gps projections rebuild NAME` gives the exact in-order result
//! (and also applies every event that decodes now).

use gps_nats::EventLog;
use sqlx::{Connection, PgConnection, PgPool};

use crate::event::{RawEvent, decode, to_i64};
use crate::projection::{Projection, prepare_schema};
use crate::runner::{RunError, begin_batch, is_event_fault};

/// What a retry of one projection's dead letters did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryReport {
    /// The projection.
    pub projection: String,
    /// Dead letters tried.
    pub tried: usize,
    /// Applied now, and removed from the dead letters.
    pub applied: usize,
    /// Still failing (kept, with the latest reason).
    pub still_dead: usize,
}

/// Applies every dead letter of `projection` again, in stream order.
pub async fn retry_dead_letters(
    pool: &PgPool,
    log: &EventLog,
    projection: &Projection,
) -> Result<RetryReport, RunError> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    prepare_schema(&mut conn, projection, projection.schema).await?;
    let sequences: Vec<i64> =
        sqlx::query_scalar("SELECT stream_sequence FROM dead_letters ORDER BY stream_sequence")
            .fetch_all(&mut conn)
            .await?;
    let stream =
        log.jetstream().get_stream(&log.settings().name).await.map_err(|e| RunError::Nats(e.to_string()))?;
    let mut report = RetryReport { projection: projection.name.to_owned(), ..RetryReport::default() };
    for sequence in sequences {
        report.tried += 1;
        let stored = u64::try_from(sequence).unwrap_or(0);
        let message = stream.get_raw_message(stored).await.map_err(|e| {
            RunError::Nats(format!("reading dead letter {sequence} of {} from the log: {e}", projection.name))
        })?;
        let raw = RawEvent {
            sequence: stored,
            subject: message.subject.to_string(),
            event_type_header: message
                .headers
                .get(gps_nats::HEADER_EVENT_TYPE)
                .map(|value| value.as_str().to_owned()),
            body: message.payload,
        };
        let mut tx = conn.begin().await?;
        begin_batch(&mut tx, projection, projection.schema).await?;
        sqlx::query("SELECT last_sequence FROM checkpoint WHERE projection = $1 FOR UPDATE")
            .bind(projection.name)
            .execute(&mut *tx)
            .await?;
        let outcome = match decode(&raw) {
            Err(reason) => Err(reason),
            Ok(event) => {
                let mut savepoint = tx.begin().await?;
                match (projection.apply)(&mut savepoint, &event).await {
                    Ok(()) => {
                        savepoint.commit().await?;
                        Ok(())
                    }
                    Err(error) if is_event_fault(&error) => {
                        savepoint.rollback().await?;
                        Err(format!("cannot be applied: {error}"))
                    }
                    Err(error) => return Err(RunError::Postgres(error)),
                }
            }
        };
        match outcome {
            Ok(()) => {
                sqlx::query("DELETE FROM dead_letters WHERE stream_sequence = $1")
                    .bind(to_i64(stored))
                    .execute(&mut *tx)
                    .await?;
                report.applied += 1;
            }
            Err(reason) => {
                sqlx::query(
                    "UPDATE dead_letters SET reason = $2, recorded_at = now() WHERE stream_sequence = $1",
                )
                .bind(to_i64(stored))
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                report.still_dead += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}
