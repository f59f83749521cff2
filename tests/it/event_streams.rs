//! The brand's event stream for downstream systems,
//! `GET /api/v1/brands/{brand}/events`, against a real gateway, NATS and
//! Postgres: SSE replays from a sequence and follows live without gaps or
//! repeats, resumes with Last-Event-ID, the JSON pages cover the same events,
//! filters narrow them, a key of one brand gets nothing of another, a key
//! needs the `stream` scope, and sealed personal data stays sealed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::{Session, TestGateway, product};
use crate::http::assert_status;

/// How long a test waits for the next SSE event before failing.
const WAIT: Duration = Duration::from_secs(20);

/// One Server-Sent Event as received.
#[derive(Debug, Clone)]
struct SseEvent {
    id: u64,
    event: String,
    data: Value,
}

/// A client of an SSE response that parses events as they arrive.
struct SseClient {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseClient {
    /// Opens `path` with `Accept: text/event-stream` and `headers`; returns
    /// the status and, on 200, the client.
    async fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Option<SseClient>, String) {
        let mut request = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("Accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        if status != 200 {
            return (status, None, response.text().await.unwrap_or_default());
        }
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("text/event-stream"));
        (status, Some(SseClient { response, buffer: Vec::new() }), String::new())
    }

    /// The next event (comments skipped); fails the test after [`WAIT`].
    async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(WAIT, self.next_block()).await.expect("an SSE event within the wait")
    }

    async fn next_block(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block = String::from_utf8(self.buffer.drain(..end + 2).collect()).expect("UTF-8");
                if let Some(event) = parse_block(&block) {
                    return event;
                }
                continue;
            }
            let chunk = self.response.chunk().await.expect("read").expect("the stream stays open");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Waits until the server ends the response (keep-alive comments and
    /// events are read and dropped); fails the test after [`WAIT`].
    async fn ended(mut self) {
        let end = async { while self.response.chunk().await.ok().flatten().is_some() {} };
        tokio::time::timeout(WAIT, end).await.expect("the stream ends within the wait");
    }

    /// Events until (and including) the one with id `last`.
    async fn until(&mut self, last: u64) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let id = event.id;
            events.push(event);
            assert!(id <= last, "got {id} beyond the expected last {last}");
            if id == last {
                return events;
            }
        }
    }
}

/// An SSE block as an event; `None` for a comment-only block (keep-alive).
fn parse_block(block: &str) -> Option<SseEvent> {
    let (mut id, mut event, mut data) = (None, None, String::new());
    for line in block.lines() {
        let field = |name: &str| line.strip_prefix(name).map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned());
        if let Some(value) = field("id:") {
            id = Some(value.parse::<u64>().expect("numeric id"));
        } else if let Some(value) = field("event:") {
            event = Some(value);
        } else if let Some(value) = field("data:") {
            data.push_str(&value);
        }
    }
    let id = id?;
    Some(SseEvent {
        id,
        event: event.expect("every event names its type"),
        data: serde_json::from_str(&data).expect("data is JSON"),
    })
}

/// Registers an API client of `brand` and returns its bearer header value.
async fn api_key(gateway: &TestGateway, owner: &Session, brand: &str, id: &str, body: Value) -> String {
    let mut body = body;
    body["api_client_id"] = json!(id);
    body["name"] = json!(format!("Client {id}"));
    let path = format!("/api/v1/brands/{brand}/api-clients");
    let registered = gateway.as_user(owner, "POST", &path, Some(body)).await;
    assert_status(&registered, 201);
    format!("Bearer {}", registered.json()["api_key"].as_str().expect("key"))
}

/// Every stream sequence of `brand`'s events, read from the log directly.
async fn log_sequences(gateway: &TestGateway, brand: &str) -> Vec<u64> {
    let filter = format!("gps.evt.{brand}.>");
    let mut scan = gps_nats::LogScan::open(&gateway.state.log, &filter, 1).await.expect("scan");
    let mut sequences = Vec::new();
    while let Some(message) = scan.next().await.expect("next") {
        sequences.push(message.sequence);
    }
    sequences
}

