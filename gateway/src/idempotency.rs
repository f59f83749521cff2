//! `Idempotency-Key` on every command: a client that retries a request (after
//! a timeout, a dropped connection) gets the first answer again, and a key
//! sent back with a different request is refused (422) instead of being
//! applied to it.
//!
//! Two layers give this. The log de-duplicates by command id (the caller's
//! scope and key), and ids a create generates are derived from the key, so
//! running a retried command again appends nothing. On top of that, this
//! middleware keeps each key's request fingerprint and first JSON answer in
//! the credentials database (`auth.idempotency_keys`, one day): a retry is
//! answered from there, with `already_applied: true` and the
//! `Idempotent-Replayed: true` header, and a different request under the same
//! key is refused before any handler runs.
//!
//! What is kept: a 2xx answer, without the one-time secrets it showed (a new
//! API key is never stored; its replay leaves it out). A 4xx answer applied
//! nothing, so its key is released for a corrected request. A 5xx or a crash
//! leaves the outcome unknown: the key stays bound to its request, which a
//! retry runs again (safe, see above).
//!
//! Bodies that are not JSON (uploads, imports) are not buffered here; those
//! routes rely on the log's command ids alone.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::routes::{IDEMPOTENCY_KEY_HEADER, STREAM_SEQUENCE_HEADER};
use crate::{ApiError, AppState};

/// How long a key's first answer is kept.
pub(crate) const KEPT_FOR_HOURS: i32 = 24;

/// The header set on an answer replayed from a key's first one.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The largest JSON body fingerprinted (axum's default body limit); a larger
/// one is refused by the handler anyway.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The largest answer kept for replay.
const ANSWER_LIMIT: usize = 256 * 1024;

/// Top-level answer fields a handler showed once and that must never be
/// stored (set as a response extension by the handler).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OneTimeSecrets(pub(crate) &'static [&'static str]);

/// The middleware: see the module documentation.
pub(crate) async fn replay_or_record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = key_of(request.method(), request.headers()) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    // An unauthenticated request gets its 401 from the handler, as without a key.
    let Ok(principal) = Principal::from_request_parts(&mut parts, &state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    parts.extensions.insert(principal.clone());
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::too_large(
                "body",
                "the body is over the limit of this operation; send a smaller one",
            )
            .into_response();
        }
    };
    let first_request = format!("{} {}", parts.method, parts.uri.path());
    let fingerprint = fingerprint(&parts.method, parts.uri.to_string().as_str(), &bytes);
    let scope = principal.scope();
    let request = Request::from_parts(parts, Body::from(bytes));
    match claim(&state, &scope, &key, &fingerprint, &first_request).await {
        Ok(Claim::New) | Ok(Claim::Unfinished) => {}
        Ok(Claim::Answered(answer)) => return answer.replay(),
        Ok(Claim::OtherRequest { first_request }) => {
            return ApiError::IdempotencyKeyReused(format!(
                "this Idempotency-Key was first used for another request ({first_request}, with another body \
                 or query); send a new key with a new request, or the first request again to get its answer"
            ))
            .into_response();
        }
        Err(error) => return error.into_response(),
    }
    let response = next.run(request).await;
    match record(&state, &scope, &key, &fingerprint, response).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The key of a command request, when it carries a well-formed one (a
/// malformed key reaches the handler, which names the header in its 400).
fn key_of(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let json_or_empty = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_none_or(|value| value.trim_start().starts_with("application/json"));
    if !json_or_empty {
        return None;
    }
    let key = headers.get(IDEMPOTENCY_KEY_HEADER)?.to_str().ok()?;
    crate::routes::well_formed_key(key).then(|| key.to_owned())
}

/// sha256 of the method, the path with its query, and the body: canonical
/// JSON (keys sorted, no spacing) when it is JSON, so a client that
/// re-serialises the same request is not refused.
fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path_and_query.as_bytes());
    hasher.update(b"\n");
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut value) => {
            value.sort_all_objects();
            hasher.update(value.to_string().as_bytes());
        }
        Err(_) => hasher.update(body),
    }
    hex::encode(hasher.finalize())
}

/// What the store says about a key.
enum Claim {
    /// First use: the request runs.
    New,
    /// Used for this request before, outcome unknown: it runs again.
    Unfinished,
    /// Used for this request, which was answered.
    Answered(Answer),
    /// Used for another request.
    OtherRequest { first_request: String },
}

/// A kept answer.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    stream_sequence: Option<i64>,
}

impl Answer {
    fn replay(mut self) -> Response {
        if let Some(fields) = self.body.as_object_mut()
            && fields.contains_key("already_applied")
        {
            fields.insert("already_applied".into(), serde_json::Value::Bool(true));
        }
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        if let Some(sequence) = self.stream_sequence {
            headers.insert(STREAM_SEQUENCE_HEADER, HeaderValue::from(sequence));
        }
        response
    }
}

