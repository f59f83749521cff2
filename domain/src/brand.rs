//! Placeholder, replaced by the full aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BrandPlaceholder {}

crate::domain_events! {
    aggregate: Brand,
    /// Placeholder.
    pub enum BrandEvent {
        /// Placeholder.
        Placeholder(BrandPlaceholder) = ("brand.placeholder", 1),
    }
}
