//! The brand's event stream for downstream systems (DAM, PIM, analytics,
//! billing): `GET /api/v1/brands/{brand}/events`.
//!
//! With `Accept: text/event-stream` it is Server-Sent Events: the brand's
//! stored events after stream sequence `after` (or `Last-Event-ID`, which a
//! reconnecting client sends), then each new one as it is stored. Each SSE
//! event has `id:` = its stream sequence, `event:` = its event type, and
//! `data:` = the stored envelope with `stream_sequence` filled in (the
//! `envelope.v1` and `events/<type>.v<n>` schemas under `schemas/`).
//! Otherwise it is one JSON page (`limit` events and the `next_after` to ask
//! for the next page). Both take the same filters: `aggregate=` (aggregate
//! types) and `type=` (event types), repeatable or comma-separated.
//!
//! Why it reads the log rather than a read model (the gateway's rule is the
//! opposite): the stream *is* the log, in log order, with log positions. It
//! reads only `gps.evt.<brand>.…` subjects, through one consumer per request
//! (`gps_nats::LogFollow`), so replay and live delivery are one
//! sequence-checked delivery with no hand-over to get wrong, and a slow client
//! holds back its own pulls — at most [`CLIENT_BATCH`] events wait for it in
//! the gateway (plus what the connection's buffers hold).
//!
//! Events are served as stored: personal data in them is sealed
//! (`brand.member_added` v2) and stays sealed; nothing here opens the
//! privacy vault. Access needs the `stream` action: any member's session, or
//! an API key of the brand with the `stream` scope.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use gps_domain::AggregateKind;
use gps_domain::ids::BrandId;
use gps_nats::{LogFollow, LogScan, ScannedMessage};
use serde::Serialize;
use serde_json::Value;

use crate::auth::{self, Principal};
use crate::routes::{actions, brand_id};
use crate::{ApiError, AppState};

/// Events per JSON page when `limit` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `limit` of a JSON page.
pub const MAX_PAGE_SIZE: usize = 1000;
/// How many events may wait in the gateway for one SSE client; the next pull
/// from the log waits until the client has taken them.
pub const CLIENT_BATCH: usize = 64;
/// How often an idle SSE stream sends a keep-alive comment, so proxies and
/// clients can tell a quiet stream from a dead connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The header a reconnecting SSE client sends with the last id it received.
pub const LAST_EVENT_ID_HEADER: &str = "last-event-id";

/// The route's path.
pub const PATH: &str = "/api/v1/brands/{brand}/events";
/// The query parameters the route takes.
pub const QUERY_PARAMETERS: [&str; 4] = ["after", "limit", "aggregate", "type"];

/// The route.
pub(crate) fn router() -> Router<AppState> {
    Router::new().route(PATH, get(list_events))
}

/// One page of the brand's events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events in stream order: envelopes as stored (`envelope.v1`
    /// schema) with `stream_sequence` filled in.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `after` to get the next page. It is past every event this
    /// page looked at, matching or not; a page shorter than `limit` means the
    /// log had nothing more when it was read.
    pub next_after: u64,
}

/// Which events a request wants: the brand's subjects, narrowed by aggregate
/// and event type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct EventFilter {
    aggregates: BTreeSet<AggregateKind>,
    types: BTreeSet<&'static str>,
}

impl EventFilter {
    /// The subject filters of the consumer: one brand's subjects, per
    /// aggregate type when the filter names some (event types name theirs).
    fn subjects(&self, brand: &BrandId) -> Vec<String> {
        let catalog = gps_domain::event_catalog();
        let mut kinds = self.aggregates.clone();
        kinds.extend(
            catalog
                .iter()
                .filter(|schema| self.types.contains(schema.event_type))
                .map(|schema| schema.aggregate),
        );
        if kinds.is_empty() {
            vec![gps_nats::subjects::brand_filter(brand)]
        } else {
            kinds.into_iter().map(|kind| gps_nats::subjects::brand_kind_filter(brand, kind)).collect()
        }
    }

