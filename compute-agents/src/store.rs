//! The compute task state in its own database (`gps_compute` by default):
//! runs, workflow step states and results (including a remote provider's job
//! handle), and dead letters. Owned by this crate alone; no business read model
//! lives here and none is read.

use std::str::FromStr;

use gps_domain::ids::{BrandId, GenerationId};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};

use crate::providers::RemoteJob;

static MIGRATIONS: Migrator = sqlx::migrate!("migrations/compute");

/// Why the compute database failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not a Postgres URL with a plain database name.
    #[error("invalid compute database URL: {0}")]
    InvalidUrl(String),
    /// Postgres failed.
    #[error("compute database: {0}")]
    Postgres(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("compute database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode.
    #[error("compute database holds an unreadable {what}: {message}")]
    Corrupt {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// The URL of the compute database that belongs with the read-model database
/// `read_url`: the same server, the read database's name with `_read`
/// replaced by `_compute` (`gps_read` → `gps_compute`), or `_compute` appended.
/// Named after the read database because both belong to one installation (one
/// event log): generation ids repeat across installations (they are derived
/// from brand, shooting and look ids), so two installations sharing one
/// compute database would resume each other's generations.
pub fn compute_url_for(read_url: &str) -> String {
    let without_query = read_url.split_once('?').map_or(read_url, |(base, _)| base);
    let read_name = without_query.rsplit_once('/').map_or("gps", |(_, name)| name);
    let name = match read_name.strip_suffix("_read") {
        Some(stem) if !stem.is_empty() => format!("{stem}_compute"),
        _ => format!("{read_name}_compute"),
    };
    sibling_url(read_url, &name)
}

/// The URL of database `database` on the same server as `url`.
pub fn sibling_url(url: &str, database: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => {
            format!("{}/{database}?{query}", base.rsplit_once('/').map_or(base, |(s, _)| s))
        }
        None => format!("{}/{database}", url.rsplit_once('/').map_or(url, |(s, _)| s)),
    }
}

/// The state of one node as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredStep {
    /// Submitted to `provider`; its job is `job`.
    Submitted {
        /// The provider.
        provider: String,
        /// Its model.
        model: String,
        /// The job handle.
        job: RemoteJob,
        /// Tries so far.
        tries: i32,
    },
    /// Done with `result`.
    Completed(CompletedStep),
}

/// A finished node.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedStep {
    /// The provider that did it (`local` for the engine's own steps).
    pub provider: String,
    /// Its model.
    pub model: String,
    /// The step's result (JSON, step-specific).
    pub result: serde_json::Value,
    /// What it cost.
    pub cost_micros: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Which try succeeded.
    pub tries: u32,
}

/// Identifies a node of one attempt.
#[derive(Debug, Clone)]
pub struct NodeKey<'a> {
    /// The brand.
    pub brand: &'a BrandId,
    /// The generation.
    pub generation: &'a GenerationId,
    /// The attempt.
    pub attempt: u32,
    /// The step id.
    pub step: &'a str,
    /// The variant, or -1 for a whole-generation step.
    pub variant: i32,
}

/// The compute database.
#[derive(Debug, Clone)]
pub struct ComputeStore {
    pool: PgPool,
}

fn attempt(a: u32) -> i32 {
    i32::try_from(a).unwrap_or(i32::MAX)
}

