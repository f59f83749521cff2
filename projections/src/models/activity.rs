//! The `activity` projection: the per-brand feed, one row per event with a
//! short human summary ("product p1: created"). Its filter takes the whole
//! log; platform-level events (persons, under `_platform`) belong to no
//! brand's feed and are skipped.

use futures::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::Event;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        if !is_brand_event(e) {
            return Ok(());
        }
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

/// One multi-row insert for a run of events (arrays unnested into rows): the
/// feed is a row per event and no event reads another's row.
pub(crate) fn apply_many<'a>(
    conn: &'a mut PgConnection,
    events: &'a [Event],
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        if let [one] = events {
            return apply(conn, one).await;
        }
        let events: Vec<&Event> = events.iter().filter(|e| is_brand_event(e)).collect();
        let n = events.len();
        if n == 0 {
            return Ok(());
        }
        let (mut sequence, mut brand, mut at, mut actor) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut event_type, mut aggregate_type, mut aggregate_id) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut version, mut summaries, mut correlation) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for e in events {
            let envelope = &e.envelope;
            sequence.push(e.sequence);
            brand.push(e.brand());
            at.push(e.at);
            actor.push(Json(&envelope.actor));
            event_type.push(envelope.event_type.as_str());
            aggregate_type.push(envelope.aggregate_type.as_str());
            aggregate_id.push(envelope.aggregate_id.as_str());
            version.push(e.version);
            summaries.push(summary(e));
            correlation.push(envelope.correlation_id.as_str());
        }
        sqlx::query(
            "INSERT INTO activity (sequence, brand, occurred_at, actor, event_type, aggregate_type, aggregate_id,
                                   aggregate_version, summary, correlation_id)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::jsonb[], $5::text[],
                                  $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[])",
        )
        .bind(sequence)
        .bind(brand)
        .bind(at)
        .bind(actor)
        .bind(event_type)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(version)
        .bind(summaries)
        .bind(correlation)
        .execute(&mut *conn)
        .await
        .map(drop)
    })
}

/// Whether the event belongs to a brand (and so to its feed).
fn is_brand_event(e: &Event) -> bool {
    e.brand() != gps_domain::ids::PLATFORM_SCOPE
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