/// Creates a product of `brand`; returns the command's stream sequence.
async fn create_product(gateway: &TestGateway, owner: &Session, brand: &str, id: &str) -> u64 {
    let path = format!("/api/v1/brands/{brand}/products");
    let created = gateway.as_user(owner, "POST", &path, Some(product(id))).await;
    assert_status(&created, 201);
    created.json()["stream_sequence"].as_u64().expect("sequence")
}

/// Checks that `events` are exactly the brand's events `expected`, in order,
/// each served as stored with its sequence filled in.
fn assert_served(events: &[SseEvent], expected: &[u64], brand: &str) {
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, expected, "every event of the brand after the start, once, in stream order");
    for event in events {
        assert_eq!(event.data["brand"], brand);
        assert_eq!(event.data["stream_sequence"], event.id);
        assert_eq!(event.data["event_type"], event.event.as_str());
        assert!(event.data["hash"].as_str().is_some_and(|h| h.len() == 64), "{}", event.data);
    }
}

/// acme with an owner and a key that may only stream; another brand with its
/// own owner and events interleaved with acme's.
async fn two_brands() -> (TestGateway, Session, Session, String) {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let outsider = gateway.brand_with_owner("other", "oscar").await;
    let feed =
        api_key(&gateway, &owner, "acme", "feed", json!({"role": "viewer", "scopes": ["stream"]})).await;
    for n in 1..=3 {
        create_product(&gateway, &owner, "acme", &format!("p{n}")).await;
        create_product(&gateway, &outsider, "other", &format!("secret{n}")).await;
    }
    (gateway, owner, outsider, feed)
}

#[tokio::test]
async fn the_stream_replays_from_a_sequence_without_gaps_then_follows_live_without_repeats() {
    let (gateway, owner, outsider, feed) = two_brands().await;
    let before = log_sequences(&gateway, "acme").await;
    // Start in the middle of acme's history.
    let after = before[2];
    let path = format!("/api/v1/brands/acme/events?after={after}");
    let (status, client, body) = SseClient::open(gateway.port, &path, &[("Authorization", &feed)]).await;
    assert_eq!(status, 200, "{body}");
    let mut client = client.expect("client");
    let replayed = client.until(*before.last().expect("events")).await;
    assert_served(&replayed, &before[3..], "acme");

    // Written while connected, interleaved with another brand's writes: each
    // arrives once, right after the replay, in order.
    let mut last = 0;
    for n in 4..=6 {
        last = create_product(&gateway, &owner, "acme", &format!("p{n}")).await;
        create_product(&gateway, &outsider, "other", &format!("secret{n}")).await;
    }
    let live = client.until(last).await;
    let all = log_sequences(&gateway, "acme").await;
    let expected: Vec<u64> = all.iter().copied().filter(|s| *s > after).collect();
    let received: Vec<SseEvent> = replayed.into_iter().chain(live).collect();
    assert_served(&received, &expected, "acme");
    assert!(received.iter().all(|event| !event.data.to_string().contains("secret")));
    assert!(
        received.iter().any(|event| event.event == "product.created" && event.data["aggregate_id"] == "p6"),
        "the live events are there"
    );
}

