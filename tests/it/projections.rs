//! Read models against a real nats-server and a fresh Postgres database:
//! commands become rows, redelivery changes nothing, poison events go to dead
//! letters, rebuilds match the live tables, one runner per projection, and a
//! killed projector process resumes without lost or doubled rows.

use std::collections::BTreeMap;
use std::time::Duration;

use gps_commands::CommandHandler;
use gps_domain::brand::{Brand, BrandCommand, Email, MemberEmail, Role};
use gps_domain::ids::{ImageId, MemberId, ProductId, SubjectId};
use gps_domain::product::{ImageView, Product, ProductCommand};
use gps_domain::subject::{Subject, SubjectCommand};
use gps_domain::values::{AssetRef, Category, ContentHash, Name, Sku, Text};
use gps_domain::wire::Actor;
use gps_nats::{CommandMeta, EventLog};
use gps_projections::runner::{RunnerOptions, RunnerState};
use sqlx::PgPool;
use tokio::sync::{oneshot, watch};

use crate::harness::{TestDb, TestNats, brand};

/// Every wait in these tests is bounded by this.
// Generous: a bound on how long a broken build takes to fail, not a speed
// requirement (a debug projector on a loaded 2-core machine is slow).
pub(crate) const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn meta() -> CommandMeta {
    CommandMeta::generated(Actor::System("test".into()))
}

pub(crate) fn asset(seed: u8) -> AssetRef {
    AssetRef {
        hash: ContentHash::parse(format!("sha256:{}", format!("{seed:02x}").repeat(32))).expect("hash"),
        media_type: "image/jpeg".into(),
        bytes: 1000 + u64::from(seed),
        width: Some(2000),
        height: Some(2500),
    }
}

pub(crate) fn create_product(id: &str, category: &str) -> ProductCommand {
    ProductCommand::CreateProduct {
        product_id: ProductId::parse(id).expect("id"),
        brand_id: brand(),
        sku: Sku::parse(format!("SKU-{id}")).expect("sku"),
        name: Name::parse(format!("Product {id}")).expect("name"),
        category: Category::parse(category).expect("category"),
        attributes: BTreeMap::from([("colour".to_owned(), "red".to_owned())]),
    }
}

pub(crate) async fn product(handler: &CommandHandler, id: &str, command: &ProductCommand) -> u64 {
    let address = CommandHandler::address::<Product>(&brand(), id).expect("address");
    handler.execute::<Product>(&address, &meta(), command).await.expect("product command").stream_sequence
}

/// The projector in this process, stopped when the returned sender is dropped or fired.
pub(crate) struct Projector {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), gps_projections::RunError>>,
}

impl Projector {
    pub(crate) fn start(pool: &PgPool, log: &EventLog) -> Self {
        // Runner failures are logged and retried; show them when a test fails.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("warn").try_init();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gps_projections::run_all(
            pool.clone(),
            log.clone(),
            RunnerOptions { lock_poll: Duration::from_millis(50), ..RunnerOptions::default() },
            async move {
                let _ = stopped.await;
            },
        ));
        Projector { stop: Some(stop), task }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("projector stops")
            .expect("joined")
            .expect("ran");
    }
}

pub(crate) async fn wait_all(pool: &PgPool, sequence: u64) {
    gps_projections::wait_for_sequence(pool, None, sequence, WAIT).await.expect("projections catch up");
}

pub(crate) async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Every table of a schema as ordered JSON rows, for exact comparisons.
pub(crate) async fn dump_schema(pool: &PgPool, schema: &str) -> BTreeMap<String, Vec<serde_json::Value>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut out = BTreeMap::new();
    for table in tables {
        // Names come from the catalog of our own schema.
        let sql = format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) - 'updated_at' - 'recorded_at' ORDER BY to_jsonb(t)::text), '[]') FROM \"{schema}\".\"{table}\" t"
        );
        let rows: serde_json::Value =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.expect("dump");
        let rows = match rows {
            serde_json::Value::Array(rows) => rows,
            other => vec![other],
        };
        out.insert(table, rows);
    }
    out
}

pub(crate) async fn dump_all(pool: &PgPool) -> BTreeMap<String, BTreeMap<String, Vec<serde_json::Value>>> {
    let mut out = BTreeMap::new();
    for projection in &gps_projections::ALL {
        out.insert(projection.schema.to_owned(), dump_schema(pool, projection.schema).await);
    }
    out
}

