//! The event log against a real nats-server: append, concurrency, atomic
//! batches, idempotency, load, hash chains, version check, provisioning.

use std::collections::BTreeMap;

use bytes::Bytes;
use gps_domain::AggregateKind;
use gps_domain::wire::{Actor, EventEnvelope};
use gps_nats::{
    AggregateAddress, AppendError, AppendRequest, CommandMeta, ConnectError, EventLog, ExpectedPosition,
    NewEvent, StreamSettings,
};

use crate::harness::{TestNats, brand, old_nats_binary};

fn address(id: &str) -> AggregateAddress {
    AggregateAddress::new(brand(), AggregateKind::Product, id).expect("valid address")
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "product.details_updated".into(),
        schema_version: 1,
        payload: serde_json::json!({ "attributes": { "n": n.to_string() } }),
    }
}

fn request(
    address: &AggregateAddress,
    expected: ExpectedPosition,
    command_id: &str,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        address: address.clone(),
        expected,
        command: CommandMeta::new(command_id, Actor::System("test".into())),
        events,
    }
}

async fn stream_messages(log: &EventLog) -> u64 {
    let mut stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    stream.info().await.expect("info").state.messages
}

#[tokio::test]
async fn an_empty_aggregate_loads_as_new() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let loaded = log.load(&address("nothing-here")).await.expect("load");
    assert!(loaded.events.is_empty());
    assert_eq!(loaded.position, ExpectedPosition::new_aggregate());
}

#[tokio::test]
async fn appended_events_load_back_in_order_with_envelopes_and_headers() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("p1");
    let first = log
        .append(request(&product, ExpectedPosition::new_aggregate(), "c1", vec![event(1)]))
        .await
        .expect("append");
    let second = log
        .append(request(&product, first.position(), "c2", vec![event(2), event(3)]))
        .await
        .expect("append batch");
    assert_eq!(second.envelopes.len(), 2);

    let loaded = log.load(&product).await.expect("load");
    let versions: Vec<u64> = loaded.events.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(loaded.events[1].command_id, "c2");
    assert_eq!(loaded.events[0].brand, "acme");
    assert_eq!(loaded.events[0].aggregate_type, "product");
    assert_eq!(loaded.events[1].prev_hash, loaded.events[0].hash);
    assert_eq!(loaded.position, second.position());
    let sequences: Vec<Option<u64>> = loaded.events.iter().map(|e| e.stream_sequence).collect();
    assert_eq!(sequences, vec![Some(1), Some(2), Some(3)]);

    let message =
        log.jetstream().get_stream("GPS_EVENTS").await.expect("stream").direct_get(2).await.expect("get");
    assert_eq!(
        message.headers.get(gps_nats::HEADER_EVENT_TYPE).map(|v| v.as_str()),
        Some("product.details_updated")
    );
    assert_eq!(message.headers.get(gps_nats::HEADER_SCHEMA_VERSION).map(|v| v.as_str()), Some("1"));
}

#[tokio::test]
async fn two_writers_racing_on_one_aggregate_one_wins_and_the_other_gets_a_conflict() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("race");
    let seen = log.load(&product).await.expect("load").position;
    let (a, b) = tokio::join!(
        log.append(request(&product, seen.clone(), "writer-a", vec![event(1)])),
        log.append(request(&product, seen.clone(), "writer-b", vec![event(2)])),
    );
    let outcomes = [a.is_ok(), b.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "exactly one writer wins: {a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(AppendError::Conflict { expected: 0, actual: Some(1), .. })), "{loser:?}");
    assert_eq!(log.load(&product).await.expect("load").events.len(), 1);
}

#[tokio::test]
async fn a_repeated_command_id_appends_nothing() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("dedupe");
    let first = log
        .append(request(&product, ExpectedPosition::new_aggregate(), "same-id", vec![event(1)]))
        .await
        .expect("first");
    // Retried with the position it has now (as a caller that reloaded would).
    let retried =
        log.append(request(&product, first.position(), "same-id", vec![event(1)])).await.expect("retry");
    assert!(retried.already_appended);
    assert_eq!(retried.envelopes[0].event_id, first.envelopes[0].event_id);
    assert_eq!(stream_messages(&log).await, 1);
}

