//! `gps agent`: a compute agent, a delivery worker (`delivery`) and the
//! process managers in their own process; `gps up` runs the same inside. Builds the providers, router and
//! engine from the environment (documented in `docs/configuration.md`,
//! "Compute agents"), connects object storage and the compute database, and
//! consumes generation events until Ctrl-C or SIGTERM. Each role's consume
//! loop runs under a supervisor and reports in a `ComputeHealth`
//! (`run_on_with`), for readiness.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gps_compute_agents::agent::{self, AgentSettings};
use gps_compute_agents::blobs::Blobs;
use gps_compute_agents::engine::Engine;
use gps_compute_agents::providers::fal::{FalProvider, FalSettings};
use gps_compute_agents::providers::gemini::{GeminiProvider, GeminiSettings};
use gps_compute_agents::providers::http_worker::{HttpWorkerProvider, HttpWorkerSettings};
use gps_compute_agents::providers::local::LocalProvider;
use gps_compute_agents::providers::{ApiKey, Capability, Provider};
use gps_compute_agents::quality::GateSettings;
use gps_compute_agents::router::{Price, ProviderLimits, RetryPolicy, Router};
use gps_compute_agents::store::{ComputeStore, compute_url_for};
use gps_compute_agents::supervise::{self, Readiness, RoleHealth};
use gps_compute_agents::workflow::WorkflowSet;
use gps_nats::EventLog;

use crate::config::Settings;

pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub(crate) fn number<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match env(name) {
        None => Ok(default),
        Some(value) => {
            value.trim().parse().map_err(|_| anyhow::anyhow!("{name} = {value:?} is not a valid number"))
        }
    }
}

fn capabilities(name: &str, value: &str) -> anyhow::Result<Vec<Capability>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            Capability::parse(c).ok_or_else(|| {
                anyhow::anyhow!(
                    "{name}: unknown capability {c:?}; use generate, edit, enhance, analyse or video"
                )
            })
        })
        .collect()
}

/// The compute settings, from the environment.
pub(crate) struct ComputeSettings {
    database_url: String,
    agent: AgentSettings,
    poll_every: Duration,
    gate: GateSettings,
    policy: RetryPolicy,
    timeout: Duration,
}

impl ComputeSettings {
    /// Reads `GPS_COMPUTE_*`, `GPS_AGENT_*`, `GPS_GATE_*`.
    pub(crate) fn from_env(settings: &Settings) -> anyhow::Result<Self> {
        let database_url = compute_database_url(settings);
        let host = env("HOSTNAME").unwrap_or_else(|| "local".into());
        let mut agent =
            AgentSettings::new(env("GPS_AGENT_NAME").unwrap_or_else(|| {
                format!("agent-{}@{host}", &uuid::Uuid::new_v4().simple().to_string()[..8])
            }));
        agent.ack_wait = Duration::from_secs(number("GPS_AGENT_ACK_WAIT_SECS", 30u64)?.max(1));
        agent.max_deliver = number("GPS_AGENT_MAX_DELIVER", 5i64)?.max(1);
        agent.max_in_flight = number("GPS_AGENT_CONCURRENCY", 32usize)?.max(1);
        let defaults = GateSettings::default();
        let gate = GateSettings {
            min_long_edge_px: number("GPS_GATE_MIN_LONG_EDGE_PX", defaults.min_long_edge_px)?,
            min_sharpness: number("GPS_GATE_MIN_SHARPNESS", defaults.min_sharpness)?,
            max_colour_delta_e: number("GPS_GATE_MAX_DELTA_E", defaults.max_colour_delta_e)?,
        };
        let base = RetryPolicy::default();
        let policy = RetryPolicy {
            tries_per_provider: number("GPS_PROVIDER_TRIES", base.tries_per_provider)?.max(1),
            base_backoff: Duration::from_millis(number("GPS_PROVIDER_BACKOFF_MS", 200u64)?),
            max_backoff: base.max_backoff,
            breaker_threshold: number("GPS_PROVIDER_BREAKER_THRESHOLD", base.breaker_threshold)?.max(1),
            breaker_cooldown: Duration::from_secs(number("GPS_PROVIDER_BREAKER_COOLDOWN_SECS", 30u64)?),
        };
        Ok(ComputeSettings {
            database_url,
            agent,
            poll_every: Duration::from_millis(number("GPS_AGENT_POLL_MS", 1000u64)?.max(10)),
            gate,
            policy,
            timeout: Duration::from_secs(number("GPS_PROVIDER_TIMEOUT_SECS", 60u64)?.max(1)),
        })
    }
}