/// A brand with two members, products with images, a subject: events of
/// three aggregate kinds. Returns the last stream sequence.
pub(crate) async fn seed(handler: &CommandHandler) -> u64 {
    let brand_address = CommandHandler::address::<Brand>(&brand(), brand().as_str()).expect("address");
    handler
        .execute::<Brand>(
            &brand_address,
            &meta(),
            &BrandCommand::CreateBrand {
                brand_id: brand(),
                name: Name::parse("Acme").expect("name"),
                owner_member_id: MemberId::parse("ana").expect("id"),
                owner_display_name: Name::parse("Ana").expect("name"),
                owner_email: MemberEmail::Plain(Email::parse("ana@example.com").expect("email")),
            },
        )
        .await
        .expect("create brand");
    handler
        .execute::<Brand>(
            &brand_address,
            &meta(),
            &BrandCommand::AddMember {
                member_id: MemberId::parse("rui").expect("id"),
                display_name: Name::parse("Rui").expect("name"),
                email: MemberEmail::Plain(Email::parse("rui@example.com").expect("email")),
                role: Role::Reviewer,
            },
        )
        .await
        .expect("add member");
    for (n, category) in [(1, "dresses"), (2, "shoes"), (3, "dresses")] {
        let id = format!("p{n}");
        product(handler, &id, &create_product(&id, category)).await;
        product(
            handler,
            &id,
            &ProductCommand::AddProductImage {
                image_id: ImageId::parse(format!("img{n}")).expect("id"),
                asset: asset(n),
                view: ImageView::Front,
                analysis: None,
            },
        )
        .await;
    }
    product(
        handler,
        "p3",
        &ProductCommand::ArchiveProduct { reason: Some(Text::parse("season over").expect("t")) },
    )
    .await;
    let subject_address = CommandHandler::address::<Subject>(&brand(), "s1").expect("address");
    handler
        .execute::<Subject>(
            &subject_address,
            &meta(),
            &SubjectCommand::CreateSubject {
                subject_id: SubjectId::parse("s1").expect("id"),
                brand_id: brand(),
                name: Name::parse("Model one").expect("name"),
                description: Text::parse("Tall, short hair").expect("text"),
            },
        )
        .await
        .expect("create subject")
        .stream_sequence
}

#[tokio::test]
async fn commands_become_rows_in_the_read_models() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let handler = CommandHandler::new(log.clone());
    let last = seed(&handler).await;
    wait_all(&pool, last).await;

    let name: String = sqlx::query_scalar("SELECT name FROM brands.brands WHERE brand = 'acme'")
        .fetch_one(&pool)
        .await
        .expect("brand row");
    assert_eq!(name, "Acme");
    let roles: Vec<(String, String)> =
        sqlx::query_as("SELECT member_id, role FROM brands.members WHERE brand = 'acme' ORDER BY member_id")
            .fetch_all(&pool)
            .await
            .expect("members");
    assert_eq!(roles, vec![("ana".into(), "owner".into()), ("rui".into(), "reviewer".into())]);
    let products: Vec<(String, String, bool, i32, i64)> = sqlx::query_as(
        "SELECT product_id, category, archived, image_count, version FROM catalog.products ORDER BY product_id",
    )
    .fetch_all(&pool)
    .await
    .expect("products");
    assert_eq!(
        products,
        vec![
            ("p1".into(), "dresses".into(), false, 1, 2),
            ("p2".into(), "shoes".into(), false, 1, 2),
            ("p3".into(), "dresses".into(), true, 1, 3),
        ]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.product_images").await, 3);
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.subjects WHERE name = 'Model one'").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM activity.activity WHERE brand = 'acme'").await,
        last as i64
    );
    // Each projection's checkpoint reached the end of the stream.
    for projection in &gps_projections::ALL {
        gps_projections::wait_for_sequence(&pool, Some(projection.name), last, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", projection.name));
    }
    projector.stop().await;
}

#[tokio::test]
async fn reading_past_the_end_of_the_stream_reports_not_yet_consistent() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let handler = CommandHandler::new(log.clone());
    let last = product(&handler, "p1", &create_product("p1", "dresses")).await;
    wait_all(&pool, last).await;
    let error =
        gps_projections::wait_for_sequence(&pool, Some("catalog"), last + 5, Duration::from_millis(200))
            .await
            .expect_err("sequence not written yet");
    assert_eq!(error.wanted, last + 5);
    assert_eq!(error.reached, Some(last));
    projector.stop().await;
}

