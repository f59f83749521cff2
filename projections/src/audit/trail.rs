//! A brand's audit trail: who read which audit history, when, in stream order
//! — the records of [`gps_domain::audit_access`], and the older ones that were
//! written on the brand itself (`brand.audit_accessed`), so the trail is whole
//! across the change. Read from the log, paged by stream sequence.

use gps_domain::brand::BrandEvent;
use gps_domain::ids::BrandId;
use gps_domain::wire::{Actor, EventEnvelope};
use gps_domain::{AggregateKind, DomainEvent};
use gps_nats::subjects::brand_kind_filter;
use gps_nats::{AggregateAddress, EventLog, LogScan};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AuditError, rfc3339};

/// The most records one page holds.
pub const MAX_PAGE: usize = 1000;

/// One audit read.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRead {
    /// Stream sequence of the record.
    pub stream_sequence: u64,
    /// When the server stored the record, RFC 3339.
    pub stored_at: String,
    /// Who read.
    #[schema(value_type = Object)]
    pub actor: Actor,
    /// The aggregate type read, e.g. `prediction` (`audit_access` for the trail itself).
    pub aggregate_type: String,
    /// The aggregate read (`all` for the whole trail).
    pub aggregate_id: String,
    /// The instant the read was cut at, when one was asked for (RFC 3339).
    pub as_of: Option<String>,
    /// The event recording it: `audit_access.recorded`, or
    /// `brand.audit_accessed` for records written before reads had their own aggregates.
    pub event_type: String,
}

/// One page of a brand's audit trail, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditTrail {
    /// The brand.
    pub brand: String,
    /// The instant the trail was cut at, when asked for one (RFC 3339).
    pub as_of: Option<String>,
    /// The reads, oldest first.
    pub reads: Vec<AuditRead>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// The payload both record events share.
#[derive(Deserialize)]
struct Recorded {
    aggregate_type: String,
    aggregate_id: String,
    #[serde(default)]
    as_of: Option<String>,
}

/// Reads up to `limit` (at most [`MAX_PAGE`]) audit reads of a brand stored
/// after stream sequence `after`, cut at `as_of` (storage time) when given.
pub async fn trail(
    log: &EventLog,
    brand: &BrandId,
    after: u64,
    limit: usize,
    as_of: Option<OffsetDateTime>,
) -> Result<AuditTrail, AuditError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let brand_subject = AggregateAddress::new(brand.clone(), AggregateKind::Brand, brand.as_str())
        .map_err(|e| AuditError::Invalid(e.to_string()))?
        .subject();
    let filters = [brand_kind_filter(brand, AggregateKind::AuditAccess), brand_subject];
    let older_type = BrandEvent::from(gps_domain::brand::AuditAccessed {
        aggregate_type: String::new(),
        aggregate_id: String::new(),
        as_of: None,
    })
    .event_type();
    let mut scan = LogScan::open_subjects(log, &filters, after.saturating_add(1)).await?;
    let mut reads = Vec::new();
    let mut next_after = None;
    while let Some(message) = scan.next().await? {
        if as_of.is_some_and(|cut| message.stored_at > cut) {
            break;
        }
        let envelope: EventEnvelope = serde_json::from_slice(&message.payload).map_err(|e| {
            AuditError::Invalid(format!(
                "the event at stream sequence {} is not an envelope ({e}); run gps audit verify",
                message.sequence
            ))
        })?;
        // The brand's own subject carries its other events too.
        if envelope.aggregate_type == AggregateKind::Brand.as_str() && envelope.event_type != older_type {
            continue;
        }
        if reads.len() == limit {
            next_after = reads.last().map(|read: &AuditRead| read.stream_sequence);
            break;
        }
        let recorded: Recorded = serde_json::from_value(envelope.payload).map_err(|e| {
            AuditError::Invalid(format!(
                "the audit record at stream sequence {} does not decode ({e}); run gps audit verify",
                message.sequence
            ))
        })?;
        reads.push(AuditRead {
            stream_sequence: message.sequence,
            stored_at: rfc3339(message.stored_at),
            actor: envelope.actor,
            aggregate_type: recorded.aggregate_type,
            aggregate_id: recorded.aggregate_id,
            as_of: recorded.as_of,
            event_type: envelope.event_type,
        });
    }
    Ok(AuditTrail { brand: brand.to_string(), as_of: as_of.map(rfc3339), reads, next_after })
}
