//! `gps bench rebuild|consistency|read`: read-side benchmarks. Each run starts
//! its own pinned nats-server on fresh storage (like [`crate::bench`]) and
//! creates a throwaway database `gps_bench_<random>` on `DATABASE_URL`'s
//! server, dropped afterwards. One JSON object per line:
//!
//! - W4: rebuild the `catalog` projection from sequence 1, next to a raw
//!   ordered replay of the same stream in the same run (`ratio_to_raw`).
//! - W5: open-loop `create_product` commands through the gateway at a target
//!   rate; time from each HTTP response to the product being visible in the
//!   read model.
//! - W7: concurrent HTTP reads of the product list and detail endpoints, next
//!   to the plain primary-key query through the same pool (`ratio_to_raw`).
//!
//! Traffic goes to 127.0.0.1 only, through a small keep-alive HTTP/1.1
//! client below. Figures, not assertions: build with `--release`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use futures::StreamExt;
use gps_commands::CommandHandler;
use gps_domain::brand::Email;
use gps_domain::ids::{MemberId, ProductId};
use gps_domain::product::{ProductCreated, ProductEvent};
use gps_domain::values::{Category, Name, Sku};
use gps_domain::wire;
use gps_gateway::AppState;
use gps_nats::{AggregateAddress, AppendRequest, CommandMeta, EventLog, ExpectedPosition, NewEvent};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, PgPool};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bench::{BenchServer, SyncMode, actor, brand, emit, percentile_ms, round2, sample_event};

/// A read-side benchmark.
#[derive(Debug, Subcommand)]
pub(crate) enum ReadWorkload {
    /// W4: rebuild the catalog projection from N events, vs a raw ordered replay.
    Rebuild {
        /// Product events in the stream.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Events per product (one `product.created`, then `product.details_updated`).
        #[arg(long, default_value_t = 100)]
        events_per_product: usize,
    },
    /// W5: open-loop create_product through the gateway; response → visible in the read model.
    Consistency {
        /// Commands per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// How long to send.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// W7: HTTP list and detail reads under concurrent load, vs a primary-key query.
    Read {
        /// Seconds per phase (list, detail, raw query).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Products seeded before reading.
        #[arg(long, default_value_t = 1000)]
        products: usize,
    },
}

/// Runs a read-side workload and prints its figures.
pub(crate) async fn run(workload: ReadWorkload, database_url: &str) -> anyhow::Result<Value> {
    match workload {
        ReadWorkload::Rebuild { events, events_per_product } => {
            w4(database_url, events.max(1), events_per_product.clamp(1, 1_000_000)).await
        }
        ReadWorkload::Consistency { rate, seconds } => {
            w5(database_url, rate.clamp(1, 100_000), seconds.clamp(1, 3600)).await
        }
        ReadWorkload::Read { seconds, concurrency, products } => {
            w7(database_url, seconds.clamp(1, 3600), concurrency.clamp(1, 1024), products.max(1)).await
        }
    }
}

// ---------------------------------------------------------------- database

/// A fresh database `gps_bench_<random>` on the server of `DATABASE_URL`,
/// dropped (with its connections) when this is dropped.
struct BenchDb {
    admin: sqlx::postgres::PgConnectOptions,
    name: String,
    pool: PgPool,
}

impl BenchDb {
    async fn create(database_url: &str) -> anyhow::Result<Self> {
        let options = sqlx::postgres::PgConnectOptions::from_str(database_url)
            .with_context(|| format!("the database URL {database_url:?} is not valid"))?;
        let admin = options.clone().database("postgres");
        let name = format!("gps_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin.connect().await.context("cannot reach Postgres; set DATABASE_URL")?;
        // The name is generated from hex digits only, so it is safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        // The gateway's pool in `gps up` (size, no ping before each use).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .connect_with(options.database(&name))
            .await?;
        // One database holds the bench's read models and its credentials store.
        gps_gateway::auth::migrate(&pool).await.context("preparing the auth schema")?;
        gps_projections::privacy::migrate(&pool).await.context("preparing the privacy vault")?;
        Ok(BenchDb { admin, name, pool })
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let (admin, name, pool) = (self.admin.clone(), self.name.clone(), self.pool.clone());
        // Drop is not async: a small runtime on its own thread cleans up.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                pool.close().await;
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

// ---------------------------------------------------------------- seeding

fn product_created(id: &str) -> anyhow::Result<NewEvent> {
    let event = ProductEvent::Created(ProductCreated {
        product_id: ProductId::parse(id)?,
        brand_id: brand(),
        sku: Sku::parse(format!("SKU-{id}"))?,
        name: Name::parse(format!("Linen midi dress {id}"))?,
        category: Category::parse("dresses")?,
        attributes: BTreeMap::from([("colour".to_owned(), "black".to_owned())]),
    });
    Ok(NewEvent::from(wire::encode(&event)))
}

/// Appends `products` products of `per_product` events each (a
/// `product.created`, then `product.details_updated`), up to 1000 events per
/// command, from a few concurrent writers. Returns the last stream sequence.
async fn seed_products(log: &EventLog, products: usize, per_product: usize) -> anyhow::Result<u64> {
    const WRITERS: usize = 8;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut last = 0u64;
            for n in (writer..products).step_by(WRITERS) {
                let id = format!("p-{n}");
                let address = AggregateAddress::new(brand(), gps_domain::AggregateKind::Product, id.clone())?;
                let mut expected = ExpectedPosition::new_aggregate();
                let mut written = 0;
                while written < per_product {
                    let chunk = (per_product - written).min(gps_nats::log::MAX_EVENTS_PER_APPEND);
                    let mut events = Vec::with_capacity(chunk);
                    for k in written..written + chunk {
                        events.push(if k == 0 { product_created(&id)? } else { sample_event(k) });
                    }
                    let appended = log
                        .append(AppendRequest {
                            address: address.clone(),
                            expected: expected.clone(),
                            command: CommandMeta::generated(actor()),
                            events,
                        })
                        .await?;
                    expected = appended.position();
                    last = last.max(expected.last_subject_sequence);
                    written += chunk;
                }
            }
            anyhow::Ok(last)
        }));
    }
    let mut last = 0;
    for task in tasks {
        last = last.max(task.await.context("seeding task")??);
    }
    Ok(last)
}