#[tokio::test]
async fn a_reconnecting_client_resumes_after_its_last_event_id() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    let all = log_sequences(&gateway, "acme").await;
    let (_, client, _) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events", &[("Authorization", &feed)]).await;
    let mut client = client.expect("client");
    let first = client.until(all[1]).await;
    assert_served(&first, &all[..2], "acme");
    drop(client);

    // Something happens while the client is away.
    let missed = create_product(&gateway, &owner, "acme", "p-missed").await;
    // EventSource reconnects to the URL it started with (here after=0) and
    // says how far it got: Last-Event-ID wins.
    let last_id = all[1].to_string();
    let headers = [("Authorization", feed.as_str()), ("Last-Event-ID", last_id.as_str())];
    let (status, client, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events?after=0", &headers).await;
    assert_eq!(status, 200, "{body}");
    let resumed = client.expect("client").until(missed).await;
    let expected: Vec<u64> = log_sequences(&gateway, "acme").await.into_iter().skip(2).collect();
    assert_served(&resumed, &expected, "acme");

    let bad = [("Authorization", feed.as_str()), ("Last-Event-ID", "yesterday")];
    let (status, _, body) = SseClient::open(gateway.port, "/api/v1/brands/acme/events", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Last-Event-ID"), "{body}");
}

#[tokio::test]
async fn json_pages_cover_the_same_events_as_the_stream() {
    let (gateway, _owner, _outsider, feed) = two_brands().await;
    let all = log_sequences(&gateway, "acme").await;
    let auth = [("Authorization", feed.as_str())];
    let mut after = 0;
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let page = gateway
            .call("GET", &format!("/api/v1/brands/acme/events?after={after}&limit=2"), &auth, None)
            .await;
        assert_status(&page, 200);
        let page = page.json();
        let events = page["events"].as_array().expect("events").clone();
        assert!(events.len() <= 2);
        for event in &events {
            assert_eq!(event["brand"], "acme");
            paged.push(event["stream_sequence"].as_u64().expect("sequence"));
        }
        let next = page["next_after"].as_u64().expect("next_after");
        assert!(next >= after, "next_after never goes back");
        after = next;
        pages += 1;
        if events.len() < 2 {
            break;
        }
        assert!(pages < 20, "paging ends");
    }
    assert_eq!(paged, all, "the pages hold every acme event once, in stream order");
    // At the end, next_after is where the log ended: nothing is skipped and
    // asking again returns nothing new.
    let again =
        gateway.call("GET", &format!("/api/v1/brands/acme/events?after={after}"), &auth, None).await.json();
    assert_eq!(again["events"], json!([]));
    assert_eq!(again["next_after"].as_u64(), Some(after));

    // The stream from 0 serves the same events with the same bodies.
    let first_page = gateway.call("GET", "/api/v1/brands/acme/events?limit=1000", &auth, None).await.json();
    let (_, client, _) = SseClient::open(gateway.port, "/api/v1/brands/acme/events", &auth).await;
    let streamed = client.expect("client").until(*all.last().expect("events")).await;
    let streamed_bodies: Vec<Value> = streamed.into_iter().map(|event| event.data).collect();
    assert_eq!(json!(streamed_bodies), first_page["events"]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=-3", "after"),
        ("after=soon", "after"),
        ("from=3", "from"),
    ] {
        let response = gateway.call("GET", &format!("/api/v1/brands/acme/events?{query}"), &auth, None).await;
        assert_status(&response, 400);
        assert_eq!(response.json()["field"], field, "{query}");
    }
}

#[tokio::test]
async fn filters_by_aggregate_and_event_type_narrow_both_forms_and_bad_ones_are_refused() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    let auth = [("Authorization", feed.as_str())];
    let types = |page: &Value| -> Vec<String> {
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["event_type"].as_str().expect("type").to_owned())
            .collect()
    };
    let products =
        gateway.call("GET", "/api/v1/brands/acme/events?aggregate=product", &auth, None).await.json();
    assert_eq!(types(&products), vec!["product.created"; 3]);
    let brand_only =
        gateway.call("GET", "/api/v1/brands/acme/events?aggregate=brand", &auth, None).await.json();
    assert!(types(&brand_only).iter().all(|t| t.starts_with("brand.")), "{brand_only}");
    assert!(types(&brand_only).contains(&"brand.api_client_registered".to_owned()));
    let created = gateway
        .call("GET", "/api/v1/brands/acme/events?type=brand.created&type=product.created", &auth, None)
        .await
        .json();
    assert_eq!(types(&created), ["brand.created", "product.created", "product.created", "product.created"]);
    let comma = gateway
        .call("GET", "/api/v1/brands/acme/events?type=brand.created,product.created", &auth, None)
        .await
        .json();
    assert_eq!(comma, created);

    // Live, filtered: only the archive arrives, not the product created first.
    let after = log_sequences(&gateway, "acme").await.last().copied().expect("events");
    let path = format!("/api/v1/brands/acme/events?after={after}&type=product.archived");
    let (_, client, _) = SseClient::open(gateway.port, &path, &auth).await;
    let mut client = client.expect("client");
    create_product(&gateway, &owner, "acme", "p-new").await;
    let archived = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products/p1/archive", None).await;
    assert_status(&archived, 200);
    let event = client.next().await;
    assert_eq!(event.event, "product.archived");
    assert_eq!(event.data["aggregate_id"], "p1");
    assert_eq!(event.id, archived.json()["stream_sequence"].as_u64().expect("sequence"));

    for (query, field, needle) in [
        ("aggregate=widget", "aggregate", "product"),
        ("type=product.exploded", "type", "product.created"),
        ("aggregate=brand&type=product.created", "type", "drop one"),
    ] {
        let response = gateway.call("GET", &format!("/api/v1/brands/acme/events?{query}"), &auth, None).await;
        assert_status(&response, 400);
        assert_eq!(response.json()["field"], field, "{query}");
        assert!(response.body.contains(needle), "{query}: {}", response.body);
        let (status, _, _) =
            SseClient::open(gateway.port, &format!("/api/v1/brands/acme/events?{query}"), &auth).await;
        assert_eq!(status, 400, "{query} as a stream");
    }
}

