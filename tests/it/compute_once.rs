//! A generation never runs twice at once, a paid call is made once, and the
//! consume loops are supervised (issue 22), and the compute database knows its
//! log (issue 20): real NATS, a real compute database, the embedded S3
//! endpoint, and the local http-worker server counting requests per unit of
//! work (the `Idempotency-Key` GPS sends: generation, attempt, step, variant).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gps_compute_agents::agent::{self, AgentSettings};
use gps_compute_agents::consume::{self, ConsumerSpec};
use gps_compute_agents::providers::Capability;
use gps_compute_agents::router::Router;
use gps_compute_agents::supervise::RoleHealth;
use gps_domain::generation::{Generation, GenerationCommand, GenerationStatus};
use gps_domain::ids::GenerationId;

use crate::compute::{
    BLUE, Compute, address, fal, fast_policy, local, meta, product_photo, request, routes, worker_with,
};
use crate::compute_servers::{FalServer, WorkerAnswer, WorkerServer};
use crate::tcp_proxy::{TcpProxy, host_port};
use gps_commands::CommandHandler;

/// A `gps agent` process on `compute`'s parts, with extra environment.
fn spawn_gps_agent(
    compute: &Compute,
    data_dir: &std::path::Path,
    name: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let storage = compute.embedded.as_ref().expect("embedded").settings().clone();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gps"));
    command
        .arg("agent")
        .env("NATS_URL", compute.nats.server.url())
        .env("GPS_COMPUTE_DATABASE_URL", compute.db.url())
        .env("GPS_DATA_DIR", data_dir)
        .env("GPS_S3_ENDPOINT", &storage.endpoint)
        .env("GPS_S3_BUCKET", &storage.bucket)
        .env("GPS_S3_ACCESS_KEY_ID", &storage.access_key_id)
        .env("GPS_S3_SECRET_ACCESS_KEY", storage.secret_access_key.expose())
        .env("GPS_S3_REGION", &storage.region)
        .env("GPS_S3_PATH_STYLE", "true")
        .env("GPS_AGENT_NAME", name)
        .env("GPS_AGENT_POLL_MS", "50")
        .env("GPS_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("spawn gps agent")
}

/// A router whose generate and enhance steps go to the http-worker `server`
/// (not idempotent: a repeated call would be paid twice).
fn slow_worker_router(server: &WorkerServer) -> Router {
    Router::new(
        vec![worker_with(
            "slow",
            &server.url,
            vec![Capability::Generate, Capability::Enhance],
            false,
            Duration::from_secs(20),
        )],
        routes(&[(Capability::Generate, &["slow"]), (Capability::Enhance, &["slow"])]),
        fast_policy(),
    )
}

/// `server` was called exactly once per unit of work (its Idempotency-Key),
/// for `units` units.
#[track_caller]
fn assert_called_once_per_unit(server: &WorkerServer, units: usize) {
    let per_key = server.calls_per_key();
    let repeated: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "units of work called more than once: {repeated:?}");
    assert_eq!(per_key.len(), units, "one generate and one enhance per generation: {per_key:?}");
    assert_eq!(server.calls(), units, "exactly one provider call per (generation, variant, step)");
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn ten_generations_on_a_slow_paid_worker_with_two_slots_and_a_two_second_ack_wait_call_it_once_per_step_and_variant()
 {
    let server = WorkerServer::start().await;
    // Each paid call takes 2.5 s: longer than the ack wait.
    server.set_delay(Duration::from_millis(2500));
    let router = slow_worker_router(&server);
    let compute = Compute::parts().await;
    let mut settings = AgentSettings::new("agent-slots");
    settings.ack_wait = Duration::from_secs(2);
    settings.max_deliver = 5;
    settings.max_in_flight = 2;
    compute.spawn_agent_with(router, settings);
    let photo = compute.asset(product_photo(BLUE)).await;
    let ids: Vec<GenerationId> =
        (0..10).map(|i| GenerationId::parse(format!("g-slot-{i}")).expect("id")).collect();
    for id in &ids {
        compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    }
    for id in &ids {
        let generation = compute.finished(id).await;
        assert_eq!(
            generation.status(),
            Some(GenerationStatus::Completed),
            "{id}: {:?}",
            generation.failure()
        );
    }
    // Redeliveries (if any) had their chance to call again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_called_once_per_unit(&server, 20);
}

#[tokio::test]
async fn a_paid_call_that_times_out_after_the_worker_received_it_is_not_repeated_and_fails_the_generation_as_outcome_unknown_until_a_person_retries()
 {
    let server = WorkerServer::start().await;
    server.always(WorkerAnswer::Hang);
    // 5 s: long enough for an answer rendered by an unoptimised build on a busy machine.
    let router = Router::new(
        vec![
            worker_with("paid", &server.url, vec![Capability::Generate], false, Duration::from_secs(5)),
            local(),
        ],
        routes(&[(Capability::Generate, &["paid", "local"]), (Capability::Enhance, &["local"])]),
        fast_policy(),
    );
    let compute = Compute::start(router).await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let id = GenerationId::parse("g-unknown").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    let generation = compute.finished(&id).await;
    assert_eq!(generation.status(), Some(GenerationStatus::Failed));
    let failure = generation.failure().expect("failure");
    assert!(failure.reason.as_str().starts_with("step generate/0: outcome unknown"), "{}", failure.reason);
    assert!(failure.retryable, "a person may retry it");
    // Neither a retry in the router, nor a fallback, nor a redelivery called again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(server.calls(), 1, "exactly one request");
    let unknown: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM steps WHERE status = 'unknown' AND reason LIKE '%outcome unknown%'",
    )
    .fetch_one(compute.store.pool())
    .await
    .expect("count");
    assert_eq!(unknown, 1, "the step is recorded as of unknown outcome");

    // A person's explicit retry runs it again: one more request.
    server.clear();
    compute
        .commands
        .execute::<Generation>(
            &address::<Generation>(id.as_str()),
            &meta(),
            &GenerationCommand::RetryGeneration { attempt: 2 },
        )
        .await
        .expect("retry");
    for _ in 0..400 {
        if compute.generation(&id).await.attempt() == 2
            && compute.generation(&id).await.status() == Some(GenerationStatus::Completed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retried = compute.generation(&id).await;
    assert_eq!(retried.status(), Some(GenerationStatus::Completed), "{:?}", retried.failure());
    assert_eq!(server.calls(), 2, "the retry sent the request once more");
}

#[tokio::test]
async fn an_agent_killed_between_a_paid_call_and_recording_its_answer_leaves_an_unknown_outcome_that_its_replacement_does_not_call_again()
 {
    let server = WorkerServer::start().await;
    server.always(WorkerAnswer::Hang);
    let compute = Compute::parts().await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let data_dir = std::env::temp_dir().join(format!("gps-agent-{}", uuid::Uuid::new_v4().simple()));
    let env = [
        ("GPS_HTTP_WORKER_URL", server.url.as_str()),
        ("GPS_HTTP_WORKER_CAPABILITIES", "generate"),
        ("GPS_ROUTE_GENERATE", "http-worker"),
        ("GPS_ROUTE_ENHANCE", "local"),
        ("GPS_AGENT_ACK_WAIT_SECS", "2"),
        ("GPS_PROVIDER_TIMEOUT_SECS", "120"),
    ];
    let id = GenerationId::parse("g-killed-mid-call").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    let mut first = spawn_gps_agent(&compute, &data_dir, "agent-first", &env);
    until("the worker received the request", async || server.calls() == 1).await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");

    let mut second = spawn_gps_agent(&compute, &data_dir, "agent-second", &env);
    let generation = compute.finished(&id).await;
    let _ = second.start_kill();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert_eq!(generation.status(), Some(GenerationStatus::Failed));
    let failure = generation.failure().expect("failure");
    assert!(failure.reason.as_str().starts_with("outcome unknown"), "{}", failure.reason);
    assert!(failure.reason.as_str().contains("http-worker"), "{}", failure.reason);
    assert!(failure.retryable);
    assert_eq!(server.calls(), 1, "the replacement did not send the request again");
}

#[tokio::test]
async fn a_generation_whose_last_allowed_delivery_dies_with_its_agent_ends_failed_as_given_up() {
    let server = WorkerServer::start().await;
    server.always(WorkerAnswer::Hang);
    let compute = Compute::parts().await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let data_dir = std::env::temp_dir().join(format!("gps-agent-{}", uuid::Uuid::new_v4().simple()));
    let env = [
        ("GPS_HTTP_WORKER_URL", server.url.as_str()),
        ("GPS_HTTP_WORKER_CAPABILITIES", "generate"),
        ("GPS_ROUTE_GENERATE", "http-worker"),
        ("GPS_ROUTE_ENHANCE", "local"),
        ("GPS_AGENT_ACK_WAIT_SECS", "2"),
        ("GPS_AGENT_MAX_DELIVER", "1"),
        ("GPS_PROVIDER_TIMEOUT_SECS", "120"),
    ];
    let id = GenerationId::parse("g-last-delivery").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    let mut first = spawn_gps_agent(&compute, &data_dir, "agent-first", &env);
    until("the worker received the request", async || server.calls() == 1).await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");

    let mut second = spawn_gps_agent(&compute, &data_dir, "agent-second", &env);
    let generation = compute.finished(&id).await;
    let _ = second.start_kill();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert_eq!(generation.status(), Some(GenerationStatus::Failed));
    let failure = generation.failure().expect("failure");
    assert!(failure.reason.as_str().starts_with("gave up after 1 delivery"), "{}", failure.reason);
    assert!(failure.retryable);
    assert_eq!(compute.store.dead_letter_count().await.expect("count"), 1);
}

#[tokio::test]
async fn a_deleted_consumer_is_bound_again_by_the_supervisor_and_readiness_says_so_meanwhile() {
    let router = Router::new(vec![local()], std::collections::BTreeMap::new(), fast_policy());
    let compute = Compute::parts().await;
    let health = RoleHealth::new("compute-agent");
    let mut settings = AgentSettings::new("agent-supervised");
    settings.ack_wait = Duration::from_secs(5);
    let stop = compute.stop.subscribe();
    tokio::spawn(agent::run_with(
        compute.commands.clone(),
        compute.engine(router),
        settings,
        health.clone(),
        async move {
            let mut stop = stop;
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    until("the agent is ready", async || health.is_ready()).await;
    let stream = compute.commands.log().jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    stream.delete_consumer(agent::DURABLE).await.expect("consumer deleted");
    until("the loss is seen", async || health.status().restarts >= 1).await;
    until("the consumer is bound again", async || health.is_ready()).await;
    assert!(health.status().last_error.is_some());
    // Work flows again through the new consumer.
    let photo = compute.asset(product_photo(BLUE)).await;
    let id = GenerationId::parse("g-after-restart").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    let generation = compute.finished(&id).await;
    assert_eq!(generation.status(), Some(GenerationStatus::Completed), "{:?}", generation.failure());
}

#[tokio::test]
async fn a_handler_that_panics_takes_its_heartbeat_with_it_so_the_event_is_redelivered() {
    let compute = Compute::parts().await;
    let log = compute.commands.log().clone();
    let spec = ConsumerSpec {
        durable: "panicky".into(),
        filter: "gps.evt.*.look.*".into(),
        ack_wait: Duration::from_secs(1),
        max_deliver: -1,
        backoff: Vec::new(),
        max_in_flight: 1,
        wanted: |_| true,
    };
    let deliveries = Arc::new(AtomicU64::new(0));
    let seen = deliveries.clone();
    let health = RoleHealth::new("panicky");
    let session_health = health.clone();
    let stop = compute.stop.subscribe();
    tokio::spawn(async move {
        let _ = consume::run(
            &log,
            &spec,
            &session_health,
            move |message| {
                let seen = seen.clone();
                async move {
                    let delivered = message.info().map(|i| i.delivered).unwrap_or(0);
                    seen.store(delivered as u64, Ordering::SeqCst);
                    if delivered == 1 {
                        panic!("a handler bug on the first delivery");
                    }
                    consume::ack(&message, async_nats::jetstream::AckKind::Ack).await;
                }
            },
            async move {
                let mut stop = stop;
                let _ = stop.wait_for(|s| *s).await;
            },
        )
        .await;
    });
    until("the loop is ready", async || health.is_ready()).await;
    compute
        .commands
        .log()
        .jetstream()
        .publish("gps.evt.acme.look.panicky", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    // A heartbeat that outlived the panicking task would keep the event from
    // ever being redelivered.
    until("the event is redelivered", async || deliveries.load(Ordering::SeqCst) >= 2).await;
}

#[tokio::test]
async fn the_process_managers_park_an_event_they_cannot_decode_instead_of_terminating_it() {
    let compute = Compute::parts().await;
    let log = compute.commands.log().clone();
    let stop = compute.stop.subscribe();
    tokio::spawn(gps_commands::process_managers::run(compute.commands.clone(), async move {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
    }));
    log.jetstream()
        .publish("gps.evt.acme.shooting.from-the-future", "a format of a later build".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    let stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    let mut parked = false;
    for _ in 0..200 {
        if let Ok(mut consumer) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                gps_commands::process_managers::DURABLE,
            )
            .await
        {
            let info = consumer.info().await.expect("info");
            if info.delivered.stream_sequence >= 1 && info.num_ack_pending == 1 && info.num_pending == 0 {
                parked = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        parked,
        "the undecodable event is held back for a later delivery, not terminated or acknowledged"
    );
    // Still held a while later: parked for a long delay, not retried in a loop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            gps_commands::process_managers::DURABLE,
        )
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("info");
    assert_eq!(info.num_ack_pending, 1);
    assert_eq!(info.num_redelivered, 0, "parked, not redelivered at once");
}

#[tokio::test]
async fn an_agent_whose_compute_database_belongs_to_another_log_refuses_to_start_naming_both() {
    let compute = Compute::parts().await;
    let log = compute.commands.log().clone();
    agent::check_log_binding(&log, &compute.store, "compute database").await.expect("bound to this log");
    let before = log.state().await.expect("state").identity.token();
    // The log is recreated: a new stream, a new identity.
    log.jetstream().delete_stream("GPS_EVENTS").await.expect("deleted");
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.provision().await.expect("provisioned again");
    let after = log.state().await.expect("state").identity.token();
    assert_ne!(before, after);
    let router = Router::new(vec![local()], std::collections::BTreeMap::new(), fast_policy());
    let refused =
        agent::run(compute.commands.clone(), compute.engine(router), AgentSettings::new("agent-x"), async {})
            .await
            .expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains(&before) && message.contains(&after), "{message}");
    let stream = log.jetstream().get_stream("GPS_EVENTS").await.expect("stream");
    assert!(
        stream.get_consumer::<async_nats::jetstream::consumer::pull::Config>(agent::DURABLE).await.is_err(),
        "no consumer was bound: no work taken"
    );
}

#[tokio::test]
async fn a_fal_request_whose_id_cannot_be_recorded_is_waited_on_and_never_submitted_again() {
    let fal_server = FalServer::start().await;
    let router = Router::new(
        vec![fal(&fal_server.url), local()],
        routes(&[(Capability::Generate, &["fal"]), (Capability::Enhance, &["local"])]),
        fast_policy(),
    );
    let compute = Compute::parts().await;
    // The compute database refuses to record a submitted job (a store failure
    // right after fal accepted the paid request).
    for statement in [
        "CREATE FUNCTION refuse_submitted() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'the compute database is failing'; END $$",
        "CREATE TRIGGER refuse_submitted BEFORE INSERT OR UPDATE ON steps
         FOR EACH ROW WHEN (NEW.status = 'submitted') EXECUTE FUNCTION refuse_submitted()",
    ] {
        sqlx::query(statement).execute(compute.store.pool()).await.expect("fault injected");
    }
    let mut settings = AgentSettings::new("agent-fal");
    settings.ack_wait = Duration::from_secs(2);
    compute.spawn_agent_with(router, settings);
    let photo = compute.asset(product_photo(BLUE)).await;
    let id = GenerationId::parse("g-unrecorded").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    until("fal received the request", async || fal_server.submissions() == 1).await;
    // Several ack waits pass while fal works on it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    fal_server.state.release.store(true, Ordering::SeqCst);
    let generation = compute.finished(&id).await;
    assert_eq!(generation.status(), Some(GenerationStatus::Completed), "{:?}", generation.failure());
    assert_eq!(fal_server.submissions(), 1, "the paid request was submitted once");
}

#[tokio::test]
async fn connections_cut_again_and_again_under_an_agent_on_a_slow_paid_worker_still_call_it_once_per_step_and_variant()
 {
    let server = WorkerServer::start().await;
    // Each paid call outlasts the gaps between cuts: cuts land mid-call.
    server.set_delay(Duration::from_millis(1200));
    let router = slow_worker_router(&server);
    let compute = Compute::parts().await;
    // The agent and the process managers reach NATS only through the proxy.
    let proxy = TcpProxy::start(host_port(compute.nats.server.url())).await;
    let client = gps_nats::connect(&proxy.nats_url(), "gps-test-agent").await.expect("connect");
    let proxied = CommandHandler::new(gps_nats::EventLog::new(client, gps_nats::StreamSettings::default()));
    let mut settings = AgentSettings::new("agent-cut");
    settings.ack_wait = Duration::from_secs(3);
    settings.max_deliver = 10;
    settings.max_in_flight = 3;
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(agent::run(
        proxied.clone(),
        compute.engine(router),
        settings,
        stopped(compute.stop.subscribe()),
    ));
    tokio::spawn(gps_commands::process_managers::run(proxied, stopped(compute.stop.subscribe())));
    let photo = compute.asset(product_photo(BLUE)).await;
    let ids: Vec<GenerationId> =
        (0..8).map(|i| GenerationId::parse(format!("g-cut-{i}")).expect("id")).collect();
    for id in &ids {
        compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    }

    // Cut every connection of the agent every 700 ms until all are finished.
    let ((), cuts) = proxy
        .cutting_every(Duration::from_millis(700), async {
            for id in &ids {
                let generation = compute.finished(id).await;
                assert_eq!(
                    generation.status(),
                    Some(GenerationStatus::Completed),
                    "{id}: {:?}",
                    generation.failure()
                );
            }
        })
        .await;
    assert!(cuts >= 3, "the run was cut {cuts} times");
    assert!(proxy.connections() > 3, "the agent reconnected after the cuts");
    // Redeliveries (if any) had their chance to call again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_called_once_per_unit(&server, 16);
    // The metrics of this process count the steps by provider and outcome.
    let metrics = gps_nats::metrics::metrics().render();
    for series in [
        r#"gps_steps_total{provider="slow",step="generate",outcome="completed"}"#,
        r#"gps_step_duration_seconds_count{provider="slow"}"#,
        r#"gps_generations_finished_total{outcome="completed"}"#,
    ] {
        assert!(metrics.lines().any(|line| line.starts_with(series)), "{series} is missing:\n{metrics}");
    }
}