/// Every stored message up to `last`, as a projection reads it.
pub(crate) async fn raw_events(log: &EventLog, last: u64) -> Vec<gps_projections::event::RawEvent> {
    let stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    let mut out = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.expect("message");
        out.push(gps_projections::event::RawEvent {
            sequence,
            subject: message.subject.to_string(),
            event_type_header: message
                .headers
                .get(gps_nats::HEADER_EVENT_TYPE)
                .map(|value| value.as_str().to_owned()),
            body: message.payload,
        });
    }
    out
}

#[tokio::test]
async fn a_redelivered_or_reapplied_batch_changes_nothing() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let last = seed(&CommandHandler::new(log.clone())).await;
    wait_all(&pool, last).await;
    projector.stop().await;
    let before = dump_all(&pool).await;
    assert!(!before["catalog"]["products"].is_empty());

    // The same batch applied twice, directly: everything is at or below the checkpoint.
    let catalog = gps_projections::by_name("catalog").expect("catalog");
    let raws = raw_events(&log, last).await;
    for _ in 0..2 {
        let report = gps_projections::runner::apply_batch(&pool, catalog, &raws).await.expect("apply");
        assert_eq!((report.applied, report.skipped, report.dead_lettered), (0, raws.len(), 0));
    }

    // Every durable consumer reset to the start: the runners receive the whole
    // stream again and skip it.
    let stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    for projection in &gps_projections::ALL {
        stream.delete_consumer(&projection.durable_name()).await.expect("delete consumer");
        log.durable_consumer(&projection.durable_name(), projection.filter_subjects(), 0)
            .await
            .expect("consumer");
    }
    let projector = Projector::start(&pool, &log);
    let consumer_name = catalog.durable_name();
    tokio::time::timeout(WAIT, async {
        loop {
            let info = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer_name)
                .await
                .expect("consumer")
                .get_info()
                .await
                .expect("info");
            if info.ack_floor.stream_sequence >= last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stream is redelivered and acknowledged");
    projector.stop().await;
    assert_eq!(dump_all(&pool).await, before, "redelivery changed the read models");
}

#[tokio::test]
async fn a_poison_event_goes_to_dead_letters_and_later_events_are_projected() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let handler = CommandHandler::new(log.clone());
    let first = product(&handler, "p1", &create_product("p1", "dresses")).await;

    // Not an envelope at all.
    log.jetstream()
        .publish("gps.evt.acme.product.junk", "{\"not\": \"an envelope\"}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    // A well-formed envelope of an event type this build does not know.
    let mut unknown: serde_json::Value =
        serde_json::from_slice(&raw_events(&log, first).await[0].body).expect("envelope");
    unknown["event_type"] = "product.exploded".into();
    unknown["aggregate_id"] = "p9".into();
    log.jetstream()
        .publish("gps.evt.acme.product.p9", serde_json::to_vec(&unknown).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    let last = product(&handler, "p2", &create_product("p2", "shoes")).await;
    wait_all(&pool, last).await;
    let products: Vec<String> =
        sqlx::query_scalar("SELECT product_id FROM catalog.products ORDER BY product_id")
            .fetch_all(&pool)
            .await
            .expect("products");
    assert_eq!(products, vec!["p1", "p2"]);
    let dead: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
        "SELECT stream_sequence, subject, event_type, reason FROM catalog.dead_letters ORDER BY stream_sequence",
    )
    .fetch_all(&pool)
    .await
    .expect("dead letters");
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0].0, dead[0].1.as_str()), (2, "gps.evt.acme.product.junk"));
    assert!(dead[0].3.contains("not an event envelope"), "{}", dead[0].3);
    assert_eq!((dead[1].0, dead[1].2.as_deref()), (3, Some("product.exploded")));
    assert!(dead[1].3.contains("unknown event type"), "{}", dead[1].3);
    let body: Vec<u8> = sqlx::query_scalar("SELECT body FROM catalog.dead_letters WHERE stream_sequence = 2")
        .fetch_one(&pool)
        .await
        .expect("body");
    assert_eq!(body, b"{\"not\": \"an envelope\"}");
    // The feed skips them too, and status counts them.
    assert_eq!(count(&pool, "SELECT count(*) FROM activity.activity").await, 2);
    let status = gps_projections::status(&pool, &log).await.expect("status");
    let catalog = status.iter().find(|s| s.projection == "catalog").expect("catalog status");
    assert_eq!((catalog.dead_letters, catalog.checkpoint), (2, last));
    projector.stop().await;
}