#[tokio::test]
async fn a_key_or_member_of_one_brand_gets_nothing_of_another() {
    let (gateway, _owner, outsider, feed) = two_brands().await;
    let other_feed =
        api_key(&gateway, &outsider, "other", "other-feed", json!({"role": "viewer", "scopes": ["stream"]}))
            .await;
    // acme's key on other's events, and other's key on acme's: not found, in
    // both forms, with nothing of the brand in the answer.
    for (key, brand) in [(&feed, "other"), (&other_feed, "acme")] {
        let path = format!("/api/v1/brands/{brand}/events");
        let page = gateway.call("GET", &path, &[("Authorization", key)], None).await;
        assert_status(&page, 404);
        assert!(!page.body.contains("secret") && !page.body.contains("p1"), "{}", page.body);
        let (status, client, body) = SseClient::open(gateway.port, &path, &[("Authorization", key)]).await;
        assert_eq!(status, 404, "{body}");
        assert!(client.is_none());
    }
    // A member of other (not of acme) too; nobody without credentials.
    let page = gateway.as_user(&outsider, "GET", "/api/v1/brands/acme/events", None).await;
    assert_status(&page, 404);
    assert_status(&gateway.call("GET", "/api/v1/brands/acme/events", &[], None).await, 401);
    // Each key sees its own brand only.
    let own =
        gateway.call("GET", "/api/v1/brands/other/events", &[("Authorization", &other_feed)], None).await;
    assert_status(&own, 200);
    let events = own.json()["events"].as_array().expect("events").clone();
    assert!(!events.is_empty() && events.iter().all(|event| event["brand"] == "other"));
}

