//! The gateway's own extractors: [`Path`], [`Query`], [`Body`] and
//! [`OptionalBody`]. They wrap axum's, so that every rejection — a path
//! segment or query parameter that does not parse, a body that is not JSON,
//! the wrong content type, a body over its limit — is an RFC 9457 problem
//! document naming the field, never axum's `text/plain` default. They also
//! refuse text that Postgres cannot store (NUL) before any handler sees it,
//! naming the field: a NUL that reached a query would otherwise surface as a
//! database error, a 500, or poison a read model's `jsonb`.
//!
//! Handlers use these instead of axum's; the names match, so a handler's
//! signature reads the same (`Path((brand, id)): Path<(String, String)>`).

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The first character of `text` that a request may not carry in any string:
/// NUL, which Postgres `text` and `jsonb` cannot hold. Other control
/// characters are the domain's business: its names and texts refuse them,
/// naming the field, while free filters and attributes may carry them.
pub(crate) fn forbidden_char(text: &str) -> Option<char> {
    text.chars().find(|c| *c == '\0')
}

/// The problem for `field` holding `bad`.
fn forbidden(field: &str, bad: char) -> ApiError {
    ApiError::field(
        field,
        format!("contains the character U+{:04X} (NUL), which no text can hold; remove it", u32::from(bad)),
    )
}

/// Refuses `text` when it holds a forbidden character, naming `field`.
pub(crate) fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    match forbidden_char(text) {
        Some(bad) => Err(forbidden(field, bad)),
        None => Ok(()),
    }
}

/// Path parameters, deserialized like axum's `Path`; a parameter that does not
/// parse or holds forbidden text is a problem naming it.
#[derive(Debug)]
pub(crate) struct Path<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        for (name, value) in &raw.0 {
            check_text(name, value)?;
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await.map_err(path_rejection)?;
        Ok(Path(value))
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    match rejection {
        PathRejection::FailedToDeserializePathParams(error) => {
            let message = error.body_text();
            match error.into_kind() {
                ErrorKind::InvalidUtf8InPathParam { key }
                | ErrorKind::ParseErrorAtKey { key, .. }
                | ErrorKind::DeserializeError { key, .. } => ApiError::field(key, message),
                _ => ApiError::field("path", message),
            }
        }
        other => ApiError::Internal(format!("path parameters: {}", other.body_text())),
    }
}

/// Query parameters, deserialized like axum's `Query`; the problem names the
/// parameter that does not parse (`wait_ms`), not just "the query string".
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        query_value(query).map(Query)
    }
}

/// Deserializes a query string into `T`, checking every name and value.
pub(crate) fn query_value<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    for (name, value) in &pairs {
        check_text("query", name)?;
        check_text(name, value)?;
    }
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        if path == "." {
            return ApiError::field(
                "query",
                format!("the query string does not parse: {}", error.into_inner()),
            );
        }
        let given = pairs.iter().find(|(name, _)| *name == path).map(|(_, value)| value.clone());
        let inner = error.into_inner();
        match given {
            Some(value) => ApiError::field(&path, format!("{value:?} is not accepted: {inner}")),
            None => ApiError::field(&path, inner),
        }
    })
}

/// A JSON body whose rejections are problem documents naming what is wrong:
/// the content type, a body over the limit, JSON that does not parse, or the
/// field (as a path, `defaults.output.aspect_ratio`) that has the wrong shape
/// or forbidden text.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::field(
                "content-type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(bytes_rejection)?;
        json_value(&bytes).map(Body)
    }
}

/// An optional JSON body: an empty one is `T::default()`; one with content is
/// read like [`Body`] (its content type is not insisted on, as these commands
/// have always taken a bare reason).
#[derive(Debug)]
pub(crate) struct OptionalBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(bytes_rejection)?;
        // `null` is the document's way of saying "no body" too.
        if bytes.is_empty() {
            Ok(OptionalBody(T::default()))
        } else {
            json_value::<Option<T>>(&bytes).map(|value| OptionalBody(value.unwrap_or_default()))
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("body", "the body is over the limit of this operation; send a smaller one")
    } else {
        ApiError::field("body", format!("the body could not be read: {}", rejection.body_text()))
    }
}

