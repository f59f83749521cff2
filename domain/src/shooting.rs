//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingPlaceholder {}

crate::domain_events! {
    aggregate: Shooting,
    /// Placeholder.
    pub enum ShootingEvent {
        /// Placeholder.
        Placeholder(ShootingPlaceholder) = ("shooting.placeholder", 1),
    }
}
