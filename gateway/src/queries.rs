//! The `/api/v1` queries: brand-scoped reads served from the Postgres read
//! models (`gps-projections`), with cursor pagination, filters, and
//! read-your-writes: a request may ask to see at least the stream sequence a
//! command returned (`gps-min-sequence` header or `min_sequence` parameter);
//! the gateway waits for the read model up to `wait_ms` (default 5 s, at most
//! 30 s) and otherwise answers 503 "not yet consistent" rather than stale data.

use std::time::Duration;

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use gps_domain::ids::BrandId;
use gps_projections::queries::{
    self as read, ActivityView, ApiClientView, BrandView, ChannelPresetView, ExportDetail, ExportView,
    GenerationFilter, GenerationView, LookView, MemberView, Page, PageRequest, PredictionDetail,
    PredictionFilter, PredictionView, ProductDeliveryView, ProductDetail, ProductFilter, ProductView,
    ShootingView, StyleView, SubjectDetail, SubjectView, UsageReport,
};
use serde::Deserialize;

use crate::auth::{self, Principal};
use crate::routes::{actions, brand_id};
use crate::{ApiError, AppState};

/// The header asking to read at least a stream sequence.
pub const MIN_SEQUENCE_HEADER: &str = "gps-min-sequence";
/// How long a read waits for the read model by default.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// The longest a read may ask to wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// Every query route.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}", get(get_brand))
        .route("/api/v1/brands/{brand}/members", get(list_members))
        .route("/api/v1/brands/{brand}/api-clients", get(list_api_clients))
        .route("/api/v1/brands/{brand}/channel-presets", get(list_channel_presets))
        .route("/api/v1/brands/{brand}/products", get(list_products))
        .route("/api/v1/brands/{brand}/products/{product}", get(get_product))
        .route("/api/v1/brands/{brand}/subjects", get(list_subjects))
        .route("/api/v1/brands/{brand}/subjects/{subject}", get(get_subject))
        .route("/api/v1/brands/{brand}/styles", get(list_styles))
        .route("/api/v1/brands/{brand}/styles/{style}", get(get_style))
        .route("/api/v1/brands/{brand}/shootings", get(list_shootings))
        .route("/api/v1/brands/{brand}/shootings/{shooting}", get(get_shooting))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks", get(list_looks))
        .route("/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}", get(get_look))
        .route("/api/v1/brands/{brand}/generations", get(list_generations))
        .route("/api/v1/brands/{brand}/generations/{generation}", get(get_generation))
        .route("/api/v1/brands/{brand}/predictions", get(list_predictions))
        .route("/api/v1/brands/{brand}/predictions/{prediction}", get(get_prediction))
        .route("/api/v1/brands/{brand}/exports", get(list_exports))
        .route("/api/v1/brands/{brand}/exports/{export}", get(get_export))
        .route("/api/v1/brands/{brand}/activity", get(list_activity))
        .route("/api/v1/brands/{brand}/usage", get(get_usage))
        .route("/api/v1/brands/{brand}/exports/{export}/download", get(download_export))
        .route("/api/v1/brands/{brand}/products/{product}/deliveries", get(list_product_deliveries))
}

