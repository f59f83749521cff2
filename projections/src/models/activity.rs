//! The `activity` projection: the per-brand feed, one row per event with a
//! short human summary ("product p1: created").

use futures::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::Event;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let envelope = &e.envelope;
        sqlx::query(
            "INSERT INTO activity (sequence, brand, occurred_at, actor, event_type, aggregate_type, aggregate_id,
                                   aggregate_version, summary, correlation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.sequence)
        .bind(e.brand())
        .bind(e.at)
        .bind(Json(&envelope.actor))
        .bind(&envelope.event_type)
        .bind(&envelope.aggregate_type)
        .bind(&envelope.aggregate_id)
        .bind(e.version)
        .bind(summary(e))
        .bind(&envelope.correlation_id)
        .execute(&mut *conn)
        .await
        .map(drop)
    })
}

/// "<aggregate> <id>: <what happened>", plus the name the event sets, if any.
fn summary(e: &Event) -> String {
    let envelope = &e.envelope;
    let what = envelope
        .event_type
        .split_once('.')
        .map_or(envelope.event_type.as_str(), |(_, what)| what)
        .replace('_', " ");
    let name = envelope.payload.get("name").and_then(|name| name.as_str());
    match name {
        Some(name) => format!("{} {}: {what} ({name})", envelope.aggregate_type, envelope.aggregate_id),
        None => format!("{} {}: {what}", envelope.aggregate_type, envelope.aggregate_id),
    }
}
