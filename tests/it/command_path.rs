//! The command path against a real nats-server: load, decide, append, retry.

use std::collections::BTreeMap;

use gps_commands::{CommandError, CommandHandler};
use gps_domain::ids::{BrandId, ProductId};
use gps_domain::product::{Product, ProductCommand};
use gps_domain::values::{Category, Name, Sku};
use gps_domain::wire::Actor;
use gps_domain::{Aggregate, DomainError};
use gps_nats::CommandMeta;

use crate::harness::{TestNats, brand};

fn actor() -> Actor {
    Actor::System("test".into())
}

fn create(id: &str) -> ProductCommand {
    ProductCommand::CreateProduct {
        product_id: ProductId::parse(id).expect("id"),
        brand_id: brand(),
        sku: Sku::parse(format!("SKU-{id}")).expect("sku"),
        name: Name::parse("Linen dress").expect("name"),
        category: Category::parse("dresses").expect("category"),
        attributes: BTreeMap::new(),
    }
}

fn rename(name: &str) -> ProductCommand {
    ProductCommand::UpdateProductDetails {
        name: Some(Name::parse(name).expect("name")),
        category: None,
        attributes: None,
    }
}

#[tokio::test]
async fn a_command_appends_its_events_and_replaying_them_rebuilds_the_same_state() {
    let nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "p1").expect("address");
    let created = handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &create("p1"))
        .await
        .expect("create");
    assert_eq!(created.events.len(), 1);
    assert_eq!(created.stream_sequence, 1);
    let renamed = handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &rename("Silk dress"))
        .await
        .expect("rename");
    assert_eq!(renamed.aggregate_version, 2);

    let loaded = handler.load::<Product>(&address).await.expect("load");
    assert_eq!(loaded.state, renamed.state);
    assert_eq!(loaded.state.details.as_ref().map(|d| d.name.as_str()), Some("Silk dress"));
    let events: Vec<_> = loaded
        .envelopes
        .iter()
        .map(|e| gps_commands::decode_event::<Product>(&address, e).expect("decode"))
        .collect();
    assert_eq!(Product::replay(&events), renamed.state);
}

#[tokio::test]
async fn a_command_sent_twice_with_the_same_id_is_applied_once() {
    let nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "p1").expect("address");
    handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &create("p1"))
        .await
        .expect("create");
    let meta = CommandMeta::new("rename-once", actor());
    let first = handler.execute::<Product>(&address, &meta, &rename("Silk dress")).await.expect("first");
    let second = handler.execute::<Product>(&address, &meta, &rename("Silk dress")).await.expect("second");
    assert!(!first.already_applied);
    assert!(second.already_applied);
    assert_eq!(second.stream_sequence, first.stream_sequence);
    assert_eq!(second.events, first.events);
    assert_eq!(handler.load::<Product>(&address).await.expect("load").position.aggregate_version, 2);
}