#[tokio::test]
async fn a_rebuild_produces_the_same_tables_and_the_runner_carries_on() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let handler = CommandHandler::new(log.clone());
    let last = seed(&handler).await;
    wait_all(&pool, last).await;
    let live = dump_all(&pool).await;

    for projection in &gps_projections::ALL {
        let report = gps_projections::rebuild(&pool, &log, projection).await.expect("rebuild");
        assert_eq!(report.checkpoint, last, "{}", projection.name);
    }
    let rebuilt = dump_all(&pool).await;
    for (schema, tables) in &live {
        for (table, rows) in tables {
            assert_eq!(&rebuilt[schema][table], rows, "{schema}.{table} differs after the rebuild");
        }
    }
    assert_eq!(rebuilt, live);
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_rebuild' OR nspname LIKE '%\\_old'",
    )
    .fetch_one(&pool)
    .await
    .expect("schemas");
    assert_eq!(leftovers, 0, "shadow and old schemas are gone");

    // The live runner writes into the swapped-in schema.
    let next = product(&handler, "p4", &create_product("p4", "bags")).await;
    wait_all(&pool, next).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.products WHERE product_id = 'p4'").await, 1);
    projector.stop().await;
}

pub(crate) async fn wait_state(state: &mut watch::Receiver<RunnerState>, wanted: RunnerState) {
    tokio::time::timeout(WAIT, state.wait_for(|s| *s == wanted))
        .await
        .unwrap_or_else(|_| panic!("runner never became {wanted:?}"))
        .expect("runner alive");
}

#[tokio::test]
async fn a_second_runner_waits_for_the_lock_and_takes_over_when_the_first_stops() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let catalog = gps_projections::by_name("catalog").expect("catalog");
    let start = |state: watch::Sender<RunnerState>| {
        let (stop, stopped) = oneshot::channel::<()>();
        let options = RunnerOptions {
            lock_poll: Duration::from_millis(50),
            state: Some(state),
            ..RunnerOptions::default()
        };
        let task = tokio::spawn(gps_projections::run_projection(
            pool.clone(),
            log.clone(),
            catalog,
            options,
            async {
                let _ = stopped.await;
            },
        ));
        (stop, task)
    };
    let (first_state, mut first) = watch::channel(RunnerState::Starting);
    let (stop_first, first_task) = start(first_state);
    wait_state(&mut first, RunnerState::Active).await;
    let (second_state, mut second) = watch::channel(RunnerState::Starting);
    let (stop_second, second_task) = start(second_state);
    wait_state(&mut second, RunnerState::WaitingForLock).await;

    let handler = CommandHandler::new(log.clone());
    let one = product(&handler, "p1", &create_product("p1", "dresses")).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), one, WAIT)
        .await
        .expect("first runner projects");
    assert_eq!(*second.borrow(), RunnerState::WaitingForLock, "the second runner must not be active too");

    stop_first.send(()).expect("stop first");
    tokio::time::timeout(WAIT, first_task).await.expect("first stops").expect("join").expect("ran");
    wait_state(&mut second, RunnerState::Active).await;
    let two = product(&handler, "p2", &create_product("p2", "shoes")).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), two, WAIT)
        .await
        .expect("second runner projects");
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.products").await, 2);
    stop_second.send(()).expect("stop second");
    tokio::time::timeout(WAIT, second_task).await.expect("second stops").expect("join").expect("ran");
}

fn projector_process(nats: &TestNats, db: &TestDb) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_gps"))
        .arg("projector")
        .env("NATS_URL", nats.server.url())
        .env("DATABASE_URL", db.url())
        .env("GPS_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start gps projector")
}

