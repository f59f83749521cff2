//! `gps up` as a user runs it: the real binary, its embedded nats-server or
//! one named by `NATS_URL`, and `GET /healthz`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::harness::{TestNats, free_port, old_nats_binary};

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

/// A log file in `data_dir` for a `gps up` that logs a lot (every API
/// request is a line): a pipe nobody reads fills up after 64 KiB and then
/// blocks the server's logging, and with it the server.
pub(crate) fn log_file(data_dir: &std::path::Path) -> Stdio {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("gps-up.log"))
        .expect("log file");
    Stdio::from(file)
}

/// A `gps up` of a test's own, as a new user starts it: a fresh database,
/// its own NATS port, logging to a file, healthy, with its demo brand.
pub(crate) struct DemoInstallation {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    _db: crate::harness::TestDb,
}

impl DemoInstallation {
    pub(crate) async fn start() -> DemoInstallation {
        let data_dir = temp_dir();
        let db = crate::harness::TestDb::create().await;
        let port = free_port();
        let mut child = gps(&data_dir, port)
            .env("DATABASE_URL", db.url())
            .env("GPS_NATS_PORT", free_port().to_string())
            .stdout(log_file(&data_dir))
            .stderr(log_file(&data_dir))
            .spawn()
            .expect("spawn gps up");
        wait_healthy(&mut child, port).await;
        DemoInstallation { child, port, data_dir, _db: db }
    }

    /// A line of `demo-credentials.txt` (`email`, `password`).
    pub(crate) fn credential(&self, name: &str) -> String {
        let credentials =
            std::fs::read_to_string(self.data_dir.join("demo-credentials.txt")).expect("demo credentials");
        credentials
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in demo-credentials.txt"))
            .to_owned()
    }

    /// Stops it with SIGTERM (it must exit cleanly) and removes its data.
    pub(crate) async fn stop(mut self) {
        assert!(terminate(&mut self.child).await.success());
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            let mut stderr = "(its log is gps-up.log in its data folder)".to_owned();
            if let Some(mut pipe) = child.stderr.take() {
                stderr.clear();
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            panic!("gps up exited early with {status}: {stderr}");
        }
        if let Some((200, body)) = http_get(port, "/healthz").await {
            return serde_json::from_str(&body).expect("health JSON");
        }
        assert!(tokio::time::Instant::now() < deadline, "gps up did not become healthy within 120 s");
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
    let nats_port = free_port();
    let mut child = gps(&data_dir, http_port)
        .env("DATABASE_URL", db.url())
        .env("GPS_NATS_PORT", nats_port.to_string())
        .spawn()
        .expect("spawn gps");
    let health = wait_healthy(&mut child, http_port).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["nats"], "connected");
    assert_eq!(health["stream"], "GPS_EVENTS");
    assert!(data_dir.join("nats").is_dir(), "the embedded server keeps its store in the data directory");
    assert_eq!(http_get(http_port, "/nope").await.map(|(status, _)| status), Some(404));
    let nats_password = embedded_nats_is_private(&data_dir, nats_port).await;

