//! Image uploads: product images, subject base images, style reference images,
//! as `multipart/form-data` with the file in the `file` part.
//!
//! Nothing is stored and no event is written until everything has passed, in
//! this order: the caller may produce in the brand; the body is read with a
//! running byte count and abandoned past the limit (never buffered unbounded);
//! the image is judged by [`crate::images`] (type from the bytes, pixel limit
//! from the header, full decode); the command is decided against the
//! aggregate's current state (an unknown or archived product refuses here).
//! Only then are the original and the working copy stored (content-addressed,
//! so a retry stores nothing new) and the command run. A request that fails
//! at any step leaves neither an object nor an event.

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};

use crate::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use gps_commands::{CommandError, CommandHandler};
use gps_domain::Aggregate;
use gps_domain::ids::{BrandId, ImageId, ProductId, StyleId, SubjectId};
use gps_domain::product::{ImageView, Product, ProductCommand};
use gps_domain::style::{Style, StyleCommand};
use gps_domain::subject::{Angle, Pose, Subject, SubjectCommand};
use gps_domain::values::{AssetRef, Colour, ContentHash, ImageAnalysis};
use gps_projections::queries as read;
use gps_storage::{ObjectKey, content_hash};
use serde::Serialize;

use crate::auth::{self, Principal};
use crate::images::{self, AcceptedImage, ImageRejection};
use crate::media::Media;
use crate::routes::{Accepted, actions, brand_id, execute, parse};
use crate::{ApiError, AppState};

/// Perceptual hashes at most this many bits apart are reported as near duplicates.
pub const NEAR_DUPLICATE_DISTANCE: u32 = 6;

/// The upload routes. Axum's default body limit is off here: the handlers
/// count bytes themselves against the configured limit.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/products/{product}/images", post(upload_product_image))
        .route("/api/v1/brands/{brand}/subjects/{subject}/images", post(upload_subject_image))
        .route("/api/v1/brands/{brand}/styles/{style}/reference-images", post(upload_style_reference))
        .layer(DefaultBodyLimit::disable())
}

/// An image that passed intake, hashed, not yet stored.
#[derive(Debug, Clone)]
pub struct IngestedImage {
    /// The upload, byte for byte.
    pub original: Bytes,
    /// The upload's asset reference.
    pub original_asset: AssetRef,
    /// The working copy (upright, sRGB, no metadata).
    pub working: Bytes,
    /// The working copy's asset reference.
    pub asset: AssetRef,
    /// Perceptual hash and colours.
    pub analysis: ImageAnalysis,
}

/// Judges `bytes` and prepares both copies (CPU work, off the async threads).
pub async fn ingest_image(media: &Media, bytes: Bytes) -> Result<IngestedImage, ApiError> {
    let limits = media.settings().image_limits;
    let judged = bytes.clone();
    let (accepted, (original_width, original_height)) = crate::cpu::run(
        crate::cpu::Work::Image,
        move || -> Result<(AcceptedImage, (u32, u32)), ImageRejection> {
            let (_, width, height) = images::check_header(&judged, limits)?;
            Ok((images::accept(&judged, limits)?, (width, height)))
        },
    )
    .await?
    .map_err(rejection)?;
    let original_asset = AssetRef {
        hash: content_hash(&bytes),
        media_type: accepted.original_format.media_type().to_owned(),
        bytes: bytes.len() as u64,
        width: Some(original_width),
        height: Some(original_height),
    };
    let working = Bytes::from(accepted.working);
    let asset = AssetRef {
        hash: content_hash(&working),
        media_type: accepted.working_format.media_type().to_owned(),
        bytes: working.len() as u64,
        width: Some(accepted.width),
        height: Some(accepted.height),
    };
    let analysis = ImageAnalysis {
        original: original_asset.clone(),
        perceptual_hash: accepted.perceptual_hash,
        dominant_colours: accepted.dominant_colours,
    };
    Ok(IngestedImage { original: bytes, original_asset, working, asset, analysis })
}

