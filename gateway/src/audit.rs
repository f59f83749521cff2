//! The auditors' API: `GET /api/v1/brands/{brand}/audit/{aggregate_type}/{id}/history`
//! (optionally `?as_of=<RFC 3339>`), every event of one aggregate with its
//! actor, time, command and correlation ids and the state after it
//! (`gps_projections::audit::history`, read from the log itself: the history
//! is the record, not a read model of it).
//!
//! `GET /api/v1/brands/{brand}/audit/accesses`: the brand's audit trail, who
//! read which history, when (`gps_projections::audit::trail`).
//!
//! Every read is itself recorded, before anything is returned, as an
//! `audit_access.recorded` event of its own aggregate
//! (`gps.evt.<brand>.audit_access.<id>`, actor: the caller): written once,
//! never loaded again, so auditing costs the brand's own stream nothing.
//! Owners and auditors may read (`Action::Audit`); nobody else.

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use gps_commands::{CommandHandler, CommandMeta};
use gps_domain::AggregateKind;
use gps_domain::audit_access::{AuditAccess, AuditAccessCommand, WHOLE_TRAIL};
use gps_domain::ids::BrandId;
use gps_projections::audit::AuditError;
use gps_projections::audit::history::{self, History};
use gps_projections::audit::trail::{self, AuditTrail};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{self, Principal};
use crate::routes::{actions, brand_id, parse};
use crate::{ApiError, AppState};

/// The audit routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/audit/{aggregate_type}/{id}/history", get(aggregate_history))
        .route("/api/v1/brands/{brand}/audit/accesses", get(audit_trail))
}

/// Where to cut a history.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AsOf {
    /// Only events the log had stored at this instant (RFC 3339, e.g. `2026-11-27T10:30:00Z`).
    as_of: Option<String>,
}

/// The history of one aggregate, with the state after each event.
#[utoipa::path(get, path = "/api/v1/brands/{brand}/audit/{aggregate_type}/{id}/history", tag = "audit",
    params(
        ("brand" = String, Path, description = "The brand id"),
        ("aggregate_type" = String, Path, description = "brand, product, subject, style, shooting, look, generation, prediction or export"),
        ("id" = String, Path, description = "The aggregate id"),
        AsOf,
    ),
    responses(
        (status = 200, description = "Every event, oldest first, with the state after it; a prediction's exports under `related`", body = History),
        (status = 400, description = "Invalid aggregate type, id or as_of; `field` names it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Your role may not read audit histories (owners and auditors may)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn aggregate_history(
    State(state): State<AppState>,
    principal: Principal,
    Path((brand, aggregate_type, id)): Path<(String, String, String)>,
    Query(query): Query<AsOf>,
) -> Result<Json<History>, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::AUDIT).await?;
    let kind = parse("aggregate_type", history::parse_kind(&aggregate_type))?;
    parse("id", gps_domain::ids::check_token("aggregate id", &id))?;
    let as_of = as_of(&query.as_of)?;
    // On the record first: a history that was read is always a logged read.
    record_read(&state, &principal, &brand, kind, &id, as_of).await?;
    let history = history::history(&state.log, &brand, kind, &id, as_of)
        .await
        .map_err(|error| audit_error("id", error))?;
    Ok(Json(history))
}

/// Which page of the audit trail to read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TrailPage {
    /// Only reads the log had stored at this instant (RFC 3339, e.g. `2026-11-27T10:30:00Z`).
    as_of: Option<String>,
    /// Reads recorded after this stream sequence: the previous page's `next_after`.
    #[param(minimum = 0)]
    after: Option<u64>,
    /// How many reads at most (1 to 1000, default 200).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Who read which audit history, when; reading the trail is itself recorded.
#[utoipa::path(get, path = "/api/v1/brands/{brand}/audit/accesses", tag = "audit",
    params(("brand" = String, Path, description = "The brand id"), TrailPage),
    responses(
        (status = 200, description = "The reads, oldest first, with `next_after` when more follow", body = AuditTrail),
        (status = 400, description = "Invalid as_of, after or limit; `field` names it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Your role may not read the audit trail (owners and auditors may)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn audit_trail(
    State(state): State<AppState>,
    principal: Principal,
    Path(brand): Path<String>,
    Query(page): Query<TrailPage>,
) -> Result<Json<AuditTrail>, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::AUDIT).await?;
    let as_of = as_of(&page.as_of)?;
    let limit = match page.limit {
        None => 200,
        Some(limit @ 1..=1000) => limit as usize,
        Some(other) => {
            return Err(ApiError::field("limit", format!("{other} is out of range; give 1 to 1000")));
        }
    };
    record_read(&state, &principal, &brand, AggregateKind::AuditAccess, WHOLE_TRAIL, as_of).await?;
    let found = trail::trail(&state.log, &brand, page.after.unwrap_or(0), limit, as_of)
        .await
        .map_err(|error| audit_error("after", error))?;
    Ok(Json(found))
}

fn as_of(text: &Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    text.as_deref()
        .map(|text| {
            parse(
                "as_of",
                OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|e| format!("{e}; write it as RFC 3339, e.g. 2026-11-27T10:30:00Z")),
            )
        })
        .transpose()
}

fn audit_error(field: &str, error: AuditError) -> ApiError {
    match error {
        AuditError::Invalid(message) => ApiError::field(field, message),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Records the caller's read as an aggregate of its own, created by this one
/// append. Every read is a new record under new ids, whatever Idempotency-Key
/// the request carries: a read has no effect to de-duplicate, and a reused key
/// must not let a second read pass unrecorded as a "retry" of the first.
async fn record_read(
    state: &AppState,
    principal: &Principal,
    brand: &BrandId,
    kind: AggregateKind,
    id: &str,
    as_of: Option<OffsetDateTime>,
) -> Result<(), ApiError> {
    let record = AuditAccessCommand::RecordAuditAccess {
        aggregate_type: kind,
        aggregate_id: id.to_owned(),
        as_of: as_of.map(|at| at.format(&Rfc3339).unwrap_or_default()),
    };
    let meta = CommandMeta::generated(principal.actor());
    let record_id = uuid::Uuid::now_v7().simple().to_string();
    let address = CommandHandler::address::<AuditAccess>(brand, &record_id)?;
    state.commands.execute_new::<AuditAccess>(&address, &meta, &record).await?;
    Ok(())
}
