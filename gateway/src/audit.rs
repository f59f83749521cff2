//! The auditors' API: `GET /api/v1/brands/{brand}/audit/{aggregate_type}/{id}/history`
//! (optionally `?as_of=<RFC 3339>`), every event of one aggregate with its
//! actor, time, command and correlation ids and the state after it
//! (`gps_projections::audit::history`, read from the log itself: the history
//! is the record, not a read model of it).
//!
//! Reading a history is itself recorded, before the history is returned, as a
//! `brand.audit_accessed` event on the brand (actor: the caller), so the
//! brand's own history answers who audited what, and when. Owners and
//! auditors may read histories (`Action::Audit`); nobody else.

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use gps_domain::brand::{Brand, BrandCommand};
use gps_projections::audit::history::{self, History};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::{self, Principal};
use crate::routes::{actions, brand_id, execute, parse};
use crate::{ApiError, AppState};

/// The audit routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/brands/{brand}/audit/{aggregate_type}/{id}/history", get(aggregate_history))
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
    headers: HeaderMap,
    Path((brand, aggregate_type, id)): Path<(String, String, String)>,
    Query(query): Query<AsOf>,
) -> Result<Json<History>, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::AUDIT).await?;
    let kind = parse("aggregate_type", history::parse_kind(&aggregate_type))?;
    parse("id", gps_domain::ids::check_token("aggregate id", &id))?;
    let as_of = match &query.as_of {
        Some(text) => Some(parse(
            "as_of",
            OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|e| format!("{e}; write it as RFC 3339, e.g. 2026-11-27T10:30:00Z")),
        )?),
        None => None,
    };
    // On the record first: a history that was read is always a logged read.
    let record = BrandCommand::RecordAuditAccess {
        aggregate_type: kind,
        aggregate_id: id.clone(),
        as_of: as_of.map(|at| at.format(&Rfc3339).unwrap_or_default()),
    };
    execute::<Brand>(&state, &principal, &headers, &brand, brand.as_str(), record).await?;
    let history =
        history::history(&state.log, &brand, kind, &id, as_of).await.map_err(|error| match error {
            gps_projections::audit::AuditError::Invalid(message) => ApiError::field("id", message),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(Json(history))
}
