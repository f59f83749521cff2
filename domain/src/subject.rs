//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectPlaceholder {}

crate::domain_events! {
    aggregate: Subject,
    /// Placeholder.
    pub enum SubjectEvent {
        /// Placeholder.
        Placeholder(SubjectPlaceholder) = ("subject.placeholder", 1),
    }
}
