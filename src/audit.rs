//! `gps audit …`: the auditors' commands, thin wrappers over
//! `gps_projections::audit` (and the privacy vault):
//!
//! - `history <brand>/<type>/<id> [--as-of T] [--json]`: every event of one
//!   aggregate with actor, time, command/correlation ids and the state after
//!   it. The read is recorded as an `audit_access.recorded` event of its own
//!   aggregate (actor `system:gps-audit-cli`, or `--actor`), like reads
//!   through the API.
//! - `trail --brand B [--after N] [--limit N] [--json]`: who read which
//!   history, when (itself a recorded read).
//! - `as-of T [--brand B] [--drop]`: every read model rebuilt into its own
//!   schema as of T, with progress; `--drop` removes those schemas again.
//! - `verify [--brand B] [--skip-read-models]`: the log checks, then the
//!   shadow-rebuild comparison of the read models; exits non-zero on any break.
//! - `export --brand B [--from T] [--to T] --out DIR` and `verify-bundle DIR`.
//! - `forget-person --email E`: crypto-shredding (the privacy vault destroys
//!   the person's key) and an anonymised account; the log stays as it is.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use gps_commands::CommandHandler;
use gps_domain::AggregateKind;
use gps_domain::audit_access::{AuditAccess, AuditAccessCommand, WHOLE_TRAIL};
use gps_domain::brand::Brand;
use gps_domain::ids::BrandId;
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use gps_projections::audit::{as_of, bundle, compare, history, trail, verify};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditAction {
    /// Prints every event of one aggregate with the state after it.
    History {
        /// The aggregate: <brand>/<aggregate-type>/<id>, e.g. acme/prediction/p-1.
        aggregate: String,
        /// Only events stored at or before this instant (RFC 3339).
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The system actor recorded for this read (who is auditing).
        #[arg(long, default_value = "gps-audit-cli")]
        actor: String,
    },
    /// Prints who read which audit history, when (oldest first).
    Trail {
        /// The brand.
        #[arg(long)]
        brand: String,
        /// Only reads recorded after this stream sequence (a previous page's last).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many reads at most (1 to 1000).
        #[arg(long, default_value_t = 200)]
        limit: usize,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        /// The system actor recorded for this read (who is auditing).
        #[arg(long, default_value = "gps-audit-cli")]
        actor: String,
    },
    /// Rebuilds every read model into separate schemas as of an instant.
    AsOf {
        /// The instant (RFC 3339), e.g. 2026-11-27T10:30:00Z.
        at: String,
        /// Only this brand's events.
        #[arg(long)]
        brand: Option<String>,
        /// Drop the schemas of this instant instead of building them.
        #[arg(long)]
        drop: bool,
    },
    /// Verifies the log (hash chains, versions, schemas, actors) and the read models.
    Verify {
        /// Only this brand's events (the read-model comparison always covers all).
        #[arg(long)]
        brand: Option<String>,
        /// Skip the shadow rebuild and comparison of the read models.
        #[arg(long)]
        skip_read_models: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes a self-contained, verifiable bundle of a brand's events.
    Export {
        /// The brand.
        #[arg(long)]
        brand: String,
        /// Events stored at or after this instant (RFC 3339); default: the beginning.
        #[arg(long)]
        from: Option<String>,
        /// Events stored at or before this instant (RFC 3339); default: now.
        #[arg(long)]
        to: Option<String>,
        /// The folder to write (new or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verifies an export bundle with nothing but its files.
    VerifyBundle {
        /// The bundle's folder.
        dir: PathBuf,
    },
    /// Forgets a person: destroys their key in the privacy vault (every sealed
    /// copy of their email, in the log and everywhere else, becomes unreadable)
    /// and anonymises their account. The log is not rewritten; it still verifies.
    ForgetPerson {
        /// The person's email address.
        #[arg(long)]
        email: String,
    },
}

/// Records the CLI's read as an aggregate of its own, once the brand is known
/// to exist (a record under a brand nobody created would be noise in the log).
async fn record_read(
    log: &gps_nats::EventLog,
    brand: &BrandId,
    kind: AggregateKind,
    id: &str,
    as_of: Option<OffsetDateTime>,
    actor: String,
) -> anyhow::Result<()> {
    let handler = CommandHandler::new(log.clone());
    let brand_address = CommandHandler::address::<Brand>(brand, brand.as_str())?;
    if !handler.load::<Brand>(&brand_address).await?.state.exists() {
        bail!("brand {brand} does not exist; check the name (gps audit verify lists brands' events)");
    }
    let record = AuditAccessCommand::RecordAuditAccess {
        aggregate_type: kind,
        aggregate_id: id.to_owned(),
        as_of: as_of.map(|at| at.format(&Rfc3339).unwrap_or_default()),
    };
    let record_id = uuid::Uuid::now_v7().simple().to_string();
    let address = CommandHandler::address::<AuditAccess>(brand, &record_id)?;
    handler
        .execute_new::<AuditAccess>(&address, &CommandMeta::generated(Actor::System(actor)), &record)
        .await
        .context("recording the audit read")?;
    Ok(())
}

fn instant(name: &str, text: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .with_context(|| format!("{name} {text:?} is not RFC 3339; write it as 2026-11-27T10:30:00Z"))
}

fn brand(text: &str) -> anyhow::Result<BrandId> {
    BrandId::parse(text).with_context(|| format!("--brand {text:?}"))
}

pub(crate) async fn run(settings: Settings, action: AuditAction) -> anyhow::Result<()> {
    if let AuditAction::VerifyBundle { dir } = &action {
        // Needs nothing but the folder: no NATS, no Postgres.
        return verify_bundle(dir);
    }
    if let AuditAction::ForgetPerson { email } = &action {
        // The vault and the accounts live in Postgres; the log is not touched.
        return forget_person(&settings, email).await;
    }
    let (log, _server) = crate::up::connect_event_log(&settings).await?;
    match action {
        AuditAction::History { aggregate, as_of, json, actor } => {
            let (brand, kind, id) = history::parse_reference(&aggregate)?;
            let as_of = as_of.map(|text| instant("--as-of", &text)).transpose()?;
            record_read(&log, &brand, kind, &id, as_of, actor).await?;
            let found = history::history(&log, &brand, kind, &id, as_of).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                print!("{}", history::render_table(&found));
            }
            Ok(())
        }
        AuditAction::Trail { brand: brand_name, after, limit, json, actor } => {
            let brand = brand(&brand_name)?;
            if !(1..=trail::MAX_PAGE).contains(&limit) {
                bail!("--limit {limit} is out of range; give 1 to {}", trail::MAX_PAGE);
            }
            record_read(&log, &brand, AggregateKind::AuditAccess, WHOLE_TRAIL, None, actor).await?;
            let found = trail::trail(&log, &brand, after, limit, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
                return Ok(());
            }
            for read in &found.reads {
                let actor = serde_json::to_value(&read.actor)?;
                println!(
                    "{:>8}  {}  {}:{}  {}/{}{}",
                    read.stream_sequence,
                    read.stored_at,
                    actor["kind"].as_str().unwrap_or("?"),
                    actor["id"].as_str().unwrap_or("?"),
                    read.aggregate_type,
                    read.aggregate_id,
                    read.as_of.as_deref().map(|at| format!(" as of {at}")).unwrap_or_default()
                );
            }
            match found.next_after {
                Some(next) => println!("more: --after {next}"),
                None => println!("{} reads", found.reads.len()),
            }
            Ok(())
        }
        AuditAction::AsOf { at, brand: brand_name, drop } => {
            let at = instant("the instant", &at)?;
            let pool = gps_projections::connect(&settings.database_url).await?;
            if drop {
                let dropped = as_of::drop_as_of(&pool, at).await?;
                if dropped.is_empty() {
                    println!("no as-of schemas of {} exist", as_of::suffix(at));
                }
                for schema in dropped {
                    println!("dropped schema {schema}");
                }
                return Ok(());
            }
            let brand = brand_name.as_deref().map(brand).transpose()?;
            let report = as_of::build_as_of(&pool, &log, at, brand.as_ref(), &mut |progress| {
                if progress.done {
                    eprintln!("{}: {} events applied", progress.projection, progress.events);
                } else {
                    eprintln!("{}: {} events…", progress.projection, progress.events);
                }
            })
            .await?;
            println!(
                "read models as of {} (storage time){}:",
                report.as_of,
                match &report.brand {
                    Some(brand) => format!(", brand {brand}"),
                    None => String::new(),
                }
            );
            for schema in &report.schemas {
                println!("  {:<12} → schema {} ({} events)", schema.projection, schema.schema, schema.events);
            }
            println!("query them with SQL; remove them with: gps audit as-of {} --drop", report.as_of);
            Ok(())
        }
        AuditAction::Verify { brand: brand_name, skip_read_models, json } => {
            let brand = brand_name.as_deref().map(brand).transpose()?;
            let report = verify::verify_log(&log, brand.as_ref()).await?;
            let read_models = if skip_read_models {
                None
            } else {
                let pool = gps_projections::connect(&settings.database_url).await?;
                Some(compare::compare_read_models(&pool, &log).await?)
            };
            if json {
                let value = serde_json::json!({ "log": report, "read_models": read_models });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "log {}: {} events of {} aggregates checked (hash chains, versions, schemas, actors)",
                    report.filter, report.events_checked, report.aggregates
                );
                if let Some(read_models) = &read_models {
                    for table in &read_models.tables {
                        println!(
                            "read model {}.{}: {} rows live, {} rebuilt — {}",
                            table.projection,
                            table.table,
                            table.live_rows.map_or("missing".into(), |n| n.to_string()),
                            table.rebuilt_rows.map_or("missing".into(), |n| n.to_string()),
                            if table.equal() { "equal" } else { "DIFFERENT" }
                        );
                    }
                }
            }
            if let Some(broken) = &report.first_break {
                bail!("the log does not verify: {broken}");
            }
            if let Some(read_models) = &read_models {
                let differences = read_models.differences();
                if !differences.is_empty() {
                    let names: Vec<String> =
                        differences.iter().map(|t| format!("{}.{}", t.projection, t.table)).collect();
                    bail!(
                        "the read models differ from a rebuild of the log in {}; rebuild them with gps projections rebuild",
                        names.join(", ")
                    );
                }
            }
            println!(
                "verified: the log is intact{}",
                if skip_read_models { "" } else { " and the read models match it" }
            );
            Ok(())
        }
        AuditAction::Export { brand: brand_name, from, to, out } => {
            let brand = brand(&brand_name)?;
            let from = from.map(|text| instant("--from", &text)).transpose()?;
            let to = to.map(|text| instant("--to", &text)).transpose()?;
            let report = bundle::export(&log, &brand, from, to, &out).await?;
            println!(
                "wrote {} events of brand {} to {} ({} files)",
                report.manifest.events,
                brand,
                report.dir,
                report.files.len()
            );
            if let Some(broken) = report.verification.log.first_break.as_ref() {
                bail!("exported, but the brand's log does not verify: {broken}");
            }
            println!("verify it anywhere with: gps audit verify-bundle {}", report.dir);
            Ok(())
        }
        AuditAction::VerifyBundle { .. } | AuditAction::ForgetPerson { .. } => unreachable!("handled above"),
    }
}

