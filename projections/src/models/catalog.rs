//! The `catalog` projection: products with their images, subjects with their
//! base images, styles with their current version and definition, and
//! catalog imports with their progress and per-row errors.

use futures::future::BoxFuture;
use gps_domain::import::ImportEvent;
use gps_domain::product::ProductEvent;
use gps_domain::style::StyleEvent;
use gps_domain::subject::SubjectEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event};
use crate::models::{tag, touch};

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match &e.event {
            AnyEvent::Product(event) => product(conn, e, event).await,
            AnyEvent::Subject(event) => subject(conn, e, event).await,
            AnyEvent::Style(event) => style(conn, e, event).await,
            AnyEvent::Import(event) => import(conn, e, event).await,
            _ => Ok(()),
        }
    })
}

/// Applies a run of events; a run of `product.details_updated` of one
/// product (a rebuild meets long ones) becomes one `UPDATE` with the result
/// of applying them in turn: each field takes the last value the run sets,
/// the row's time, version and sequence the last event's.
pub(crate) fn apply_many<'a>(
    conn: &'a mut PgConnection,
    events: &'a [Event],
) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    fn details(e: &Event) -> Option<&gps_domain::product::ProductDetailsUpdated> {
        match &e.event {
            AnyEvent::Product(ProductEvent::DetailsUpdated(p)) => Some(p),
            _ => None,
        }
    }
    Box::pin(async move {
        let mut start = 0;
        while start < events.len() {
            let first = &events[start];
            let mut end = start + 1;
            if details(first).is_some() {
                while end < events.len()
                    && details(&events[end]).is_some()
                    && events[end].brand() == first.brand()
                    && events[end].id() == first.id()
                {
                    end += 1;
                }
            }
            if end - start == 1 {
                apply(conn, first).await?;
            } else {
                let run = &events[start..end];
                let name = run.iter().rev().find_map(|e| details(e)?.name.as_ref());
                let category = run.iter().rev().find_map(|e| details(e)?.category.as_ref());
                let attributes = run.iter().rev().find_map(|e| details(e)?.attributes.as_ref());
                let last = &run[run.len() - 1];
                sqlx::query(
                    "UPDATE products SET name = COALESCE($6, name), category = COALESCE($7, category),
                            attributes = COALESCE($8, attributes), updated_at = $3, version = $4, last_sequence = $5
                     WHERE brand = $1 AND product_id = $2",
                )
                .bind(last.brand())
                .bind(last.id())
                .bind(last.at)
                .bind(last.version)
                .bind(last.sequence)
                .bind(name.map(|v| v.as_str()))
                .bind(category.map(|v| v.as_str()))
                .bind(attributes.map(Json))
                .execute(&mut *conn)
                .await?;
            }
            start = end;
        }
        Ok(())
    })
}