#[tokio::test]
async fn a_retry_after_a_lost_acknowledgement_succeeds_without_a_duplicate() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("lost-ack");
    let stale = ExpectedPosition::new_aggregate();
    // The first attempt lands but its acknowledgement is "lost": the caller
    // retries with the same command id and the same, now stale, position.
    let landed =
        log.append(request(&product, stale.clone(), "cmd-1", vec![event(1)])).await.expect("first attempt");
    let retried =
        log.append(request(&product, stale.clone(), "cmd-1", vec![event(1)])).await.expect("retry succeeds");
    assert!(retried.already_appended);
    assert_eq!(retried.last_sequence(), landed.last_sequence());
    assert_eq!(stream_messages(&log).await, 1);

    // The same holds for a multi-event batch.
    let batch = log
        .append(request(&product, landed.position(), "cmd-2", vec![event(2), event(3)]))
        .await
        .expect("batch");
    let retried = log
        .append(request(&product, landed.position(), "cmd-2", vec![event(2), event(3)]))
        .await
        .expect("batch retry");
    assert!(retried.already_appended);
    assert_eq!(
        retried.envelopes.iter().map(|e| e.stream_sequence).collect::<Vec<_>>(),
        vec![Some(2), Some(3)]
    );
    assert_eq!(retried.envelopes, batch.envelopes);
    assert_eq!(stream_messages(&log).await, 3);
}

#[tokio::test]
async fn a_batch_with_a_stale_expected_sequence_writes_nothing() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("stale-batch");
    log.append(request(&product, ExpectedPosition::new_aggregate(), "winner", vec![event(1)]))
        .await
        .expect("winner");
    let result = log
        .append(request(
            &product,
            ExpectedPosition::new_aggregate(),
            "loser",
            vec![event(2), event(3), event(4)],
        ))
        .await;
    assert!(matches!(result, Err(AppendError::Conflict { .. })), "{result:?}");
    assert_eq!(stream_messages(&log).await, 1, "no message of the refused batch is stored");
    assert_eq!(log.load(&product).await.expect("load").events.len(), 1);
}

#[tokio::test]
async fn a_command_id_reused_on_another_aggregate_is_refused() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    log.append(request(&address("one"), ExpectedPosition::new_aggregate(), "shared", vec![event(1)]))
        .await
        .expect("first");
    let reused = log
        .append(request(&address("two"), ExpectedPosition::new_aggregate(), "shared", vec![event(1)]))
        .await;
    assert!(matches!(reused, Err(AppendError::CommandIdReused { .. })), "{reused:?}");
    let reused_batch = log
        .append(request(
            &address("three"),
            ExpectedPosition::new_aggregate(),
            "shared",
            vec![event(1), event(2)],
        ))
        .await;
    assert!(matches!(reused_batch, Err(AppendError::CommandIdReused { .. })), "{reused_batch:?}");
    assert_eq!(stream_messages(&log).await, 1);
}

#[tokio::test]
async fn an_aggregate_longer_than_one_read_batch_loads_completely() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("long");
    let mut position = ExpectedPosition::new_aggregate();
    for chunk in 0..3u64 {
        let events = (0..500).map(|i| event(chunk * 500 + i)).collect();
        position = log
            .append(request(&product, position, &format!("bulk-{chunk}"), events))
            .await
            .expect("append")
            .position();
    }
    // Another aggregate's events interleave in the stream and must not appear.
    log.append(request(&address("other"), ExpectedPosition::new_aggregate(), "other", vec![event(0)]))
        .await
        .expect("other");
    let loaded = log.load(&product).await.expect("load");
    assert_eq!(loaded.events.len(), 1500);
    assert!(loaded.events.iter().enumerate().all(|(i, e)| e.aggregate_version == i as u64 + 1));
    assert_eq!(loaded.position, position);
}

