//! The `/api/v1` routes: sessions, brands with their members and API clients,
//! and products. Each handler parses the request into domain values (naming the
//! field on error), checks the caller's role in the brand, and runs one command
//! through `gps-commands`. Command responses carry the stream sequence, so a
//! reader can ask to see at least that.

use std::collections::{BTreeMap, BTreeSet};

use sha2::Digest;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, patch, post, put};
use axum::{Json, Router};
use gps_commands::{CommandHandler, Outcome};
use gps_domain::Aggregate;
use gps_domain::brand::{ApiClient, ApiScope, Brand, BrandCommand, Email, KeyFingerprint, Role};
use gps_domain::ids::{ApiClientId, BrandId, MemberId, ProductId};
use gps_domain::product::{Product, ProductCommand};
use gps_domain::values::{Category, Name, Sku, Text};
use gps_nats::CommandMeta;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Principal};
use crate::extract::Path;
use crate::{ApiError, AppState};

/// The header a command's response carries its stream sequence in.
pub const STREAM_SEQUENCE_HEADER: &str = "gps-stream-sequence";
/// The header that makes a command idempotent: its value becomes the command id.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The action each brand-scoped operation requires. Handlers authorize with
/// these constants, and the OpenAPI document publishes them as `x-gps-action`
/// (by operation id), so clients and the tenant-isolation tests read one truth.
pub(crate) mod actions {
    use crate::auth::Action;

    /// `add_member` requires this.
    pub(crate) const ADD_MEMBER: Action = Action::Administer;
    /// `remove_member` requires this.
    pub(crate) const REMOVE_MEMBER: Action = Action::Administer;
    /// `change_role` requires this.
    pub(crate) const CHANGE_ROLE: Action = Action::Administer;
    /// `register_api_client` requires this.
    pub(crate) const REGISTER_API_CLIENT: Action = Action::Administer;
    /// `revoke_api_client` requires this.
    pub(crate) const REVOKE_API_CLIENT: Action = Action::Administer;
    /// `create_product` requires this.
    pub(crate) const CREATE_PRODUCT: Action = Action::Produce;
    /// `update_product` requires this.
    pub(crate) const UPDATE_PRODUCT: Action = Action::Produce;
    /// `archive_product` requires this.
    pub(crate) const ARCHIVE_PRODUCT: Action = Action::Produce;
    /// `restore_product` requires this.
    pub(crate) const RESTORE_PRODUCT: Action = Action::Produce;
    /// `create_subject` requires this.
    pub(crate) const CREATE_SUBJECT: Action = Action::Produce;
    /// `update_subject` requires this.
    pub(crate) const UPDATE_SUBJECT: Action = Action::Produce;
    /// `retire_subject` requires this.
    pub(crate) const RETIRE_SUBJECT: Action = Action::Produce;
    /// `create_style` requires this.
    pub(crate) const CREATE_STYLE: Action = Action::Produce;
    /// `revise_style` requires this.
    pub(crate) const REVISE_STYLE: Action = Action::Produce;
    /// `archive_style` requires this.
    pub(crate) const ARCHIVE_STYLE: Action = Action::Produce;
    /// `create_shooting` requires this.
    pub(crate) const CREATE_SHOOTING: Action = Action::Produce;
    /// `rename_shooting` requires this.
    pub(crate) const RENAME_SHOOTING: Action = Action::Produce;
    /// `update_shooting_defaults` requires this.
    pub(crate) const UPDATE_SHOOTING_DEFAULTS: Action = Action::Produce;
    /// `set_shooting_rules` requires this.
    pub(crate) const SET_SHOOTING_RULES: Action = Action::Produce;
    /// `launch_shooting` requires this.
    pub(crate) const LAUNCH_SHOOTING: Action = Action::Produce;
    /// `reopen_shooting` requires this.
    pub(crate) const REOPEN_SHOOTING: Action = Action::Produce;
    /// `cancel_shooting_launch` requires this.
    pub(crate) const CANCEL_SHOOTING_LAUNCH: Action = Action::Produce;
    /// `complete_shooting` requires this.
    pub(crate) const COMPLETE_SHOOTING: Action = Action::Produce;
    /// `archive_shooting` requires this.
    pub(crate) const ARCHIVE_SHOOTING: Action = Action::Produce;
    /// `create_look` requires this.
    pub(crate) const CREATE_LOOK: Action = Action::Produce;
    /// `rename_look` requires this.
    pub(crate) const RENAME_LOOK: Action = Action::Produce;
    /// `change_look_products` requires this.
    pub(crate) const CHANGE_LOOK_PRODUCTS: Action = Action::Produce;
    /// `change_look_subject` requires this.
    pub(crate) const CHANGE_LOOK_SUBJECT: Action = Action::Produce;
    /// `change_look_style` requires this.
    pub(crate) const CHANGE_LOOK_STYLE: Action = Action::Produce;
    /// `set_look_guidelines` requires this.
    pub(crate) const SET_LOOK_GUIDELINES: Action = Action::Produce;
    /// `set_look_shot_types` requires this.
    pub(crate) const SET_LOOK_SHOT_TYPES: Action = Action::Produce;
    /// `remove_look` requires this.
    pub(crate) const REMOVE_LOOK: Action = Action::Produce;
    /// `approve_prediction` requires this.
    pub(crate) const APPROVE_PREDICTION: Action = Action::Review;
    /// `reject_prediction` requires this.
    pub(crate) const REJECT_PREDICTION: Action = Action::Review;
    /// `request_revision` requires this.
    pub(crate) const REQUEST_REVISION: Action = Action::Review;
    /// `request_video` requires this: animating approved content is production work.
    pub(crate) const REQUEST_VIDEO: Action = Action::Produce;
    /// `comment_on_prediction` requires this.
    pub(crate) const COMMENT_ON_PREDICTION: Action = Action::Review;
    /// `reset_review` requires this.
    pub(crate) const RESET_REVIEW: Action = Action::Review;
    /// `cancel_generation` requires this.
    pub(crate) const CANCEL_GENERATION: Action = Action::Produce;
    /// `retry_generation` requires this.
    pub(crate) const RETRY_GENERATION: Action = Action::Produce;
    /// `define_channel_preset` requires this.
    pub(crate) const DEFINE_CHANNEL_PRESET: Action = Action::Administer;
    /// `remove_channel_preset` requires this.
    pub(crate) const REMOVE_CHANNEL_PRESET: Action = Action::Administer;
    /// `request_export` requires this.
    pub(crate) const REQUEST_EXPORT: Action = Action::Produce;
    /// `upload_product_image` requires this.
    pub(crate) const UPLOAD_PRODUCT_IMAGE: Action = Action::Produce;
    /// `upload_subject_image` requires this.
    pub(crate) const UPLOAD_SUBJECT_IMAGE: Action = Action::Produce;
    /// `upload_style_reference` requires this.
    pub(crate) const UPLOAD_STYLE_REFERENCE: Action = Action::Produce;
    /// `start_import` requires this.
    pub(crate) const START_IMPORT: Action = Action::Produce;
    /// `cancel_import` requires this.
    pub(crate) const CANCEL_IMPORT: Action = Action::Produce;

