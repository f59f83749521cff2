//! The `delivery` projection: exports with status and attempts, their
//! renditions (with the products they show) and where each was delivered,
//! and every attempt to reach the destination.

use futures::future::BoxFuture;
use gps_domain::export::ExportEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event};
use crate::models::touch;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match &e.event {
            AnyEvent::Export(event) => export(conn, e, event).await,
            _ => Ok(()),
        }
    })
}

async fn export(conn: &mut PgConnection, e: &Event, event: &ExportEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, ExportEvent::Requested(_)) {
        touch!(
            conn,
            e,
            "UPDATE exports SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND export_id = $2"
        )?;
    }
    let set = |sql: &'static str| sqlx::query(sql).bind(e.brand()).bind(e.id());
    match event {
        ExportEvent::Requested(p) => {
            sqlx::query(
                "INSERT INTO exports (brand, export_id, channel, prediction_ids, preset, destination, status,
                                      created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, 'in_progress', $7, $7, $8, $9, $8)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.channel.as_str())
            .bind(Json(&p.prediction_ids))
            .bind(Json(&p.preset))
            .bind(Json(&p.destination))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::RenditionProduced(p) => {
            sqlx::query(
                "INSERT INTO export_renditions (brand, export_id, rendition_id, prediction_id, file_name, checksum, asset,
                                                produced_at, created_sequence, version, last_sequence, products)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $11)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.rendition_id.as_str())
            .bind(p.prediction_id.as_str())
            .bind(p.file_name.as_str())
            .bind(p.checksum.as_str())
            .bind(Json(&p.asset))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .bind(Json(&p.products))
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::DeliveryAttempted(p) => {
            sqlx::query(
                "INSERT INTO export_delivery_attempts (brand, export_id, number, succeeded, detail, retry_in_seconds,
                                                       attempted_at, created_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(i64::from(p.number))
            .bind(p.succeeded)
            .bind(p.detail.as_str())
            .bind(p.retry_in_seconds.map(|s| i64::try_from(s).unwrap_or(i64::MAX)))
            .bind(e.at)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::RenditionDelivered(p) => {
            sqlx::query(
                "UPDATE export_renditions SET delivered = true, location = $4, delivered_at = $5, version = $6, last_sequence = $7
                 WHERE brand = $1 AND export_id = $2 AND rendition_id = $3",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.rendition_id.as_str())
            .bind(Json(&p.location))
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::Failed(p) => {
            set("UPDATE exports SET status = 'failed', failure_reason = $3, retryable = $4, attempt = $5
                 WHERE brand = $1 AND export_id = $2")
            .bind(p.reason.as_str())
            .bind(p.retryable)
            .bind(i64::from(p.attempt))
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::Completed(p) => {
            set(
                "UPDATE exports SET status = 'completed', delivered = $3 WHERE brand = $1 AND export_id = $2",
            )
            .bind(i64::from(p.delivered))
            .execute(&mut *conn)
            .await?;
        }
        ExportEvent::Retried(p) => {
            set("UPDATE exports SET status = 'in_progress', attempt = $3, failure_reason = NULL, retryable = NULL
                 WHERE brand = $1 AND export_id = $2")
            .bind(i64::from(p.attempt))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