fn limits(name: &str) -> anyhow::Result<ProviderLimits> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let defaults = ProviderLimits::default();
    Ok(ProviderLimits {
        concurrency: number(&format!("GPS_{upper}_CONCURRENCY"), defaults.concurrency)?,
        rate_per_s: number(&format!("GPS_{upper}_RATE_PER_S"), defaults.rate_per_s)?,
        price: Price {
            per_call_micros: number(&format!("GPS_PRICE_{upper}_CALL_MICROS"), 0u64)?,
            per_1k_units_micros: number(&format!("GPS_PRICE_{upper}_1K_UNITS_MICROS"), 0u64)?,
        },
    })
}

/// The providers the environment configures: `local` always; `fal` when
/// `FAL_KEY` is set; `gemini` when `GEMINI_API_KEY` is; `http-worker` when
/// `GPS_HTTP_WORKER_URL` is. Routes per capability from `GPS_ROUTE_<CAPABILITY>`
/// (comma-separated provider names, tried in order).
pub(crate) fn router(settings: &ComputeSettings) -> anyhow::Result<Router> {
    let mut providers: Vec<(Arc<dyn Provider>, ProviderLimits)> = Vec::new();
    if let Some(key) = ApiKey::from_env("FAL_KEY") {
        let mut fal =
            FalSettings::new(env("GPS_FAL_URL").unwrap_or_else(|| "https://queue.fal.run".into()), key);
        fal.timeout = settings.timeout;
        for capability in [Capability::Generate, Capability::Edit, Capability::Enhance, Capability::Video] {
            if let Some(model) = env(&format!("GPS_FAL_MODEL_{}", capability.as_str().to_ascii_uppercase())) {
                fal.models.insert(capability, model);
            }
        }
        providers.push((Arc::new(FalProvider::new(fal)), limits("fal")?));
    }
    if let Some(key) = ApiKey::from_env("GEMINI_API_KEY") {
        let gemini = GeminiSettings {
            base_url: env("GPS_GEMINI_URL")
                .unwrap_or_else(|| "https://generativelanguage.googleapis.com".into()),
            model: env("GPS_GEMINI_MODEL").unwrap_or_else(|| "gemini-2.5-flash-image".into()),
            key,
            timeout: settings.timeout,
        };
        providers.push((Arc::new(GeminiProvider::new(gemini)), limits("gemini")?));
    }
    if let Some(url) = env("GPS_HTTP_WORKER_URL") {
        let worker = HttpWorkerSettings {
            name: "http-worker".into(),
            url,
            capabilities: capabilities(
                "GPS_HTTP_WORKER_CAPABILITIES",
                &env("GPS_HTTP_WORKER_CAPABILITIES").unwrap_or_else(|| "enhance".into()),
            )?,
            key: ApiKey::from_env("GPS_HTTP_WORKER_KEY"),
            timeout: settings.timeout,
            idempotent: env("GPS_HTTP_WORKER_IDEMPOTENT")
                .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on")),
        };
        providers.push((Arc::new(HttpWorkerProvider::new(worker)), limits("http-worker")?));
    }
    let format = env("GPS_LOCAL_FORMAT").unwrap_or_else(|| "png".into());
    providers.push((Arc::new(LocalProvider::new(format)), limits("local")?));
    let known: Vec<String> = providers.iter().map(|(p, _)| p.name().to_owned()).collect();
    let mut routes = BTreeMap::new();
    for capability in
        [Capability::Generate, Capability::Edit, Capability::Enhance, Capability::Analyse, Capability::Video]
    {
        let variable = format!("GPS_ROUTE_{}", capability.as_str().to_ascii_uppercase());
        if let Some(route) = env(&variable) {
            let names: Vec<String> =
                route.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
            if let Some(unknown) = names.iter().find(|n| !known.contains(n)) {
                anyhow::bail!(
                    "{variable} names provider {unknown:?}, which is not configured (configured: {}); set its key or URL",
                    known.join(", ")
                );
            }
            routes.insert(capability, names);
        }
    }
    Ok(Router::new(providers, routes, settings.policy))
}