#[tokio::test]
async fn an_append_with_nothing_or_too_much_is_refused_before_publishing() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("limits");
    let empty = log.append(request(&product, ExpectedPosition::new_aggregate(), "c", vec![])).await;
    assert!(matches!(empty, Err(AppendError::Invalid(_))));
    let huge = log
        .append(request(&product, ExpectedPosition::new_aggregate(), "c", (0..1001).map(event).collect()))
        .await;
    assert!(matches!(huge, Err(AppendError::Invalid(_))));
    let bad_id =
        log.append(request(&product, ExpectedPosition::new_aggregate(), "has space", vec![event(1)])).await;
    assert!(matches!(bad_id, Err(AppendError::Invalid(_))));
    assert_eq!(stream_messages(&log).await, 0);
}

#[tokio::test]
async fn the_hash_chains_of_the_stream_verify_and_a_forged_event_breaks_them() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let mut last = None;
    for id in ["a", "b"] {
        let product = address(id);
        let first = log
            .append(request(&product, ExpectedPosition::new_aggregate(), &format!("{id}-1"), vec![event(1)]))
            .await
            .expect("append");
        let second = log
            .append(request(&product, first.position(), &format!("{id}-2"), vec![event(2), event(3)]))
            .await
            .expect("append");
        last = Some(second);
    }
    let report = log.verify_chains(None).await.expect("verify");
    assert_eq!(report.first_break, None);
    assert_eq!(report.events_checked, 6);
    assert_eq!(report.aggregates, 2);

    // A forger with publish rights appends an event that copies the last one's
    // chain fields but changes the content.
    let last = last.expect("appended").envelopes.last().cloned().expect("envelope");
    let mut forged: EventEnvelope = last.clone();
    forged.aggregate_version += 1;
    forged.prev_hash = last.hash.clone();
    forged.payload = serde_json::json!({ "attributes": { "price": "0" } });
    forged.stream_sequence = None;
    let body = Bytes::from(serde_json::to_vec(&forged).expect("json"));
    let ack =
        log.jetstream().publish(address("b").subject(), body).await.expect("publish").await.expect("ack");

    let report = log.verify_chains(None).await.expect("verify");
    let broken = report.first_break.expect("the forged event breaks the chain");
    assert_eq!(broken.stream_sequence, ack.sequence);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);
    assert_eq!(report.events_checked, 6);
}

#[tokio::test]
async fn provisioning_is_idempotent_and_reports_drift() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let again = log.provision().await.expect("provision again");
    assert!(!again.created);
    assert_eq!(again.drift, vec![]);

    let client = gps_nats::connect(nats.server.url(), "drift").await.expect("connect");
    let other = EventLog::new(
        client,
        StreamSettings { duplicate_window: std::time::Duration::from_secs(60), ..StreamSettings::default() },
    );
    let report = other.provision().await.expect("provision with other settings");
    assert!(!report.created);
    let fields: Vec<&str> = report.drift.iter().map(|d| d.field).collect();
    assert_eq!(fields, vec!["duplicate_window"]);
}

