//! Export bundles: a brand's events for a time window (by storage time),
//! verifiable by an outsider with nothing but the bundle's files.
//!
//! A bundle is a folder:
//! - `events.jsonl`: one stored envelope per line, as stored, with its
//!   `stream_sequence`, in stream order;
//! - `anchors.json`: for every aggregate whose history starts before the
//!   window, the version and hash of its last event before it, so the chain of
//!   the first exported event can be checked (the anchor is the trust point);
//! - `schemas/`: the envelope schema and the JSON Schema of every event type
//!   and version the events use;
//! - `verification.json`: the checks run at export time, over the bundle and
//!   over the brand's whole log;
//! - `manifest.json`: brand, window, counts, sequences;
//! - `SHA256SUMS`: the sha256 of every other file (`sha256sum -c` reads it).
//!
//! [`verify_bundle`] needs only the folder: checksums (no file missing, none
//! added), every event's hash chain from its anchor, contiguous versions,
//! every event type and version having its schema file in the bundle, each
//! payload matching that schema file and decoding against that version, and
//! valid actors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gps_domain::ids::BrandId;
use gps_domain::wire::EventEnvelope;
use gps_nats::{EventLog, LogScan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::verify::{BrokenEvent, Check, EventChecker, VerifyReport, verify_log};
use super::{AuditError, file_error, rfc3339};
use crate::event::RawEvent;

/// The events file.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The anchors file.
pub const ANCHORS_FILE: &str = "anchors.json";
/// The manifest file.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The verification report written at export time.
pub const VERIFICATION_FILE: &str = "verification.json";
/// The checksum file.
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";
/// The folder of schemas.
pub const SCHEMAS_DIR: &str = "schemas";

/// What a bundle holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format of this folder.
    pub format: String,
    /// The brand.
    pub brand: String,
    /// The window's start (storage time, RFC 3339), if any.
    pub from: Option<String>,
    /// The window's end (storage time, RFC 3339), if any.
    pub to: Option<String>,
    /// When the bundle was written.
    pub exported_at: String,
    /// Events in `events.jsonl`.
    pub events: u64,
    /// Stream sequence of the first event.
    pub first_sequence: Option<u64>,
    /// Stream sequence of the last event.
    pub last_sequence: Option<u64>,
}

/// The bundle format written by this build.
pub const FORMAT: &str = "gps-audit-bundle/1";

/// An aggregate's last event before the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Its aggregate version.
    pub aggregate_version: u64,
    /// Its hash.
    pub hash: String,
}

/// The checks written into `verification.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportVerification {
    /// Over the bundle's events.
    pub bundle: VerifyReport,
    /// Over the brand's whole log at export time.
    pub log: VerifyReport,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// The folder.
    pub dir: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The files written, relative to the folder.
    pub files: Vec<String>,
    /// The checks at export time.
    pub verification: ExportVerification,
}

