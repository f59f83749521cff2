//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StylePlaceholder {}

crate::domain_events! {
    aggregate: Style,
    /// Placeholder.
    pub enum StyleEvent {
        /// Placeholder.
        Placeholder(StylePlaceholder) = ("style.placeholder", 1),
    }
}
