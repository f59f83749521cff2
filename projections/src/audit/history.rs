//! The history of one aggregate: every event with who caused it, when, through
//! which command and correlation, and the aggregate's state after it — folded
//! with the domain's own `evolve`, step by step, so the states are exactly what
//! the write side decided with.
//!
//! For a prediction this tells the whole story: its production event carries
//! the inputs, workflow version, provider and seed; review events name the
//! reviewers; exports that delivered it are their own aggregates, and their
//! ids appear in the prediction's correlation ids and in the activity read model.

use gps_domain::ids::BrandId;
use gps_domain::wire::{self, Actor, EventEnvelope};
use gps_domain::{Aggregate, AggregateKind};
use gps_nats::{AggregateAddress, EventLog, LogScan};
use serde::Serialize;
use time::OffsetDateTime;

use super::{AuditError, rfc3339};

/// One event of an aggregate's history with the state after it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Stream sequence.
    pub stream_sequence: u64,
    /// When the server stored it, RFC 3339.
    pub stored_at: String,
    /// When the command was accepted, RFC 3339.
    pub occurred_at: String,
    /// The aggregate's version after this event.
    pub aggregate_version: u64,
    /// The event's id.
    pub event_id: String,
    /// Its type, e.g. `prediction.approved`.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: u32,
    /// Who caused it.
    #[schema(value_type = Object)]
    pub actor: Actor,
    /// The command that produced it.
    pub command_id: String,
    /// The id shared by everything one action set off.
    pub correlation_id: String,
    /// The command or event that directly caused it.
    pub causation_id: String,
    /// Its hash in the aggregate's chain.
    pub hash: String,
    /// The payload as stored.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The aggregate's state after this event.
    #[schema(value_type = Object)]
    pub state_after: serde_json::Value,
}

/// An aggregate's history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct History {
    /// The brand.
    pub brand: String,
    /// The aggregate type, e.g. `prediction`.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The instant the history was cut at, when asked for one (RFC 3339).
    pub as_of: Option<String>,
    /// Events, oldest first.
    pub events: Vec<HistoryEntry>,
    /// Other aggregates' histories that belong to the story: for a
    /// prediction, the exports that delivered it.
    pub related: Vec<RelatedHistory>,
}

/// The history of another aggregate that belongs to the story.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RelatedHistory {
    /// Its type, e.g. `export`.
    pub aggregate_type: String,
    /// Its id.
    pub aggregate_id: String,
    /// Its events, oldest first.
    pub events: Vec<HistoryEntry>,
}

/// Parses an aggregate reference `<brand>/<type>/<id>` (also with `.` or `:`
/// between the parts).
pub fn parse_reference(reference: &str) -> Result<(BrandId, AggregateKind, String), AuditError> {
    let parts: Vec<&str> = reference.split(['/', ':', '.']).collect();
    let [brand, kind, id] = parts.as_slice() else {
        return Err(AuditError::Invalid(format!(
            "aggregate reference {reference:?} must be <brand>/<aggregate-type>/<id>, e.g. acme/prediction/p-1"
        )));
    };
    let brand = BrandId::parse(*brand).map_err(|e| AuditError::Invalid(e.to_string()))?;
    let kind = parse_kind(kind)?;
    Ok((brand, kind, (*id).to_owned()))
}

/// Parses an aggregate type name.
pub fn parse_kind(name: &str) -> Result<AggregateKind, AuditError> {
    AggregateKind::parse(name).ok_or_else(|| {
        let known: Vec<&str> = AggregateKind::ALL.iter().map(|kind| kind.as_str()).collect();
        AuditError::Invalid(format!("unknown aggregate type {name:?}; known: {}", known.join(", ")))
    })
}

/// Reads the history of one aggregate, cut at `as_of` (storage time) when given.
/// An aggregate without events has an empty history.
pub async fn history(
    log: &EventLog,
    brand: &BrandId,
    kind: AggregateKind,
    id: &str,
    as_of: Option<OffsetDateTime>,
) -> Result<History, AuditError> {
    let address =
        AggregateAddress::new(brand.clone(), kind, id).map_err(|e| AuditError::Invalid(e.to_string()))?;
    let stored = read(log, &address.subject(), as_of).await?;
    let events = entries(kind, stored)?;
    let mut related = Vec::new();
    if kind == AggregateKind::Prediction {
        related = exports_of_prediction(log, brand, id, as_of).await?;
    }
    Ok(History {
        brand: brand.to_string(),
        aggregate_type: kind.as_str().to_owned(),
        aggregate_id: id.to_owned(),
        as_of: as_of.map(rfc3339),
        events,
        related,
    })
}

/// The exports that include a prediction, each with its whole history: where
/// the prediction was delivered.
async fn exports_of_prediction(
    log: &EventLog,
    brand: &BrandId,
    prediction: &str,
    as_of: Option<OffsetDateTime>,
) -> Result<Vec<RelatedHistory>, AuditError> {
    let filter = format!("{}.{brand}.export.>", gps_nats::subjects::EVENT_SUBJECT_PREFIX);
    let mut by_export: std::collections::BTreeMap<String, Vec<(EventEnvelope, OffsetDateTime)>> =
        std::collections::BTreeMap::new();
    for (envelope, stored_at) in read(log, &filter, as_of).await? {
        by_export.entry(envelope.aggregate_id.clone()).or_default().push((envelope, stored_at));
    }
    let mut related = Vec::new();
    for (export_id, stored) in by_export {
        let includes = stored.first().is_some_and(|(first, _)| {
            first
                .payload
                .get("prediction_ids")
                .and_then(|ids| ids.as_array())
                .is_some_and(|ids| ids.iter().any(|candidate| candidate.as_str() == Some(prediction)))
        });
        if includes {
            related.push(RelatedHistory {
                aggregate_type: AggregateKind::Export.as_str().to_owned(),
                aggregate_id: export_id,
                events: entries(AggregateKind::Export, stored)?,
            });
        }
    }
    related.sort_by_key(|history| history.events.first().map(|entry| entry.stream_sequence));
    Ok(related)
}