// ---------------------------------------------------------------- W4

async fn w4(database_url: &str, events: usize, per_product: usize) -> anyhow::Result<Value> {
    let bench = BenchServer::start(SyncMode::Default).await?;
    let log = bench.event_log().await?;
    let db = BenchDb::create(database_url).await?;
    let products = events.div_ceil(per_product);
    let seeding = Instant::now();
    seed_products(&log, products, per_product).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let catalog = gps_projections::by_name("catalog").context("the catalog projection")?;
    let stream = log.jetstream().get_stream(&log.settings().name).await?;
    let total = stream.cached_info().state.messages;

    // Raw replay before and after the rebuild; the faster one is the baseline.
    let raw_before = raw_replay(&log, catalog.filter_subjects()).await?;
    let report = gps_projections::rebuild(&db.pool, &log, catalog).await?;
    let rebuild_secs = Duration::from_millis(u64::try_from(report.millis).unwrap_or(u64::MAX)).as_secs_f64();
    let raw_after = raw_replay(&log, catalog.filter_subjects()).await?;
    let raw = raw_before.min(raw_after);

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.products").fetch_one(&db.pool).await?;
    let dead: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog.dead_letters").fetch_one(&db.pool).await?;
    anyhow::ensure!(rows as usize == products, "rebuilt {rows} products of {products}");
    anyhow::ensure!(report.events == total, "rebuild read {} of {total} events", report.events);
    let rate = report.events as f64 / rebuild_secs;
    let raw_rate = total as f64 / raw.as_secs_f64();
    Ok(emit(json!({
            "workload": "W4",
            "build": if cfg!(debug_assertions) { "debug" } else { "release" },
            "what": "rebuild the catalog projection from sequence 1 (shadow schema, batched transactions, swap) \
                     vs a raw ordered-consumer replay of the same stream reading every message, no processing",
            "events": report.events,
            "products": products,
            "events_per_product": per_product,
            "seed_secs": round2(seed_secs),
            "rebuild_secs": round2(rebuild_secs),
            "events_per_sec": round2(rate),
            "raw_secs": round2(raw.as_secs_f64()),
            "raw_secs_before_after": [round2(raw_before.as_secs_f64()), round2(raw_after.as_secs_f64())],
            "raw_events_per_sec": round2(raw_rate),
            "rows": rows,
            "dead_letters": dead,
            "ratio_to_raw": round2(rate / raw_rate),
    })))
}

