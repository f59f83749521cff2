//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionPlaceholder {}

crate::domain_events! {
    aggregate: Prediction,
    /// Placeholder.
    pub enum PredictionEvent {
        /// Placeholder.
        Placeholder(PredictionPlaceholder) = ("prediction.placeholder", 1),
    }
}