async fn claim(
    state: &AppState,
    scope: &str,
    key: &str,
    fingerprint: &str,
    first_request: &str,
) -> Result<Claim, ApiError> {
    // Forget expired keys first (this one included), a bounded number per
    // call so the table stays small without a sweeper of its own.
    sqlx::query(
        "DELETE FROM auth.idempotency_keys WHERE (scope, idempotency_key) IN ( \
             SELECT scope, idempotency_key FROM auth.idempotency_keys \
             WHERE created_at < now() - make_interval(hours => $1) LIMIT 100)",
    )
    .bind(KEPT_FOR_HOURS)
    .execute(&state.credentials)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO auth.idempotency_keys (scope, idempotency_key, request_fingerprint, first_request) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(first_request)
    .execute(&state.credentials)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    type Row = (String, String, Option<i16>, Option<serde_json::Value>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT request_fingerprint, first_request, status, body, stream_sequence \
         FROM auth.idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(&state.credentials)
    .await?;
    Ok(match row {
        // Released (a 4xx) between the two statements: run it.
        None => Claim::New,
        Some((kept, first_request, ..)) if kept != fingerprint => Claim::OtherRequest { first_request },
        Some((_, _, Some(status), Some(body), stream_sequence)) => Claim::Answered(Answer {
            status: StatusCode::from_u16(u16::try_from(status).unwrap_or(200)).unwrap_or(StatusCode::OK),
            body,
            stream_sequence,
        }),
        Some(_) => Claim::Unfinished,
    })
}

/// Keeps a 2xx JSON answer, releases the key after a 4xx, and leaves it bound
/// after anything else; returns the response to send.
async fn record(
    state: &AppState,
    scope: &str,
    key: &str,
    fingerprint: &str,
    response: Response,
) -> Result<Response, ApiError> {
    let status = response.status();
    if status.is_client_error() {
        sqlx::query(
            "DELETE FROM auth.idempotency_keys \
             WHERE scope = $1 AND idempotency_key = $2 AND request_fingerprint = $3 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .execute(&state.credentials)
        .await?;
        return Ok(response);
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !status.is_success() || !is_json {
        return Ok(response);
    }
    let secrets = response.extensions().get::<OneTimeSecrets>().copied();
    let (parts, body) = response.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, ANSWER_LIMIT).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return Err(ApiError::Internal(format!("reading a command's answer to keep it: {error}")));
        }
    };
    if let Ok(mut kept) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        if let (Some(OneTimeSecrets(fields)), Some(object)) = (secrets, kept.as_object_mut()) {
            for field in fields {
                object.remove(*field);
            }
        }
        let stream_sequence = parts
            .headers
            .get(STREAM_SEQUENCE_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i64>().ok());
        sqlx::query(
            "UPDATE auth.idempotency_keys SET status = $4, body = $5, stream_sequence = $6 \
             WHERE scope = $1 AND idempotency_key = $2 AND request_fingerprint = $3",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(i16::try_from(status.as_u16()).unwrap_or(200))
        .bind(kept)
        .bind(stream_sequence)
        .execute(&state.credentials)
        .await?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_json_key_order_and_spacing_but_not_values_paths_or_methods() {
        let one = fingerprint(&Method::POST, "/api/v1/brands/a/products", br#"{"sku":"A","name":"Shirt"}"#);
        let same = fingerprint(
            &Method::POST,
            "/api/v1/brands/a/products",
            b"{ \"name\": \"Shirt\", \"sku\": \"A\" }",
        );
        assert_eq!(one, same);
        let other_value =
            fingerprint(&Method::POST, "/api/v1/brands/a/products", br#"{"sku":"B","name":"Shirt"}"#);
        let other_path =
            fingerprint(&Method::POST, "/api/v1/brands/b/products", br#"{"sku":"A","name":"Shirt"}"#);
        let other_method =
            fingerprint(&Method::PUT, "/api/v1/brands/a/products", br#"{"sku":"A","name":"Shirt"}"#);
        assert_ne!(one, other_value);
        assert_ne!(one, other_path);
        assert_ne!(one, other_method);
    }

    #[test]
    fn only_commands_with_json_or_no_body_and_a_well_formed_key_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static("retry-1"));
        assert_eq!(key_of(&Method::POST, &headers).as_deref(), Some("retry-1"));
        assert_eq!(key_of(&Method::GET, &headers), None, "reads are not commands");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=x"));
        assert_eq!(key_of(&Method::POST, &headers), None, "uploads are not buffered");
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static("has space"));
        assert_eq!(key_of(&Method::POST, &headers), None, "the handler names a malformed key");
    }
}