/// Reads every message of `filters` with an ordered consumer from sequence
/// 1, doing nothing with them; returns how long it took.
pub(crate) async fn raw_replay(log: &EventLog, filters: Vec<String>) -> anyhow::Result<Duration> {
    use async_nats::jetstream::consumer;
    let started = Instant::now();
    let stream = log.jetstream().get_stream(&log.settings().name).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subjects: filters,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut remaining = consumer.cached_info().num_pending;
    if remaining == 0 {
        return Ok(started.elapsed());
    }
    let mut messages = consumer.messages().await?;
    while remaining > 0 {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .context("the raw replay stalled for 30 s")?
            .context("the raw replay consumer closed")??;
        remaining = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending;
    }
    Ok(started.elapsed())
}

// ---------------------------------------------------------------- gateway

/// A gateway on port 0 with the projection runners, its own NATS and
/// database, and a signed-in owner of the `bench` brand.
/// An embedded object store in a throwaway folder.
struct BenchStorage {
    media: gps_gateway::media::Media,
    dir: std::path::PathBuf,
    _server: gps_storage::EmbeddedS3,
}

impl BenchStorage {
    async fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("gps-bench-objects-{}", uuid::Uuid::new_v4().simple()));
        let (store, server) =
            gps_storage::ObjectStore::embedded(&dir).await.context("embedded object store")?;
        let settings = gps_gateway::media::MediaSettings::new(gps_gateway::media::UrlSigningKey::generate());
        Ok(BenchStorage { media: gps_gateway::media::Media::new(store, settings), dir, _server: server })
    }
}

impl Drop for BenchStorage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Platform {
    port: u16,
    state: AppState,
    cookie: String,
    csrf: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stop_projections: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
    projector: Option<tokio::task::JoinHandle<()>>,
    // The bench's object store (unused by the read workloads, but the gateway
    // always has one) and its folder, removed on drop.
    _storage: BenchStorage,
    // Dropped last: the database, then the server.
    db: BenchDb,
    _bench: BenchServer,
}