/// Paging and consistency parameters shared by every read.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Paging {
    /// The `next_cursor` of the previous page, unchanged.
    #[param(pattern = "^677073313a(2d)?(3[0-9]){1,18}$")]
    cursor: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Read at least this stream sequence (a command's `stream_sequence`):
    /// the answer waits until the read model has applied it. A sequence the
    /// log has not reached is refused at once (409, naming the log's last
    /// sequence); one the read model has not applied within `wait_ms` answers
    /// 503 with `Retry-After`.
    min_sequence: Option<u64>,
    /// How long to wait for `min_sequence`, in milliseconds: 0 to 30000 (default 5000).
    #[param(minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

/// The query of a single read, as documented: [`Paging`] without the page,
/// which a single read has none of (it parses `Paging` and ignores
/// `cursor` and `limit`, so the document does not offer them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Only documents the query; handlers read it as `Paging`.
pub(crate) struct Consistency {
    /// Read at least this stream sequence (a command's `stream_sequence`):
    /// the answer waits until the read model has applied it. A sequence the
    /// log has not reached is refused at once (409, naming the log's last
    /// sequence); one the read model has not applied within `wait_ms` answers
    /// 503 with `Retry-After`.
    min_sequence: Option<u64>,
    /// How long to wait for `min_sequence`, in milliseconds: 0 to 30000 (default 5000).
    #[param(minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

impl Paging {
    pub(crate) fn page(&self) -> PageRequest {
        PageRequest { cursor: self.cursor.clone(), limit: self.limit }
    }
}

/// Checks access and waits for the read model when asked to.
pub(crate) async fn readable(
    state: &AppState,
    principal: &Principal,
    brand: &str,
    operation: auth::Action,
    headers: &HeaderMap,
    paging: &Paging,
    projection: &str,
) -> Result<BrandId, ApiError> {
    let brand = brand_id(brand)?;
    auth::authorize(state, principal, &brand, operation).await?;
    let header = match headers.get(MIN_SEQUENCE_HEADER) {
        Some(value) => {
            Some(value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
                ApiError::field(MIN_SEQUENCE_HEADER, "give a stream sequence, a whole number")
            })?)
        }
        None => None,
    };
    if let Some(limit) = paging.limit
        && !(1..=read::MAX_PAGE_SIZE).contains(&limit)
    {
        return Err(ApiError::field(
            "limit",
            format!("{limit} items per page is not offered; give 1 to {}", read::MAX_PAGE_SIZE),
        ));
    }
    let wait = wait_of(paging.wait_ms)?;
    match (paging.min_sequence, header) {
        (Some(query), Some(header)) if header > query => {
            await_sequence(state, projection, MIN_SEQUENCE_HEADER, header, wait).await?
        }
        (Some(sequence), _) => await_sequence(state, projection, "min_sequence", sequence, wait).await?,
        (None, Some(header)) => await_sequence(state, projection, MIN_SEQUENCE_HEADER, header, wait).await?,
        (None, None) => {}
    }
    Ok(brand)
}

/// How long a read may wait for its `min_sequence`: `wait_ms` when given
/// (at most [`MAX_WAIT`]; more is refused, not shortened, so a caller learns
/// the bound), else [`DEFAULT_WAIT`].
pub(crate) fn wait_of(wait_ms: Option<u64>) -> Result<Duration, ApiError> {
    match wait_ms {
        None => Ok(DEFAULT_WAIT),
        Some(ms) if Duration::from_millis(ms) <= MAX_WAIT => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(ApiError::field(
            "wait_ms",
            format!("{ms} is over the longest wait; give 0 to {} milliseconds", MAX_WAIT.as_millis()),
        )),
    }
}

/// Waits until `projection` has applied the log up to `sequence`.
///
/// A sequence the log has not reached yet is the caller's mistake (no
/// command of theirs answered it), so it is refused at once with 409 (the
/// value is well formed; the log's state does not have it), naming the
/// parameter and the log's last sequence, instead of holding the request for
/// the whole wait. A
/// sequence the log has but the read model has not applied yet is waited for;
/// when the wait ends first the answer is 503 with `Retry-After`.
pub(crate) async fn await_sequence(
    state: &AppState,
    projection: &str,
    field: &str,
    sequence: u64,
    wait: Duration,
) -> Result<(), ApiError> {
    // The usual case: the read model is already there; one checkpoint read.
    if read::wait_for_sequence(&state.db, Some(projection), sequence, Duration::ZERO).await.is_ok() {
        return Ok(());
    }
    let last = log_last_sequence(state).await?;
    if sequence > last {
        return Err(ApiError::BeyondTheLog {
            field: field.to_owned(),
            message: format!(
                "the event log ends at sequence {last}; {sequence} has not been written. Give the \
                 stream_sequence a command answered (at most {last})"
            ),
        });
    }
    // The last "not yet" says how far the read model got, for the 503.
    let last_answer = std::sync::Mutex::new(None);
    let reached = state
        .progress
        .wait_until(projection, sequence, wait, || {
            let attempt = read::wait_for_sequence(&state.db, Some(projection), sequence, Duration::ZERO);
            let last_answer = &last_answer;
            async move {
                let answer = attempt.await;
                let reached = answer.is_ok();
                *last_answer.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = answer.err();
                reached
            }
        })
        .await;
    let last_answer = last_answer.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    match (reached, last_answer) {
        (true, _) => Ok(()),
        (false, Some(not_yet)) => Err(ApiError::NotYetConsistent(not_yet.to_string())),
        (false, None) => Err(ApiError::NotYetConsistent(format!(
            "the {projection} read model has not reached sequence {sequence} yet; retry shortly"
        ))),
    }
}