#[tokio::test]
async fn a_key_needs_the_stream_scope_and_scopes_are_checked_when_registering() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    // A key registered without scopes keeps what keys could do before scopes
    // existed — everything its role allows — but not streaming.
    let legacy = api_key(&gateway, &owner, "acme", "pim", json!({"role": "producer"})).await;
    let refused =
        gateway.call("GET", "/api/v1/brands/acme/events", &[("Authorization", &legacy)], None).await;
    assert_status(&refused, 403);
    assert!(refused.body.contains("`stream` scope"), "{}", refused.body);
    let (status, _, _) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events", &[("Authorization", &legacy)]).await;
    assert_eq!(status, 403);
    let created = gateway
        .call("POST", "/api/v1/brands/acme/products", &[("Authorization", &legacy)], Some(product("p9")))
        .await;
    assert_status(&created, 201);
    // A stream-only key streams and does nothing else.
    let read = gateway.call("GET", "/api/v1/brands/acme/products", &[("Authorization", &feed)], None).await;
    assert_status(&read, 403);
    assert!(read.body.contains("`read` scope"), "{}", read.body);
    // A member's session streams without any key.
    assert_status(&gateway.as_user(&owner, "GET", "/api/v1/brands/acme/events", None).await, 200);

    // The registrations as recorded and as listed.
    let clients =
        gateway.as_user(&owner, "GET", "/api/v1/brands/acme/api-clients?min_sequence=1", None).await;
    assert_status(&clients, 200);
    let scopes_of = |id: &str| {
        clients.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|client| client["api_client_id"] == id)
            .map(|client| client["scopes"].clone())
    };
    assert_eq!(scopes_of("feed"), Some(json!(["stream"])));
    assert_eq!(scopes_of("pim"), Some(json!(["read", "produce", "review"])));

    for (body, needle) in [
        (json!({"role": "viewer", "scopes": ["admin"]}), "unknown scope \\\"admin\\\""),
        (json!({"role": "viewer", "scopes": []}), "at least one scope"),
        (
            json!({"role": "viewer", "scopes": ["stream", "produce"]}),
            "viewer role does not allow the `produce` scope",
        ),
        (json!({"role": "reviewer", "scopes": "stream"}), "scopes"),
    ] {
        let mut body = body;
        body["name"] = json!("Bad");
        let response =
            gateway.as_user(&owner, "POST", "/api/v1/brands/acme/api-clients", Some(body.clone())).await;
        assert_status(&response, 400);
        assert!(response.body.contains(needle), "{body}: {}", response.body);
    }
}

#[tokio::test]
async fn sealed_personal_data_is_served_sealed() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    gateway.user("bo").await;
    let added = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "bo@example.com", "role": "viewer"})),
        )
        .await;
    assert_status(&added, 201);
    let sequence = added.json()["stream_sequence"].as_u64().expect("sequence");
    let auth = [("Authorization", feed.as_str())];
    let page = gateway
        .call(
            "GET",
            &format!("/api/v1/brands/acme/events?type=brand.member_added&after={}", sequence - 1),
            &auth,
            None,
        )
        .await;
    assert_status(&page, 200);
    let event = page.json()["events"][0].clone();
    assert_eq!(event["payload"]["member_id"], "bo");
    let sealed = &event["payload"]["email"]["sealed"];
    assert!(sealed["ciphertext"].as_str().is_some_and(|c| c.len() >= 56), "{event}");
    let (_, client, _) =
        SseClient::open(gateway.port, &format!("/api/v1/brands/acme/events?after={}", sequence - 1), &auth)
            .await;
    let streamed = client.expect("client").next().await;
    assert_eq!(streamed.data, event, "the stream serves the same stored body");
    // No event of the brand carries a member's address in the clear.
    let everything = gateway.call("GET", "/api/v1/brands/acme/events?limit=1000", &auth, None).await;
    for address in ["bo@example.com", "ana@example.com"] {
        assert!(!everything.body.contains(address), "{address} in the clear");
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_for_a_while_then_gets_every_event_once_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let feed =
        api_key(&gateway, &owner, "acme", "feed", json!({"role": "viewer", "scopes": ["stream"]})).await;

    // A client with a small receive window that reads the first events, then
    // stops reading. (HTTP/1.0: the body is not chunked.)
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let mut connection = socket.connect(([127, 0, 0, 1], gateway.port).into()).await.expect("connect");
    let request = format!(
        "GET /api/v1/brands/acme/events HTTP/1.0\r\nAuthorization: {feed}\r\nAccept: text/event-stream\r\n\r\n"
    );
    connection.write_all(request.as_bytes()).await.expect("request");
    let ids = |bytes: &[u8]| -> Vec<u64> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("id: ")?.parse().ok())
            .collect()
    };
    let first = create_product(&gateway, &owner, "acme", "first").await;
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 65536];
    while !ids(&received).contains(&first) {
        let read = tokio::time::timeout(WAIT, connection.read(&mut buffer))
            .await
            .expect("first event")
            .expect("read");
        assert!(read > 0, "the stream closed: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..read]);
    }

    // 200 events of about 8 KB while the client reads nothing. (How much the
    // gateway holds for it is bounded by construction — one pull of
    // CLIENT_BATCH events at a time, made only when the client takes the
    // previous ones — but the kernel's send buffer can absorb megabytes, so
    // a test cannot tell the two apart without writing far more.)
    let big: serde_json::Map<String, Value> =
        (0..8).map(|n| (format!("note{n}"), json!("x".repeat(1000)))).collect();
    let mut written = vec![first];
    for n in 0..200 {
        let mut body = product(&format!("big-{n}"));
        body["attributes"] = Value::Object(big.clone());
        let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(body)).await;
        assert_status(&created, 201);
        written.push(created.json()["stream_sequence"].as_u64().expect("sequence"));
    }

    // Reading again, the client gets every event once, in order.
    let last = *written.last().expect("written");
    while !ids(&received).contains(&last) {
        let read = tokio::time::timeout(WAIT, connection.read(&mut buffer))
            .await
            .expect("more events")
            .expect("read");
        assert!(read > 0, "the stream closed");
        received.extend_from_slice(&buffer[..read]);
    }
    let all = ids(&received);
    let (before, after): (Vec<u64>, Vec<u64>) = all.iter().partition(|id| **id < first);
    assert_eq!(before.len(), 3, "brand.created, member_added, api_client_registered: {before:?}");
    assert_eq!(after, written);
    assert_eq!(log_sequences(&gateway, "acme").await, all, "every acme event, once, in order");
}