    /// Every read of brand data requires this.
    pub(crate) const READ: Action = Action::Read;
    /// The usage and cost report requires this: every member sees what the
    /// brand's generations cost.
    pub(crate) const READ_USAGE: Action = Action::Read;
    /// Following the brand's live notices requires this.
    pub(crate) const LIVE: Action = Action::Read;
    /// Reading an aggregate's audit history requires this (owners and auditors).
    pub(crate) const AUDIT: Action = Action::Audit;
    /// Following (or paging through) the brand's event stream requires this.
    pub(crate) const EVENTS: Action = Action::Stream;

    /// Operation id → required action.
    pub(crate) const BY_OPERATION: &[(&str, Action)] = &[
        ("live", LIVE),
        ("get_brand", READ),
        ("list_members", READ),
        ("list_api_clients", READ),
        ("list_channel_presets", READ),
        ("list_products", READ),
        ("get_product", READ),
        ("list_subjects", READ),
        ("get_subject", READ),
        ("list_styles", READ),
        ("get_style", READ),
        ("list_shootings", READ),
        ("get_shooting", READ),
        ("list_looks", READ),
        ("get_look", READ),
        ("list_generations", READ),
        ("get_generation", READ),
        ("list_predictions", READ),
        ("get_prediction", READ),
        ("list_exports", READ),
        ("get_export", READ),
        ("download_export", READ),
        ("list_product_deliveries", READ),
        ("list_activity", READ),
        ("get_usage", READ_USAGE),
        ("add_member", ADD_MEMBER),
        ("remove_member", REMOVE_MEMBER),
        ("change_role", CHANGE_ROLE),
        ("register_api_client", REGISTER_API_CLIENT),
        ("revoke_api_client", REVOKE_API_CLIENT),
        ("create_product", CREATE_PRODUCT),
        ("update_product", UPDATE_PRODUCT),
        ("archive_product", ARCHIVE_PRODUCT),
        ("restore_product", RESTORE_PRODUCT),
        ("create_subject", CREATE_SUBJECT),
        ("update_subject", UPDATE_SUBJECT),
        ("retire_subject", RETIRE_SUBJECT),
        ("create_style", CREATE_STYLE),
        ("revise_style", REVISE_STYLE),
        ("archive_style", ARCHIVE_STYLE),
        ("create_shooting", CREATE_SHOOTING),
        ("rename_shooting", RENAME_SHOOTING),
        ("update_shooting_defaults", UPDATE_SHOOTING_DEFAULTS),
        ("set_shooting_rules", SET_SHOOTING_RULES),
        ("launch_shooting", LAUNCH_SHOOTING),
        ("reopen_shooting", REOPEN_SHOOTING),
        ("cancel_shooting_launch", CANCEL_SHOOTING_LAUNCH),
        ("complete_shooting", COMPLETE_SHOOTING),
        ("archive_shooting", ARCHIVE_SHOOTING),
        ("create_look", CREATE_LOOK),
        ("rename_look", RENAME_LOOK),
        ("change_look_products", CHANGE_LOOK_PRODUCTS),
        ("change_look_subject", CHANGE_LOOK_SUBJECT),
        ("change_look_style", CHANGE_LOOK_STYLE),
        ("set_look_guidelines", SET_LOOK_GUIDELINES),
        ("set_look_shot_types", SET_LOOK_SHOT_TYPES),
        ("remove_look", REMOVE_LOOK),
        ("approve_prediction", APPROVE_PREDICTION),
        ("reject_prediction", REJECT_PREDICTION),
        ("request_revision", REQUEST_REVISION),
        ("request_video", REQUEST_VIDEO),
        ("comment_on_prediction", COMMENT_ON_PREDICTION),
        ("reset_review", RESET_REVIEW),
        ("cancel_generation", CANCEL_GENERATION),
        ("retry_generation", RETRY_GENERATION),
        ("define_channel_preset", DEFINE_CHANNEL_PRESET),
        ("remove_channel_preset", REMOVE_CHANNEL_PRESET),
        ("request_export", REQUEST_EXPORT),
        ("aggregate_history", AUDIT),
        ("audit_trail", AUDIT),
        ("list_events", EVENTS),
        ("upload_product_image", UPLOAD_PRODUCT_IMAGE),
        ("upload_subject_image", UPLOAD_SUBJECT_IMAGE),
        ("upload_style_reference", UPLOAD_STYLE_REFERENCE),
        ("start_import", START_IMPORT),
        ("cancel_import", CANCEL_IMPORT),
        ("list_imports", READ),
        ("get_import", READ),
        ("import_errors", READ),
    ];
}

