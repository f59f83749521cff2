//! The read-model database: connecting, and creating it when it is missing
//! (through the `postgres` maintenance database of the same server).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Where the business read models live unless configured otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/gps_read";

/// Why the read-model database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is not a Postgres URL with a database name.
    #[error("database URL is not valid ({0}); write it as postgres://user@host:5432/gps_read")]
    InvalidUrl(String),
    /// The server refused or failed.
    #[error("Postgres at {url}: {source}")]
    Postgres {
        /// The URL without password.
        url: String,
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
}

/// Connects to the read-model database at `url`, creating the database first
/// when it does not exist.
pub async fn connect(url: &str) -> Result<PgPool, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl(e.to_string()))?;
    let shown = redacted(&options);
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let postgres = |source| DbError::Postgres { url: shown.clone(), source };
    if !is_safe_identifier(&database) {
        return Err(DbError::InvalidUrl(format!(
            "database name {database:?} must be letters, digits and '_'"
        )));
    }
    {
        let mut admin = options.clone().database("postgres").connect().await.map_err(postgres)?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .map_err(postgres)?;
        if !exists {
            // The name was checked above (letters, digits, '_'), so it is safe to splice.
            let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
                .execute(&mut admin)
                .await;
            match created {
                Ok(_) => tracing::info!(%database, "read-model database created"),
                // Another process created it in between: fine.
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
                Err(error) => return Err(postgres(error)),
            }
        }
    }
    // No ping before each use: it doubled every query's round trips. A
    // connection that broke while idle fails its next query instead (an
    // unavailable answer, retried by the caller) and is dropped.
    PgPoolOptions::new()
        .max_connections(16)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(postgres)
}

/// Whether `name` can be spliced into SQL as an identifier.
pub(crate) fn is_safe_identifier(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn redacted(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}
