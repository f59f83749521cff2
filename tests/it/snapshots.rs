//! Snapshots against a real nats-server: long aggregates load from their
//! snapshot, and a snapshot that cannot be trusted is ignored.

use std::collections::BTreeMap;

use bytes::Bytes;
use gps_commands::CommandHandler;
use gps_domain::ids::ProductId;
use gps_domain::product::{Product, ProductCommand};
use gps_domain::values::{Category, Name, Sku};
use gps_domain::wire::Actor;
use gps_nats::snapshots::snapshot_subject;
use gps_nats::{AggregateAddress, CommandMeta, EventLog};

use crate::harness::{TestNats, brand};

fn meta(id: impl Into<String>) -> CommandMeta {
    CommandMeta::new(id, Actor::System("test".into()))
}

/// A product with `renames` rename commands after its creation, written
/// through a handler that stores no snapshots.
async fn long_product(log: &EventLog, renames: usize) -> AggregateAddress {
    let handler = CommandHandler::new(log.clone()).with_snapshots(None);
    let address = CommandHandler::address::<Product>(&brand(), "long").expect("address");
    let create = ProductCommand::CreateProduct {
        product_id: ProductId::parse("long").expect("id"),
        brand_id: brand(),
        sku: Sku::parse("LONG-1").expect("sku"),
        name: Name::parse("Long product").expect("name"),
        category: Category::parse("dresses").expect("category"),
        attributes: BTreeMap::new(),
    };
    handler.execute::<Product>(&address, &meta("create"), &create).await.expect("create");
    for n in 0..renames {
        let rename = ProductCommand::UpdateProductDetails {
            name: Some(Name::parse(format!("Name {n}")).expect("name")),
            category: None,
            attributes: None,
        };
        handler.execute::<Product>(&address, &meta(format!("rename-{n}")), &rename).await.expect("rename");
    }
    assert!(log.load_snapshot(&address).await.expect("read").is_none(), "no snapshot written yet");
    address
}

#[tokio::test]
async fn a_long_aggregate_stores_a_snapshot_and_loads_from_it_to_the_same_state() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let address = long_product(&log, 120).await;
    let replaying = CommandHandler::new(log.clone()).with_snapshots(None);
    let snapshotting = CommandHandler::new(log.clone()).with_snapshots(Some(50));

    let full = replaying.load::<Product>(&address).await.expect("full replay");
    let first = snapshotting.load::<Product>(&address).await.expect("first load");
    assert_eq!(first.snapshot, None, "no snapshot existed yet");
    let stored = log.load_snapshot(&address).await.expect("read").expect("the long load stored a snapshot");
    assert_eq!(stored.position, full.position);

    // Two more events after the snapshot.
    for n in 0..2 {
        let rename = ProductCommand::UpdateProductDetails {
            name: Some(Name::parse(format!("Later {n}")).expect("name")),
            category: None,
            attributes: None,
        };
        snapshotting
            .execute::<Product>(&address, &meta(format!("later-{n}")), &rename)
            .await
            .expect("rename");
    }
    let from_snapshot = snapshotting.load::<Product>(&address).await.expect("snapshot load");
    assert_eq!(from_snapshot.snapshot, Some(stored.position));
    assert_eq!(from_snapshot.envelopes.len(), 2, "only the events after the snapshot are read");
    let full = replaying.load::<Product>(&address).await.expect("full replay");
    assert_eq!(from_snapshot.state, full.state);
    assert_eq!(from_snapshot.position, full.position);
}

#[tokio::test]
async fn a_repeated_command_whose_events_the_snapshot_covers_is_not_applied_again() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let address = long_product(&log, 60).await;
    let handler = CommandHandler::new(log.clone()).with_snapshots(Some(50));
    handler.load::<Product>(&address).await.expect("load stores a snapshot");
    let before = log.load(&address).await.expect("load").position;

    let rename = ProductCommand::UpdateProductDetails {
        name: Some(Name::parse("Name 3").expect("name")),
        category: None,
        attributes: None,
    };
    let outcome = handler.execute::<Product>(&address, &meta("rename-3"), &rename).await.expect("repeat");
    assert!(outcome.already_applied);
    assert!(outcome.events.is_empty());
    assert_eq!(log.load(&address).await.expect("load").position, before, "nothing was appended");
}

#[tokio::test]
async fn a_snapshot_that_does_not_match_the_log_is_ignored() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    let address = long_product(&log, 10).await;
    let replaying = CommandHandler::new(log.clone()).with_snapshots(None);
    let expected = replaying.load::<Product>(&address).await.expect("full replay");

    // A snapshot claiming a different state at a real position but with a
    // hash that is not the log's.
    let mut forged = gps_nats::Snapshot {
        aggregate_type: "product".into(),
        state_version: 1,
        position: expected.position.clone(),
        recent_command_ids: vec![],
        state: serde_json::to_value(Product::default()).expect("state"),
    };
    forged.position.last_hash = "f".repeat(64);
    log.save_snapshot(&address, &forged).await.expect("save");
    let handler = CommandHandler::new(log.clone()).with_snapshots(Some(1000));
    let loaded = handler.load::<Product>(&address).await.expect("load");
    assert_eq!(loaded.snapshot, None, "the forged snapshot is not used");
    assert_eq!(loaded.state, expected.state);

    // Another state version, and garbage, are ignored too.
    let mut other_version = forged.clone();
    other_version.position = expected.position.clone();
    other_version.state_version = 99;
    log.save_snapshot(&address, &other_version).await.expect("save");
    assert_eq!(handler.load::<Product>(&address).await.expect("load").state, expected.state);
    log.jetstream()
        .publish(snapshot_subject(&address), Bytes::from_static(b"not json"))
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(handler.load::<Product>(&address).await.expect("load").state, expected.state);
}