#[tokio::test]
async fn connecting_to_a_server_older_than_2_12_fails_with_a_clear_message() {
    let binary = old_nats_binary();
    assert!(binary.is_file(), "{} is missing: run scripts/install-tools.sh --old-nats", binary.display());
    let old = TestNats::start_binary(binary).await;
    let error = gps_nats::connect(old.server.url(), "version-check").await.expect_err("2.10 must be refused");
    assert!(matches!(error, ConnectError::TooOld { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("2.10.26") && message.contains("2.12.0"), "{message}");
}

#[tokio::test]
async fn a_durable_consumer_receives_every_event_of_its_filter() {
    use futures::StreamExt;
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let mut position = ExpectedPosition::new_aggregate();
    for n in 0..5 {
        position = log
            .append(request(&address("p"), position, &format!("c{n}"), vec![event(n)]))
            .await
            .expect("append")
            .position();
    }
    let other_brand = AggregateAddress::new(
        gps_domain::ids::BrandId::parse("other").expect("brand"),
        AggregateKind::Product,
        "p",
    )
    .expect("address");
    log.append(request(&other_brand, ExpectedPosition::new_aggregate(), "x", vec![event(9)]))
        .await
        .expect("append");

    let consumer = log
        .durable_consumer("acme-reader", vec![gps_nats::subjects::brand_filter(&brand())], 0)
        .await
        .expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(std::time::Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    let mut versions = BTreeMap::new();
    while let Some(message) = messages.next().await {
        let message = message.expect("message");
        let envelope: EventEnvelope = serde_json::from_slice(&message.payload).expect("envelope");
        versions.insert(envelope.aggregate_version, envelope.brand.clone());
        message.ack().await.expect("ack");
    }
    assert_eq!(versions.len(), 5);
    assert!(versions.values().all(|brand| brand == "acme"));
}

/// A command whose one event carries `bytes` of payload.
fn large_event(n: u64, bytes: usize) -> NewEvent {
    NewEvent {
        event_type: "product.details_updated".into(),
        schema_version: 1,
        payload: serde_json::json!({ "attributes": { "n": n.to_string(), "filler": "x".repeat(bytes) } }),
    }
}

async fn append_one_by_one(log: &EventLog, product: &AggregateAddress, count: u64, bytes: usize) {
    let mut position = ExpectedPosition::new_aggregate();
    for n in 0..count {
        let appended = log
            .append(request(product, position, &format!("large-{n}"), vec![large_event(n, bytes)]))
            .await
            .expect("append");
        position = appended.position();
    }
}

#[tokio::test]
async fn a_load_continues_past_a_batch_the_server_cut_short_at_its_byte_cap() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("heavy");
    // 40 events of 200 KB: 8 MB, more than the server sends in one
    // direct-get batch, although far fewer messages than a batch may hold.
    append_one_by_one(&log, &product, 40, 200_000).await;

    let loaded = log.load(&product).await.expect("load");
    let versions: Vec<u64> = loaded.events.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(versions, (1..=40).collect::<Vec<_>>(), "every event, in order");
    assert_eq!(loaded.position.aggregate_version, 40);
}

#[tokio::test]
async fn a_load_of_more_events_than_one_batch_holds_reads_them_all() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let product = address("long");
    let neighbour = address("neighbour");
    let mut position = ExpectedPosition::new_aggregate();
    let mut neighbour_position = ExpectedPosition::new_aggregate();
    let mut positions = Vec::new();
    for chunk in 0..25u64 {
        let events = (0..100).map(|i| event(chunk * 100 + i)).collect();
        position = log
            .append(request(&product, position, &format!("chunk-{chunk}"), events))
            .await
            .expect("append")
            .position();
        positions.push(position.clone());
        // Another aggregate's events in between: a read must skip them.
        neighbour_position = log
            .append(request(&neighbour, neighbour_position, &format!("n-{chunk}"), vec![event(chunk)]))
            .await
            .expect("append")
            .position();
    }
    // Past the first batch the rest streams through an ordered consumer.
    let versions = |events: &[gps_domain::wire::EventEnvelope]| -> Vec<u64> {
        events.iter().map(|e| e.aggregate_version).collect()
    };
    let loaded = log.load(&product).await.expect("load");
    assert_eq!(versions(&loaded.events), (1..=2_500).collect::<Vec<_>>(), "every event once, in order");
    assert!(loaded.events.iter().all(|e| e.aggregate_id == "long"));
    assert_eq!(loaded.position, position);

    // A tail after a known position (a cached state), and after a snapshot's anchor.
    let tail = log.load_after(&product, positions[4].clone()).await.expect("tail");
    assert_eq!(versions(&tail.events), (501..=2_500).collect::<Vec<_>>());
    assert_eq!(tail.position, position);
    let anchored =
        log.load_after_anchor(&product, positions[0].clone()).await.expect("anchored").expect("real");
    assert_eq!(versions(&anchored.events), (101..=2_500).collect::<Vec<_>>());
    assert_eq!(anchored.position, position);
}
