//! `GET /cdn/{key}`: objects as a CDN serves them, for `<img src>` and for a
//! real CDN in front (`public_base_url`).
//!
//! - Only signed URLs are served (see [`crate::media`]): unsigned, expired or
//!   forged ones get 403, a key outside the layout (`..`, another prefix) 400.
//!   Keys carry their brand, and the signature covers the key, so a brand's URL
//!   opens that brand's object and nothing else.
//! - Objects never change, so responses are `Cache-Control: public,
//!   max-age=31536000, immutable` with a strong ETag derived from the key (the
//!   content hash); `If-None-Match` answers 304 without touching storage.
//! - `Range: bytes=…` (one range) answers 206; an unsatisfiable one 416.
//! - Derivatives: `w`, `h`, `fit`, `fmt`, `q` from a fixed allowlist (so nobody
//!   can make the server render unbounded variants). A derivative is rendered
//!   once, stored back under `<brand>/derivatives/<source>/<variant>`, and
//!   served from storage afterwards (`x-gps-derivative: created|stored`).

use axum::Router;
use axum::extract::{RawQuery, State};

use crate::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use gps_storage::{ObjectKey, StorageError};

use crate::images::{self, AcceptedFormat};
use crate::media::SignatureProblem;
use crate::{ApiError, AppState};

/// Widths and heights a derivative may have.
pub const ALLOWED_SIZES: &[u32] = &[64, 128, 160, 240, 320, 480, 640, 800, 960, 1280, 1600, 1920, 2560];
/// Encoder qualities a derivative may have.
pub const ALLOWED_QUALITIES: &[u8] = &[40, 50, 60, 70, 75, 80, 85, 90, 95];
/// The cache policy of every object: it never changes.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The header telling whether a derivative was rendered by this request.
pub const DERIVATIVE_HEADER: &str = "x-gps-derivative";

/// The CDN route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/cdn/{*key}", get(serve))
}

/// A requested rendition, every field from the allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rendition {
    width: Option<u32>,
    height: Option<u32>,
    cover: bool,
    format: Option<AcceptedFormat>,
    quality: u8,
}

impl Rendition {
    fn variant(&self, format: AcceptedFormat) -> String {
        let extension = match format {
            AcceptedFormat::Jpeg => "jpg",
            AcceptedFormat::Png => "png",
            AcceptedFormat::WebP => "webp",
        };
        format!(
            "w{}-h{}-{}-q{}.{extension}",
            self.width.unwrap_or(0),
            self.height.unwrap_or(0),
            if self.cover { "cover" } else { "contain" },
            self.quality
        )
    }
}

struct CdnQuery {
    expires: Option<String>,
    signature: Option<String>,
    rendition: Option<Rendition>,
}

fn parse_query(raw: Option<&str>) -> Result<CdnQuery, ApiError> {
    let mut query = CdnQuery { expires: None, signature: None, rendition: None };
    let mut rendition = Rendition { width: None, height: None, cover: false, format: None, quality: 85 };
    let mut wants_rendition = false;
    let sizes = || ALLOWED_SIZES.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "exp" => query.expires = Some(value.to_owned()),
            "sig" => query.signature = Some(value.to_owned()),
            "w" | "h" => {
                let size = value.parse::<u32>().ok().filter(|size| ALLOWED_SIZES.contains(size)).ok_or_else(
                    || {
                        ApiError::field(
                            name,
                            format!("{value:?} is not an offered size; use one of {}", sizes()),
                        )
                    },
                )?;
                if name == "w" {
                    rendition.width = Some(size);
                } else {
                    rendition.height = Some(size);
                }
                wants_rendition = true;
            }
            "fit" => {
                rendition.cover = match value {
                    "contain" => false,
                    "cover" => true,
                    _ => return Err(ApiError::field("fit", format!("{value:?} is not contain or cover"))),
                };
                wants_rendition = true;
            }
            "fmt" => {
                rendition.format = Some(match value {
                    "jpeg" | "jpg" => AcceptedFormat::Jpeg,
                    "png" => AcceptedFormat::Png,
                    "webp" => AcceptedFormat::WebP,
                    "avif" => {
                        return Err(ApiError::field(
                            "fmt",
                            "avif is not offered by this server; use webp, jpeg or png",
                        ));
                    }
                    _ => return Err(ApiError::field("fmt", format!("{value:?} is not webp, jpeg or png"))),
                });
                wants_rendition = true;
            }
            "q" => {
                rendition.quality =
                    value.parse::<u8>().ok().filter(|q| ALLOWED_QUALITIES.contains(q)).ok_or_else(|| {
                        ApiError::field(
                            "q",
                            format!("{value:?} is not an offered quality; use one of {ALLOWED_QUALITIES:?}"),
                        )
                    })?;
                wants_rendition = true;
            }
            other => {
                return Err(ApiError::field(
                    other,
                    "unknown parameter; a CDN URL takes exp, sig, w, h, fit, fmt and q",
                ));
            }
        }
    }
    if wants_rendition {
        query.rendition = Some(rendition);
    }
    Ok(query)
}

