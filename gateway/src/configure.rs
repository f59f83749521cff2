//! The Configure stage's commands: subjects, styles, shootings and their looks,
//! all under `/api/v1/brands/{brand}/…` and all requiring the `produce` action.
//!
//! Same shape as `routes`: parse the request into domain values (naming the
//! field on error), authorize, run one command through `gps-commands`. Nested
//! domain objects (a style definition, shooting defaults and rules, look
//! guidelines) are accepted in their domain serde shape; a problem inside one
//! names its path, e.g. `defaults.output.aspect_ratio`.
//!
//! Every look command carries the state of the look's shooting (the Look
//! aggregate cannot load it), so the look handlers load the shooting first; a
//! shooting that does not exist in the brand is a 404. Launching a shooting
//! needs its looks: their ids come from the `production` read model, their
//! state from their own event streams (see `looks_at_launch`).

use axum::Router;
use axum::extract::State;

use crate::extract::Path;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{patch, post, put};
use gps_commands::CommandHandler;
use gps_domain::ids::{BrandId, LookId, ProductId, ShootingId, StyleId, SubjectId};
use gps_domain::look::{Look, LookCommand, LookGuidelines};
use gps_domain::shooting::{
    LookAtLaunch, Shooting, ShootingCommand, ShootingDefaults, ShootingRules, ShootingView,
};
use gps_domain::style::{Style, StyleCommand, StyleDefinition};
use gps_domain::subject::{Subject, SubjectCommand};
use gps_domain::values::{Name, ShotType, Text};
use gps_projections::queries as read;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Principal};
use crate::routes::{Accepted, Body, OptionalBody, actions, brand_id, execute, generated_id, parse};
use crate::{ApiError, AppState};

/// The Configure stage's routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/subjects", post(create_subject))
        .route("/api/v1/brands/{brand}/subjects/{subject}", patch(update_subject))
        .route("/api/v1/brands/{brand}/subjects/{subject}/retire", post(retire_subject))
        .route("/api/v1/brands/{brand}/styles", post(create_style))
        .route("/api/v1/brands/{brand}/styles/{style}/definition", put(revise_style))
        .route("/api/v1/brands/{brand}/styles/{style}/archive", post(archive_style))
        .route("/api/v1/brands/{brand}/shootings", post(create_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}", patch(rename_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/defaults", put(update_shooting_defaults))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/rules", put(set_shooting_rules))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/launch", post(launch_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/reopen", post(reopen_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/cancel", post(cancel_shooting_launch))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/complete", post(complete_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/archive", post(archive_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks", post(create_look))
        .route(
            "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}",
            patch(rename_look).delete(remove_look),
        )
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/products", put(change_look_products))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/subject", put(change_look_subject))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/style", put(change_look_style))
        .route(
            "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/guidelines",
            put(set_look_guidelines),
        )
        .route(
            "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/shot-types",
            put(set_look_shot_types),
        )
}

/// Deserializes a nested domain object; on failure the field is its path
/// within the body (`defaults.output.aspect_ratio`), not just `body`.
pub(crate) fn nested<T: DeserializeOwned>(field: &str, value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { field.to_owned() } else { format!("{field}.{path}") };
        ApiError::field(field, error.into_inner())
    })
}

pub(crate) fn optional_reason(reason: Option<String>) -> Result<Option<Text>, ApiError> {
    reason.map(|raw| parse("reason", Text::parse(raw))).transpose()
}

/// The id given on create, or one generated for it (see [`generated_id`]).
pub(crate) fn new_id<T, E: std::fmt::Display>(
    principal: &Principal,
    headers: &HeaderMap,
    field: &str,
    given: Option<String>,
    parse_id: impl Fn(String) -> Result<T, E>,
) -> Result<T, ApiError> {
    let raw = given.unwrap_or_else(|| generated_id(principal, headers, field));
    parse(field, parse_id(raw))
}

/// An optional reason, for the activity feed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reason {
    /// Why, in a sentence.
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

