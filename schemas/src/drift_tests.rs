//! The checked-in artefacts must be exactly what the code generates, so a change
//! to the wire shows up as a diff in review. `GPS_UPDATE_SCHEMAS=1` rewrites them.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

const UPDATE_HINT: &str =
    "run `GPS_UPDATE_SCHEMAS=1 cargo test -p gps-schemas` and review and commit the diff";

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| value == "1")
}

/// A fresh, empty folder under the system temp dir, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("gps-schemas-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn generated_files_match_the_code() {
    let dir = schemas_dir();
    if env_flag("GPS_UPDATE_SCHEMAS") {
        let report = write_all(&dir).expect("write the generated schemas");
        for path in &report.written {
            eprintln!("wrote {}", path.display());
        }
        for path in &report.removed {
            eprintln!("removed stale {}", path.display());
        }
    }
    let drift = drift(&dir).expect("read the checked-in schemas");
    let listed: Vec<String> = drift.iter().map(|d| format!("  - schemas/{d}")).collect();
    assert!(
        drift.is_empty(),
        "the checked-in schemas differ from what the code generates:\n{}\nIf the change is intended, {UPDATE_HINT}.",
        listed.join("\n")
    );
}

#[test]
fn rendering_is_deterministic_sorted_and_ends_with_a_newline() {
    let first = artefacts();
    assert_eq!(first, artefacts());
    for (path, contents) in &first {
        assert!(contents.ends_with("}\n"), "{} must end with a newline", path.display());
        let value: Value = serde_json::from_str(contents).expect("artefacts are JSON");
        // Rendering sorts keys; a parsed file keeps either sorted or file order
        // (`preserve_order`), so equality proves the file's keys are sorted.
        assert_eq!(&render(&value), contents, "{} is not in canonical form", path.display());
    }
}

#[test]
fn every_event_type_is_unique_and_named_after_its_aggregate() {
    let catalog = sorted_catalog();
    assert!(!catalog.is_empty());
    let mut seen = BTreeSet::new();
    for schema in &catalog {
        assert!(
            seen.insert(schema.event_type),
            "{} appears twice in the catalog (one version per type: older versions are upcast)",
            schema.event_type
        );
        assert!(
            schema.event_type.starts_with(&format!("{}.", schema.aggregate.as_str())),
            "{} belongs to {} and must be named {}.<what happened>",
            schema.event_type,
            schema.aggregate,
            schema.aggregate
        );
        assert!(schema.version >= 1, "{} has version 0", schema.event_type);
        let legal = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.';
        assert!(schema.event_type.chars().all(legal), "{} is not a lowercase dotted name", schema.event_type);
    }
}

#[test]
fn every_event_schema_is_named_and_tagged_with_its_aggregate() {
    for schema in sorted_catalog() {
        let file = event_schema_file(schema.event_type, schema.version);
        let value = event_schemas::event_schema(&schema);
        let expected_id =
            format!("{SCHEMA_BASE_URL}events/{}.v{}.schema.json", schema.event_type, schema.version);
        assert_eq!(value["$id"], Value::String(expected_id), "{}", file.display());
        assert_eq!(value["title"], Value::String(format!("{} v{}", schema.event_type, schema.version)));
        assert_eq!(value["x-gps-aggregate"], Value::String(schema.aggregate.as_str().into()));
        assert_eq!(
            value["type"],
            Value::String("object".into()),
            "{} payload is not an object",
            schema.event_type
        );
    }
}

#[test]
fn every_reference_in_the_asyncapi_document_resolves() {
    let files: BTreeSet<String> =
        artefacts().into_iter().map(|(path, _)| event_schemas::slash_path(&path)).collect();
    let document = asyncapi::document(&sorted_catalog());
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        if let Some(pointer) = reference.strip_prefix('#') {
            assert!(document.pointer(pointer).is_some(), "dangling reference {reference}");
        } else {
            assert!(files.contains(&reference), "reference to a file that is not generated: {reference}");
        }
    }
    let messages = document["components"]["messages"].as_object().expect("messages");
    let over_sse = messages.keys().filter(|key| key.starts_with("sse.")).count();
    assert_eq!(
        messages.len() - over_sse,
        sorted_catalog().len(),
        "one NATS message per event type and version"
    );
    assert_eq!(over_sse, sorted_catalog().len(), "one SSE message per event type and version");
}

#[test]
fn the_asyncapi_document_describes_the_http_event_stream_with_every_event_type() {
    let document = asyncapi::document(&sorted_catalog());
    let channel = &document["channels"]["brandEventStream"];
    assert_eq!(channel["address"], EVENT_STREAM_PATH);
    assert_eq!(channel["servers"][0]["$ref"], "#/servers/gateway");
    let listed = channel["messages"].as_object().expect("messages");
    for schema in sorted_catalog() {
        let key = format!("sse.{}.v{}", schema.event_type, schema.version);
        assert!(listed.contains_key(&key), "{key} missing from the SSE channel");
        let message = &document["components"]["messages"][&key];
        assert_eq!(message["x-gps-sse"]["event"], schema.event_type);
        assert_eq!(message["payload"]["allOf"][1]["required"][0], "stream_sequence");
    }
    let binding = &document["operations"]["followBrandEvents"]["bindings"]["http"];
    assert_eq!(binding["method"], "GET");
    let query: BTreeSet<&str> =
        binding["query"]["properties"].as_object().expect("query").keys().map(String::as_str).collect();
    assert_eq!(query, EVENT_STREAM_QUERY.into_iter().collect());
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                refs.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn write_all_leaves_nothing_to_report_and_removes_only_stale_files() {
    let scratch = ScratchDir::new("write-all");
    let dir = &scratch.0;
    let first = write_all(dir).expect("write");
    assert_eq!(first.written.len(), artefacts().len());
    assert_eq!(drift(dir).expect("drift"), vec![]);

    let schema = &sorted_catalog()[0];
    let edited = event_schema_file(schema.event_type, schema.version);
    fs::write(dir.join(&edited), "{}\n").expect("edit");
    let stale = Path::new(EVENTS_DIR).join("gone.deleted.v1.schema.json");
    fs::write(dir.join(&stale), "{}\n").expect("stale");
    let superseded = Path::new(EVENTS_DIR).join(format!("{}.v0.schema.json", schema.event_type));
    fs::write(dir.join(&superseded), "{}\n").expect("older version");
    assert_eq!(drift(dir).expect("drift"), vec![Drift::Changed(edited.clone()), Drift::Stale(stale.clone())]);

    let second = write_all(dir).expect("rewrite");
    assert_eq!(second, WriteReport { written: vec![edited], removed: vec![stale] });
    assert!(dir.join(&superseded).exists(), "a superseded version's schema stays published");
    assert_eq!(drift(dir).expect("drift"), vec![]);
}

#[test]
fn schema_file_names_parse_back_into_type_and_version() {
    assert_eq!(parse_schema_file_name("product.created.v1.schema.json"), Some(("product.created", 1)));
    assert_eq!(
        parse_schema_file_name("look.shot_types_set.v12.schema.json"),
        Some(("look.shot_types_set", 12))
    );
    assert_eq!(parse_schema_file_name("index.json"), None);
}

#[test]
fn the_readme_lists_every_event_type() {
    let readme = fs::read_to_string(schemas_dir().join("README.md")).expect("read schemas/README.md");
    let missing: Vec<&str> = sorted_catalog()
        .iter()
        .map(|schema| schema.event_type)
        .filter(|event_type| !readme.contains(&format!("`{event_type}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "schemas/README.md does not list these event types in its table: {}",
        missing.join(", ")
    );
}
