//! `ApiError`: every failure of the HTTP API, as an RFC 9457 problem document
//! (`application/problem+json`). Each variant decides its status. Domain
//! rejections become 404/409/422 with the domain's readable message, validation
//! names the field, infrastructure failures are 500/503 without internals (the
//! details are logged by the request middleware, under the request id).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gps_commands::CommandError;
use gps_domain::DomainError;
use serde::Serialize;

/// A failure of an API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request value is malformed; `field` names it.
    #[error("{field}: {message}")]
    Validation {
        /// The JSON field, header or path segment.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// No credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist, or the caller may not know it exists.
    #[error("{0}")]
    NotFound(String),
    /// The domain refused the command for the state it is in.
    #[error("{0}")]
    Rejected(String),
    /// The command breaks a business rule, or an upload cannot be used.
    #[error("{0}")]
    Unprocessable(String),
    /// The request body, or one part of a multipart body, is over its
    /// limit; `field` names it (`body`, or the part: `catalog`).
    #[error("{field}: {message}")]
    PayloadTooLarge {
        /// `body`, or the multipart part that is too large.
        field: String,
        /// The limit and what to send instead.
        message: String,
    },
    /// The uploaded file is not a type GPS accepts.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The address exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The asked byte range is outside the object.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// Concurrent changes kept colliding, or an id was reused.
    #[error("{0}")]
    Conflict(String),
    /// A request asked for a stream sequence the event log has not reached:
    /// no command answered it, so waiting would not help.
    #[error("{field}: {message}")]
    BeyondTheLog {
        /// The parameter or header that named the sequence.
        field: String,
        /// The log's last sequence and what to give instead.
        message: String,
    },
    /// The read model has not yet reached the sequence the request asked for.
    #[error("{0}")]
    NotYetConsistent(String),
    /// An Idempotency-Key came back with a different request than the one it
    /// was first used for.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// Too many attempts; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        /// What was limited and when to try again.
        message: String,
        /// Seconds until an attempt can succeed (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// A dependency (NATS, Postgres) is unavailable; retrying may help.
    #[error("service unavailable")]
    Unavailable(String),
    /// A bug or an unexpected failure.
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of an error response (RFC 9457 problem details).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request, for a person.
    pub detail: String,
    /// For validation errors: the field, header or path segment at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// Shorthand for a validation error.
    pub fn field(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ApiError::Validation { field: field.into(), message: message.to_string() }
    }

    /// Shorthand for a body (or a part of it) over its limit.
    pub fn too_large(field: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ApiError::PayloadTooLarge { field: field.into(), message: message.to_string() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Rejected(_) | ApiError::Conflict(_) | ApiError::BeyondTheLog { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Unprocessable(_) | ApiError::IdempotencyKeyReused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::NotYetConsistent(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The detail for the log; for 5xx it is not sent to the client.
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            ApiError::Unavailable(detail) | ApiError::Internal(detail) => Some(detail),
            _ => None,
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Validation { .. } => ("https://gps.example/problems/validation", "Invalid request"),
            ApiError::Unauthenticated(_) => {
                ("https://gps.example/problems/unauthenticated", "Sign in required")
            }
            ApiError::Forbidden(_) => ("https://gps.example/problems/forbidden", "Not allowed for your role"),
            ApiError::NotFound(_) => ("https://gps.example/problems/not-found", "Not found"),
            ApiError::Rejected(_) => {
                ("https://gps.example/problems/rejected", "Not possible in the current state")
            }
            ApiError::Unprocessable(_) => ("https://gps.example/problems/rule", "Breaks a business rule"),
            ApiError::IdempotencyKeyReused(_) => (
                "https://gps.example/problems/idempotency-key-reused",
                "Idempotency-Key used for another request",
            ),
            ApiError::PayloadTooLarge { .. } => {
                ("https://gps.example/problems/too-large", "Request too large")
            }
            ApiError::UnsupportedMediaType(_) => {
                ("https://gps.example/problems/unsupported-media-type", "Not an accepted file type")
            }
            ApiError::MethodNotAllowed(_) => {
                ("https://gps.example/problems/method-not-allowed", "Method not allowed")
            }
            ApiError::RangeNotSatisfiable(_) => {
                ("https://gps.example/problems/range-not-satisfiable", "Range not satisfiable")
            }
            ApiError::Conflict(_) => ("https://gps.example/problems/conflict", "Conflict"),
            ApiError::BeyondTheLog { .. } => {
                ("https://gps.example/problems/beyond-the-log", "The event log has not reached this sequence")
            }
            ApiError::NotYetConsistent(_) => {
                ("https://gps.example/problems/not-yet-consistent", "Not yet consistent; retry shortly")
            }
            ApiError::TooManyRequests { .. } => {
                ("https://gps.example/problems/too-many-requests", "Too many attempts")
            }
            ApiError::Unavailable(_) => ("https://gps.example/problems/unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("https://gps.example/problems/internal", "Internal error"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (kind, title) = self.kind();
        let detail = match &self {
            ApiError::Unavailable(_) => {
                "a dependency is unavailable; retry shortly (with the same Idempotency-Key for commands)"
                    .to_owned()
            }
            ApiError::Internal(_) => {
                "something went wrong on our side; it has been logged with the request id".to_owned()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Validation { field, .. }
            | ApiError::BeyondTheLog { field, .. }
            | ApiError::PayloadTooLarge { field, .. } => Some(field.clone()),
            ApiError::IdempotencyKeyReused(_) => Some("Idempotency-Key".to_owned()),
            _ => None,
        };
        let body = Problem {
            kind: kind.to_owned(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::TooManyRequests { retry_after_secs, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        // A read model that lags the log usually catches up within a second.
        if let ApiError::NotYetConsistent(_) = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // The middleware logs 5xx details; the client never sees them.
        if let Some(detail) = self.log_detail() {
            response.extensions_mut().insert(LoggedDetail(detail.to_owned()));
        }
        response
    }
}

/// The internal detail of a 5xx, handed to the logging middleware.
#[derive(Debug, Clone)]
pub struct LoggedDetail(pub String);

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected { error: DomainError::NotFound { .. }, address } => {
                ApiError::NotFound(format!("{address} does not exist"))
            }
            CommandError::Rejected { error: DomainError::AlreadyExists { kind, id }, .. } => {
                ApiError::Conflict(format!("{kind} {id} already exists"))
            }
            CommandError::Rejected { error: DomainError::InvalidState(message), .. } => {
                ApiError::Rejected(message)
            }
            CommandError::Rejected { error: DomainError::RuleViolated(message), .. } => {
                ApiError::Unprocessable(message)
            }
            CommandError::Conflict { .. } | CommandError::CommandIdReused { .. } => {
                ApiError::Conflict(error.to_string())
            }
            CommandError::Invalid(message) => ApiError::field("request", message),
            CommandError::Corrupt { .. } => ApiError::Internal(error.to_string()),
            CommandError::Unavailable(message) => ApiError::Unavailable(message),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                ApiError::Unavailable(format!("database: {error}"))
            }
            // SQLSTATE class 22 ("data exception": a character text cannot
            // hold, a number out of range, a value of the wrong form) is
            // raised by a value the request carried, never by our SQL: the
            // caller's mistake, not a server error. The extractors refuse
            // such text first; this catches what they cannot know.
            sqlx::Error::Database(database) if database.code().is_some_and(|code| code.starts_with("22")) => {
                ApiError::field(
                    "request",
                    format!(
                        "a value of this request cannot be stored or compared: {}; remove control \
                         characters and keep numbers within their documented range",
                        database.message()
                    ),
                )
            }
            // SQLSTATE class 23 (integrity constraint: a unique key taken, a
            // reference gone) is a request colliding with stored state, as
            // when an id given by the caller is already in use.
            sqlx::Error::Database(database) if database.code().is_some_and(|code| code.starts_with("23")) => {
                ApiError::Conflict(
                    "a value of this request collides with what is stored (an id used before?); use another \
                     or read the current state"
                        .into(),
                )
            }
            other => ApiError::Internal(format!("database: {other}")),
        }
    }
}