/// Reads the envelopes on `filter`, in stream order, up to `as_of` (storage time).
async fn read(
    log: &EventLog,
    filter: &str,
    as_of: Option<OffsetDateTime>,
) -> Result<Vec<(EventEnvelope, OffsetDateTime)>, AuditError> {
    let mut scan = LogScan::open(log, filter, 1).await?;
    let mut stored = Vec::new();
    while let Some(message) = scan.next().await? {
        if as_of.is_some_and(|cut| message.stored_at > cut) {
            break;
        }
        let mut envelope: EventEnvelope = serde_json::from_slice(&message.payload).map_err(|e| {
            AuditError::Invalid(format!(
                "the event at stream sequence {} is not an envelope ({e}); run gps audit verify",
                message.sequence
            ))
        })?;
        envelope.stream_sequence = Some(message.sequence);
        stored.push((envelope, message.stored_at));
    }
    Ok(stored)
}

/// One aggregate's events with the state after each.
fn entries(
    kind: AggregateKind,
    stored: Vec<(EventEnvelope, OffsetDateTime)>,
) -> Result<Vec<HistoryEntry>, AuditError> {
    let states = match kind {
        AggregateKind::Brand => fold::<gps_domain::brand::Brand>(&stored),
        AggregateKind::Product => fold::<gps_domain::product::Product>(&stored),
        AggregateKind::Subject => fold::<gps_domain::subject::Subject>(&stored),
        AggregateKind::Style => fold::<gps_domain::style::Style>(&stored),
        AggregateKind::Shooting => fold::<gps_domain::shooting::Shooting>(&stored),
        AggregateKind::Look => fold::<gps_domain::look::Look>(&stored),
        AggregateKind::Generation => fold::<gps_domain::generation::Generation>(&stored),
        AggregateKind::Prediction => fold::<gps_domain::prediction::Prediction>(&stored),
        AggregateKind::Export => fold::<gps_domain::export::Export>(&stored),
        AggregateKind::Import => fold::<gps_domain::import::Import>(&stored),
        AggregateKind::Person => fold::<gps_domain::person::Person>(&stored),
        AggregateKind::AuditAccess => fold::<gps_domain::audit_access::AuditAccess>(&stored),
    }?;
    Ok(stored
        .into_iter()
        .zip(states)
        .map(|((envelope, stored_at), state_after)| HistoryEntry {
            stream_sequence: envelope.stream_sequence.unwrap_or_default(),
            stored_at: rfc3339(stored_at),
            occurred_at: envelope.occurred_at,
            aggregate_version: envelope.aggregate_version,
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            schema_version: envelope.schema_version,
            actor: envelope.actor,
            command_id: envelope.command_id,
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            hash: envelope.hash,
            payload: envelope.payload,
            state_after,
        })
        .collect())
}

/// The state after each event, serialized.
fn fold<A: Aggregate>(
    stored: &[(EventEnvelope, OffsetDateTime)],
) -> Result<Vec<serde_json::Value>, AuditError> {
    let mut state = A::default();
    let mut states = Vec::with_capacity(stored.len());
    for (envelope, _) in stored {
        let event =
            wire::decode::<A::Event>(&envelope.event_type, envelope.schema_version, envelope.payload.clone())
                .map_err(|e| {
                    AuditError::Invalid(format!(
                        "event at stream sequence {} does not decode ({e}); run gps audit verify",
                        envelope.stream_sequence.unwrap_or_default()
                    ))
                })?;
        state = state.evolve(&event);
        states.push(serde_json::to_value(&state).unwrap_or(serde_json::Value::Null));
    }
    Ok(states)
}

/// Renders a history as a plain-text table, one event per line.
pub fn render_table(history: &History) -> String {
    let mut out = table(
        &format!(
            "{} {} of brand {}{}",
            history.aggregate_type,
            history.aggregate_id,
            history.brand,
            history.as_of.as_ref().map(|at| format!(" as of {at}")).unwrap_or_default()
        ),
        &history.events,
    );
    for related in &history.related {
        out.push('\n');
        out.push_str(&table(
            &format!("related {} {}", related.aggregate_type, related.aggregate_id),
            &related.events,
        ));
    }
    out
}

fn table(title: &str, events: &[HistoryEntry]) -> String {
    let mut out = format!("{title}: {} events\n", events.len());
    out.push_str(&format!(
        "{:>8} {:>4}  {:<30} {:<34} {:<24} {:<24}\n",
        "sequence", "ver", "stored at", "event", "actor", "command"
    ));
    for entry in events {
        let actor = match &entry.actor {
            Actor::Member(id) => format!("member:{id}"),
            Actor::ApiClient(id) => format!("api_client:{id}"),
            Actor::System(name) => format!("system:{name}"),
        };
        out.push_str(&format!(
            "{:>8} {:>4}  {:<30} {:<34} {:<24} {:<24}\n",
            entry.stream_sequence,
            entry.aggregate_version,
            entry.stored_at,
            format!("{} v{}", entry.event_type, entry.schema_version),
            actor,
            entry.command_id
        ));
    }
    out
}