fn storage_error(error: StorageError) -> ApiError {
    match error {
        StorageError::NotFound { .. } => ApiError::NotFound("no such object".into()),
        other => ApiError::Unavailable(format!("object storage: {other}")),
    }
}

fn etag_of(key: &ObjectKey) -> String {
    let hash = key.source_hash();
    let hex = hash.as_str().trim_start_matches("sha256:");
    match key.variant() {
        None => format!("\"{hex}\""),
        Some(variant) => format!("\"{hex}-{variant}\""),
    }
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate == etag || candidate.strip_prefix("W/") == Some(etag))
}

/// One `bytes=` range, resolved against `size`: `Ok(None)` means serve the
/// whole object (no header, several ranges, or another unit), `Err(())` 416.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let length: u64 = suffix.parse().map_err(|_| ())?;
            if length == 0 {
                return Err(());
            }
            (size.saturating_sub(length), size)
        }
        (start, "") => (start.parse().map_err(|_| ())?, size),
        (start, end) => {
            let start: u64 = start.parse().map_err(|_| ())?;
            let end: u64 = end.parse().map_err(|_| ())?;
            if end < start {
                return Err(());
            }
            (start, (end + 1).min(size))
        }
    };
    if start >= size || start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The types the CDN shows inline: the images and videos GPS accepts and
