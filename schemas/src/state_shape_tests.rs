//! Snapshots store an aggregate's state as JSON, tagged with the aggregate's
//! `STATE_VERSION`, and a load trusts a snapshot only when the versions match.
//! So a change to a state's shape without a version bump would make loads
//! decode old snapshots into the new shape and silently disagree with a
//! replay of the events. This test ties each version to its shape: the JSON
//! Schema of every state is checked in as `schemas/states/<kind>.v<N>.json`,
//! and a state whose shape differs from the file of its current version fails
//! until `STATE_VERSION` is bumped (`GPS_UPDATE_SCHEMAS=1` then writes the new
//! version's file).

use std::fs;
use std::path::Path;

use gps_domain::Aggregate;
use gps_domain::{
    audit_access, brand, export, generation, import, look, person, prediction, product, shooting, style,
    subject,
};
use serde_json::Value;

use super::{render, schemas_dir};

/// Every aggregate's kind, state version and the JSON Schema of its state.
fn state_shapes() -> Vec<(&'static str, u32, Value)> {
    fn shape<A: Aggregate + schemars::JsonSchema>() -> (&'static str, u32, Value) {
        let mut schema = serde_json::to_value(schemars::schema_for!(A)).expect("a schema is JSON");
        strip_prose(&mut schema);
        (A::KIND.as_str(), A::STATE_VERSION, schema)
    }
    vec![
        shape::<audit_access::AuditAccess>(),
        shape::<brand::Brand>(),
        shape::<export::Export>(),
        shape::<generation::Generation>(),
        shape::<import::Import>(),
        shape::<look::Look>(),
        shape::<person::Person>(),
        shape::<prediction::Prediction>(),
        shape::<product::Product>(),
        shape::<shooting::Shooting>(),
        shape::<style::Style>(),
        shape::<subject::Subject>(),
    ]
}

#[test]
fn every_state_shape_is_the_one_checked_in_for_its_state_version() {
    let dir = schemas_dir().join("states");
    let update = std::env::var_os("GPS_UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let mut problems = Vec::new();
    for (kind, version, schema) in state_shapes() {
        let rendered = render(&schema);
        let path = dir.join(format!("{kind}.v{version}.json"));
        match fs::read_to_string(&path) {
            Ok(stored) if stored == rendered => {}
            Ok(_) => problems.push(format!(
                "the shape of the {kind} state changed, but its STATE_VERSION is still {version}: bump \
                 STATE_VERSION (snapshots of the old shape are then ignored and rebuilt from events), then \
                 run `GPS_UPDATE_SCHEMAS=1 cargo test -p gps-schemas`"
            )),
            Err(_) if update => {
                fs::create_dir_all(&dir).expect("create schemas/states");
                remove_older_versions(&dir, kind);
                fs::write(&path, &rendered).expect("write the state shape");
                eprintln!("wrote {}", path.display());
            }
            Err(_) => problems.push(format!(
                "no shape is checked in for the {kind} state at STATE_VERSION {version} ({}): run \
                 `GPS_UPDATE_SCHEMAS=1 cargo test -p gps-schemas` and commit it",
                path.display()
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Doc comments are not shape: a reworded comment needs no new version.
fn strip_prose(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // Annotations are strings; a property called `description` is an
            // object (its schema) and stays.
            map.retain(|key, value| !(matches!(key.as_str(), "description" | "title") && value.is_string()));
            map.values_mut().for_each(strip_prose);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_prose),
        _ => {}
    }
}

/// The folder keeps the current version of each state only.
fn remove_older_versions(dir: &Path, kind: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{kind}.v")) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[test]
fn every_aggregate_kind_has_its_state_shape_checked_in() {
    let shaped: Vec<&str> = state_shapes().into_iter().map(|(kind, _, _)| kind).collect();
    for kind in gps_domain::AggregateKind::ALL {
        assert!(shaped.contains(&kind.as_str()), "add {kind}'s state to state_shapes()");
    }
}
