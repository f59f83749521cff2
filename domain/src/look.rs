//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookPlaceholder {}

crate::domain_events! {
    aggregate: Look,
    /// Placeholder.
    pub enum LookEvent {
        /// Placeholder.
        Placeholder(LookPlaceholder) = ("look.placeholder", 1),
    }
}
