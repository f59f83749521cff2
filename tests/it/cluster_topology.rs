//! The production topology on one machine, as `scripts/cluster.sh` starts it:
//! a 3-node NATS cluster from the shipped cluster config (GPS_EVENTS with 3
//! replicas), two gateways, two projectors (one active per projection, the
//! other waiting), two agents, on the machine's Postgres. The test drives the
//! script itself (`up`, `kill`, `down --purge`), so what an operator runs is
//! what is tested: a write through one gateway is read through the other, a
//! SIGKILLed NATS node (the stream leader) costs no acknowledged command, a
//! killed active projector is replaced by the waiting one, and `down` leaves
//! no process behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::gateway::{Session, product};
use crate::harness::{TestDb, postgres_admin_url};
use crate::http::{Response, request};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
/// Upper bound of every wait for the topology to reach a state.
const SETTLE: Duration = Duration::from_secs(60);

/// A topology started by `scripts/cluster.sh up` in a directory and databases
/// of its own; `down --purge` when dropped, so a failing test leaves no
/// process, folder or database behind.
struct Topology {
    dir: PathBuf,
    gateways: [u16; 2],
    monitors: [u16; 3],
    read_database_url: String,
    down: bool,
    /// Dropped after `down` (fields drop after `Drop::drop`): the read,
    /// compute and credentials databases of the stem.
    _databases: TestDb,
}