// ---------------------------------------------------------------------------
// Subjects.

/// A new subject (virtual model). Base images are added by upload, later.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSubject {
    /// The id to use; a new one is generated when absent.
    #[serde(default)]
    subject_id: Option<String>,
    name: String,
    /// Who the subject is: appearance, age range, build.
    description: String,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/subjects", tag = "subjects", params(("brand" = String, Path, description = "The brand id")), request_body = CreateSubject, responses((status = 201, description = "Subject created", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_subject(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<CreateSubject>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CREATE_SUBJECT).await?;
    let subject_id = new_id(&principal, &headers, "subject_id", body.subject_id, SubjectId::parse)?;
    let command = SubjectCommand::CreateSubject {
        subject_id: subject_id.clone(),
        brand_id: brand.clone(),
        name: parse("name", Name::parse(&body.name))?,
        description: parse("description", Text::parse(&body.description))?,
    };
    let id = subject_id.to_string();
    Ok(execute::<Subject>(&state, &principal, &headers, &brand, &id, command).await?.respond(true))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSubject {
    /// The new description, replacing the old one.
    description: String,
}

#[utoipa::path(patch, path = "/api/v1/brands/{brand}/subjects/{subject}", tag = "subjects", params(("brand" = String, Path, description = "The brand id"), ("subject" = String, Path, description = "The subject id")), request_body = UpdateSubject, responses((status = 200, description = "Description replaced", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn update_subject(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, subject)): Path<(String, String)>,
    Body(body): Body<UpdateSubject>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPDATE_SUBJECT).await?;
    let subject_id = parse("subject", SubjectId::parse(&subject))?;
    let command = SubjectCommand::UpdateSubjectDescription {
        description: parse("description", Text::parse(&body.description))?,
    };
    let id = subject_id.to_string();
    Ok(execute::<Subject>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetireSubject {
    /// Why the subject is retired; required, since retiring is for good.
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/subjects/{subject}/retire", tag = "subjects", params(("brand" = String, Path, description = "The brand id"), ("subject" = String, Path, description = "The subject id")), request_body = RetireSubject, responses((status = 200, description = "Retired for good", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn retire_subject(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, subject)): Path<(String, String)>,
    Body(body): Body<RetireSubject>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::RETIRE_SUBJECT).await?;
    let subject_id = parse("subject", SubjectId::parse(&subject))?;
    let command = SubjectCommand::RetireSubject { reason: parse("reason", Text::parse(&body.reason))? };
    let id = subject_id.to_string();
    Ok(execute::<Subject>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

// ---------------------------------------------------------------------------
// Styles.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateStyle {
    /// The id to use; a new one is generated when absent.
    #[serde(default)]
    style_id: Option<String>,
    name: String,
    /// The first definition (version 1): `background`, `background_colour?`,
    /// `lighting`, `mood`, `positive_prompt[]`, `negative_prompt[]`,
    /// `reference_images[]` (asset references) and `guidelines[]`
    /// (`{kind: do|dont, text}`).
    #[schema(value_type = Object)]
    definition: serde_json::Value,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/styles", tag = "styles", params(("brand" = String, Path, description = "The brand id")), request_body = CreateStyle, responses((status = 201, description = "Style created at version 1", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_style(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<CreateStyle>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CREATE_STYLE).await?;
    let style_id = new_id(&principal, &headers, "style_id", body.style_id, StyleId::parse)?;
    let command = StyleCommand::CreateStyle {
        style_id: style_id.clone(),
        brand_id: brand.clone(),
        name: parse("name", Name::parse(&body.name))?,
        definition: nested::<StyleDefinition>("definition", body.definition)?,
    };
    let id = style_id.to_string();
    Ok(execute::<Style>(&state, &principal, &headers, &brand, &id, command).await?.respond(true))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviseStyle {
    /// The new, complete definition, recorded as the next version: `background`,
    /// `background_colour?`, `lighting`, `mood`, `positive_prompt[]`,
    /// `negative_prompt[]`, `reference_images[]` and `guidelines[]`.
    #[schema(value_type = Object)]
    definition: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/styles/{style}/definition", tag = "styles", params(("brand" = String, Path, description = "The brand id"), ("style" = String, Path, description = "The style id")), request_body = ReviseStyle, responses((status = 200, description = "Revised: the definition is the next version", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn revise_style(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, style)): Path<(String, String)>,
    Body(body): Body<ReviseStyle>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REVISE_STYLE).await?;
    let style_id = parse("style", StyleId::parse(&style))?;
    let command =
        StyleCommand::ReviseStyle { definition: nested::<StyleDefinition>("definition", body.definition)? };
    let id = style_id.to_string();
    Ok(execute::<Style>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/styles/{style}/archive", tag = "styles", params(("brand" = String, Path, description = "The brand id"), ("style" = String, Path, description = "The style id")), request_body = Option<Reason>, responses((status = 200, description = "Archived", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn archive_style(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, style)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::ARCHIVE_STYLE).await?;
    let style_id = parse("style", StyleId::parse(&style))?;
    let reason = body.reason;
    let command = StyleCommand::ArchiveStyle { reason: optional_reason(reason)? };
    let id = style_id.to_string();
    Ok(execute::<Style>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

// ---------------------------------------------------------------------------
// Shootings.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateShooting {
    /// The id to use; a new one is generated when absent.
    #[serde(default)]
    shooting_id: Option<String>,
    name: String,
    /// What its looks use unless they say otherwise: `style?`, `subject?`,
    /// `shot_types[]` and `output` (`{aspect_ratio: "4:5", long_edge_px, format:
    /// jpeg|png|webp|avif}`). The shooting starts in draft with the default rules.
    #[schema(value_type = Object)]
    defaults: serde_json::Value,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings", tag = "shootings", params(("brand" = String, Path, description = "The brand id")), request_body = CreateShooting, responses((status = 201, description = "Shooting created, in draft", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<CreateShooting>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CREATE_SHOOTING).await?;
    let shooting_id = new_id(&principal, &headers, "shooting_id", body.shooting_id, ShootingId::parse)?;
    let command = ShootingCommand::CreateShooting {
        shooting_id: shooting_id.clone(),
        brand_id: brand.clone(),
        name: parse("name", Name::parse(&body.name))?,
        defaults: nested::<ShootingDefaults>("defaults", body.defaults)?,
    };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(true))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameShooting {
    name: String,
}

#[utoipa::path(patch, path = "/api/v1/brands/{brand}/shootings/{shooting}", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = RenameShooting, responses((status = 200, description = "Renamed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn rename_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    Body(body): Body<RenameShooting>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::RENAME_SHOOTING).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let command = ShootingCommand::RenameShooting { name: parse("name", Name::parse(&body.name))? };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateShootingDefaults {
    /// The new defaults, as a whole: `style?`, `subject?`, `shot_types[]` and
    /// `output` (`{aspect_ratio, long_edge_px, format}`). Draft shootings only.
    #[schema(value_type = Object)]
    defaults: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/defaults", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = UpdateShootingDefaults, responses((status = 200, description = "Defaults replaced", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn update_shooting_defaults(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    Body(body): Body<UpdateShootingDefaults>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPDATE_SHOOTING_DEFAULTS).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let command = ShootingCommand::UpdateShootingDefaults {
        defaults: nested::<ShootingDefaults>("defaults", body.defaults)?,
    };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetShootingRules {
    /// The new rules, as a whole: `quality_gates` (`{min_long_edge_px?,
    /// require_automatic_checks}`) and `variants_per_shot` (1 to 8). Draft
    /// shootings only.
    #[schema(value_type = Object)]
    rules: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/rules", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = SetShootingRules, responses((status = 200, description = "Rules replaced", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn set_shooting_rules(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    Body(body): Body<SetShootingRules>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::SET_SHOOTING_RULES).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let command = ShootingCommand::SetShootingRules { rules: nested::<ShootingRules>("rules", body.rules)? };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

/// Optional launch parameters.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LaunchShooting {
    /// The `stream_sequence` of the caller's last look change: the launch
    /// first waits until the looks read model has reached it, so every look
    /// the caller has just added is launched; 503 when it does not in time.
    #[serde(default)]
    min_sequence: Option<u64>,
    /// How long to wait for `min_sequence`, in milliseconds: 0 to 30000 (default 5000).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/launch", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = Option<LaunchShooting>, responses((status = 200, description = "Launched with its current looks: the launch records each with its effective shot types", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json"), (status = 503, description = "The looks read model has not reached min_sequence yet", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn launch_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<LaunchShooting>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::LAUNCH_SHOOTING).await?;
    let launch = body;
    let shooting = shooting_view(&state, &brand, &shooting).await?;
    let looks = looks_at_launch(&state, &brand, &shooting.shooting_id, &launch).await?;
    let id = shooting.shooting_id.to_string();
    Ok(execute::<Shooting>(
        &state,
        &principal,
        &headers,
        &brand,
        &id,
        ShootingCommand::LaunchShooting { looks },
    )
    .await?
    .respond(false))
}

/// The shooting's looks as `LaunchShooting` needs them, oldest first.
///
/// Which looks exist comes from the `production` read model (the Shooting
/// aggregate does not know its looks, and the event log has no index by
/// shooting); what each look is comes from its own event stream, so a look
/// changed or removed since the read model last caught up is launched as it
/// is now, and one that was removed or belongs elsewhere is left out.
///
/// A look created after the read model was read is not in this launch: with
/// `min_sequence` (the sequence of the caller's last look command) the read
/// model is awaited first, so the caller's own looks are never missed; a look
/// someone else adds while the launch runs stays in the shooting, unlaunched,
/// until the shooting is reopened and launched again.
async fn looks_at_launch(
    state: &AppState,
    brand: &BrandId,
    shooting: &ShootingId,
    launch: &LaunchShooting,
) -> Result<Vec<LookAtLaunch>, ApiError> {
    let wait = crate::queries::wait_of(launch.wait_ms)?;
    if let Some(sequence) = launch.min_sequence {
        crate::queries::await_sequence(state, "production", "min_sequence", sequence, wait).await?;
    }
    let mut ids = Vec::new();
    let mut request = read::PageRequest { cursor: None, limit: Some(read::MAX_PAGE_SIZE) };
    loop {
        let page = read::list_looks(&state.db, brand.as_str(), Some(shooting.as_str()), &request).await?;
        ids.extend(page.items.into_iter().map(|look| look.look_id));
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => break,
        }
    }
    // The list is newest first; a launch lists its looks in the order they were added.
    ids.reverse();
    // One load per look, in turn: a shooting has tens of looks, and a launch
    // is rare enough that their round trips do not matter.
    let mut looks = Vec::with_capacity(ids.len());
    for raw in ids {
        let look_id = LookId::parse(&raw)
            .map_err(|e| ApiError::Internal(format!("look id {raw:?} in the read model: {e}")))?;
        let address = CommandHandler::address::<Look>(brand, look_id.as_str())?;
        let look = state.commands.load::<Look>(&address).await?.state;
        if look.details.as_ref().is_some_and(|details| details.shooting_id == *shooting) {
            looks.extend(look.at_launch());
        }
    }
    Ok(looks)
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/reopen", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = Option<Reason>, responses((status = 200, description = "Back in draft (nothing recorded when it already was)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn reopen_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REOPEN_SHOOTING).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let reason = body.reason;
    let command = ShootingCommand::ReopenShooting { reason: optional_reason(reason)? };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/cancel", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = Option<Reason>, responses((status = 200, description = "The launch is cancelled: its unfinished generations are cancelled and the shooting is a draft again (nothing recorded when no launch was running)", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn cancel_shooting_launch(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CANCEL_SHOOTING_LAUNCH).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let reason = body.reason;
    let command = ShootingCommand::CancelLaunch { reason: optional_reason(reason)? };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/complete", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), responses((status = 200, description = "Completed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn complete_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::COMPLETE_SHOOTING).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, ShootingCommand::CompleteShooting)
        .await?
        .respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/archive", tag = "shootings", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = Option<Reason>, responses((status = 200, description = "Archived", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn archive_shooting(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::ARCHIVE_SHOOTING).await?;
    let shooting_id = parse("shooting", ShootingId::parse(&shooting))?;
    let reason = body.reason;
    let command = ShootingCommand::ArchiveShooting { reason: optional_reason(reason)? };
    let id = shooting_id.to_string();
    Ok(execute::<Shooting>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

// ---------------------------------------------------------------------------
// Looks.

/// The current state of a brand's shooting, which every look command carries;
/// 404 when the brand has no such shooting. The Look aggregate re-checks it
/// (a draft, the look's own shooting); a change to the shooting between this
/// load and the look's append is not caught here, which launch tolerates: it
/// takes the looks as they are then.
async fn shooting_view(state: &AppState, brand: &BrandId, shooting: &str) -> Result<ShootingView, ApiError> {
    let shooting_id = parse("shooting", ShootingId::parse(shooting))?;
    let address = CommandHandler::address::<Shooting>(brand, shooting_id.as_str())?;
    state
        .commands
        .load::<Shooting>(&address)
        .await?
        .state
        .view()
        .ok_or_else(|| ApiError::NotFound(format!("shooting {shooting_id} not found")))
}

/// A look's products: product ids, at least one. An empty list is refused
/// here so the problem names the field; the bounds and duplicates are the
/// Look aggregate's rules (422).
fn products(raw: Vec<String>) -> Result<Vec<ProductId>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::field("products", "give at least one product id; the first is the main one"));
    }
    raw.iter().enumerate().map(|(i, p)| parse(&format!("products[{i}]"), ProductId::parse(p))).collect()
}

