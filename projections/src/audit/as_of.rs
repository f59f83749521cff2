//! The read models as they stood at an instant: every projection replayed
//! into its own schema `<schema>_asof_<YYYYMMDD>_<HHMMSS>_<millis>` from the
//! events the server had stored at that instant (optionally of one brand),
//! through [`crate::rebuild::replay_into`] — the projections' own code, with
//! a time cutoff. Auditors then query the past with SQL, e.g.
//! `SELECT * FROM review_asof_20261127_103000_000.predictions`.
//!
//! The schemas stay until [`drop_as_of`] removes them (`gps audit as-of T
//! --drop`). A second build for the same instant replaces the first; a
//! brand-filtered build and a whole-log build of the same instant share the
//! names, so the later one wins (the report says which brand it holds).

use gps_domain::ids::BrandId;
use gps_nats::EventLog;
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::{AuditError, rfc3339};
use crate::ALL;
use crate::rebuild::{ReplayLimit, replay_into};

/// One projection's as-of schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOfSchema {
    /// The projection.
    pub projection: String,
    /// The schema holding its tables as of the instant.
    pub schema: String,
    /// Events applied.
    pub events: u64,
}

/// What an as-of build made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AsOfReport {
    /// The instant, RFC 3339.
    pub as_of: String,
    /// The brand, when limited to one.
    pub brand: Option<String>,
    /// The schemas, one per projection.
    pub schemas: Vec<AsOfSchema>,
}

/// Progress of an as-of build: a projection and the events applied so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOfProgress {
    /// The projection being built.
    pub projection: &'static str,
    /// Events applied to it so far.
    pub events: u64,
    /// Whether it is finished.
    pub done: bool,
}

/// The schema suffix of an instant, e.g. `asof_20261127_103000_000`.
pub fn suffix(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "asof_{:04}{:02}{:02}_{:02}{:02}{:02}_{:03}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The as-of schema of `projection_schema` at `at`.
pub fn schema_name(projection_schema: &str, at: OffsetDateTime) -> String {
    format!("{projection_schema}_{}", suffix(at))
}

/// Builds every read model as of `at` into its own schema, reporting progress.
pub async fn build_as_of(
    pool: &PgPool,
    log: &EventLog,
    at: OffsetDateTime,
    brand: Option<&BrandId>,
    progress: &mut (dyn FnMut(AsOfProgress) + Send),
) -> Result<AsOfReport, AuditError> {
    let limit = ReplayLimit { brand: brand.cloned(), until_sequence: None, stored_until: Some(at) };
    let mut schemas = Vec::new();
    for projection in &ALL {
        let schema = schema_name(projection.schema, at);
        let name = projection.name;
        let events = replay_into(pool, log, projection, &schema, &limit, &mut |events| {
            progress(AsOfProgress { projection: name, events, done: false });
        })
        .await?;
        progress(AsOfProgress { projection: name, events, done: true });
        schemas.push(AsOfSchema { projection: name.to_owned(), schema, events });
    }
    Ok(AsOfReport { as_of: rfc3339(at), brand: brand.map(ToString::to_string), schemas })
}

/// Drops the as-of schemas of `at`; returns the ones that existed.
pub async fn drop_as_of(pool: &PgPool, at: OffsetDateTime) -> Result<Vec<String>, AuditError> {
    let mut dropped = Vec::new();
    for projection in &ALL {
        let schema = schema_name(projection.schema, at);
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(&schema)
                .fetch_one(pool)
                .await?;
        if exists {
            // Built from a static projection schema and digits.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
                .execute(pool)
                .await?;
            dropped.push(schema);
        }
    }
    Ok(dropped)
}
