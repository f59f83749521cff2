//! What a projection is: a name, the subjects it consumes, its own Postgres
//! schema with versioned migrations, the function that applies one event,
//! and optionally one that applies a run of events with multi-row statements
//! (`apply_many`; the runner bisects a failing run down to the faulty event).
//!
//! Each schema also holds the bookkeeping tables (`checkpoint`,
//! `dead_letters`), defined here for every projection alike; the checkpoint
//! row records the position, the identity of the log it was built from and
//! the subject filters it was built with.
//!
//! Migrations live in `projections/migrations/<name>/` and run with the
//! `search_path` set to the target schema (the live one or a rebuild's shadow),
//! so every schema has its own `_sqlx_migrations`. Applied migrations are never
//! edited; a change is a new file.

use futures::future::BoxFuture;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::event::Event;
use crate::models;

/// Applies one decoded event inside the batch's transaction. Errors are
/// Postgres errors; the runner decides whether they are the event's fault
/// (dead letter) or the database's (retry).
pub type ApplyFn = for<'a> fn(&'a mut PgConnection, &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>>;

/// Applies a run of decoded events, in order, with as few statements as the
/// model allows (multi-row inserts, one update for a run of changes to one
/// row). It must leave the tables exactly as applying each event in turn with
/// [`ApplyFn`] would; on an error the runner rolls the run back and bisects
/// it, so a faulty event still goes to dead letters alone.
pub type ApplyManyFn =
    for<'a> fn(&'a mut PgConnection, &'a [Event]) -> BoxFuture<'a, Result<(), sqlx::Error>>;

/// One read model.
pub struct Projection {
    /// Its name, used on the command line, for the consumer and the lock.
    pub name: &'static str,
    /// The Postgres schema holding its tables.
    pub schema: &'static str,
    /// The subject filters it consumes, e.g. `gps.evt.*.product.>`.
    pub filters: &'static [&'static str],
    /// Its versioned DDL.
    pub migrator: &'static Migrator,
    /// Applies one event.
    pub apply: ApplyFn,
    /// Applies a run of events with multi-row statements, for models where
    /// that pays; `None`: one [`ApplyFn`] call per event.
    pub apply_many: Option<ApplyManyFn>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .field("filters", &self.filters)
            .finish()
    }
}

impl Projection {
    /// The durable consumer's name.
    pub fn durable_name(&self) -> String {
        format!("gps-projection-{}", self.name)
    }

    /// The subject filters as owned strings.
    pub fn filter_subjects(&self) -> Vec<String> {
        self.filters.iter().map(|f| (*f).to_owned()).collect()
    }

    /// The key of the session advisory lock that makes one runner active.
    pub(crate) fn runner_lock_key(&self) -> String {
        format!("gps-projection-runner:{}", self.name)
    }

    /// The key of the lock between batches (shared) and a rebuild's swap (exclusive).
    pub(crate) fn swap_lock_key(&self) -> String {
        format!("gps-projection-swap:{}", self.name)
    }

    /// The key of the session advisory lock a rebuild holds from start to swap.
    pub(crate) fn rebuild_lock_key(&self) -> String {
        format!("gps-projection-rebuild:{}", self.name)
    }

    /// How this read model names itself in a binding error.
    pub(crate) fn store_name(&self) -> String {
        format!("read model {}", self.name)
    }
}

static BRANDS_MIGRATIONS: Migrator = sqlx::migrate!("migrations/brands");
static CATALOG_MIGRATIONS: Migrator = sqlx::migrate!("migrations/catalog");
static PRODUCTION_MIGRATIONS: Migrator = sqlx::migrate!("migrations/production");
static REVIEW_MIGRATIONS: Migrator = sqlx::migrate!("migrations/review");
static DELIVERY_MIGRATIONS: Migrator = sqlx::migrate!("migrations/delivery");
static ACTIVITY_MIGRATIONS: Migrator = sqlx::migrate!("migrations/activity");
static ACCOUNTS_MIGRATIONS: Migrator = sqlx::migrate!("migrations/accounts");