    /// Whether an event of `event_type` passes (the subjects already chose
    /// the aggregate types).
    fn admits(&self, event_type: &str) -> bool {
        self.types.is_empty() || self.types.contains(event_type)
    }
}

/// A request's parameters, parsed.
#[derive(Debug)]
struct EventQuery {
    after: u64,
    limit: usize,
    filter: EventFilter,
}

/// The values of a repeatable, comma-separated parameter.
fn values<'a>(pairs: &'a [(String, String)], key: &'a str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == key)
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The one value of a parameter that may appear once.
fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found = pairs.iter().filter(|(k, _)| k == key).map(|(_, value)| value.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(ApiError::field(key, format!("give `{key}` once")));
    }
    Ok(first)
}

fn parse_query(pairs: &[(String, String)], headers: &HeaderMap) -> Result<EventQuery, ApiError> {
    if let Some((unknown, _)) = pairs.iter().find(|(key, _)| !QUERY_PARAMETERS.contains(&key.as_str())) {
        return Err(ApiError::field(
            unknown.as_str(),
            format!("unknown parameter `{unknown}`; use after, limit, aggregate or type"),
        ));
    }
    let sequence = |field: &str, raw: &str| {
        raw.trim().parse::<u64>().map_err(|_| {
            ApiError::field(field, format!("{raw:?} is not a stream sequence; give a whole number ≥ 0"))
        })
    };
    // A reconnecting EventSource repeats the URL it started with and says in
    // Last-Event-ID how far it got: that wins over `after`.
    let after = match headers.get(LAST_EVENT_ID_HEADER) {
        Some(value) => {
            let raw =
                value.to_str().map_err(|_| ApiError::field("Last-Event-ID", "it must be ASCII text"))?;
            sequence("Last-Event-ID", raw)?
        }
        None => single(pairs, "after")?.map(|raw| sequence("after", raw)).transpose()?.unwrap_or(0),
    };
    let limit = match single(pairs, "limit")? {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => limit,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("{raw:?} is not a page size; give 1 to {MAX_PAGE_SIZE}"),
                ));
            }
        },
    };
    let mut filter = EventFilter::default();
    for raw in values(pairs, "aggregate") {
        let kind = AggregateKind::parse(raw).ok_or_else(|| {
            let known: Vec<&str> = AggregateKind::ALL.iter().map(|kind| kind.as_str()).collect();
            ApiError::field("aggregate", format!("unknown aggregate type {raw:?}; use {}", known.join(", ")))
        })?;
        filter.aggregates.insert(kind);
    }
    let catalog = gps_domain::event_catalog();
    for raw in values(pairs, "type") {
        let schema = catalog.iter().find(|schema| schema.event_type == raw).ok_or_else(|| {
            ApiError::field(
                "type",
                format!(
                    "unknown event type {raw:?}; event types look like product.created \
                     (all of them are listed in schemas/events/index.json)"
                ),
            )
        })?;
        if !filter.aggregates.is_empty() && !filter.aggregates.contains(&schema.aggregate) {
            return Err(ApiError::field(
                "type",
                format!(
                    "{raw} is a {} event, which the aggregate filter excludes; nothing could match, \
                     so drop one of the two",
                    schema.aggregate
                ),
            ));
        }
        filter.types.insert(schema.event_type);
    }
    Ok(EventQuery { after, limit, filter })
}

/// The stored envelope with its stream sequence filled in, served as stored
/// otherwise (sealed personal data stays sealed). `None` for a body that is
/// not a JSON object, which GPS never writes.
fn envelope(message: &ScannedMessage) -> Option<Value> {
    let mut body: serde_json::Map<String, Value> = serde_json::from_slice(&message.payload).ok()?;
    body.insert("stream_sequence".into(), Value::from(message.sequence));
    Some(Value::Object(body))
}

