//! Commands on running work and on delivery set-up: cancel or retry a
//! generation, define or remove a brand's channel presets, and request an
//! export of approved predictions.
//!
//! Same shape as `routes`, `configure` and `review`: parse into domain values
//! (naming the field on error), authorize, run one command through
//! `gps-commands`. Commands that need another aggregate's state carry it:
//! an export request carries each prediction's review state and the channel
//! preset as they are in their own event streams (not in a read model), so an
//! export can never include a prediction whose approval was just taken back.
//! Generations are requested by the launch process manager, not through this
//! API; renditions and deliveries are recorded by the delivery workers.

use axum::Router;
use axum::extract::State;

use crate::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use gps_commands::CommandHandler;
use gps_domain::brand::{Brand, BrandCommand};
use gps_domain::export::{Export, ExportCandidate, ExportCommand, ExportDestination};
use gps_domain::generation::{Generation, GenerationCommand};
use gps_domain::ids::{BrandId, ExportId, GenerationId, PredictionId};
use gps_domain::prediction::Prediction;
use gps_domain::values::{Channel, ChannelPresetSpec};
use serde::Deserialize;

use crate::auth::{self, Principal};
use crate::configure::{Reason, new_id, optional_reason};
use crate::routes::{Accepted, Body, OptionalBody, actions, brand_id, execute, parse};
use crate::{ApiError, AppState};

/// The most predictions one export request may name.
pub(crate) const MAX_EXPORT_PREDICTIONS: usize = 1000;

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/generations/{generation}/cancel", post(cancel_generation))
        .route("/api/v1/brands/{brand}/generations/{generation}/retry", post(retry_generation))
        .route(
            "/api/v1/brands/{brand}/channel-presets/{channel}",
            put(define_channel_preset).delete(remove_channel_preset),
        )
        .route("/api/v1/brands/{brand}/exports", post(request_export))
}

/// Loads `A` at `id` in `brand`; an aggregate with no events is a 404 naming `what`.
async fn existing<A: gps_domain::Aggregate>(
    state: &AppState,
    brand: &BrandId,
    id: &str,
    what: &str,
) -> Result<gps_commands::Loaded<A>, ApiError> {
    let address = CommandHandler::address::<A>(brand, id)?;
    let loaded = state.commands.load::<A>(&address).await?;
    if loaded.position.aggregate_version == 0 {
        return Err(ApiError::NotFound(format!("{what} {id} not found in brand {brand}")));
    }
    Ok(loaded)
}

// ---------------------------------------------------------------------------
// Generations.

