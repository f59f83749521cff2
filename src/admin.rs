//! `gps admin`: operator tasks that need no HTTP session — creating persons
//! (`person.registered` in the log, the password in the credentials store;
//! and making them members of a brand), granting and revoking the platform
//! admin right (who may create brands), and the demo brand that `gps up`
//! seeds on an empty installation.

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
        /// Also make the user a platform admin (may create brands).
        #[arg(long)]
        platform_admin: bool,
    },
    /// Makes the person who signs in with EMAIL a platform admin: while
    /// `brand_creation` is `platform_admins` (the default), only platform
    /// admins may create brands. Takes effect at once on every gateway.
    GrantPlatformAdmin {
        /// The person's sign-in address.
        email: String,
    },
    /// Takes the platform admin right from the person who signs in with EMAIL.
    RevokePlatformAdmin {
        /// The person's sign-in address.
        email: String,
    },
    /// Lists the platform admins.
    ListPlatformAdmins,
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
        AdminAction::GrantPlatformAdmin { email } => {
            let (read, credentials) = crate::up::connect_database(&settings).await?;
            let user = person_by_email(&read, &credentials, &email).await?;
            let id = MemberId::parse(&user.user_id)?;
            if gps_gateway::accounts::grant_platform_admin(&credentials, &id, &operator()).await? {
                println!("{id} ({}) is now a platform admin", user.email);
            } else {
                println!("{id} ({}) already was a platform admin", user.email);
            }
            Ok(())
        }
        AdminAction::RevokePlatformAdmin { email } => {
            let (read, credentials) = crate::up::connect_database(&settings).await?;
            let user = person_by_email(&read, &credentials, &email).await?;
            let id = MemberId::parse(&user.user_id)?;
            if gps_gateway::accounts::revoke_platform_admin(&credentials, &id).await? {
                println!("{id} ({}) is no longer a platform admin", user.email);
            } else {
                println!("{id} ({}) was not a platform admin", user.email);
            }
            Ok(())
        }
        AdminAction::ListPlatformAdmins => {
            let (_read, credentials) = crate::up::connect_database(&settings).await?;
            let admins = gps_gateway::accounts::platform_admins(&credentials).await?;
            if admins.is_empty() {
                println!(
                    "no platform admins (brand_creation is {}); grant one with `gps admin grant-platform-admin EMAIL`",
                    settings.brand_creation.as_str()
                );
            }
            for admin in admins {
                println!("{}\tgranted by {} at {}", admin.user_id, admin.granted_by, admin.granted_at);
            }
            Ok(())
        }
        AdminAction::CreateUser { email, name, id, brand, role, platform_admin } => {
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
            if platform_admin {
                gps_gateway::accounts::grant_platform_admin(&credentials, &id, &operator()).await?;
                println!("{id} is a platform admin");
            }
            if let Some(brand) = brand {
                let brand = BrandId::parse(brand)?;
                join_brand(&handler, &credentials, &brand, &id, &name, &email, role).await?;
                println!("{id} is {role:?} of brand {brand}");
            }
            Ok(())
        }
    }
}

/// The person who signs in with `email`, or an error that says why none was found.
async fn person_by_email(
    read: &sqlx::PgPool,
    credentials: &sqlx::PgPool,
    email: &str,
) -> anyhow::Result<gps_gateway::auth::User> {
    let parsed = Email::parse(email)?;
    gps_gateway::accounts::user_by_email(read, credentials, &parsed).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no account signs in with {parsed} (create it with `gps admin create-user`; a person created \
             moments ago shows once the projections have caught up)"
        )
    })
}

/// Who runs `gps admin`, as recorded with a grant: the operating system login.
fn operator() -> String {
    let login = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    if login.trim().is_empty() { "gps-admin".to_owned() } else { format!("gps-admin ({})", login.trim()) }
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
