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

/// A port nothing listens on right now (the OS picks it).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub(crate) fn brand() -> BrandId {
    BrandId::parse("acme").expect("valid brand")
}

/// The Postgres server the machine runs (trust auth), overridable for other setups.
pub(crate) fn postgres_admin_url() -> String {
    std::env::var("GPS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on the local Postgres server, dropped when the value is dropped.
pub(crate) struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Creates `gps_test_<random>`.
    pub(crate) async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let name = format!("gps_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("cannot reach Postgres at {admin_url} (set GPS_TEST_POSTGRES_URL): {e}")
        });
        // The name is generated above from hex digits only, so it is safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("GPS_TEST_POSTGRES_URL must end with a database name"),
        };
        TestDb { name, url }
    }

    /// Takes over a database something else created (e.g. `gps up`'s own for
    /// its data folder), so it is dropped with its compute sibling afterwards.
    pub(crate) fn adopt(name: &str) -> Self {
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "database name {name:?}");
        let url = match postgres_admin_url().rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("GPS_TEST_POSTGRES_URL must end with a database name"),
        };
        TestDb { name: name.to_owned(), url }
    }

    /// The database's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async context guarantees, so a small runtime on its
        // own thread does the clean-up; WITH (FORCE) ends leftover connections.
        // A `gps up` or `gps agent` given this database made its compute and
        // credentials databases next to it (`<name>_compute`,
        // `<name>_credentials`); they go too.
        let name = self.name.clone();
        let admin_url = postgres_admin_url();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    // `NAME_read` names its compute database `NAME_compute` and
                    // its credentials database `NAME_credentials`.
                    let stem = name.strip_suffix("_read");
                    let stem_compute = stem.map(|stem| format!("{stem}_compute"));
                    let stem_credentials = stem.map(|stem| format!("{stem}_credentials"));
                    for database in [
                        Some(name.clone()),
                        Some(format!("{name}_compute")),
                        Some(format!("{name}_credentials")),
                        stem_compute,
                        stem_credentials,
                    ]
                    .into_iter()
                    .flatten()
                    {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn a_test_database_is_created_empty_and_dropped_afterwards() {
    use sqlx::Connection;
    let db = TestDb::create().await;
    let name = db.url().rsplit('/').next().expect("name").to_owned();
    {
        let mut connection = sqlx::PgConnection::connect(db.url()).await.expect("connect");
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&mut connection)
        .await
        .expect("count");
        assert_eq!(tables, 0);
    }
    drop(db);
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url()).await.expect("admin");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(left, 0, "the test database is dropped");
}
