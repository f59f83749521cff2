//! `gps bench dispatch` — W6: generation requests through the shared consumer,
//! the workflow engine and the command path to a zero-latency provider served
//! on loopback (an http-worker answering a small PNG at once). Real NATS (a
//! private server), a throwaway compute database `gps_bench_compute_<random>`,
//! the embedded S3 endpoint. Prints one JSON line: `generations_per_s` from the
//! first request to the last `generation.completed`, and `duplicates`
//! (prediction events beyond one per variant; must be 0).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use futures::StreamExt;
use gps_compute_agents::agent::{self, AgentSettings};
use gps_compute_agents::engine::Engine;
use gps_compute_agents::providers::http_worker::{HttpWorkerProvider, HttpWorkerSettings};
use gps_compute_agents::providers::{Capability, Provider};
use gps_compute_agents::quality::GateSettings;
use gps_compute_agents::router::{ProviderLimits, RetryPolicy, Router};
use gps_compute_agents::store::ComputeStore;
use gps_compute_agents::workflow::WorkflowSet;
use gps_domain::generation::{
    GenerationCommand, GenerationInputs, GenerationRequested, ProductImageSnapshot, ProductSnapshot,
};
use gps_domain::ids::{BrandId, GenerationId, LookId, ProductId, ShootingId};
use gps_domain::values::{
    AspectRatio, Category, ImageFormat, Name, OutputSpec, ShotType, Sku, WorkflowName, WorkflowRef,
};
use gps_domain::{AggregateKind, wire::Actor};
use gps_nats::{AggregateAddress, CommandMeta};
use sqlx::ConnectOptions;

use crate::bench::{BenchServer, SyncMode};

/// A small PNG the zero-latency worker returns for every task.
fn small_png() -> Vec<u8> {
    let image =
        image::RgbaImage::from_fn(64, 80, |x, y| image::Rgba([(x * 4) as u8, (y * 3) as u8, 160, 255]));
    gps_compute_agents::imaging::encode(&image, "png").map(|(b, _)| b.to_vec()).unwrap_or_default()
}

