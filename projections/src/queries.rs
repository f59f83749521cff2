//! Queries for the gateway: brand-scoped get and list functions with cursor
//! pagination, and read-your-writes.

use std::time::Duration;

use sqlx::PgPool;

/// The read model has not reached the requested sequence within the timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the read model has reached sequence {reached:?} of {wanted} (projection {projection}); try again shortly"
)]
pub struct NotYetConsistent {
    /// The projection waited for (`all` for every projection).
    pub projection: String,
    /// The sequence asked for.
    pub wanted: u64,
    /// The sequence reached, when known.
    pub reached: Option<u64>,
}

/// Waits until `projection` (or every projection, for `None`) has applied
/// the stream up to `sequence`, polling its checkpoint, at most `timeout`.
pub async fn wait_for_sequence(
    pool: &PgPool,
    projection: Option<&str>,
    sequence: u64,
    timeout: Duration,
) -> Result<(), NotYetConsistent> {
    let schemas: Vec<&'static str> = match projection {
        None => crate::ALL.iter().map(|p| p.schema).collect(),
        Some(name) => match crate::by_name(name) {
            Some(p) => vec![p.schema],
            None => vec![],
        },
    };
    let label = projection.unwrap_or("all").to_owned();
    let not_yet = |reached| NotYetConsistent { projection: label.clone(), wanted: sequence, reached };
    if schemas.is_empty() {
        return Err(not_yet(None));
    }
    // Built from static schema names only.
    let sql = schemas
        .iter()
        .map(|schema| format!("(SELECT coalesce(max(last_sequence), 0) FROM \"{schema}\".checkpoint)"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = if schemas.len() == 1 { format!("SELECT {sql}") } else { format!("SELECT LEAST({sql})") };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let mut reached = None;
    loop {
        if let Ok(value) =
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())).fetch_one(pool).await
        {
            let value = u64::try_from(value).unwrap_or(0);
            reached = Some(value);
            if value >= sequence {
                return Ok(());
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(not_yet(reached));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
