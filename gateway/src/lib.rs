//! The GPS gateway: the HTTP face of the platform.
//!
//! Layout: [`error`] (`ApiError`, problem documents), [`auth`] (sign-in,
//! sessions, API keys, roles per brand), [`accounts`] (persons as events:
//! create, change password, erase; the credentials store), [`invites`] (adding
//! members by address without telling whether it had an account, one-time
//! links to choose a password), [`mail`] (the mailer: an outbox folder), [`access`] (what authorization
//! remembers between requests, kept current by brand events), `routes` (sessions, brands, members,
//! API clients, products), `configure` (subjects, styles, shootings with
//! launch, looks), `review` (approve, reject, revision, comments), `operate`
//! (cancel and retry generations, channel presets, export requests), `queries`
//! (read models, read-your-writes), `live` (SSE), [`events`] (the brand's
//! event stream for downstream systems: SSE and JSON pages), `audit` (aggregate
//! histories for owners and auditors, each read recorded as an event),
//! [`openapi`] (with `openapi_rules`: what the server enforces, declared in
//! the document), `extract` (the extractors every handler uses: each rejection
//! a problem document naming the field), [`images`] (image intake: sniffing, limits, working copy,
//! analysis), [`media`] (the object store, upload limits, signed CDN URLs),
//! [`uploads`] (image upload endpoints), `cdn` (`GET /cdn/{key}`),
//! [`archive`] (ZIPs of catalog imports, read within limits),
//! [`catalog_file`] (CSV / JSON Lines catalogs read into rows), [`imports`]
//! (catalog imports as background jobs recorded by the Import aggregate), and
//! `/healthz` here, [`readiness`] (`/readyz`: the checks the roles of the process
//! register), and `ui_host` (the UI's pages and its LiveView socket).
//!
//! Architecture invariant: handlers turn HTTP into commands and queries and
//! back; business rules stay in `gps-domain`, writes go through
//! `gps-commands`. The router comes from [`app`], and [`run`] serves it on a
//! listener the caller bound (tests bind port 0).

pub mod access;
pub mod accounts;
pub mod archive;
mod audit;
pub mod auth;
pub mod catalog_file;
pub mod cdn;
mod configure;
mod cpu;
pub mod error;
pub mod events;
mod extract;
mod idempotency;
pub mod images;
pub mod imports;
pub mod invites;
mod live;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod openapi;
mod openapi_rules;
mod operate;
pub mod progress;
mod queries;
pub mod readiness;
mod review;
mod routes;
pub mod stream_slots;
mod ui_host;
pub mod uploads;

use std::future::Future;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gps_commands::CommandHandler;
use gps_nats::EventLog;
use serde::Serialize;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use queries::MIN_SEQUENCE_HEADER;
pub use routes::{Accepted, IDEMPOTENCY_KEY_HEADER, STREAM_SEQUENCE_HEADER};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The event log (its client also tells whether NATS is connected).
    pub log: EventLog,
    /// The command path.
    pub commands: CommandHandler,
    /// The read database: the projections' read models (rebuildable).
    pub db: sqlx::PgPool,
    /// The credentials store (`auth`: password hashes, sessions, API key
    /// hashes, failed sign-ins; `privacy`: the vault's keys): not rebuildable
    /// from the log, so a database of its own (see `accounts`).
    pub credentials: sqlx::PgPool,
    /// Mark the session cookie `Secure` (HTTPS deployments).
    pub cookie_secure: bool,
    /// Brands and credentials remembered between requests.
    pub access: access::AccessCache,
    /// Object storage, upload limits and signed URLs.
    pub media: media::Media,
    /// The address rules export webhooks must pass when they are requested
    /// (the delivery worker checks again when it posts).
    pub webhook_targets: gps_storage::SafeFetcher,
    /// What the other roles of this process report for `/readyz`.
    pub readiness: readiness::Readiness,
    /// One product per SKU, decided on the write side.
    pub sku_claims: gps_commands::sku_claims::SkuClaims,
    /// Reverse proxies whose `X-Forwarded-For` is believed when they are the
    /// peer (sign-in throttling counts per source address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Open event streams, bounded per caller and in total.
    pub streams: stream_slots::StreamSlots,
    /// How far each projection has applied the log, from its notices.
    pub progress: progress::ProjectionProgress,
    /// The imports this gateway runs, bounded in all and per brand.
    pub imports: imports::ImportSlots,
    /// Who may create brands (default: platform admins only).
    pub brand_creation: accounts::BrandCreation,
    /// The bearer token that lets a caller from elsewhere read `/metrics`
    /// (`GPS_METRICS_TOKEN`); without one, only callers on this machine may.
    pub metrics_token: Option<String>,
    /// Where mail to people goes (an outbox folder for `gps up`).
    pub mailer: mail::Mailer,
    /// The address people reach this gateway at (`public_url`,
    /// `GPS_PUBLIC_URL`), for links in mail; unset, links use the request's.
    pub public_url: Option<String>,
    /// How long a mailed link to choose a password stays valid.
    pub password_link_lifetime: std::time::Duration,
}

/// Why a gateway's state could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The access cache could not subscribe to brand events and sign-outs.
    #[error("subscribing the gateway to brand events: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The SKU claims bucket could not be opened or created.
    #[error("opening the SKU claims: {0}")]
    SkuClaims(#[from] gps_commands::sku_claims::ClaimError),
}