impl Topology {
    async fn up() -> Topology {
        let dir = crate::gps_up::temp_dir();
        let stem = format!("gps_test_{}", uuid::Uuid::new_v4().simple());
        let server = postgres_admin_url().rsplit_once('/').expect("a database URL").0.to_owned();
        let mut chosen = quiet_ports(11).into_iter();
        let mut ports = |n: usize| chosen.by_ref().take(n).collect::<Vec<u16>>();
        let (nats, routes, monitors, gateways) = (ports(3), ports(3), ports(3), ports(2));
        let words = |ports: &[u16]| ports.iter().map(u16::to_string).collect::<Vec<_>>().join(" ");
        let topology = Topology {
            dir: dir.clone(),
            gateways: [gateways[0], gateways[1]],
            monitors: [monitors[0], monitors[1], monitors[2]],
            read_database_url: format!("{server}/{stem}_read"),
            down: false,
            _databases: TestDb::adopt(&format!("{stem}_read")),
        };
        let nats_server = gps_nats::server::locate_binary().unwrap_or_else(|e| panic!("{e}"));
        let output = script(&dir)
            .arg("up")
            .env("GPS_NATS_SERVER", nats_server)
            .env("GPS_CLUSTER_POSTGRES", server)
            .env("GPS_CLUSTER_DATABASE", &stem)
            .env("GPS_CLUSTER_NATS_PORTS", words(&nats))
            .env("GPS_CLUSTER_ROUTE_PORTS", words(&routes))
            .env("GPS_CLUSTER_MONITOR_PORTS", words(&monitors))
            .env("GPS_CLUSTER_GATEWAY_PORTS", words(&gateways))
            .output()
            .await
            .expect("run cluster.sh up");
        assert!(
            output.status.success(),
            "cluster.sh up failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        topology
    }

    /// `scripts/cluster.sh ACTION NAME`, e.g. `kill nats-2`.
    async fn run(&self, action: &str, name: &str) {
        let output = script(&self.dir).args([action, name]).output().await.expect("run cluster.sh");
        assert!(
            output.status.success(),
            "cluster.sh {action} {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn down(&mut self) {
        let output = script(&self.dir).args(["down", "--purge"]).output().await.expect("run cluster.sh down");
        self.down = true;
        assert!(output.status.success(), "cluster.sh down: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// The owner account `up` made (owner of brand `demo`), signed in at `port`.
    async fn sign_in(&self, port: u16) -> Session {
        let credentials =
            std::fs::read_to_string(self.dir.join("owner-credentials.txt")).expect("credentials");
        let field = |name: &str| {
            credentials
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .expect(name)
                .to_owned()
        };
        let body = json!({"email": field("email"), "password": field("password")});
        let signed_in = request(port, "POST", "/api/v1/session", &[], Some(&body)).await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        let cookie =
            signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
        let csrf = signed_in.json()["csrf_token"].as_str().expect("csrf").to_owned();
        Session { cookie, csrf }
    }

    /// GPS_EVENTS as a live node's monitoring endpoint reports it.
    async fn stream(&self) -> serde_json::Value {
        for port in self.monitors {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                continue; // the killed node
            }
            let answer = request(port, "GET", "/jsz?accounts=true&streams=true&config=true", &[], None).await;
            if answer.status != 200 {
                continue;
            }
            let jsz = answer.json();
            let streams = jsz["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default());
            if let Some(stream) = streams.into_iter().find(|s| s["name"] == "GPS_EVENTS") {
                return stream;
            }
        }
        panic!("no node reports GPS_EVENTS");
    }

    /// The `gps-<process>` (Postgres application name) whose runner holds
    /// `projection`'s lock, i.e. is the active one.
    async fn active_projector(&self, projection: &str) -> Option<String> {
        let pool = sqlx::PgPool::connect(&self.read_database_url).await.expect("read database");
        // The key is `gps-projection-runner:<name>` (gps_projections'
        // runner_lock_key), as a bigint split into classid and objid.
        let holder = sqlx::query_scalar(
            "WITH wanted AS (SELECT hashtextextended('gps-projection-runner:' || $1, 0) AS key)
             SELECT a.application_name FROM wanted w
             JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.classid::bigint = ((w.key >> 32) & 4294967295) AND l.objid::bigint = (w.key & 4294967295)
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             JOIN pg_stat_activity a ON a.pid = l.pid",
        )
        .bind(projection)
        .fetch_optional(&pool)
        .await
        .expect("lock holder");
        pool.close().await;
        holder
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.down {
            let _ = std::process::Command::new(SCRIPT)
                .args(["down", "--purge"])
                .env("GPS_CLUSTER_DIR", &self.dir)
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// `count` distinct ports, free now, below the kernel's ephemeral range.
///
/// The script binds them seconds later, one process after the other; a port
/// from the ephemeral range (what `free_port` returns) may meanwhile become
/// the local port of any outgoing connection of the other tests' processes,
/// and the node or gateway meant for it would not start. Ports below the
/// range are only taken by explicit binds.
fn quiet_ports(count: usize) -> Vec<u16> {
    let floor = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = u128::from(floor.saturating_sub(10_000)).max(1);
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = 10_000 + u16::try_from(uuid::Uuid::new_v4().as_u128() % span).expect("below the floor");
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

fn script(dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(SCRIPT);
    command
        .env("GPS_CLUSTER_DIR", dir)
        .env("GPS_BIN", env!("CARGO_BIN_EXE_gps"))
        .env_remove("GPS_S3_ENDPOINT")
        .env_remove("GPS_PUBLIC_BASE_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Sends a command until it is acknowledged, with the same Idempotency-Key
/// (as a client does), through answers a cluster gives while it elects a new
/// leader (5xx). The answer is the acknowledgement: 201, or 200 when a lost
/// answer's command was already in the log.
async fn acknowledged(
    port: u16,
    session: &Session,
    path: &str,
    body: &serde_json::Value,
    key: &str,
) -> Response {
    let deadline = tokio::time::Instant::now() + SETTLE;
    let headers = [session.headers(), vec![("Idempotency-Key", key)]].concat();
    loop {
        let answer = request(port, "POST", path, &headers, Some(body)).await;
        if matches!(answer.status, 200 | 201) {
            return answer;
        }
        assert!(answer.status >= 500, "{key} refused: {} {}", answer.status, answer.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} not acknowledged within {SETTLE:?}: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Retries `attempt` until it answers `Some`, for at most [`SETTLE`].
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {SETTLE:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pids whose environment names the topology in `dir` (every process
/// the script starts carries `GPS_CLUSTER_PROCESS=<dir>:<name>`).
fn processes_of(dir: &Path) -> Vec<String> {
    let marker = format!("GPS_CLUSTER_PROCESS={}:", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|entry| {
            std::fs::read(entry.path().join("environ"))
                .is_ok_and(|environ| environ.split(|b| *b == 0).any(|var| var.starts_with(marker.as_bytes())))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn the_cluster_topology_survives_a_killed_nats_node_and_a_killed_active_projector() {
    let started = std::time::Instant::now();
    let mut topology = Topology::up().await;
    eprintln!("cluster.sh up: {:?}", started.elapsed());
    let [a, b] = topology.gateways;
    for port in [a, b] {
        crate::gps_up::wait_ready(port).await;
    }
    let stream = topology.stream().await;
    assert_eq!(stream["config"]["num_replicas"], 3, "{stream}");

    // One session (in the shared credentials database) serves both gateways.
    let owner = topology.sign_in(a).await;
    let brand = json!({"brand_id": "acme", "name": "Acme"});
    acknowledged(a, &owner, "/api/v1/brands", &brand, "brand-acme").await;
    let products = "/api/v1/brands/acme/products";
    let first = acknowledged(a, &owner, products, &product("p0"), "p0").await;
    let sequence = first.json()["stream_sequence"].as_u64().expect("sequence");
    let path = format!("{products}/p0?min_sequence={sequence}&wait_ms=20000");
    let read = request(b, "GET", &path, &owner.headers(), None).await;
    assert_eq!(read.status, 200, "written through A, read through B: {}", read.body);
    assert_eq!(read.json()["sku"], "SKU-p0");

    // SIGKILL the node that leads the stream, the worst single loss: the
    // next commands wait for a new leader, then every one is acknowledged.
    let leader = topology.stream().await["cluster"]["leader"].as_str().expect("a stream leader").to_owned();
    let node = leader.strip_prefix("gps-").expect("servers are named gps-nats-N").to_owned();
    let killed_at = std::time::Instant::now();
    topology.run("kill", &node).await;
    let mut last = 0;
    for n in 1..=6 {
        let id = format!("p{n}");
        let port = if n % 2 == 0 { a } else { b };
        let acked = acknowledged(port, &owner, products, &product(&id), &id).await;
        last = last.max(acked.json()["stream_sequence"].as_u64().unwrap_or(0));
        if n == 1 {
            eprintln!("first command acknowledged {:?} after killing {leader}", killed_at.elapsed());
        }
    }
    let listed = request(
        a,
        "GET",
        &format!("{products}?limit=50&min_sequence={last}&wait_ms=20000"),
        &owner.headers(),
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mut ids: Vec<String> = listed.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["product_id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"], "every acknowledged product, once each");
    let stream = topology.stream().await;
    assert_ne!(stream["cluster"]["leader"].as_str(), Some(leader.as_str()), "a new leader: {stream}");

    // The active catalog runner is killed; the waiting one takes the lock and
    // the read model keeps advancing.
    let active = eventually("an active catalog runner", || topology.active_projector("catalog")).await;
    let process = active.strip_prefix("gps-").expect("application names are gps-<process>").to_owned();
    topology.run("kill", &process).await;
    let taken_over = eventually("the waiting projector takes over", || async {
        topology.active_projector("catalog").await.filter(|holder| *holder != active)
    })
    .await;
    assert!(taken_over.starts_with("gps-projector-"), "{taken_over}");
    let after = acknowledged(b, &owner, products, &product("p7"), "p7").await;
    let sequence = after.json()["stream_sequence"].as_u64().expect("sequence");
    let read = request(
        a,
        "GET",
        &format!("{products}/p7?min_sequence={sequence}&wait_ms=20000"),
        &owner.headers(),
        None,
    )
    .await;
    assert_eq!(read.status, 200, "projected by the projector that took over: {}", read.body);

    // `down` stops every process it started, and nothing of it is left.
    let dir = topology.dir.clone();
    assert!(!processes_of(&dir).is_empty(), "the topology's processes are found by their marker");
    topology.down().await;
    assert_eq!(processes_of(&dir), Vec::<String>::new(), "no process left after down");
    assert!(!dir.exists(), "down --purge removes the folder");
}