/// Stores both copies of an accepted image under the brand (idempotent).
pub async fn store_image(media: &Media, brand: &BrandId, image: &IngestedImage) -> Result<(), ApiError> {
    let store = media.store();
    store
        .put(brand, image.original.clone(), &image.original_asset.media_type)
        .await
        .map_err(|error| ApiError::Unavailable(format!("object storage: {error}")))?;
    store
        .put(brand, image.working.clone(), &image.asset.media_type)
        .await
        .map_err(|error| ApiError::Unavailable(format!("object storage: {error}")))?;
    Ok(())
}

/// A person-readable rejection as the right 4xx.
pub(crate) fn rejection(rejection: ImageRejection) -> ApiError {
    match rejection {
        ImageRejection::NotAnImage(message) => ApiError::UnsupportedMediaType(message),
        ImageRejection::TooLarge(message) | ImageRejection::Corrupt(message) => {
            ApiError::Unprocessable(message)
        }
    }
}

/// The parts of an upload form: the files and the text fields.
#[derive(Debug, Default)]
pub(crate) struct UploadForm {
    files: Vec<FilePart>,
    fields: Vec<(String, String)>,
}

/// One file part of a form.
#[derive(Debug, Clone)]
pub(crate) struct FilePart {
    /// The part's name.
    pub(crate) part: String,
    /// The file name the client sent, if any.
    pub(crate) file_name: Option<String>,
    /// The bytes.
    pub(crate) bytes: Bytes,
}

impl UploadForm {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The file part called `name`.
    pub(crate) fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.iter().find(|file| file.part == name)
    }
}

/// Reads the form, counting bytes as they arrive and stopping at the limit.
/// Called after authorization, so an outsider learns nothing from how the
/// body is judged (and is not allowed to make the server read it). Parts
/// named in `file_parts` are files (each at most once); the others are text.
pub(crate) async fn read_form(
    headers: &HeaderMap,
    request: Request,
    limit: u64,
    file_parts: &[&str],
) -> Result<UploadForm, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "body",
            format!(
                "the upload is larger than {:.0} MB, the limit; send a smaller file",
                limit as f64 / (1024.0 * 1024.0)
            ),
        )
    };
    let expected = file_parts.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" and ");
    // A declared length over the limit is refused before reading anything.
    if let Some(length) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit + 64 * 1024
    {
        return Err(too_large());
    }
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|rejection| {
        ApiError::field(
            "content-type",
            format!(
                "{}; send multipart/form-data with the file in a part named {expected}",
                rejection.body_text()
            ),
        )
    })?;
    let mut form = UploadForm::default();
    let mut total: u64 = 0;
    while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(e, &expected))? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, &expected))? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        if file_parts.contains(&name.as_str()) {
            if form.file(&name).is_some() {
                return Err(ApiError::field(&name, format!("send one `{name}` part per request")));
            }
            form.files.push(FilePart { part: name, file_name, bytes: Bytes::from(data) });
        } else {
            let text =
                String::from_utf8(data).map_err(|_| ApiError::field(&name, "it must be UTF-8 text"))?;
            form.fields.push((name, text));
        }
    }
    Ok(form)
}

fn multipart_error(error: axum::extract::multipart::MultipartError, expected: &str) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large("body", error.body_text());
    }
    ApiError::field(
        "body",
        format!(
            "the upload is not a readable multipart/form-data body ({}); send the file in a part named {expected}",
            error.body_text()
        ),
    )
}

fn file_of(form: &UploadForm) -> Result<Bytes, ApiError> {
    form.file("file")
        .map(|file| file.bytes.clone())
        .ok_or_else(|| ApiError::field("file", "send the image as a multipart part named `file`"))
}

