//! `gps up`: NATS (embedded or external), the event log, the gateway.

use std::time::Duration;

use anyhow::Context;
use gps_nats::server::{LocalServer, LocalServerOptions, locate_binary};
use gps_nats::{EventLog, StreamSettings};

use crate::config::Settings;

/// The file in a data folder holding the login of its embedded nats-server
/// (mode 600, generated on first start).
pub(crate) const LOCAL_NATS_LOGIN_FILE: &str = "nats-credentials";

/// The user every role of a data folder logs in as on its embedded server.
const LOCAL_NATS_USER: &str = "gps";

/// Connects to the configured NATS, or starts the embedded one, and returns
/// the provisioned event log (and the embedded server, kept alive by the caller).
///
/// The embedded server admits only the login in `<data_dir>/nats-credentials`
/// (generated on first start, readable by its owner only), so another local
/// user can neither read nor write the log; every role started with the same
/// data folder (`gps up`, `gps log verify`, `gps agent` …) logs in with it.
/// `NATS_USER`/`NATS_PASSWORD` and `GPS_NATS_CA_FILE` are for a server named by
/// `NATS_URL`.
pub(crate) async fn connect_event_log(
    settings: &Settings,
) -> anyhow::Result<(EventLog, Option<LocalServer>)> {
    let embedded_url = format!("nats://127.0.0.1:{}", settings.nats.embedded_port);
    let (url, server, connect) = match &settings.nats.url {
        Some(url) => (url.clone(), None, settings.nats.connect_settings()),
        None => {
            if settings.nats.user.is_some() || settings.nats.ca_file.is_some() {
                tracing::warn!(
                    "NATS_USER and GPS_NATS_CA_FILE are for a server named by NATS_URL, which is not set; the \
                     embedded nats-server uses the login of this data folder"
                );
            }
            let login = local_nats_login(&settings.data_dir)?;
            let connect =
                gps_nats::ConnectSettings { credentials: Some(login.clone()), ..Default::default() };
            match gps_nats::connect_as(&embedded_url, "gps-probe", &connect).await {
                // The embedded server of a running `gps up` (e.g. for `gps log
                // verify` next to it): use it rather than fail to start a second one.
                Ok(_) => {
                    tracing::info!(url = %embedded_url, "using the nats-server already running on the embedded port");
                    (embedded_url, None, connect)
                }
                Err(error) if error.is_refused_login() => anyhow::bail!(
                    "a nats-server already listens on {embedded_url} but refuses the login of this data folder \
                     ({}): it belongs to another data folder's `gps up`. Use that folder (GPS_DATA_DIR), \
                     or another port (GPS_NATS_PORT)",
                    settings.data_dir.join(LOCAL_NATS_LOGIN_FILE).display()
                ),
                Err(_) => {
                    let server = start_embedded(settings, login).await?;
                    (server.url().to_owned(), Some(server), connect)
                }
            }
        }
    };
    let client = gps_nats::connect_as(&url, "gps", &connect).await?;
    let stream = StreamSettings {
        duplicate_window: settings.nats.duplicate_window,
        replicas: settings.nats.replicas,
        ..StreamSettings::default()
    };
    let log = EventLog::new(client, stream);
    let report = log.provision().await?;
    if report.created {
        tracing::info!(stream = %log.settings().name, "event stream created");
    }
    for drift in &report.drift {
        tracing::warn!(
            field = drift.field,
            expected = %drift.expected,
            actual = %drift.actual,
            "event stream differs from the expected configuration; `gps log provision --repair` fixes what can be changed"
        );
    }
    Ok((log, server))
}

