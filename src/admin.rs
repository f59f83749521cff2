//! `gps admin`: operator tasks that need no HTTP session — creating persons
//! (`person.registered` in the log, the password in the credentials store;
//! and making them members of a brand), and the demo brand that
//! `gps up` seeds on an empty installation.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use clap::Subcommand;
use gps_commands::{CommandHandler, CommandMeta};
use gps_domain::brand::{Brand, BrandCommand, Email, Role};
use gps_domain::ids::{BrandId, MemberId};
use gps_domain::values::Name;
use gps_domain::wire::Actor;

use crate::config::Settings;

/// An admin task.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminAction {
    /// Creates a user account; with --brand also makes it a member (creating
    /// the brand, with the user as owner, when it does not exist). The password
    /// is read from GPS_ADMIN_PASSWORD or, if unset, from the first line of stdin.
    CreateUser {
        /// The email address to sign in with.
        #[arg(long)]
        email: String,
        /// The display name.
        #[arg(long)]
        name: String,
        /// The user (and member) id; derived from the email when omitted.
        #[arg(long)]
        id: Option<String>,
        /// A brand to add the user to.
        #[arg(long)]
        brand: Option<String>,
        /// The role in that brand.
        #[arg(long, default_value = "owner")]
        role: String,
    },
    /// Sets a person's password (`person.password_changed` in the log, the
    /// hash in the credentials store) and ends their sessions. The password
    /// is read like create-user's.
    SetPassword {
        /// The user id.
        #[arg(long)]
        id: String,
    },
}

/// The password from GPS_ADMIN_PASSWORD or, if unset, the first line of stdin.
fn read_password() -> anyhow::Result<String> {
    match std::env::var("GPS_ADMIN_PASSWORD") {
        Ok(password) => Ok(password),
        Err(_) => {
            eprintln!("password (one line on stdin):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    }
}

/// Runs an admin task.
pub(crate) async fn run(settings: Settings, action: AdminAction) -> anyhow::Result<()> {
    match action {
        AdminAction::SetPassword { id } => {
            let id = MemberId::parse(id)?;
            let password = read_password()?;
            let (_read, credentials) = crate::up::connect_database(&settings).await?;
            let (log, _server) = crate::up::connect_event_log(&settings).await?;
            let handler = CommandHandler::new(log);
            gps_gateway::accounts::change_password(
                &handler,
                &credentials,
                &id,
                &password,
                Actor::System("gps-admin".into()),
            )
            .await?;
            println!("password of {id} changed; their sessions ended");
            Ok(())
        }
        AdminAction::CreateUser { email, name, id, brand, role } => {
            let password = read_password()?;
            let email = Email::parse(&email)?;
            let id = match id {
                Some(id) => MemberId::parse(id)?,
                None => member_id_from_email(&email)?,
            };
            let name = Name::parse(&name)?;
            let role: Role =
                serde_json::from_value(serde_json::Value::String(role.clone())).map_err(|_| {
                    anyhow::anyhow!("role {role:?} is not one of owner, producer, reviewer, viewer, auditor")
                })?;
            let (read, credentials) = crate::up::connect_database(&settings).await?;
            let (log, _server) = crate::up::connect_event_log(&settings).await?;
            let handler = CommandHandler::new(log);
            gps_gateway::accounts::create_person(
                &handler,
                &read,
                &credentials,
                gps_gateway::accounts::NewPerson {
                    user_id: &id,
                    email: &email,
                    display_name: &name,
                    password: &password,
                },
                Actor::System("gps-admin".into()),
                None,
            )
            .await?;
            println!("user {id} ({email}) created");
            if let Some(brand) = brand {
                let brand = BrandId::parse(brand)?;
                join_brand(&handler, &credentials, &brand, &id, &name, &email, role).await?;
                println!("{id} is {role:?} of brand {brand}");
            }
            Ok(())
        }
    }
}

/// A member id from an email's local part (letters, digits, '-', '_').
fn member_id_from_email(email: &Email) -> anyhow::Result<MemberId> {
    let local = email.as_str().split('@').next().unwrap_or_default();
    let id: String = local
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(64)
        .collect();
    MemberId::parse(id).context("derive an id from the email failed; pass --id")
}

/// Makes a user a member of a brand, creating the brand with them as owner
/// when it does not exist yet.
async fn join_brand(
    handler: &CommandHandler,
    credentials: &sqlx::PgPool,
    brand: &BrandId,
    id: &MemberId,
    name: &Name,
    email: &Email,
    role: Role,
) -> anyhow::Result<()> {
    let address = CommandHandler::address::<Brand>(brand, brand.as_str())?;
    let exists = handler.load::<Brand>(&address).await?.state.exists();
    // The address goes into the log sealed with the person's key, so it can be forgotten.
    let email = gps_projections::privacy::seal_email(credentials, email).await?;
    let command = if exists {
        BrandCommand::AddMember {
            member_id: id.clone(),
            display_name: name.clone(),
            email: email.clone(),
            role,
        }
    } else {
        if role != Role::Owner {
            bail!("brand {brand} does not exist; its first member must be its owner (--role owner)");
        }
        BrandCommand::CreateBrand {
            brand_id: brand.clone(),
            name: Name::parse(brand.as_str())?,
            owner_member_id: id.clone(),
            owner_display_name: name.clone(),
            owner_email: email.clone(),
        }
    };
    let meta = CommandMeta::generated(Actor::System("gps-admin".into()));
    handler.execute::<Brand>(&address, &meta, &command).await?;
    Ok(())
}

/// The demo brand and its owner, created by `gps up` when the log holds no person yet.
/// The password is random, shown once and written to a file only the
/// operator can read; nothing in GPS has a default password.
pub(crate) async fn seed_demo(
    handler: &CommandHandler,
    read: &sqlx::PgPool,
    credentials: &sqlx::PgPool,
    data_dir: &Path,
) -> anyhow::Result<Option<(String, String)>> {
    if gps_gateway::accounts::any_person(handler.log()).await? {
        return Ok(None);
    }
    let email = Email::parse("demo@gps.local")?;
    let id = MemberId::parse("demo-owner")?;
    let name = Name::parse("Demo Owner")?;
    let password = gps_gateway::auth::random_token(12).map_err(|e| anyhow::anyhow!("{e}"))?;
    gps_gateway::accounts::create_person(
        handler,
        read,
        credentials,
        gps_gateway::accounts::NewPerson {
            user_id: &id,
            email: &email,
            display_name: &name,
            password: &password,
        },
        Actor::System("gps-demo".into()),
        // `gps up` runs the projectors already: the demo owner signs in at once.
        Some(gps_gateway::accounts::VISIBLE_WITHIN),
    )
    .await?;
    join_brand(handler, credentials, &BrandId::parse("demo")?, &id, &name, &email, Role::Owner).await?;
    std::fs::create_dir_all(data_dir)?;
    let file = data_dir.join("demo-credentials.txt");
    gps_compute_agents::delivery::credentials::write_private(
        &file,
        format!("email: {email}\npassword: {password}\nbrand: demo\n").as_bytes(),
    )?;
    Ok(Some((email.to_string(), password)))
}
