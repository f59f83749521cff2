//! `gps`, the one binary of GPS.
//!
//! - `gps up`: the whole platform in one process on embedded defaults (it
//!   starts the pinned nats-server unless `NATS_URL` names one).
//! - `gps log provision|verify`: operate the event log.
//! - `gps projector`: the projection runners alone; `gps projections
//!   status|rebuild [NAME]`: operate the read models.
//! - `gps agent [--status]`: a compute agent, a delivery worker and the
//!   process managers.
//! - `gps secrets set|remove BRAND NAME`: export destination secrets, sealed.
//! - `gps storage sweep`: deletes orphaned objects, aborts abandoned uploads.
//! - `gps admin create-user|set-password|grant-platform-admin|…`: accounts,
//!   brand membership, and who may create brands.
//! - `gps import FILE [--images ZIP] --brand B`: a catalog import through the
//!   gateway's HTTP API, with progress.
//! - `gps audit history|as-of|verify|export|verify-bundle`: for auditors.
//! - `gps bench append|load|rebuild|consistency|read|dispatch`: benchmarks (figures,
//!   not tests).
//!
//! The binary is thin: it reads settings and calls the crates' `run`
//! functions. It must not hold business rules (those live in `gps-domain`).

mod admin;
mod agent;
mod audit;
mod bench;
mod bench_dispatch;
mod bench_read;
mod config;
mod delivery;
mod demo;
mod import;
mod metrics;
mod projector;
mod storage;
mod up;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "gps", version, about = "GPS, the Generative Production System")]
struct Cli {
    /// A TOML settings file (default: $GPS_CONFIG, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole platform in one process.
    Up {
        /// HTTP port (overrides GPS_PORT and the settings file).
        #[arg(long)]
        port: Option<u16>,
        /// Drop the read and compute databases first, so they are rebuilt from
        /// the event log (development installations whose log was replaced;
        /// accounts stored in the read database go with it).
        #[arg(long)]
        reset_derived: bool,
    },
    /// Runs only the HTTP gateway (scale out behind a load balancer; the
    /// projections run in `gps projector`).
    Gateway {
        /// HTTP port (overrides GPS_PORT and the settings file).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Operates the event log.
    Log {
        #[command(subcommand)]
        action: LogAction,
    },
    /// Runs the projection runners (read models) until Ctrl-C or SIGTERM.
    Projector,
    /// Runs a compute agent (and the process managers) until Ctrl-C or SIGTERM;
    /// agents share one durable consumer, so run as many as the work needs.
    Agent {
        /// Print the shared queue's depth and dead letters as JSON, then exit.
        #[arg(long)]
        status: bool,
    },
    /// Imports a catalog (CSV or JSON Lines, optionally with a ZIP of images)
    /// through the gateway's API, showing progress; exits 2 with the error
    /// report's path when rows failed.
    Import(import::ImportArgs),
    /// Operates the read models.
    Projections {
        #[command(subcommand)]
        action: projector::ProjectionsAction,
    },
    /// Operator tasks: user accounts and platform admins.
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
    /// Auditors: history, state as of an instant, verification, export bundles.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Destination secrets of exports (webhook signing secrets, S3
    /// credentials), stored sealed; never in events or logs.
    Secrets {
        #[command(subcommand)]
        action: delivery::SecretsAction,
    },
    /// Operates the object store: `sweep` deletes orphans and aborts abandoned uploads.
    Storage {
        #[command(subcommand)]
        action: storage::StorageAction,
    },
    /// Measures the write and read paths; prints one JSON object per line.
    Bench {
        #[command(subcommand)]
        workload: bench::Workload,
    },
}

#[derive(Debug, Subcommand)]
enum LogAction {
    /// Creates the GPS_EVENTS stream if missing and reports drift.
    Provision {
        /// Also update the settings JetStream allows to change.
        #[arg(long)]
        repair: bool,
    },
    /// Walks the whole log and verifies every aggregate's hash chain.
    Verify {
        /// Only this subject filter, e.g. gps.evt.acme.>
        #[arg(long)]
        filter: Option<String>,
    },
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up { port, reset_derived } => {
                if let Some(port) = port {
                    settings.http_addr.set_port(port);
                }
                up::run(settings, reset_derived).await
            }
            Command::Gateway { port } => {
                if let Some(port) = port {
                    settings.http_addr.set_port(port);
                }
                up::serve(settings, up::Role::Gateway).await
            }
            Command::Log { action } => log_command(settings, action).await,
            Command::Projector => projector::run(settings).await,
            Command::Agent { status: false } => agent::run(settings).await,
            Command::Agent { status: true } => agent::status(settings).await,
            Command::Projections { action } => projector::command(settings, action).await,
            Command::Admin { action } => admin::run(settings, action).await,
            Command::Bench { workload } => {
                // Ctrl-C drops the running workload, and with it its throwaway
                // nats-server, storage folder and gps_bench_* database.
                let interrupted = tokio::select! {
                    result = bench::run(workload, &settings.database_url) => Some(result),
                    _ = tokio::signal::ctrl_c() => None,
                };
                // Here the workload future has been dropped and has cleaned up.
                match interrupted {
                    Some(result) => result,
                    None => {
                        eprintln!("interrupted; the benchmark's server, files and database were removed");
                        std::process::exit(130);
                    }
                }
            }
            Command::Audit { action } => audit::run(settings, action).await,
            Command::Import(args) => match import::run(args, format!("http://{}", settings.http_addr)).await?
            {
                import::Finished::Clean => Ok(()),
                import::Finished::RowsFailed(failed, report) => {
                    eprintln!("{failed} rows failed; the error report is {}", report.display());
                    std::process::exit(2);
                }
            },
            Command::Secrets { action } => delivery::secrets(settings, action).await,
            Command::Storage { action } => storage::run(settings, action).await,
        }
    })
}

async fn log_command(settings: Settings, action: LogAction) -> anyhow::Result<()> {
    let (log, _server) = up::connect_event_log(&settings).await?;
    match action {
        LogAction::Provision { repair } => {
            let report = if repair {
                gps_nats::stream::repair(log.jetstream(), log.settings()).await?
            } else {
                log.provision().await?
            };
            println!("stream {}: {}", log.settings().name, if report.created { "created" } else { "exists" });
            for drift in &report.drift {
                println!("drift: {} is {} (expected {})", drift.field, drift.actual, drift.expected);
            }
            if report.drift.is_empty() {
                println!("configuration matches what GPS expects");
            }
            Ok(())
        }
        LogAction::Verify { filter } => {
            let report = log.verify_chains(filter).await?;
            println!("checked {} events of {} aggregates", report.events_checked, report.aggregates);
            match report.first_break {
                None => {
                    println!("every hash chain verifies");
                    Ok(())
                }
                Some(chain_break) => anyhow::bail!("hash chain broken at {chain_break}"),
            }
        }
    }
}