/// The last sequence of the event log, as the server reports it now.
async fn log_last_sequence(state: &AppState) -> Result<u64, ApiError> {
    let name = &state.log.settings().name;
    let stream = state
        .log
        .jetstream()
        .get_stream(name)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the event log {name}: {e}")))?;
    Ok(stream.cached_info().state.last_sequence)
}

pub(crate) fn found<T>(value: Option<T>, what: &str, id: &str) -> Result<Json<T>, ApiError> {
    value.map(Json).ok_or_else(|| ApiError::NotFound(format!("{what} {id} not found")))
}

impl From<read::QueryError> for ApiError {
    fn from(error: read::QueryError) -> Self {
        match error {
            read::QueryError::InvalidCursor => ApiError::field("cursor", error),
            read::QueryError::Postgres(error) => ApiError::from(error),
        }
    }
}

/// Declares a list handler: its route, projection, filter and query.
macro_rules! list_handler {
    ($name:ident, $path:literal, $tag:literal, $projection:literal, $item:ty, $filters:ty, |$state:ident, $brand:ident, $filter:ident, $page:ident| $query:expr) => {
        #[utoipa::path(get, path = $path, tag = $tag,
            params(("brand" = String, Path, description = "The brand id"), Paging, $filters),
            responses(
                (status = 200, description = "A page, newest first", body = Page<$item>),
                (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
            ),
            security(("session" = []), ("api_key" = [])))]
        pub(crate) async fn $name(
            State($state): State<AppState>,
            principal: Principal,
            headers: HeaderMap,
            Path(brand): Path<String>,
            Query(paging): Query<Paging>,
            Query($filter): Query<$filters>,
        ) -> Result<Json<Page<$item>>, ApiError> {
            let $brand = readable(&$state, &principal, &brand, actions::READ, &headers, &paging, $projection).await?;
            let $page = paging.page();
            Ok(Json($query.await?))
        }
    };
}

/// Declares a detail handler.
macro_rules! get_handler {
    ($name:ident, $path:literal, $tag:literal, $projection:literal, $item:ty, $what:literal, $id:literal, |$state:ident, $brand:ident, $key:ident| $query:expr) => {
        #[utoipa::path(get, path = $path, tag = $tag,
            params(("brand" = String, Path, description = "The brand id"), ($id = String, Path, description = "The id"), Consistency),
            responses(
                (status = 200, description = "Found", body = $item),
                (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
            ),
            security(("session" = []), ("api_key" = [])))]
        pub(crate) async fn $name(
            State($state): State<AppState>,
            principal: Principal,
            headers: HeaderMap,
            Path((brand, $key)): Path<(String, String)>,
            Query(paging): Query<Paging>,
        ) -> Result<Json<$item>, ApiError> {
            let $brand = readable(&$state, &principal, &brand, actions::READ, &headers, &paging, $projection).await?;
            found($query.await?, $what, &$key)
        }
    };
}

/// No filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NoFilter {}

/// Product filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProductFilters {
    /// Only this category.
    category: Option<String>,
    /// Only archived (`true`) or active (`false`) products.
    archived: Option<bool>,
    /// Only products whose SKU or name contains this text (any case).
    q: Option<String>,
    /// Only products with (`true`) or without (`false`) images.
    has_images: Option<bool>,
    /// Only products used (`true`) or not used (`false`) in a look of a shooting.
    in_shootings: Option<bool>,
}