/// Every projection, in a stable order.
pub static ALL: [Projection; 7] = [
    Projection {
        name: "brands",
        schema: "brands",
        filters: &["gps.evt.*.brand.>"],
        migrator: &BRANDS_MIGRATIONS,
        apply: models::brands::apply,
        apply_many: None,
    },
    Projection {
        name: "catalog",
        schema: "catalog",
        filters: &["gps.evt.*.product.>", "gps.evt.*.subject.>", "gps.evt.*.style.>", "gps.evt.*.import.>"],
        migrator: &CATALOG_MIGRATIONS,
        apply: models::catalog::apply,
        apply_many: Some(models::catalog::apply_many),
    },
    Projection {
        name: "production",
        schema: "production",
        filters: &["gps.evt.*.shooting.>", "gps.evt.*.look.>", "gps.evt.*.generation.>"],
        migrator: &PRODUCTION_MIGRATIONS,
        apply: models::production::apply,
        apply_many: None,
    },
    Projection {
        name: "review",
        schema: "review",
        filters: &["gps.evt.*.prediction.>"],
        migrator: &REVIEW_MIGRATIONS,
        apply: models::review::apply,
        apply_many: None,
    },
    Projection {
        name: "delivery",
        schema: "delivery",
        filters: &["gps.evt.*.export.>"],
        migrator: &DELIVERY_MIGRATIONS,
        apply: models::delivery::apply,
        apply_many: None,
    },
    Projection {
        name: "activity",
        schema: "activity",
        filters: &["gps.evt.>"],
        migrator: &ACTIVITY_MIGRATIONS,
        apply: models::activity::apply,
        apply_many: Some(models::activity::apply_many),
    },
    // Persons are platform-level: their subjects carry `_platform` where a
    // brand id would be, which no brand id can be.
    Projection {
        name: "accounts",
        schema: "accounts",
        filters: &["gps.evt._platform.person.>"],
        migrator: &ACCOUNTS_MIGRATIONS,
        apply: models::accounts::apply,
        apply_many: None,
    },
];

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<&'static Projection> {
    ALL.iter().find(|p| p.name == name)
}

/// Bookkeeping tables every projection schema has. Kept in code rather than in
/// each projection's migrations so they are the same everywhere; changing
/// them needs the same care as a migration (add, never edit).
const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS checkpoint (
    projection    text PRIMARY KEY,
    last_sequence bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS dead_letters (
    stream_sequence bigint PRIMARY KEY,
    projection      text NOT NULL,
    subject         text NOT NULL,
    event_type      text,
    reason          text NOT NULL,
    body            bytea NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
";

/// Added to the bookkeeping later; statements are only ever appended here.
/// The checkpoint remembers which log it was built from (`log_identity`, a
/// `gps_nats::identity::LogIdentity` token: a store of another log is
/// refused) and the subject filters it was built with (`filters`: a changed
/// filter means history was skipped, so the runner rebuilds). NULL in both:
/// a store from before they were recorded, bound by its next batch.
/// (Checked before altering: `ADD COLUMN IF NOT EXISTS` would still take an
/// exclusive lock on the checkpoint at every session start.)
const BOOKKEEPING_ADDED: &str = "
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'checkpoint' AND column_name = 'log_identity') THEN
        ALTER TABLE checkpoint ADD COLUMN log_identity text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                   AND table_name = 'checkpoint' AND column_name = 'filters') THEN
        ALTER TABLE checkpoint ADD COLUMN filters text[];
    END IF;
END $$;
";

/// Prepares every projection's schema (idempotent), so queries can run before
/// the runners have started. Uses its own connection, closed afterwards,
/// because preparing changes the connection's `search_path`.
pub async fn prepare_all(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?.detach();
    for projection in &ALL {
        prepare_schema(&mut connection, projection, projection.schema).await?;
    }
    Ok(())
}

/// Creates `schema` if needed, points the connection's `search_path` at it,
/// runs the projection's migrations there and creates the bookkeeping tables
/// with the checkpoint row. The connection keeps that `search_path`.
pub(crate) async fn prepare_schema(
    connection: &mut PgConnection,
    projection: &Projection,
    schema: &str,
) -> Result<(), sqlx::Error> {
    if !crate::db::is_safe_identifier(schema) {
        return Err(sqlx::Error::Protocol(format!("schema name {schema:?} is not a plain identifier")));
    }
    // `schema` was checked above, so splicing it is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\";"
    )))
    .execute(&mut *connection)
    .await?;
    projection.migrator.run_direct(None, &mut *connection, false).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(error) => error,
        other => sqlx::Error::Protocol(format!("migrations of {}: {other}", projection.name)),
    })?;
    let mut tx = connection.begin().await?;
    sqlx::raw_sql(BOOKKEEPING).execute(&mut *tx).await?;
    sqlx::raw_sql(BOOKKEEPING_ADDED).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO checkpoint (projection, last_sequence) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(projection.name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
