//! The published contract of the GPS event log, generated from code and checked in.
//!
//! This crate owns the files under `schemas/` that downstream consumers read:
//! - `events/<event_type>.v<version>.schema.json`: the JSON Schema (draft 2020-12) of
//!   every event payload, one file per event type and schema version, from
//!   [`gps_domain::event_catalog`];
//! - `events/index.json`: every event type with its version, aggregate and file;
//! - `envelope.v1.schema.json`: the envelope every stored event carries
//!   ([`gps_domain::wire::EventEnvelope`]);
//! - `asyncapi.json`: an AsyncAPI 3.0 document of the `GPS_EVENTS` stream, one
//!   NATS channel per aggregate kind, one message per event type, and the
//!   gateway's Server-Sent Events channel for the same events over HTTP;
//! - `fixtures/<event_type>.v<version>.json`: golden envelopes, written once and then
//!   frozen, which every later build must keep decoding.
//!
//! [`artefacts`] renders every generated file from code, deterministically (object
//! keys sorted, pretty JSON, trailing newline), and [`drift`] compares them with the
//! files on disk. The unit test `generated_files_match_the_code` fails on any
//! difference; `GPS_UPDATE_SCHEMAS=1 cargo test -p gps-schemas` rewrites the files
//! through [`write_all`]. Fixtures are never rewritten; `GPS_NEW_FIXTURES=1` only
//! creates the missing ones.
//!
//! Architecture invariant: this crate describes the wire, it does not touch it. It
//! depends on `gps-domain` only, never on NATS, sqlx or HTTP crates, so the stream
//! name, subject prefix and header names below are restated here (they are part of
//! the published contract, and changing them is a breaking change for consumers).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use gps_domain::wire::EventSchema;
use serde_json::Value;

mod asyncapi;

pub use asyncapi::{EVENT_STREAM_PATH, EVENT_STREAM_QUERY};
mod event_schemas;

#[cfg(test)]
mod drift_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod state_shape_tests;

/// The base URL of every `$id` in the generated schemas.
pub const SCHEMA_BASE_URL: &str = "https://gps.example/schemas/";
// The log's names come from gps-nats, the crate that writes them, so the
// documents cannot drift from what is on the wire.
pub use gps_nats::stream::STREAM_NAME;
pub use gps_nats::subjects::EVENT_SUBJECT_PREFIX as SUBJECT_PREFIX;
pub use gps_nats::{
    HEADER_AGGREGATE_VERSION, HEADER_COMMAND_ID, HEADER_EVENT_TYPE, HEADER_MSG_ID, HEADER_SCHEMA_VERSION,
};

/// The envelope schema's file, relative to `schemas/`.
pub const ENVELOPE_FILE: &str = "envelope.v1.schema.json";
/// The event index's file, relative to `schemas/`.
pub const INDEX_FILE: &str = "events/index.json";
/// The AsyncAPI document's file, relative to `schemas/`.
pub const ASYNCAPI_FILE: &str = "asyncapi.json";
/// The folder of per-event schemas, relative to `schemas/`.
pub const EVENTS_DIR: &str = "events";
/// The folder of golden fixtures, relative to `schemas/`.
pub const FIXTURES_DIR: &str = "fixtures";

/// The schema file of one event type and version, relative to `schemas/`.
pub fn event_schema_file(event_type: &str, version: u32) -> PathBuf {
    Path::new(EVENTS_DIR).join(format!("{event_type}.v{version}.schema.json"))
}

/// The golden fixture of one event type and version, relative to `schemas/`.
pub fn fixture_file(event_type: &str, version: u32) -> PathBuf {
    Path::new(FIXTURES_DIR).join(format!("{event_type}.v{version}.json"))
}

/// The catalog in the order every artefact lists it: by event type, then version.
pub fn sorted_catalog() -> Vec<EventSchema> {
    let mut catalog = gps_domain::event_catalog();
    catalog.sort_by(|a, b| (a.event_type, a.version).cmp(&(b.event_type, b.version)));
    catalog
}