/// The compute database: `GPS_COMPUTE_DATABASE_URL`, else the one that
/// belongs with the read-model database (`gps_read` → `gps_compute`).
pub(crate) fn compute_database_url(settings: &Settings) -> String {
    env("GPS_COMPUTE_DATABASE_URL").unwrap_or_else(|| compute_url_for(&settings.database_url))
}

/// Object storage as `gps up` configures it: `GPS_S3_ENDPOINT` (with
/// `GPS_S3_BUCKET`, `GPS_S3_ACCESS_KEY_ID`, `GPS_S3_SECRET_ACCESS_KEY`,
/// `GPS_S3_REGION`, `GPS_S3_PATH_STYLE`), else the embedded endpoint over
/// `<data_dir>/objects`.
pub(crate) async fn storage(
    settings: &Settings,
) -> anyhow::Result<(gps_storage::ObjectStore, Option<gps_storage::EmbeddedS3>)> {
    match env("GPS_S3_ENDPOINT") {
        Some(endpoint) => {
            let mut s3 = gps_storage::StorageSettings::new(
                endpoint.clone(),
                env("GPS_S3_BUCKET").unwrap_or_else(|| "gps".into()),
                env("GPS_S3_ACCESS_KEY_ID").unwrap_or_default(),
                gps_storage::SecretKey::new(env("GPS_S3_SECRET_ACCESS_KEY").unwrap_or_default()),
            );
            if let Some(region) = env("GPS_S3_REGION") {
                s3.region = region;
            }
            if let Some(path_style) = env("GPS_S3_PATH_STYLE") {
                s3.path_style = matches!(path_style.trim(), "1" | "true" | "yes" | "on");
            }
            let store = gps_storage::ObjectStore::connect(&s3)
                .await
                .with_context(|| format!("connecting to object storage at {endpoint}"))?;
            Ok((store, None))
        }
        None => {
            let dir = settings.data_dir.join("objects");
            let (store, server) = gps_storage::ObjectStore::embedded(&dir)
                .await
                .with_context(|| format!("starting the embedded object store over {}", dir.display()))?;
            Ok((store, Some(server)))
        }
    }
}

/// Connections of the compute database for an agent that runs `in_flight`
/// generations at once. Each generation holds at most one at a time (a node's
/// record, a lease check, an intent) plus its lease renewal now and then; a
/// pool much smaller than the generations in flight makes them queue for
/// connections, one much larger only holds Postgres backends idle.
pub(crate) fn compute_pool_size(in_flight: usize) -> u32 {
    u32::try_from(in_flight / 2 + 4).unwrap_or(u32::MAX).clamp(4, 48)
}

/// The engine and agent settings for `log` and `blobs`.
pub(crate) async fn engine(
    settings: &Settings,
    blobs: Arc<dyn Blobs>,
) -> anyhow::Result<(Arc<Engine>, AgentSettings)> {
    let compute = ComputeSettings::from_env(settings)?;
    let store = ComputeStore::connect(&compute.database_url, compute_pool_size(compute.agent.max_in_flight))
        .await
        .context("connecting to the compute database; set GPS_COMPUTE_DATABASE_URL")?;
    let engine = Engine {
        router: Arc::new(router(&compute)?),
        blobs,
        store,
        workflows: WorkflowSet::built_in()?,
        gate: compute.gate,
        poll_every: compute.poll_every,
    };
    Ok((Arc::new(engine), compute.agent))
}

/// The readiness of the three roles [`run_on_with`] runs; clones share it.
#[derive(Debug, Clone)]
pub(crate) struct ComputeHealth {
    /// The compute agent's consume loop.
    pub(crate) agent: RoleHealth,
    /// The delivery worker's.
    pub(crate) delivery: RoleHealth,
    /// The process managers'.
    pub(crate) process_managers: RoleHealth,
}

impl ComputeHealth {
    pub(crate) fn new() -> Self {
        ComputeHealth {
            agent: RoleHealth::new("compute-agent"),
            delivery: RoleHealth::new("delivery-worker"),
            process_managers: RoleHealth::new("process-managers"),
        }
    }

