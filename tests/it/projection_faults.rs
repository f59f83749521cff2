//! Projection runners under faults: connections cut while a runner catches
//! up (no event skipped), and two rebuilds of one projection at once (one is
//! refused, naming the other).

use std::collections::BTreeMap;
use std::time::Duration;

use gps_domain::ids::ProductId;
use gps_domain::product::{ProductCreated, ProductDetailsUpdated, ProductEvent};
use gps_domain::values::{Category, Name, Sku};
use gps_domain::wire::{self, Actor};
use gps_nats::{
    AggregateAddress, AppendRequest, CommandMeta, EventLog, ExpectedPosition, NewEvent, StreamSettings,
};
use gps_projections::runner::{RunnerOptions, RunnerState};
use sqlx::PgPool;
use tokio::sync::{oneshot, watch};

use crate::harness::{TestDb, TestNats, brand};
use crate::projections::{WAIT, dump_schema};
use crate::tcp_proxy::{TcpProxy, host_port};

/// One projection's runner in this process, with its reported state.
pub(crate) struct Runner {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), gps_projections::RunError>>,
    pub(crate) state: watch::Receiver<RunnerState>,
}

impl Runner {
    pub(crate) fn start(pool: &PgPool, log: &EventLog, name: &str, options: RunnerOptions) -> Self {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
        let projection = gps_projections::by_name(name).expect("projection");
        let (sender, state) = watch::channel(RunnerState::Starting);
        let (stop, stopped) = oneshot::channel::<()>();
        let options = RunnerOptions { lock_poll: Duration::from_millis(50), state: Some(sender), ..options };
        let task = tokio::spawn(gps_projections::run_projection(
            pool.clone(),
            log.clone(),
            projection,
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        Runner { stop: Some(stop), task, state }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("runner stops")
            .expect("joined")
            .expect("ran");
    }
}

pub(crate) async fn checkpoint_of(pool: &PgPool, name: &str) -> u64 {
    gps_projections::queries::checkpoint(pool, name).await.unwrap_or(0)
}

fn details_updated(n: usize) -> NewEvent {
    NewEvent::from(wire::encode(&ProductEvent::DetailsUpdated(ProductDetailsUpdated {
        name: Some(Name::parse(format!("Name {n}")).expect("name")),
        category: None,
        attributes: None,
    })))
}

fn product_created(id: &str) -> NewEvent {
    NewEvent::from(wire::encode(&ProductEvent::Created(ProductCreated {
        product_id: ProductId::parse(id).expect("id"),
        brand_id: brand(),
        sku: Sku::parse(format!("SKU-{id}")).expect("sku"),
        name: Name::parse(format!("Product {id}")).expect("name"),
        category: Category::parse("dresses").expect("category"),
        attributes: BTreeMap::new(),
    })))
}

/// A backlog: `products` products of `per_product` events each (one atomic
/// append per product) and, after every tenth product, a message on a look
/// subject that is no event (the catalog's filters skip it, the activity
/// feed dead-letters it). Returns the last stream sequence.
pub(crate) async fn write_backlog(log: &EventLog, products: usize, per_product: usize) -> u64 {
    let mut last = 0;
    for n in 0..products {
        let id = format!("p{n}");
        let address =
            AggregateAddress::new(brand(), gps_domain::AggregateKind::Product, id.clone()).expect("address");
        let mut events = vec![product_created(&id)];
        events.extend((1..per_product).map(details_updated));
        let request = AppendRequest {
            address,
            expected: ExpectedPosition::new_aggregate(),
            command: CommandMeta::generated(Actor::System("test".into())),
            events,
        };
        // A loaded machine can miss an acknowledgement; the same command id
        // makes the retry recognise its own earlier write.
        let mut attempts = 0;
        let appended = loop {
            match log.append(request.clone()).await {
                Ok(appended) => break appended,
                Err(error) if attempts < 3 => {
                    attempts += 1;
                    tracing::warn!(%error, "retrying an append");
                }
                Err(error) => panic!("append: {error:?}"),
            }
        };
        last = appended.last_sequence();
        if n % 10 == 9 {
            last = log
                .jetstream()
                .publish(format!("gps.evt.acme.look.junk{n}"), "not an event".into())
                .await
                .expect("publish")
                .await
                .expect("stored")
                .sequence;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_cut_while_a_runner_catches_up_skip_no_event() {
    const PRODUCTS: usize = 300;
    const PER_PRODUCT: usize = 20;
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let last = write_backlog(&log, PRODUCTS, PER_PRODUCT).await;
    let junk = (PRODUCTS / 10) as u64;
    assert_eq!(last, (PRODUCTS * PER_PRODUCT) as u64 + junk);

    // The runners reach the server only through the proxy, a slow link (about
    // 1 MB/s back to the client), so deliveries are in flight at every cut.
    let proxy = TcpProxy::start_with_limit(host_port(nats.server.url()), Some(1024)).await;
    let client = gps_nats::connect(&proxy.nats_url(), "gps-test-projector").await.expect("connect");
    let proxied = EventLog::new(client, StreamSettings::default());
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let options = RunnerOptions { batch_size: 200, ..RunnerOptions::default() };
    let runners = [
        Runner::start(&pool, &proxied, "activity", options.clone()),
        Runner::start(&pool, &proxied, "catalog", options),
    ];

    // Cut every connection again and again while the runners catch up.
    let mut cuts = 0;
    tokio::time::timeout(WAIT, async {
        while checkpoint_of(&pool, "activity").await < last || checkpoint_of(&pool, "catalog").await < last {
            if cuts < 12 && checkpoint_of(&pool, "activity").await > 0 {
                proxy.cut_all();
                cuts += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await
    .expect("the runners catch up");
    for runner in runners {
        runner.stop().await;
    }
    assert!(
        cuts >= 3,
        "the connections were cut only {cuts} times while catching up; write a longer backlog"
    );
    assert!(proxy.connections() > 3, "the client reconnected after the cuts");

    // Every stream sequence is in the feed or a dead letter, once.
    let missing: Vec<i64> = sqlx::query_scalar(
        "SELECT s FROM generate_series(1, $1::bigint) s
         WHERE NOT EXISTS (SELECT 1 FROM activity.activity WHERE sequence = s)
           AND NOT EXISTS (SELECT 1 FROM activity.dead_letters WHERE stream_sequence = s)
         ORDER BY s",
    )
    .bind(last as i64)
    .fetch_all(&pool)
    .await
    .expect("missing");
    assert!(
        missing.is_empty(),
        "{} events skipped after {cuts} cuts, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM activity.dead_letters")
        .fetch_one(&pool)
        .await
        .expect("dead");
    assert_eq!(dead as u64, junk, "only the junk messages are dead letters");
    // Every product saw each of its events (its version is its event count).
    let complete: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM catalog.products WHERE version = $1 AND name = 'Name ' || ($1 - 1)",
    )
    .bind(PER_PRODUCT as i64)
    .fetch_one(&pool)
    .await
    .expect("products");
    assert_eq!(complete, PRODUCTS as i64);

    // And the tables equal a rebuild from sequence 1.
    let resumed = (dump_schema(&pool, "activity").await, dump_schema(&pool, "catalog").await);
    for name in ["activity", "catalog"] {
        let projection = gps_projections::by_name(name).expect("projection");
        gps_projections::rebuild(&pool, &log, projection).await.expect("rebuild");
    }
    let rebuilt = (dump_schema(&pool, "activity").await, dump_schema(&pool, "catalog").await);
    for (schema, (resumed, rebuilt)) in
        [("activity", (&resumed.0, &rebuilt.0)), ("catalog", (&resumed.1, &rebuilt.1))]
    {
        for (table, rows) in resumed {
            assert!(&rebuilt[table] == rows, "{schema}.{table} differs from a rebuild");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_rebuild_of_a_projection_is_refused_while_one_runs() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    write_backlog(&log, 100, 30).await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let catalog = gps_projections::by_name("catalog").expect("catalog");

    let (first, second) = tokio::join!(
        gps_projections::rebuild(&pool, &log, catalog),
        gps_projections::rebuild(&pool, &log, catalog)
    );
    let (done, refused) = match (first, second) {
        (Ok(done), Err(refused)) | (Err(refused), Ok(done)) => (done, refused),
        (first, second) => panic!("exactly one rebuild must run: {first:?} / {second:?}"),
    };
    assert_eq!(done.events, 3000);
    let message = refused.to_string();
    assert!(
        message.contains("a rebuild of catalog is already running")
            && message.contains("gps rebuild catalog (pid")
            && message.contains("wait for it"),
        "{message}"
    );
    let after = dump_schema(&pool, "catalog").await;
    gps_projections::rebuild(&pool, &log, catalog).await.expect("a rebuild after the first one ends");
    assert_eq!(dump_schema(&pool, "catalog").await, after, "the surviving rebuild equals a fresh one");
}