/// Each product event is one statement on `products` (two for images),
/// which also bumps the row's `updated_at`, `version` and `last_sequence`:
/// a rebuild replays long runs of events of one product, and every statement
/// on the same row inside one transaction costs a round trip and a row version.
async fn product(conn: &mut PgConnection, e: &Event, event: &ProductEvent) -> Result<(), sqlx::Error> {
    match event {
        ProductEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO products (brand, product_id, sku, name, category, attributes, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $8)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.sku.as_str())
            .bind(p.name.as_str())
            .bind(p.category.as_str())
            .bind(Json(&p.attributes))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        ProductEvent::DetailsUpdated(p) => {
            sqlx::query(
                "UPDATE products SET name = COALESCE($6, name), category = COALESCE($7, category),
                        attributes = COALESCE($8, attributes), updated_at = $3, version = $4, last_sequence = $5
                 WHERE brand = $1 AND product_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .bind(p.name.as_ref().map(|v| v.as_str()))
            .bind(p.category.as_ref().map(|v| v.as_str()))
            .bind(p.attributes.as_ref().map(Json))
            .execute(&mut *conn)
            .await?;
        }
        ProductEvent::ImageAdded(p) => {
            sqlx::query(
                "INSERT INTO product_images (brand, product_id, image_id, view, content_hash, asset, added_at, created_sequence, version, last_sequence, analysis)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $10)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.image_id.as_str())
            .bind(tag(&p.view))
            .bind(p.asset.hash.as_str())
            .bind(Json(&p.asset))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .bind(p.analysis.as_ref().map(Json))
            .execute(&mut *conn)
            .await?;
            touch_product(conn, e, 1).await?;
        }
        ProductEvent::ImageRemoved(p) => {
            let removed = sqlx::query(
                "DELETE FROM product_images WHERE brand = $1 AND product_id = $2 AND image_id = $3",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.image_id.as_str())
            .execute(&mut *conn)
            .await?;
            touch_product(conn, e, if removed.rows_affected() > 0 { -1 } else { 0 }).await?;
        }
        ProductEvent::Archived(p) => {
            sqlx::query(
                "UPDATE products SET archived = true, archived_reason = $6, updated_at = $3, version = $4, last_sequence = $5
                 WHERE brand = $1 AND product_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .bind(p.reason.as_ref().map(|v| v.as_str()))
            .execute(&mut *conn)
            .await?;
        }
        ProductEvent::Restored(_) => {
            touch!(
                conn,
                e,
                "UPDATE products SET archived = false, archived_reason = NULL, updated_at = $3, version = $4, last_sequence = $5
                 WHERE brand = $1 AND product_id = $2"
            )?;
        }
    }
    Ok(())
}

async fn count_images(conn: &mut PgConnection, e: &Event, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).bind(e.brand()).bind(e.id()).execute(&mut *conn).await.map(drop)
}

/// Moves the product's image count by `images` and bumps its version.
async fn touch_product(conn: &mut PgConnection, e: &Event, images: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET image_count = image_count + $6, updated_at = $3, version = $4, last_sequence = $5
         WHERE brand = $1 AND product_id = $2",
    )
    .bind(e.brand())
    .bind(e.id())
    .bind(e.at)
    .bind(e.version)
    .bind(e.sequence)
    .bind(images)
    .execute(&mut *conn)
    .await
    .map(drop)
}