/// Every generated file, as (path relative to `schemas/`, contents), in a stable
/// order. Fixtures are not generated artefacts and are not included.
pub fn artefacts() -> Vec<(PathBuf, String)> {
    let catalog = sorted_catalog();
    let mut files = Vec::with_capacity(catalog.len() + 3);
    files.push((PathBuf::from(ENVELOPE_FILE), render(&event_schemas::envelope_schema())));
    for schema in &catalog {
        files.push((
            event_schema_file(schema.event_type, schema.version),
            render(&event_schemas::event_schema(schema)),
        ));
    }
    files.push((PathBuf::from(INDEX_FILE), render(&event_schemas::index(&catalog))));
    files.push((PathBuf::from(ASYNCAPI_FILE), render(&asyncapi::document(&catalog))));
    files
}

/// Renders a JSON value the way every artefact is stored: keys sorted at every
/// depth, pretty-printed with two spaces, ending in a newline.
pub fn render(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

/// A copy of `value` with object keys in sorted order, whatever the map type
/// `serde_json` was built with (`preserve_order` keeps insertion order).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}

/// One way the files on disk differ from what the code generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The code generates this file but it is not on disk.
    Missing(PathBuf),
    /// The file on disk has other contents than the code generates.
    Changed(PathBuf),
    /// A file in `events/` that the code no longer generates.
    Stale(PathBuf),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing(path) => write!(f, "{} is missing", path.display()),
            Drift::Changed(path) => write!(f, "{} differs from what the code generates", path.display()),
            Drift::Stale(path) => {
                write!(f, "{} is no longer generated by the code (stale)", path.display())
            }
        }
    }
}

/// Compares the generated artefacts with the files under `schemas_dir`.
///
/// A schema file of an *older* version of an event type the catalog still has is
/// not stale: events of that version stay in the log and keep decoding, so their
/// schema stays published (frozen, like their fixture).
pub fn drift(schemas_dir: &Path) -> io::Result<Vec<Drift>> {
    let artefacts = artefacts();
    let mut found = Vec::new();
    for (path, contents) in &artefacts {
        match fs::read_to_string(schemas_dir.join(path)) {
            Ok(on_disk) if on_disk == *contents => {}
            Ok(_) => found.push(Drift::Changed(path.clone())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => found.push(Drift::Missing(path.clone())),
            Err(error) => return Err(error),
        }
    }
    found.extend(stale_files(schemas_dir, &artefacts)?.into_iter().map(Drift::Stale));
    Ok(found)
}

/// What [`write_all`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Files created or rewritten (unchanged files are not touched).
    pub written: Vec<PathBuf>,
    /// Stale files removed from `events/`.
    pub removed: Vec<PathBuf>,
}

/// Writes every generated artefact under `schemas_dir` and removes stale files
/// from `events/`, so that afterwards [`drift`] finds nothing. Files whose
/// contents already match are left alone. Fixtures are never touched.
pub fn write_all(schemas_dir: &Path) -> io::Result<WriteReport> {
    let artefacts = artefacts();
    let mut report = WriteReport::default();
    for (path, contents) in &artefacts {
        let target = schemas_dir.join(path);
        if fs::read_to_string(&target).ok().as_deref() == Some(contents.as_str()) {
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, contents)?;
        report.written.push(path.clone());
    }
    for stale in stale_files(schemas_dir, &artefacts)? {
        fs::remove_file(schemas_dir.join(&stale))?;
        report.removed.push(stale);
    }
    Ok(report)
}

/// Files in `events/` that the code does not generate, except schemas of older
/// versions of event types that still exist.
fn stale_files(schemas_dir: &Path, artefacts: &[(PathBuf, String)]) -> io::Result<Vec<PathBuf>> {
    let dir = schemas_dir.join(EVENTS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let catalog = gps_domain::event_catalog();
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = Path::new(EVENTS_DIR).join(entry.file_name());
        let generated = artefacts.iter().any(|(p, _)| *p == path);
        let superseded = entry.file_name().to_str().and_then(parse_schema_file_name).is_some_and(
            |(event_type, version)| catalog.iter().any(|s| s.event_type == event_type && version < s.version),
        );
        if !generated && !superseded {
            stale.push(path);
        }
    }
    stale.sort();
    Ok(stale)
}

/// Splits `product.created.v1.schema.json` into (`product.created`, 1).
fn parse_schema_file_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".schema.json")?;
    let (event_type, version) = stem.rsplit_once(".v")?;
    Some((event_type, version.parse().ok()?))
}

/// The folder this crate's files live in, for tests and tools run from the workspace.
pub fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
