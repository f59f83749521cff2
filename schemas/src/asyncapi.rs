//! The AsyncAPI 3.0 document of the event log, read two ways:
//! - over NATS: one channel per aggregate kind on `gps.evt.{brand}.<aggregate>.{id}`,
//!   one message per event type and version with its headers, the payload being the
//!   envelope with that event's schema inside;
//! - over HTTP: the gateway's Server-Sent Events channel
//!   `GET /api/v1/brands/{brand}/events` ([`EVENT_STREAM_PATH`]), one SSE message
//!   per event type and version (`id` = stream sequence, `event` = event type,
//!   `data` = the envelope with `stream_sequence` filled in).
//!
//! The HTTP channel's path and query parameters are restated here (this crate
//! depends on no HTTP crate); a gateway test checks them against its router.
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

/// The path of the gateway's event stream for downstream systems.
pub const EVENT_STREAM_PATH: &str = "/api/v1/brands/{brand}/events";
/// The query parameters the event stream takes (the JSON form also `limit`).
pub const EVENT_STREAM_QUERY: [&str; 4] = ["after", "limit", "aggregate", "type"];
/// The AsyncAPI key of the event stream's channel.
const SSE_CHANNEL: &str = "brandEventStream";

/// The key of an event's SSE message in `components.messages`.
fn sse_message_key(schema: &EventSchema) -> String {
    format!("sse.{}", message_key(schema))
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
                "servers": [{ "$ref": "#/servers/nats" }],
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
    let (sse_channel, sse_operation) = event_stream(catalog, &mut messages);
    channels.insert(SSE_CHANNEL.to_owned(), sse_channel);
    operations.insert("followBrandEvents".to_owned(), sse_operation);
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
                 Only GPS publishes; downstream systems receive, either from NATS directly (a \
                 per-brand user that may read only gps.evt.<brand>.> and create only its own durable \
                 consumer, nats/config/accounts.conf) or over HTTP from the gateway as Server-Sent \
                 Events (an API key with the stream scope). The events of one command on one \
                 aggregate are stored as one atomic batch: all of them or none. See README.md next \
                 to this file for the hash chain and the versioning rules."
            ),
        },
        "servers": {
            "nats": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "A NATS server with JetStream holding the stream; the host is the deployment's.",
                "security": [{ "$ref": "#/components/securitySchemes/natsUser" }],
            },
            "gateway": {
                "host": "localhost:8080",
                "protocol": "http",
                "description": "The GPS HTTP gateway (https in production); the host is the deployment's.",
                "security": [{ "$ref": "#/components/securitySchemes/apiKey" }],
            },
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
            "securitySchemes": {
                "natsUser": {
                    "type": "userPassword",
                    "description": "A downstream user of one brand (nats/config/accounts.conf): it may \
                                    create only its own durable consumer, filtered on gps.evt.<brand>.>, \
                                    and read nothing of other brands.",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer gps_…`: an API key of the brand registered \
                                    with the `stream` scope (a brand member's session cookie works too). \
                                    A key of another brand gets 404 and nothing of this one.",
                },
            },
        },
    })
}

/// The gateway's SSE channel and its receive operation; adds one SSE message
/// per event type to `messages`.
fn event_stream(catalog: &[EventSchema], messages: &mut Map<String, Value>) -> (Value, Value) {
    let mut channel_messages = Map::new();
    let mut operation_messages = Vec::new();
    for schema in catalog {
        let key = sse_message_key(schema);
        channel_messages.insert(key.clone(), json!({ "$ref": format!("#/components/messages/{key}") }));
        operation_messages.push(json!({ "$ref": format!("#/channels/{SSE_CHANNEL}/messages/{key}") }));
        messages.insert(key, sse_message(schema));
    }
    let filter = |what: &str, example: &str| {
        json!({
            "type": "string",
            "description": format!("Only events of these {what}s, comma-separated; the parameter may also repeat. An unknown value is a 400."),
            "examples": [example],
        })
    };
    let channel = json!({
        "address": EVENT_STREAM_PATH,
        "title": "The brand's events over HTTP (Server-Sent Events)",
        "description": "GET with `Accept: text/event-stream`: every event of the brand stored after \
                        stream sequence `after` (or the `Last-Event-ID` header, which wins and which an \
                        EventSource sends when it reconnects), in stream order, then each new event as \
                        it is stored, without gaps or repeats. Each SSE event has `id` = the stream \
                        sequence (your checkpoint), `event` = the event type and `data` = the stored \
                        envelope as one line of JSON with `stream_sequence` filled in. An idle stream \
                        sends a comment line every 15 s. Events are served as stored: personal data is \
                        sealed (brand.member_added v2) and stays sealed. Without that Accept header the \
                        same URL answers one JSON page (`limit`, default 100, at most 1000) of \
                        `events` and `next_after`; see the gateway's OpenAPI document.",
        "servers": [{ "$ref": "#/servers/gateway" }],
        "parameters": { "brand": { "$ref": "#/components/parameters/brand" } },
        "messages": channel_messages,
    });
    let operation = json!({
        "action": "receive",
        "channel": { "$ref": format!("#/channels/{SSE_CHANNEL}") },
        "title": "Follow the brand's events",
        "summary": "Replay the brand's events from any stream sequence, then follow them live; \
                    reconnect with Last-Event-ID to resume.",
        "security": [{ "$ref": "#/components/securitySchemes/apiKey" }],
        "bindings": {
            "http": {
                "method": "GET",
                "query": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        EVENT_STREAM_QUERY[0]: {
                            "type": "integer",
                            "minimum": 0,
                            "description": "Start after this stream sequence; 0 (the default) is the beginning.",
                        },
                        EVENT_STREAM_QUERY[1]: {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "description": "The JSON form's page size; ignored by the stream.",
                        },
                        EVENT_STREAM_QUERY[2]: filter("aggregate type", "product,look"),
                        EVENT_STREAM_QUERY[3]: filter("event type", "prediction.approved"),
                    },
                },
                "bindingVersion": "0.3.0",
            },
        },
        "messages": operation_messages,
    });
    (channel, operation)
}

/// One event type at one version as an SSE event.
fn sse_message(schema: &EventSchema) -> Value {
    let mut payload = envelope_payload(schema);
    payload["allOf"][1]["properties"]["stream_sequence"] = json!({
        "type": "integer",
        "minimum": 1,
        "description": "The event's stream sequence; also the SSE id.",
    });
    payload["allOf"][1]["required"] = json!(["stream_sequence"]);
    json!({
        "name": schema.event_type,
        "title": format!("{} v{} (SSE)", schema.event_type, schema.version),
        "summary": format!("An SSE event named {} whose data is the envelope JSON.", schema.event_type),
        "contentType": "application/json",
        "x-gps-aggregate": schema.aggregate.as_str(),
        "x-gps-sse": {
            "event": schema.event_type,
            "id": "the stream sequence, in decimal",
            "data": "the payload below, as one line of JSON",
        },
        "payload": payload,
    })
}

/// The payload of an event's message: the envelope with this event's schema inside.
fn envelope_payload(schema: &EventSchema) -> Value {
    let file = slash_path(&event_schema_file(schema.event_type, schema.version));
    json!({
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
    })
}

/// One event type at one version: its headers and payload.
fn message(schema: &EventSchema) -> Value {
    let payload_schema: Value = (schema.schema)().into();
    let summary =
        payload_schema.get("description").and_then(Value::as_str).unwrap_or(schema.event_type).to_owned();
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
        "payload": envelope_payload(schema),
    })
}