/// Status filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusFilter {
    /// Only this status.
    status: Option<String>,
}

/// Generation filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GenerationFilters {
    /// Only generations of this shooting.
    shooting: Option<String>,
    /// Only generations of this look.
    look: Option<String>,
    /// Only this status (requested, running, completed, failed, cancelled).
    status: Option<String>,
}

/// Prediction filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PredictionFilters {
    /// Only this review state (pending, approved, rejected, revision_requested).
    review_state: Option<String>,
    /// Only predictions of this generation.
    generation: Option<String>,
    /// Only predictions of this look.
    look: Option<String>,
    /// Only predictions the quality gate flagged (`flagged`) or passed (`passed`).
    #[param(inline)]
    quality: Option<QualityFilter>,
}

/// The quality gate's verdict to filter predictions by.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QualityFilter {
    /// Every check passed.
    Passed,
    /// At least one check failed.
    Flagged,
}

/// Activity filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityFilters {
    /// Only events of this aggregate kind (with `aggregate_id`).
    aggregate_type: Option<String>,
    /// Only events of this aggregate.
    aggregate_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}", tag = "brands",
    params(("brand" = String, Path, description = "The brand id"), Consistency),
    responses(
        (status = 200, description = "The brand", body = BrandView),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn get_brand(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<Json<BrandView>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "brands").await?;
    found(read::get_brand(&state.db, brand.as_str()).await?, "brand", brand.as_str())
}

list_handler!(
    list_members,
    "/api/v1/brands/{brand}/members",
    "members",
    "brands",
    MemberView,
    NoFilter,
    |state, brand, _filter, page| read::list_members(&state.db, &state.credentials, brand.as_str(), &page)
);
list_handler!(
    list_api_clients,
    "/api/v1/brands/{brand}/api-clients",
    "api-clients",
    "brands",
    ApiClientView,
    NoFilter,
    |state, brand, _filter, page| read::list_api_clients(&state.db, brand.as_str(), &page)
);
list_handler!(
    list_channel_presets,
    "/api/v1/brands/{brand}/channel-presets",
    "channel-presets",
    "brands",
    ChannelPresetView,
    NoFilter,
    |state, brand, _filter, page| read::list_channel_presets(&state.db, brand.as_str(), &page)
);
list_handler!(
    list_products,
    "/api/v1/brands/{brand}/products",
    "products",
    "catalog",
    ProductView,
    ProductFilters,
    |state, brand, filter, page| async {
        let filter = ProductFilter {
            category: filter.category,
            archived: filter.archived,
            search: filter.q,
            has_images: filter.has_images,
            in_shootings: filter.in_shootings,
        };
        let mut page = read::list_products(&state.db, brand.as_str(), &filter, &page).await?;
        for product in &mut page.items {
            sign_cover_url(&state, &brand, product);
        }
        Ok::<_, read::QueryError>(page)
    }
);
get_handler!(
    get_product,
    "/api/v1/brands/{brand}/products/{product}",
    "products",
    "catalog",
    ProductDetail,
    "product",
    "product",
    |state, brand, id| async {
        let mut detail = read::get_product(&state.db, brand.as_str(), &id).await?;
        if let Some(detail) = detail.as_mut() {
            sign_image_urls(&state, &brand, &mut detail.images);
            sign_cover_url(&state, &brand, &mut detail.product);
        }
        Ok::<_, read::QueryError>(detail)
    }
);
list_handler!(
    list_subjects,
    "/api/v1/brands/{brand}/subjects",
    "subjects",
    "catalog",
    SubjectView,
    NoFilter,
    |state, brand, _filter, page| read::list_subjects(&state.db, brand.as_str(), &page)
);
get_handler!(
    get_subject,
    "/api/v1/brands/{brand}/subjects/{subject}",
    "subjects",
    "catalog",
    SubjectDetail,
    "subject",
    "subject",
    |state, brand, id| async {
        let mut detail = read::get_subject(&state.db, brand.as_str(), &id).await?;
        if let Some(detail) = detail.as_mut() {
            sign_image_urls(&state, &brand, &mut detail.images);
        }
        Ok::<_, read::QueryError>(detail)
    }
);