/// Writes a bundle of `brand`'s events stored in `[from, to]` into `dir`
/// (which must not exist, or be empty).
pub async fn export(
    log: &EventLog,
    brand: &BrandId,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    dir: &Path,
) -> Result<ExportReport, AuditError> {
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(AuditError::Invalid(format!(
            "--from {} is after --to {}; give the window's start first",
            rfc3339(from),
            rfc3339(to)
        )));
    }
    if dir.exists() && std::fs::read_dir(dir).map_err(file_error(dir))?.next().is_some() {
        return Err(AuditError::Invalid(format!(
            "{} is not empty; export into a new folder so no old file ends up in the bundle",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join(SCHEMAS_DIR)).map_err(file_error(dir))?;

    let filter = super::verify::filter_for(Some(brand));
    let mut scan = LogScan::open(log, &filter, 1).await?;
    let mut anchors: BTreeMap<String, Anchor> = BTreeMap::new();
    let mut lines = String::new();
    let mut raws = Vec::new();
    let mut used: BTreeSet<(String, u32)> = BTreeSet::new();
    while let Some(message) = scan.next().await? {
        if to.is_some_and(|to| message.stored_at > to) {
            break;
        }
        let envelope: EventEnvelope = serde_json::from_slice(&message.payload).map_err(|e| {
            AuditError::Invalid(format!(
                "the event at stream sequence {} is not an envelope ({e}); run gps audit verify",
                message.sequence
            ))
        })?;
        if from.is_some_and(|from| message.stored_at < from) {
            anchors.insert(
                message.subject.clone(),
                Anchor { aggregate_version: envelope.aggregate_version, hash: envelope.hash.clone() },
            );
            continue;
        }
        let mut line: serde_json::Value = serde_json::from_slice(&message.payload)
            .map_err(|e| AuditError::Invalid(format!("stream sequence {}: {e}", message.sequence)))?;
        if let serde_json::Value::Object(map) = &mut line {
            map.insert("stream_sequence".into(), message.sequence.into());
        }
        let text = serde_json::to_string(&line).unwrap_or_default();
        lines.push_str(&text);
        lines.push('\n');
        used.insert((envelope.event_type.clone(), envelope.schema_version));
        raws.push(RawEvent {
            sequence: message.sequence,
            subject: message.subject,
            event_type_header: None,
            body: text.into_bytes().into(),
        });
    }

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(EVENTS_FILE.into(), lines.into_bytes());
    files.insert(ANCHORS_FILE.into(), pretty(&anchors));
    let artefacts = gps_schemas::artefacts();
    let envelope_schema = artefacts
        .iter()
        .find(|(path, _)| path == Path::new(gps_schemas::ENVELOPE_FILE))
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    files.insert(format!("{SCHEMAS_DIR}/{}", gps_schemas::ENVELOPE_FILE), envelope_schema.into_bytes());
    for (event_type, version) in &used {
        let relative = gps_schemas::event_schema_file(event_type, *version);
        let text = match artefacts.iter().find(|(path, _)| *path == relative) {
            Some((_, text)) => text.clone(),
            // Older versions are frozen files, no longer generated.
            None => std::fs::read_to_string(gps_schemas::schemas_dir().join(&relative)).map_err(|_| {
                AuditError::Invalid(format!(
                    "no schema for {event_type} v{version} in this build; export with the build that knows it"
                ))
            })?,
        };
        files.insert(schema_file_name(event_type, *version), text.into_bytes());
    }

    let bundle_report = check_events(&raws, &anchors, from.is_none(), &filter);
    let log_report = verify_log(log, Some(brand)).await?;
    let verification = ExportVerification { bundle: bundle_report, log: log_report };
    files.insert(VERIFICATION_FILE.into(), pretty(&verification));
    let manifest = Manifest {
        format: FORMAT.into(),
        brand: brand.to_string(),
        from: from.map(rfc3339),
        to: to.map(rfc3339),
        exported_at: rfc3339(OffsetDateTime::now_utc()),
        events: raws.len() as u64,
        first_sequence: raws.first().map(|raw| raw.sequence),
        last_sequence: raws.last().map(|raw| raw.sequence),
    };
    files.insert(MANIFEST_FILE.into(), pretty(&manifest));

    let mut sums = String::new();
    for (name, contents) in &files {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(file_error(&path))?;
        sums.push_str(&format!("{}  {name}\n", hex::encode(Sha256::digest(contents))));
    }
    let sums_path = dir.join(CHECKSUMS_FILE);
    std::fs::write(&sums_path, sums).map_err(file_error(&sums_path))?;
    let mut names: Vec<String> = files.into_keys().collect();
    names.push(CHECKSUMS_FILE.into());
    Ok(ExportReport { dir: dir.display().to_string(), manifest, files: names, verification })
}

fn schema_file_name(event_type: &str, version: u32) -> String {
    format!("{SCHEMAS_DIR}/{event_type}.v{version}.schema.json")
}

fn pretty(value: &impl Serialize) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

fn check_events(
    raws: &[RawEvent],
    anchors: &BTreeMap<String, Anchor>,
    membership: bool,
    filter: &str,
) -> VerifyReport {
    let mut checker = EventChecker::new(membership);
    for (subject, anchor) in anchors {
        checker.anchor(subject, anchor.aggregate_version, &anchor.hash);
    }
    let first_break = raws.iter().find_map(|raw| checker.check(raw).err()).map(|broken| *broken);
    VerifyReport {
        filter: filter.to_owned(),
        events_checked: checker.checked(),
        aggregates: checker.aggregates(),
        membership_checked: membership,
        first_break,
    }
}

/// What checking a bundle found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// The manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Files whose checksum matched.
    pub files_checked: usize,
    /// Problems with the files themselves (checksums, missing or extra files,
    /// unreadable JSON), in the order found.
    pub file_problems: Vec<String>,
    /// The event checks.
    pub events: Option<VerifyReport>,
}

impl BundleReport {
    /// Whether the bundle verified.
    pub fn passed(&self) -> bool {
        self.file_problems.is_empty() && self.events.as_ref().is_some_and(VerifyReport::passed)
    }
}

/// Verifies a bundle using only its files.
pub fn verify_bundle(dir: &Path) -> Result<BundleReport, AuditError> {
    let mut report =
        BundleReport { manifest: None, files_checked: 0, file_problems: Vec::new(), events: None };
    let sums_path = dir.join(CHECKSUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).map_err(file_error(&sums_path))?;
    let mut listed = BTreeSet::new();
    for (number, line) in sums.lines().enumerate() {
        let Some((expected, name)) = line.split_once("  ") else {
            report
                .file_problems
                .push(format!("{CHECKSUMS_FILE} line {} is not '<sha256>  <file>'", number + 1));
            continue;
        };
        if name.contains("..") || name.starts_with('/') {
            report.file_problems.push(format!("{CHECKSUMS_FILE} names {name:?}, outside the bundle"));
            continue;
        }
        listed.insert(name.to_owned());
        match std::fs::read(dir.join(name)) {
            Ok(contents) if hex::encode(Sha256::digest(&contents)) == expected => report.files_checked += 1,
            Ok(_) => report.file_problems.push(format!("{name}: its sha256 differs from {CHECKSUMS_FILE}")),
            Err(error) => {
                report.file_problems.push(format!("{name}: listed in {CHECKSUMS_FILE} but {error}"))
            }
        }
    }
    for present in files_under(dir, dir)? {
        if present != CHECKSUMS_FILE && !listed.contains(&present) {
            report.file_problems.push(format!("{present}: in the bundle but not in {CHECKSUMS_FILE}"));
        }
    }
    let read_json = |name: &str, report: &mut BundleReport| -> Option<serde_json::Value> {
        let text = std::fs::read(dir.join(name)).ok()?;
        match serde_json::from_slice(&text) {
            Ok(value) => Some(value),
            Err(error) => {
                report.file_problems.push(format!("{name}: not JSON ({error})"));
                None
            }
        }
    };
    let manifest: Option<Manifest> =
        read_json(MANIFEST_FILE, &mut report).and_then(|value| serde_json::from_value(value).ok());
    let Some(manifest) = manifest else {
        report.file_problems.push(format!("{MANIFEST_FILE}: missing or not a {FORMAT} manifest"));
        return Ok(report);
    };
    if manifest.format != FORMAT {
        report
            .file_problems
            .push(format!("{MANIFEST_FILE}: format {:?}, expected {FORMAT}", manifest.format));
    }
    let anchors: BTreeMap<String, Anchor> = read_json(ANCHORS_FILE, &mut report)
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    let events_text = std::fs::read_to_string(dir.join(EVENTS_FILE)).unwrap_or_default();
    let filter = format!("{}.{}.>", gps_nats::subjects::EVENT_SUBJECT_PREFIX, manifest.brand);
    let mut checker = EventChecker::new(manifest.from.is_none());
    for (subject, anchor) in &anchors {
        checker.anchor(subject, anchor.aggregate_version, &anchor.hash);
    }
    let mut first_break = None;
    let mut schemas: BTreeMap<String, Option<serde_json::Value>> = BTreeMap::new();
    let mut count = 0u64;
    let mut last_sequence = 0u64;
    for (number, line) in events_text.lines().enumerate() {
        count += 1;
        let broken = |sequence: u64, subject: String, check: Check, reason: String| BrokenEvent {
            stream_sequence: sequence,
            subject,
            event_id: None,
            event_type: None,
            aggregate_version: None,
            check,
            reason,
        };
        let envelope: EventEnvelope = match serde_json::from_str(line) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("{EVENTS_FILE} line {}: not an event envelope: {error}", number + 1);
                first_break = Some(broken(0, String::new(), Check::Envelope, reason));
                break;
            }
        };
        let sequence = envelope.stream_sequence.unwrap_or_default();
        let subject = format!(
            "{}.{}.{}.{}",
            gps_nats::subjects::EVENT_SUBJECT_PREFIX,
            envelope.brand,
            envelope.aggregate_type,
            envelope.aggregate_id
        );
        if envelope.brand != manifest.brand {
            let reason = format!("belongs to brand {}, the bundle is of {}", envelope.brand, manifest.brand);
            first_break = Some(broken(sequence, subject, Check::Envelope, reason));
            break;
        }
        if sequence <= last_sequence {
            let reason = format!(
                "stream sequence {sequence} does not follow {last_sequence}; events are out of order"
            );
            first_break = Some(broken(sequence, subject, Check::Envelope, reason));
            break;
        }
        last_sequence = sequence;
        let schema_name = schema_file_name(&envelope.event_type, envelope.schema_version);
        if !schemas.contains_key(&schema_name) {
            let schema = std::fs::read(dir.join(&schema_name))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
            schemas.insert(schema_name.clone(), schema);
        }
        let Some(Some(schema)) = schemas.get(&schema_name) else {
            let reason = format!(
                "the bundle has no readable schema for {} v{}",
                envelope.event_type, envelope.schema_version
            );
            first_break = Some(broken(sequence, subject, Check::Schema, reason));
            break;
        };
        if let Err(reason) = super::schema_check::check(schema, &envelope.payload) {
            let reason = format!("the payload does not match {schema_name}: {reason}");
            first_break = Some(broken(sequence, subject, Check::Schema, reason));
            break;
        }
        let raw =
            RawEvent { sequence, subject, event_type_header: None, body: line.as_bytes().to_vec().into() };
        if let Err(broken) = checker.check(&raw) {
            first_break = Some(*broken);
            break;
        }
    }
    if first_break.is_none() && count != manifest.events {
        report
            .file_problems
            .push(format!("{EVENTS_FILE} holds {count} events but the manifest says {}", manifest.events));
    }
    report.events = Some(VerifyReport {
        filter,
        events_checked: checker.checked(),
        aggregates: checker.aggregates(),
        membership_checked: manifest.from.is_none(),
        first_break,
    });
    report.manifest = Some(manifest);
    Ok(report)
}

/// Every file under `dir`, relative to `root`, with `/` separators.
fn files_under(root: &Path, dir: &Path) -> Result<Vec<String>, AuditError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(file_error(dir))? {
        let entry = entry.map_err(file_error(dir))?;
        let path: PathBuf = entry.path();
        if path.is_dir() {
            out.extend(files_under(root, &path)?);
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(out)
}