async fn checkpoint(pool: &PgPool, schema_table: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(schema_table).fetch_optional(pool).await.ok().flatten().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_projector_process_resumes_with_no_lost_and_no_doubled_rows() {
    const PRODUCTS: usize = 1200;
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let handler = CommandHandler::new(log.clone());
    // A backlog: four events per product, written by concurrent writers.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut last = 0;
                for n in (writer..PRODUCTS).step_by(8) {
                    let id = format!("p{n}");
                    product(&handler, &id, &create_product(&id, "dresses")).await;
                    for (image, seed) in [("front", 1), ("back", 2)] {
                        let command = ProductCommand::AddProductImage {
                            image_id: ImageId::parse(format!("{id}-{image}")).expect("id"),
                            asset: asset(seed),
                            view: if seed == 1 { ImageView::Front } else { ImageView::Back },
                            analysis: None,
                        };
                        product(&handler, &id, &command).await;
                    }
                    let rename = ProductCommand::UpdateProductDetails {
                        name: Some(Name::parse(format!("Renamed {id}")).expect("name")),
                        category: None,
                        attributes: None,
                    };
                    last = last.max(product(&handler, &id, &rename).await);
                }
                last
            })
        })
        .collect();
    let mut last = 0;
    for writer in writers {
        last = last.max(writer.await.expect("writer"));
    }
    assert_eq!(last, (PRODUCTS * 4) as u64);
    let pool = gps_projections::connect(db.url()).await.expect("connect");

    let mut projector = projector_process(&nats, &db);
    let activity_checkpoint = "SELECT last_sequence FROM activity.checkpoint";
    let at_kill = tokio::time::timeout(WAIT, async {
        loop {
            let reached = checkpoint(&pool, activity_checkpoint).await;
            if reached > 0 {
                return reached;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the projector starts working");
    projector.start_kill().expect("SIGKILL");
    projector.wait().await.expect("reaped");
    let after_kill = checkpoint(&pool, activity_checkpoint).await;
    assert!(
        (after_kill as u64) < last,
        "the projector was killed mid-backlog (checkpoint {at_kill}..{after_kill} of {last})"
    );

    let mut projector = projector_process(&nats, &db);
    wait_all(&pool, last).await;
    projector.start_kill().expect("kill");
    projector.wait().await.expect("reaped");

    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.products").await, PRODUCTS as i64);
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.product_images").await, 2 * PRODUCTS as i64);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM catalog.products WHERE version = 4 AND image_count = 2 AND name = 'Renamed ' || product_id")
            .await,
        PRODUCTS as i64,
        "every product saw each of its events exactly once"
    );
    let (rows, distinct, min, max): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence) FROM activity.activity",
    )
    .fetch_one(&pool)
    .await
    .expect("feed");
    assert_eq!((rows, distinct, min, max), (last as i64, last as i64, 1, last as i64));
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.dead_letters").await, 0);
    // The resumed tables equal a rebuild from sequence 1.
    let resumed = dump_all(&pool).await;
    for projection in &gps_projections::ALL {
        gps_projections::rebuild(&pool, &log, projection).await.expect("rebuild");
    }
    assert_eq!(dump_all(&pool).await, resumed);
}