/// Fills a product's `cover_url` with a signed CDN URL of its first image.
fn sign_cover_url(state: &AppState, brand: &gps_domain::ids::BrandId, product: &mut ProductView) {
    let hash =
        product.cover_hash.as_deref().and_then(|hash| gps_domain::values::ContentHash::parse(hash).ok());
    product.cover_url =
        hash.map(|hash| state.media.signed_url(&gps_storage::ObjectKey::content(brand, &hash)));
}

/// Fills each image's `url` with a signed CDN URL of its working copy.
fn sign_image_urls(state: &AppState, brand: &gps_domain::ids::BrandId, images: &mut [read::ImageView]) {
    for image in images {
        if let Ok(hash) = gps_domain::values::ContentHash::parse(&image.content_hash) {
            image.url = Some(state.media.signed_url(&gps_storage::ObjectKey::content(brand, &hash)));
        }
    }
}
list_handler!(
    list_styles,
    "/api/v1/brands/{brand}/styles",
    "styles",
    "catalog",
    StyleView,
    NoFilter,
    |state, brand, _filter, page| read::list_styles(&state.db, brand.as_str(), &page)
);
get_handler!(
    get_style,
    "/api/v1/brands/{brand}/styles/{style}",
    "styles",
    "catalog",
    StyleView,
    "style",
    "style",
    |state, brand, id| read::get_style(&state.db, brand.as_str(), &id)
);
list_handler!(
    list_shootings,
    "/api/v1/brands/{brand}/shootings",
    "shootings",
    "production",
    ShootingView,
    StatusFilter,
    |state, brand, filter, page| read::list_shootings(
        &state.db,
        brand.as_str(),
        filter.status.as_deref(),
        &page
    )
);
get_handler!(
    get_shooting,
    "/api/v1/brands/{brand}/shootings/{shooting}",
    "shootings",
    "production",
    ShootingView,
    "shooting",
    "shooting",
    |state, brand, id| read::get_shooting(&state.db, brand.as_str(), &id)
);
list_handler!(
    list_generations,
    "/api/v1/brands/{brand}/generations",
    "generations",
    "production",
    GenerationView,
    GenerationFilters,
    |state, brand, filter, page| read::list_generations(
        &state.db,
        brand.as_str(),
        &GenerationFilter { shooting_id: filter.shooting, look_id: filter.look, status: filter.status },
        &page
    )
);
get_handler!(
    get_generation,
    "/api/v1/brands/{brand}/generations/{generation}",
    "generations",
    "production",
    GenerationView,
    "generation",
    "generation",
    |state, brand, id| read::get_generation(&state.db, brand.as_str(), &id)
);
list_handler!(
    list_predictions,
    "/api/v1/brands/{brand}/predictions",
    "predictions",
    "review",
    PredictionView,
    PredictionFilters,
    |state, brand, filter, page| async {
        let filter = PredictionFilter {
            review_state: filter.review_state,
            generation_id: filter.generation,
            look_id: filter.look,
            quality_passed: filter.quality.map(|q| matches!(q, QualityFilter::Passed)),
        };
        let mut page = read::list_predictions(&state.db, brand.as_str(), &filter, &page).await?;
        for prediction in &mut page.items {
            sign_prediction_url(&state, &brand, prediction);
        }
        Ok::<_, read::QueryError>(page)
    }
);

