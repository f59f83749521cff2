//! The Review stage's commands on predictions: approve, reject, request a
//! revision (optionally pointing at regions of the image), comment, and take
//! an approval or a rejection back; all under
//! `/api/v1/brands/{brand}/predictions/{prediction}/…` and all requiring the
//! `review` action.
//!
//! Same shape as `routes` and `configure`: parse the request into domain
//! values (naming the field on error, e.g. `regions[0].width`), authorize, run
//! one command on the Prediction aggregate through `gps-commands`. The
//! aggregate decides against its own event stream, never against a read model,
//! so a review cannot act on a stale review state. Predictions are produced by
//! the compute agents through the command path, not through this API.

use axum::Router;
use axum::extract::State;

use crate::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use gps_commands::CommandHandler;
use gps_commands::process_managers::{FollowUp, request_follow_up};
use gps_domain::ids::{BrandId, CommentId, PredictionId};
use gps_domain::prediction::{Prediction, PredictionCommand, RegionAnnotation, ReviewState};
use gps_domain::values::Text;
use serde::Deserialize;

use crate::auth::{self, Action, Principal};
use crate::configure::{Reason, new_id, optional_reason};
use crate::routes::{Accepted, Body, OptionalBody, actions, brand_id, command_meta, execute, parse};
use crate::{ApiError, AppState};

/// The Review stage's routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/predictions/{prediction}/approve", post(approve_prediction))
        .route("/api/v1/brands/{brand}/predictions/{prediction}/reject", post(reject_prediction))
        .route("/api/v1/brands/{brand}/predictions/{prediction}/revision", post(request_revision))
        .route("/api/v1/brands/{brand}/predictions/{prediction}/comments", post(comment_on_prediction))
        .route("/api/v1/brands/{brand}/predictions/{prediction}/reset", post(reset_review))
        .route("/api/v1/brands/{brand}/predictions/{prediction}/video", post(request_video))
}

/// Authorizes `action` in the path's brand and runs `command` on the path's prediction.
async fn review(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    (brand, prediction): (&BrandId, &str),
    command: PredictionCommand,
) -> Result<Accepted, ApiError> {
    let prediction_id = parse("prediction", PredictionId::parse(prediction))?;
    let id = prediction_id.to_string();
    execute::<Prediction>(state, principal, headers, brand, &id, command).await
}

/// The brand in the path, once the caller may do `action` in it.
async fn authorized(
    state: &AppState,
    principal: &Principal,
    brand: &str,
    action: Action,
) -> Result<BrandId, ApiError> {
    let brand = brand_id(brand)?;
    auth::authorize(state, principal, &brand, action).await?;
    Ok(brand)
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/approve", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The prediction id")), responses((status = 200, description = "Approved: it may be exported (nothing recorded when it already was)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn approve_prediction(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::APPROVE_PREDICTION).await?;
    let command = PredictionCommand::ApprovePrediction;
    Ok(review(&state, &principal, &headers, (&brand, &prediction), command).await?.respond(false))
}

/// Why a prediction is rejected.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectPrediction {
    /// Why, so the team and the next generation learn from it.
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/reject", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The prediction id")), request_body = RejectPrediction, responses((status = 200, description = "Rejected: it is never exported", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn reject_prediction(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
    Body(body): Body<RejectPrediction>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::REJECT_PREDICTION).await?;
    let command = PredictionCommand::RejectPrediction { reason: parse("reason", Text::parse(&body.reason))? };
    Ok(review(&state, &principal, &headers, (&brand, &prediction), command).await?.respond(false))
}

/// A rectangle of the image with what should change there. Coordinates are
/// fractions of the image's width and height: 0 is the left or top edge, 1 the
/// right or bottom edge.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Region {
    /// Left edge, 0 to 1.
    x: f64,
    /// Top edge, 0 to 1.
    y: f64,
    /// Width, above 0; `x + width` at most 1.
    width: f64,
    /// Height, above 0; `y + height` at most 1.
    height: f64,
    /// What should change in this region.
    note: String,
}

/// What a revised variant should change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestRevision {
    /// What should change.
    comment: String,
    /// Where, optionally: at most 20 regions.
    #[serde(default)]
    regions: Vec<Region>,
}