async fn subject(conn: &mut PgConnection, e: &Event, event: &SubjectEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, SubjectEvent::Created(_)) {
        touch!(
            conn,
            e,
            "UPDATE subjects SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND subject_id = $2"
        )?;
    }
    match event {
        SubjectEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO subjects (brand, subject_id, name, description, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $6)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.name.as_str())
            .bind(p.description.as_str())
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        SubjectEvent::BaseImageAdded(p) => {
            sqlx::query(
                "INSERT INTO subject_images (brand, subject_id, image_id, pose, angle, content_hash, asset, added_at, created_sequence, version, last_sequence, analysis)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9, $11)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.image_id.as_str())
            .bind(tag(&p.pose))
            .bind(tag(&p.angle))
            .bind(p.asset.hash.as_str())
            .bind(Json(&p.asset))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .bind(p.analysis.as_ref().map(Json))
            .execute(&mut *conn)
            .await?;
            count_images(
                conn,
                e,
                "UPDATE subjects SET image_count = image_count + 1 WHERE brand = $1 AND subject_id = $2",
            )
            .await?;
        }
        SubjectEvent::BaseImageRemoved(p) => {
            let removed = sqlx::query(
                "DELETE FROM subject_images WHERE brand = $1 AND subject_id = $2 AND image_id = $3",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.image_id.as_str())
            .execute(&mut *conn)
            .await?;
            if removed.rows_affected() > 0 {
                count_images(
                    conn,
                    e,
                    "UPDATE subjects SET image_count = image_count - 1 WHERE brand = $1 AND subject_id = $2",
                )
                .await?;
            }
        }
        SubjectEvent::DescriptionUpdated(p) => {
            sqlx::query("UPDATE subjects SET description = $3 WHERE brand = $1 AND subject_id = $2")
                .bind(e.brand())
                .bind(e.id())
                .bind(p.description.as_str())
                .execute(&mut *conn)
                .await?;
        }
        SubjectEvent::Retired(p) => {
            sqlx::query("UPDATE subjects SET retired = true, retired_reason = $3 WHERE brand = $1 AND subject_id = $2")
                .bind(e.brand())
                .bind(e.id())
                .bind(p.reason.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn style(conn: &mut PgConnection, e: &Event, event: &StyleEvent) -> Result<(), sqlx::Error> {
    match event {
        StyleEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO styles (brand, style_id, name, current_version, definition, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $7)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.name.as_str())
            .bind(i64::from(p.version))
            .bind(Json(&p.definition))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        StyleEvent::Revised(p) => {
            sqlx::query(
                "UPDATE styles SET current_version = $3, definition = $4, updated_at = $5, version = $6, last_sequence = $7
                 WHERE brand = $1 AND style_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(i64::from(p.version))
            .bind(Json(&p.definition))
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        StyleEvent::Archived(p) => {
            sqlx::query(
                "UPDATE styles SET archived = true, archived_reason = $3, updated_at = $4, version = $5, last_sequence = $6
                 WHERE brand = $1 AND style_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.reason.as_ref().map(|v| v.as_str()))
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Imports: the row carries the running totals (so a progress read is one
/// row), the errors their own table (the downloadable report).
async fn import(conn: &mut PgConnection, e: &Event, event: &ImportEvent) -> Result<(), sqlx::Error> {
    match event {
        ImportEvent::Started(p) => {
            sqlx::query(
                "INSERT INTO imports (brand, import_id, format, file_name, catalog, images_archive, status, total_rows,
                                      started_by, started_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $9, $10, $11, $10)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(tag(&p.format))
            .bind(p.file_name.as_ref().map(|n| n.as_str()))
            .bind(Json(&p.catalog))
            .bind(p.images_archive.as_ref().map(Json))
            .bind(i32::try_from(p.total_rows).unwrap_or(i32::MAX))
            .bind(Json(&e.envelope.actor))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        ImportEvent::Progressed(p) => {
            let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
            sqlx::query(
                "UPDATE imports SET through_row = $6, created = created + $7, updated = updated + $8,
                        unchanged = unchanged + $9, failed = failed + $10, updated_at = $3, version = $4, last_sequence = $5
                 WHERE brand = $1 AND import_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .bind(count(p.through_row))
            .bind(count(p.created))
            .bind(count(p.updated))
            .bind(count(p.unchanged))
            .bind(count(p.failed))
            .execute(&mut *conn)
            .await?;
            for (ordinal, error) in p.errors.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO import_errors (brand, import_id, event_sequence, ordinal, row_number, sku, column_name, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(e.brand())
                .bind(e.id())
                .bind(e.sequence)
                .bind(i32::try_from(ordinal).unwrap_or(i32::MAX))
                .bind(count(error.row))
                .bind(error.sku.as_deref())
                .bind(&error.column)
                .bind(&error.message)
                .execute(&mut *conn)
                .await?;
            }
        }
        ImportEvent::Completed(_) => {
            touch!(
                conn,
                e,
                "UPDATE imports SET status = 'completed', finished_at = $3, updated_at = $3, version = $4, last_sequence = $5
                 WHERE brand = $1 AND import_id = $2"
            )?;
        }
        ImportEvent::Failed(p) => {
            sqlx::query(
                "UPDATE imports SET status = 'failed', failure_reason = $6, finished_at = $3, updated_at = $3, version = $4,
                        last_sequence = $5
                 WHERE brand = $1 AND import_id = $2",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .bind(p.reason.as_str())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
