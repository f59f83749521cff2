//! Local HTTP servers that implement the remote providers' protocols as
//! documented — fal's queue API, Gemini's generateContent, the http-worker
//! protocol — including their error cases, and count what they are asked, so
//! tests can prove what an agent did and did not send (the http-worker
//! server per unit of work, by the `Idempotency-Key` GPS sends).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use serde_json::{Value, json};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Decodes a `data:<type>;base64,<data>` URI.
fn from_data_uri(uri: &str) -> Option<Vec<u8>> {
    let (_, data) = uri.split_once(";base64,")?;
    base64::engine::general_purpose::STANDARD.decode(data).ok()
}

/// `bytes` (an image) re-encoded as PNG at `width` × `height`, hue rotated by `hue` degrees.
pub(crate) fn render(bytes: &[u8], width: u32, height: u32, hue: f32) -> Vec<u8> {
    let image = gps_compute_agents::imaging::decode(bytes).expect("the input is an image");
    let mut image = gps_compute_agents::imaging::fit_cover(&image, width.max(1), height.max(1));
    if hue != 0.0 {
        gps_compute_agents::imaging::hue_shift(&mut image, hue);
    }
    gps_compute_agents::imaging::encode(&image, "png").expect("encode").0.to_vec()
}

/// fal.ai's queue API: submit, status, result, cancel, media download.
pub(crate) struct FalServer {
    pub(crate) url: String,
    pub(crate) state: Arc<FalState>,
}

#[derive(Default)]
pub(crate) struct FalState {
    base: Mutex<String>,
    /// Submissions received (each is a paid request at the real provider).
    pub(crate) submissions: AtomicUsize,
    /// Cancel calls received.
    pub(crate) cancels: AtomicUsize,
    /// While false, every request stays IN_PROGRESS.
    pub(crate) release: AtomicBool,
    requests: Mutex<HashMap<String, Value>>,
}

impl FalServer {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(FalState::default());
        let app = Router::new()
            .route("/fal-ai/{*model}", post(fal_submit))
            .route("/requests/{id}/status", get(fal_status))
            .route("/requests/{id}", get(fal_result))
            .route("/requests/{id}/cancel", put(fal_cancel))
            .route("/media/{id}", get(fal_media))
            .with_state(state.clone());
        let addr = serve(app).await;
        let url = format!("http://{addr}");
        *state.base.lock().expect("lock") = url.clone();
        FalServer { url, state }
    }

    pub(crate) fn submissions(&self) -> usize {
        self.state.submissions.load(Ordering::SeqCst)
    }

    pub(crate) fn cancels(&self) -> usize {
        self.state.cancels.load(Ordering::SeqCst)
    }
}

fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Key test-fal-key");
    (!ok).then(|| (StatusCode::UNAUTHORIZED, axum::Json(json!({"detail": "invalid key"}))).into_response())
}

async fn fal_submit(
    State(state): State<Arc<FalState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"detail": "body is not JSON"})))
            .into_response();
    };
    state.submissions.fetch_add(1, Ordering::SeqCst);
    let id = uuid::Uuid::new_v4().simple().to_string();
    state.requests.lock().expect("lock").insert(id.clone(), input);
    let base = state.base.lock().expect("lock").clone();
    axum::Json(json!({
        "request_id": id,
        "status_url": format!("{base}/requests/{id}/status"),
        "response_url": format!("{base}/requests/{id}"),
        "cancel_url": format!("{base}/requests/{id}/cancel"),
        "queue_position": 0,
    }))
    .into_response()
}

async fn fal_status(
    State(state): State<Arc<FalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    if !state.requests.lock().expect("lock").contains_key(&id) {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"detail": "no such request"}))).into_response();
    }
    let status = if state.release.load(Ordering::SeqCst) { "COMPLETED" } else { "IN_PROGRESS" };
    axum::Json(json!({"status": status, "logs": []})).into_response()
}

async fn fal_result(
    State(state): State<Arc<FalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    let Some(input) = state.requests.lock().expect("lock").get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"detail": "no such request"}))).into_response();
    };
    if !state.release.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"detail": "request is still in progress"})))
            .into_response();
    }
    let base = state.base.lock().expect("lock").clone();
    axum::Json(json!({
        "images": [{ "url": format!("{base}/media/{id}"), "content_type": "image/png" }],
        "seed": input["seed"],
    }))
    .into_response()
}

async fn fal_cancel(
    State(state): State<Arc<FalState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = unauthorized(&headers) {
        return refused;
    }
    if !state.requests.lock().expect("lock").contains_key(&id) {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"detail": "no such request"}))).into_response();
    }
    state.cancels.fetch_add(1, Ordering::SeqCst);
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "CANCELLATION_REQUESTED"}))).into_response()
}

async fn fal_media(State(state): State<Arc<FalState>>, Path(id): Path<String>) -> Response {
    let Some(input) = state.requests.lock().expect("lock").get(&id).cloned() else {
        // Media URLs expire at fal; an unknown one answers as an expired one would.
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(source) = input["image_url"].as_str().and_then(from_data_uri) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "no image_url").into_response();
    };
    let width = input["image_size"]["width"].as_u64().unwrap_or(256) as u32;
    let height = input["image_size"]["height"].as_u64().unwrap_or(256) as u32;
    ([("content-type", "image/png")], render(&source, width, height, 0.0)).into_response()
}

/// Gemini's `generateContent`, answering every request with `answer`.
pub(crate) struct GeminiServer {
    pub(crate) url: String,
    pub(crate) calls: Arc<AtomicUsize>,
}

