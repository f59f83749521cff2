//! The AuditAccess aggregate: one record of someone reading audit history
//! (who read what, when: the envelope's actor and time).
//!
//! Each read is an aggregate of its own (`gps.evt.<brand>.audit_access.<id>`),
//! written once and never changed. Reads used to be recorded on the Brand
//! aggregate (`brand.audit_accessed`), which then grew by one event per read:
//! every brand command loaded a longer history, and the brand's idempotency
//! window (the events since its last snapshot) was eaten by reads. Older
//! records stay where they were written; the brand's history still shows them.
//!
//! Invariants kept here:
//! - a record is written once: a second record under the same id is refused
//!   (a retried request is recognised by its command id before `decide`);
//! - it names a real kind of aggregate and an id that could be a subject token.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Aggregate, AggregateKind, DomainError};

/// What an audit read looked at: the brand's whole audit trail rather than
/// one aggregate (`aggregate_type` is then `audit_access`).
pub const WHOLE_TRAIL: &str = "all";

/// AuditAccess commands.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditAccessCommand {
    /// Records that the command's actor read an aggregate's audit history.
    RecordAuditAccess {
        /// The aggregate type read, e.g. `prediction`.
        aggregate_type: AggregateKind,
        /// The aggregate's id ([`WHOLE_TRAIL`] for the brand's audit trail).
        aggregate_id: String,
        /// The instant the history was cut at, when one was asked for (RFC 3339).
        as_of: Option<String>,
    },
}

/// Someone read an aggregate's audit history (the envelope's actor, at the
/// envelope's time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditAccessRecorded {
    /// The aggregate type read, e.g. `prediction`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The instant the history was cut at, if any (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

crate::domain_events! {
    aggregate: AuditAccess,
    /// AuditAccess events.
    pub enum AuditAccessEvent {
        /// See [`AuditAccessRecorded`].
        Recorded(AuditAccessRecorded) = ("audit_access.recorded", 1),
    }
}

/// The state of one audit-read record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditAccess {
    /// What was read, once recorded.
    pub recorded: Option<AuditAccessRecorded>,
}

impl Aggregate for AuditAccess {
    const KIND: AggregateKind = AggregateKind::AuditAccess;
    const STATE_VERSION: u32 = 1;
    type Command = AuditAccessCommand;
    type Event = AuditAccessEvent;

    fn decide(&self, command: &AuditAccessCommand) -> Result<Vec<AuditAccessEvent>, DomainError> {
        match command {
            AuditAccessCommand::RecordAuditAccess { aggregate_type, aggregate_id, as_of } => {
                if self.recorded.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::AuditAccess,
                        id: aggregate_id.clone(),
                    });
                }
                crate::ids::check_token("aggregate id", aggregate_id)
                    .map_err(|error| DomainError::rule(error.to_string()))?;
                Ok(vec![
                    AuditAccessRecorded {
                        aggregate_type: aggregate_type.as_str().to_owned(),
                        aggregate_id: aggregate_id.clone(),
                        as_of: as_of.clone(),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(mut self, event: &AuditAccessEvent) -> Self {
        match event {
            AuditAccessEvent::Recorded(recorded) => self.recorded = Some(recorded.clone()),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_snapshot_round_trip, given};

    fn read_prediction() -> AuditAccessCommand {
        AuditAccessCommand::RecordAuditAccess {
            aggregate_type: AggregateKind::Prediction,
            aggregate_id: "p1".into(),
            as_of: Some("2026-11-27T10:30:00Z".into()),
        }
    }

    fn recorded() -> AuditAccessEvent {
        AuditAccessRecorded {
            aggregate_type: "prediction".into(),
            aggregate_id: "p1".into(),
            as_of: Some("2026-11-27T10:30:00Z".into()),
        }
        .into()
    }

    #[test]
    fn a_read_is_recorded_with_what_was_read_and_the_cut() {
        given::<AuditAccess>(&[]).when(&read_prediction()).then(&[recorded()]);
    }

    #[test]
    fn a_record_is_written_once() {
        given::<AuditAccess>(&[recorded()]).when(&read_prediction()).then_rejected(|e| {
            matches!(e, DomainError::AlreadyExists { kind: AggregateKind::AuditAccess, .. })
        });
    }

    #[test]
    fn an_id_that_could_not_name_an_aggregate_is_refused() {
        given::<AuditAccess>(&[])
            .when(&AuditAccessCommand::RecordAuditAccess {
                aggregate_type: AggregateKind::Product,
                aggregate_id: "p 1".into(),
                as_of: None,
            })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn the_state_survives_a_snapshot() {
        let state = given::<AuditAccess>(&[recorded()]).state();
        assert!(state.recorded.is_some());
        assert_snapshot_round_trip(&state);
    }
}
