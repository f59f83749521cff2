//! From a stored message to a typed event, or to the reason it cannot be
//! applied (which sends it to the dead-letter table).

use gps_domain::audit_access::AuditAccessEvent;
use gps_domain::brand::BrandEvent;
use gps_domain::export::ExportEvent;
use gps_domain::generation::GenerationEvent;
use gps_domain::import::ImportEvent;
use gps_domain::look::LookEvent;
use gps_domain::person::PersonEvent;
use gps_domain::prediction::PredictionEvent;
use gps_domain::product::ProductEvent;
use gps_domain::shooting::ShootingEvent;
use gps_domain::style::StyleEvent;
use gps_domain::subject::SubjectEvent;
use gps_domain::wire::{self, EventEnvelope};
use gps_domain::{AggregateKind, DomainEvent};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A message as read from the stream: position, subject and body.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// The stream sequence.
    pub sequence: u64,
    /// The subject it was stored on.
    pub subject: String,
    /// The `Gps-Event-Type` header, when present.
    pub event_type_header: Option<String>,
    /// The stored body (the envelope as JSON).
    pub body: bytes::Bytes,
}

impl RawEvent {
    /// Takes the parts a projection needs from a JetStream message.
    pub fn from_message(message: &async_nats::jetstream::Message) -> Result<Self, String> {
        let info = message.info().map_err(|e| e.to_string())?;
        Ok(RawEvent {
            sequence: info.stream_sequence,
            subject: message.subject.to_string(),
            event_type_header: message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(gps_nats::HEADER_EVENT_TYPE))
                .map(|value| value.as_str().to_owned()),
            body: message.payload.clone(),
        })
    }
}

/// An event of any aggregate, decoded to its domain type.
#[derive(Debug, Clone)]
#[expect(clippy::large_enum_variant, reason = "one value per applied event, never stored in bulk")]
pub enum AnyEvent {
    /// A brand event.
    Brand(BrandEvent),
    /// A product event.
    Product(ProductEvent),
    /// A subject event.
    Subject(SubjectEvent),
    /// A style event.
    Style(StyleEvent),
    /// A shooting event.
    Shooting(ShootingEvent),
    /// A look event.
    Look(LookEvent),
    /// A generation event.
    Generation(GenerationEvent),
    /// A prediction event.
    Prediction(PredictionEvent),
    /// An export event.
    Export(ExportEvent),
    /// An import event.
    Import(ImportEvent),
    /// A person event (platform-level: the brand token is `_platform`).
    Person(PersonEvent),
    /// A record of an audit read.
    AuditAccess(AuditAccessEvent),
}

/// A decoded event with the envelope facts every read model records.
#[derive(Debug, Clone)]
pub struct Event {
    /// The stored envelope.
    pub envelope: EventEnvelope,
    /// The typed payload.
    pub event: AnyEvent,
    /// The stream sequence, as stored in `last_sequence` columns.
    pub sequence: i64,
    /// The aggregate version, as stored in `version` columns.
    pub version: i64,
    /// When it happened.
    pub at: OffsetDateTime,
}

impl Event {
    /// The brand (tenant).
    pub fn brand(&self) -> &str {
        &self.envelope.brand
    }

    /// The aggregate id.
    pub fn id(&self) -> &str {
        &self.envelope.aggregate_id
    }
}

/// Decodes a stored message, or says why it cannot be applied.
pub fn decode(raw: &RawEvent) -> Result<Event, String> {
    let mut envelope: EventEnvelope =
        serde_json::from_slice(&raw.body).map_err(|e| format!("not an event envelope: {e}"))?;
    if let Some(header) = &raw.event_type_header
        && *header != envelope.event_type
    {
        return Err(format!(
            "header {} says {header} but the body says {}",
            gps_nats::HEADER_EVENT_TYPE,
            envelope.event_type
        ));
    }
    let expected_subject = format!(
        "{}.{}.{}.{}",
        gps_nats::subjects::EVENT_SUBJECT_PREFIX,
        envelope.brand,
        envelope.aggregate_type,
        envelope.aggregate_id
    );
    if raw.subject != expected_subject {
        return Err(format!("stored on {} but the envelope names {expected_subject}", raw.subject));
    }
    envelope.stream_sequence = Some(raw.sequence);
    let kind = AggregateKind::parse(&envelope.aggregate_type)
        .ok_or_else(|| format!("unknown aggregate type {:?}", envelope.aggregate_type))?;
    let payload = envelope.payload.clone();
    let (event_type, version) = (envelope.event_type.as_str(), envelope.schema_version);
    fn typed<E: DomainEvent>(
        event_type: &str,
        version: u32,
        payload: serde_json::Value,
        wrap: fn(E) -> AnyEvent,
    ) -> Result<AnyEvent, String> {
        wire::decode::<E>(event_type, version, payload).map(wrap).map_err(|e| e.to_string())
    }
    let event = match kind {
        AggregateKind::Brand => typed(event_type, version, payload, AnyEvent::Brand),
        AggregateKind::Product => typed(event_type, version, payload, AnyEvent::Product),
        AggregateKind::Subject => typed(event_type, version, payload, AnyEvent::Subject),
        AggregateKind::Style => typed(event_type, version, payload, AnyEvent::Style),
        AggregateKind::Shooting => typed(event_type, version, payload, AnyEvent::Shooting),
        AggregateKind::Look => typed(event_type, version, payload, AnyEvent::Look),
        AggregateKind::Generation => typed(event_type, version, payload, AnyEvent::Generation),
        AggregateKind::Prediction => typed(event_type, version, payload, AnyEvent::Prediction),
        AggregateKind::Export => typed(event_type, version, payload, AnyEvent::Export),
        AggregateKind::Import => typed(event_type, version, payload, AnyEvent::Import),
        AggregateKind::Person => typed(event_type, version, payload, AnyEvent::Person),
        AggregateKind::AuditAccess => typed(event_type, version, payload, AnyEvent::AuditAccess),
    }?;
    let at = OffsetDateTime::parse(&envelope.occurred_at, &Rfc3339)
        .map_err(|e| format!("occurred_at {:?} is not RFC 3339: {e}", envelope.occurred_at))?;
    Ok(Event {
        sequence: to_i64(raw.sequence),
        version: to_i64(envelope.aggregate_version),
        at,
        event,
        envelope,
    })
}

/// Postgres has no unsigned 64-bit integer; sequences and versions stay far
/// below `i64::MAX`, and saturating keeps a corrupt value from wrapping.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
