//! `gps audit verify`: walks the log (or one brand of it) in stream order and
//! checks every event, stopping at the first one that fails:
//!
//! 1. it is an event envelope whose type matches its `Gps-Event-Type` header;
//! 2. its aggregate version follows the previous one of its aggregate by one;
//! 3. its hash chain holds (`gps_nats::chain`: subject, `prev_hash`, `hash`);
//! 4. its payload decodes against its event type's schema version (the same
//!    decoders, with upcasting, that the projections use);
//! 5. its actor is valid: a system actor has a name, a member belonged to the
//!    brand and an API client was registered and not revoked when it acted (a
//!    member creating a brand or adding themselves in the same command counts).
//!
//! The same [`EventChecker`] verifies an export bundle offline, starting each
//! aggregate's chain at the bundle's anchors; there, membership can only be
//! checked when the bundle starts at the brand's beginning.

use std::collections::HashMap;

use gps_domain::Aggregate;
use gps_domain::brand::Brand;
use gps_domain::wire::{Actor, EventEnvelope};
use gps_nats::chain::ChainVerifier;
use gps_nats::{EventLog, LogScan};
use serde::{Deserialize, Serialize};

use super::AuditError;
use crate::event::{AnyEvent, RawEvent, decode};

/// Which check an event failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Not an event envelope, or its headers contradict its body.
    Envelope,
    /// Its aggregate version does not follow the previous one by one.
    Version,
    /// The hash chain is broken: the event was altered, inserted, dropped or moved.
    Chain,
    /// The payload does not decode against its event type's schema version.
    Schema,
    /// No valid actor.
    Actor,
}

impl Check {
    /// The check's name, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Envelope => "envelope",
            Check::Version => "version",
            Check::Chain => "hash chain",
            Check::Schema => "schema",
            Check::Actor => "actor",
        }
    }
}

/// The first event that failed a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenEvent {
    /// Its stream sequence.
    pub stream_sequence: u64,
    /// The subject it is stored on.
    pub subject: String,
    /// Its event id, when the body is an envelope.
    pub event_id: Option<String>,
    /// Its event type, when known.
    pub event_type: Option<String>,
    /// Its aggregate version, when known.
    pub aggregate_version: Option<u64>,
    /// The check it failed.
    pub check: Check,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for BrokenEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event at stream sequence {} on {}", self.stream_sequence, self.subject)?;
        if let Some(event_id) = &self.event_id {
            write!(f, " (event id {event_id}")?;
            if let Some(event_type) = &self.event_type {
                write!(f, ", {event_type}")?;
            }
            if let Some(version) = self.aggregate_version {
                write!(f, ", aggregate version {version}")?;
            }
            write!(f, ")")?;
        }
        write!(f, " fails the {} check: {}", self.check.as_str(), self.reason)
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The subject filter walked.
    pub filter: String,
    /// Events that passed every check.
    pub events_checked: u64,
    /// Aggregates seen.
    pub aggregates: usize,
    /// Whether actors were checked against brand membership (not only their shape).
    pub membership_checked: bool,
    /// The first broken event, if any.
    pub first_break: Option<BrokenEvent>,
}