impl Platform {
    async fn start(database_url: &str) -> anyhow::Result<Self> {
        let bench = BenchServer::start(SyncMode::Default).await?;
        let log = bench.event_log().await?;
        let db = BenchDb::create(database_url).await?;
        gps_projections::prepare_all(&db.pool).await.context("read-model schemas")?;
        let storage = BenchStorage::start().await?;
        let state = AppState::new(
            log.clone(),
            CommandHandler::new(log.clone()),
            db.pool.clone(),
            false,
            storage.media.clone(),
        )
        .await?;
        let (stop_projections, projections_stopped) = tokio::sync::oneshot::channel::<()>();
        let projector = tokio::spawn({
            let (pool, log) = (db.pool.clone(), log.clone());
            async move {
                let stopped = async move {
                    let _ = projections_stopped.await;
                };
                if let Err(error) =
                    gps_projections::run_all(pool, log, gps_projections::RunnerOptions::default(), stopped)
                        .await
                {
                    eprintln!("the projection runners stopped: {error}");
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn({
            let state = state.clone();
            async move {
                let stopped = async move {
                    let _ = stopped.await;
                };
                if let Err(error) = gps_gateway::run(listener, state, stopped).await {
                    eprintln!("the gateway stopped: {error}");
                }
            }
        });

        let password = "a long enough bench password";
        gps_gateway::accounts::create_person(
            &state.commands,
            &db.pool,
            &db.pool,
            gps_gateway::accounts::NewPerson {
                user_id: &MemberId::parse("bench-owner")?,
                email: &Email::parse("bench-owner@example.com")?,
                display_name: &Name::parse("Bench owner")?,
                password,
            },
            gps_domain::wire::Actor::System("gps-bench".into()),
            Some(gps_gateway::accounts::VISIBLE_WITHIN),
        )
        .await?;
        // Creating the bench's brand is a platform admin's right.
        gps_gateway::accounts::grant_platform_admin(&db.pool, &MemberId::parse("bench-owner")?, "gps-bench")
            .await?;
        let (_, token, csrf) = gps_gateway::auth::sign_in(
            &state,
            "bench-owner@example.com",
            password,
            &gps_gateway::auth::SourceAddress(None),
        )
        .await?;
        let cookie = format!("{}={token}", gps_gateway::auth::SESSION_COOKIE);
        let platform = Platform {
            port,
            state,
            cookie,
            csrf,
            stop: Some(stop),
            stop_projections: Some(stop_projections),
            served: Some(served),
            projector: Some(projector),
            _storage: storage,
            db,
            _bench: bench,
        };
        let mut conn = HttpConn::connect(port).await?;
        let body = json!({"brand_id": brand().as_str(), "name": "Bench brand"}).to_string();
        let created = conn.send("POST", "/api/v1/brands", &platform.auth_headers(), Some(&body)).await?;
        anyhow::ensure!(created.status == 201, "creating the brand: {} {}", created.status, created.text());
        platform.wait_visible(created.stream_sequence()?).await?;
        Ok(platform)
    }

    fn auth_headers(&self) -> Vec<(&'static str, String)> {
        vec![("Cookie", self.cookie.clone()), ("x-csrf-token", self.csrf.clone())]
    }

    async fn wait_visible(&self, sequence: u64) -> anyhow::Result<()> {
        gps_projections::wait_for_sequence(&self.db.pool, None, sequence, Duration::from_secs(120)).await?;
        Ok(())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_projections.take() {
            let _ = stop.send(());
        }
        for task in [self.served.take(), self.projector.take()].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

// ---------------------------------------------------------------- HTTP client

/// One keep-alive HTTP/1.1 connection to 127.0.0.1.
struct HttpConn {
    stream: BufReader<TcpStream>,
}

/// A response as received.
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

impl HttpResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `stream_sequence` of an `Accepted` body.
    fn stream_sequence(&self) -> anyhow::Result<u64> {
        let value: serde_json::Value = serde_json::from_slice(&self.body)?;
        value["stream_sequence"].as_u64().with_context(|| format!("no stream_sequence in {}", self.text()))
    }
}

/// How long one request may take before the benchmark gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpConn {
    async fn connect(port: u16) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConn { stream: BufReader::new(stream) })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, headers, body))
            .await
            .context("no response within 30 s")?
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            text.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ));
            text.push_str(body);
        } else {
            text.push_str("\r\n");
        }
        self.stream.get_mut().write_all(text.as_bytes()).await?;

        let mut line = String::new();
        self.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>()?);
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                if size == 0 {
                    line.clear();
                    self.read_line(&mut line).await?;
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.stream.read_exact(&mut body[start..]).await?;
                line.clear();
                self.read_line(&mut line).await?;
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.stream.read_exact(&mut body).await?;
        }
        Ok(HttpResponse { status, body })
    }

    async fn read_line(&mut self, line: &mut String) -> anyhow::Result<()> {
        if self.stream.read_line(line).await? == 0 {
            anyhow::bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Idle keep-alive connections, shared by open-loop requests.
struct HttpPool {
    port: u16,
    idle: Mutex<Vec<HttpConn>>,
}

impl HttpPool {
    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<&str>,
    ) -> anyhow::Result<HttpResponse> {
        let reused = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (mut conn, was_reused) = match reused {
            Some(conn) => (conn, true),
            None => (HttpConn::connect(self.port).await?, false),
        };
        let response = match conn.send(method, path, headers, body).await {
            Ok(response) => response,
            // The server may have closed an idle connection: one fresh try.
            Err(_) if was_reused => {
                conn = HttpConn::connect(self.port).await?;
                conn.send(method, path, headers, body).await?
            }
            Err(error) => return Err(error),
        };
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        Ok(response)
    }
}

// ---------------------------------------------------------------- W5

async fn w5(database_url: &str, rate: u32, seconds: u64) -> anyhow::Result<Value> {
    let platform = Platform::start(database_url).await?;
    let pool = Arc::new(HttpPool { port: platform.port, idle: Mutex::new(Vec::new()) });
    let headers = Arc::new(platform.auth_headers());
    let path = Arc::new(format!("/api/v1/brands/{}/products", brand().as_str()));

    // One watcher polls the catalog checkpoint (committed in the same
    // transaction as the rows) and publishes what it saw and when.
    let (seen_tx, seen) = tokio::sync::watch::channel((0u64, Instant::now()));
    let (stop_watch, mut watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn({
        let db = platform.db.pool.clone();
        async move {
            let mut conn = db.acquire().await?;
            loop {
                let value: i64 =
                    sqlx::query_scalar("SELECT coalesce(max(last_sequence), 0) FROM catalog.checkpoint")
                        .fetch_one(&mut *conn)
                        .await?;
                let now = Instant::now();
                let value = u64::try_from(value).unwrap_or(0);
                if value > seen_tx.borrow().0 {
                    seen_tx.send_replace((value, now));
                }
                tokio::select! {
                    _ = &mut watch_stopped => break,
                    () = tokio::time::sleep(Duration::from_micros(200)) => {}
                }
            }
            anyhow::Ok(())
        }
    });

    let total = u64::from(rate) * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
        let (pool, headers, path, mut seen) = (pool.clone(), headers.clone(), path.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("c-{n}");
            let body =
                json!({"product_id": id, "sku": format!("SKU-{id}"), "name": "Linen dress", "category": "dresses",
                       "attributes": {"colour": "black"}})
                .to_string();
            let sent = Instant::now();
            let response = pool.send("POST", &path, &headers, Some(&body)).await?;
            let answered = Instant::now();
            anyhow::ensure!(response.status == 201, "create_product: {} {}", response.status, response.text());
            let sequence = response.stream_sequence()?;
            let (_, visible_at) = *tokio::time::timeout(
                Duration::from_secs(60),
                seen.wait_for(|(reached, _)| *reached >= sequence),
            )
            .await
            .context("not visible within 60 s")??;
            anyhow::Ok((answered - sent, visible_at.saturating_duration_since(answered), answered))
        }));
    }
    let sending = started.elapsed();
    let (mut round_trips, mut visible, mut errors, mut last_answer) =
        (Vec::new(), Vec::new(), 0usize, started);
    let mut first_error = None;
    for task in tasks {
        match task.await.context("request task")? {
            Ok((round_trip, lag, answered)) => {
                round_trips.push(round_trip);
                visible.push(lag);
                last_answer = last_answer.max(answered);
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(error.to_string());
            }
        }
    }
    let _ = stop_watch.send(());
    watcher.await.context("watcher task")??;
    round_trips.sort();
    visible.sort();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog.products WHERE brand = $1")
        .bind(brand().as_str())
        .fetch_one(&platform.db.pool)
        .await?;
    let line = emit(json!({
            "workload": "W5",
            "what": "open-loop create_product through the gateway; time from the HTTP response until the catalog \
                     read model has applied the returned stream_sequence (checkpoint polled every ~0.2-1 ms; \
                     0 when already visible at the response)",
            "target_per_sec": rate,
            "seconds": seconds,
            "commands": total,
            "ok": visible.len(),
            "errors": errors,
            "first_error": first_error,
            "rows": rows,
            "sent_per_sec": round2(total as f64 / sending.as_secs_f64()),
            "achieved_per_sec": round2(visible.len() as f64 / (last_answer - started).as_secs_f64()),
            "response_p50_ms": round2(percentile_ms(&round_trips, 0.50)),
            "response_p99_ms": round2(percentile_ms(&round_trips, 0.99)),
            "visible_p50_ms": round2(percentile_ms(&visible, 0.50)),
            "visible_p99_ms": round2(percentile_ms(&visible, 0.99)),
            "visible_max_ms": round2(visible.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)),
    }));
    platform.stop().await;
    Ok(line)
}