    // The demo owner's credentials work: sign in and create a product.
    let credentials_file = data_dir.join("demo-credentials.txt");
    let credentials = std::fs::read_to_string(&credentials_file).expect("demo credentials written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials_file).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the operator may read the demo password");
    }
    let field = |name: &str| {
        credentials.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).expect(name).to_owned()
    };
    let (email, password) = (field("email"), field("password"));
    let signed_in = crate::http::request(
        http_port,
        "POST",
        "/api/v1/session",
        &[],
        Some(&serde_json::json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let csrf = signed_in.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let product = serde_json::json!({"sku": "DEMO-1", "name": "Demo dress", "category": "dresses"});
    let created = crate::http::request(
        http_port,
        "POST",
        "/api/v1/brands/demo/products",
        &[("Cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        Some(&product),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // Adding someone new mails them, into the data folder's outbox, a link
    // that is written nowhere else.
    let added = crate::http::request(
        http_port,
        "POST",
        "/api/v1/brands/demo/members",
        &[("Cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
        Some(&serde_json::json!({"email": "new.comer@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let mails: Vec<std::path::PathBuf> = std::fs::read_dir(data_dir.join("outbox"))
        .expect("the outbox folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&mails[0]).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the operator may read a mail");
    }
    let mail = std::fs::read_to_string(&mails[0]).expect("mail");
    let token: String = mail
        .split_once("/app/set-password?token=")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_hexdigit).collect())
        .expect("a link in the mail");
    assert_eq!(token.len(), 64, "{mail}");

    assert!(terminate(&mut child).await.success());
    let mut said = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut said).await;
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut said).await;
    }
    assert!(!said.contains(&nats_password), "the NATS password must never be printed");
    assert!(!said.contains(&token), "a mailed link must never be printed or logged");

    // A second start finds the accounts and seeds nothing new.
    let mut again = gps(&data_dir, http_port)
        .env("DATABASE_URL", db.url())
        .env("GPS_NATS_PORT", free_port().to_string())
        .spawn()
        .expect("spawn gps");
    wait_healthy(&mut again, http_port).await;
    assert!(terminate(&mut again).await.success());
    assert_eq!(std::fs::read_to_string(&credentials_file).expect("file"), credentials);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The embedded nats-server of a running `gps up` admits only the login
/// `gps up` generated into its data folder (a file only the operator may
/// read): anonymous clients and wrong passwords are refused, and another
/// role started on the same data folder (`gps log verify`) logs in with it.
/// Returns the password, which must never be printed.
async fn embedded_nats_is_private(data_dir: &std::path::Path, nats_port: u16) -> String {
    let url = format!("nats://127.0.0.1:{nats_port}");
    let anonymous = gps_nats::connect(&url, "anonymous").await.expect_err("anonymous clients are refused");
    assert!(anonymous.is_refused_login(), "{anonymous}");
    let login_file = data_dir.join("nats-credentials");
    let text = std::fs::read_to_string(&login_file).expect("the generated login");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| std::fs::metadata(path).expect("metadata").permissions().mode();
        assert_eq!(mode(&login_file) & 0o077, 0, "only the operator may read the NATS login");
        assert_eq!(mode(&data_dir.join("nats")) & 0o077, 0, "only the operator may enter the NATS store");
    }
    let field = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).expect(name).to_owned()
    };
    let (user, password) = (field("user"), field("password"));
    assert!(password.len() >= 32, "a long random password");
    let login = |password: &str| gps_nats::ConnectSettings {
        credentials: Some(gps_nats::Credentials {
            user: user.clone(),
            password: gps_nats::Password::new(password),
        }),
        ca_file: None,
    };
    let wrong = gps_nats::connect_as(&url, "guess", &login("pguess")).await.expect_err("a wrong password");
    assert!(wrong.is_refused_login(), "{wrong}");
    gps_nats::connect_as(&url, "owner", &login(&password)).await.expect("the generated login is admitted");
    assert!(
        !std::fs::read_to_string(data_dir.join("nats").join("nats-server.conf"))
            .expect("config")
            .contains(&password),
        "the server's configuration file holds no password"
    );

    // Another role on the same data folder uses the running server, with the login.
    let verify = Command::new(env!("CARGO_BIN_EXE_gps"))
        .args(["log", "verify"])
        .env("GPS_DATA_DIR", data_dir)
        .env("GPS_NATS_PORT", nats_port.to_string())
        .env_remove("NATS_URL")
        .env_remove("GPS_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run gps log verify");
    let said =
        format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success(), "{said}");
    assert!(said.contains("every hash chain verifies") && !said.contains(&password), "{said}");
    password
}

#[tokio::test]
async fn gps_admin_creates_a_user_who_owns_a_new_brand_and_refuses_a_short_password() {
    let nats = TestNats::start().await;
    let db = crate::harness::TestDb::create().await;
    let admin = |password: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gps"));
        command
            .args(["admin", "create-user", "--email", "Ana@Example.com", "--name", "Ana", "--brand", "acme"])
            .env("DATABASE_URL", db.url())
            .env("NATS_URL", nats.server.url())
            .env("GPS_ADMIN_PASSWORD", password)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    };
    let short = admin("short").output().await.expect("run");
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 12"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );

    let created = admin("a long enough password").output().await.expect("run");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    // The person is in the log; the hash of their password in the credentials database.
    let handler = gps_commands::CommandHandler::new(nats.event_log().await);
    let ana = gps_domain::ids::MemberId::parse("ana").expect("id");
    let person = handler
        .load::<gps_domain::person::Person>(&gps_gateway::accounts::address(&ana).expect("address"))
        .await
        .expect("load person");
    assert!(person.state.is_active());
    let credentials_url = gps_gateway::accounts::credentials_url_for(db.url());
    let credentials = sqlx::PgPool::connect(&credentials_url).await.expect("credentials database");
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM auth.passwords WHERE user_id = 'ana'")
        .fetch_one(&credentials)
        .await
        .expect("hash");
    assert!(gps_gateway::auth::verify_password("a long enough password", &hash));
    let brand = gps_domain::ids::BrandId::parse("acme").expect("brand");
    let address =
        gps_commands::CommandHandler::address::<gps_domain::brand::Brand>(&brand, "acme").expect("address");
    let state = handler.load::<gps_domain::brand::Brand>(&address).await.expect("load").state;
    assert_eq!(
        state.role_of(&gps_domain::ids::MemberId::parse("ana").expect("id")),
        Some(gps_domain::brand::Role::Owner)
    );

    let again = admin("a long enough password").output().await.expect("run");
    assert!(!again.status.success(), "the same account twice is refused");
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

#[tokio::test]
async fn the_gateway_and_the_projector_run_as_separate_processes() {
    let nats = TestNats::start().await;
    let db = crate::harness::TestDb::create().await;
    let data_dir = temp_dir();
    let http_port = free_port();
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_gps"));
    gateway
        .args(["gateway", "--port", &http_port.to_string()])
        .env("NATS_URL", nats.server.url())
        .env("DATABASE_URL", db.url())
        .env("GPS_DATA_DIR", &data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut gateway = gateway.spawn().expect("spawn gateway");
    wait_healthy(&mut gateway, http_port).await;
    assert!(!data_dir.join("demo-credentials.txt").exists(), "a gateway alone seeds no demo brand");

    let spawn_projector = || {
        let mut projector = Command::new(env!("CARGO_BIN_EXE_gps"));
        projector
            .arg("projector")
            .env("NATS_URL", nats.server.url())
            .env("DATABASE_URL", db.url())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        projector.spawn().expect("spawn projector")
    };
    // Who can sign in is a read model too (`accounts`), so the person is
    // created while a projector runs; it stops before the product is made.
    let mut projector = spawn_projector();
    let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
    let credentials_url = gps_gateway::accounts::credentials_url_for(db.url());
    let credentials = gps_gateway::accounts::connect_credentials(&credentials_url, None)
        .await
        .expect("credentials database");
    let commands = gps_commands::CommandHandler::new(nats.event_log().await);
    gps_gateway::accounts::create_person(
        &commands,
        &pool,
        &credentials,
        gps_gateway::accounts::NewPerson {
            user_id: &gps_domain::ids::MemberId::parse("ana").expect("id"),
            email: &gps_domain::brand::Email::parse("ana@example.com").expect("email"),
            display_name: &gps_domain::values::Name::parse("Ana").expect("name"),
            password: "a long enough password",
        },
        gps_domain::wire::Actor::System("test".into()),
        Some(gps_gateway::accounts::VISIBLE_WITHIN),
    )
    .await
    .expect("user");
    let signed_in = crate::http::request(
        http_port,
        "POST",
        "/api/v1/session",
        &[],
        Some(&serde_json::json!({"email": "ana@example.com", "password": "a long enough password"})),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let csrf = signed_in.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let auth = [("Cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let brand = serde_json::json!({"brand_id": "acme", "name": "Acme"});
    let refused = crate::http::request(http_port, "POST", "/api/v1/brands", &auth, Some(&brand)).await;
    assert_eq!(refused.status, 403, "only platform admins create brands: {}", refused.body);
    // The operator grants the right on the command line; the gateway sees it at once.
    let granted = Command::new(env!("CARGO_BIN_EXE_gps"))
        .args(["admin", "grant-platform-admin", "ana@example.com"])
        .env("DATABASE_URL", db.url())
        .env_remove("GPS_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run gps admin");
    let said = String::from_utf8_lossy(&granted.stdout);
    assert!(granted.status.success(), "{said}{}", String::from_utf8_lossy(&granted.stderr));
    assert!(said.contains("ana") && said.contains("platform admin"), "{said}");
    assert!(terminate(&mut projector).await.success());
    assert_eq!(
        crate::http::request(http_port, "POST", "/api/v1/brands", &auth, Some(&brand)).await.status,
        201
    );
    let product =
        serde_json::json!({"product_id": "p1", "sku": "P-1", "name": "Dress", "category": "dresses"});
    let created =
        crate::http::request(http_port, "POST", "/api/v1/brands/acme/products", &auth, Some(&product)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sequence = created.json()["stream_sequence"].as_u64().expect("sequence");

    // Without a projector the read model does not move.
    let path = format!("/api/v1/brands/acme/products/p1?min_sequence={sequence}&wait_ms=300");
    assert_eq!(crate::http::request(http_port, "GET", &path, &auth, None).await.status, 503);

    let mut projector = spawn_projector();
    let path = format!("/api/v1/brands/acme/products/p1?min_sequence={sequence}&wait_ms=20000");
    let read = crate::http::request(http_port, "GET", &path, &auth, None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["sku"], "P-1");
    assert!(terminate(&mut projector).await.success());
    assert!(terminate(&mut gateway).await.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Signs in with the demo credentials `gps up` wrote into `data_dir` and
/// answers the status of listing the demo brand's products.
async fn demo_owner_lists_products(data_dir: &std::path::Path, http_port: u16) -> u16 {
    let credentials =
        std::fs::read_to_string(data_dir.join("demo-credentials.txt")).expect("demo credentials");
    let field = |name: &str| {
        credentials.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).expect(name).to_owned()
    };
    let body = serde_json::json!({"email": field("email"), "password": field("password")});
    let signed_in = crate::http::request(http_port, "POST", "/api/v1/session", &[], Some(&body)).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let listed = crate::http::request(
        http_port,
        "GET",
        "/api/v1/brands/demo/products",
        &[("Cookie", cookie.as_str())],
        None,
    )
    .await;
    listed.status
}

#[tokio::test]
async fn a_new_data_folder_gets_databases_of_its_own_and_a_working_demo_again() {
    // As a new user does: `gps up` with no DATABASE_URL, stop it, delete the
    // data folder to start afresh, `gps up` again.
    let data_dir = temp_dir();
    let http_port = free_port();
    let start = || {
        gps(&data_dir, http_port)
            .env_remove("DATABASE_URL")
            .env_remove("GPS_COMPUTE_DATABASE_URL")
            .env("GPS_NATS_PORT", free_port().to_string())
            .stdout(log_file(&data_dir))
            .stderr(log_file(&data_dir))
            .spawn()
            .expect("spawn gps")
    };
    let database_of = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("read-database"))
            .expect("the data folder names its database")
            .trim()
            .to_owned()
    };

    let mut first = start();
    wait_healthy(&mut first, http_port).await;
    let first_database = database_of(&data_dir);
    let _first_db = crate::harness::TestDb::adopt(&first_database);
    assert!(first_database.starts_with("gps_") && first_database.ends_with("_read"), "{first_database}");
    assert_eq!(demo_owner_lists_products(&data_dir, http_port).await, 200);
    assert!(terminate(&mut first).await.success());

    std::fs::remove_dir_all(&data_dir).expect("delete the data folder");
    let mut second = start();
    wait_healthy(&mut second, http_port).await;
    let second_database = database_of(&data_dir);
    let _second_db = crate::harness::TestDb::adopt(&second_database);
    assert_ne!(second_database, first_database, "a new data folder, a new database");
    assert_eq!(
        demo_owner_lists_products(&data_dir, http_port).await,
        200,
        "the new installation seeded its demo brand and credentials again"
    );
    assert!(terminate(&mut second).await.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn an_installation_whose_log_was_replaced_refuses_to_start_until_its_derived_stores_are_reset() {
    let data_dir = temp_dir();
    let db = crate::harness::TestDb::create().await;
    let http_port = free_port();
    let start = |extra: &[&str]| {
        gps(&data_dir, http_port)
            .args(extra)
            .env("DATABASE_URL", db.url())
            .env("GPS_NATS_PORT", free_port().to_string())
            .stdout(log_file(&data_dir))
            .stderr(log_file(&data_dir))
            .spawn()
            .expect("spawn gps")
    };

    let mut first = start(&[]);
    wait_healthy(&mut first, http_port).await;
    assert_eq!(demo_owner_lists_products(&data_dir, http_port).await, 200);
    assert!(terminate(&mut first).await.success());

    // The event log is replaced by a new, empty one; the databases stay.
    std::fs::remove_dir_all(data_dir.join("nats")).expect("remove the log");
    let mut refused = start(&[]);
    let status = tokio::time::timeout(Duration::from_secs(120), refused.wait())
        .await
        .expect("gps up refuses at once instead of serving")
        .expect("wait");
    assert!(!status.success());
    let log = std::fs::read_to_string(data_dir.join("gps-up.log")).expect("log");
    assert!(log.contains("does not belong to this event log"), "{log}");
    assert!(log.contains("was built from stream GPS_EVENTS"), "names the identity the store recorded: {log}");
    assert!(
        log.contains("--reset-derived") && log.contains("gps projections rebuild"),
        "names the ways out: {log}"
    );

    // The way out for a development installation.
    let mut reset = start(&["--reset-derived"]);
    wait_healthy(&mut reset, http_port).await;
    assert_eq!(
        demo_owner_lists_products(&data_dir, http_port).await,
        200,
        "the demo brand and its credentials are made again for the new log"
    );
    wait_ready(http_port).await;
    assert!(terminate(&mut reset).await.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Waits until `/readyz` answers 200 (every role of the process consuming).
pub(crate) async fn wait_ready(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_get(port, "/readyz").await;
        if matches!(answer, Some((200, _))) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not ready within 60 s: {answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
