//! `gps projector` (every projection runner until Ctrl-C or SIGTERM) and
//! `gps projections status|rebuild|retry-dead-letters`: thin wrappers over
//! `gps-projections`.

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectionsAction {
    /// Shows each projection's checkpoint, the stream's last sequence, the lag
    /// and the dead-letter count, and why a runner refuses to run (a read
    /// model of another log, or beyond the log's end). Exits 1 when one does.
    Status,
    /// Rebuilds one projection (or all) from sequence 1 into a shadow schema
    /// and swaps it in; readers keep reading meanwhile.
    Rebuild {
        /// The projection: brands, catalog, production, review, delivery or activity.
        name: Option<String>,
    },
    /// Applies each dead-lettered event of one projection (or all) again,
    /// read from the log by its sequence; removes the dead letters that apply
    /// now and keeps the others with their latest reason.
    RetryDeadLetters {
        /// The projection: brands, catalog, production, review, delivery or activity.
        name: Option<String>,
    },
}

fn selected(name: Option<String>) -> anyhow::Result<Vec<&'static gps_projections::Projection>> {
    Ok(match name {
        Some(name) => vec![
            gps_projections::by_name(&name)
                .ok_or_else(|| gps_projections::RunError::UnknownProjection(name.clone()))?,
        ],
        None => gps_projections::ALL.iter().collect(),
    })
}

async fn connect(settings: &Settings) -> anyhow::Result<sqlx::PgPool> {
    gps_projections::connect(&settings.database_url).await.context("connecting to the read-model database")
}

/// Runs every projection runner until Ctrl-C or SIGTERM. Several projectors
/// may run: one is active per projection, the others wait to take over.
pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let (log, _server) = crate::up::connect_event_log(&settings).await?;
    let pool = connect(&settings).await?;
    crate::metrics::serve(&settings).await?;
    tracing::info!("projector running");
    gps_projections::run_all(
        pool,
        log,
        gps_projections::RunnerOptions::default(),
        crate::up::shutdown_signal(),
    )
    .await?;
    tracing::info!("projector stopped");
    Ok(())
}

pub(crate) async fn command(settings: Settings, action: ProjectionsAction) -> anyhow::Result<()> {
    let (log, _server) = crate::up::connect_event_log(&settings).await?;
    let pool = connect(&settings).await?;
    match action {
        ProjectionsAction::Status => {
            println!(
                "{:<12} {:>12} {:>12} {:>10} {:>12}",
                "projection", "checkpoint", "stream", "lag", "dead letters"
            );
            let statuses = gps_projections::status(&pool, &log).await?;
            for status in &statuses {
                println!(
                    "{:<12} {:>12} {:>12} {:>10} {:>12}",
                    status.projection,
                    status.checkpoint,
                    status.stream_last_sequence,
                    status.lag,
                    status.dead_letters
                );
            }
            let mut refused = false;
            for status in &statuses {
                if let Some(problem) = &status.problem {
                    // A changed filter is fixed by the runner itself; the rest needs an operator.
                    refused |= status.refused;
                    let label = if status.refused { "error" } else { "note" };
                    println!("{}: {label}: {problem}", status.projection);
                }
            }
            if refused {
                anyhow::bail!("some read models do not belong to this event log; see above");
            }
        }
        ProjectionsAction::RetryDeadLetters { name } => {
            for projection in selected(name)? {
                let report = gps_projections::retry_dead_letters(&pool, &log, projection).await?;
                println!(
                    "{}: {} dead letters tried, {} applied and removed, {} still failing",
                    report.projection, report.tried, report.applied, report.still_dead
                );
            }
        }
        ProjectionsAction::Rebuild { name } => {
            for projection in selected(name)? {
                let report = gps_projections::rebuild(&pool, &log, projection).await?;
                println!(
                    "{}: rebuilt from {} events in {} ms, checkpoint {}",
                    report.projection, report.events, report.millis, report.checkpoint
                );
            }
        }
    }
    Ok(())
}