/// The region at `index` of the body, as the domain builds it. The domain's
/// rule says what is wrong; the field named is the first coordinate that
/// breaks it, so a client can point at the input to fix.
fn region(index: usize, raw: Region) -> Result<RegionAnnotation, ApiError> {
    let note = parse(&format!("regions[{index}].note"), Text::parse(&raw.note))?;
    let Region { x, y, width, height, .. } = raw;
    RegionAnnotation::new(x, y, width, height, note).map_err(|error| {
        let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        let field = [("x", x), ("y", y), ("width", width), ("height", height)]
            .into_iter()
            .find(|(_, v)| !fraction(*v))
            .map(|(name, _)| name)
            .or(if width == 0.0 || x + width > 1.0 { Some("width") } else { None })
            .unwrap_or("height");
        ApiError::field(format!("regions[{index}].{field}"), error)
    })
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/revision", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The prediction id")), request_body = RequestRevision, responses((status = 200, description = "Revision requested; a new generation makes the revised variants", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn request_revision(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
    Body(body): Body<RequestRevision>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::REQUEST_REVISION).await?;
    let comment = parse("comment", Text::parse(&body.comment))?;
    let regions =
        body.regions.into_iter().enumerate().map(|(i, raw)| region(i, raw)).collect::<Result<_, _>>()?;
    let command = PredictionCommand::RequestRevision { comment, regions };
    Ok(review(&state, &principal, &headers, (&brand, &prediction), command).await?.respond(false))
}

/// A comment on a prediction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommentOnPrediction {
    /// The id to use; a new one is generated when absent. Sending the same id
    /// and text again records nothing.
    #[serde(default)]
    comment_id: Option<String>,
    /// What the reviewer writes.
    text: String,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/comments", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The prediction id")), request_body = CommentOnPrediction, responses((status = 201, description = "Comment recorded; `id` is the comment's", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn comment_on_prediction(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
    Body(body): Body<CommentOnPrediction>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::COMMENT_ON_PREDICTION).await?;
    let comment_id = new_id(&principal, &headers, "comment_id", body.comment_id, CommentId::parse)?;
    let text = parse("text", Text::parse(&body.text))?;
    let command = PredictionCommand::CommentOnPrediction { comment_id: comment_id.clone(), text };
    let mut accepted = review(&state, &principal, &headers, (&brand, &prediction), command).await?;
    accepted.id = comment_id.to_string();
    Ok(accepted.respond(true))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/reset", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The prediction id")), request_body = Option<Reason>, responses((status = 200, description = "Pending again (nothing recorded when it already was)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn reset_review(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::RESET_REVIEW).await?;
    let reason = optional_reason(body.reason)?;
    let command = PredictionCommand::ResetReview { reason };
    Ok(review(&state, &principal, &headers, (&brand, &prediction), command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/predictions/{prediction}/video", tag = "reviews", params(("brand" = String, Path, description = "The brand id"), ("prediction" = String, Path, description = "The approved prediction id")), responses((status = 202, description = "A generation of the `video` workflow was requested (or had been: asking again requests nothing new); `id` is the generation id", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "The prediction is not approved", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn request_video(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, prediction)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = authorized(&state, &principal, &brand, actions::REQUEST_VIDEO).await?;
    let prediction_id = parse("prediction", PredictionId::parse(prediction))?;
    let address = CommandHandler::address::<Prediction>(&brand, prediction_id.as_str())?;
    // Decided on the prediction's own stream, never a read model: a clip is
    // made of approved content only.
    let loaded = state.commands.load::<Prediction>(&address).await?;
    match loaded.state.review_state() {
        None => {
            return Err(ApiError::NotFound(format!("prediction {prediction_id} not found in brand {brand}")));
        }
        Some(ReviewState::Approved) => {}
        Some(other) => {
            return Err(ApiError::Conflict(format!(
                "prediction {prediction_id} is {}; only an approved prediction is animated into a clip — approve it first",
                other.as_str()
            )));
        }
    }
    let base = command_meta(&principal, &headers)?;
    let generation_id =
        match request_follow_up(&state.commands, &base, &brand, &prediction_id, FollowUp::Video).await? {
            Ok(generation_id) => generation_id,
            Err(reason) => return Err(ApiError::Conflict(reason)),
        };
    let generation = state
        .commands
        .load::<gps_domain::generation::Generation>(&CommandHandler::address::<
            gps_domain::generation::Generation,
        >(&brand, generation_id.as_str())?)
        .await?;
    let accepted = Accepted {
        id: generation_id.to_string(),
        stream_sequence: generation.position.last_subject_sequence,
        version: generation.position.aggregate_version,
        events: usize::from(generation.position.aggregate_version == 1),
        already_applied: generation.position.aggregate_version > 1,
    };
    let mut response = accepted.respond(false);
    *response.status_mut() = axum::http::StatusCode::ACCEPTED;
    Ok(response)
}