#[tokio::test]
async fn queries_are_scoped_to_the_brand_paginated_by_cursor_and_filtered() {
    use gps_projections::queries::{self, PageRequest, ProductFilter, QueryError};
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let handler = CommandHandler::new(log.clone());
    seed(&handler).await;
    // A second image of p1, added after its first: the cover stays the first.
    product(
        &handler,
        "p1",
        &ProductCommand::AddProductImage {
            image_id: ImageId::parse("img0").expect("id"),
            asset: asset(9),
            view: ImageView::Back,
            analysis: None,
        },
    )
    .await;
    // Another brand with a product of the same id.
    let other = gps_domain::ids::BrandId::parse("globex").expect("brand");
    let address = CommandHandler::address::<Product>(&other, "p1").expect("address");
    let mut command = create_product("p1", "hats");
    if let ProductCommand::CreateProduct { brand_id, .. } = &mut command {
        *brand_id = other.clone();
    }
    let last =
        handler.execute::<Product>(&address, &meta(), &command).await.expect("other brand").stream_sequence;
    wait_all(&pool, last).await;

    let first = queries::list_products(
        &pool,
        "acme",
        &ProductFilter::default(),
        &PageRequest { cursor: None, limit: Some(2) },
    )
    .await
    .expect("page 1");
    let ids = |page: &queries::Page<queries::ProductView>| {
        page.items.iter().map(|p| p.product_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), vec!["p3", "p2"], "newest first");
    let cursor = first.next_cursor.clone().expect("a next page");
    let second = queries::list_products(
        &pool,
        "acme",
        &ProductFilter::default(),
        &PageRequest { cursor: Some(cursor), limit: Some(2) },
    )
    .await
    .expect("page 2");
    assert_eq!(ids(&second), vec!["p1"]);
    assert_eq!(second.next_cursor, None);

    let dresses = ProductFilter { category: Some("dresses".into()), ..ProductFilter::default() };
    let page =
        queries::list_products(&pool, "acme", &dresses, &PageRequest::default()).await.expect("dresses");
    assert_eq!(ids(&page), vec!["p3", "p1"]);
    let archived = ProductFilter { archived: Some(true), ..ProductFilter::default() };
    let page =
        queries::list_products(&pool, "acme", &archived, &PageRequest::default()).await.expect("archived");
    assert_eq!(ids(&page), vec!["p3"]);
    // Search is by SKU or name, any case; its wildcards are literal.
    let filtered = |filter: ProductFilter| {
        let pool = pool.clone();
        async move {
            queries::list_products(&pool, "acme", &filter, &PageRequest::default()).await.expect("filtered")
        }
    };
    let page = filtered(ProductFilter { search: Some(" sku-P2 ".into()), ..ProductFilter::default() }).await;
    assert_eq!(ids(&page), vec!["p2"]);
    assert!(page.items[0].cover_hash.is_some(), "the list carries each product's first image");
    let page =
        filtered(ProductFilter { search: Some("Product p%".into()), ..ProductFilter::default() }).await;
    assert_eq!(ids(&page), Vec::<String>::new(), "% is a character, not a wildcard");
    let page = filtered(ProductFilter { has_images: Some(false), ..ProductFilter::default() }).await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let page = filtered(ProductFilter { has_images: Some(true), ..ProductFilter::default() }).await;
    assert_eq!(ids(&page), vec!["p3", "p2", "p1"]);
    let page = filtered(ProductFilter { in_shootings: Some(true), ..ProductFilter::default() }).await;
    assert_eq!(ids(&page), Vec::<String>::new(), "no look uses a product yet");
    let page = queries::list_products(&pool, "globex", &ProductFilter::default(), &PageRequest::default())
        .await
        .expect("other brand");
    assert_eq!(ids(&page), vec!["p1"]);
    assert_eq!(page.items[0].category, "hats");

    let detail = queries::get_product(&pool, "acme", "p1").await.expect("get").expect("exists");
    assert_eq!((detail.product.category.as_str(), detail.images.len()), ("dresses", 2));
    let images = detail.images.iter().map(|i| (i.image_id.as_str(), i.kind.as_str())).collect::<Vec<_>>();
    assert_eq!(images, vec![("img1", "front"), ("img0", "back")], "oldest first, not by id");
    assert_eq!(detail.product.cover_hash.as_deref(), Some(detail.images[0].content_hash.as_str()));
    let listed = filtered(ProductFilter::default()).await;
    let listed = listed.items.iter().find(|p| p.product_id == "p1").expect("p1 listed");
    assert_eq!(listed.cover_hash, detail.product.cover_hash, "the list and the detail agree on the cover");
    let imageless = queries::get_product(&pool, "globex", "p1").await.expect("get").expect("exists");
    assert_eq!((imageless.images.len(), imageless.product.cover_hash), (0, None));
    assert!(
        queries::get_product(&pool, "initech", "p1").await.expect("get").is_none(),
        "no row of another brand"
    );
    let json = serde_json::to_value(&detail).expect("serializable");
    assert_eq!(json["product_id"], "p1");
    assert_eq!(json["images"][0]["image_id"], "img1");

    // Member queries open sealed emails with the privacy vault's keys.
    gps_projections::privacy::migrate(&pool).await.expect("privacy vault");
    let members =
        queries::list_members(&pool, &pool, "acme", &PageRequest::default()).await.expect("members");
    assert_eq!(members.items.len(), 2);
    assert_eq!(queries::get_brand(&pool, "acme").await.expect("brand").expect("exists").name, "Acme");
    let subject = queries::get_subject(&pool, "acme", "s1").await.expect("subject").expect("exists");
    assert_eq!(subject.subject.name, "Model one");
    let feed = queries::list_activity(&pool, "acme", Some(("product", "p3")), &PageRequest::default())
        .await
        .expect("feed");
    assert_eq!(
        feed.items.iter().map(|a| a.event_type.as_str()).collect::<Vec<_>>(),
        vec!["product.archived", "product.image_added", "product.created"]
    );
    assert!(feed.items[2].summary.contains("created"), "{}", feed.items[2].summary);

    let bad = PageRequest { cursor: Some("not-a-cursor".into()), limit: None };
    let error =
        queries::list_products(&pool, "acme", &ProductFilter::default(), &bad).await.expect_err("bad cursor");
    assert!(matches!(error, QueryError::InvalidCursor), "{error:?}");
    assert_eq!(queries::checkpoint(&pool, "catalog").await.expect("checkpoint"), last);
    projector.stop().await;
}