#[tokio::test]
async fn open_streams_end_when_their_key_is_revoked_their_member_removed_or_their_session_signed_out() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    // A key's event stream, a member's live notices, the owner's own stream.
    let (status, key_stream, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events", &[("Authorization", feed.as_str())])
            .await;
    assert_eq!(status, 200, "{body}");
    let bob = gateway.user("bob").await;
    crate::gateway_access::add_member(&gateway, &owner, "bob@example.com", "producer").await;
    let (status, member_stream, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/live", &bob.headers()).await;
    assert_eq!(status, 200, "{body}");
    let (status, owner_stream, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events", &owner.headers()).await;
    assert_eq!(status, 200, "{body}");
    let (mut key_stream, member_stream, mut owner_stream) =
        (key_stream.expect("stream"), member_stream.expect("stream"), owner_stream.expect("stream"));
    let first = key_stream.next().await;
    assert_eq!(first.data["brand"], "acme");
    owner_stream.next().await;

    let revoked = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/api-clients/feed", None).await;
    assert_status(&revoked, 200);
    key_stream.ended().await;

    let removed = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/members/bob", None).await;
    assert_status(&removed, 200);
    member_stream.ended().await;

    let signed_out = gateway.as_user(&owner, "DELETE", "/api/v1/session", None).await;
    assert_eq!(signed_out.status, 204, "{}", signed_out.body);
    owner_stream.ended().await;
}

#[tokio::test]
async fn one_caller_holds_a_bounded_number_of_open_streams_and_others_are_unaffected() {
    let (gateway, owner, _outsider, feed) = two_brands().await;
    let key = [("Authorization", feed.as_str())];
    let mut open = Vec::new();
    for _ in 0..gps_gateway::stream_slots::DEFAULT_PER_CALLER {
        let (status, stream, body) = SseClient::open(gateway.port, "/api/v1/brands/acme/events", &key).await;
        assert_eq!(status, 200, "{body}");
        open.push(stream.expect("stream"));
    }
    let (status, _, body) = SseClient::open(gateway.port, "/api/v1/brands/acme/events", &key).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("open event streams"), "{body}");
    // The owner is another caller: unaffected, on both kinds of stream.
    let (status, _owner_events, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/events", &owner.headers()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _owner_live, body) =
        SseClient::open(gateway.port, "/api/v1/brands/acme/live", &owner.headers()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gateway.state.streams.open(), gps_gateway::stream_slots::DEFAULT_PER_CALLER + 2);
    // JSON pages are not streams: still served to the capped caller.
    let page = gateway.call("GET", "/api/v1/brands/acme/events?limit=1", &key, None).await;
    assert_status(&page, 200);
}
