//! The compute task state in its own database (`gps_compute` by default):
//! runs with their lease, workflow step states and results (including a
//! remote provider's job handle, and the intent recorded before a call that is
//! not idempotent), dead letters, and the identity of the event log the
//! database belongs to (`log_binding`). Owned by this crate alone; no
//! business read model lives here and none is read.
//!
//! Leases: [`ComputeStore::acquire_lease`] gives one copy of a generation's
//! attempt the right to call providers until the lease expires (the
//! database's clock), with a fencing token that grows on every takeover;
//! [`ComputeStore::renew_lease`] checks and extends it before every paid call.

use std::str::FromStr;

use gps_domain::ids::{BrandId, GenerationId};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions};
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

/// Why a role refuses to start on this compute database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BindingRefused(pub String);

/// A query about one node: its key is bound as `$1`..`$5` (brand,
/// generation, attempt, step, variant), further parameters follow.
fn node_query<'q>(
    sql: &'static str,
    key: &NodeKey<'_>,
) -> sqlx::query::Query<'q, sqlx::Postgres, PgArguments> {
    sqlx::query(sql)
        .bind(key.brand.as_str())
        .bind(key.generation.as_str())
        .bind(attempt(key.attempt))
        .bind(key.step)
        .bind(key.variant)
}

/// The state of one node as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredStep {
    /// A call that is not idempotent was (maybe) sent to `provider`, and its
    /// outcome was never recorded.
    Intent {
        /// The provider.
        provider: String,
    },
    /// The outcome of a call that is not idempotent is unknown; not called again.
    Unknown {
        /// The provider.
        provider: String,
        /// Why the outcome is unknown.
        reason: String,
    },
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

