//! `gps up` as a user runs it: the real binary, its embedded nats-server or
//! one named by `NATS_URL`, and `GET /healthz`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::harness::{TestNats, old_nats_binary};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub(crate) fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("gps-up-{}", uuid::Uuid::new_v4().simple()))
}

pub(crate) fn gps(data_dir: &PathBuf, http_port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gps"));
    command
        .arg("up")
        .env("GPS_DATA_DIR", data_dir)
        .env("GPS_PORT", http_port.to_string())
        .env_remove("NATS_URL")
        .env_remove("GPS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// `GET path` over plain HTTP/1.1; the status code and body.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

pub(crate) async fn wait_healthy(child: &mut Child, port: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            panic!("gps up exited early with {status}: {stderr}");
        }
        if let Some((200, body)) = http_get(port, "/healthz").await {
            return serde_json::from_str(&body).expect("health JSON");
        }
        assert!(tokio::time::Instant::now() < deadline, "gps up did not become healthy within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await.expect("kill");
    tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("gps up stops on SIGTERM")
        .expect("wait")
}

#[tokio::test]
async fn gps_up_starts_its_own_nats_provisions_the_stream_and_serves_health() {
    let data_dir = temp_dir();
    let db = crate::harness::TestDb::create().await;
    let http_port = free_port();
    let mut child = gps(&data_dir, http_port)
        .env("DATABASE_URL", db.url())
        .env("GPS_NATS_PORT", free_port().to_string())
        .spawn()
        .expect("spawn gps");
    let health = wait_healthy(&mut child, http_port).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nats"], "connected");
    assert_eq!(health["stream"], "GPS_EVENTS");
    assert!(data_dir.join("nats").is_dir(), "the embedded server keeps its store in the data directory");
    assert_eq!(http_get(http_port, "/nope").await.map(|(status, _)| status), Some(404));
    assert!(terminate(&mut child).await.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn gps_up_uses_the_server_named_by_nats_url() {
    let nats = TestNats::start().await;
    let data_dir = temp_dir();
    let db = crate::harness::TestDb::create().await;
    let http_port = free_port();
    let mut child = gps(&data_dir, http_port)
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", nats.server.url())
        .spawn()
        .expect("spawn gps");
    let health = wait_healthy(&mut child, http_port).await;
    assert_eq!(health["status"], "ok");
    assert!(!data_dir.join("nats").exists(), "no embedded server when NATS_URL is set");
    // It provisioned the stream on that server.
    let client = gps_nats::connect(nats.server.url(), "check").await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    assert!(jetstream.get_stream("GPS_EVENTS").await.is_ok());
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn gps_up_refuses_a_nats_server_older_than_2_12_and_says_why() {
    let old = TestNats::start_binary(old_nats_binary()).await;
    let data_dir = temp_dir();
    let db = crate::harness::TestDb::create().await;
    let child = gps(&data_dir, free_port())
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", old.server.url())
        .spawn()
        .expect("spawn gps");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("gps up exits")
        .expect("output");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2.10.26") && stderr.contains("2.12.0 or newer"), "{stderr}");
}