impl VerifyReport {
    /// Whether every event passed.
    pub fn passed(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Checks events one by one in stream order.
#[derive(Debug)]
pub struct EventChecker {
    chains: ChainVerifier,
    brands: HashMap<String, Brand>,
    membership: bool,
}

impl EventChecker {
    /// A checker that verifies actors against brand membership when
    /// `membership` is set (the events must then start at each brand's
    /// beginning), or only their shape.
    pub fn new(membership: bool) -> Self {
        EventChecker { chains: ChainVerifier::new(), brands: HashMap::new(), membership }
    }

    /// Starts `subject`'s chain after a known event (see [`ChainVerifier::anchor`]).
    pub fn anchor(&mut self, subject: &str, aggregate_version: u64, hash: &str) {
        self.chains.anchor(subject, aggregate_version, hash);
    }

    /// Events that passed.
    pub fn checked(&self) -> u64 {
        self.chains.checked()
    }

    /// Aggregates seen.
    pub fn aggregates(&self) -> usize {
        self.chains.aggregates()
    }

    /// Checks one stored event.
    pub fn check(&mut self, raw: &RawEvent) -> Result<(), Box<BrokenEvent>> {
        let mut broken = BrokenEvent {
            stream_sequence: raw.sequence,
            subject: raw.subject.clone(),
            event_id: None,
            event_type: raw.event_type_header.clone(),
            aggregate_version: None,
            check: Check::Envelope,
            reason: String::new(),
        };
        let fail = |mut broken: BrokenEvent, check: Check, reason: String| {
            broken.check = check;
            broken.reason = reason;
            Err(Box::new(broken))
        };
        let envelope: EventEnvelope = match serde_json::from_slice(&raw.body) {
            Ok(envelope) => envelope,
            Err(error) => return fail(broken, Check::Envelope, format!("not an event envelope: {error}")),
        };
        broken.event_id = Some(envelope.event_id.clone());
        broken.event_type = Some(envelope.event_type.clone());
        broken.aggregate_version = Some(envelope.aggregate_version);
        if let Some(header) = &raw.event_type_header
            && *header != envelope.event_type
        {
            let reason = format!("header says {header} but the body says {}", envelope.event_type);
            return fail(broken, Check::Envelope, reason);
        }
        let previous = self.chains.head(&raw.subject).map_or(0, |(version, _)| version);
        if envelope.aggregate_version != previous + 1 {
            let reason = format!(
                "aggregate version {} follows version {previous}; versions must be contiguous",
                envelope.aggregate_version
            );
            return fail(broken, Check::Version, reason);
        }
        if let Err(chain_break) = self.chains.check(&raw.subject, raw.sequence, &envelope) {
            return fail(broken, Check::Chain, chain_break.reason);
        }
        let event = match decode(raw) {
            Ok(event) => event,
            Err(reason) => return fail(broken, Check::Schema, reason),
        };
        let brand_before = self.brands.get(&envelope.brand).cloned();
        if let AnyEvent::Brand(brand_event) = &event.event {
            let state = self.brands.remove(&envelope.brand).unwrap_or_default();
            self.brands.insert(envelope.brand.clone(), state.evolve(brand_event));
        }
        if let Err(reason) = self.actor_is_valid(&envelope, brand_before.as_ref()) {
            return fail(broken, Check::Actor, reason);
        }
        Ok(())
    }

    fn actor_is_valid(&self, envelope: &EventEnvelope, brand_before: Option<&Brand>) -> Result<(), String> {
        match &envelope.actor {
            Actor::System(name) => {
                if name.trim().is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(format!("system actor {name:?} must be a short, printable role name"));
                }
                Ok(())
            }
            // Member and API client ids were parsed (checked) when the envelope decoded.
            _ if !self.membership => Ok(()),
            // Persons belong to no brand: a member acts there only on themselves.
            Actor::Member(member) if envelope.brand == gps_domain::ids::PLATFORM_SCOPE => {
                if member.as_str() == envelope.aggregate_id {
                    Ok(())
                } else {
                    Err(format!(
                        "member {member} acted on person {}, who is someone else",
                        envelope.aggregate_id
                    ))
                }
            }
            Actor::Member(member) => {
                let on_brand = envelope.aggregate_type == "brand";
                let before = brand_before.filter(|brand| brand.exists());
                let after = self.brands.get(&envelope.brand);
                let was_member = before.is_some_and(|brand| brand.role_of(member).is_some());
                // Creating a brand, or its founding owner joining in the same command.
                let founding = on_brand
                    && (before.is_none() || after.is_some_and(|brand| brand.role_of(member).is_some()));
                if was_member || founding {
                    Ok(())
                } else {
                    Err(format!("member {member} was not a member of brand {} when it acted", envelope.brand))
                }
            }
            Actor::ApiClient(client) => {
                if brand_before.is_some_and(|brand| brand.api_client_role(client).is_some()) {
                    Ok(())
                } else {
                    Err(format!(
                        "API client {client} was not an active client of brand {} when it acted",
                        envelope.brand
                    ))
                }
            }
        }
    }
}

/// The subject filter of a brand, or of the whole log.
pub fn filter_for(brand: Option<&gps_domain::ids::BrandId>) -> String {
    match brand {
        Some(brand) => gps_nats::subjects::brand_filter(brand),
        None => format!("{}.>", gps_nats::subjects::EVENT_SUBJECT_PREFIX),
    }
}

/// Walks the log (or one brand's part of it) and checks every event.
pub async fn verify_log(
    log: &EventLog,
    brand: Option<&gps_domain::ids::BrandId>,
) -> Result<VerifyReport, AuditError> {
    let filter = filter_for(brand);
    let mut scan = LogScan::open(log, &filter, 1).await?;
    let mut checker = EventChecker::new(true);
    let mut first_break = None;
    while let Some(message) = scan.next().await? {
        let raw = RawEvent {
            sequence: message.sequence,
            subject: message.subject,
            event_type_header: message
                .headers
                .get(gps_nats::HEADER_EVENT_TYPE)
                .map(|value| value.as_str().to_owned()),
            body: message.payload,
        };
        if let Err(broken) = checker.check(&raw) {
            first_break = Some(*broken);
            break;
        }
    }
    Ok(VerifyReport {
        filter,
        events_checked: checker.checked(),
        aggregates: checker.aggregates(),
        membership_checked: true,
        first_break,
    })
}