/// Every `/api/v1` route.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/session", post(sign_in).delete(sign_out))
        .route("/api/v1/me", axum::routing::get(me))
        .route("/api/v1/password", post(set_password))
        .route("/api/v1/brands", post(create_brand))
        .route("/api/v1/brands/{brand}/members", post(add_member))
        .route("/api/v1/brands/{brand}/members/{member}", delete(remove_member))
        .route("/api/v1/brands/{brand}/members/{member}/role", put(change_role))
        .route("/api/v1/brands/{brand}/api-clients", post(register_api_client))
        .route("/api/v1/brands/{brand}/api-clients/{client}", delete(revoke_api_client))
        .route("/api/v1/brands/{brand}/products", post(create_product))
        .route("/api/v1/brands/{brand}/products/{product}", patch(update_product))
        .route("/api/v1/brands/{brand}/products/{product}/archive", post(archive_product))
        .route("/api/v1/brands/{brand}/products/{product}/restore", post(restore_product))
        .merge(crate::configure::router())
        .merge(crate::queries::router())
        .merge(crate::review::router())
        .merge(crate::operate::router())
        .merge(crate::live::router())
        .merge(crate::events::router())
        .merge(crate::audit::router())
        .merge(crate::uploads::router())
        .merge(crate::imports::router())
}

pub(crate) use crate::extract::{Body, OptionalBody};

