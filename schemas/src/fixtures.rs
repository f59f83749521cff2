//! Golden fixtures: one stored envelope per event type and schema version, in
//! `schemas/fixtures/<event_type>.v<version>.json`, exactly as a consumer reads it
//! from the stream (the message body; `stream_sequence` comes from the metadata).
//!
//! Fixtures are written once and then frozen: they prove that every event ever
//! written keeps decoding, so a change that breaks one is a breaking wire change
//! (make a new version with an upcaster instead). They are never regenerated;
//! `GPS_NEW_FIXTURES=1 cargo test -p gps-schemas` only creates the missing ones,
//! from [`sample`].
//!
//! Decoding is the contract; payloads are not validated against their JSON Schema
//! here (that needs a heavy validator crate), but every payload schema is generated
//! from the very types the fixtures decode into.

mod sample;

use std::collections::BTreeMap;
use std::fs;

use gps_domain::brand::BrandEvent;
use gps_domain::export::ExportEvent;
use gps_domain::generation::GenerationEvent;
use gps_domain::look::LookEvent;
use gps_domain::prediction::PredictionEvent;
use gps_domain::product::ProductEvent;
use gps_domain::shooting::ShootingEvent;
use gps_domain::style::StyleEvent;
use gps_domain::subject::SubjectEvent;
use gps_domain::wire::{self, DecodeError, EncodedEvent, EventEnvelope, GENESIS_HASH};
use gps_domain::{AggregateKind, DomainEvent};
use serde_json::Value;

use crate::{FIXTURES_DIR, fixture_file, render, schemas_dir, sorted_catalog};
use gps_nats::chain::canonical_json;

/// Decodes a payload into its aggregate's event enum and encodes it again.
fn decode_and_encode(
    kind: AggregateKind,
    event_type: &str,
    version: u32,
    payload: Value,
) -> Result<EncodedEvent, DecodeError> {
    fn via<E: DomainEvent>(
        event_type: &str,
        version: u32,
        payload: Value,
    ) -> Result<EncodedEvent, DecodeError> {
        let event: E = wire::decode(event_type, version, payload)?;
        Ok(wire::encode(&event))
    }
    match kind {
        AggregateKind::Brand => via::<BrandEvent>(event_type, version, payload),
        AggregateKind::Product => via::<ProductEvent>(event_type, version, payload),
        AggregateKind::Subject => via::<SubjectEvent>(event_type, version, payload),
        AggregateKind::Style => via::<StyleEvent>(event_type, version, payload),
        AggregateKind::Shooting => via::<ShootingEvent>(event_type, version, payload),
        AggregateKind::Look => via::<LookEvent>(event_type, version, payload),
        AggregateKind::Generation => via::<GenerationEvent>(event_type, version, payload),
        AggregateKind::Prediction => via::<PredictionEvent>(event_type, version, payload),
        AggregateKind::Export => via::<ExportEvent>(event_type, version, payload),
        AggregateKind::Import => via::<gps_domain::import::ImportEvent>(event_type, version, payload),
        AggregateKind::Person => via::<gps_domain::person::PersonEvent>(event_type, version, payload),
        AggregateKind::AuditAccess => {
            via::<gps_domain::audit_access::AuditAccessEvent>(event_type, version, payload)
        }
    }
}

/// The hash an envelope must carry: sha256 over its `prev_hash` (as hex text)
/// followed by the canonical JSON of the envelope without `hash` and `stream_sequence`.
fn chain_hash(envelope: &Value) -> String {
    let mut body = envelope.clone();
    if let Value::Object(map) = &mut body {
        map.remove("hash");
        map.remove("stream_sequence");
    }
    let mut bytes = body["prev_hash"].as_str().unwrap_or_default().as_bytes().to_vec();
    canonical_json(&body, &mut bytes);
    sha256_hex(&bytes)
}

/// Lowercase hex sha256 of `data`.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every fixture on disk by file name, parsed.
fn fixtures_on_disk() -> BTreeMap<String, Value> {
    let dir = schemas_dir().join(FIXTURES_DIR);
    let mut fixtures = BTreeMap::new();
    let Ok(entries) = fs::read_dir(&dir) else { return fixtures };
    for entry in entries {
        let path = entry.expect("list fixtures").path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name").to_owned();
        let text = fs::read_to_string(&path).expect("read fixture");
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixtures/{name} is not JSON: {e}"));
        fixtures.insert(name, value);
    }
    fixtures
}

