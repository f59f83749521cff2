//! The JSON Schemas of event payloads and of the envelope, and the event index.
//!
//! The payload schemas come from the domain's `schemars` derives; this module only
//! names them (`$id`, `title`) and tags them with their place in the log
//! (`x-gps-*` keywords, which JSON Schema validators ignore).

use gps_domain::wire::{EventEnvelope, EventSchema};
use serde_json::{Value, json};

use crate::{ENVELOPE_FILE, SCHEMA_BASE_URL, STREAM_NAME, SUBJECT_PREFIX, event_schema_file, fixture_file};

/// The `$id` of a file under `schemas/`.
pub(crate) fn schema_id(relative: &str) -> String {
    format!("{SCHEMA_BASE_URL}{relative}")
}

/// A path relative to `schemas/`, with `/` separators on every platform.
pub(crate) fn slash_path(path: &std::path::Path) -> String {
    path.iter().map(|part| part.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The schema of one event payload.
pub(crate) fn event_schema(schema: &EventSchema) -> Value {
    let mut value: Value = (schema.schema)().into();
    let file = slash_path(&event_schema_file(schema.event_type, schema.version));
    if let Value::Object(map) = &mut value {
        // The derive's title is the Rust type name; consumers know the event by its
        // wire name and version, so that is the title.
        map.insert("$id".into(), Value::String(schema_id(&file)));
        map.insert("title".into(), Value::String(format!("{} v{}", schema.event_type, schema.version)));
        map.insert("x-gps-event-type".into(), Value::String(schema.event_type.into()));
        map.insert("x-gps-schema-version".into(), Value::from(schema.version));
        map.insert("x-gps-aggregate".into(), Value::String(schema.aggregate.as_str().into()));
    }
    value
}

/// The schema of the envelope every stored event carries.
pub(crate) fn envelope_schema() -> Value {
    let mut value: Value = schemars::schema_for!(EventEnvelope).into();
    if let Value::Object(map) = &mut value {
        map.insert("$id".into(), Value::String(schema_id(ENVELOPE_FILE)));
        map.insert("title".into(), Value::String("GPS event envelope v1".into()));
        map.insert(
            "description".into(),
            Value::String(format!(
                "The body of every message on the {STREAM_NAME} stream (subjects \
                 {SUBJECT_PREFIX}.<brand>.<aggregate>.<id>). `payload` is described by the \
                 schema of `event_type` at `schema_version` (see events/index.json). \
                 `stream_sequence` is not stored in the body; readers fill it in from the \
                 message metadata."
            )),
        );
    }
    value
}

/// The list of every event type and version with its aggregate and files.
pub(crate) fn index(catalog: &[EventSchema]) -> Value {
    let events: Vec<Value> = catalog
        .iter()
        .map(|schema| {
            let file = slash_path(&event_schema_file(schema.event_type, schema.version));
            json!({
                "event_type": schema.event_type,
                "version": schema.version,
                "aggregate": schema.aggregate.as_str(),
                "file": file,
                "schema_id": schema_id(&file),
                "fixture": slash_path(&fixture_file(schema.event_type, schema.version)),
            })
        })
        .collect();
    json!({
        "description": "Every GPS event type at its current schema version. Paths are relative \
                        to the schemas/ folder. Generated from gps_domain::event_catalog(); do not edit.",
        "stream": STREAM_NAME,
        "subject": format!("{SUBJECT_PREFIX}.<brand>.<aggregate>.<id>"),
        "envelope": ENVELOPE_FILE,
        "events": events,
    })
}