#[tokio::test]
async fn a_rejected_command_reports_the_business_reason_and_writes_nothing() {
    let nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "ghost").expect("address");
    let error = handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &rename("x"))
        .await
        .expect_err("no such product");
    assert!(
        matches!(&error, CommandError::Rejected { error: DomainError::NotFound { .. }, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("ghost"), "{error}");
    assert_eq!(handler.load::<Product>(&address).await.expect("load").envelopes.len(), 0);
}

#[tokio::test]
async fn an_id_with_a_subject_wildcard_is_refused_before_anything_is_published() {
    let nats = TestNats::start().await;
    let log = nats.event_log().await;
    for bad in ["p.1", "*", ">", "p 1", ""] {
        let error = CommandHandler::address::<Product>(&brand(), bad).expect_err(bad);
        assert!(matches!(error, CommandError::Invalid(_)), "{error:?}");
    }
    assert!(BrandId::parse("acme.*").is_err());
    let mut stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_two_processes_on_one_aggregate_lose_no_update() {
    let nats = TestNats::start().await;
    // Two handlers stand for two processes: each has its own lanes, so their
    // writers race through the log's optimistic concurrency.
    let processes = [
        CommandHandler::new(nats.event_log().await).with_max_attempts(50),
        CommandHandler::new(nats.event_log().await).with_max_attempts(50),
    ];
    let handler = processes[0].clone();
    let address = CommandHandler::address::<Product>(&brand(), "hot").expect("address");
    handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &create("hot"))
        .await
        .expect("create");

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let handler = processes[writer % 2].clone();
            let address = address.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut outcomes = Vec::new();
                for n in 0..5 {
                    let command = rename(&format!("name {writer}-{n}"));
                    outcomes.push(
                        handler
                            .execute::<Product>(&address, &CommandMeta::generated(actor()), &command)
                            .await,
                    );
                }
                outcomes
            })
        })
        .collect();
    let mut successes = 0;
    let mut retried = 0;
    for writer in writers {
        for outcome in writer.await.expect("writer") {
            match outcome {
                Ok(outcome) => {
                    successes += 1;
                    if outcome.attempts > 1 {
                        retried += 1;
                    }
                }
                Err(CommandError::Conflict { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    let loaded = handler.load::<Product>(&address).await.expect("load");
    assert_eq!(
        loaded.position.aggregate_version,
        1 + successes,
        "every success is one event, no more, no less"
    );
    assert!(successes > 0);
    assert!(retried > 0, "writers of two processes must have met conflicts (successes {successes})");
    assert_eq!(handler.log().verify_chains(None).await.expect("verify").first_break, None);
}

#[tokio::test]
async fn a_command_for_one_kind_cannot_be_sent_to_another_kinds_address() {
    let nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await);
    let look =
        gps_nats::AggregateAddress::new(brand(), gps_domain::AggregateKind::Look, "l1").expect("address");
    let error = handler
        .execute::<Product>(&look, &CommandMeta::generated(actor()), &create("l1"))
        .await
        .expect_err("wrong kind");
    assert!(matches!(error, CommandError::Invalid(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_in_one_process_queue_in_the_aggregates_lane_and_never_conflict() {
    let nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await).with_max_attempts(1);
    let address = CommandHandler::address::<Product>(&brand(), "lane").expect("address");
    handler
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &create("lane"))
        .await
        .expect("create");
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (handler, address) = (handler.clone(), address.clone());
            tokio::spawn(async move {
                for n in 0..10 {
                    let command = rename(&format!("name {writer}-{n}"));
                    let outcome = handler
                        .execute::<Product>(&address, &CommandMeta::generated(actor()), &command)
                        .await
                        .expect("one attempt is enough in a lane");
                    assert_eq!(outcome.attempts, 1);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let loaded = handler.load::<Product>(&address).await.expect("load");
    assert_eq!(loaded.position.aggregate_version, 81);
}

fn archive() -> ProductCommand {
    ProductCommand::ArchiveProduct { reason: None }
}

#[tokio::test]
async fn a_command_on_a_cached_aggregate_that_another_process_changed_decides_on_the_latest_state() {
    let nats = TestNats::start().await;
    let here = CommandHandler::new(nats.event_log().await);
    let elsewhere = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "shared").expect("address");
    here.execute::<Product>(&address, &CommandMeta::generated(actor()), &create("shared"))
        .await
        .expect("create");

    // Archived by another process: this one's cached state still says active,
    // so its rename conflicts, and decided again on the latest state it is refused.
    elsewhere
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &archive())
        .await
        .expect("archive");
    let error = here
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &rename("Too late"))
        .await
        .expect_err("an archived product accepts no edits");
    assert!(matches!(error, CommandError::Rejected { .. }), "{error:?}");
    assert_eq!(here.load::<Product>(&address).await.expect("load").position.aggregate_version, 2);

    // Restored elsewhere: the cached state says archived, whose rejection is
    // not trusted until the newer events are read; the rename then applies.
    elsewhere
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &ProductCommand::RestoreProduct)
        .await
        .expect("restore");
    let renamed = here
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &rename("Back again"))
        .await
        .expect("the product is active again");
    assert_eq!(renamed.aggregate_version, 4);
    assert_eq!(renamed.state.details.as_ref().map(|d| d.name.as_str()), Some("Back again"));

    // Archived here (cached), restored elsewhere: archiving again is a no-op
    // for the cached state but not for the log's, so it records an event.
    here.execute::<Product>(&address, &CommandMeta::generated(actor()), &archive()).await.expect("archive");
    elsewhere
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &ProductCommand::RestoreProduct)
        .await
        .expect("restore");
    let archived = here
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &archive())
        .await
        .expect("archive");
    assert_eq!(archived.events.len(), 1, "decided on the restored state, not the cached archived one");
    assert_eq!(archived.aggregate_version, 7);
    assert_eq!(here.log().verify_chains(None).await.expect("verify").first_break, None);
}

#[tokio::test]
async fn a_command_assumed_to_create_its_aggregate_decides_on_the_real_one_when_it_exists() {
    let nats = TestNats::start().await;
    let here = CommandHandler::new(nats.event_log().await);
    let elsewhere = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "assumed").expect("address");

    // New indeed: appended without reading first.
    let meta = CommandMeta::new("create-assumed", actor());
    let created = here.execute_new::<Product>(&address, &meta, &create("assumed")).await.expect("create");
    assert_eq!(created.aggregate_version, 1);
    assert!(!created.already_applied);

    // The same command again from a process that holds nothing: recognised
    // as applied, nothing written twice.
    let again = elsewhere.execute_new::<Product>(&address, &meta, &create("assumed")).await.expect("again");
    assert!(again.already_applied, "{again:?}");
    assert_eq!(again.stream_sequence, created.stream_sequence);

    // Another creation of an existing aggregate: decided on its real state
    // (read after the refused append), so refused with the business reason.
    let fresh = CommandHandler::new(nats.event_log().await);
    let error = fresh
        .execute_new::<Product>(&address, &CommandMeta::generated(actor()), &create("assumed"))
        .await
        .expect_err("it exists");
    assert!(
        matches!(error, CommandError::Rejected { error: DomainError::AlreadyExists { .. }, .. }),
        "{error:?}"
    );

    // A command that needs the aggregate to exist, assumed new by mistake:
    // decided again on the log's state, it applies.
    let renamed = CommandHandler::new(nats.event_log().await)
        .execute_new::<Product>(&address, &CommandMeta::generated(actor()), &rename("Found after all"))
        .await
        .expect("renamed on the real state");
    assert_eq!(renamed.aggregate_version, 2);
    assert_eq!(here.log().verify_chains(None).await.expect("verify").first_break, None);
}

#[tokio::test]
async fn the_current_state_includes_what_another_process_appended_since_it_was_cached() {
    let nats = TestNats::start().await;
    let here = CommandHandler::new(nats.event_log().await);
    let elsewhere = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "watched").expect("address");
    here.execute::<Product>(&address, &CommandMeta::generated(actor()), &create("watched"))
        .await
        .expect("create");
    let (state, position) = here.current::<Product>(&address).await.expect("current");
    assert_eq!(position.aggregate_version, 1);
    assert!(!state.archived);

    elsewhere
        .execute::<Product>(&address, &CommandMeta::generated(actor()), &archive())
        .await
        .expect("archive");
    let (state, position) = here.current::<Product>(&address).await.expect("current");
    assert_eq!(position.aggregate_version, 2);
    assert!(state.archived, "the archive appended elsewhere is seen");
    assert_eq!(state, here.load::<Product>(&address).await.expect("load").state);
}
