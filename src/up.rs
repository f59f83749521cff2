//! `gps up`: NATS (embedded or external), the event log, the gateway.

use std::time::Duration;

use anyhow::Context;
use gps_nats::server::{LocalServer, LocalServerOptions, locate_binary};
use gps_nats::{EventLog, StreamSettings};

use crate::config::Settings;

/// Connects to the configured NATS, or starts the embedded one, and returns
/// the provisioned event log (and the embedded server, kept alive by the caller).
pub(crate) async fn connect_event_log(
    settings: &Settings,
) -> anyhow::Result<(EventLog, Option<LocalServer>)> {
    let embedded_url = format!("nats://127.0.0.1:{}", settings.nats.embedded_port);
    let (url, server) = match &settings.nats.url {
        Some(url) => (url.clone(), None),
        // The embedded server of a running `gps up` (e.g. for `gps log verify`
        // next to it): use it rather than fail to start a second one.
        None if gps_nats::connect(&embedded_url, "gps-probe").await.is_ok() => {
            tracing::info!(url = %embedded_url, "using the nats-server already running on the embedded port");
            (embedded_url, None)
        }
        None => {
            let binary = locate_binary()?;
            let store_dir = settings.data_dir.join("nats");
            let server = LocalServer::start(LocalServerOptions {
                binary,
                store_dir: store_dir.clone(),
                port: Some(settings.nats.embedded_port),
                sync_always: settings.nats.embedded_sync_always,
            })
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
            (server.url().to_owned(), Some(server))
        }
    };
    let credentials = settings.nats.credentials();
    let client = gps_nats::connect_with(&url, "gps", credentials.as_ref()).await?;
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

/// Runs the platform until Ctrl-C or SIGTERM.
pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let (log, mut server) = connect_event_log(&settings).await?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr).await.with_context(|| {
        format!("cannot listen on {}; use --port or GPS_PORT for another port", settings.http_addr)
    })?;
    let addr = listener.local_addr()?;
    tracing::info!("GPS is up: http://{addr}/healthz");
    println!("GPS is up: http://{addr}/healthz (Ctrl-C stops it)");
    gps_gateway::run(listener, gps_gateway::AppState { log }, shutdown_signal()).await?;
    if let Some(server) = server.as_mut() {
        server.stop(Duration::from_secs(5)).await;
    }
    tracing::info!("GPS stopped");
    Ok(())
}

async fn shutdown_signal() {
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