// ---------------------------------------------------------------- W7

/// What one phase of concurrent reads did.
struct Phase {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn p99(&self) -> f64 {
        round2(percentile_ms(&self.latencies, 0.99))
    }

    fn p50(&self) -> f64 {
        round2(percentile_ms(&self.latencies, 0.50))
    }
}

/// Runs `concurrency` workers calling `call(worker, n)` until `seconds` pass.
async fn phase<F, Fut>(concurrency: usize, seconds: u64, call: F) -> anyhow::Result<Phase>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut n = 0;
            while Instant::now() < deadline {
                let begun = Instant::now();
                if !call(worker, n).await? {
                    errors += 1;
                }
                latencies.push(begun.elapsed());
                n += 1;
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (mut own, own_errors) = task.await.context("reader task")??;
        latencies.append(&mut own);
        errors += own_errors;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Phase { requests: latencies.len(), errors, elapsed, latencies })
}

/// Product `n` of `products`, spread over a worker's requests.
fn pick(worker: usize, n: usize, products: usize) -> usize {
    (worker * 7919 + n * 104_729) % products
}

/// Runs HTTP GETs on per-worker keep-alive connections.
async fn http_phase(
    platform: &Platform,
    concurrency: usize,
    seconds: u64,
    products: usize,
    path: fn(usize) -> String,
) -> anyhow::Result<Phase> {
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(Arc::new(tokio::sync::Mutex::new(HttpConn::connect(platform.port).await?)));
    }
    let conns = Arc::new(conns);
    let headers = Arc::new(vec![("Cookie", platform.cookie.clone())]);
    phase(concurrency, seconds, move |worker, n| {
        let (conns, headers) = (conns.clone(), headers.clone());
        async move {
            let mut conn = conns[worker].lock().await;
            let response = conn.send("GET", &path(pick(worker, n, products)), &headers, None).await?;
            Ok(response.status == 200)
        }
    })
    .await
}

