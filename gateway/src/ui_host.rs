//! Serves the UI (`gps-ui`): the sign-in form, the page of every `/app/…`
//! address, and the LiveView socket whose components call this gateway's own
//! API in-process with the person's session, so the UI passes exactly the
//! checks an API client passes.
//!
//! - `GET /` → `/app`; `GET /app/sign-in` and `POST /app/sign-in` (a form: the
//!   session cookie is HttpOnly, so only an HTTP response can set it);
//!   `POST /app/sign-out`.
//! - `GET /app/set-password?token=…` and `POST /app/set-password`: the page
//!   behind the link mailed to a person added to a brand without a password
//!   (a form, like sign-in; no session needed: the one-time token is the
//!   credential, `invites::set_password_with_token`).
//! - `GET /app` and `GET /app/{*path}`: the page, or a redirect to sign-in.
//!   (The LiveView crate's own catch-all route does not match `/app` itself,
//!   so both are routed here.)
//! - `GET /app/ws`: the socket. A socket opened from another site's page is
//!   refused (its `Origin` must be this host), as is one without a session.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use gps_ui::{Api, ApiCall, ApiReply};
use serde::Deserialize;
use tower::ServiceExt;

use crate::auth::{self, CSRF_HEADER, SESSION_COOKIE};
use crate::{ApiError, AppState};

/// How many live notices may wait for a page that is busy rendering.
const FOLLOW_BUFFER: usize = 64;

/// The largest API answer the UI reads (a page of 200 rows is far smaller).
const REPLY_LIMIT: usize = 16 * 1024 * 1024;

/// The UI routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app") }))
        .route("/app/sign-in", get(sign_in_form).post(sign_in))
        .route("/app/sign-out", post(sign_out))
        .route("/app/set-password", get(set_password_form).post(set_password))
        .route("/app/ws", get(socket))
        .route("/app", get(page))
        .route("/app/{*path}", get(page))
}

/// One LiveView pool for the process: it runs each connection's components
/// on a fixed set of threads.
fn ui() -> &'static gps_ui::Ui {
    static UI: OnceLock<gps_ui::Ui> = OnceLock::new();
    UI.get_or_init(gps_ui::Ui::new)
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    auth::session_token(headers)
}

/// Why a request from a page of another site is refused, when its `Origin`
/// names another host than the one it was sent to (browsers send `Origin` on
/// every form POST and socket; a request without one is not a browser's
/// cross-site request).
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or(origin);
    (origin_host != host)
        .then(|| format!("GPS only accepts its own pages here ({host}); open GPS from its own address"))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    // The pages carry the session's CSRF token: never cache or frame them.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