/// makes. Anything else stored under a brand (a provider's output of another
/// type, a file from an older release) is served as an inert download, so a
/// stored HTML or SVG file can never run script on GPS's origin.
const INLINE_TYPES: &[&str] =
    &["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "video/mp4", "video/webm"];

/// Distinct derivatives (size, fit, format, quality) stored per source image.
pub const MAX_DERIVATIVES_PER_SOURCE: usize = 24;

/// Even a shown image gets no right to load or run anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

fn cached_headers(response: &mut Response, etag: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn serve(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match serve_object(&state, &key, raw_query.as_deref(), &headers).await {
        Ok(response) => response,
        Err(error) => no_store(error.into_response()),
    }
}

async fn serve_object(
    state: &AppState,
    key_text: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = ObjectKey::parse(key_text).map_err(|error| ApiError::field("key", error))?;
    let query = parse_query(raw_query)?;
    state.media.verify(&key.to_string(), query.expires.as_deref(), query.signature.as_deref()).map_err(
        |problem| match problem {
            SignatureProblem::Unsigned => ApiError::Forbidden(
                "this URL is not signed; brand content is private, so ask the API for the image's URL".into(),
            ),
            SignatureProblem::Expired => {
                ApiError::Forbidden("this URL has expired; ask the API for a fresh URL of the image".into())
            }
            SignatureProblem::Forged => ApiError::Forbidden(
                "this URL's signature does not match its object; ask the API for the image's URL".into(),
            ),
        },
    )?;
    if key.variant().is_some() {
        return Err(ApiError::field(
            "key",
            "derivatives are requested with w, h, fit, fmt and q on the source's URL",
        ));
    }
    let (key, derivative) = match query.rendition {
        None => (key, None),
        Some(rendition) => {
            let (derived, created) = derivative(state, &key, rendition).await?;
            (derived, Some(created))
        }
    };
    let etag = etag_of(&key);
    if matches_etag(headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        cached_headers(&mut response, &etag);
        return Ok(response);
    }
    let store = state.media.store();
    let info = store
        .head(&key)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
    let (status, body, content_range) = match requested_range(headers, info.bytes) {
        Ok(None) => (StatusCode::OK, store.get(&key).await.map_err(storage_error)?.body, None),
        Ok(Some((start, end))) => {
            let body = store.get_range(&key, start..end).await.map_err(storage_error)?;
            (StatusCode::PARTIAL_CONTENT, body, Some(format!("bytes {start}-{}/{}", end - 1, info.bytes)))
        }
        Err(()) => {
            let mut response = ApiError::RangeNotSatisfiable(format!(
                "the object has {} bytes; ask for a range inside it, e.g. bytes=0-{}",
                info.bytes,
                info.bytes.saturating_sub(1)
            ))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", info.bytes)) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    let mut response = (status, body).into_response();
    cached_headers(&mut response, &etag);
    let response_headers = response.headers_mut();
    let media_type = info.media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match HeaderValue::from_str(&media_type) {
        Ok(value) if INLINE_TYPES.contains(&media_type.as_str()) => {
            response_headers.insert(header::CONTENT_TYPE, value);
        }
        _ => {
            response_headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            response_headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
        }
    }
    if let Some(range) = content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        response_headers.insert(header::CONTENT_RANGE, range);
    }
    if let Some(created) = derivative {
        response_headers
            .insert(DERIVATIVE_HEADER, HeaderValue::from_static(if created { "created" } else { "stored" }));
    }
    Ok(response)
}

/// The derivative's key, rendering and storing it first if it is not stored yet.
async fn derivative(
    state: &AppState,
    source: &ObjectKey,
    rendition: Rendition,
) -> Result<(ObjectKey, bool), ApiError> {
    let store = state.media.store();
    let info = store
        .head(source)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::NotFound("no such object".into()))?;
    let source_format = match info.media_type.as_str() {
        "image/jpeg" => AcceptedFormat::Jpeg,
        "image/png" => AcceptedFormat::Png,
        "image/webp" => AcceptedFormat::WebP,
        other => {
            return Err(ApiError::field(
                "key",
                format!("derivatives are made of images; this object is {other}"),
            ));
        }
    };
    let format = rendition.format.unwrap_or(source_format);
    let key = ObjectKey::derivative(source, &rendition.variant(format))
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    if store.exists(&key).await.map_err(storage_error)? {
        return Ok((key, false));
    }
    // Each new variant is decoded, rendered and stored for good: bounded per
    // source, so signed URLs cannot be turned into unbounded storage and CPU.
    let made =
        store.count_derivatives(source, MAX_DERIVATIVES_PER_SOURCE + 1).await.map_err(storage_error)?;
    if made >= MAX_DERIVATIVES_PER_SOURCE {
        return Err(ApiError::Rejected(format!(
            "this image already has {MAX_DERIVATIVES_PER_SOURCE} stored derivatives, the most one image may have; \
             ask for one of the sizes and formats already made, or use the original"
        )));
    }
    let bytes = store.get(source).await.map_err(storage_error)?.body;
    let limits = state.media.settings().image_limits;
    let rendered =
        crate::cpu::run(crate::cpu::Work::Image, move || render(&bytes, rendition, format, limits)).await??;
    store.put_at(&key, rendered, format.media_type()).await.map_err(storage_error)?;
    Ok((key, true))
}

fn render(
    bytes: &[u8],
    rendition: Rendition,
    format: AcceptedFormat,
    limits: images::ImageLimits,
) -> Result<Bytes, ApiError> {
    images::check_header(bytes, limits).map_err(crate::uploads::rejection)?;
    let image = image::load_from_memory(bytes)
        .map_err(|error| ApiError::Unprocessable(format!("the stored image cannot be decoded: {error}")))?;
    let (source_width, source_height) = (image.width(), image.height());
    let width = rendition.width.unwrap_or(u32::MAX).min(source_width);
    let height = rendition.height.unwrap_or(u32::MAX).min(source_height);
    let filter = image::imageops::FilterType::Lanczos3;
    let resized = if width == source_width && height == source_height {
        image
    } else if rendition.cover && rendition.width.is_some() && rendition.height.is_some() {
        image.resize_to_fill(width, height, filter)
    } else {
        image.resize(width, height, filter)
    };
    images::encode(&resized, format, rendition.quality)
        .map(Bytes::from)
        .map_err(|error| ApiError::Internal(format!("encoding a derivative: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        requested_range(&headers, size)
    }

    #[test]
    fn ranges_resolve_against_the_size() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(range("bytes=-5", 100), Ok(Some((95, 100))));
        assert_eq!(range("bytes=50-500", 100), Ok(Some((50, 100))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=9-2", 100), Err(()));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
    }

    #[test]
    fn renditions_outside_the_allowlist_are_refused() {
        assert!(parse_query(Some("w=321")).is_err());
        assert!(parse_query(Some("q=100")).is_err());
        assert!(parse_query(Some("fmt=gif")).is_err());
        assert!(parse_query(Some("x=1")).is_err());
        let query = parse_query(Some("exp=1&sig=ab&w=320&fmt=webp")).expect("valid");
        assert_eq!(
            query.rendition.map(|r| r.variant(AcceptedFormat::WebP)),
            Some("w320-h0-contain-q85.webp".into())
        );
    }
}
