//! The GPS domain model: every aggregate of the five pipeline stages, with its
//! imperative `Command` enum, past-tense `Event` enum, `decide` and `evolve`.
//!
//! Layout:
//! - [`aggregate`]: the [`Aggregate`] and [`DomainEvent`] traits and [`DomainError`].
//! - [`ids`] and [`values`]: newtypes that can only hold valid values (parse, don't
//!   validate). Identifiers that become NATS subject tokens are checked here.
//! - [`wire`]: the event envelope and the encoding of events to versioned JSON.
//! - [`presets`]: the built-in channel presets, with their numbers.
//! - one module per aggregate: [`brand`], [`product`], [`subject`], [`style`],
//!   [`shooting`], [`look`], [`generation`], [`prediction`], [`export`],
//!   [`import`], [`audit_access`] (who read audit history), and the
//!   platform-level [`person`] (who can sign in).
//!
//! Architecture invariant: this crate is pure. It depends on no tokio, NATS, sqlx,
//! HTTP or AWS crate (a test reads `Cargo.toml` and fails if one appears).
//! Anything from the outside world (the time, generated ids, the state of another
//! aggregate) comes in with the command; `decide` never fetches.

pub mod aggregate;
pub mod ids;
pub mod values;
pub mod wire;

#[cfg(test)]
mod testing;

pub mod audit_access;
pub mod brand;
pub mod export;
pub mod generation;
pub mod import;
pub mod look;
pub mod person;
pub mod prediction;
pub mod presets;
pub mod product;
pub mod shooting;
pub mod style;
pub mod subject;

pub use aggregate::{Aggregate, AggregateKind, DomainError, DomainEvent};
pub use ids::InvalidValue;

/// Every event type of every aggregate with its current schema version and JSON
/// Schema generator: the source for `schemas/` and for decoding.
pub fn event_catalog() -> Vec<wire::EventSchema> {
    let mut all = Vec::new();
    all.extend(<brand::BrandEvent as DomainEvent>::catalog());
    all.extend(<product::ProductEvent as DomainEvent>::catalog());
    all.extend(<subject::SubjectEvent as DomainEvent>::catalog());
    all.extend(<style::StyleEvent as DomainEvent>::catalog());
    all.extend(<shooting::ShootingEvent as DomainEvent>::catalog());
    all.extend(<look::LookEvent as DomainEvent>::catalog());
    all.extend(<generation::GenerationEvent as DomainEvent>::catalog());
    all.extend(<prediction::PredictionEvent as DomainEvent>::catalog());
    all.extend(<export::ExportEvent as DomainEvent>::catalog());
    all.extend(<import::ImportEvent as DomainEvent>::catalog());
    all.extend(<person::PersonEvent as DomainEvent>::catalog());
    all.extend(<audit_access::AuditAccessEvent as DomainEvent>::catalog());
    all
}
