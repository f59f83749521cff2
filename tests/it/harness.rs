//! Starting the real parts a test needs.

use std::path::PathBuf;

use gps_domain::ids::BrandId;
use gps_nats::server::{LocalServer, LocalServerOptions, locate_binary, tools_dir};
use gps_nats::{EventLog, StreamSettings};

/// A private nats-server with its own storage, removed when dropped.
pub(crate) struct TestNats {
    pub(crate) server: LocalServer,
    dir: PathBuf,
}

impl TestNats {
    /// Starts the pinned server.
    pub(crate) async fn start() -> Self {
        let binary = locate_binary().unwrap_or_else(|e| panic!("{e}"));
        Self::start_binary(binary).await
    }

    /// Starts a given server binary.
    pub(crate) async fn start_binary(binary: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!("gps-test-{}", uuid::Uuid::new_v4().simple()));
        let server = LocalServer::start(LocalServerOptions {
            binary,
            store_dir: dir.clone(),
            port: None,
            sync_always: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        TestNats { server, dir }
    }

    /// Connects and provisions the event log.
    pub(crate) async fn event_log(&self) -> EventLog {
        let client = gps_nats::connect(self.server.url(), "gps-test").await.expect("connect");
        let log = EventLog::new(client, StreamSettings::default());
        log.provision().await.expect("provision");
        log
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The 2.10 server installed by `scripts/install-tools.sh --old-nats`.
pub(crate) fn old_nats_binary() -> PathBuf {
    std::env::var_os("GPS_OLD_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("nats-2.10.26").join("bin").join("nats-server"))
}

pub(crate) fn brand() -> BrandId {
    BrandId::parse("acme").expect("valid brand")
}
