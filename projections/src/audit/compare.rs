//! The second half of `gps audit verify`: are the read models what the log
//! says? Each projection is replayed from sequence 1 into a shadow schema
//! `<schema>_verify` up to the live schema's checkpoint (read in the same
//! snapshot as the live checksums, so a runner applying events meanwhile does
//! not cause false differences), then both are compared table by table: row
//! count and an md5 over every row's text, sorted. Bookkeeping that
//! legitimately differs (the migration log's timestamps, the checkpoint row,
//! when a dead letter was recorded) is left out. The shadow is dropped afterwards.

use gps_nats::EventLog;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use super::AuditError;
use crate::ALL;
use crate::rebuild::{ReplayLimit, replay_into};
use crate::runner::read_checkpoint;

/// Tables never compared: the migration log (timestamps) and the checkpoint
/// (a live checkpoint also moves past events of other projections).
const SKIPPED_TABLES: &[&str] = &["_sqlx_migrations", "checkpoint"];
/// Columns never compared: when a dead letter was recorded.
const SKIPPED_COLUMNS: &[(&str, &str)] = &[("dead_letters", "recorded_at")];

/// One table's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableComparison {
    /// The projection.
    pub projection: String,
    /// The table.
    pub table: String,
    /// Rows in the live table (`None`: the table is missing there).
    pub live_rows: Option<i64>,
    /// Rows in the rebuilt shadow (`None`: missing there).
    pub rebuilt_rows: Option<i64>,
    /// Content checksum of the live table.
    pub live_checksum: Option<String>,
    /// Content checksum of the shadow.
    pub rebuilt_checksum: Option<String>,
}

impl TableComparison {
    /// Whether live and rebuilt agree.
    pub fn equal(&self) -> bool {
        self.live_rows == self.rebuilt_rows && self.live_checksum == self.rebuilt_checksum
    }
}

/// The comparison of every read model with its rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadModelReport {
    /// Every table compared.
    pub tables: Vec<TableComparison>,
}

impl ReadModelReport {
    /// The tables that differ.
    pub fn differences(&self) -> Vec<&TableComparison> {
        self.tables.iter().filter(|table| !table.equal()).collect()
    }
}

/// Rebuilds every projection into a shadow schema and compares it with the live one.
pub async fn compare_read_models(pool: &PgPool, log: &EventLog) -> Result<ReadModelReport, AuditError> {
    let mut tables = Vec::new();
    for projection in &ALL {
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        // One snapshot for the live checkpoint and the live checksums.
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
        let live_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("\"{}\".checkpoint", projection.schema))
            .fetch_one(&mut *tx)
            .await?;
        let checkpoint =
            if live_exists { read_checkpoint(&mut tx, projection, projection.schema).await? } else { 0 };
        let live = checksums(&mut tx, projection.schema).await?;
        tx.commit().await?;

        let shadow = format!("{}_verify", projection.schema);
        let limit = ReplayLimit { brand: None, until_sequence: Some(checkpoint), stored_until: None };
        replay_into(pool, log, projection, &shadow, &limit, &mut |_| {}).await?;
        let rebuilt = checksums(&mut conn, &shadow).await?;
        // `shadow` is a static projection schema name with a suffix.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{shadow}\" CASCADE")))
            .execute(&mut conn)
            .await?;

        let mut names: Vec<&String> = live.keys().chain(rebuilt.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let (live_rows, live_checksum) = live.get(name).cloned().unzip();
            let (rebuilt_rows, rebuilt_checksum) = rebuilt.get(name).cloned().unzip();
            tables.push(TableComparison {
                projection: projection.name.to_owned(),
                table: name.clone(),
                live_rows,
                rebuilt_rows,
                live_checksum,
                rebuilt_checksum,
            });
        }
    }
    Ok(ReadModelReport { tables })
}

/// Row count and content checksum of every table of `schema`.
async fn checksums(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<std::collections::BTreeMap<String, (i64, String)>, AuditError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = std::collections::BTreeMap::new();
    for table in tables {
        if SKIPPED_TABLES.contains(&table.as_str()) {
            continue;
        }
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        )
        .bind(schema)
        .bind(&table)
        .fetch_all(&mut *conn)
        .await?;
        let kept: Vec<String> = columns
            .into_iter()
            .filter(|column| !SKIPPED_COLUMNS.contains(&(table.as_str(), column.as_str())))
            .map(|column| format!("\"{}\"", column.replace('"', "\"\"")))
            .collect();
        if kept.is_empty() {
            continue;
        }
        // Identifiers come from the catalog and are quoted.
        let sql = format!(
            "SELECT count(*), coalesce(md5(string_agg(row_text, E'\\n' ORDER BY row_text)), '') \
             FROM (SELECT ROW({})::text AS row_text FROM \"{}\".\"{}\") AS rows",
            kept.join(", "),
            schema.replace('"', "\"\""),
            table.replace('"', "\"\"")
        );
        let (count, checksum): (i64, String) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *conn).await?;
        out.insert(table, (count, checksum));
    }
    Ok(out)
}