/// The frozen golden fixtures: one stored event of every type, forming one
/// history per aggregate kind.
fn golden_fixtures() -> Vec<serde_json::Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join("fixtures");
    let mut events: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|entry| {
            let path = entry.expect("entry").path();
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json")
        })
        .collect();
    events.sort_by_key(|e| {
        (e["aggregate_type"].as_str().unwrap_or("").to_owned(), e["aggregate_version"].as_u64().unwrap_or(0))
    });
    events
}

#[tokio::test]
async fn every_event_type_is_applied_without_dead_letters() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let fixtures = golden_fixtures();
    assert!(fixtures.len() >= 59, "one fixture per event type");
    let mut last = 0;
    for event in &fixtures {
        let subject = format!(
            "gps.evt.{}.{}.{}",
            event["brand"].as_str().expect("brand"),
            event["aggregate_type"].as_str().expect("type"),
            event["aggregate_id"].as_str().expect("id")
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(gps_nats::HEADER_EVENT_TYPE, event["event_type"].as_str().expect("event type"));
        last = log
            .jetstream()
            .publish_with_headers(subject, headers, serde_json::to_vec(event).expect("json").into())
            .await
            .expect("publish")
            .await
            .expect("stored")
            .sequence;
    }
    let projector = Projector::start(&pool, &log);
    wait_all(&pool, last).await;
    projector.stop().await;

    for status in gps_projections::status(&pool, &log).await.expect("status") {
        assert_eq!(status.dead_letters, 0, "{}: {status:?}", status.projection);
        assert_eq!(status.lag, 0, "{status:?}");
    }
    let (status, attempt, steps, cost): (String, i32, i32, i64) = sqlx::query_as(
        "SELECT status, attempt, steps_completed, cost_micros FROM production.generations WHERE brand = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .expect("generation");
    assert_eq!((status.as_str(), steps), ("requested", 1), "retried after failing, one step recorded");
    assert!(attempt >= 1 && cost > 0, "attempt {attempt}, cost {cost}");
    let (state, comments, revisions): (String, i32, i64) = sqlx::query_as(
        "SELECT review_state, comment_count, (SELECT count(*) FROM review.revision_requests) FROM review.predictions",
    )
    .fetch_one(&pool)
    .await
    .expect("prediction");
    assert_eq!((state.as_str(), comments, revisions), ("pending", 1, 1));
    let (status, delivered): (String, bool) = sqlx::query_as(
        "SELECT e.status, r.delivered FROM delivery.exports e JOIN delivery.export_renditions r USING (brand, export_id)",
    )
    .fetch_one(&pool)
    .await
    .expect("export");
    assert_eq!((status.as_str(), delivered), ("in_progress", true));
    assert_eq!(count(&pool, "SELECT count(*) FROM production.shootings WHERE status = 'archived'").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM production.looks WHERE removed").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM catalog.products WHERE NOT archived AND image_count = 0").await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM catalog.styles WHERE archived AND current_version = 2").await,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM catalog.subjects WHERE retired AND image_count = 0").await,
        1
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM brands.api_clients WHERE revoked").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM brands.channel_presets").await, 0);
    // The brands' feed has every brand event; persons (platform-level) have
    // the accounts read model instead, erased ones without their sealed data.
    let platform = fixtures.iter().filter(|event| event["brand"] == gps_domain::ids::PLATFORM_SCOPE).count();
    assert_eq!(platform, 4, "the person fixtures");
    assert_eq!(
        count(&pool, "SELECT count(*) FROM activity.activity").await,
        (fixtures.len() - platform) as i64
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM activity.activity WHERE brand = '_platform'").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM accounts.users WHERE erased AND email_sealed IS NULL").await,
        1
    );
}

