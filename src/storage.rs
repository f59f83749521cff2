//! `gps storage sweep [--grace-hours H] [--dry-run] [--json]`: deletes the
//! objects nothing refers to and aborts the multipart uploads nobody finished
//! (`gps_storage::ObjectStore::sweep` decides and deletes).
//!
//! Referenced means: named by any event of the log (every content hash in
//! every payload, whatever the event type or version), or held by the steps
//! of a generation still running (its intermediate outputs, which no event
//! names yet). Run it from cron, e.g. daily; a dry run lists what would go.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use gps_domain::ids::PLATFORM_SCOPE;
use gps_nats::LogScan;
use gps_storage::References;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub(crate) enum StorageAction {
    /// Deletes objects no event refers to and aborts abandoned multipart uploads.
    Sweep {
        /// Keep everything touched within this many hours (at least 1).
        #[arg(long, default_value_t = 24)]
        grace_hours: u64,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(mut settings: Settings, action: StorageAction) -> anyhow::Result<()> {
    let StorageAction::Sweep { grace_hours, dry_run, json } = action;
    // Next to `gps up`, its data folder names the databases (running
    // generations are read from the compute database of that installation).
    crate::up::bind_database_to_data_dir(&mut settings)?;
    let grace = Duration::from_secs(grace_hours.saturating_mul(3600));
    let references = references(&settings).await?;
    let (store, _embedded) = crate::agent::storage(&settings).await?;
    let report = store.sweep(&references, grace, dry_run).await.context("sweeping the object store")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for key in &report.orphans {
        println!("{verb} orphan {key}");
    }
    for upload in &report.abandoned_uploads {
        println!("{} abandoned upload {upload}", if dry_run { "would abort" } else { "aborted" });
    }
    println!(
        "{} objects examined: {} referenced, {} touched within {grace_hours} h, {} not GPS's; {verb} {} orphans ({} bytes); {} abandoned uploads",
        report.examined,
        report.referenced,
        report.recent,
        report.foreign,
        report.orphans.len(),
        report.orphan_bytes,
        report.abandoned_uploads.len()
    );
    Ok(())
}

/// Every content hash the log's events and the running generations name.
async fn references(settings: &Settings) -> anyhow::Result<References> {
    let (log, _server) = crate::up::connect_event_log(settings).await?;
    let mut references = References::new();
    let filter = format!("{}.>", gps_nats::subjects::EVENT_SUBJECT_PREFIX);
    let mut scan = LogScan::open(&log, &filter, 1).await.context("reading the event log")?;
    let mut events = 0u64;
    while let Some(message) = scan.next().await.context("reading the event log")? {
        events += 1;
        // gps.evt.<brand>.<aggregate>.<id>
        let Some(brand) = message.subject.split('.').nth(2) else { continue };
        if brand == PLATFORM_SCOPE {
            continue;
        }
        // The whole envelope: its chain hashes match no object, so reading
        // them along with the payload only costs a few set entries.
        references.add_text(brand, &String::from_utf8_lossy(&message.payload));
    }
    let compute =
        gps_compute_agents::store::ComputeStore::connect(&crate::agent::compute_database_url(settings), 2)
            .await
            .context("connecting to the compute database; set GPS_COMPUTE_DATABASE_URL")?;
    let running = compute.running_step_records().await.context("reading running generations' steps")?;
    for (brand, record) in &running {
        references.add_text(brand, record);
    }
    tracing::info!(
        events,
        running_steps = running.len(),
        referenced = references.len(),
        "references gathered"
    );
    Ok(references)
}