/// Fills a prediction's `url` with a signed CDN URL of its image.
fn sign_prediction_url(state: &AppState, brand: &gps_domain::ids::BrandId, prediction: &mut PredictionView) {
    if let Ok(hash) = gps_domain::values::ContentHash::parse(&prediction.content_hash) {
        prediction.url = Some(state.media.signed_url(&gps_storage::ObjectKey::content(brand, &hash)));
    }
}
get_handler!(
    get_prediction,
    "/api/v1/brands/{brand}/predictions/{prediction}",
    "predictions",
    "review",
    PredictionDetail,
    "prediction",
    "prediction",
    |state, brand, id| async {
        let mut detail = read::get_prediction(&state.db, brand.as_str(), &id).await?;
        if let Some(detail) = detail.as_mut() {
            sign_prediction_url(&state, &brand, &mut detail.prediction);
        }
        Ok::<_, read::QueryError>(detail)
    }
);
list_handler!(
    list_exports,
    "/api/v1/brands/{brand}/exports",
    "exports",
    "delivery",
    ExportView,
    StatusFilter,
    |state, brand, filter, page| read::list_exports(
        &state.db,
        brand.as_str(),
        filter.status.as_deref(),
        &page
    )
);
get_handler!(
    get_export,
    "/api/v1/brands/{brand}/exports/{export}",
    "exports",
    "delivery",
    ExportDetail,
    "export",
    "export",
    |state, brand, id| read::get_export(&state.db, brand.as_str(), &id)
);
list_handler!(
    list_activity,
    "/api/v1/brands/{brand}/activity",
    "activity",
    "activity",
    ActivityView,
    ActivityFilters,
    |state, brand, filter, page| read::list_activity(
        &state.db,
        brand.as_str(),
        filter.aggregate_type.as_deref().zip(filter.aggregate_id.as_deref()),
        &page
    )
);

#[utoipa::path(get, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks", tag = "looks",
    params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"), Paging),
    responses(
        (status = 200, description = "A page of the shooting's looks, newest first", body = Page<LookView>),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn list_looks(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<LookView>>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "production").await?;
    Ok(Json(read::list_looks(&state.db, brand.as_str(), Some(&shooting), &paging.page()).await?))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/shootings/{shooting}/looks/{look}", tag = "looks",
    params(("brand" = String, Path, description = "The brand id"), ("shooting" = String, Path, description = "The shooting id"),
        ("look" = String, Path, description = "The look id"), Paging),
    responses(
        (status = 200, description = "The look", body = LookView),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn get_look(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, shooting, look)): Path<(String, String, String)>,
    Query(paging): Query<Paging>,
) -> Result<Json<LookView>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "production").await?;
    // A look is found only under its own shooting.
    let found_look =
        read::get_look(&state.db, brand.as_str(), &look).await?.filter(|view| view.shooting_id == shooting);
    found(found_look, "look", &look)
}

/// The months a usage report covers.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UsagePeriod {
    /// The first month, `YYYY-MM` (default: eleven months before `to`); at
    /// most 36 months before `to`.
    #[param(
        pattern = "^[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*[0-9]{4}-(0[1-9]|1[0-2])[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
    )]
    from: Option<String>,
    /// The last month, `YYYY-MM` (default: the current month, UTC).
    #[param(
        pattern = "^[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*[0-9]{4}-(0[1-9]|1[0-2])[\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$"
    )]
    to: Option<String>,
    /// Read at least this stream sequence (a command's `stream_sequence`);
    /// one the log has not reached is refused at once (409).
    min_sequence: Option<u64>,
    /// How long to wait for `min_sequence`, in milliseconds: 0 to 30000 (default 5000).
    #[param(minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

/// The longest period one usage report covers.
const MAX_USAGE_MONTHS: i32 = 36;

fn parse_month(field: &str, value: &str) -> Result<time::Date, ApiError> {
    let invalid =
        || ApiError::field(field, format!("{value:?} is not a month; give it as YYYY-MM, e.g. 2026-11"));
    let (year, month) = value.trim().split_once('-').ok_or_else(invalid)?;
    if year.len() != 4 || month.len() != 2 {
        return Err(invalid());
    }
    let year: i32 = year.parse().map_err(|_| invalid())?;
    let month: u8 = month.parse().map_err(|_| invalid())?;
    let month = time::Month::try_from(month).map_err(|_| invalid())?;
    time::Date::from_calendar_date(year, month, 1).map_err(|_| invalid())
}