/// A lease held on one attempt of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The brand.
    pub brand: BrandId,
    /// The generation.
    pub generation: GenerationId,
    /// The attempt.
    pub attempt: u32,
    /// Who holds it (agent name and a per-delivery token).
    pub owner: String,
    /// The fencing token: grows on every takeover.
    pub fencing: i64,
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Taken (new, expired or released before).
    Acquired(Lease),
    /// Another copy holds it for `remaining` more.
    Held {
        /// Its owner.
        owner: String,
        /// Until it expires unless renewed.
        remaining: std::time::Duration,
    },
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
        // No ping before each use: it doubled every query's round trips. A
        // connection that broke while idle fails its next query instead,
        // which every caller already treats as retryable, and is dropped.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(ComputeStore { pool })
    }

    /// A store over `pool`, already connected and migrated by [`ComputeStore::connect`].
    pub fn from_pool(pool: PgPool) -> Self {
        ComputeStore { pool }
    }

    /// The pool (for health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes the lease on this attempt for `owner` for `ttl`, unless another
    /// copy holds an unexpired one; a takeover increments the fencing token.
    /// The token is 1 only for the first copy ever to take the attempt (runs
    /// are never deleted; a row older than the token counts as taken once),
    /// so that copy knows it has no stored nodes to resume.
    pub async fn acquire_lease(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO runs (brand_id, generation_id, attempt, agent, status, lease_owner, lease_until, fencing)
             VALUES ($1, $2, $3, $4, 'running', $4, now() + $5 * interval '1 millisecond', 1)
             ON CONFLICT (brand_id, generation_id, attempt) DO UPDATE
               SET agent = EXCLUDED.agent, lease_owner = EXCLUDED.lease_owner,
                   lease_until = EXCLUDED.lease_until, fencing = GREATEST(runs.fencing, 1) + 1,
                   status = 'running', updated_at = now()
               WHERE runs.lease_until IS NULL OR runs.lease_until < now()
             RETURNING fencing",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .bind(owner)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(fencing) = taken {
            return Ok(LeaseOutcome::Acquired(Lease {
                brand: brand.clone(),
                generation: generation.clone(),
                attempt: attempt_number,
                owner: owner.to_owned(),
                fencing,
            }));
        }
        let row = sqlx::query(
            "SELECT lease_owner, GREATEST(EXTRACT(EPOCH FROM (lease_until - now())) * 1000, 0)::bigint AS remaining_ms
             FROM runs WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .fetch_optional(&self.pool)
        .await?;
        let (owner, remaining_ms) = match row {
            Some(row) => (
                row.try_get::<Option<String>, _>("lease_owner")?.unwrap_or_default(),
                row.try_get::<Option<i64>, _>("remaining_ms")?.unwrap_or(0),
            ),
            None => (String::new(), 0),
        };
        Ok(LeaseOutcome::Held {
            owner,
            remaining: std::time::Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0)),
        })
    }

    /// Checks that `lease` is still this copy's (no takeover since) and
    /// extends it by `ttl`. `false`: it was taken over; stop without calling.
    pub async fn renew_lease(&self, lease: &Lease, ttl: std::time::Duration) -> Result<bool, StoreError> {
        self.renew(lease, ttl, None).await
    }

    /// [`renew_lease`](Self::renew_lease), and when it holds, records in the
    /// same statement the intent to call `provider` for `node` (kept while
    /// the call's outcome is unknown; a redelivery finding it does not call
    /// again): the check before a paid call that is not idempotent, in one
    /// round trip. `false`: the lease was taken over and nothing was
    /// recorded; stop without calling.
    pub async fn renew_lease_and_record_intent(
        &self,
        lease: &Lease,
        ttl: std::time::Duration,
        node: &NodeKey<'_>,
        provider: &str,
    ) -> Result<bool, StoreError> {
        self.renew(lease, ttl, Some((node, provider))).await
    }

    async fn renew(
        &self,
        lease: &Lease,
        ttl: std::time::Duration,
        intent: Option<(&NodeKey<'_>, &str)>,
    ) -> Result<bool, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let renewed: bool = sqlx::query_scalar(
            "WITH renewed AS (
               UPDATE runs SET lease_until = now() + $6 * interval '1 millisecond', updated_at = now()
               WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND lease_owner = $4 AND fencing = $5
               RETURNING 1
             ), intent AS (
               INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model)
               SELECT $1, $2, $3, $7, $8, 'intent', $9, ''
               WHERE $9::text IS NOT NULL AND EXISTS (SELECT 1 FROM renewed)
               ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO UPDATE
                 SET provider = EXCLUDED.provider, submitted_at = now()
                 WHERE steps.status = 'intent'
             )
             SELECT EXISTS (SELECT 1 FROM renewed)",
        )
        .bind(lease.brand.as_str())
        .bind(lease.generation.as_str())
        .bind(attempt(lease.attempt))
        .bind(&lease.owner)
        .bind(lease.fencing)
        .bind(ttl_ms)
        .bind(intent.map(|(node, _)| node.step))
        .bind(intent.map(|(node, _)| node.variant))
        .bind(intent.map(|(_, provider)| provider))
        .fetch_one(&self.pool)
        .await?;
        Ok(renewed)
    }

    /// Gives the lease up (the copy stopped working on the attempt), so a
    /// redelivery can take it at once.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET lease_until = NULL, updated_at = now()
             WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND lease_owner = $4 AND fencing = $5",
        )
        .bind(lease.brand.as_str())
        .bind(lease.generation.as_str())
        .bind(attempt(lease.attempt))
        .bind(&lease.owner)
        .bind(lease.fencing)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how the attempt ended and gives the lease up; a copy whose
    /// lease was taken over records nothing.
    pub async fn end_run(&self, lease: &Lease, status: &str, reason: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = $6, reason = $7, lease_until = NULL, updated_at = now()
             WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND lease_owner = $4 AND fencing = $5",
        )
        .bind(lease.brand.as_str())
        .bind(lease.generation.as_str())
        .bind(attempt(lease.attempt))
        .bind(&lease.owner)
        .bind(lease.fencing)
        .bind(status)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how an attempt ended when no copy holds it (a generation given
    /// up after its last delivery).
    pub async fn end_unleased_run(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        status: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE runs SET status = $4, reason = $5, lease_until = NULL, updated_at = now()
             WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND status = 'running'",
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
            "SELECT step, variant, status, provider, model, remote_job, result, cost_micros, duration_ms, tries, reason
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
                let step = if status == "intent" {
                    StoredStep::Intent { provider }
                } else if status == "unknown" {
                    let reason: Option<String> = row.try_get("reason")?;
                    StoredStep::Unknown { provider, reason: reason.unwrap_or_default() }
                } else if status == "submitted" {
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
        node_query(
            "INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model, remote_job, tries)
             VALUES ($1, $2, $3, $4, $5, 'submitted', $6, $7, $8, $9)
             ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO UPDATE
               SET status = 'submitted', provider = EXCLUDED.provider, model = EXCLUDED.model,
                   remote_job = EXCLUDED.remote_job, tries = EXCLUDED.tries
               WHERE steps.status = 'intent'",
        key,
        )
        .bind(provider)
        .bind(model)
        .bind(&job.0)
        .bind(attempt(tries))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records finished nodes of one generation attempt in one statement; a
    /// node finished before keeps its first result.
    pub async fn record_completed(
        &self,
        brand: &BrandId,
        generation: &GenerationId,
        attempt_number: u32,
        nodes: &[(&str, i32, &CompletedStep)],
    ) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let steps: Vec<&str> = nodes.iter().map(|(step, _, _)| *step).collect();
        let variants: Vec<i32> = nodes.iter().map(|(_, variant, _)| *variant).collect();
        let providers: Vec<&str> = nodes.iter().map(|(_, _, done)| done.provider.as_str()).collect();
        let models: Vec<&str> = nodes.iter().map(|(_, _, done)| done.model.as_str()).collect();
        let results: Vec<serde_json::Value> = nodes.iter().map(|(_, _, done)| done.result.clone()).collect();
        let costs: Vec<i64> =
            nodes.iter().map(|(_, _, done)| i64::try_from(done.cost_micros).unwrap_or(i64::MAX)).collect();
        let durations: Vec<i64> =
            nodes.iter().map(|(_, _, done)| i64::try_from(done.duration_ms).unwrap_or(i64::MAX)).collect();
        let tries: Vec<i32> = nodes.iter().map(|(_, _, done)| attempt(done.tries)).collect();
        sqlx::query(
            "INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model, result,
                                cost_micros, duration_ms, tries, completed_at)
             SELECT $1, $2, $3, n.step, n.variant, 'completed', n.provider, n.model, n.result,
                    n.cost_micros, n.duration_ms, n.tries, now()
             FROM UNNEST($4::text[], $5::int[], $6::text[], $7::text[], $8::jsonb[], $9::bigint[], $10::bigint[], $11::int[])
                  AS n(step, variant, provider, model, result, cost_micros, duration_ms, tries)
             ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO UPDATE
               SET status = 'completed', result = EXCLUDED.result, cost_micros = EXCLUDED.cost_micros,
                   duration_ms = EXCLUDED.duration_ms, tries = EXCLUDED.tries, completed_at = now(),
                   provider = EXCLUDED.provider, model = EXCLUDED.model
               WHERE steps.status IN ('submitted', 'intent')",
        )
        .bind(brand.as_str())
        .bind(generation.as_str())
        .bind(attempt(attempt_number))
        .bind(&steps)
        .bind(&variants)
        .bind(&providers)
        .bind(&models)
        .bind(&results)
        .bind(&costs)
        .bind(&durations)
        .bind(&tries)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an intent whose call is known not to have been done (refused,
    /// answered with an error), so a later delivery may call again.
    pub async fn forget_intent(&self, key: &NodeKey<'_>) -> Result<(), StoreError> {
        self.forget_step_in(key, "intent").await
    }

    /// Deletes a node's row when it is in `status`.
    async fn forget_step_in(&self, key: &NodeKey<'_>, status: &'static str) -> Result<(), StoreError> {
        node_query(
            "DELETE FROM steps WHERE brand_id = $1 AND generation_id = $2 AND attempt = $3 AND step = $4
               AND variant = $5 AND status = $6",
            key,
        )
        .bind(status)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a node's call as of unknown outcome, with the reason.
    pub async fn record_unknown(
        &self,
        key: &NodeKey<'_>,
        provider: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        node_query(
            "INSERT INTO steps (brand_id, generation_id, attempt, step, variant, status, provider, model, reason)
             VALUES ($1, $2, $3, $4, $5, 'unknown', $6, '', $7)
             ON CONFLICT (brand_id, generation_id, attempt, step, variant) DO UPDATE
               SET status = 'unknown', reason = EXCLUDED.reason
               WHERE steps.status IN ('intent', 'submitted')",
        key,
        )
        .bind(provider)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the steps of runs still running hold (results and remote jobs, as
    /// JSON text), with their brands: outputs an unfinished generation may
    /// still read back that no event names yet. The object sweep keeps them.
    pub async fn running_step_records(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.brand_id, concat_ws(' ', s.result::text, s.remote_job::text)
               FROM steps s JOIN runs r USING (brand_id, generation_id, attempt)
              WHERE r.status = 'running'",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The event log this database belongs to, as recorded (its identity token).
    pub async fn log_binding(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT log_token FROM log_binding").fetch_optional(&self.pool).await?)
    }

    /// Checks that this database belongs to `log` (recording it on first use);
    /// refuses another log with a message naming both identities.
    pub async fn bind_to_log(
        &self,
        log: &gps_nats::identity::LogState,
        store: &str,
    ) -> Result<(), BindingRefused> {
        let recorded = self.log_binding().await.map_err(|e| BindingRefused(e.to_string()))?;
        match gps_nats::identity::check_binding(store, recorded.as_deref(), 0, log) {
            Ok(gps_nats::identity::Binding::Bound) => Ok(()),
            Ok(gps_nats::identity::Binding::Record) => {
                sqlx::query(
                    "INSERT INTO log_binding (log_token) VALUES ($1) ON CONFLICT (singleton) DO NOTHING",
                )
                .bind(log.identity.token())
                .execute(&self.pool)
                .await
                .map_err(|e| BindingRefused(e.to_string()))?;
                // Another process may have recorded another log in between.
                let recorded = self.log_binding().await.map_err(|e| BindingRefused(e.to_string()))?;
                gps_nats::identity::check_binding(store, recorded.as_deref(), 0, log)
                    .map(|_| ())
                    .map_err(|e| BindingRefused(e.to_string()))
            }
            Err(error) => Err(BindingRefused(error.to_string())),
        }
    }

    /// Forgets a submitted job that can no longer finish (expired, refused), so
    /// a later retry of the generation may submit anew.
    pub async fn forget_submitted(&self, key: &NodeKey<'_>) -> Result<(), StoreError> {
        self.forget_step_in(key, "submitted").await
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
