//! How events cross process boundaries: the envelope every stored event carries,
//! and the versioned encoding of an event enum to `(type, version, payload)`.
//!
//! Versioning rule (see `schemas/README.md`): adding an optional field keeps the
//! version; any other change is a new version, and the old version keeps
//! decoding through [`DomainEvent::upcast`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AggregateKind, DomainEvent};

/// One event type at one schema version, with its JSON Schema.
#[derive(Clone)]
pub struct EventSchema {
    /// Wire name, e.g. `product.created`.
    pub event_type: &'static str,
    /// Schema version.
    pub version: u32,
    /// The aggregate this event belongs to.
    pub aggregate: AggregateKind,
    /// Generates the JSON Schema of the payload.
    pub schema: fn() -> schemars::Schema,
}

impl std::fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSchema")
            .field("event_type", &self.event_type)
            .field("version", &self.version)
            .field("aggregate", &self.aggregate)
            .finish()
    }
}

/// Why a stored payload could not be turned back into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The event type is not one this aggregate knows.
    #[error("unknown event type {event_type:?}")]
    UnknownType {
        /// The type found in the envelope.
        event_type: String,
    },
    /// The schema version is newer than this build, or an old one without an upcaster.
    #[error(
        "event type {event_type:?} has no decoder for schema version {version} (this build writes version {current})"
    )]
    UnknownVersion {
        /// The type found in the envelope.
        event_type: String,
        /// The version found.
        version: u32,
        /// The version this build writes.
        current: u32,
    },
    /// The payload does not match the schema.
    #[error("payload of {event_type:?} v{version} does not match its schema: {reason}")]
    InvalidPayload {
        /// The type found in the envelope.
        event_type: String,
        /// The version found.
        version: u32,
        /// What serde reported.
        reason: String,
    },
}

/// An event encoded for the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    /// Wire name.
    pub event_type: &'static str,
    /// Schema version.
    pub schema_version: u32,
    /// The payload, without the type tag.
    pub payload: serde_json::Value,
}

/// Encodes an event to its wire form.
pub fn encode<E: DomainEvent>(event: &E) -> EncodedEvent {
    let tagged = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    let payload = match tagged {
        serde_json::Value::Object(mut map) => map.remove("data").unwrap_or(serde_json::Value::Null),
        other => other,
    };
    EncodedEvent { event_type: event.event_type(), schema_version: event.schema_version(), payload }
}

/// Decodes an event from its wire form, upcasting older schema versions.
pub fn decode<E: DomainEvent>(
    event_type: &str,
    version: u32,
    payload: serde_json::Value,
) -> Result<E, DecodeError> {
    let payload = E::upcast(event_type, version, payload)?;
    let tagged = serde_json::json!({ "type": event_type, "data": payload });
    serde_json::from_value(tagged).map_err(|error| DecodeError::InvalidPayload {
        event_type: event_type.to_owned(),
        version,
        reason: error.to_string(),
    })
}

/// The default upcaster: accepts the current version of known types, refuses
/// anything else with a message naming both versions.
pub fn refuse_unknown_version<E: DomainEvent>(
    event_type: &str,
    version: u32,
    payload: serde_json::Value,
) -> Result<serde_json::Value, DecodeError> {
    let current = E::catalog()
        .into_iter()
        .find(|schema| schema.event_type == event_type)
        .map(|schema| schema.version)
        .ok_or_else(|| DecodeError::UnknownType { event_type: event_type.to_owned() })?;
    if version == current {
        Ok(payload)
    } else {
        Err(DecodeError::UnknownVersion { event_type: event_type.to_owned(), version, current })
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A brand member acting through the UI or API.
    Member(crate::ids::MemberId),
    /// A machine client of the brand's API.
    ApiClient(crate::ids::ApiClientId),
    /// GPS itself: a process manager or compute agent, named by role.
    System(String),
}

/// The envelope of every stored event: identity, position, causality, integrity.
///
/// The stream sequence is not part of the stored body (it is only known once the
/// server has stored the message); readers fill it in from the message metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// Unique id of this event (UUIDv7, so ids sort by creation time).
    pub event_id: String,
    /// Wire name of the payload, e.g. `product.created`; also header `Gps-Event-Type`.
    pub event_type: String,
    /// Schema version of the payload; also header `Gps-Schema-Version`.
    pub schema_version: u32,
    /// The brand (tenant) the aggregate belongs to.
    pub brand: String,
    /// The aggregate kind, e.g. `product`.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// 1 for the aggregate's first event, then +1 per event, without gaps.
    pub aggregate_version: u64,
    /// When the command was accepted, RFC 3339 in UTC.
    pub occurred_at: String,
    /// Who caused it.
    pub actor: Actor,
    /// The command that produced this event; its message id for deduplication.
    pub command_id: String,
    /// The id shared by everything one user action set off.
    pub correlation_id: String,
    /// The id of the command or event that directly caused this one.
    pub causation_id: String,
    /// `hash` of the aggregate's previous event, or 64 zeros for its first.
    pub prev_hash: String,
    /// sha256 over `prev_hash` and this envelope's canonical bytes (every field
    /// but `hash` and `stream_sequence`), so any later edit breaks the chain.
    pub hash: String,
    /// The event payload, as described by the schema of `event_type` v`schema_version`.
    pub payload: serde_json::Value,
    /// Position in the stream, filled in by readers; absent in the stored body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_sequence: Option<u64>,
}

/// The `prev_hash` of an aggregate's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