/// What a command did, as the API reports it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The id of the resource the command addressed.
    pub id: String,
    /// The stream sequence to wait for to read this command's effect.
    pub stream_sequence: u64,
    /// The resource's version after the command.
    pub version: u64,
    /// How many events the command recorded (0 when it changed nothing).
    pub events: usize,
    /// True when this Idempotency-Key had been used for this command before.
    pub already_applied: bool,
}

impl Accepted {
    fn from_outcome<A: Aggregate>(id: &str, outcome: &Outcome<A>) -> Self {
        Accepted {
            id: id.to_owned(),
            stream_sequence: outcome.stream_sequence,
            version: outcome.aggregate_version,
            events: outcome.events.len(),
            already_applied: outcome.already_applied,
        }
    }

    /// Like [`Accepted::respond`], with the export predictions left out as
    /// delivered unchanged before (`skipped_unchanged`).
    pub(crate) fn respond_with_skipped(self, created: bool, skipped: Vec<String>) -> Response {
        let status = if created && !self.already_applied { StatusCode::CREATED } else { StatusCode::OK };
        let sequence = HeaderValue::from(self.stream_sequence);
        let mut body = serde_json::to_value(&self).unwrap_or_default();
        body["skipped_unchanged"] = serde_json::json!(skipped);
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(STREAM_SEQUENCE_HEADER, sequence);
        response
    }

    pub(crate) fn respond(self, created: bool) -> Response {
        let status = if created && !self.already_applied { StatusCode::CREATED } else { StatusCode::OK };
        let sequence = HeaderValue::from(self.stream_sequence);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(STREAM_SEQUENCE_HEADER, sequence);
        response
    }
}

/// The command metadata of a request: the Idempotency-Key (scoped to the
/// caller, so two callers cannot collide) or a fresh id.
pub(crate) fn command_meta(principal: &Principal, headers: &HeaderMap) -> Result<CommandMeta, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(CommandMeta::generated(principal.actor()));
    };
    let key = value.to_str().map_err(|_| ApiError::field("Idempotency-Key", "it must be ASCII text"))?;
    if !well_formed_key(key) {
        return Err(ApiError::field(
            "Idempotency-Key",
            "give 1 to 64 visible ASCII characters without spaces, e.g. a UUID",
        ));
    }
    Ok(CommandMeta::new(format!("{}:{key}", principal.scope()), principal.actor()))
}

/// Whether `key` is an acceptable Idempotency-Key: 1 to 64 visible ASCII characters.
pub(crate) fn well_formed_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_graphic())
}

/// The id a create gives its new resource when the request names none: derived
/// from the caller's Idempotency-Key when there is one, so a retried create
/// addresses the resource the first attempt made (and the log finds the
/// command there), else a new time-ordered id.
pub(crate) fn generated_id(principal: &Principal, headers: &HeaderMap, kind: &str) -> String {
    let key = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|key| well_formed_key(key));
    match key {
        Some(key) => {
            let digest = sha2::Sha256::digest(format!("{}\n{key}\n{kind}", principal.scope()).as_bytes());
            hex::encode(&digest[..16])
        }
        None => uuid::Uuid::now_v7().simple().to_string(),
    }
}

pub(crate) fn parse<T, E: std::fmt::Display>(field: &str, result: Result<T, E>) -> Result<T, ApiError> {
    result.map_err(|error| ApiError::field(field, error))
}

pub(crate) fn brand_id(raw: &str) -> Result<BrandId, ApiError> {
    // An unparseable brand in the path cannot exist: answer like any unknown brand.
    BrandId::parse(raw).map_err(|_| ApiError::NotFound(format!("brand {raw} not found")))
}

pub(crate) async fn execute<A: Aggregate>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    brand: &BrandId,
    id: &str,
    command: A::Command,
) -> Result<Accepted, ApiError> {
    Ok(execute_for_state::<A>(state, principal, headers, brand, id, command).await?.0)
}

/// Like [`execute`], with the aggregate's state after the command.
pub(crate) async fn execute_for_state<A: Aggregate>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    brand: &BrandId,
    id: &str,
    command: A::Command,
) -> Result<(Accepted, A), ApiError> {
    let meta = command_meta(principal, headers)?;
    let address = CommandHandler::address::<A>(brand, id)?;
    let outcome = state.commands.execute::<A>(&address, &meta, &command).await?;
    // This gateway's next request must see its own membership change even if
    // the published event has not reached the cache's subscription yet.
    if let Some(brand_state) =
        (&outcome.state as &dyn std::any::Any).downcast_ref::<gps_domain::brand::Brand>()
    {
        state.access.brand_changed(&state.log, brand, brand_state.clone(), outcome.aggregate_version);
    }
    Ok((Accepted::from_outcome(id, &outcome), outcome.state))
}