fn months_between(from: time::Date, to: time::Date) -> i32 {
    (to.year() - from.year()) * 12 + i32::from(u8::from(to.month())) - i32::from(u8::from(from.month()))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/usage", tag = "usage",
    params(("brand" = String, Path, description = "The brand id"), UsagePeriod),
    responses(
        (status = 200, description = "Generation steps and their cost per month, provider and shooting", body = UsageReport),
        (status = 400, description = "Invalid period; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn get_usage(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Query(period): Query<UsagePeriod>,
) -> Result<Json<UsageReport>, ApiError> {
    let paging =
        Paging { cursor: None, limit: None, min_sequence: period.min_sequence, wait_ms: period.wait_ms };
    let brand =
        readable(&state, &principal, &brand, actions::READ_USAGE, &headers, &paging, "production").await?;
    let to = match &period.to {
        Some(to) => parse_month("to", to)?,
        None => {
            let today = time::OffsetDateTime::now_utc().date();
            time::Date::from_calendar_date(today.year(), today.month(), 1)
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
    };
    let from = match &period.from {
        Some(from) => parse_month("from", from)?,
        None => {
            let mut from = to;
            for _ in 0..11 {
                from = from
                    .previous_day()
                    .and_then(|d| time::Date::from_calendar_date(d.year(), d.month(), 1).ok())
                    .unwrap_or(from);
            }
            from
        }
    };
    if from > to {
        return Err(ApiError::field("from", "the first month is after the last; give from ≤ to"));
    }
    if months_between(from, to) >= MAX_USAGE_MONTHS {
        return Err(ApiError::field(
            "from",
            format!("a report covers at most {MAX_USAGE_MONTHS} months; ask for a shorter period"),
        ));
    }
    Ok(Json(read::usage_report(&state.db, brand.as_str(), from, to).await?))
}

/// Where an export's ZIP download is.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Download {
    /// A signed, expiring URL of the ZIP (also in the `Location` header).
    url: String,
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/exports/{export}/download", tag = "exports",
    params(("brand" = String, Path, description = "The brand id"), ("export" = String, Path, description = "The export id"), Consistency),
    responses(
        (status = 303, description = "The ZIP (renditions, manifest.csv, manifest.json) at a signed URL, in `Location` and the body", body = Download),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a ZIP download, or the ZIP is not built yet", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn download_export(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, export)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "delivery").await?;
    let detail = found(read::get_export(&state.db, brand.as_str(), &export).await?, "export", &export)?.0;
    let kind = detail.export.destination["kind"].as_str().unwrap_or_default().to_owned();
    if kind != "zip_download" {
        return Err(ApiError::Conflict(format!(
            "export {export} goes to a {kind} destination, not a ZIP download; see its renditions' locations"
        )));
    }
    let key = detail
        .renditions
        .iter()
        .filter_map(|r| {
            r.location
                .as_ref()?
                .as_str()?
                .strip_prefix("zip:")?
                .rsplit_once('/')
                .map(|(key, _)| key.to_owned())
        })
        .next()
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "export {export} has no ZIP yet (status {}); ask again when it is completed",
                detail.export.status
            ))
        })?;
    let key =
        gps_storage::ObjectKey::parse(&key).ok().filter(|key| key.brand() == &brand).ok_or_else(|| {
            ApiError::Internal(format!("export {export} names an invalid ZIP location {key:?}"))
        })?;
    let url = state.media.signed_url(&key);
    let location = axum::http::HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = (axum::http::StatusCode::SEE_OTHER, Json(Download { url })).into_response();
    response.headers_mut().insert(axum::http::header::LOCATION, location);
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/products/{product}/deliveries", tag = "exports",
    params(("brand" = String, Path, description = "The brand id"), ("product" = String, Path, description = "The product id"), Paging),
    responses(
        (status = 200, description = "Every delivered rendition showing the product: export, channel, destination, file, checksum, location, time; newest first", body = Page<ProductDeliveryView>),
        (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn list_product_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, product)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<ProductDeliveryView>>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "delivery").await?;
    Ok(Json(read::list_product_deliveries(&state.db, brand.as_str(), &product, &paging.page()).await?))
}