impl AppState {
    /// The state of a gateway, with its authorization cache subscribed to
    /// brand events and sign-outs.
    pub async fn new(
        log: EventLog,
        commands: CommandHandler,
        db: sqlx::PgPool,
        cookie_secure: bool,
        media: media::Media,
    ) -> Result<Self, StartError> {
        let access = access::AccessCache::watch(&log).await?;
        let progress = progress::ProjectionProgress::follow(&log).await?;
        let import_settings = &media.settings().imports;
        let imports =
            imports::ImportSlots::new(import_settings.max_running, import_settings.max_running_per_brand);
        let sku_claims = gps_commands::sku_claims::SkuClaims::open(commands.clone()).await?;
        let webhook_targets = gps_storage::SafeFetcher::new(gps_storage::FetchLimits::default());
        Ok(AppState {
            log,
            commands,
            credentials: db.clone(),
            db,
            cookie_secure,
            access,
            media,
            webhook_targets,
            readiness: readiness::Readiness::default(),
            sku_claims,
            trusted_proxies: Vec::new(),
            streams: stream_slots::StreamSlots::default(),
            progress,
            imports,
            brand_creation: accounts::BrandCreation::default(),
            metrics_token: None,
            mailer: mail::Mailer::default(),
            public_url: None,
            password_link_lifetime: invites::TOKEN_LIFETIME,
        })
    }

    /// Uses `credentials` as the credentials store (by default the read
    /// database holds it too, as in tests that need only one database).
    pub fn with_credentials(mut self, credentials: sqlx::PgPool) -> Self {
        self.credentials = credentials;
        self
    }

    /// Exempts one exact socket address from the webhook address rules — for
    /// a test receiver or a known internal endpoint; there is no blanket
    /// "allow private addresses".
    pub fn allowing_webhook_target(mut self, address: std::net::SocketAddr) -> Self {
        self.webhook_targets = self.webhook_targets.allowing(address);
        self
    }
}

/// The header carrying each request's id, in responses and logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The body of `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// The NATS connection state.
    pub nats: String,
    /// The event log stream.
    pub stream: String,
    /// The build's version.
    pub version: &'static str,
}

/// The router with every route.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readiness::readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi_json))
        .merge(routes::router())
        .merge(cdn::router())
        .merge(ui_host::router())
        .fallback(extract::unknown_address)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), idempotency::replay_or_record))
        .layer(middleware::from_fn(request_log))
        .with_state(state)
}

/// Gives every request an id (its own `x-request-id` if sane, else a new
/// one), returns it, and logs each request once; a 5xx's internal detail is
/// logged here and never sent to the client. The UI's in-process calls are
/// logged at debug level (a server error still at error level): a screen
/// makes several per action, and the page and socket behind them are logged
/// as requests of their own.
async fn request_log(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let in_process = request.extensions().get::<ui_host::InProcessCall>().is_some();
    // The router's template, never the raw path: metric labels stay bounded.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |matched| matched.as_str().to_owned());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let metrics = gps_nats::metrics::metrics();
    metrics
        .http_requests
        .get_or_create(&gps_nats::metrics::HttpLabels {
            method: method.to_string(),
            route: route.clone(),
            status: status.as_u16(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&gps_nats::metrics::RouteLabels { method: method.to_string(), route })
        .observe(elapsed.as_secs_f64());
    match response.extensions().get::<error::LoggedDetail>() {
        Some(detail) => {
            tracing::error!(%request_id, %method, %path, status = status.as_u16(), elapsed_ms, detail = %detail.0, "request failed")
        }
        None if in_process => {
            tracing::debug!(%request_id, %method, %path, status = status.as_u16(), elapsed_ms, "in-process request")
        }
        None => tracing::info!(%request_id, %method, %path, status = status.as_u16(), elapsed_ms, "request"),
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// How long a client may take to send a request's head (its line and
/// headers), and the longest a kept-alive connection may sit idle waiting for
/// its next request: a client that opens connections and trickles bytes (or
/// none) cannot hold them, and the file descriptors and memory behind them,
/// for ever.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a shutdown waits for open connections (event streams never end
/// on their own) before it closes them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves [`app`] on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, state, HEADER_READ_TIMEOUT, shutdown).await
}

/// Like [`run`], with its own [`HEADER_READ_TIMEOUT`].
pub async fn run_with(
    listener: TcpListener,
    state: AppState,
    header_read_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = app(state);
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a connection reset before
                    // accept: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The peer's address reaches handlers (sign-in throttling per source).
        let router = app.clone();
        let service =
            hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let router = router.clone();
                async move { tower::ServiceExt::oneshot(router, request.map(axum::body::Body::new)).await }
            });
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.wait_for(|closing| *closing) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
        // Forget connections that have ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing the connections still open after the shutdown grace"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn openapi_json() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi::document())
}

/// `GET /metrics` on the gateway's port (see [`metrics`]), with this
/// gateway's open event streams.
async fn metrics(
    State(state): State<AppState>,
    peer: auth::Peer,
    headers: axum::http::HeaderMap,
) -> Response {
    gps_nats::metrics::metrics().sse_streams.set(i64::try_from(state.streams.open()).unwrap_or(i64::MAX));
    metrics::answer(peer.0, &headers, state.metrics_token.as_deref())
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let connection = state.log.client().connection_state();
    let connected = matches!(connection, async_nats::connection::State::Connected);
    let stream_name = state.log.settings().name.clone();
    // The stream must answer; how far it reaches is not said: anyone may
    // call this, and the log's length tells how busy the platform is.
    let stream_answers = connected
        && match state.log.jetstream().get_stream(&stream_name).await {
            Ok(mut stream) => stream.info().await.is_ok(),
            Err(_) => false,
        };
    let healthy = stream_answers;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        nats: format!("{connection:?}").to_lowercase(),
        stream: stream_name,
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