#[tokio::test]
async fn a_poison_event_in_the_middle_of_a_batch_is_dead_lettered_alone() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let handler = CommandHandler::new(log.clone());
    let mut last = 0;
    for n in 1..=9 {
        let id = format!("p{n}");
        last = product(&handler, &id, &create_product(&id, "dresses")).await;
    }
    let stored = raw_events(&log, last).await;
    // p1 created a second time in the middle: its insert violates the key.
    let mut batch: Vec<_> = stored[..5].to_vec();
    batch.push(stored[0].clone());
    batch.extend(stored[5..].iter().cloned());
    for (n, raw) in batch.iter_mut().enumerate() {
        raw.sequence = n as u64 + 1;
    }
    let catalog = gps_projections::by_name("catalog").expect("catalog");
    let report = gps_projections::runner::apply_batch(&pool, catalog, &batch).await.expect("apply");
    assert_eq!((report.applied, report.dead_lettered, report.checkpoint), (9, 1, 10));
    let dead: Vec<(i64, String)> = sqlx::query_as("SELECT stream_sequence, reason FROM catalog.dead_letters")
        .fetch_all(&pool)
        .await
        .expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 6, "the duplicate alone");
    assert!(dead[0].1.contains("duplicate key"), "{}", dead[0].1);
    let products: Vec<(String, i64)> =
        sqlx::query_as("SELECT product_id, created_sequence FROM catalog.products ORDER BY created_sequence")
            .fetch_all(&pool)
            .await
            .expect("products");
    let expected: Vec<(String, i64)> =
        (1..=9).map(|n| (format!("p{n}"), if n <= 5 { n } else { n + 1 })).collect();
    assert_eq!(products, expected, "every other event of the batch is applied");

    // The same batch again changes nothing.
    let before = dump_schema(&pool, "catalog").await;
    let again = gps_projections::runner::apply_batch(&pool, catalog, &batch).await.expect("apply");
    assert_eq!((again.applied, again.skipped, again.dead_lettered), (0, 10, 0));
    assert_eq!(dump_schema(&pool, "catalog").await, before);
}

#[tokio::test]
async fn dead_letters_that_apply_now_are_retried_and_removed() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let handler = CommandHandler::new(log.clone());
    let projector = Projector::start(&pool, &log);
    product(&handler, "p1", &create_product("p1", "dresses")).await;
    log.jetstream()
        .publish("gps.evt.acme.product.junk", "{\"not\": \"an envelope\"}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let created = product(&handler, "p2", &create_product("p2", "shoes")).await;
    let command = ProductCommand::AddProductImage {
        image_id: ImageId::parse("img2").expect("id"),
        asset: asset(2),
        view: ImageView::Front,
        analysis: None,
    };
    let last = product(&handler, "p2", &command).await;
    wait_all(&pool, last).await;
    projector.stop().await;
    let expected = dump_schema(&pool, "catalog").await;
    // As if a bug of an earlier build had failed p2's two events.
    sqlx::query("DELETE FROM catalog.product_images WHERE product_id = 'p2'")
        .execute(&pool)
        .await
        .expect("rm");
    sqlx::query("DELETE FROM catalog.products WHERE product_id = 'p2'").execute(&pool).await.expect("rm");
    sqlx::query(
        "INSERT INTO catalog.dead_letters (stream_sequence, projection, subject, event_type, reason, body)
         SELECT s, 'catalog', 'gps.evt.acme.product.p2', NULL, 'cannot be applied: an old bug', ''::bytea
         FROM unnest(ARRAY[$1::bigint, $2::bigint]) s",
    )
    .bind(created as i64)
    .bind(last as i64)
    .execute(&pool)
    .await
    .expect("dead letters");
    let status = gps_projections::status(&pool, &log).await.expect("status");
    assert_eq!(status.iter().find(|s| s.projection == "catalog").expect("catalog").dead_letters, 3);

    let catalog = gps_projections::by_name("catalog").expect("catalog");
    let report = gps_projections::retry_dead_letters(&pool, &log, catalog).await.expect("retry");
    assert_eq!((report.tried, report.applied, report.still_dead), (3, 2, 1));
    let left: Vec<(i64, String)> = sqlx::query_as("SELECT stream_sequence, reason FROM catalog.dead_letters")
        .fetch_all(&pool)
        .await
        .expect("dead");
    assert_eq!(left.len(), 1);
    assert!(left[0].1.contains("not an event envelope"), "{}", left[0].1);
    assert_eq!(dump_schema(&pool, "catalog").await, expected, "as if the events had never failed");
}
