//! The GPS gateway: the HTTP face of the platform. At this stage it serves the
//! health endpoint; the REST API, uploads, the CDN route, live updates and the
//! UI join it in later issues.
//!
//! Architecture invariant: handlers turn HTTP into commands and queries and
//! back; business rules stay in `gps-domain`, writes go through
//! `gps-commands`. The router comes from [`app`], and [`run`] serves it on a
//! listener the caller bound (tests bind port 0).

use std::future::Future;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use gps_nats::EventLog;
use serde::Serialize;
use tokio::net::TcpListener;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event log (its client also tells whether NATS is connected).
    pub log: EventLog,
}

/// The body of `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// The NATS connection state.
    pub nats: String,
    /// The event log stream.
    pub stream: String,
    /// The last stream sequence, when the stream answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<u64>,
    /// The build's version.
    pub version: &'static str,
}

/// The router with every route.
pub fn app(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let connection = state.log.client().connection_state();
    let connected = matches!(connection, async_nats::connection::State::Connected);
    let stream_name = state.log.settings().name.clone();
    let last_sequence = if connected {
        match state.log.jetstream().get_stream(&stream_name).await {
            Ok(mut stream) => stream.info().await.ok().map(|info| info.state.last_sequence),
            Err(_) => None,
        }
    } else {
        None
    };
    let healthy = connected && last_sequence.is_some();
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        nats: format!("{connection:?}").to_lowercase(),
        stream: stream_name,
        last_sequence,
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