#[utoipa::path(post, path = "/api/v1/brands/{brand}/generations/{generation}/cancel", tag = "generations", params(("brand" = String, Path, description = "The brand id"), ("generation" = String, Path, description = "The generation id")), request_body = Option<Reason>, responses((status = 200, description = "Cancelled: it produces nothing more (nothing recorded when it already was)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn cancel_generation(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, generation)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CANCEL_GENERATION).await?;
    let reason = optional_reason(body.reason)?;
    let generation_id = parse("generation", GenerationId::parse(generation))?;
    let id = generation_id.to_string();
    existing::<Generation>(&state, &brand, &id, "generation").await?;
    let command = GenerationCommand::CancelGeneration { cancelled_by: principal.actor(), reason };
    Ok(execute::<Generation>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/generations/{generation}/retry", tag = "generations", params(("brand" = String, Path, description = "The brand id"), ("generation" = String, Path, description = "The generation id")), responses((status = 200, description = "Requested again with the same inputs as a new attempt", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule (only a failed, retryable generation can be retried)", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn retry_generation(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, generation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::RETRY_GENERATION).await?;
    let generation_id = parse("generation", GenerationId::parse(generation))?;
    let id = generation_id.to_string();
    let loaded = existing::<Generation>(&state, &brand, &id, "generation").await?;
    // The attempt number makes a repeated retry of the same failure a no-op;
    // a retry racing another is decided against the newer state (conflict).
    let command = GenerationCommand::RetryGeneration { attempt: loaded.state.attempt() + 1 };
    Ok(execute::<Generation>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

// ---------------------------------------------------------------------------
// Channel presets.

/// A channel preset's requirements.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefineChannelPreset {
    /// Long edge, aspect ratio, fit, background, format, quality, colour
    /// space, optional maximum size and the file naming pattern.
    #[schema(value_type = Object)]
    spec: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/channel-presets/{channel}", tag = "channel-presets", params(("brand" = String, Path, description = "The brand id"), ("channel" = String, Path, description = "The preset's name, e.g. `web-pdp`")), request_body = DefineChannelPreset, responses((status = 200, description = "Defined, or redefined as a new version (nothing recorded when unchanged)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn define_channel_preset(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, channel)): Path<(String, String)>,
    Body(body): Body<DefineChannelPreset>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::DEFINE_CHANNEL_PRESET).await?;
    let channel = parse("channel", Channel::parse(channel))?;
    let spec: ChannelPresetSpec = crate::configure::nested("spec", body.spec)?;
    parse("spec", spec.validate())?;
    let current = existing::<Brand>(&state, &brand, brand.as_str(), "brand").await?;
    let command = if current.state.channel_preset(&channel).is_some() {
        BrandCommand::RedefineChannelPreset { channel, spec }
    } else {
        BrandCommand::DefineChannelPreset { channel, spec }
    };
    let id = brand.to_string();
    Ok(execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(delete, path = "/api/v1/brands/{brand}/channel-presets/{channel}", tag = "channel-presets", params(("brand" = String, Path, description = "The brand id"), ("channel" = String, Path, description = "The preset's name")), responses((status = 200, description = "Removed; exports already made with it keep their copy", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn remove_channel_preset(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, channel)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REMOVE_CHANNEL_PRESET).await?;
    let channel = parse("channel", Channel::parse(channel))?;
    let id = brand.to_string();
    let command = BrandCommand::RemoveChannelPreset { channel };
    Ok(execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

// ---------------------------------------------------------------------------
// Exports.

/// What to export, formatted how, to where.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestExport {
    /// The new export's id; a new one when left out.
    #[serde(default)]
    export_id: Option<String>,
    /// The approved predictions to export (1 to 1000).
    predictions: Vec<String>,
    /// The channel preset to format them with.
    channel: String,
    /// `{"kind": "zip_download"}`, `{"kind": "s3", "bucket", "prefix",
    /// "credentials"}` or `{"kind": "webhook", "url", "secret"}`; credentials
    /// and secrets are names of stored secrets, never the secrets themselves.
    #[schema(value_type = Object)]
    destination: serde_json::Value,
    /// Deliver predictions again even when the same content already went to
    /// this destination with this preset (otherwise they are skipped).
    #[serde(default)]
    force: bool,
}

/// An export request whose predictions were all delivered unchanged before.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ExportSkipped {
    /// The predictions skipped.
    skipped_unchanged: Vec<String>,
    /// What happened and how to deliver again.
    detail: String,
}

/// Why a preset cannot be rendered by this build, if it cannot.
fn unsupported(spec: &ChannelPresetSpec) -> Option<&'static str> {
    match (spec.format, spec.colour_space) {
        (gps_domain::values::ImageFormat::Avif, _) => {
            Some("AVIF renditions are not supported by this build; choose jpeg, png or webp")
        }
        (_, gps_domain::values::ColourSpace::DisplayP3) => {
            Some("Display P3 renditions are not supported yet; use colour_space srgb")
        }
        _ => None,
    }
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/exports", tag = "exports", params(("brand" = String, Path, description = "The brand id")), request_body = RequestExport, responses((status = 201, description = "Export requested (with `skipped_unchanged`: predictions left out because they were delivered unchanged before); the channel is the brand's preset of that name or a built-in one (marketplace-main, web-pdp, social-square, social-story)", body = Accepted), (status = 200, description = "Nothing exported: every prediction was delivered unchanged before (send force: true to deliver again)", body = ExportSkipped), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule (e.g. a prediction that is not approved)", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn request_export(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<RequestExport>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REQUEST_EXPORT).await?;
    let export_id = new_id(&principal, &headers, "export_id", body.export_id, ExportId::parse)?;
    let channel = parse("channel", Channel::parse(body.channel))?;
    let destination: ExportDestination = crate::configure::nested("destination", body.destination)?;
    if body.predictions.is_empty() || body.predictions.len() > MAX_EXPORT_PREDICTIONS {
        return Err(ApiError::field(
            "predictions",
            format!(
                "name 1 to {MAX_EXPORT_PREDICTIONS} approved predictions (got {})",
                body.predictions.len()
            ),
        ));
    }
    let mut candidates = Vec::with_capacity(body.predictions.len());
    for (index, raw) in body.predictions.into_iter().enumerate() {
        let prediction_id = parse(&format!("predictions[{index}]"), PredictionId::parse(raw))?;
        let id = prediction_id.to_string();
        let loaded = existing::<Prediction>(&state, &brand, &id, "prediction").await?;
        let review_state = loaded
            .state
            .review_state()
            .ok_or_else(|| ApiError::NotFound(format!("prediction {id} not found in brand {brand}")))?;
        candidates.push(ExportCandidate { prediction_id, review_state });
    }
    let brand_state = existing::<Brand>(&state, &brand, brand.as_str(), "brand").await?;
    // The brand's own preset of that name wins over the built-in one.
    let preset = brand_state
        .state
        .channel_preset(&channel)
        .map(|(_, spec)| spec.clone())
        .or_else(|| gps_domain::presets::built_in(&channel))
        .ok_or_else(|| {
            ApiError::field(
                "channel",
                format!(
                    "brand {brand} has no channel preset {channel} and there is no built-in one of that name (built in: {}); define it with PUT /api/v1/brands/{brand}/channel-presets/{channel}",
                    gps_domain::presets::BUILT_IN.join(", ")
                ),
            )
        })?;
    if let Some(problem) = unsupported(&preset) {
        return Err(ApiError::field("channel", format!("channel preset {channel}: {problem}")));
    }
    if let ExportDestination::Webhook { url, .. } = &destination {
        state.webhook_targets.check_target(url.as_str()).await.map_err(|problem| {
            ApiError::field("destination.url", format!("{problem}; give a public https URL of your system"))
        })?;
    }
    // Unchanged content already at this destination with this preset is
    // skipped: formatting is deterministic, so it would arrive again as is.
    let mut skipped = Vec::new();
    if !body.force {
        let ids: Vec<String> = candidates.iter().map(|c| c.prediction_id.to_string()).collect();
        let preset_json = serde_json::to_value(&preset).map_err(|e| ApiError::Internal(e.to_string()))?;
        let destination_json =
            serde_json::to_value(&destination).map_err(|e| ApiError::Internal(e.to_string()))?;
        skipped = gps_projections::queries::delivered_unchanged(
            &state.db,
            brand.as_str(),
            &ids,
            &preset_json,
            &destination_json,
        )
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        candidates.retain(|c| !skipped.contains(&c.prediction_id.to_string()));
        if candidates.is_empty() {
            let detail = format!(
                "all {} predictions were already delivered unchanged to this destination with preset {channel}; nothing was exported. Send \"force\": true to deliver them again",
                skipped.len()
            );
            return Ok((
                axum::http::StatusCode::OK,
                axum::Json(ExportSkipped { skipped_unchanged: skipped, detail }),
            )
                .into_response());
        }
    }
    let id = export_id.to_string();
    let command = ExportCommand::RequestExport {
        export_id,
        brand_id: brand.clone(),
        predictions: candidates,
        channel,
        preset,
        destination,
    };
    let accepted = execute::<Export>(&state, &principal, &headers, &brand, &id, command).await?;
    Ok(accepted.respond_with_skipped(true, skipped))
}