impl GeminiServer {
    pub(crate) async fn start(answer: Value) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let state = (calls.clone(), Arc::new(answer));
        let app = Router::new()
            .route(
                "/v1beta/models/{model_action}",
                post(
                    |State((calls, answer)): State<(Arc<AtomicUsize>, Arc<Value>)>,
                     Path(model_action): Path<String>,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok())
                            != Some("test-gemini-key")
                        {
                            return (
                                StatusCode::FORBIDDEN,
                                axum::Json(json!({"error": {"code": 403, "status": "PERMISSION_DENIED"}})),
                            )
                                .into_response();
                        }
                        let valid = model_action.ends_with(":generateContent")
                            && serde_json::from_slice::<Value>(&body).is_ok_and(|b| {
                                b["generationConfig"]["responseModalities"]
                                    .as_array()
                                    .is_some_and(|m| m.iter().any(|x| x == "IMAGE"))
                            });
                        if !valid {
                            return (
                                StatusCode::BAD_REQUEST,
                                axum::Json(json!({"error": {"code": 400, "status": "INVALID_ARGUMENT"}})),
                            )
                                .into_response();
                        }
                        calls.fetch_add(1, Ordering::SeqCst);
                        axum::Json((*answer).clone()).into_response()
                    },
                ),
            )
            .with_state(state);
        let addr = serve(app).await;
        GeminiServer { url: format!("http://{addr}"), calls }
    }
}

/// One scripted answer of the http-worker server.
#[derive(Debug, Clone)]
pub(crate) enum WorkerAnswer {
    /// An HTTP error with an optional `Retry-After` (seconds).
    Status(u16, Option<u64>),
    /// A 200 whose body is not the protocol's JSON.
    Malformed,
    /// Receives the request and never answers (the client times out).
    Hang,
}

#[derive(Default)]
struct WorkerState {
    calls: AtomicUsize,
    script: Mutex<VecDeque<WorkerAnswer>>,
    always: Mutex<Option<WorkerAnswer>>,
    hue: Mutex<f32>,
    /// How long each answer takes.
    delay: Mutex<std::time::Duration>,
    /// Requests per `Idempotency-Key` (one unit of work: generation, attempt, step, variant).
    per_key: Mutex<HashMap<String, usize>>,
}

/// The http-worker protocol: `POST /v1/tasks`. Answers the script first, then
/// (with an empty script) the input image at the requested size, hue-rotated
/// by `hue` degrees, after the configured delay. Counts every request, and
/// every request per `Idempotency-Key`.
pub(crate) struct WorkerServer {
    pub(crate) url: String,
    state: Arc<WorkerState>,
}

impl WorkerServer {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(WorkerState::default());
        let app = Router::new().route("/v1/tasks", post(worker_task)).with_state(state.clone());
        let addr = serve(app).await;
        WorkerServer { url: format!("http://{addr}"), state }
    }

    pub(crate) fn script(&self, answers: impl IntoIterator<Item = WorkerAnswer>) {
        self.state.script.lock().expect("lock").extend(answers);
    }

    /// Answers every request with `answer` from now on (a provider that is down).
    pub(crate) fn always(&self, answer: WorkerAnswer) {
        *self.state.always.lock().expect("lock") = Some(answer);
    }

    /// Forgets the script and the standing answer: the worker answers normally.
    pub(crate) fn clear(&self) {
        self.state.script.lock().expect("lock").clear();
        *self.state.always.lock().expect("lock") = None;
    }

    pub(crate) fn set_hue(&self, degrees: f32) {
        *self.state.hue.lock().expect("lock") = degrees;
    }

    /// Makes every answer take `delay` (a slow, paid model).
    pub(crate) fn set_delay(&self, delay: std::time::Duration) {
        *self.state.delay.lock().expect("lock") = delay;
    }

    pub(crate) fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Requests received per `Idempotency-Key`.
    pub(crate) fn calls_per_key(&self) -> HashMap<String, usize> {
        self.state.per_key.lock().expect("lock").clone()
    }
}

async fn worker_task(
    State(state): State<Arc<WorkerState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    *state.per_key.lock().expect("lock").entry(key).or_insert(0) += 1;
    let scripted =
        state.script.lock().expect("lock").pop_front().or_else(|| state.always.lock().expect("lock").clone());
    match scripted {
        Some(WorkerAnswer::Status(code, retry_after)) => {
            let status = StatusCode::from_u16(code).expect("status");
            let mut response =
                (status, axum::Json(json!({"error": format!("scripted {code}")}))).into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.to_string().parse().expect("header"));
            }
            return response;
        }
        Some(WorkerAnswer::Malformed) => return (StatusCode::OK, "{\"model\": ").into_response(),
        Some(WorkerAnswer::Hang) => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        None => {}
    }
    let delay = *state.delay.lock().expect("lock");
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Ok(task) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "body is not JSON"}))).into_response();
    };
    let images = task["images"].as_array().cloned().unwrap_or_default();
    let input = images
        .iter()
        .find(|i| i["role"] == "source")
        .or_else(|| images.iter().find(|i| i["role"] == "product"))
        .and_then(|i| i["data_base64"].as_str())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
    let Some(input) = input else {
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"refused": "no input image"})))
            .into_response();
    };
    let width = task["width"].as_u64().unwrap_or(256) as u32;
    let height = task["height"].as_u64().unwrap_or(256) as u32;
    let degrees = *state.hue.lock().expect("lock");
    let png = render(&input, width, height, degrees);
    axum::Json(json!({
        "model": "test-worker-v1",
        "image": { "media_type": "image/png", "data_base64": base64::engine::general_purpose::STANDARD.encode(png) },
        "usage_units": 1,
    }))
    .into_response()
}
