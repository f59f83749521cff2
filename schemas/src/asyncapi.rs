//! The AsyncAPI 3.0 document of the event log: one channel per aggregate kind on
//! `gps.evt.{brand}.<aggregate>.{id}`, one message per event type and version with
//! its headers, the payload being the envelope with that event's schema inside.
//!
//! Payload schemas are referenced by relative path (`envelope.v1.schema.json`,
//! `events/<type>.v<n>.schema.json`), so the document is read next to those files.

use gps_domain::AggregateKind;
use gps_domain::wire::EventSchema;
use serde_json::{Map, Value, json};

use crate::event_schemas::slash_path;
use crate::{
    ENVELOPE_FILE, HEADER_AGGREGATE_VERSION, HEADER_COMMAND_ID, HEADER_EVENT_TYPE, HEADER_MSG_ID,
    HEADER_SCHEMA_VERSION, SCHEMA_BASE_URL, STREAM_NAME, SUBJECT_PREFIX, event_schema_file,
};

/// The key of a message in `components.messages` and in its channel.
fn message_key(schema: &EventSchema) -> String {
    format!("{}.v{}", schema.event_type, schema.version)
}

/// `product` → `receiveProductEvents`.
fn operation_key(kind: AggregateKind) -> String {
    let name = kind.as_str();
    let mut chars = name.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase()).into_iter();
    format!("receive{}Events", first.chain(chars).collect::<String>())
}

/// The whole document.
pub(crate) fn document(catalog: &[EventSchema]) -> Value {
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for kind in AggregateKind::ALL {
        let events: Vec<&EventSchema> = catalog.iter().filter(|s| s.aggregate == kind).collect();
        if events.is_empty() {
            continue;
        }
        let channel = kind.as_str();
        let mut channel_messages = Map::new();
        let mut operation_messages = Vec::new();
        for schema in &events {
            let key = message_key(schema);
            channel_messages.insert(key.clone(), json!({ "$ref": format!("#/components/messages/{key}") }));
            operation_messages.push(json!({ "$ref": format!("#/channels/{channel}/messages/{key}") }));
            messages.insert(key, message(schema));
        }
        channels.insert(
            channel.to_owned(),
            json!({
                "address": format!("{SUBJECT_PREFIX}.{{brand}}.{channel}.{{id}}"),
                "title": format!("{channel} events"),
                "description": format!(
                    "Every event of every {channel} aggregate. One subject per aggregate instance; \
                     subscribe to {SUBJECT_PREFIX}.*.{channel}.* for all brands or \
                     {SUBJECT_PREFIX}.<brand>.{channel}.* for one brand."
                ),
                "parameters": {
                    "brand": { "$ref": "#/components/parameters/brand" },
                    "id": { "$ref": "#/components/parameters/id" },
                },
                "messages": channel_messages,
            }),
        );
        operations.insert(
            operation_key(kind),
            json!({
                "action": "receive",
                "channel": { "$ref": format!("#/channels/{channel}") },
                "title": format!("Consume {channel} events"),
                "summary": format!(
                    "Read {channel} events from the {STREAM_NAME} stream with a JetStream consumer \
                     filtered on {SUBJECT_PREFIX}.*.{channel}.* (or one brand's subjects)."
                ),
                "messages": operation_messages,
            }),
        );
    }
    json!({
        "asyncapi": "3.0.0",
        "id": format!("{SCHEMA_BASE_URL}asyncapi.json"),
        "info": {
            "title": "GPS event log",
            "version": "1.0.0",
            "description": format!(
                "The event log of GPS, the Generative Production System: every change to a brand, \
                 product, subject, style, shooting, look, generation, prediction or export, stored \
                 on the NATS JetStream stream {STREAM_NAME}. The log is append-only (delete and purge \
                 are denied) and kept forever, so a consumer can replay it from any stream sequence. \
                 Only GPS publishes; downstream systems receive. The events of one command on one \
                 aggregate are stored as one atomic batch: all of them or none. See README.md next \
                 to this file for the hash chain and the versioning rules."
            ),
        },
        "defaultContentType": "application/json",
        "x-gps-stream": {
            "name": STREAM_NAME,
            "subjects": [format!("{SUBJECT_PREFIX}.>")],
            "storage": "file",
            "retention": "limits",
            "max_age": "unlimited",
            "deny_delete": true,
            "deny_purge": true,
            "allow_atomic_publish": true,
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "brand": {
                    "description": "The brand (tenant) id: 1 to 64 ASCII letters, digits, '-' or '_'.",
                    "examples": ["acme"],
                },
                "id": {
                    "description": "The aggregate id: 1 to 64 ASCII letters, digits, '-' or '_'.",
                    "examples": ["prod-dr-2041"],
                },
            },
            "messages": messages,
        },
    })
}

/// One event type at one version: its headers and payload.
fn message(schema: &EventSchema) -> Value {
    let payload_schema: Value = (schema.schema)().into();
    let summary =
        payload_schema.get("description").and_then(Value::as_str).unwrap_or(schema.event_type).to_owned();
    let file = slash_path(&event_schema_file(schema.event_type, schema.version));
    json!({
        "name": schema.event_type,
        "title": format!("{} v{}", schema.event_type, schema.version),
        "summary": summary,
        "contentType": "application/json",
        "x-gps-aggregate": schema.aggregate.as_str(),
        "headers": {
            "type": "object",
            "required": [HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION, HEADER_AGGREGATE_VERSION, HEADER_COMMAND_ID],
            "properties": {
                HEADER_EVENT_TYPE: {
                    "type": "string",
                    "const": schema.event_type,
                    "description": "The event type; equals the body's event_type. Filter on it without parsing the body.",
                },
                HEADER_SCHEMA_VERSION: {
                    "type": "string",
                    "const": schema.version.to_string(),
                    "description": "The payload's schema version, in decimal; equals the body's schema_version.",
                },
                HEADER_AGGREGATE_VERSION: {
                    "type": "string",
                    "pattern": "^[1-9][0-9]*$",
                    "description": "The event's position in its aggregate (1 for the first), in decimal; equals the body's aggregate_version.",
                },
                HEADER_COMMAND_ID: {
                    "type": "string",
                    "description": "The command that produced the event; equals the body's command_id. Every event of one command carries it.",
                },
                HEADER_MSG_ID: {
                    "type": "string",
                    "description": "JetStream deduplication id: the command id, set on the first event of each command only.",
                },
            },
        },
        "payload": {
            "allOf": [
                { "$ref": ENVELOPE_FILE },
                {
                    "type": "object",
                    "properties": {
                        "event_type": { "const": schema.event_type },
                        "schema_version": { "const": schema.version },
                        "aggregate_type": { "const": schema.aggregate.as_str() },
                        "payload": { "$ref": file },
                    },
                },
            ],
        },
    })
}
