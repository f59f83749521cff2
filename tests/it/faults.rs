//! Fault tests: the nats-server process is killed (SIGKILL) in the middle of
//! writes and restarted on the same storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gps_commands::{CommandError, CommandHandler};
use gps_domain::ids::ProductId;
use gps_domain::product::{Product, ProductCommand};
use gps_domain::values::{Category, Name, Sku};
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;

use crate::harness::{TestNats, brand};

fn create(id: &str) -> ProductCommand {
    ProductCommand::CreateProduct {
        product_id: ProductId::parse(id).expect("id"),
        brand_id: brand(),
        sku: Sku::parse(format!("SKU-{id}")).expect("sku"),
        name: Name::parse("Product").expect("name"),
        category: Category::parse("dresses").expect("category"),
        attributes: BTreeMap::new(),
    }
}

fn rename(n: usize) -> ProductCommand {
    ProductCommand::UpdateProductDetails {
        name: Some(Name::parse(format!("Name {n}")).expect("name")),
        category: None,
        attributes: None,
    }
}

/// Retries a command with the same id until the log answers (bounded).
async fn until_applied(handler: &CommandHandler, id: &str, n: usize) -> gps_commands::Outcome<Product> {
    until_applied_counting(handler, id, n, &AtomicUsize::new(0)).await
}

/// [`until_applied`], counting the attempts the log was unavailable for.
async fn until_applied_counting(
    handler: &CommandHandler,
    id: &str,
    n: usize,
    unavailable: &AtomicUsize,
) -> gps_commands::Outcome<Product> {
    let address = CommandHandler::address::<Product>(&brand(), id).expect("address");
    let meta = CommandMeta::new(format!("{id}-rename-{n}"), Actor::System("test".into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match handler.execute::<Product>(&address, &meta, &rename(n)).await {
            Ok(outcome) => return outcome,
            Err(CommandError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                unavailable.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("command {id}/{n} failed for good: {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_interrupted_by_a_server_crash_are_applied_exactly_once_when_retried() {
    let mut nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await).with_max_attempts(20);
    let products = ["a", "b", "c", "d"];
    for id in products {
        let address = CommandHandler::address::<Product>(&brand(), id).expect("address");
        let meta = CommandMeta::new(format!("{id}-create"), Actor::System("test".into()));
        handler.execute::<Product>(&address, &meta, &create(id)).await.expect("create");
    }

    // Four writers send numbered commands; the server is killed while they
    // write. Writers do not know which of their in-flight commands landed, so
    // they retry each one with its id until it is acknowledged.
    const COMMANDS: usize = 40;
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let unavailable = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = products
        .iter()
        .map(|id| {
            let handler = handler.clone();
            let id = (*id).to_owned();
            let (acknowledged, unavailable) = (acknowledged.clone(), unavailable.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0..COMMANDS {
                    outcomes.push(until_applied_counting(&handler, &id, n, &unavailable).await);
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
                outcomes
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.load(Ordering::SeqCst) < 30 {
        assert!(tokio::time::Instant::now() < deadline, "writers made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    nats.server.kill().await;
    let at_crash = acknowledged.load(Ordering::SeqCst);
    assert!(at_crash < products.len() * COMMANDS, "the crash must interrupt the writers");
    // Down for longer than a publish waits for its acknowledgement (5 s):
    // writers that decide on their lane's cached state read nothing from the
    // log, so only an outage the client cannot bridge by buffering makes them
    // meet it, not know whether their command landed, and retry.
    tokio::time::sleep(Duration::from_secs(6)).await;
    nats.server.restart().await.expect("restart on the same storage");

    for writer in writers {
        let outcomes = writer.await.expect("writer");
        assert_eq!(outcomes.len(), COMMANDS);
    }
    assert!(unavailable.load(Ordering::SeqCst) > 0, "writers met the outage and retried");
    let log = handler.log();
    for id in products {
        let address = CommandHandler::address::<Product>(&brand(), id).expect("address");
        let loaded = log.load(&address).await.expect("load");
        let mut command_ids: Vec<&str> = loaded.events.iter().map(|e| e.command_id.as_str()).collect();
        assert_eq!(command_ids.len(), 1 + COMMANDS, "{id}: every command exactly once");
        command_ids.dedup();
        assert_eq!(command_ids.len(), 1 + COMMANDS, "{id}: no command twice");
    }
    let report = log.verify_chains(None).await.expect("verify");
    assert_eq!(report.first_break, None);
    assert_eq!(report.events_checked, (products.len() * (1 + COMMANDS)) as u64);
}

#[tokio::test]
async fn acknowledged_events_survive_a_server_crash() {
    let mut nats = TestNats::start().await;
    let handler = CommandHandler::new(nats.event_log().await);
    let address = CommandHandler::address::<Product>(&brand(), "p").expect("address");
    let meta = CommandMeta::new("p-create", Actor::System("test".into()));
    handler.execute::<Product>(&address, &meta, &create("p")).await.expect("create");
    let mut last = None;
    for n in 0..20 {
        last = Some(until_applied(&handler, "p", n).await);
    }
    let before = handler.load::<Product>(&address).await.expect("load");

    nats.server.kill().await;
    nats.server.restart().await.expect("restart");
    let after = until_loaded(&handler, &address).await;
    assert_eq!(after.position, before.position);
    assert_eq!(after.state, before.state);
    assert_eq!(last.expect("outcomes").stream_sequence, after.position.last_subject_sequence);
}

async fn until_loaded(
    handler: &CommandHandler,
    address: &gps_nats::AggregateAddress,
) -> gps_commands::Loaded<Product> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match handler.load::<Product>(address).await {
            Ok(loaded) => return loaded,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing_free_note(&error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the log did not come back: {error}"),
        }
    }
}

/// Errors while the server restarts are expected; only their kind matters.
fn tracing_free_note(error: &CommandError) {
    assert!(matches!(error, CommandError::Unavailable(_)), "unexpected error while restarting: {error}");
}