/// One image of the upload response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UploadedImage {
    /// The image id within its product or subject (styles: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    image_id: Option<String>,
    /// The working copy's object key.
    key: String,
    /// A signed URL of the working copy.
    url: String,
    /// The untouched original's object key.
    original_key: String,
    /// The working copy's media type.
    media_type: String,
    /// The working copy's size in bytes.
    bytes: u64,
    /// Width in pixels (orientation applied).
    width: u32,
    /// Height in pixels (orientation applied).
    height: u32,
    /// sha256 of the working copy.
    #[schema(value_type = String)]
    hash: ContentHash,
    /// 64-bit difference hash, 16 hex digits.
    perceptual_hash: String,
    /// Up to five dominant colours, most frequent first.
    #[schema(value_type = Vec<String>)]
    dominant_colours: Vec<Colour>,
}

/// A warning about an accepted upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UploadWarning {
    /// `near_duplicate`.
    kind: &'static str,
    /// What it means, for a person.
    message: String,
    /// `product` or `subject`.
    owner_kind: String,
    /// The product or subject that has a similar image.
    owner_id: String,
    /// That image's id.
    image_id: String,
    /// Differing bits of the perceptual hashes (0 = same picture).
    distance: u32,
}

/// The response of an upload: the command's outcome, the image, and warnings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UploadAccepted {
    #[serde(flatten)]
    accepted: Accepted,
    /// The stored image.
    image: UploadedImage,
    /// Near duplicates already in the brand's catalog.
    warnings: Vec<UploadWarning>,
}

impl UploadAccepted {
    fn respond(self) -> Response {
        let status = if self.accepted.already_applied || self.accepted.events == 0 {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        let sequence = self.accepted.stream_sequence;
        let mut response = (status, axum::Json(self)).into_response();
        response.headers_mut().insert(crate::STREAM_SEQUENCE_HEADER, sequence.into());
        response
    }
}

fn describe(
    media: &Media,
    brand: &BrandId,
    image_id: Option<&ImageId>,
    image: &IngestedImage,
) -> UploadedImage {
    let key = ObjectKey::content(brand, &image.asset.hash);
    UploadedImage {
        image_id: image_id.map(ToString::to_string),
        url: media.signed_url(&key),
        key: key.to_string(),
        original_key: ObjectKey::content(brand, &image.original_asset.hash).to_string(),
        media_type: image.asset.media_type.clone(),
        bytes: image.asset.bytes,
        width: image.asset.width.unwrap_or(0),
        height: image.asset.height.unwrap_or(0),
        hash: image.asset.hash.clone(),
        perceptual_hash: image.analysis.perceptual_hash.to_string(),
        dominant_colours: image.analysis.dominant_colours.clone(),
    }
}

/// Images of the brand's catalog whose perceptual hash is close to this one.
async fn near_duplicates(
    state: &AppState,
    brand: &BrandId,
    image: &IngestedImage,
) -> Result<Vec<UploadWarning>, ApiError> {
    let hashes = read::catalog_image_hashes(&state.db, brand.as_str())
        .await
        .map_err(|error| ApiError::Unavailable(format!("catalog read model: {error}")))?;
    let own = &image.analysis.perceptual_hash;
    let mut warnings: Vec<UploadWarning> = hashes
        .into_iter()
        .filter_map(|row| {
            let other = gps_domain::values::PerceptualHash::parse(&row.perceptual_hash).ok()?;
            let distance = own.distance(&other);
            (distance <= NEAR_DUPLICATE_DISTANCE).then(|| UploadWarning {
                kind: "near_duplicate",
                message: format!(
                    "this image looks like image {} of {} {} ({distance} of 64 bits differ); \
                     check it is not the same picture uploaded twice",
                    row.image_id, row.owner_kind, row.owner_id
                ),
                owner_kind: row.owner_kind,
                owner_id: row.owner_id,
                image_id: row.image_id,
                distance,
            })
        })
        .collect();
    warnings.sort_by_key(|w| w.distance);
    warnings.truncate(10);
    Ok(warnings)
}

/// Decides `command` against the aggregate's current state without writing,
/// so a refused command refuses before anything is stored.
pub async fn precheck<A: Aggregate>(
    state: &AppState,
    brand: &BrandId,
    id: &str,
    command: &A::Command,
) -> Result<(), ApiError> {
    let address = CommandHandler::address::<A>(brand, id)?;
    let loaded = state.commands.load::<A>(&address).await?;
    loaded
        .state
        .decide(command)
        .map(|_| ())
        .map_err(|error| ApiError::from(CommandError::Rejected { address: address.to_string(), error }))
}

/// The default image id: the first 12 hex digits of the working copy's hash,
/// so re-uploading the same file addresses the same image.
pub(crate) fn default_image_id(image: &IngestedImage) -> ImageId {
    let hex = image.asset.hash.as_str().trim_start_matches("sha256:");
    ImageId::parse(format!("img-{}", &hex[..12])).expect("a valid image id")
}

fn image_id_of(form: &UploadForm, image: &IngestedImage) -> Result<ImageId, ApiError> {
    match form.field("image_id") {
        Some(raw) => parse("image_id", ImageId::parse(raw)),
        None => Ok(default_image_id(image)),
    }
}

fn enum_field<T: serde::de::DeserializeOwned>(
    form: &UploadForm,
    name: &str,
    default: &str,
    choices: &str,
) -> Result<T, ApiError> {
    let raw = form.field(name).unwrap_or(default);
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| ApiError::field(name, format!("{raw:?} is not one of {choices}")))
}