/// Creates the fixtures the catalog lacks, refusing any sample that does not decode.
fn write_missing_fixtures() {
    let catalog = sorted_catalog();
    let mut failures = Vec::new();
    for schema in &catalog {
        let path = schemas_dir().join(fixture_file(schema.event_type, schema.version));
        if path.exists() {
            continue;
        }
        let position = gps_domain::event_catalog()
            .iter()
            .filter(|s| s.aggregate == schema.aggregate)
            .position(|s| s.event_type == schema.event_type)
            .unwrap_or(0) as u64
            + 1;
        let envelope = sample::sample_envelope(schema, position);
        let decoded = decode_and_encode(
            schema.aggregate,
            schema.event_type,
            schema.version,
            envelope["payload"].clone(),
        );
        match decoded {
            Ok(encoded) if encoded.payload == envelope["payload"] => {
                fs::create_dir_all(path.parent().expect("fixtures dir")).expect("create fixtures dir");
                let temporary = path.with_extension("json.partial");
                fs::write(&temporary, render(&envelope)).expect("write fixture");
                fs::rename(&temporary, &path).expect("move fixture into place");
                eprintln!("wrote {}: review it, then commit it; it is frozen from then on", path.display());
            }
            Ok(_) => failures.push(format!("{}: the sample does not round-trip", schema.event_type)),
            Err(error) => failures.push(format!("{}: {error}", schema.event_type)),
        }
    }
    assert!(
        failures.is_empty(),
        "could not build a sample for these event types; write their fixtures by hand \
         (or teach schemas/src/fixtures/sample.rs a value):\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn every_catalog_entry_has_a_fixture() {
    if std::env::var_os("GPS_NEW_FIXTURES").is_some_and(|value| value == "1") {
        write_missing_fixtures();
    }
    let missing: Vec<String> = sorted_catalog()
        .iter()
        .map(|schema| fixture_file(schema.event_type, schema.version))
        .filter(|path| !schemas_dir().join(path).exists())
        .map(|path| format!("schemas/{}", path.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "these event types have no golden fixture:\n  {}\nRun `GPS_NEW_FIXTURES=1 cargo test -p gps-schemas` \
         to create them, review the payloads, and commit them.",
        missing.join("\n  ")
    );
}

#[test]
fn every_fixture_decodes_into_its_aggregate_event() {
    let fixtures = fixtures_on_disk();
    assert!(!fixtures.is_empty(), "no fixtures in schemas/{FIXTURES_DIR}");
    let current: BTreeMap<&str, u32> = sorted_catalog().iter().map(|s| (s.event_type, s.version)).collect();
    for (name, fixture) in fixtures {
        let envelope: EventEnvelope = serde_json::from_value(fixture.clone())
            .unwrap_or_else(|e| panic!("fixtures/{name} is no longer a valid envelope: {e}"));
        let kind = AggregateKind::parse(&envelope.aggregate_type)
            .unwrap_or_else(|| panic!("fixtures/{name}: unknown aggregate {:?}", envelope.aggregate_type));
        let encoded = decode_and_encode(
            kind,
            &envelope.event_type,
            envelope.schema_version,
            envelope.payload.clone(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "fixtures/{name} no longer decodes: {e}\nStored events must decode forever: keep the old \
                     shape, or make a new schema version with an upcaster in gps-domain."
            )
        });
        assert_eq!(encoded.event_type, envelope.event_type, "fixtures/{name} decoded as another event type");
        assert_eq!(
            Some(&encoded.schema_version),
            current.get(envelope.event_type.as_str()),
            "fixtures/{name} did not decode to the current version"
        );
    }
}

#[test]
fn current_version_fixtures_round_trip_to_the_same_payload() {
    for schema in sorted_catalog() {
        let path = fixture_file(schema.event_type, schema.version);
        let Ok(text) = fs::read_to_string(schemas_dir().join(&path)) else { continue };
        let fixture: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let payload = fixture["payload"].clone();
        let encoded = decode_and_encode(schema.aggregate, schema.event_type, schema.version, payload.clone())
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
        assert_eq!(
            encoded.payload,
            payload,
            "{}: decoding then encoding changes the payload, so events written before this change \
             would be re-encoded differently",
            path.display()
        );
    }
}

#[test]
fn every_fixture_is_a_sealed_envelope_named_after_its_event() {
    for (name, fixture) in fixtures_on_disk() {
        let event_type = fixture["event_type"].as_str().unwrap_or_default();
        let version = fixture["schema_version"].as_u64().unwrap_or_default();
        assert_eq!(name, format!("{event_type}.v{version}.json"), "fixture file named after another event");
        assert!(
            event_type.starts_with(&format!("{}.", fixture["aggregate_type"].as_str().unwrap_or_default())),
            "fixtures/{name}: aggregate_type does not match the event type"
        );
        assert!(
            fixture.get("stream_sequence").is_none(),
            "fixtures/{name}: stream_sequence is not stored in the body"
        );
        if fixture["aggregate_version"] == 1 {
            assert_eq!(
                fixture["prev_hash"], GENESIS_HASH,
                "fixtures/{name}: a first event chains from genesis"
            );
        }
        assert_eq!(
            fixture["hash"],
            chain_hash(&fixture),
            "fixtures/{name}: hash does not follow the chain rule"
        );

        // The log recomputes hashes from the decoded envelope, so the envelope type
        // must give back exactly the stored fields: a new field without
        // `skip_serializing_if` would break the chain of every stored event.
        let envelope: EventEnvelope = serde_json::from_value(fixture.clone()).expect("envelope");
        assert_eq!(
            serde_json::to_value(&envelope).expect("serialize"),
            fixture,
            "fixtures/{name}: EventEnvelope no longer reproduces the stored body"
        );
    }
}

#[test]
fn fixture_files_are_rendered_like_every_other_artefact() {
    for (name, fixture) in fixtures_on_disk() {
        let text = fs::read_to_string(schemas_dir().join(FIXTURES_DIR).join(&name)).expect("read");
        assert_eq!(text, render(&fixture), "fixtures/{name} is not sorted, pretty JSON with a final newline");
    }
}

#[test]
fn the_chain_hash_is_over_prev_hash_and_the_sorted_compact_body() {
    let envelope =
        serde_json::json!({ "prev_hash": "00", "b": [1, {"d": 2, "c": null}], "a": "x", "hash": "h" });
    let expected = sha256_hex(br#"00{"a":"x","b":[1,{"c":null,"d":2}],"prev_hash":"00"}"#);
    assert_eq!(chain_hash(&envelope), expected);
}