/// Parses JSON bytes into `T`: syntax errors name `body`, shape errors and
/// forbidden text name the field's path.
pub(crate) fn json_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::field("body", format!("the body is not valid JSON: {error}")))?;
    check_json_text("", &value)?;
    whole_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::field(field, error.into_inner())
    })
}

/// Writes every number with a zero fraction (`6.0`, `1e3`) as the integer it
/// is. JSON has one number type, and the OpenAPI document's `integer` (JSON
/// Schema's) is any number with a zero fraction; serde reads an integer
/// field only from integer notation, so without this `6.0` would be refused
/// where the document promises it is accepted. Numbers outside the 64-bit
/// range stay as they are (and are refused by the field that cannot hold
/// them).
fn whole_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            // 2^64 and -2^63, exactly representable as f64.
            const U64_END: f64 = 18_446_744_073_709_551_616.0;
            const I64_START: f64 = -9_223_372_036_854_775_808.0;
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
            {
                if (0.0..U64_END).contains(&float) {
                    // In range and whole: the cast is exact.
                    *number = serde_json::Number::from(float as u64);
                } else if (I64_START..0.0).contains(&float) {
                    *number = serde_json::Number::from(float as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

/// Checks every string and object key of `value`; `path` is where it sits,
/// written as `serde_path_to_error` writes it (`looks[0].name`).
fn check_json_text(path: &str, value: &serde_json::Value) -> Result<(), ApiError> {
    let field = |path: &str| if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    match value {
        serde_json::Value::String(text) => check_text(&field(path), text),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_json_text(&format!("{path}[{index}]"), item)),
        serde_json::Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            let inner = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            check_text(&inner, key)?;
            check_json_text(&inner, item)
        }),
        _ => Ok(()),
    }
}

/// The answer to an address no route serves: a problem document too.
pub(crate) async fn unknown_address(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "nothing is served at {}; the API is described at /api/v1/openapi.json",
        uri.path()
    ))
}

/// The answer to a method a route does not take.
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} does not take {method}; the API is described at /api/v1/openapi.json",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Paging {
        limit: Option<u32>,
        wait_ms: Option<u64>,
    }

    #[test]
    fn a_query_parameter_that_does_not_parse_is_named() {
        let error = query_value::<Paging>("limit=5&wait_ms=-1").expect_err("negative wait");
        assert_eq!(field_of(error), "wait_ms");
    }

    #[test]
    fn a_nul_in_a_query_value_is_named() {
        let error = query_value::<Paging>("limit=%00").expect_err("nul");
        assert_eq!(field_of(error), "limit");
    }

    #[test]
    fn a_nul_deep_in_a_body_is_named_by_its_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Look {
            names: Vec<String>,
        }
        let error = json_value::<Look>(br#"{"names": ["ok", "bad\u0000"]}"#).expect_err("nul");
        assert_eq!(field_of(error), "names[1]");
    }

    #[test]
    fn a_whole_number_written_with_a_fraction_is_read_as_an_integer() {
        #[derive(Debug, serde::Deserialize)]
        struct Numbers {
            count: u8,
            size: u64,
            offset: i32,
            fraction: f64,
        }
        let parsed =
            json_value::<Numbers>(br#"{"count": 6.0, "size": 8.41374571e8, "offset": -2.0, "fraction": 1}"#)
                .expect("whole numbers");
        assert_eq!((parsed.count, parsed.size, parsed.offset), (6, 841_374_571, -2));
        assert!((parsed.fraction - 1.0).abs() < f64::EPSILON);
        let error = json_value::<Numbers>(br#"{"count": 6.5, "size": 1, "offset": 0, "fraction": 0}"#)
            .expect_err("a fraction");
        assert_eq!(field_of(error), "count");
    }

    #[test]
    fn only_nul_is_refused_at_the_edge() {
        assert_eq!(forbidden_char("a\tb\nc\r\u{7}\u{85}"), None);
        assert_eq!(forbidden_char("a\u{0}"), Some('\u{0}'));
    }

    #[test]
    fn a_null_optional_body_is_no_body() {
        #[derive(Debug, Default, serde::Deserialize)]
        struct Reason {
            reason: Option<String>,
        }
        let parsed = json_value::<Option<Reason>>(b"null").expect("null").unwrap_or_default();
        assert_eq!(parsed.reason, None);
    }
}
