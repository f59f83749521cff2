//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportPlaceholder {}

crate::domain_events! {
    aggregate: Export,
    /// Placeholder.
    pub enum ExportEvent {
        /// Placeholder.
        Placeholder(ExportPlaceholder) = ("export.placeholder", 1),
    }
}
