//! Subjects of the event log: `gps.evt.<brand>.<aggregate>.<id>`.
//!
//! An address can only be built from a parsed [`BrandId`] and a checked id
//! token, so no id can reach into another aggregate's subject.

use std::fmt;

use gps_domain::ids::{BrandId, check_token};
use gps_domain::{AggregateKind, InvalidValue};

/// The prefix of every event subject.
pub const EVENT_SUBJECT_PREFIX: &str = "gps.evt";

/// One aggregate's place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateAddress {
    brand: BrandId,
    kind: AggregateKind,
    id: String,
}

impl AggregateAddress {
    /// Builds an address, checking the id is a safe subject token.
    pub fn new(brand: BrandId, kind: AggregateKind, id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        check_token("aggregate id", &id)?;
        Ok(AggregateAddress { brand, kind, id })
    }

    /// The brand.
    pub fn brand(&self) -> &BrandId {
        &self.brand
    }

    /// The aggregate kind.
    pub fn kind(&self) -> AggregateKind {
        self.kind
    }

    /// The aggregate id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The subject this aggregate's events are stored on.
    pub fn subject(&self) -> String {
        format!("{EVENT_SUBJECT_PREFIX}.{}.{}.{}", self.brand, self.kind.as_str(), self.id)
    }

    /// Parses a subject back into an address; `None` if it is not an event subject.
    pub fn from_subject(subject: &str) -> Option<Self> {
        let rest = subject.strip_prefix(EVENT_SUBJECT_PREFIX)?.strip_prefix('.')?;
        let mut tokens = rest.split('.');
        let (brand, kind, id) = (tokens.next()?, tokens.next()?, tokens.next()?);
        if tokens.next().is_some() {
            return None;
        }
        let brand = BrandId::parse_scope(brand).ok()?;
        AggregateAddress::new(brand, AggregateKind::parse(kind)?, id).ok()
    }
}

impl fmt::Display for AggregateAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} of brand {}", self.kind, self.id, self.brand)
    }
}

/// The prefix of live notices: core NATS subjects `gps.live.<brand>` on which
/// the projection runners announce what they have just made visible. Not
/// durable; the stream stays the truth.
pub const LIVE_SUBJECT_PREFIX: &str = "gps.live";

/// The live-notice subject of one brand.
pub fn live_subject(brand: &BrandId) -> String {
    format!("{LIVE_SUBJECT_PREFIX}.{brand}")
}

/// The filter for every event of one brand (for a brand-scoped consumer).
pub fn brand_filter(brand: &BrandId) -> String {
    format!("{EVENT_SUBJECT_PREFIX}.{brand}.>")
}

/// The filter for every event of one aggregate kind of one brand.
pub fn brand_kind_filter(brand: &BrandId, kind: AggregateKind) -> String {
    format!("{EVENT_SUBJECT_PREFIX}.{brand}.{}.*", kind.as_str())
}

/// The filter for every event of one aggregate kind across brands.
pub fn kind_filter(kind: AggregateKind) -> String {
    format!("{EVENT_SUBJECT_PREFIX}.*.{}.*", kind.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> BrandId {
        BrandId::parse("acme").expect("valid")
    }

    #[test]
    fn an_address_names_its_subject_and_parses_back() {
        let address = AggregateAddress::new(brand(), AggregateKind::Look, "look-1").expect("valid");
        assert_eq!(address.subject(), "gps.evt.acme.look.look-1");
        assert_eq!(AggregateAddress::from_subject(&address.subject()), Some(address));
    }

    #[test]
    fn ids_that_would_escape_their_subject_are_refused() {
        for bad in ["a.b", "*", ">", "a b", ""] {
            assert!(AggregateAddress::new(brand(), AggregateKind::Product, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn foreign_or_malformed_subjects_do_not_parse() {
        for subject in [
            "gps.evt.acme.product",
            "gps.evt.acme.product.p1.x",
            "other.acme.product.p1",
            "gps.evt.acme.widget.p1",
        ] {
            assert_eq!(AggregateAddress::from_subject(subject), None, "{subject}");
        }
    }
}
