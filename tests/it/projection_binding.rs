//! A read model knows its log: one built from another stream, or beyond the
//! log's end, is refused (and a rebuild is the way out); one restored from an
//! older backup catches up; one built with other subject filters is rebuilt.

use std::time::Duration;

use gps_commands::CommandHandler;
use gps_projections::runner::{RunnerOptions, RunnerState};
use sqlx::PgPool;

use crate::harness::{TestDb, TestNats, postgres_admin_url};
use crate::projection_faults::{Runner, checkpoint_of};
use crate::projections::{
    Projector, WAIT, count, create_product, dump_all, dump_schema, product, seed, wait_all,
};

fn quick_retry() -> RunnerOptions {
    RunnerOptions { refused_retry: Duration::from_millis(100), ..RunnerOptions::default() }
}

async fn wait_refused(runner: &mut Runner) -> String {
    let state = tokio::time::timeout(WAIT, runner.state.wait_for(|s| matches!(s, RunnerState::Refused(_))))
        .await
        .expect("the runner refuses")
        .expect("runner alive")
        .clone();
    match state {
        RunnerState::Refused(message) => message,
        other => panic!("{other:?}"),
    }
}

async fn wait_active(runner: &mut Runner) {
    tokio::time::timeout(WAIT, runner.state.wait_for(|s| *s == RunnerState::Active))
        .await
        .expect("the runner becomes active")
        .expect("runner alive");
}

async fn product_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT product_id FROM catalog.products ORDER BY product_id")
        .fetch_all(pool)
        .await
        .expect("products")
}

#[tokio::test]
async fn a_read_model_of_another_stream_is_refused_until_rebuilt() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let handler = CommandHandler::new(log.clone());
    let runner = Runner::start(&pool, &log, "catalog", quick_retry());
    product(&handler, "p1", &create_product("p1", "dresses")).await;
    let last = product(&handler, "p2", &create_product("p2", "shoes")).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), last, WAIT).await.expect("projected");
    runner.stop().await;
    let old = log.state().await.expect("state").identity.token();

    // The stream is deleted and created anew; the database stays.
    log.jetstream().delete_stream("GPS_EVENTS").await.expect("delete stream");
    log.provision().await.expect("provision");
    let new = log.state().await.expect("state").identity.token();
    assert_ne!(old, new);
    product(&handler, "p9", &create_product("p9", "hats")).await;

    let mut runner = Runner::start(&pool, &log, "catalog", quick_retry());
    let message = wait_refused(&mut runner).await;
    assert!(message.contains(&old) && message.contains(&new), "names both logs: {message}");
    assert!(message.contains("gps projections rebuild"), "names the way out: {message}");
    let status = gps_projections::status(&pool, &log).await.expect("status");
    let catalog = status.iter().find(|s| s.projection == "catalog").expect("catalog");
    assert!(catalog.refused && catalog.problem.as_deref() == Some(message.as_str()), "{catalog:?}");
    assert_eq!(catalog.log_identity.as_deref(), Some(old.as_str()));
    let problems = gps_projections::binding_problems(&pool, &log).await;
    assert!(problems.iter().any(|p| p.starts_with("catalog: ") && p.contains(&new)), "{problems:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(product_ids(&pool).await, vec!["p1", "p2"], "nothing of the other stream was applied");

    // The rebuild is the way out, and the runner carries on by itself.
    let catalog = gps_projections::by_name("catalog").expect("catalog");
    gps_projections::rebuild(&pool, &log, catalog).await.expect("rebuild");
    wait_active(&mut runner).await;
    let next = product(&handler, "p10", &create_product("p10", "bags")).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), next, WAIT).await.expect("projected");
    assert_eq!(product_ids(&pool).await, vec!["p10", "p9"]);
    assert!(gps_projections::binding_problems(&pool, &log).await.iter().all(|p| !p.starts_with("catalog")));
    runner.stop().await;
}

#[tokio::test]
async fn a_checkpoint_beyond_the_end_of_the_log_is_refused() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let runner = Runner::start(&pool, &log, "catalog", quick_retry());
    let last = product(&CommandHandler::new(log.clone()), "p1", &create_product("p1", "dresses")).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), last, WAIT).await.expect("projected");
    runner.stop().await;
    sqlx::query("UPDATE catalog.checkpoint SET last_sequence = last_sequence + 100")
        .execute(&pool)
        .await
        .expect("restored from a newer backup");

    let mut runner = Runner::start(&pool, &log, "catalog", quick_retry());
    let message = wait_refused(&mut runner).await;
    assert!(
        message.contains(&format!("at sequence {}", last + 100)) && message.contains("beyond the end"),
        "{message}"
    );
    let problems = gps_projections::binding_problems(&pool, &log).await;
    assert!(problems.iter().any(|p| p.starts_with("catalog: ")), "{problems:?}");
    runner.stop().await;
}

