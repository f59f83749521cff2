//! The `review` projection: predictions with their review state (and who
//! reviewed, when, why), comments, and revision requests.

use futures::future::BoxFuture;
use gps_domain::prediction::PredictionEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event};
use crate::models::touch;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match &e.event {
            AnyEvent::Prediction(event) => prediction(conn, e, event).await,
            _ => Ok(()),
        }
    })
}

async fn prediction(conn: &mut PgConnection, e: &Event, event: &PredictionEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, PredictionEvent::Produced(_)) {
        touch!(
            conn,
            e,
            "UPDATE predictions SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND prediction_id = $2"
        )?;
    }
    let review = |sql: &'static str| {
        sqlx::query(sql).bind(e.brand()).bind(e.id()).bind(Json(&e.envelope.actor)).bind(e.at)
    };
    match event {
        PredictionEvent::Produced(p) => {
            sqlx::query(
                "INSERT INTO predictions (brand, prediction_id, generation_id, look_id, shot_type, variant_index, content_hash,
                                          asset, provenance, quality, quality_passed, review_state, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $13, $14, 'pending', $10, $10, $11, $12, $11)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.generation_id.as_str())
            .bind(p.look_id.as_str())
            .bind(p.shot_type.as_str())
            .bind(i64::from(p.variant_index))
            .bind(p.asset.hash.as_str())
            .bind(Json(&p.asset))
            .bind(Json(&p.provenance))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .bind(p.quality.as_ref().map(Json))
            .bind(p.quality.as_ref().map(|q| q.passed))
            .execute(&mut *conn)
            .await?;
        }
        PredictionEvent::Approved(_) => {
            review("UPDATE predictions SET review_state = 'approved', review_reason = NULL, reviewed_by = $3, reviewed_at = $4
                    WHERE brand = $1 AND prediction_id = $2")
            .execute(&mut *conn)
            .await?;
        }
        PredictionEvent::Rejected(p) => {
            review("UPDATE predictions SET review_state = 'rejected', review_reason = $5, reviewed_by = $3, reviewed_at = $4
                    WHERE brand = $1 AND prediction_id = $2")
            .bind(p.reason.as_str())
            .execute(&mut *conn)
            .await?;
        }
        PredictionEvent::RevisionRequested(p) => {
            review("UPDATE predictions SET review_state = 'revision_requested', review_reason = $5, reviewed_by = $3, reviewed_at = $4
                    WHERE brand = $1 AND prediction_id = $2")
            .bind(p.comment.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO revision_requests (brand, prediction_id, comment, regions, actor, requested_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.comment.as_str())
            .bind(Json(&p.regions))
            .bind(Json(&e.envelope.actor))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        PredictionEvent::Commented(p) => {
            sqlx::query(
                "INSERT INTO prediction_comments (brand, prediction_id, comment_id, text, actor, created_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.comment_id.as_str())
            .bind(p.text.as_str())
            .bind(Json(&e.envelope.actor))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE predictions SET comment_count = comment_count + 1 WHERE brand = $1 AND prediction_id = $2")
                .bind(e.brand())
                .bind(e.id())
                .execute(&mut *conn)
                .await?;
        }
        PredictionEvent::ReviewReset(p) => {
            sqlx::query(
                "UPDATE predictions SET review_state = 'pending', review_reason = $3, reviewed_by = NULL, reviewed_at = NULL
                 WHERE brand = $1 AND prediction_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.reason.as_ref().map(|v| v.as_str()))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