/// Where to go after signing in: only an address of the UI itself.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with("/app") && !next.starts_with("//") && !next.contains("://") => {
            next.to_owned()
        }
        _ => "/app".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_form(Query(query): Query<NextQuery>) -> Response {
    html(StatusCode::OK, gps_ui::sign_in_page(None, "", &safe_next(query.next.as_deref())))
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    peer: auth::Peer,
    source: auth::SourceAddress,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    // A form on another site must not sign a browser in to GPS (login CSRF:
    // the victim would then work in the attacker's account).
    if let Some(refusal) = foreign_origin(&headers) {
        return html(StatusCode::FORBIDDEN, gps_ui::sign_in_page(Some(&refusal), "", &next));
    }
    match auth::sign_in(&state, &form.email, &form.password, &source).await {
        Ok((_user, token, _csrf)) => {
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = auth::session_cookie(&token, auth::secure_cookies(&state, &peer, &headers)) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(ApiError::Unauthenticated(_)) => html(
            StatusCode::UNAUTHORIZED,
            gps_ui::sign_in_page(
                Some("That email and password do not match an account. Check both and try again."),
                &form.email,
                &next,
            ),
        ),
        Err(ApiError::TooManyRequests { message, .. }) => html(
            StatusCode::TOO_MANY_REQUESTS,
            gps_ui::sign_in_page(Some(&format!("Signing in is paused: {message}.")), &form.email, &next),
        ),
        Err(error) => {
            tracing::error!(%error, "sign-in failed");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                gps_ui::sign_in_page(
                    Some("Signing in is not possible right now; try again in a moment."),
                    &form.email,
                    &next,
                ),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn set_password_form(Query(query): Query<TokenQuery>) -> Response {
    let token = query.token.unwrap_or_default();
    let problem = token.is_empty().then_some(
        "This page needs the whole link from your mail; open it again, or copy all of it into the address bar.",
    );
    let mut response = html(StatusCode::OK, gps_ui::set_password_page(problem, &token));
    // The address holds the token: never hand it to another site (`same-origin`,
    // not `no-referrer`, which would make the form's own `Origin` `null`).
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

#[derive(Debug, Deserialize)]
struct SetPasswordForm {
    token: String,
    password: String,
    confirm: String,
}

async fn set_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    let page =
        |status, problem: &str, token: &str| html(status, gps_ui::set_password_page(Some(problem), token));
    if let Some(refusal) = foreign_origin(&headers) {
        return page(StatusCode::FORBIDDEN, &refusal, &form.token);
    }
    if form.password != form.confirm {
        return page(
            StatusCode::BAD_REQUEST,
            "The two passwords differ; type the same one twice.",
            &form.token,
        );
    }
    match crate::invites::set_password_with_token(&state, &form.token, &form.password).await {
        Ok(_) => html(StatusCode::OK, gps_ui::password_set_page()),
        Err(ApiError::Validation { field, message }) => {
            let problem = match field.as_str() {
                "password" => format!("That password cannot be used: {message}."),
                _ => format!("This link cannot be used: {message}."),
            };
            page(StatusCode::BAD_REQUEST, &problem, &form.token)
        }
        Err(error) => {
            tracing::error!(%error, "setting a password with a mailed link failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Setting the password is not possible right now; try again in a moment.",
                &form.token,
            )
        }
    }
}

async fn sign_out(State(state): State<AppState>, peer: auth::Peer, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Err(error) = auth::sign_out(&state, &token).await
    {
        tracing::warn!(%error, "sign-out failed");
    }
    let mut response = Redirect::to("/app/sign-in").into_response();
    let secure = auth::secure_cookies(&state, &peer, &headers);
    response.headers_mut().insert(header::SET_COOKIE, auth::cleared_session_cookie(secure));
    response
}

async fn page(State(state): State<AppState>, request: Request) -> Response {
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let signed_in = match session_token(request.headers()) {
        Some(token) => auth::session(&state, &token).await.ok(),
        None => None,
    };
    let Some((principal, csrf)) = signed_in else {
        return Redirect::to(&format!("/app/sign-in?next={}", encode(&path_and_query))).into_response();
    };
    // A person of one brand starts on its catalog rather than a list of one.
    if let (auth::Principal::User { user_id }, "/app" | "/app/") = (&principal, request.uri().path())
        && let Ok([only]) =
            gps_projections::queries::memberships_of(&state.db, user_id.as_str()).await.as_deref()
    {
        return Redirect::to(&format!("/app/{}/catalog", encode(&only.brand))).into_response();
    }
    html(StatusCode::OK, gps_ui::page(&format!("/app/ws?path={}", encode(&path_and_query)), &csrf))
}

#[derive(Debug, Deserialize)]
struct SocketQuery {
    path: Option<String>,
}

async fn socket(
    State(state): State<AppState>,
    peer: auth::Peer,
    headers: HeaderMap,
    Query(query): Query<SocketQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if let Some(refusal) = foreign_origin(&headers) {
        return Err(ApiError::Forbidden(refusal));
    }
    let token = session_token(&headers)
        .ok_or_else(|| ApiError::Unauthenticated("sign in at /app/sign-in first".into()))?;
    let (_principal, csrf) = auth::session(&state, &token).await?;
    let link_base = crate::invites::link_base(&state, &peer, &headers, None);
    let watcher = state.clone();
    let api = InProcessApi {
        runtime: tokio::runtime::Handle::current(),
        app: crate::app(state),
        cookie: HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}"))
            .map_err(|_| ApiError::Unauthenticated("the session cookie is not valid".into()))?,
        csrf: HeaderValue::from_str(&csrf).map_err(|e| ApiError::Internal(e.to_string()))?,
        link_base: crate::invites::LinkBase(link_base),
    };
    let path = safe_next(query.path.as_deref());
    Ok(upgrade.on_upgrade(move |socket| async move {
        // The socket closes when its session ends: a signed-out person's
        // open tab stops showing the brand's changes.
        tokio::select! {
            () = ui().serve(socket, Arc::new(api), path) => {}
            () = auth::until_session_ends(&watcher, &token) => {}
        }
    }))
}

/// Marks a request the UI made in-process (a request extension, which no
/// client can set): the request log keeps those at debug level, since a
/// screen makes several per action and its page's own request is logged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InProcessCall;

/// The gateway's own router, called with the person's session cookie and
/// CSRF token: every UI action is an API request in all but transport.
///
/// Requests run on the gateway's runtime, not on the LiveView's component
/// threads: database and NATS I/O then stays where the rest of the gateway
/// drives it, and a slow request never holds up rendering.
struct InProcessApi {
    runtime: tokio::runtime::Handle,
    app: Router,
    cookie: HeaderValue,
    csrf: HeaderValue,
    /// The address the browser reached the UI at, for links the API mails.
    link_base: crate::invites::LinkBase,
}

impl InProcessApi {
    fn request(&self, method: &str, path: &str, accept: &'static str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "gps.internal")
            .header(header::ACCEPT, accept)
            .header(header::COOKIE, self.cookie.clone())
            .header(CSRF_HEADER, self.csrf.clone())
            .extension(InProcessCall)
            .extension(self.link_base.clone())
    }
}

impl Api for InProcessApi {
    fn call(&self, call: ApiCall) -> Pin<Box<dyn Future<Output = ApiReply> + Send>> {
        let mut builder = self.request(call.method, &call.path, "application/json");
        if let Some(sequence) = call.min_sequence {
            builder = builder.header(crate::MIN_SEQUENCE_HEADER, sequence);
        }
        let request = match call.json {
            Some(json) => {
                builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(json.to_string()))
            }
            None => builder.body(Body::empty()),
        };
        let app = self.app.clone();
        let answer = self.runtime.spawn(async move {
            let Ok(request) = request else {
                return problem_reply(400, "the UI built a request the API cannot take; reload the page");
            };
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let status = response.status().as_u16();
            match axum::body::to_bytes(response.into_body(), REPLY_LIMIT).await {
                Ok(body) => ApiReply { status, body },
                Err(error) => problem_reply(502, &format!("the answer could not be read: {error}")),
            }
        });
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|error| problem_reply(500, &format!("the request did not finish: {error}")))
        })
    }

    fn follow(&self, path: String) -> Pin<Box<dyn Stream<Item = String> + Send>> {
        let request = self.request("GET", &path, "text/event-stream").body(Body::empty());
        let app = self.app.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel::<String>(FOLLOW_BUFFER);
        self.runtime.spawn(async move {
            let Ok(request) = request else { return };
            let response: Response =
                app.oneshot(request).await.unwrap_or_else(|never: Infallible| match never {});
            if !response.status().is_success() {
                return;
            }
            let mut chunks = response.into_body().into_data_stream();
            let mut pending = String::new();
            loop {
                let chunk = tokio::select! {
                    chunk = chunks.next() => chunk,
                    // The page went away: stop following.
                    () = sender.closed() => return,
                };
                let Some(Ok(chunk)) = chunk else { return };
                pending.push_str(&String::from_utf8_lossy(&chunk));
                // SSE frames end with a blank line; only `data:` lines matter here.
                while let Some(end) = pending.find("\n\n") {
                    let frame: String = pending.drain(..end + 2).collect();
                    let data: Vec<&str> = frame
                        .lines()
                        .filter_map(|line| line.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if !data.is_empty() && sender.send(data.join("\n")).await.is_err() {
                        return;
                    }
                }
            }
        });
        Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|data| (data, receiver))
        }))
    }
}

fn problem_reply(status: u16, detail: &str) -> ApiReply {
    let body = serde_json::json!({"title": "UI request failed", "detail": detail, "status": status});
    ApiReply { status, body: bytes::Bytes::from(body.to_string()) }
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_of_the_ui_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/app/acme/catalog?q=x")), "/app/acme/catalog?q=x");
        assert_eq!(safe_next(Some("https://evil.example/app")), "/app");
        assert_eq!(safe_next(Some("//evil.example/app")), "/app");
        assert_eq!(safe_next(Some("/api/v1/me")), "/app");
        assert_eq!(safe_next(None), "/app");
    }
}
