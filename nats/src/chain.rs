//! The hash chain that makes edits to the log detectable.
//!
//! Each event's `hash` is sha256 over the previous event's hash (of the same
//! aggregate) and this event's canonical bytes: the envelope without `hash` and
//! `stream_sequence`, serialized as JSON with object keys sorted and no
//! whitespace. Changing any field of any stored event, or inserting, dropping
//! or reordering events of an aggregate, breaks the chain from that point on.

use std::collections::HashMap;

use gps_domain::wire::{EventEnvelope, GENESIS_HASH};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` as JSON with sorted object keys and no whitespace, so the
/// bytes do not depend on how a map happened to be ordered in memory.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(&Value::String(key.clone()), out);
                out.push(b':');
                canonical_json(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

/// The canonical bytes an envelope's hash covers.
pub fn canonical_bytes(envelope: &EventEnvelope) -> Vec<u8> {
    let mut value = serde_json::to_value(envelope).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("hash");
        map.remove("stream_sequence");
    }
    let mut out = Vec::with_capacity(512);
    canonical_json(&value, &mut out);
    out
}

/// A JSON value that serializes with its object keys sorted at every depth,
/// whatever order its maps keep: serde_json's `preserve_order` feature, which
/// any crate in the build may turn on for everyone (c2pa does), makes maps
/// keep insertion order, and the hash must not depend on that.
struct Sorted<'a>(&'a Value);

impl serde::Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    out.serialize_entry(key, &Sorted(&map[key]))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// The envelope fields the hash covers, in sorted key order, so serializing
/// this struct writes the canonical bytes directly, without building a JSON
/// tree first (the hash is on the write path of every event).
#[derive(serde::Serialize)]
struct HashedFields<'a> {
    #[serde(serialize_with = "sorted")]
    actor: Value,
    aggregate_id: &'a str,
    aggregate_type: &'a str,
    aggregate_version: u64,
    brand: &'a str,
    causation_id: &'a str,
    command_id: &'a str,
    correlation_id: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    occurred_at: &'a str,
    // Sorted keys at every depth, whatever order serde_json's maps keep; the
    // `fast_and_reference_canonical_bytes_agree` test guards it.
    #[serde(serialize_with = "sorted")]
    payload: &'a Value,
    prev_hash: &'a str,
    schema_version: u32,
}

fn sorted<V: std::borrow::Borrow<Value>, S: serde::Serializer>(
    value: &V,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&Sorted(value.borrow()), serializer)
}

/// Feeds serialized bytes straight into the hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hashed_fields(envelope: &EventEnvelope) -> HashedFields<'_> {
    HashedFields {
        actor: serde_json::to_value(&envelope.actor).unwrap_or(Value::Null),
        aggregate_id: &envelope.aggregate_id,
        aggregate_type: &envelope.aggregate_type,
        aggregate_version: envelope.aggregate_version,
        brand: &envelope.brand,
        causation_id: &envelope.causation_id,
        command_id: &envelope.command_id,
        correlation_id: &envelope.correlation_id,
        event_id: &envelope.event_id,
        event_type: &envelope.event_type,
        occurred_at: &envelope.occurred_at,
        payload: &envelope.payload,
        prev_hash: &envelope.prev_hash,
        schema_version: envelope.schema_version,
    }
}

/// The hash an envelope must carry, given its `prev_hash` and other fields:
/// sha256 over `prev_hash` followed by [`canonical_bytes`].
pub fn compute_hash(envelope: &EventEnvelope) -> String {
    let mut hasher = Sha256::new();
    hasher.update(envelope.prev_hash.as_bytes());
    if serde_json::to_writer(HashWriter(&mut hasher), &hashed_fields(envelope)).is_err() {
        // Serializing plain strings and numbers cannot fail; should it ever,
        // fall back to the reference form rather than hash partial bytes.
        let mut hasher = Sha256::new();
        hasher.update(envelope.prev_hash.as_bytes());
        hasher.update(canonical_bytes(envelope));
        return hex::encode(hasher.finalize());
    }
    hex::encode(hasher.finalize())
}

/// Fills in `hash` from the other fields.
pub fn seal(envelope: &mut EventEnvelope) {
    envelope.hash = compute_hash(envelope);
}

/// The first place where the log is not what it claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Stream sequence of the offending event.
    pub stream_sequence: u64,
    /// Its subject.
    pub subject: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event at stream sequence {} on {}: {}", self.stream_sequence, self.subject, self.reason)
    }
}

/// Checks events as they come in stream order, one aggregate chain per subject.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    heads: HashMap<String, (u64, String)>,
    checked: u64,
}

impl ChainVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events passed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// How many aggregates were seen.
    pub fn aggregates(&self) -> usize {
        self.heads.len()
    }

    /// Starts `subject`'s chain at a known event instead of its genesis: for
    /// a window of the log (an export), whose first event of an aggregate
    /// follows one outside the window.
    pub fn anchor(&mut self, subject: &str, aggregate_version: u64, hash: &str) {
        self.heads.insert(subject.to_owned(), (aggregate_version, hash.to_owned()));
    }

    /// The version and hash of the last event that passed on `subject`.
    pub fn head(&self, subject: &str) -> Option<(u64, &str)> {
        self.heads.get(subject).map(|(version, hash)| (*version, hash.as_str()))
    }

    /// Checks the next event of the stream. After a break the verifier's view of
    /// that aggregate is undefined; stop at the first break.
    pub fn check(
        &mut self,
        subject: &str,
        sequence: u64,
        envelope: &EventEnvelope,
    ) -> Result<(), ChainBreak> {
        let fail =
            |reason: String| ChainBreak { stream_sequence: sequence, subject: subject.to_owned(), reason };
        let expected_subject = format!(
            "{}.{}.{}.{}",
            crate::subjects::EVENT_SUBJECT_PREFIX,
            envelope.brand,
            envelope.aggregate_type,
            envelope.aggregate_id
        );
        if expected_subject != subject {
            return Err(fail(format!(
                "envelope names {expected_subject} but the event is stored on {subject}"
            )));
        }
        let (last_version, last_hash) =
            self.heads.get(subject).map(|(v, h)| (*v, h.as_str())).unwrap_or((0, GENESIS_HASH));
        if envelope.aggregate_version != last_version + 1 {
            return Err(fail(format!(
                "aggregate version {} follows version {last_version}; versions must be contiguous",
                envelope.aggregate_version
            )));
        }
        if envelope.prev_hash != last_hash {
            return Err(fail(format!(
                "prev_hash {} does not match the previous event's hash {last_hash}",
                envelope.prev_hash
            )));
        }
        let recomputed = compute_hash(envelope);
        if recomputed != envelope.hash {
            return Err(fail(format!(
                "hash {} does not match its content (recomputed {recomputed}): the event was altered",
                envelope.hash
            )));
        }
        self.heads.insert(subject.to_owned(), (envelope.aggregate_version, envelope.hash.clone()));
        self.checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gps_domain::wire::Actor;

    fn envelope(version: u64, prev_hash: &str, payload: Value) -> EventEnvelope {
        let mut envelope = EventEnvelope {
            event_id: format!("e{version}"),
            event_type: "product.created".into(),
            schema_version: 1,
            brand: "acme".into(),
            aggregate_type: "product".into(),
            aggregate_id: "p1".into(),
            aggregate_version: version,
            occurred_at: "2026-11-27T10:00:00Z".into(),
            actor: Actor::System("test".into()),
            command_id: "c1".into(),
            correlation_id: "c1".into(),
            causation_id: "c1".into(),
            prev_hash: prev_hash.into(),
            hash: String::new(),
            payload,
            stream_sequence: None,
        };
        seal(&mut envelope);
        envelope
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":null}}"#).expect("json");
        let mut out = Vec::new();
        canonical_json(&value, &mut out);
        assert_eq!(String::from_utf8(out).expect("utf8"), r#"{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn fast_and_reference_canonical_bytes_agree() {
        let payload: Value =
            serde_json::from_str(r#"{"z":{"b":[{"y":1,"x":"é\"q"}],"a":null},"m":1.5,"a":true}"#)
                .expect("json");
        let mut envelope = envelope(7, GENESIS_HASH, payload);
        envelope.actor = Actor::Member(gps_domain::ids::MemberId::parse("ana").expect("id"));
        let mut fast = Vec::new();
        serde_json::to_writer(&mut fast, &hashed_fields(&envelope)).expect("serialize");
        assert_eq!(
            String::from_utf8(fast).expect("utf8"),
            String::from_utf8(canonical_bytes(&envelope)).expect("utf8")
        );
    }

    #[test]
    fn the_hash_ignores_the_stream_sequence_but_covers_the_payload() {
        let original = envelope(1, GENESIS_HASH, serde_json::json!({"name": "a"}));
        let mut positioned = original.clone();
        positioned.stream_sequence = Some(42);
        assert_eq!(compute_hash(&positioned), original.hash);
        let mut edited = original.clone();
        edited.payload = serde_json::json!({"name": "b"});
        assert_ne!(compute_hash(&edited), original.hash);
    }

    #[test]
    fn a_valid_chain_verifies_and_an_edited_event_breaks_it() {
        let first = envelope(1, GENESIS_HASH, serde_json::json!({"n": 1}));
        let second = envelope(2, &first.hash, serde_json::json!({"n": 2}));
        let subject = "gps.evt.acme.product.p1";
        let mut verifier = ChainVerifier::new();
        assert_eq!(verifier.check(subject, 1, &first), Ok(()));
        assert_eq!(verifier.check(subject, 2, &second), Ok(()));

        let mut verifier = ChainVerifier::new();
        let mut forged = first.clone();
        forged.payload = serde_json::json!({"n": 999});
        let broken = verifier.check(subject, 1, &forged).expect_err("forged");
        assert!(broken.reason.contains("altered"), "{broken}");
    }

    #[test]
    fn a_dropped_event_breaks_the_chain() {
        let first = envelope(1, GENESIS_HASH, serde_json::json!({"n": 1}));
        let second = envelope(2, &first.hash, serde_json::json!({"n": 2}));
        let third = envelope(3, &second.hash, serde_json::json!({"n": 3}));
        let mut verifier = ChainVerifier::new();
        verifier.check("gps.evt.acme.product.p1", 1, &first).expect("first");
        assert!(verifier.check("gps.evt.acme.product.p1", 3, &third).is_err());
    }
}