fn shot_types(raw: Option<Vec<String>>) -> Result<Option<Vec<ShotType>>, ApiError> {
    raw.map(|list| {
        list.iter().enumerate().map(|(i, s)| parse(&format!("shot_types[{i}]"), ShotType::parse(s))).collect()
    })
    .transpose()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLook {
    /// The id to use; a new one is generated when absent.
    #[serde(default)]
    look_id: Option<String>,
    name: String,
    /// Product ids, 1 to 10, each once; the first is the main one.
    products: Vec<String>,
    /// The look's subject; absent uses the shooting's default.
    #[serde(default)]
    subject: Option<String>,
    /// The look's style; absent uses the shooting's default.
    #[serde(default)]
    style: Option<String>,
    /// Free-text rules: `{dos: [..], donts: [..]}`; absent means none.
    #[serde(default)]
    #[schema(value_type = Object)]
    guidelines: serde_json::Value,
    /// The look's own shot types; absent uses the shooting's defaults.
    #[serde(default)]
    shot_types: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id")), request_body = CreateLook, responses((status = 201, description = "Look added to the draft shooting", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_look(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    Body(body): Body<CreateLook>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CREATE_LOOK).await?;
    let look_id = new_id(&principal, &headers, "look_id", body.look_id, LookId::parse)?;
    let name = parse("name", Name::parse(&body.name))?;
    let products = products(body.products)?;
    let subject = body.subject.map(|raw| parse("subject", SubjectId::parse(raw))).transpose()?;
    let style = body.style.map(|raw| parse("style", StyleId::parse(raw))).transpose()?;
    let guidelines = if body.guidelines.is_null() {
        LookGuidelines::default()
    } else {
        nested::<LookGuidelines>("guidelines", body.guidelines)?
    };
    let shot_types = shot_types(body.shot_types)?;
    let shooting = shooting_view(&state, &brand, &shooting).await?;
    let command = LookCommand::CreateLook {
        look_id: look_id.clone(),
        brand_id: brand.clone(),
        shooting_id: shooting.shooting_id.clone(),
        name,
        products,
        subject,
        style,
        guidelines,
        shot_types,
        shooting,
    };
    let id = look_id.to_string();
    Ok(execute::<Look>(&state, &principal, &headers, &brand, &id, command).await?.respond(true))
}

/// Runs a command on an existing look of the shooting in the path.
async fn look_command(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    brand: &BrandId,
    (shooting, look): (&str, &str),
    command: impl FnOnce(ShootingView) -> LookCommand,
) -> Result<Response, ApiError> {
    let look_id = parse("look", LookId::parse(look))?;
    let shooting = shooting_view(state, brand, shooting).await?;
    let id = look_id.to_string();
    Ok(execute::<Look>(state, principal, headers, brand, &id, command(shooting)).await?.respond(false))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenameLook {
    name: String,
}

#[utoipa::path(patch, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = RenameLook, responses((status = 200, description = "Renamed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn rename_look(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<RenameLook>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::RENAME_LOOK).await?;
    let name = parse("name", Name::parse(&body.name))?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::RenameLook { name, shooting }
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeLookProducts {
    /// Product ids, 1 to 10, each once; the first is the main one.
    products: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/products", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = ChangeLookProducts, responses((status = 200, description = "Products replaced", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn change_look_products(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<ChangeLookProducts>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CHANGE_LOOK_PRODUCTS).await?;
    let products = products(body.products)?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::ChangeLookProducts { products, shooting }
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeLookSubject {
    /// The subject id, or `null` to use the shooting's default.
    subject: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/subject", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = ChangeLookSubject, responses((status = 200, description = "Subject set", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn change_look_subject(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<ChangeLookSubject>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CHANGE_LOOK_SUBJECT).await?;
    let subject = body.subject.map(|raw| parse("subject", SubjectId::parse(raw))).transpose()?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::ChangeLookSubject { subject, shooting }
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeLookStyle {
    /// The style id, or `null` to use the shooting's default.
    style: Option<String>,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/style", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = ChangeLookStyle, responses((status = 200, description = "Style set", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn change_look_style(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<ChangeLookStyle>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CHANGE_LOOK_STYLE).await?;
    let style = body.style.map(|raw| parse("style", StyleId::parse(raw))).transpose()?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::ChangeLookStyle { style, shooting }
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetLookGuidelines {
    /// The new rules, as a whole: `{dos: [..], donts: [..]}`.
    #[schema(value_type = Object)]
    guidelines: serde_json::Value,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/guidelines", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = SetLookGuidelines, responses((status = 200, description = "Guidelines replaced", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn set_look_guidelines(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<SetLookGuidelines>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::SET_LOOK_GUIDELINES).await?;
    let guidelines = nested::<LookGuidelines>("guidelines", body.guidelines)?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::SetLookGuidelines { guidelines, shooting }
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetLookShotTypes {
    /// The look's own shot types, or `null` to use the shooting's defaults.
    shot_types: Option<Vec<String>>,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}/shot-types", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = SetLookShotTypes, responses((status = 200, description = "Shot types set", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn set_look_shot_types(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Body(body): Body<SetLookShotTypes>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::SET_LOOK_SHOT_TYPES).await?;
    let shot_types = shot_types(body.shot_types)?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::SetLookShotTypes { shot_types, shooting }
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}", tag = "looks", params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), ("look" = String, Path, description = "The look id")), request_body = Option<Reason>, responses((status = 200, description = "Removed from the shooting", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn remove_look(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    OptionalBody(body): OptionalBody<Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REMOVE_LOOK).await?;
    let reason = optional_reason(body.reason)?;
    look_command(&state, &principal, &headers, &brand, (&shooting, &look), |shooting| {
        LookCommand::RemoveLook { reason, shooting }
    })
    .await
}