/// The event type of a stored message: its header, which lets filtering skip
/// parsing the body.
fn event_type(message: &ScannedMessage) -> Option<&str> {
    message.headers.get(gps_nats::HEADER_EVENT_TYPE).map(|value| value.as_str())
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains("text/event-stream"))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/events", tag = "events",
    params(
        ("brand" = String, Path, description = "The brand id"),
        ("after" = Option<u64>, Query, description = "Start after this stream sequence (0, the default, is the beginning)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "JSON form only: events per page, 1 to 1000 (default 100)"),
        ("aggregate" = Option<Vec<String>>, Query, description = "Only events of these aggregate types (e.g. product), repeatable or comma-separated"),
        ("type" = Option<Vec<String>>, Query, description = "Only events of these event types (e.g. product.created), repeatable or comma-separated"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this stream sequence; wins over `after` (EventSource sends it when it reconnects)"),
    ),
    responses(
        (status = 200, description = "With `Accept: text/event-stream`: Server-Sent Events, replayed from the log and then live; each has `id` = stream sequence, `event` = event type, `data` = the envelope JSON (schemas/envelope.v1.schema.json) with stream_sequence; a comment every 15 s while idle. Otherwise one JSON page.",
            content((EventPage = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Invalid parameter; `field` names it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The API key lacks the `stream` scope", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The event log is unavailable; retry", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    Path(brand): Path<String>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::EVENTS).await?;
    let request = parse_query(&pairs, &headers)?;
    let subjects = request.filter.subjects(&brand);
    if wants_event_stream(&headers) {
        let slot = state.streams.acquire(&principal.scope())?;
        follow(&state, &subjects, request, &headers, brand, slot).await
    } else {
        page(&state, &subjects, request).await.map(|page| axum::Json(page).into_response())
    }
}

fn unavailable(error: gps_nats::LoadError) -> ApiError {
    ApiError::Unavailable(format!("the event log: {error}"))
}

async fn page(state: &AppState, subjects: &[String], request: EventQuery) -> Result<EventPage, ApiError> {
    let mut scan = LogScan::open_subjects(&state.log, subjects, request.after.saturating_add(1))
        .await
        .map_err(unavailable)?;
    let mut events = Vec::new();
    let mut next_after = request.after;
    while events.len() < request.limit {
        let Some(message) = scan.next().await.map_err(unavailable)? else {
            // Nothing of the filter is left up to where the log ended when
            // the scan opened, so the next page can start there.
            next_after = next_after.max(scan.until());
            break;
        };
        next_after = message.sequence;
        if !event_type(&message).is_some_and(|t| request.filter.admits(t)) {
            continue;
        }
        match envelope(&message) {
            Some(envelope) => events.push(envelope),
            None => {
                tracing::warn!(sequence = message.sequence, "skipped an event log message that is not JSON")
            }
        }
    }
    Ok(EventPage { events, next_after })
}

async fn follow(
    state: &AppState,
    subjects: &[String],
    request: EventQuery,
    credentials: &HeaderMap,
    brand: BrandId,
    slot: crate::stream_slots::StreamSlot,
) -> Result<Response, ApiError> {
    let feed =
        LogFollow::open(&state.log, subjects, request.after, CLIENT_BATCH).await.map_err(unavailable)?;
    let filter = request.filter;
    let events = futures::stream::unfold(Some(feed), move |feed| {
        let filter = filter.clone();
        async move {
            let mut feed = feed?;
            loop {
                let message = match feed.next().await {
                    Ok(message) => message,
                    Err(error) => {
                        // End the response; the client reconnects with
                        // Last-Event-ID and loses nothing.
                        tracing::warn!(%error, "an event stream lost the log; closing it");
                        return None;
                    }
                };
                let Some(event_type) = event_type(&message).filter(|t| filter.admits(t)) else { continue };
                let event = match envelope(&message) {
                    // Event types come from the catalog: no line breaks.
                    Some(data) if !event_type.contains(['\r', '\n']) => Event::default()
                        .id(message.sequence.to_string())
                        .event(event_type)
                        .data(data.to_string()),
                    _ => {
                        tracing::warn!(
                            sequence = message.sequence,
                            "skipped an undecodable event log message"
                        );
                        Event::default().comment(format!("skipped undecodable message {}", message.sequence))
                    }
                };
                return Some((Ok::<_, Infallible>(event), Some(feed)));
            }
        }
    });
    let events =
        crate::auth::while_allowed(events, state.clone(), credentials.clone(), brand, actions::EVENTS).map(
            move |event| {
                // The slot is given back when the stream (and this closure) is dropped.
                let _held = &slot;
                event
            },
        );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn parsed(query: &str) -> Result<EventQuery, ApiError> {
        parse_query(&pairs(query), &HeaderMap::new())
    }

    fn field_of(query: &str) -> String {
        match parsed(query) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("{query}: {other:?}"),
        }
    }

    fn brand() -> BrandId {
        BrandId::parse("acme").expect("brand")
    }

    #[test]
    fn without_filters_a_request_reads_all_of_its_brands_subjects_and_nothing_else() {
        let query = parsed("").expect("valid");
        assert_eq!((query.after, query.limit), (0, DEFAULT_PAGE_SIZE));
        assert_eq!(query.filter.subjects(&brand()), ["gps.evt.acme.>"]);
    }

    #[test]
    fn aggregate_and_type_filters_repeat_or_take_commas_and_narrow_the_subjects() {
        let query = parsed("aggregate=product,look&aggregate=brand&after=7").expect("valid");
        assert_eq!(query.after, 7);
        assert_eq!(
            query.filter.subjects(&brand()),
            ["gps.evt.acme.brand.*", "gps.evt.acme.product.*", "gps.evt.acme.look.*"]
        );
        let types = parsed("type=product.created&type=look.renamed,product.archived").expect("valid");
        assert_eq!(types.filter.subjects(&brand()), ["gps.evt.acme.product.*", "gps.evt.acme.look.*"]);
        assert!(types.filter.admits("product.archived") && !types.filter.admits("product.restored"));
    }

    #[test]
    fn bad_parameters_are_refused_naming_the_parameter() {
        assert_eq!(field_of("after=-1"), "after");
        assert_eq!(field_of("after=soon"), "after");
        assert_eq!(field_of("after=1&after=2"), "after");
        assert_eq!(field_of("limit=0"), "limit");
        assert_eq!(field_of("limit=5000"), "limit");
        assert_eq!(field_of("aggregate=widget"), "aggregate");
        assert_eq!(field_of("type=product.exploded"), "type");
        assert_eq!(field_of("aggregate=product&type=look.created"), "type");
        assert_eq!(field_of("afterr=3"), "afterr");
    }

    #[test]
    fn the_asyncapi_document_describes_this_route_and_its_parameters() {
        // schemas/ restates the path and parameters (it depends on no HTTP
        // crate); the checked-in document must say what the router does.
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/asyncapi.json");
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("schemas/asyncapi.json"))
                .expect("json");
        assert_eq!(document["channels"]["brandEventStream"]["address"], PATH);
        let query = &document["operations"]["followBrandEvents"]["bindings"]["http"]["query"]["properties"];
        let mut documented: Vec<&str> =
            query.as_object().expect("query").keys().map(String::as_str).collect();
        let mut served = QUERY_PARAMETERS.to_vec();
        documented.sort_unstable();
        served.sort_unstable();
        assert_eq!(documented, served);
    }

    #[test]
    fn last_event_id_wins_over_after() {
        let mut headers = HeaderMap::new();
        headers.insert(LAST_EVENT_ID_HEADER, "42".parse().expect("header"));
        assert_eq!(parse_query(&pairs("after=3"), &headers).expect("valid").after, 42);
        headers.insert(LAST_EVENT_ID_HEADER, "x".parse().expect("header"));
        assert!(parse_query(&pairs(""), &headers).is_err());
    }
}