/// Refuses text fields other than `known`, naming every accepted part.
pub(crate) fn check_known_fields(form: &UploadForm, files: &[&str], known: &[&str]) -> Result<(), ApiError> {
    match form.fields.iter().find(|(name, _)| !known.contains(&name.as_str())) {
        Some((name, _)) => Err(ApiError::field(
            name,
            format!("unknown form field; the fields are {}", [files, known].concat().join(", ")),
        )),
        None => Ok(()),
    }
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/products/{product}/images", tag = "products", params(("brand" = String, Path, description = "The brand id"), ("product" = String, Path, description = "The product id")), request_body(content_type = "multipart/form-data", description = "Parts: `file` (JPEG, PNG or WebP), optional `image_id`, optional `view` (front, back, detail, flat_lay, ghost_mannequin; default front)"), responses((status = 201, description = "Image stored and attached", body = UploadAccepted), (status = 200, description = "The same image was already attached", body = UploadAccepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "The body is over the upload limit", body = crate::error::Problem, content_type = "application/problem+json"), (status = 415, description = "The file is not a JPEG, PNG or WebP image", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "The image is too large, truncated or corrupt, or breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn upload_product_image(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, product)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPLOAD_PRODUCT_IMAGE).await?;
    let product =
        ProductId::parse(&product).map_err(|_| ApiError::NotFound(format!("product {product} not found")))?;
    let form = read_form(&headers, request, state.media.settings().max_upload_bytes, &["file"]).await?;
    check_known_fields(&form, &["file"], &["image_id", "view"])?;
    let view: ImageView =
        enum_field(&form, "view", "front", "front, back, detail, flat_lay, ghost_mannequin")?;
    let image = ingest_image(&state.media, file_of(&form)?).await?;
    let image_id = image_id_of(&form, &image)?;
    let command = ProductCommand::AddProductImage {
        image_id: image_id.clone(),
        asset: image.asset.clone(),
        view,
        analysis: Some(image.analysis.clone()),
    };
    precheck::<Product>(&state, &brand, product.as_str(), &command).await?;
    let warnings = near_duplicates(&state, &brand, &image).await?;
    store_image(&state.media, &brand, &image).await?;
    let accepted =
        execute::<Product>(&state, &principal, &headers, &brand, product.as_str(), command).await?;
    let described = describe(&state.media, &brand, Some(&image_id), &image);
    Ok(UploadAccepted { accepted, image: described, warnings }.respond())
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/subjects/{subject}/images", tag = "subjects", params(("brand" = String, Path, description = "The brand id"), ("subject" = String, Path, description = "The subject id")), request_body(content_type = "multipart/form-data", description = "Parts: `file` (JPEG, PNG or WebP), optional `image_id`, optional `pose` (standing, seated, walking, leaning, kneeling, crouching; default standing), optional `angle` (front, three_quarter, profile, back; default front)"), responses((status = 201, description = "Base image stored and attached", body = UploadAccepted), (status = 200, description = "The same image was already attached", body = UploadAccepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "The body is over the upload limit", body = crate::error::Problem, content_type = "application/problem+json"), (status = 415, description = "The file is not a JPEG, PNG or WebP image", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "The image is too large, truncated or corrupt, or breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn upload_subject_image(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, subject)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPLOAD_SUBJECT_IMAGE).await?;
    let subject =
        SubjectId::parse(&subject).map_err(|_| ApiError::NotFound(format!("subject {subject} not found")))?;
    let form = read_form(&headers, request, state.media.settings().max_upload_bytes, &["file"]).await?;
    check_known_fields(&form, &["file"], &["image_id", "pose", "angle"])?;
    let pose: Pose =
        enum_field(&form, "pose", "standing", "standing, seated, walking, leaning, kneeling, crouching")?;
    let angle: Angle = enum_field(&form, "angle", "front", "front, three_quarter, profile, back")?;
    let image = ingest_image(&state.media, file_of(&form)?).await?;
    let image_id = image_id_of(&form, &image)?;
    let command = SubjectCommand::AddSubjectBaseImage {
        image_id: image_id.clone(),
        asset: image.asset.clone(),
        pose,
        angle,
        analysis: Some(image.analysis.clone()),
    };
    precheck::<Subject>(&state, &brand, subject.as_str(), &command).await?;
    let warnings = near_duplicates(&state, &brand, &image).await?;
    store_image(&state.media, &brand, &image).await?;
    let accepted =
        execute::<Subject>(&state, &principal, &headers, &brand, subject.as_str(), command).await?;
    let described = describe(&state.media, &brand, Some(&image_id), &image);
    Ok(UploadAccepted { accepted, image: described, warnings }.respond())
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/styles/{style}/reference-images", tag = "styles", params(("brand" = String, Path, description = "The brand id"), ("style" = String, Path, description = "The style id")), request_body(content_type = "multipart/form-data", description = "Part: `file` (JPEG, PNG or WebP). The image is added to the style's current definition as its next version."), responses((status = 201, description = "Reference image stored; the style has a new version", body = UploadAccepted), (status = 200, description = "The same image was already a reference", body = UploadAccepted), (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"), (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"), (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflicts with the current state", body = crate::error::Problem, content_type = "application/problem+json"), (status = 413, description = "The body is over the upload limit", body = crate::error::Problem, content_type = "application/problem+json"), (status = 415, description = "The file is not a JPEG, PNG or WebP image", body = crate::error::Problem, content_type = "application/problem+json"), (status = 422, description = "The image is too large, truncated or corrupt, or breaks a business rule", body = crate::error::Problem, content_type = "application/problem+json")), security(("session" = []), ("api_key" = [])))]
pub(crate) async fn upload_style_reference(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, style)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::UPLOAD_STYLE_REFERENCE).await?;
    let style = StyleId::parse(&style).map_err(|_| ApiError::NotFound(format!("style {style} not found")))?;
    let form = read_form(&headers, request, state.media.settings().max_upload_bytes, &["file"]).await?;
    check_known_fields(&form, &["file"], &[])?;
    let image = ingest_image(&state.media, file_of(&form)?).await?;
    let command = StyleCommand::AddStyleReferenceImage { asset: image.asset.clone() };
    precheck::<Style>(&state, &brand, style.as_str(), &command).await?;
    let warnings = near_duplicates(&state, &brand, &image).await?;
    store_image(&state.media, &brand, &image).await?;
    let accepted = execute::<Style>(&state, &principal, &headers, &brand, style.as_str(), command).await?;
    let described = describe(&state.media, &brand, None, &image);
    Ok(UploadAccepted { accepted, image: described, warnings }.respond())
}
