//! Live updates: `GET /api/v1/brands/{brand}/live` streams Server-Sent Events
//! as the projection runners make the brand's changes visible. Each event is a
//! [`LiveNotice`] (`event: notice`, `id:` the stream sequence); a client
//! re-reads what it shows with `min_sequence` set to that sequence.
//!
//! Notices travel on core NATS (`gps.live.<brand>`), not the stream: a client
//! that was away re-reads its lists rather than replaying notices. A client
//! that does not keep up is disconnected (its buffer is bounded) so it can
//! never slow the others or the gateway.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;

use crate::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use gps_projections::LiveNotice;

use crate::auth::{self, Principal};
use crate::routes::{actions, brand_id};
use crate::{ApiError, AppState};

/// How many notices may wait for one slow client before it is dropped.
pub(crate) const CLIENT_BUFFER: usize = 256;

/// The live route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/brands/{brand}/live", get(live))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/live", tag = "live",
    params(("brand" = String, Path, description = "The brand id")),
    responses(
        (status = 200, description = "A text/event-stream of `notice` events, each a LiveNotice JSON with `id` = its stream sequence", content_type = "text/event-stream", body = LiveNotice),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn live(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
    Path(brand): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::LIVE).await?;
    let slot = state.streams.acquire(&principal.scope())?;
    let mut subscription = state
        .log
        .client()
        .subscribe(gps_nats::subjects::live_subject(&brand))
        .await
        .map_err(|e| ApiError::Unavailable(format!("live subscription: {e}")))?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<LiveNotice>(CLIENT_BUFFER);
    tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let Ok(notice) = serde_json::from_slice::<LiveNotice>(&message.payload) else { continue };
            match sender.try_send(notice) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!("a live client fell behind by {CLIENT_BUFFER} notices; disconnecting it");
                    break;
                }
                // The client went away.
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        let _ = subscription.unsubscribe().await;
    });
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        let notice = receiver.recv().await?;
        let event = Event::default()
            .event("notice")
            .id(notice.sequence.to_string())
            .json_data(&notice)
            .unwrap_or_else(|_| Event::default().comment("unserializable notice"));
        Some((Ok(event), receiver))
    });
    let events = auth::while_allowed(events, state, headers, brand, actions::LIVE).map(move |event| {
        // The slot is given back when the stream (and this closure) is dropped.
        let _held = &slot;
        event
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