fn verify_bundle(dir: &std::path::Path) -> anyhow::Result<()> {
    let report = bundle::verify_bundle(dir)?;
    if let Some(manifest) = &report.manifest {
        println!(
            "bundle of brand {}: {} events, window {} … {}",
            manifest.brand,
            manifest.events,
            manifest.from.as_deref().unwrap_or("beginning"),
            manifest.to.as_deref().unwrap_or("export time")
        );
    }
    println!("{} files match {}", report.files_checked, bundle::CHECKSUMS_FILE);
    for problem in &report.file_problems {
        println!("problem: {problem}");
    }
    if let Some(events) = &report.events {
        println!(
            "{} events of {} aggregates checked (hash chains from anchors, versions, schemas, actors{})",
            events.events_checked,
            events.aggregates,
            if events.membership_checked { " with membership" } else { "" }
        );
        if let Some(broken) = &events.first_break {
            bail!("the bundle does not verify: {broken}");
        }
    }
    if !report.passed() {
        bail!("the bundle does not verify: {} problem(s) with its files", report.file_problems.len());
    }
    println!("verified: the bundle is complete and intact");
    Ok(())
}

async fn forget_person(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let email = gps_domain::brand::Email::parse(email).context("--email")?;
    let (db, credentials) = crate::up::connect_database(settings).await?;
    // A person who can sign in is erased through the log (`person.erased`),
    // which also destroys their key and deletes their password and sessions.
    let account = gps_projections::accounts::person_by_email(&db, &credentials, &email).await?;
    if let Some(account) = &account {
        let (log, _server) = crate::up::connect_event_log(settings).await?;
        let commands = gps_commands::CommandHandler::new(log);
        let user_id = gps_domain::ids::MemberId::parse(&account.user_id)?;
        gps_gateway::accounts::erase_person(
            &commands,
            &credentials,
            &user_id,
            gps_domain::wire::Actor::System("gps-audit".into()),
        )
        .await?;
    }
    let forgotten = gps_projections::privacy::forget_email(&credentials, &email).await?;
    match (&forgotten.person_id, &account) {
        (None, None) => println!("nothing is known about {email}; nothing to forget"),
        _ => {
            if let Some(person) =
                forgotten.person_id.as_ref().or(account.as_ref().map(|a| &a.vault_person_id))
            {
                println!("destroyed the key of {person}: every sealed copy of the address is unreadable");
            }
            if let Some(account) = &account {
                println!("person {}: erased (person.erased), password and sessions deleted", account.user_id);
            }
        }
    }
    Ok(())
}
