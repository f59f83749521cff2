//! The `apply` functions of the projections, one module per projection.
//! Each writes unqualified table names: the runner's connection has its
//! `search_path` set to the projection's live or shadow schema.

pub(crate) mod accounts;
pub(crate) mod activity;
pub(crate) mod brands;
pub(crate) mod catalog;
pub(crate) mod delivery;
pub(crate) mod production;
pub(crate) mod review;

use serde::Serialize;

/// The wire name of a unit-like enum value (e.g. a role), as serde writes it.
pub(crate) fn tag<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Bumps an aggregate row's version and sequence; used by events that only
/// change child rows or a few columns.
macro_rules! touch {
    ($conn:expr, $e:expr, $sql:literal) => {
        sqlx::query($sql)
            .bind($e.brand())
            .bind($e.id())
            .bind($e.at)
            .bind($e.version)
            .bind($e.sequence)
            .execute(&mut *$conn)
            .await
    };
}
pub(crate) use touch;