impl ComputeStore {
    /// Connects to `url`, creating the database when missing, and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let database = options.get_database().unwrap_or("postgres").to_owned();
        if database.is_empty() || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::InvalidUrl(format!(
                "database name {database:?} must be letters, digits and '_'"
            )));
        }
        {
            let mut admin = options.clone().database("postgres").connect().await?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&database)
                    .fetch_one(&mut admin)
                    .await?;
            if !exists {
                // The name was checked above (letters, digits, '_'), so it is safe to splice.
                match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
                    .execute(&mut admin)
                    .await
                {
                    Ok(_) => tracing::info!(%database, "compute database created"),
                    // Another agent created it in between.
                    Err(sqlx::Error::Database(e))
                        if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let pool = PgPoolOptions::new().max_connections(max_connections.max(2)).connect_with(options).await?;
        MIGRATIONS.run(&pool).await?;
        Ok(ComputeStore { pool })
    }

    /// The pool (for health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records that `agent` runs this attempt (again, after a takeover).
    pub async fn begin_run(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        agent: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runs (brand_id, generation_id, attempt, agent, status) VALUES ($1, $2, $3, $4, 'running')
             ON CONFLICT (brand_id, generation_id, attempt) DO UPDATE SET agent = EXCLUDED.agent, updated_at = now()
             WHERE runs.status = 'running'",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .bind(agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how the attempt ended.
    pub async fn end_run(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        status: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = $4, reason = $5, updated_at = now()
             WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .bind(status)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every stored node of an attempt, keyed by (step, variant).
    pub async fn steps(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
    ) -> Result<Vec<((String, i32), StoredStep)>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, variant, status, provider, model, remote_job, result, cost_micros, duration_ms, tries
             FROM steps WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let key = (row.try_get::<String, _>("step")?, row.try_get::<i32, _>("variant")?);
                let status: String = row.try_get("status")?;
                let provider: String = row.try_get("provider")?;
                let model: String = row.try_get("model")?;
                let tries: i32 = row.try_get("tries")?;
                let step = if status == "submitted" {
                    let job: Option<serde_json::Value> = row.try_get("remote_job")?;
                    StoredStep::Submitted {
                        provider,
                        model,
                        job: RemoteJob(job.unwrap_or(serde_json::Value::Null)),
                        tries,
                    }
                } else {
                    StoredStep::Completed(CompletedStep {
                        provider,
                        model,
                        result: row.try_get::<Option<serde_json::Value>, _>("result")?.unwrap_or_default(),
                        cost_micros: u64::try_from(row.try_get::<i64, _>("cost_micros")?).unwrap_or(0),
                        duration_ms: u64::try_from(row.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                        tries: u32::try_from(tries).unwrap_or(1),
                    })
                };
                Ok((key, step))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records a submitted remote job before anyone waits for it.
    pub async fn record_submitted(
        &self,
        key: &NodeKey<'_>,
        provider: &str,
        model: &str,
        job: &RemoteJob,
        tries: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model, remote_job, tries)
             VALUES ($1, $2, $3, $4, $5, 'submitted', $6, $7, $8, $9)
             ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO NOTHING",
        )
        .bind(key.brand.as_str())
        .bind(key.generation.as_str())
        .bind(attempt(key.attempt))
        .bind(key.step)
        .bind(key.variant)
        .bind(provider)
        .bind(model)
        .bind(&job.0)
        .bind(attempt(tries))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a finished node; a node finished before keeps its first result.
    pub async fn record_completed(&self, key: &NodeKey<'_>, step: &CompletedStep) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model, result,
                                cost_micros, duration_ms, tries, completed_at)
             VALUES ($1, $2, $3, $4, $5, 'completed', $6, $7, $8, $9, $10, $11, now())
             ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO UPDATE
               SET status = 'completed', result = EXCLUDED.result, cost_micros = EXCLUDED.cost_micros,
                   duration_ms = EXCLUDED.duration_ms, tries = EXCLUDED.tries, completed_at = now()
               WHERE steps.status = 'submitted'",
        )
        .bind(key.brand.as_str())
        .bind(key.generation.as_str())
        .bind(attempt(key.attempt))
        .bind(key.step)
        .bind(key.variant)
        .bind(&step.provider)
        .bind(&step.model)
        .bind(&step.result)
        .bind(i64::try_from(step.cost_micros).unwrap_or(i64::MAX))
        .bind(i64::try_from(step.duration_ms).unwrap_or(i64::MAX))
        .bind(attempt(step.tries))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a submitted job that can no longer finish (expired, refused), so
    /// a later retry of the generation may submit anew.
    pub async fn forget_submitted(&self, key: &NodeKey<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM steps WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND step = $4
               AND variant = $5 AND status = 'submitted'",
        )
        .bind(key.brand.as_str())
        .bind(key.generation.as_str())
        .bind(attempt(key.attempt))
        .bind(key.step)
        .bind(key.variant)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a generation that exhausted its deliveries.
    pub async fn dead_letter(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        stream_sequence: u64,
        deliveries: u64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dead_letters (brand_id, generation_id, attempt, stream_sequence, deliveries, reason)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (brand_id, generation_id, attempt) DO NOTHING",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .bind(i64::try_from(stream_sequence).unwrap_or(i64::MAX))
        .bind(i64::try_from(deliveries).unwrap_or(i64::MAX))
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How many dead letters are recorded.
    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM dead_letters").fetch_one(&self.pool).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::{compute_url_for, sibling_url};

    #[test]
    fn each_installation_has_its_own_compute_database() {
        assert_eq!(
            compute_url_for("postgres://postgres@127.0.0.1:5432/gps_read"),
            "postgres://postgres@127.0.0.1:5432/gps_compute"
        );
        assert_eq!(
            compute_url_for("postgres://u@h/gps_test_1f2e?sslmode=require"),
            "postgres://u@h/gps_test_1f2e_compute?sslmode=require"
        );
        assert_eq!(compute_url_for("postgres://u@h/_read"), "postgres://u@h/_read_compute");
    }

    #[test]
    fn the_compute_database_sits_next_to_the_read_models() {
        assert_eq!(
            sibling_url("postgres://postgres@127.0.0.1:5432/gps_read", "gps_compute"),
            "postgres://postgres@127.0.0.1:5432/gps_compute"
        );
        assert_eq!(
            sibling_url("postgres://u@h/gps_read?sslmode=require", "gps_compute"),
            "postgres://u@h/gps_compute?sslmode=require"
        );
    }
}
