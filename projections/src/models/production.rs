//! The `production` projection: shootings with their looks, and generations
//! with status, attempt, progress (completed steps), cost and results.

use futures::future::BoxFuture;
use gps_domain::generation::GenerationEvent;
use gps_domain::look::LookEvent;
use gps_domain::shooting::ShootingEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event, to_i64};
use crate::models::touch;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match &e.event {
            AnyEvent::Shooting(event) => shooting(conn, e, event).await,
            AnyEvent::Look(event) => look(conn, e, event).await,
            AnyEvent::Generation(event) => generation(conn, e, event).await,
            _ => Ok(()),
        }
    })
}

async fn shooting(conn: &mut PgConnection, e: &Event, event: &ShootingEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, ShootingEvent::Created(_)) {
        touch!(
            conn,
            e,
            "UPDATE shootings SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND shooting_id = $2"
        )?;
    }
    let set = |sql: &'static str| sqlx::query(sql).bind(e.brand()).bind(e.id());
    match event {
        ShootingEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO shootings (brand, shooting_id, name, status, defaults, rules, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, 'draft', $4, $5, $6, $6, $7, $8, $7)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.name.as_str())
            .bind(Json(&p.defaults))
            .bind(Json(&p.rules))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        ShootingEvent::Renamed(p) => {
            set("UPDATE shootings SET name = $3 WHERE brand = $1 AND shooting_id = $2")
                .bind(p.name.as_str())
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::DefaultsUpdated(p) => {
            set("UPDATE shootings SET defaults = $3 WHERE brand = $1 AND shooting_id = $2")
                .bind(Json(&p.defaults))
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::RulesSet(p) => {
            set("UPDATE shootings SET rules = $3 WHERE brand = $1 AND shooting_id = $2")
                .bind(Json(&p.rules))
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::Launched(p) => {
            set("UPDATE shootings SET status = 'launched', launch_number = $3, launched_looks = $4 WHERE brand = $1 AND shooting_id = $2")
                .bind(i64::from(p.launch_number))
                .bind(Json(&p.looks))
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::Reopened(_) | ShootingEvent::LaunchCancelled(_) => {
            set("UPDATE shootings SET status = 'draft' WHERE brand = $1 AND shooting_id = $2")
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::Completed(_) => {
            set("UPDATE shootings SET status = 'completed' WHERE brand = $1 AND shooting_id = $2")
                .execute(&mut *conn)
                .await?;
        }
        ShootingEvent::Archived(p) => {
            set("UPDATE shootings SET status = 'archived', archived_reason = $3 WHERE brand = $1 AND shooting_id = $2")
                .bind(p.reason.as_ref().map(|v| v.as_str()))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn look(conn: &mut PgConnection, e: &Event, event: &LookEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, LookEvent::Created(_)) {
        touch!(
            conn,
            e,
            "UPDATE looks SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND look_id = $2"
        )?;
    }
    let set = |sql: &'static str| sqlx::query(sql).bind(e.brand()).bind(e.id());
    match event {
        LookEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO looks (brand, look_id, shooting_id, name, products, subject_id, style_id, guidelines, shot_types,
                                    created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $11)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.shooting_id.as_str())
            .bind(p.name.as_str())
            .bind(Json(&p.products))
            .bind(p.subject.as_ref().map(|v| v.as_str()))
            .bind(p.style.as_ref().map(|v| v.as_str()))
            .bind(Json(&p.guidelines))
            .bind(p.shot_types.as_ref().map(Json))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        LookEvent::Renamed(p) => {
            set("UPDATE looks SET name = $3 WHERE brand = $1 AND look_id = $2")
                .bind(p.name.as_str())
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::ProductsChanged(p) => {
            set("UPDATE looks SET products = $3 WHERE brand = $1 AND look_id = $2")
                .bind(Json(&p.products))
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::SubjectChanged(p) => {
            set("UPDATE looks SET subject_id = $3 WHERE brand = $1 AND look_id = $2")
                .bind(p.subject.as_ref().map(|v| v.as_str()))
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::StyleChanged(p) => {
            set("UPDATE looks SET style_id = $3 WHERE brand = $1 AND look_id = $2")
                .bind(p.style.as_ref().map(|v| v.as_str()))
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::GuidelinesSet(p) => {
            set("UPDATE looks SET guidelines = $3 WHERE brand = $1 AND look_id = $2")
                .bind(Json(&p.guidelines))
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::ShotTypesSet(p) => {
            set("UPDATE looks SET shot_types = $3 WHERE brand = $1 AND look_id = $2")
                .bind(p.shot_types.as_ref().map(Json))
                .execute(&mut *conn)
                .await?;
        }
        LookEvent::Removed(p) => {
            set("UPDATE looks SET removed = true, removed_reason = $3 WHERE brand = $1 AND look_id = $2")
                .bind(p.reason.as_ref().map(|v| v.as_str()))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn generation(conn: &mut PgConnection, e: &Event, event: &GenerationEvent) -> Result<(), sqlx::Error> {
    if !matches!(event, GenerationEvent::Requested(_)) {
        touch!(
            conn,
            e,
            "UPDATE generations SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND generation_id = $2"
        )?;
    }
    let set = |sql: &'static str| sqlx::query(sql).bind(e.brand()).bind(e.id());
    match event {
        GenerationEvent::Requested(p) => {
            sqlx::query(
                "INSERT INTO generations (brand, generation_id, shooting_id, look_id, shot_type, variants, status, request,
                                          created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, $8, $9, $10, $9)",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(p.shooting_id.as_str())
            .bind(p.look_id.as_str())
            .bind(p.shot_type.as_str())
            .bind(i64::from(p.variants))
            .bind(Json(p))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        GenerationEvent::Started(p) => {
            set("UPDATE generations SET status = 'running', agent = $3, attempt = $4 WHERE brand = $1 AND generation_id = $2")
                .bind(p.agent.as_str())
                .bind(i64::from(p.attempt))
                .execute(&mut *conn)
                .await?;
        }
        GenerationEvent::StepCompleted(p) => {
            set("UPDATE generations SET steps_completed = steps_completed + 1, steps = steps || jsonb_build_array($3::jsonb),
                        cost_micros = cost_micros + $4
                 WHERE brand = $1 AND generation_id = $2")
            .bind(Json(p))
            .bind(to_i64(p.cost.0))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO usage_monthly (brand, month, shooting_id, provider, steps, cost_micros, duration_ms)
                 SELECT g.brand, date_trunc('month', $3 AT TIME ZONE 'UTC')::date, g.shooting_id, $4, 1, $5, $6
                 FROM generations g WHERE g.brand = $1 AND g.generation_id = $2
                 ON CONFLICT (brand, month, shooting_id, provider) DO UPDATE
                 SET steps = usage_monthly.steps + 1,
                     cost_micros = usage_monthly.cost_micros + EXCLUDED.cost_micros,
                     duration_ms = usage_monthly.duration_ms + EXCLUDED.duration_ms",
            )
            .bind(e.brand())
            .bind(e.id())
            .bind(e.at)
            .bind(p.provider.as_str())
            .bind(to_i64(p.cost.0))
            .bind(to_i64(p.duration_ms))
            .execute(&mut *conn)
            .await?;
        }
        GenerationEvent::Completed(p) => {
            set("UPDATE generations SET status = 'completed', prediction_ids = $3 WHERE brand = $1 AND generation_id = $2")
                .bind(Json(&p.prediction_ids))
                .execute(&mut *conn)
                .await?;
        }
        GenerationEvent::Failed(p) => {
            set("UPDATE generations SET status = 'failed', failure_reason = $3, retryable = $4, attempt = $5
                 WHERE brand = $1 AND generation_id = $2")
            .bind(p.reason.as_str())
            .bind(p.retryable)
            .bind(i64::from(p.attempt))
            .execute(&mut *conn)
            .await?;
        }
        GenerationEvent::Cancelled(p) => {
            set("UPDATE generations SET status = 'cancelled', failure_reason = $3 WHERE brand = $1 AND generation_id = $2")
                .bind(p.reason.as_ref().map(|v| v.as_str()))
                .execute(&mut *conn)
                .await?;
        }
        GenerationEvent::Retried(p) => {
            set("UPDATE generations SET status = 'requested', attempt = $3, failure_reason = NULL, retryable = NULL
                 WHERE brand = $1 AND generation_id = $2")
            .bind(i64::from(p.attempt))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