/// Serves the http-worker protocol on loopback, answering at once.
async fn zero_latency_worker() -> anyhow::Result<String> {
    let body = serde_json::json!({
        "model": "zero-latency",
        "image": { "media_type": "image/png", "data_base64": base64::engine::general_purpose::STANDARD.encode(small_png()) },
    })
    .to_string();
    let app = axum::Router::new().route(
        "/v1/tasks",
        axum::routing::post(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// Runs W6.
pub(crate) async fn run(
    database_url: &str,
    generations: usize,
    workflow: &str,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let bench = BenchServer::start(SyncMode::Default).await?;
    let log = bench.event_log().await?;
    let commands = gps_commands::CommandHandler::new(log.clone());
    let options =
        sqlx::postgres::PgConnectOptions::from_str(database_url).context("DATABASE_URL is not valid")?;
    let name = format!("gps_bench_compute_{}", uuid::Uuid::new_v4().simple());
    let compute_url = gps_compute_agents::store::sibling_url(database_url, &name);
    let store = ComputeStore::connect(&compute_url, crate::agent::compute_pool_size(concurrency)).await?;
    let objects = std::env::temp_dir().join(format!("gps-bench-objects-{}", uuid::Uuid::new_v4().simple()));
    let (storage, embedded) = gps_storage::ObjectStore::embedded(&objects).await?;

    let worker_url = zero_latency_worker().await?;
    let worker = HttpWorkerProvider::new(HttpWorkerSettings {
        name: "zero-latency".into(),
        url: worker_url,
        capabilities: vec![Capability::Generate, Capability::Enhance],
        key: None,
        timeout: Duration::from_secs(30),
        idempotent: false,
    });
    let providers: Vec<(Arc<dyn Provider>, ProviderLimits)> = vec![(
        Arc::new(worker),
        ProviderLimits { concurrency: 512, rate_per_s: 1e9, ..ProviderLimits::default() },
    )];
    let engine = Arc::new(Engine {
        router: Arc::new(Router::new(providers, BTreeMap::new(), RetryPolicy::default())),
        blobs: Arc::new(storage.clone()),
        store,
        workflows: WorkflowSet::built_in()?,
        gate: GateSettings::default(),
        poll_every: Duration::from_millis(50),
    });
    let brand = BrandId::parse("bench")?;
    let product = gps_compute_agents::blobs::store(&storage, &brand, small_png().into(), "image/png").await?;
    let mut settings = AgentSettings::new("bench-agent");
    settings.max_in_flight = concurrency.max(1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = {
        let mut stopped = stopped.clone();
        tokio::spawn(agent::run(commands.clone(), engine, settings, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    };
    let mut completions = log.client().subscribe("gps.evt.bench.generation.*").await?;

    let started = Instant::now();
    let requests = futures::stream::iter(0..generations)
        .map(|index| {
            let commands = commands.clone();
            let brand = brand.clone();
            let product = product.clone();
            async move {
                let id = GenerationId::parse(format!("w6-{index}"))?;
                let request = GenerationRequested {
                    generation_id: id.clone(),
                    brand_id: brand.clone(),
                    shooting_id: ShootingId::parse("w6")?,
                    look_id: LookId::parse("w6")?,
                    shot_type: ShotType::parse("front")?,
                    variants: 1,
                    workflow: WorkflowRef { name: WorkflowName::parse(workflow)?, version: 1 },
                    seed: index as u64,
                    output: OutputSpec::new(AspectRatio::parse("4:5")?, 256, ImageFormat::Png)?,
                    inputs: GenerationInputs {
                        products: vec![ProductSnapshot {
                            product_id: ProductId::parse("w6")?,
                            sku: Sku::parse("W6")?,
                            name: Name::parse("W6 product")?,
                            category: Category::parse("dresses")?,
                            attributes: BTreeMap::new(),
                            images: vec![ProductImageSnapshot {
                                asset: product,
                                view: Name::parse("front")?,
                            }],
                        }],
                        subject: None,
                        style: None,
                        look_guidelines: Vec::new(),
                    },
                    revision: None,
                    quality_gates: None,
                };
                let address = AggregateAddress::new(brand, AggregateKind::Generation, id.as_str())?;
                let meta = CommandMeta::new(format!("w6-request-{index}"), Actor::System("bench".into()));
                commands
                    .execute::<gps_domain::generation::Generation>(
                        &address,
                        &meta,
                        &GenerationCommand::RequestGeneration(request),
                    )
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(256);
    let sender = async move {
        let results: Vec<anyhow::Result<()>> = requests.collect().await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()
    };
    let waiter = async {
        let mut completed = 0usize;
        let deadline = Instant::now() + Duration::from_secs(600);
        while completed < generations {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, completions.next()).await {
                Ok(Some(message)) => {
                    let kind = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Gps-Event-Type"))
                        .map(|v| v.as_str().to_owned());
                    if kind.as_deref() == Some("generation.completed") {
                        completed += 1;
                    }
                }
                _ => {
                    anyhow::bail!("only {completed} of {generations} generations completed within 10 minutes")
                }
            }
        }
        anyhow::Ok(started.elapsed())
    };
    let (sent, waited) = tokio::join!(sender, waiter);
    sent?;
    let elapsed = waited?;
    let _ = stop.send(true);
    let _ = agent.await;

    // Every prediction is one subject with one event; more is a duplicate.
    let stream = log.jetstream().get_stream(&log.settings().name).await?;
    let info = stream.info_with_subjects("gps.evt.bench.prediction.>").await?;
    let subjects: Vec<(String, usize)> =
        info.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    let prediction_events: usize = subjects.iter().map(|(_, count)| count).sum();
    let duplicates =
        prediction_events.saturating_sub(subjects.len()) + subjects.len().saturating_sub(generations);
    let line = crate::bench::emit(serde_json::json!({
            "workload": "W6 dispatch",
            "generations": generations,
            "workflow": workflow,
            "variants": 1,
            "agent_concurrency": concurrency,
            "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "generations_per_s": (generations as f64 / elapsed.as_secs_f64()).round(),
            "predictions": subjects.len(),
            "duplicates": duplicates,
            "target_generations_per_s": 1500,
    }));
    drop(embedded);
    let _ = std::fs::remove_dir_all(&objects);
    if let Ok(mut admin) = options.database("postgres").connect().await {
        // The name is generated from hex digits only, so it is safe to splice.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
    }
    drop(bench);
    Ok(line)
}