    /// All three, for a `/readyz`.
    pub(crate) fn readiness(&self) -> Readiness {
        Readiness::new(vec![self.agent.clone(), self.delivery.clone(), self.process_managers.clone()])
    }
}

/// Runs an agent, a delivery worker and the process managers on `log` until `shutdown`.
pub(crate) async fn run_on(
    log: EventLog,
    engine: Arc<Engine>,
    agent_settings: AgentSettings,
    delivery: Arc<gps_compute_agents::delivery::DeliveryWorker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_on_with(log, engine, agent_settings, delivery, ComputeHealth::new(), shutdown).await
}

/// [`run_on`], reporting each role's consume loop in `health`. Each loop runs
/// under a supervisor that binds its consumer again with backoff when it is
/// deleted or its pull fails. The agent and the delivery worker refuse to
/// start (an error, no work taken) on a compute database of another event log.
pub(crate) async fn run_on_with(
    log: EventLog,
    engine: Arc<Engine>,
    agent_settings: AgentSettings,
    delivery: Arc<gps_compute_agents::delivery::DeliveryWorker>,
    health: ComputeHealth,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let commands = gps_commands::CommandHandler::new(log.clone());
    // Refuse another log before any role takes work.
    gps_compute_agents::agent::check_log_binding(&log, &engine.store, "compute database")
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let managers = {
        let commands = commands.clone();
        let pm_health = health.process_managers.clone();
        tokio::spawn(supervise::supervise(
            health.process_managers.clone(),
            supervise::Backoff::default(),
            move |stop| {
                let pm_health = pm_health.clone();
                gps_commands::process_managers::run_session(
                    commands.clone(),
                    move || pm_health.set_ready(),
                    stop,
                )
            },
            wait(stopped.clone()),
        ))
    };
    let deliveries = tokio::spawn(gps_compute_agents::delivery::run_with(
        delivery,
        health.delivery.clone(),
        wait(stopped.clone()),
    ));
    let agent =
        tokio::spawn(agent::run_with(commands, engine, agent_settings, health.agent.clone(), wait(stopped)));
    let mut agent = agent;
    let mut deliveries = deliveries;
    // A role that refuses to start (another log) ends the process with its reason.
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        ended = &mut agent => {
            let _ = stop.send(true);
            ended.context("the compute agent panicked")?.context("compute agent")?;
            anyhow::bail!("the compute agent stopped");
        }
        ended = &mut deliveries => {
            let _ = stop.send(true);
            ended.context("the delivery worker panicked")?.context("delivery worker")?;
            anyhow::bail!("the delivery worker stopped");
        }
    }
    let _ = stop.send(true);
    managers.await.context("the process managers panicked")?;
    agent.await.context("the compute agent panicked")?.context("compute agent")?;
    deliveries.await.context("the delivery worker panicked")?.context("delivery worker")?;
    Ok(())
}

/// `gps agent`: an agent in its own process.
pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let (log, _server) = crate::up::connect_event_log(&settings).await?;
    let (store, _embedded) = storage(&settings).await?;
    let commands = gps_commands::CommandHandler::new(log.clone());
    let delivery = crate::delivery::worker(&settings, commands, store.clone()).await?;
    let (engine, agent_settings) = engine(&settings, Arc::new(store)).await?;
    crate::metrics::serve(&settings).await?;
    println!(
        "compute agent {} consuming generation events; delivery worker {} consuming export events",
        agent_settings.name, delivery.settings.name
    );
    run_on(log, engine, agent_settings, delivery, crate::up::shutdown_signal()).await
}

/// `gps agent --status`: the shared queue's depth and dead letters, as JSON.
pub(crate) async fn status(settings: Settings) -> anyhow::Result<()> {
    let (log, _server) = crate::up::connect_event_log(&settings).await?;
    let compute = ComputeSettings::from_env(&settings)?;
    let depth = agent::queue_depth(&log, &compute.agent).await?;
    let store = ComputeStore::connect(&compute.database_url, 2).await?;
    println!(
        "{}",
        serde_json::json!({
            "pending": depth.pending,
            "in_flight": depth.in_flight,
            "dead_letters": store.dead_letter_count().await?,
        })
    );
    Ok(())
}