/// Starts the pinned nats-server over `<data_dir>/nats` (a folder only its
/// owner may enter), admitting only `login`.
async fn start_embedded(settings: &Settings, login: gps_nats::Credentials) -> anyhow::Result<LocalServer> {
    let binary = locate_binary()?;
    let store_dir = settings.data_dir.join("nats");
    std::fs::create_dir_all(&store_dir).with_context(|| format!("creating {}", store_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", store_dir.display()))?;
    }
    let server = LocalServer::start_with_login(
        LocalServerOptions {
            binary,
            store_dir: store_dir.clone(),
            port: Some(settings.nats.embedded_port),
            sync_always: settings.nats.embedded_sync_always,
        },
        login,
    )
    .await
    .with_context(|| {
        format!(
            "starting the embedded nats-server on port {} (data in {}); set GPS_NATS_PORT for another \
                     port or NATS_URL to use a running server",
            settings.nats.embedded_port,
            store_dir.display()
        )
    })?;
    tracing::info!(url = server.url(), store = %store_dir.display(), "embedded nats-server started");
    Ok(server)
}

/// The login of a data folder's embedded nats-server: read from
/// `<data_dir>/nats-credentials`, or generated into it (mode 600, written
/// through a private staging file) on first use. Never printed.
pub(crate) fn local_nats_login(data_dir: &std::path::Path) -> anyhow::Result<gps_nats::Credentials> {
    let path = data_dir.join(LOCAL_NATS_LOGIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let field = |name: &str| {
                text.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).map(str::trim)
            };
            match (field("user"), field("password")) {
                (Some(user), Some(password)) if !user.is_empty() && password.len() >= 32 => {
                    Ok(gps_nats::Credentials {
                        user: user.to_owned(),
                        password: gps_nats::Password::new(password),
                    })
                }
                _ => anyhow::bail!(
                    "{} is not a NATS login (lines `user: …` and `password: …`); delete it and restart `gps up` \
                     to generate a new one",
                    path.display()
                ),
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
            let mut secret = [0u8; 24];
            getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no OS randomness: {error}"))?;
            // A letter first: the server reads the password as a configuration value.
            let password = format!("p{}", hex::encode(secret));
            gps_compute_agents::delivery::credentials::write_private(
                &path,
                format!("user: {LOCAL_NATS_USER}\npassword: {password}\n").as_bytes(),
            )
            .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the login of the embedded nats-server");
            Ok(gps_nats::Credentials {
                user: LOCAL_NATS_USER.to_owned(),
                password: gps_nats::Password::new(password),
            })
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Connects to the read database (created when missing) and to the
/// credentials database next to it ([`credentials_database_url`]; created
/// and migrated, taking over the `auth` and `privacy` schemas a read
/// database of an older installation still holds). Returns (read, credentials).
pub(crate) async fn connect_database(settings: &Settings) -> anyhow::Result<(sqlx::PgPool, sqlx::PgPool)> {
    let pool = gps_projections::connect(&settings.database_url)
        .await
        .context("connecting to the database; set DATABASE_URL")?;
    let url = credentials_database_url(settings);
    let credentials = gps_gateway::accounts::connect_credentials(&url, Some(&pool)).await.with_context(|| {
        format!(
            "preparing the credentials database {} (password hashes, sessions, API keys, the privacy vault); \
             set GPS_CREDENTIALS_DATABASE_URL",
            redacted_database(&url)
        )
    })?;
    Ok((pool, credentials))
}

/// The credentials database: `GPS_CREDENTIALS_DATABASE_URL`, else the one
/// named after the read database on its server (`gps_read` →
/// `gps_credentials`, `NAME_read` → `NAME_credentials`). It is not
/// rebuildable from the log; `docs/operations.md` says how to back it up.
pub(crate) fn credentials_database_url(settings: &Settings) -> String {
    std::env::var("GPS_CREDENTIALS_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| gps_gateway::accounts::credentials_url_for(&settings.database_url))
}

/// Connects object storage (the configured S3 endpoint, or the embedded one
/// over `<data_dir>/objects`) and prepares the media settings. The embedded
/// server, when started, must be kept alive as long as the gateway runs.
pub(crate) async fn connect_media(
    settings: &Settings,
) -> anyhow::Result<(gps_gateway::media::Media, Option<gps_storage::EmbeddedS3>)> {
    let (store, embedded) = match &settings.storage.endpoint {
        Some(endpoint) => {
            let storage = &settings.storage;
            let mut s3 = gps_storage::StorageSettings::new(
                endpoint.clone(),
                storage.bucket.clone(),
                storage.access_key_id.clone().unwrap_or_default(),
                storage.secret_access_key.clone().unwrap_or_else(|| gps_storage::SecretKey::new("")),
            );
            s3.region = storage.region.clone();
            s3.path_style = storage.path_style;
            let store = gps_storage::ObjectStore::connect(&s3)
                .await
                .with_context(|| format!("connecting to object storage at {endpoint}"))?;
            (store, None)
        }
        None => {
            let dir = settings.data_dir.join("objects");
            let (store, server) = gps_storage::ObjectStore::embedded(&dir)
                .await
                .with_context(|| format!("starting the embedded object store over {}", dir.display()))?;
            tracing::info!(address = %server.address(), dir = %dir.display(), "embedded object store");
            (store, Some(server))
        }
    };
    let key = match &settings.media.url_signing_key {
        Some(key) => gps_gateway::media::UrlSigningKey::new(key.expose().as_bytes().to_vec())
            .map_err(anyhow::Error::msg)?,
        None => local_signing_key(&settings.data_dir)?,
    };
    let mut media = gps_gateway::media::MediaSettings::new(key);
    media.max_upload_bytes = settings.media.max_upload_bytes;
    media.image_limits.max_pixels = settings.media.max_image_pixels;
    media.imports.max_body_bytes = settings.media.import_max_bytes;
    media.imports.max_rows = settings.media.import_max_rows;
    media.imports.max_images = settings.media.import_max_images;
    media.imports.archive.max_total_bytes = settings.media.import_zip_max_bytes;
    media.imports.fetch_allow = settings.media.import_fetch_allow.clone();
    media.public_base_url = settings.media.public_base_url.clone();
    media.url_lifetime = Duration::from_secs(settings.media.url_lifetime_secs);
    Ok((gps_gateway::media::Media::new(store, media), embedded))
}

/// The CDN URL signing key of a local installation: generated on first use
/// into `<data_dir>/cdn-signing-key` (mode 600) and never printed. Production
/// sets `GPS_CDN_SIGNING_KEY`, the same for every gateway.
pub(crate) fn local_signing_key(
    data_dir: &std::path::Path,
) -> anyhow::Result<gps_gateway::media::UrlSigningKey> {
    let path = data_dir.join("cdn-signing-key");
    if let Ok(existing) = std::fs::read(&path) {
        return gps_gateway::media::UrlSigningKey::new(existing).map_err(|reason| {
            anyhow::anyhow!("{}: {reason}; delete it to generate a new one", path.display())
        });
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no OS randomness: {error}"))?;
    let text = hex::encode(secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the CDN URL signing key");
    gps_gateway::media::UrlSigningKey::new(text.into_bytes()).map_err(anyhow::Error::msg)
}

/// Runs the platform until Ctrl-C or SIGTERM. `reset_derived` first drops
/// the read and compute databases (a development installation whose log was
/// replaced).
pub(crate) async fn run(mut settings: Settings, reset_derived: bool) -> anyhow::Result<()> {
    bind_database_to_data_dir(&mut settings)?;
    if reset_derived {
        reset_derived_databases(&settings).await?;
    }
    serve(settings, Role::Everything).await
}

/// The file in a data folder that names the read database of its
/// installation.
const READ_DATABASE_FILE: &str = "read-database";

/// `gps up` on its embedded nats-server, with the default database URL: the
/// read database (and so the compute database named after it) belongs to the
/// data folder, because the event log lives there. A new data folder gets new
/// databases, so deleting `.gps` to start afresh gives a working installation
/// instead of read models and accounts of a log that no longer exists. The
/// name is kept in `<data_dir>/read-database`; a data folder made before
/// per-folder databases keeps `gps_read`.
pub(crate) fn bind_database_to_data_dir(settings: &mut Settings) -> anyhow::Result<()> {
    if settings.nats.url.is_some() || settings.database_url != Settings::default().database_url {
        return Ok(());
    }
    let path = settings.data_dir.join(READ_DATABASE_FILE);
    let name = match std::fs::read_to_string(&path) {
        Ok(name) => name.trim().to_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let name = if settings.data_dir.join("nats").exists() {
                "gps_read".to_owned()
            } else {
                format!("gps_{}_read", &uuid::Uuid::new_v4().simple().to_string()[..8])
            };
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("creating {}", settings.data_dir.display()))?;
            std::fs::write(&path, format!("{name}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            name
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!(
            "{} names the database {name:?}; a database name is letters, digits and '_': fix or delete the file",
            path.display()
        );
    }
    settings.database_url = gps_compute_agents::store::sibling_url(&settings.database_url, &name);
    tracing::info!(database = %name, "read database of this data folder");
    Ok(())
}

/// Drops the read and compute databases `gps up` would use, so they are
/// rebuilt from the event log. The credentials database (password hashes,
/// sessions, API keys, the vault's keys) is kept: it cannot be rebuilt, and
/// passwords of persons a new log does not hold are released when needed.
async fn reset_derived_databases(settings: &Settings) -> anyhow::Result<()> {
    for url in [settings.database_url.clone(), crate::agent::compute_database_url(settings)] {
        let options: sqlx::postgres::PgConnectOptions = url.parse().context("parsing the database URL")?;
        let Some(name) = options.get_database().map(str::to_owned) else { continue };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            anyhow::bail!("database name {name:?} must be letters, digits and '_'");
        }
        let mut admin =
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options.clone().database("postgres"))
                .await
                .with_context(|| format!("connecting to the Postgres server of database {name}"))?;
        // The name was checked above (letters, digits, '_'), so it is safe to splice.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("dropping database {name}"))?;
        println!(
            "--reset-derived: dropped database {name} (rebuilt from the event log; the credentials database is kept)"
        );
    }
    Ok(())
}

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `gps up`: the gateway and the projection runners (and, without
    /// `NATS_URL`, the embedded nats-server).
    Everything,
    /// `gps gateway`: only the HTTP gateway, for scaling gateways out behind a
    /// load balancer; projections run in `gps projector` processes.
    Gateway,
}

/// Runs `role` until Ctrl-C or SIGTERM.
pub(crate) async fn serve(settings: Settings, role: Role) -> anyhow::Result<()> {
    let (log, mut server) = connect_event_log(&settings).await?;
    let (db, credentials) = connect_database(&settings).await?;
    let (media, _embedded_storage) = connect_media(&settings).await?;
    let commands = gps_commands::CommandHandler::new(log.clone());
    // Queries must find the read-model tables from the first request on.
    gps_projections::prepare_all(&db).await.context("preparing the read-model schemas")?;
    if role == Role::Everything {
        refuse_stores_of_another_log(&settings, &log, &db).await?;
    }
    // Accounts from before persons were events move into the log once.
    let moved = gps_gateway::accounts::migrate_legacy_users(&commands, &credentials)
        .await
        .context("moving accounts of auth.users into the event log")?;
    if moved > 0 {
        println!("moved {moved} accounts from auth.users into the event log (person.registered)");
    }
    // The projection runners start before anything is seeded: who can sign
    // in is a read model too, and the demo owner must be able to at once.
    let (stop_projections, projections_stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = (role == Role::Everything).then(|| {
        tokio::spawn(gps_projections::run_all(
            db.clone(),
            log.clone(),
            gps_projections::RunnerOptions::default(),
            async move {
                let _ = projections_stopped.await;
            },
        ))
    });
    let demo = if settings.seed_demo && role == Role::Everything {
        crate::admin::seed_demo(&commands, &db, &credentials, &settings.data_dir)
            .await
            .context("seeding the demo brand")?
    } else {
        None
    };
    // A freshly created demo brand gets the demo catalog (drawn, labelled demo).
    if demo.is_some() {
        let brand = gps_domain::ids::BrandId::parse("demo")?;
        let catalog =
            crate::demo::seed_catalog(&commands, &media, &brand).await.context("seeding the demo catalog")?;
        println!(
            "demo catalog: {} products, {} subjects, {} styles (drawn images, labelled demo)",
            catalog.products, catalog.subjects, catalog.styles
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.http_addr).await.with_context(|| {
        format!("cannot listen on {}; use --port or GPS_PORT for another port", settings.http_addr)
    })?;
    let addr = listener.local_addr()?;
    tracing::info!("GPS is up: http://{addr}/healthz");
    println!("GPS is up: http://{addr}/healthz (Ctrl-C stops it)");
    match demo {
        Some((email, password)) => println!(
            "demo brand `demo` created; sign in with POST http://{addr}/api/v1/session \
             {{\"email\": \"{email}\", \"password\": \"{password}\"}} \
             (also in {})",
            settings.data_dir.join("demo-credentials.txt").display()
        ),
        None if settings.seed_demo => println!(
            "accounts exist; the demo credentials, if this installation made them, are in {}",
            settings.data_dir.join("demo-credentials.txt").display()
        ),
        None => {}
    }
    let mut state = gps_gateway::AppState::new(log, commands, db, settings.cookie_secure, media)
        .await
        .context("preparing the gateway")?
        .with_credentials(credentials);
    state.trusted_proxies = settings.trusted_proxies.clone();
    state.metrics_token = settings.metrics_token.as_ref().map(|token| token.expose().to_owned());
    state.brand_creation = settings.brand_creation;
    state.mailer = gps_gateway::mail::Mailer::outbox(settings.mail_outbox_dir(), settings.mail.from.clone());
    state.public_url = settings.public_url.clone();
    state.password_link_lifetime = Duration::from_secs(settings.mail.password_link_hours * 3600);
    if !settings.cookie_secure && !settings.http_addr.ip().is_loopback() {
        tracing::warn!(
            addr = %settings.http_addr,
            "session cookies are not marked Secure (cookie_secure is off) while the gateway listens beyond \
             this machine: serve it over HTTPS and set GPS_COOKIE_SECURE=true"
        );
    }
    // Products created before SKU claims existed are claimed once.
    match state.sku_claims.backfill(&state.log).await {
        Ok(0) => {}
        Ok(claimed) => tracing::info!(claimed, "claimed the SKUs of existing products"),
        Err(error) => {
            tracing::warn!(%error, "existing products' SKUs not claimed yet; the next start tries again")
        }
    }
    register_projection_readiness(&state, settings.readiness_max_lag);
    // The compute agent, the delivery worker and the process managers (launch
    // → generations, revision → generation) run inside `gps up`; `gps agent`
    // runs more of them.
    let (stop_agent, agent_stopped) = tokio::sync::oneshot::channel::<()>();
    let compute = if role == Role::Everything {
        let (store, embedded_storage) = crate::agent::storage(&settings).await?;
        let delivery = crate::delivery::worker(&settings, state.commands.clone(), store.clone()).await?;
        let (engine, agent_settings) = crate::agent::engine(&settings, std::sync::Arc::new(store)).await?;
        // Refused before anything is served, like the read database above.
        gps_compute_agents::agent::check_log_binding(&state.log, &engine.store, "the compute database")
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let health = crate::agent::ComputeHealth::new();
        register_compute_readiness(&state, health.readiness());
        let agent = tokio::spawn(crate::agent::run_on_with(
            state.log.clone(),
            engine,
            agent_settings,
            delivery,
            health,
            async move {
                let _ = agent_stopped.await;
            },
        ));
        Some((agent, embedded_storage))
    } else {
        None
    };
    // Catalog imports left without a runner (a stopped gateway's, or a start
    // whose answer was lost) go on from their last recorded batch: now, and
    // whenever a later look finds one.
    let resume_every = state.media.settings().imports.resume_unfinished_every;
    let import_resumer =
        tokio::spawn(gps_gateway::imports::keep_resuming_unfinished(state.clone(), resume_every));
    gps_gateway::run(listener, state, shutdown_signal()).await?;
    import_resumer.abort();
    let _ = stop_projections.send(());
    let _ = stop_agent.send(());
    if let Some(projector) = projector {
        projector.await.context("the projection runners panicked")??;
    }
    if let Some((agent, _embedded_storage)) = compute {
        agent.await.context("the compute agent panicked")??;
    }
    if let Some(server) = server.as_mut() {
        server.stop(Duration::from_secs(5)).await;
    }
    tracing::info!("GPS stopped");
    Ok(())
}

/// `gps up` runs every role, so a store of another log stops it before it
/// serves or seeds anything (separate roles refuse one by one and report it
/// in `/readyz`).
async fn refuse_stores_of_another_log(
    settings: &Settings,
    log: &EventLog,
    db: &sqlx::PgPool,
) -> anyhow::Result<()> {
    let problems = gps_projections::binding_problems(db, log).await;
    if !problems.is_empty() {
        anyhow::bail!(
            "the read database {} does not belong to this event log:\n  {}",
            redacted_database(&settings.database_url),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// The database name of a URL, for messages (never its credentials).
fn redacted_database(url: &str) -> String {
    let without_query = url.split_once('?').map_or(url, |(base, _)| base);
    without_query.rsplit_once('/').map_or_else(|| "(unnamed)".to_owned(), |(_, name)| name.to_owned())
}

/// `/readyz` reports read models that refuse to run (another log, a
/// checkpoint beyond its end) or lag the log by more than the bound, and an
/// unreachable read database.
fn register_projection_readiness(state: &gps_gateway::AppState, max_lag: u64) {
    let (db, log) = (state.db.clone(), state.log.clone());
    state.readiness.register(
        "projections",
        std::sync::Arc::new(move || {
            let (db, log) = (db.clone(), log.clone());
            Box::pin(async move { gps_projections::readiness_problems(&db, &log, max_lag).await })
        }),
    );
}

/// `/readyz` reports a compute role whose consume loop is not running (its
/// supervisor restarts it with backoff).
fn register_compute_readiness(
    state: &gps_gateway::AppState,
    readiness: gps_compute_agents::supervise::Readiness,
) {
    state.readiness.register(
        "compute",
        std::sync::Arc::new(move || {
            let problems = readiness
                .statuses()
                .into_iter()
                .filter(|status| !status.ready)
                .map(|status| match status.last_error {
                    Some(error) => format!(
                        "{} is not consuming (restarted {} times; last error: {error})",
                        status.role, status.restarts
                    ),
                    None => format!("{} is not consuming yet", status.role),
                })
                .collect();
            Box::pin(async move { problems })
        }),
    );
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