async fn w7(database_url: &str, seconds: u64, concurrency: usize, products: usize) -> anyhow::Result<Value> {
    let platform = Platform::start(database_url).await?;
    let last = seed_products(&platform.state.log, products, 1).await?;
    platform.wait_visible(last).await?;
    // Read as a catalog in service is read: with the planner's statistics,
    // which autovacuum gathers within a minute of such a fill.
    sqlx::raw_sql("ANALYZE catalog.products, catalog.product_images").execute(&platform.db.pool).await?;

    let list = http_phase(&platform, concurrency, seconds, products, |_| {
        format!("/api/v1/brands/{}/products", brand().as_str())
    })
    .await?;
    let detail = http_phase(&platform, concurrency, seconds, products, |n| {
        format!("/api/v1/brands/{}/products/p-{n}", brand().as_str())
    })
    .await?;
    let pool = platform.db.pool.clone();
    let raw = phase(concurrency, seconds, move |worker, n| {
        let pool = pool.clone();
        async move {
            let row: Option<gps_projections::queries::ProductView> = sqlx::query_as(
                "SELECT brand, product_id, sku, name, category, attributes, archived, image_count, created_at,
                        updated_at, created_sequence, version, last_sequence, NULL::text AS cover_hash
                 FROM catalog.products WHERE brand = $1 AND product_id = $2",
            )
                .bind(brand().as_str())
                .bind(format!("p-{}", pick(worker, n, products)))
                .fetch_optional(&pool)
                .await?;
            Ok(row.is_some())
        }
    })
    .await?;
    let line = emit(json!({
            "workload": "W7",
            "what": "HTTP GET of the product list (first page, 50 items) and of one product's detail under \
                     concurrent keep-alive clients, vs the plain primary-key query through the same pool \
                     (ratio_to_raw = detail requests/s ÷ raw queries/s); the seeded catalog is analysed first",
            "products": products,
            "concurrency": concurrency,
            "seconds_per_phase": seconds,
            "pool_connections": 16,
            "list_requests_per_sec": round2(list.rate()),
            "list_p50_ms": list.p50(),
            "list_p99_ms": list.p99(),
            "list_errors": list.errors,
            "detail_requests_per_sec": round2(detail.rate()),
            "detail_p50_ms": detail.p50(),
            "detail_p99_ms": detail.p99(),
            "detail_errors": detail.errors,
            "raw_queries_per_sec": round2(raw.rate()),
            "raw_p50_ms": raw.p50(),
            "raw_p99_ms": raw.p99(),
            "raw_errors": raw.errors,
            "list_ratio_to_raw": round2(list.rate() / raw.rate()),
            "ratio_to_raw": round2(detail.rate() / raw.rate()),
    }));
    platform.stop().await;
    Ok(line)
}
