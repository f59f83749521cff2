//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationPlaceholder {}

crate::domain_events! {
    aggregate: Generation,
    /// Placeholder.
    pub enum GenerationEvent {
        /// Placeholder.
        Placeholder(GenerationPlaceholder) = ("generation.placeholder", 1),
    }
}