// ---------------------------------------------------------------------------
// Sessions.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    email: String,
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SignedIn {
    user: auth::User,
    /// Send it back as `x-csrf-token` on every write made with the cookie.
    csrf_token: String,
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body = SignIn, responses((status = 200, description = "Signed in; the session cookie is set", body = SignedIn), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "The email or the password is not right", body = crate::error::Problem, content_type = "application/problem+json"), (status = 429, description = "Too many failed sign-ins for this account from this address, or from this address; `Retry-After` says when to try again", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    peer: auth::Peer,
    source: auth::SourceAddress,
    headers: HeaderMap,
    Body(body): Body<SignIn>,
) -> Result<Response, ApiError> {
    let (user, token, csrf_token) = auth::sign_in(&state, &body.email, &body.password, &source).await?;
    let mut response = Json(SignedIn { user, csrf_token }).into_response();
    let secure = auth::secure_cookies(&state, &peer, &headers);
    response.headers_mut().insert(header::SET_COOKIE, auth::session_cookie(&token, secure)?);
    Ok(response)
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204, description = "Signed out")))]
pub(crate) async fn sign_out(
    headers: HeaderMap,
    peer: auth::Peer,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    if let Some(token) = auth::session_token(&headers) {
        auth::sign_out(&state, &token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let secure = auth::secure_cookies(&state, &peer, &headers);
    response.headers_mut().insert(header::SET_COOKIE, auth::cleared_session_cookie(secure));
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPassword {
    /// The one-time token from the link in the mail.
    token: String,
    /// The new password (at least 12 characters).
    password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PasswordSet {
    /// The person whose password was set; they sign in with their address.
    user_id: String,
}

#[utoipa::path(post, path = "/api/v1/password", tag = "session", request_body = SetPassword, responses((status = 200, description = "Password set; the token is used up and every other link of the person ended; sign in with POST /api/v1/session", body = PasswordSet), (status = 400, description = "Invalid request; `field` names what is wrong: `password` (too short or too long; the token stays usable), or `token` (unknown, already used or expired: ask the brand owner to add you again, or an operator to run `gps admin set-password`)", body = crate::error::Problem, content_type = "application/problem+json")))]
pub(crate) async fn set_password(
    State(state): State<AppState>,
    Body(body): Body<SetPassword>,
) -> Result<Json<PasswordSet>, ApiError> {
    let user_id = crate::invites::set_password_with_token(&state, &body.token, &body.password).await?;
    Ok(Json(PasswordSet { user_id: user_id.to_string() }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    kind: &'static str,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<String>,
    /// The brands a signed-in person belongs to, with their role (absent for API keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    brands: Option<Vec<gps_projections::queries::Membership>>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "session", responses((status = 200, description = "Who is calling", body = Me), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Me>, ApiError> {
    Ok(Json(match principal {
        Principal::User { user_id } => {
            let brands = gps_projections::queries::memberships_of(&state.db, user_id.as_str()).await?;
            Me { kind: "user", id: user_id.to_string(), brand: None, brands: Some(brands) }
        }
        Principal::ApiClient { brand, api_client_id } => Me {
            kind: "api_client",
            id: api_client_id.to_string(),
            brand: Some(brand.to_string()),
            brands: None,
        },
    }))
}

// ---------------------------------------------------------------------------
// Brands, members, API clients.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBrand {
    brand_id: String,
    name: String,
}

#[utoipa::path(post, path = "/api/v1/brands", tag = "brands", request_body = CreateBrand, responses((status = 201, description = "Brand created; the caller is its owner", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Not allowed to create brands: API clients never are, and persons only when they are platform admins (unless the installation lets any person create brands)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_brand(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Body(body): Body<CreateBrand>,
) -> Result<Response, ApiError> {
    let Principal::User { user_id } = &principal else {
        return Err(ApiError::Forbidden("API clients belong to one brand and cannot create brands".into()));
    };
    // A new brand is a new tenant: by default only a platform admin makes one.
    crate::accounts::may_create_brands(&state.credentials, state.brand_creation, user_id).await?;
    let brand = parse("brand_id", BrandId::parse(&body.brand_id))?;
    let name = parse("name", Name::parse(&body.name))?;
    let user = user_of(&state, user_id).await?;
    let command = BrandCommand::CreateBrand {
        brand_id: brand.clone(),
        name,
        owner_member_id: user_id.clone(),
        owner_display_name: parse("display_name", Name::parse(&user.display_name))?,
        owner_email: seal(&state, &parse("email", Email::parse(&user.email))?).await?,
    };
    let id = brand.to_string();
    Ok(execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?.respond(true))
}

/// Seals an email address with its person's key from the privacy vault, so
/// the log can forget it later (crypto-shredding).
async fn seal(state: &AppState, email: &Email) -> Result<gps_domain::brand::MemberEmail, ApiError> {
    gps_projections::privacy::seal_email(&state.credentials, email)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub(crate) async fn user_of(state: &AppState, user_id: &MemberId) -> Result<auth::User, ApiError> {
    crate::accounts::user_by_id(&state.db, &state.credentials, user_id.as_str())
        .await?
        .ok_or_else(|| ApiError::Unauthenticated("your account no longer exists".into()))
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| ApiError::field("role", "use owner, producer, reviewer, viewer or auditor"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMember {
    /// The person's sign-in address. When no account uses it, GPS makes one
    /// without a password; the mail to the person then carries a one-time
    /// link to choose it. The answer is the same either way.
    email: String,
    role: String,
    /// The name of the person if GPS has to make their account (default:
    /// from the address, `anna.b@…` → "Anna B"); a person who already has an
    /// account keeps their own name.
    #[serde(default)]
    display_name: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/members", tag = "members", params(("brand" = String, Path, description = "The brand id")), request_body = AddMember, responses((status = 201, description = "Member added (whether or not the address had an account: the answer does not tell); the person is mailed, with a one-time link to choose a password if they have none", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    peer: auth::Peer,
    headers: HeaderMap,
    link_base: Option<axum::Extension<crate::invites::LinkBase>>,
    Path(brand): Path<String>,
    Body(body): Body<AddMember>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::ADD_MEMBER).await?;
    let email = parse("email", Email::parse(&body.email))?;
    let role = parse_role(&body.role)?;
    let display_name =
        body.display_name.as_deref().map(|name| parse("display_name", Name::parse(name))).transpose()?;
    // One path whether or not the address has an account: the person is
    // found or made (without a password), then added and mailed.
    let new_user_id = parse("email", MemberId::parse(generated_id(&principal, &headers, "person")))?;
    let person = crate::invites::member_for_address(
        &state,
        &email,
        display_name.as_ref(),
        &new_user_id,
        principal.actor(),
    )
    .await?;
    let member_id = parse("email", MemberId::parse(&person.user.user_id))?;
    let command = BrandCommand::AddMember {
        member_id: member_id.clone(),
        display_name: parse("display_name", Name::parse(&person.user.display_name))?,
        email: seal(&state, &email).await?,
        role,
    };
    let id = brand.to_string();
    let (mut accepted, brand_state) =
        execute_for_state::<Brand>(&state, &principal, &headers, &brand, &id, command).await?;
    // A new member is mailed. Adding again someone who is already a member
    // with that role changes nothing, but mails a new link to a person still
    // without a password: that is how an owner resends a lost or expired
    // link (the answer is the same either way).
    let newly_added = accepted.events > 0;
    if !accepted.already_applied && (newly_added || person.needs_password) {
        let brand_name =
            brand_state.details.as_ref().map_or_else(|| id.clone(), |details| details.name.to_string());
        let base = crate::invites::link_base(&state, &peer, &headers, link_base.map(|e| e.0).as_ref());
        crate::invites::notify(&state, &brand, &brand_name, role, &person, &base).await;
    }
    accepted.id = member_id.to_string();
    Ok(accepted.respond(true))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeRole {
    role: String,
}

#[utoipa::path(put, path = "/api/v1/brands/{brand}/members/{member}/role", tag = "members", params(("brand" = String, Path, description = "The brand id"), ("member" = String, Path, description = "The member id")), request_body = ChangeRole, responses((status = 200, description = "Role changed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn change_role(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, member)): Path<(String, String)>,
    Body(body): Body<ChangeRole>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CHANGE_ROLE).await?;
    let member_id = parse("member", MemberId::parse(&member))?;
    let role = parse_role(&body.role)?;
    let id = brand.to_string();
    let command = BrandCommand::ChangeMemberRole { member_id, role };
    Ok(execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(delete, path = "/api/v1/brands/{brand}/members/{member}", tag = "members", params(("brand" = String, Path, description = "The brand id"), ("member" = String, Path, description = "The member id")), responses((status = 200, description = "Member removed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REMOVE_MEMBER).await?;
    let member_id = parse("member", MemberId::parse(&member))?;
    let id = brand.to_string();
    let command = BrandCommand::RemoveMember { member_id };
    Ok(execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterApiClient {
    #[serde(default)]
    api_client_id: Option<String>,
    name: String,
    role: String,
    /// What the key may be used for: `read`, `produce`, `review`, `audit`,
    /// `stream` (following the event stream), each within what the role
    /// allows. Omitted: every scope the role allows except `stream`, which is
    /// what keys could do before scopes existed.
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// The scopes a registration asks for, each one the role allows.
fn parse_scopes(role: Role, requested: Option<&[String]>) -> Result<BTreeSet<ApiScope>, ApiError> {
    let Some(requested) = requested else {
        return Ok(ApiClient::SCOPES_BEFORE_SCOPES_EXISTED
            .into_iter()
            .filter(|scope| auth::allows(role, auth::action_of(*scope)))
            .collect());
    };
    if requested.is_empty() {
        return Err(ApiError::field("scopes", "give at least one scope, e.g. [\"stream\"]"));
    }
    let mut scopes = BTreeSet::new();
    for raw in requested {
        let scope = parse("scopes", ApiScope::parse(raw))?;
        if !auth::allows(role, auth::action_of(scope)) {
            return Err(ApiError::field(
                "scopes",
                format!(
                    "the {role} role does not allow the `{scope}` scope; drop it or give the client a role that allows it"
                ),
            ));
        }
        scopes.insert(scope);
    }
    Ok(scopes)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RegisteredApiClient {
    #[serde(flatten)]
    accepted: Accepted,
    /// The key, shown this once; only its hash is kept. Absent when a retried
    /// registration (same Idempotency-Key) is answered again: the key was
    /// shown in the first answer, and no second key is made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    api_key: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/api-clients", tag = "api-clients", params(("brand" = String, Path, description = "The brand id")), request_body = RegisterApiClient, responses((status = 201, description = "Client registered; the key is shown this once", body = RegisteredApiClient), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn register_api_client(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<RegisterApiClient>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REGISTER_API_CLIENT).await?;
    let client_id = match body.api_client_id {
        Some(raw) => parse("api_client_id", ApiClientId::parse(raw))?,
        None => parse("api_client_id", ApiClientId::parse(generated_id(&principal, &headers, "api_client")))?,
    };
    let name = parse("name", Name::parse(&body.name))?;
    let role = parse_role(&body.role)?;
    let scopes = parse_scopes(role, body.scopes.as_deref())?;
    // The event is recorded before the key is stored: a key never works for
    // a client the log does not have, and a failure after the event leaves
    // nothing to clean up (a retry with the same Idempotency-Key stores it).
    let (prefix, key) = auth::new_api_key()?;
    let command = BrandCommand::RegisterApiClient {
        api_client_id: client_id.clone(),
        name,
        role,
        key_fingerprint: parse("key", KeyFingerprint::parse(&prefix))?,
        scopes,
    };
    let id = brand.to_string();
    let (mut accepted, brand_state) =
        execute_for_state::<Brand>(&state, &principal, &headers, &brand, &id, command).await?;
    let api_key = if accepted.already_applied {
        // A retry of a registration the log has: its key was shown once. Only
        // when the first attempt failed before storing it is one made now,
        // under the fingerprint the log recorded.
        let recorded = brand_state
            .api_clients
            .get(&client_id)
            .map(|registered| registered.key_fingerprint.as_str().to_owned())
            .ok_or_else(|| {
                ApiError::Internal(format!("registered API client {client_id} is not in its brand"))
            })?;
        let key = auth::api_key_under(&recorded)?;
        auth::store_api_key(&state.credentials, &brand, &client_id, &recorded, &key).await?.then_some(key)
    } else if auth::store_api_key(&state.credentials, &brand, &client_id, &prefix, &key).await? {
        Some(key)
    } else {
        return Err(ApiError::Internal(format!(
            "API client {client_id} of brand {brand} was registered, but a key for it was stored before"
        )));
    };
    accepted.id = client_id.to_string();
    let status = if accepted.already_applied { StatusCode::OK } else { StatusCode::CREATED };
    let sequence = HeaderValue::from(accepted.stream_sequence);
    let mut response = (status, Json(RegisteredApiClient { accepted, api_key })).into_response();
    response.headers_mut().insert(STREAM_SEQUENCE_HEADER, sequence);
    response.extensions_mut().insert(crate::idempotency::OneTimeSecrets(&["api_key"]));
    Ok(response)
}

#[utoipa::path(delete, path = "/api/v1/brands/{brand}/api-clients/{client}", tag = "api-clients", params(("brand" = String, Path, description = "The brand id"), ("client" = String, Path, description = "The API client id")), responses((status = 200, description = "Client revoked", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn revoke_api_client(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, client)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::REVOKE_API_CLIENT).await?;
    let api_client_id = parse("client", ApiClientId::parse(&client))?;
    let id = brand.to_string();
    let command = BrandCommand::RevokeApiClient { api_client_id: api_client_id.clone(), reason: None };
    let accepted = execute::<Brand>(&state, &principal, &headers, &brand, &id, command).await?;
    auth::revoke_api_key(&state.credentials, &brand, &api_client_id).await?;
    Ok(accepted.respond(false))
}

// ---------------------------------------------------------------------------
// Products.

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProduct {
    #[serde(default)]
    product_id: Option<String>,
    sku: String,
    name: String,
    category: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/products", tag = "products", params(("brand" = String, Path, description = "The brand id")), request_body = CreateProduct, responses((status = 201, description = "Product created", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Body(body): Body<CreateProduct>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CREATE_PRODUCT).await?;
    let product_id = match body.product_id {
        Some(raw) => parse("product_id", ProductId::parse(raw))?,
        None => parse("product_id", ProductId::parse(generated_id(&principal, &headers, "product")))?,
    };
    let command = ProductCommand::CreateProduct {
        product_id: product_id.clone(),
        brand_id: brand.clone(),
        sku: parse("sku", Sku::parse(&body.sku))?,
        name: parse("name", Name::parse(&body.name))?,
        category: parse("category", Category::parse(&body.category))?,
        attributes: body.attributes,
    };
    // The SKU is claimed before the product is created: one product per SKU.
    let meta = command_meta(&principal, &headers)?;
    let outcome = state.sku_claims.execute_product(&brand, &meta, &command).await?;
    Ok(Accepted::from_outcome(product_id.as_str(), &outcome).respond(true))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProduct {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
}

#[utoipa::path(patch, path = "/api/v1/brands/{brand}/products/{product}", tag = "products", params(("brand" = String, Path, description = "The brand id"), ("product" = String, Path, description = "The product id")), request_body = UpdateProduct, responses((status = 200, description = "Details changed", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn update_product(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, product)): Path<(String, String)>,
    Body(body): Body<UpdateProduct>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPDATE_PRODUCT).await?;
    let product_id = parse("product", ProductId::parse(&product))?;
    let command = ProductCommand::UpdateProductDetails {
        name: body.name.map(|raw| parse("name", Name::parse(raw))).transpose()?,
        category: body.category.map(|raw| parse("category", Category::parse(raw))).transpose()?,
        attributes: body.attributes,
    };
    let id = product_id.to_string();
    Ok(execute::<Product>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Archive {
    #[serde(default)]
    reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/products/{product}/archive", tag = "products", params(("brand" = String, Path, description = "The brand id"), ("product" = String, Path, description = "The product id")), request_body = Option<Archive>, responses((status = 200, description = "Archived", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn archive_product(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, product)): Path<(String, String)>,
    // The body is optional: archiving needs no reason.
    OptionalBody(archive): OptionalBody<Archive>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::ARCHIVE_PRODUCT).await?;
    let product_id = parse("product", ProductId::parse(&product))?;
    let reason = archive.reason;
    let command = ProductCommand::ArchiveProduct {
        reason: reason.map(|raw| parse("reason", Text::parse(raw))).transpose()?,
    };
    let id = product_id.to_string();
    Ok(execute::<Product>(&state, &principal, &headers, &brand, &id, command).await?.respond(false))
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/products/{product}/restore", tag = "products", params(("brand" = String, Path, description = "The brand id"), ("product" = String, Path, description = "The product id")), responses((status = 200, description = "Restored", body = Accepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "Breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn restore_product(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, product)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::RESTORE_PRODUCT).await?;
    let product_id = parse("product", ProductId::parse(&product))?;
    let id = product_id.to_string();
    Ok(execute::<Product>(&state, &principal, &headers, &brand, &id, ProductCommand::RestoreProduct)
        .await?
        .respond(false))
}