/// Makes `copy` a copy of `source` (Postgres clones the files), as a backup
/// restore would. Nobody may be connected to `source` meanwhile.
async fn copy_database(source: &TestDb, copy: &TestDb) {
    use sqlx::Connection;
    let name = |db: &TestDb| db.url().rsplit('/').next().expect("name").to_owned();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("admin");
    // The names are generated hex; safe to splice.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", name(copy))))
        .execute(&mut admin)
        .await
        .expect("drop");
    let create = format!("CREATE DATABASE {} TEMPLATE {}", name(copy), name(source));
    for attempt in 0.. {
        // The source's last sessions may still be closing.
        match sqlx::query(sqlx::AssertSqlSafe(create.clone())).execute(&mut admin).await {
            Ok(_) => return,
            Err(error) if attempt < 50 => {
                tracing::debug!(%error, "retrying the copy");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("copying the database: {error}"),
        }
    }
}

#[tokio::test]
async fn a_read_model_restored_from_an_older_backup_catches_up() {
    let nats = TestNats::start().await;
    let live_db = TestDb::create().await;
    let backup_db = TestDb::create().await;
    let log = nats.event_log().await;
    let handler = CommandHandler::new(log.clone());
    let pool = gps_projections::connect(live_db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let first = seed(&handler).await;
    wait_all(&pool, first).await;
    projector.stop().await;
    pool.close().await;
    copy_database(&live_db, &backup_db).await;

    // The live installation goes on; its consumers deliver beyond the backup.
    let pool = gps_projections::connect(live_db.url()).await.expect("connect");
    let projector = Projector::start(&pool, &log);
    let mut last = 0;
    for n in 10..20 {
        let id = format!("p{n}");
        last = product(&handler, &id, &create_product(&id, "shoes")).await;
    }
    wait_all(&pool, last).await;
    projector.stop().await;

    // The backup, behind but of this log, is not refused: it catches up.
    let restored = gps_projections::connect(backup_db.url()).await.expect("connect");
    assert_eq!(checkpoint_of(&restored, "catalog").await, first);
    assert!(gps_projections::binding_problems(&restored, &log).await.is_empty());
    let projector = Projector::start(&restored, &log);
    wait_all(&restored, last).await;
    projector.stop().await;
    assert_eq!(dump_all(&restored).await, dump_all(&pool).await);
}

#[tokio::test]
async fn a_read_model_built_with_other_filters_is_rebuilt_by_its_runner() {
    let nats = TestNats::start().await;
    let db = TestDb::create().await;
    let log = nats.event_log().await;
    let pool = gps_projections::connect(db.url()).await.expect("connect");
    let handler = CommandHandler::new(log.clone());
    let runner = Runner::start(&pool, &log, "catalog", RunnerOptions::default());
    let last = seed(&handler).await;
    gps_projections::wait_for_sequence(&pool, Some("catalog"), last, WAIT).await.expect("projected");
    runner.stop().await;
    let expected = dump_schema(&pool, "catalog").await;
    // As an older build that consumed products only would have left it.
    sqlx::query("UPDATE catalog.checkpoint SET filters = ARRAY['gps.evt.*.product.>']")
        .execute(&pool)
        .await
        .expect("old filters");
    sqlx::query("DELETE FROM catalog.subjects").execute(&pool).await.expect("no subjects then");
    let status = gps_projections::status(&pool, &log).await.expect("status");
    let catalog = status.iter().find(|s| s.projection == "catalog").expect("catalog");
    assert!(
        !catalog.refused && catalog.problem.as_deref().is_some_and(|p| p.contains("rebuilds it")),
        "{catalog:?}"
    );

    let mut runner = Runner::start(&pool, &log, "catalog", RunnerOptions::default());
    wait_active(&mut runner).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM catalog.subjects").await, 1, "the subject is back");
    let filters: Vec<String> = sqlx::query_scalar("SELECT unnest(filters) FROM catalog.checkpoint")
        .fetch_all(&pool)
        .await
        .expect("filters");
    assert_eq!(filters, gps_projections::by_name("catalog").expect("catalog").filter_subjects());
    runner.stop().await;
    assert_eq!(dump_schema(&pool, "catalog").await, expected);
}

#[tokio::test]
async fn readiness_names_a_projection_that_lags_the_log_beyond_the_bound_until_it_catches_up() {
    let mut gateway = crate::gateway::TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let (db, log) = (gateway.state.db.clone(), gateway.state.log.clone());
    assert!(gps_projections::readiness_problems(&db, &log, 5).await.is_empty(), "caught up at start");

    // The runners stop (a projector died) while writes go on.
    gateway.stop_projections().await;
    for i in 0..8 {
        let created = gateway
            .as_user(
                &owner,
                "POST",
                "/api/v1/brands/acme/products",
                Some(crate::gateway::product(&format!("lag-{i}"))),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let problems = gps_projections::readiness_problems(&db, &log, 5).await;
    let catalog =
        problems.iter().find(|p| p.starts_with("catalog:")).unwrap_or_else(|| panic!("{problems:?}"));
    assert!(catalog.contains("behind the log (the bound is 5)"), "{catalog}");
    assert!(gps_projections::readiness_problems(&db, &log, 1_000).await.is_empty(), "within a wider bound");

    gateway.start_projections();
    for _ in 0..400 {
        if gps_projections::readiness_problems(&db, &log, 5).await.is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("still not ready: {:?}", gps_projections::readiness_problems(&db, &log, 5).await);
}
