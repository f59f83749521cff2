//! Accounts: who can sign in. A person is an aggregate in the log
//! (`gps_domain::person`, on `gps.evt._platform.person.<user id>`): creating
//! one, renaming, changing the password and erasing are events, with the
//! email and display name sealed by the privacy vault. The readable list is
//! the `accounts` read model, rebuilt from those events like every other.
//!
//! What must never be in the log, and so cannot be rebuilt from it, is the
//! credentials store: `auth.passwords` (argon2id hashes), `auth.sessions`,
//! `auth.api_keys`, `auth.sign_in_failures`, `auth.platform_admins` (who
//! may create brands, [`BrandCreation`]), and the vault's keys
//! (`privacy.person_keys`), and the one-time links to choose a password
//! (`auth.password_tokens`, [`crate::invites`]). It is a database of its own
//! ([`credentials_url_for`]: `gps_read` → `gps_credentials`), so the read
//! database can be dropped and rebuilt from the log without losing anyone;
//! `docs/operations.md` says how to back it up. [`connect_credentials`]
//! prepares it and moves these schemas out of a read database that still
//! holds them (installations from before the split).
//!
//! Platform admins are granted by an operator on the command line (`gps
//! admin grant-platform-admin`), not through the API, and are kept in the
//! credentials store rather than as person events: a grant is an operator's
//! act on one installation, like setting a password. (If auditors are to
//! replay who held the right when, it becomes a person event with its
//! schema; see `docs/operations.md`.)
//!
//! Installations from before persons were events kept accounts in
//! `auth.users`; [`migrate_legacy_users`] turns each into a person (with a
//! deterministic command id, so running it again changes nothing) and moves
//! its hash into `auth.passwords`.

use std::time::Duration;

use gps_commands::{CommandError, CommandHandler};
use gps_domain::brand::Email;
use gps_domain::ids::{BrandId, MemberId};
use gps_domain::person::{Person, PersonCommand};
use gps_domain::values::Name;
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use sqlx::PgPool;

use crate::ApiError;
use crate::auth::{User, check_new_password, hash_password};

/// How long a new person's creator waits, at most, for the accounts read
/// model to show them (so an immediate sign-in finds them).
pub const VISIBLE_WITHIN: Duration = Duration::from_secs(10);

fn vault_error(error: gps_projections::privacy::PrivacyError) -> ApiError {
    ApiError::Internal(error.to_string())
}

/// The address of a person's aggregate.
pub fn address(user_id: &MemberId) -> Result<gps_nats::AggregateAddress, ApiError> {
    Ok(CommandHandler::address::<Person>(&BrandId::platform(), user_id.as_str())?)
}

async fn hashed(password: &str) -> Result<String, ApiError> {
    check_new_password(password)?;
    // argon2 takes tens of milliseconds of CPU on purpose; keep it off the
    // async workers.
    let owned = password.to_owned();
    crate::auth::argon2_work(move || hash_password(&owned)).await?
}

/// A person just created, and the stream sequence that shows them.
#[derive(Debug, Clone)]
pub struct Created {
    /// The person.
    pub user: User,
    /// Read models at or past this sequence know them.
    pub stream_sequence: u64,
}

/// Who to create: the user id (also their member id in brands), the
/// sign-in address, the display name and the password.
#[derive(Debug, Clone, Copy)]
pub struct NewPerson<'a> {
    /// The user id.
    pub user_id: &'a MemberId,
    /// The sign-in address.
    pub email: &'a Email,
    /// The display name.
    pub display_name: &'a Name,
    /// The password (checked, then only its hash is kept).
    pub password: &'a str,
}

/// Creates a person who can sign in: the password hash goes to the
/// credentials store (which also keeps one account per address), then
/// `person.registered` with the sealed email and name goes to the log. With
/// `wait`, returns once the accounts read model shows them (or the wait ran out).
pub async fn create_person(
    commands: &CommandHandler,
    read: &PgPool,
    credentials: &PgPool,
    person: NewPerson<'_>,
    actor: Actor,
    wait: Option<Duration>,
) -> Result<Created, ApiError> {
    let NewPerson { user_id, email, display_name, password } = person;
    let hash = hashed(password).await?;
    register(commands, read, credentials, user_id, email, display_name, hash, actor, wait).await
}

/// The stored "hash" of a person who has no password yet (GPS created them
/// when a brand owner added their address): no argon2id PHC string, so no
/// password verifies against it, and sign-in treats it as no account at all
/// (see [`crate::auth::sign_in`]). A one-time link lets them choose one.
pub const NO_PASSWORD: &str = "!none";

/// Whether a stored hash is a usable password (not [`NO_PASSWORD`], nor the
/// marker of a forgotten legacy account).
pub fn is_usable_hash(stored: &str) -> bool {
    !stored.starts_with('!')
}

/// Creates a person who cannot sign in until they choose a password with a
/// one-time link ([`crate::invites`]): the same person aggregate, vault
/// sealing and one-account-per-address claim as [`create_person`], with
/// [`NO_PASSWORD`] as the stored hash.
pub async fn create_person_without_password(
    commands: &CommandHandler,
    read: &PgPool,
    credentials: &PgPool,
    user_id: &MemberId,
    email: &Email,
    display_name: &Name,
    actor: Actor,
) -> Result<Created, ApiError> {
    register(commands, read, credentials, user_id, email, display_name, NO_PASSWORD.to_owned(), actor, None)
        .await
}

#[allow(clippy::too_many_arguments)]
async fn register(
    commands: &CommandHandler,
    read: &PgPool,
    credentials: &PgPool,
    user_id: &MemberId,
    email: &Email,
    display_name: &Name,
    hash: String,
    actor: Actor,
    wait: Option<Duration>,
) -> Result<Created, ApiError> {
    let pool = credentials;
    let taken = || ApiError::Conflict(format!("a user with id {user_id} or email {email} already exists"));
    let legacy: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM auth.users WHERE user_id = $1 OR email = $2)")
            .bind(user_id.as_str())
            .bind(email.as_str())
            .fetch_one(pool)
            .await?;
    if legacy {
        return Err(taken());
    }
    let (sealed_email, sealed_name) =
        gps_projections::privacy::seal_person(pool, email, display_name).await.map_err(vault_error)?;
    let vault_person = sealed_email.person_id.clone();
    let claim = || {
        sqlx::query(
            "INSERT INTO auth.passwords (user_id, vault_person_id, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(vault_person.as_str())
        .bind(&hash)
        .execute(pool)
    };
    if claim().await?.rows_affected() == 0 {
        // A credentials store kept across a new log (`gps up --reset-derived`)
        // holds passwords of persons this log never had: those claims are void.
        release_claims_of_unknown_persons(commands, pool, user_id, &vault_person).await?;
        if claim().await?.rows_affected() == 0 {
            return Err(taken());
        }
    }
    let command = PersonCommand::RegisterPerson {
        user_id: user_id.clone(),
        email: sealed_email,
        display_name: sealed_name,
    };
    let meta = CommandMeta::generated(actor);
    let outcome = match commands.execute::<Person>(&address(user_id)?, &meta, &command).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // The claim is only valid with its person; give it back.
            sqlx::query("DELETE FROM auth.passwords WHERE user_id = $1 AND vault_person_id = $2")
                .bind(user_id.as_str())
                .bind(vault_person.as_str())
                .execute(pool)
                .await?;
            return Err(match error {
                CommandError::Rejected { error: gps_domain::DomainError::AlreadyExists { .. }, .. } => {
                    taken()
                }
                other => other.into(),
            });
        }
    };
    if let Some(timeout) = wait {
        wait_until_visible(read, outcome.stream_sequence, timeout).await;
    }
    Ok(Created {
        user: User {
            user_id: user_id.to_string(),
            email: email.to_string(),
            display_name: display_name.to_string(),
        },
        stream_sequence: outcome.stream_sequence,
    })
}

/// Deletes the password rows that claim `user_id` or `vault_person` for a
/// person the log does not hold.
async fn release_claims_of_unknown_persons(
    commands: &CommandHandler,
    pool: &PgPool,
    user_id: &MemberId,
    vault_person: &gps_domain::ids::PersonId,
) -> Result<(), ApiError> {
    let claimants: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM auth.passwords WHERE user_id = $1 OR vault_person_id = $2")
            .bind(user_id.as_str())
            .bind(vault_person.as_str())
            .fetch_all(pool)
            .await?;
    for claimant in claimants {
        let Ok(id) = MemberId::parse(&claimant) else { continue };
        if commands.load::<Person>(&address(&id)?).await?.state.user_id.is_none() {
            tracing::warn!(user = %claimant, "a password of a person this event log does not hold was released");
            sqlx::query("DELETE FROM auth.passwords WHERE user_id = $1")
                .bind(&claimant)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Waits until the accounts read model has applied `sequence`, at most
/// `timeout` (a projector that is not running yet catches up later; the
/// person exists in the log either way).
pub async fn wait_until_visible(pool: &PgPool, sequence: u64, timeout: Duration) {
    if let Err(error) = gps_projections::wait_for_sequence(pool, Some("accounts"), sequence, timeout).await {
        tracing::warn!(%error, "the accounts read model does not show the new person yet");
    }
}

/// Sets a person's password: the new hash goes to the credentials store,
/// `person.password_changed` (without the hash) to the log, and every session
/// of theirs ends.
pub async fn change_password(
    commands: &CommandHandler,
    credentials: &PgPool,
    user_id: &MemberId,
    password: &str,
    actor: Actor,
) -> Result<u64, ApiError> {
    let hash = hashed(password).await?;
    // Decided first: an unknown or erased person gets the domain's refusal
    // and keeps whatever the store holds.
    let meta = CommandMeta::generated(actor);
    let outcome =
        commands.execute::<Person>(&address(user_id)?, &meta, &PersonCommand::ChangePassword).await?;
    let vault_person = outcome.state.sealed_by.as_ref().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let mut tx = credentials.begin().await?;
    // An upsert: setting a password also repairs a person whose hash a lost
    // credentials store took with it.
    sqlx::query(
        "INSERT INTO auth.passwords (user_id, vault_person_id, password_hash) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, changed_at = now()",
    )
    .bind(user_id.as_str())
    .bind(&vault_person)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM auth.sessions WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    // A password once set ends every outstanding one-time link: a mail read
    // later by someone else opens nothing.
    sqlx::query("UPDATE auth.password_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(outcome.stream_sequence)
}

/// Replaces a person's display name (sealed with their key).
pub async fn change_display_name(
    commands: &CommandHandler,
    credentials: &PgPool,
    user_id: &MemberId,
    email: &Email,
    display_name: &Name,
    actor: Actor,
) -> Result<u64, ApiError> {
    let sealed =
        gps_projections::privacy::seal_name(credentials, email, display_name).await.map_err(vault_error)?;
    let meta = CommandMeta::generated(actor);
    let command = PersonCommand::ChangeDisplayName { display_name: sealed };
    Ok(commands.execute::<Person>(&address(user_id)?, &meta, &command).await?.stream_sequence)
}

/// What erasing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// The stream sequence of `person.erased` (or of the earlier erasure).
    pub stream_sequence: u64,
    /// The session token hashes that were ended (for the gateways' caches).
    pub ended_sessions: Vec<String>,
}

/// Erases a person: `person.erased` goes to the log, the vault destroys their
/// key (so the sealed email and name in the log, in brand member events and
/// everywhere else are noise from now on), and their password and sessions
/// are deleted. Idempotent.
pub async fn erase_person(
    commands: &CommandHandler,
    credentials: &PgPool,
    user_id: &MemberId,
    actor: Actor,
) -> Result<Erased, ApiError> {
    let address = address(user_id)?;
    let meta = CommandMeta::generated(actor);
    let outcome = commands.execute::<Person>(&address, &meta, &PersonCommand::ErasePerson).await?;
    if let Some(vault_person) = &outcome.state.sealed_by {
        gps_projections::privacy::forget_person(credentials, vault_person).await.map_err(vault_error)?;
    }
    let mut tx = credentials.begin().await?;
    sqlx::query("DELETE FROM auth.passwords WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM auth.platform_admins WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM auth.password_tokens WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    let ended_sessions: Vec<String> =
        sqlx::query_scalar("DELETE FROM auth.sessions WHERE user_id = $1 RETURNING token_hash")
            .bind(user_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    // Every gateway forgets the ended sessions it remembers (as at sign-out).
    let client = commands.log().client();
    for token_hash in &ended_sessions {
        if let Err(error) = client.publish(crate::access::SIGNED_OUT_SUBJECT, token_hash.clone().into()).await
        {
            tracing::warn!(%error, "could not tell the gateways about an ended session; their cache expires it");
        }
    }
    let _ = client.flush().await;
    Ok(Erased { stream_sequence: outcome.stream_sequence, ended_sessions })
}

/// The user id that holds `email`'s account in the credentials store (one
/// account per address, claimed before the person's event is appended), with
/// or without a password. Unlike [`user_by_email`] it does not wait for the
/// accounts read model, so it finds a person created a moment ago.
pub async fn user_id_of_address(credentials: &PgPool, email: &Email) -> Result<Option<MemberId>, ApiError> {
    let Some(vault_person) =
        gps_projections::privacy::person_of_email(credentials, email).await.map_err(vault_error)?
    else {
        return Ok(None);
    };
    let user_id: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM auth.passwords WHERE vault_person_id = $1")
            .bind(vault_person.as_str())
            .fetch_optional(credentials)
            .await?;
    Ok(user_id.and_then(|id| MemberId::parse(id).ok()))
}

/// Whether `user_id` has a password they can sign in with.
pub async fn has_password(credentials: &PgPool, user_id: &MemberId) -> Result<bool, ApiError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM auth.passwords WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(credentials)
            .await?;
    Ok(stored.is_some_and(|hash| is_usable_hash(&hash)))
}

/// The person with `user_id` as the accounts read model shows them, unless erased.
pub async fn user_by_id(
    read: &PgPool,
    credentials: &PgPool,
    user_id: &str,
) -> Result<Option<User>, ApiError> {
    let account = gps_projections::accounts::person(read, credentials, user_id).await.map_err(vault_error)?;
    Ok(account.and_then(readable))
}

/// The person who signs in with `email`, unless erased.
pub async fn user_by_email(
    read: &PgPool,
    credentials: &PgPool,
    email: &Email,
) -> Result<Option<User>, ApiError> {
    let account =
        gps_projections::accounts::person_by_email(read, credentials, email).await.map_err(vault_error)?;
    Ok(account.and_then(readable))
}

fn readable(account: gps_projections::accounts::Account) -> Option<User> {
    if account.erased {
        return None;
    }
    Some(User { user_id: account.user_id, email: account.email?, display_name: account.display_name? })
}

/// Whether the log holds any person: the installation has accounts (even
/// when its credentials store was lost, which an operator must repair rather
/// than a demo account paper over).
pub async fn any_person(log: &gps_nats::EventLog) -> Result<bool, ApiError> {
    let filter =
        format!("{}.{}.person.>", gps_nats::subjects::EVENT_SUBJECT_PREFIX, gps_domain::ids::PLATFORM_SCOPE);
    let unavailable = |e: gps_nats::LoadError| ApiError::Unavailable(format!("reading the event log: {e}"));
    let mut scan = gps_nats::LogScan::open(log, &filter, 1).await.map_err(unavailable)?;
    Ok(scan.next().await.map_err(unavailable)?.is_some())
}

/// Turns every account of the pre-event `auth.users` table into a person in
/// the log (`person.registered`, command id `legacy-account:<user id>`, so a
/// second run, or a run interrupted half-way, writes nothing twice) and moves
/// its password hash to `auth.passwords`; the row is then deleted, so the
/// readable address leaves the table. Accounts that `gps audit forget-person`
/// already forgot are left as they are: nobody can sign in with them.
/// Returns how many accounts were moved.
pub async fn migrate_legacy_users(
    commands: &CommandHandler,
    credentials: &PgPool,
) -> Result<usize, ApiError> {
    let pool = credentials;
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT user_id, email, display_name, password_hash FROM auth.users
         WHERE password_hash <> '!forgotten' ORDER BY created_at, user_id",
    )
    .fetch_all(pool)
    .await?;
    let mut moved = 0;
    for (user_id, email, display_name, hash) in rows {
        let invalid = |what: &str, e: gps_domain::InvalidValue| {
            ApiError::Internal(format!(
                "auth.users row {user_id}: its {what} does not parse ({e}); fix it by hand"
            ))
        };
        let id = MemberId::parse(&user_id).map_err(|e| invalid("user id", e))?;
        let email = Email::parse(&email).map_err(|e| invalid("email", e))?;
        let name = Name::parse(&display_name).map_err(|e| invalid("display name", e))?;
        let (sealed_email, sealed_name) =
            gps_projections::privacy::seal_person(pool, &email, &name).await.map_err(vault_error)?;
        let vault_person = sealed_email.person_id.clone();
        let command = PersonCommand::RegisterPerson {
            user_id: id.clone(),
            email: sealed_email,
            display_name: sealed_name,
        };
        let meta =
            CommandMeta::new(format!("legacy-account:{id}"), Actor::System("gps-accounts-migration".into()));
        let vault_person = match commands.execute::<Person>(&address(&id)?, &meta, &command).await {
            // An earlier run registered them (the same command id returns its
            // outcome): the sealing of that run is the one in the log.
            Ok(outcome) => outcome.state.sealed_by.unwrap_or(vault_person),
            Err(CommandError::Rejected { error: gps_domain::DomainError::AlreadyExists { .. }, .. }) => {
                let loaded = commands.load::<Person>(&address(&id)?).await?;
                loaded.state.sealed_by.unwrap_or(vault_person)
            }
            Err(other) => return Err(other.into()),
        };
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO auth.passwords (user_id, vault_person_id, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(vault_person.as_str())
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM auth.users WHERE user_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        moved += 1;
    }
    Ok(moved)
}

/// Who may create brands on this installation (`brand_creation` in the
/// settings). Creating a brand makes a new tenant, so on a hosted
/// installation it is an operator's decision by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrandCreation {
    /// Only platform admins (granted with `gps admin grant-platform-admin`).
    #[default]
    PlatformAdmins,
    /// Every signed-in person (a self-service installation).
    AnyPerson,
}

impl BrandCreation {
    /// The setting's value as written in files and the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            BrandCreation::PlatformAdmins => "platform_admins",
            BrandCreation::AnyPerson => "any_person",
        }
    }
}

impl std::str::FromStr for BrandCreation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "platform_admins" => Ok(BrandCreation::PlatformAdmins),
            "any_person" => Ok(BrandCreation::AnyPerson),
            other => {
                Err(format!("{other:?} is not a brand creation policy; use platform_admins or any_person"))
            }
        }
    }
}

/// Whether `user_id` may create a brand under `policy`; a refusal says who
/// may and how to get the right.
pub async fn may_create_brands(
    credentials: &PgPool,
    policy: BrandCreation,
    user_id: &MemberId,
) -> Result<(), ApiError> {
    if policy == BrandCreation::AnyPerson || is_platform_admin(credentials, user_id).await? {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "only platform admins may create brands on this installation; ask its operator to run \
         `gps admin grant-platform-admin <your email>`, or to ask a platform admin to create the brand \
         and add you as its owner"
            .into(),
    ))
}

/// Whether `user_id` is a platform admin: granted, and still the person the
/// grant was made for (an erased person's grant is void).
pub async fn is_platform_admin(credentials: &PgPool, user_id: &MemberId) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM auth.platform_admins a
                        JOIN auth.passwords p USING (user_id, vault_person_id)
                        WHERE a.user_id = $1)",
    )
    .bind(user_id.as_str())
    .fetch_one(credentials)
    .await?)
}

/// Makes `user_id` a platform admin (`granted_by` names who did, e.g. the
/// operator's login). Returns false when they already were one. Refused for
/// an id without an account.
pub async fn grant_platform_admin(
    credentials: &PgPool,
    user_id: &MemberId,
    granted_by: &str,
) -> Result<bool, ApiError> {
    let vault_person: Option<String> =
        sqlx::query_scalar("SELECT vault_person_id FROM auth.passwords WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(credentials)
            .await?;
    let Some(vault_person) = vault_person else {
        return Err(ApiError::NotFound(format!("no account has the user id {user_id}")));
    };
    let granted = sqlx::query(
        "INSERT INTO auth.platform_admins (user_id, vault_person_id, granted_by) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
           SET vault_person_id = EXCLUDED.vault_person_id, granted_by = EXCLUDED.granted_by, granted_at = now()
           WHERE platform_admins.vault_person_id <> EXCLUDED.vault_person_id",
    )
    .bind(user_id.as_str())
    .bind(&vault_person)
    .bind(granted_by)
    .execute(credentials)
    .await?;
    Ok(granted.rows_affected() == 1)
}

/// Takes the platform admin right from `user_id`. Returns false when they
/// did not have it.
pub async fn revoke_platform_admin(credentials: &PgPool, user_id: &MemberId) -> Result<bool, ApiError> {
    let revoked = sqlx::query("DELETE FROM auth.platform_admins WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(credentials)
        .await?;
    Ok(revoked.rows_affected() == 1)
}

/// A platform admin whose grant holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlatformAdmin {
    /// The person's user id.
    pub user_id: String,
    /// Who granted the right (`gps-admin (<login>)`).
    pub granted_by: String,
    /// When, RFC 3339 in UTC.
    pub granted_at: String,
}

/// The platform admins whose grant still holds, by user id.
pub async fn platform_admins(credentials: &PgPool) -> Result<Vec<PlatformAdmin>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT a.user_id, a.granted_by,
                to_char(a.granted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS granted_at
         FROM auth.platform_admins a JOIN auth.passwords p USING (user_id, vault_person_id)
         ORDER BY a.user_id",
    )
    .fetch_all(credentials)
    .await?)
}

/// The credentials database next to a read database: `gps_read` →
/// `gps_credentials`, `NAME_read` → `NAME_credentials`, any other `NAME` →
/// `NAME_credentials` (on the same server, with the same options).
pub fn credentials_url_for(read_url: &str) -> String {
    let without_query = read_url.split_once('?').map_or(read_url, |(base, _)| base);
    let read_name = without_query.rsplit_once('/').map_or("gps", |(_, name)| name);
    let name = match read_name.strip_suffix("_read") {
        Some(stem) if !stem.is_empty() => format!("{stem}_credentials"),
        _ => format!("{read_name}_credentials"),
    };
    match read_url.split_once('?') {
        Some((base, query)) => format!("{}/{name}?{query}", base.rsplit_once('/').map_or(base, |(s, _)| s)),
        None => format!("{}/{name}", read_url.rsplit_once('/').map_or(read_url, |(s, _)| s)),
    }
}

/// Why the credentials store could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Connecting to (or creating) the database failed.
    #[error("credentials database: {0}")]
    Connect(#[from] gps_projections::DbError),
    /// Postgres failed.
    #[error("credentials database: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// Connects to the credentials database (created if missing) and prepares
/// its schemas. Given the read database, also moves the credentials a read
/// database of an older installation still holds (`auth`, `privacy`) into
/// it, then drops them there, so the read database holds only what the log
/// can rebuild.
pub async fn connect_credentials(url: &str, read: Option<&PgPool>) -> Result<PgPool, CredentialsError> {
    let credentials = gps_projections::connect(url).await?;
    crate::auth::migrate(&credentials).await?;
    gps_projections::privacy::migrate(&credentials).await?;
    if let Some(read) = read {
        move_credentials_out_of(read, &credentials).await?;
    }
    Ok(credentials)
}

/// Copies `auth` and `privacy` rows from the read database into the
/// credentials database (rows already there win, so an interrupted move can
/// run again) and drops those schemas from the read database.
async fn move_credentials_out_of(read: &PgPool, credentials: &PgPool) -> Result<(), sqlx::Error> {
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables
         WHERE table_schema IN ('auth', 'privacy')",
    )
    .fetch_all(read)
    .await?;
    if present.is_empty() {
        return Ok(());
    }
    // Failed sign-ins are not worth moving; they expire within the window.
    const MOVED: [(&str, &str); 5] = [
        ("privacy.person_keys", "person_id, email_digest, key, created_at, forgotten_at"),
        ("auth.users", "user_id, email, display_name, password_hash, created_at"),
        ("auth.passwords", "user_id, vault_person_id, password_hash, changed_at"),
        ("auth.sessions", "token_hash, user_id, csrf_token, created_at, expires_at"),
        ("auth.api_keys", "key_prefix, brand, api_client_id, secret_hash, created_at, revoked_at"),
    ];
    let mut tx = credentials.begin().await?;
    for (table, columns) in MOVED {
        if !present.iter().any(|t| t == table) {
            continue;
        }
        // The two databases cannot see each other: the rows travel as one
        // JSON array per table (bytea as its hex text, which reads back).
        let rows: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(jsonb_agg(moved), '[]'::jsonb) FROM (SELECT {columns} FROM {table}) moved"
        )))
        .fetch_one(read)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_recordset(null::{table}, $1) \
             ON CONFLICT DO NOTHING"
        )))
        .bind(rows)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    sqlx::raw_sql("DROP SCHEMA IF EXISTS auth CASCADE; DROP SCHEMA IF EXISTS privacy CASCADE;")
        .execute(read)
        .await?;
    tracing::info!(
        "moved the credentials (auth, privacy) out of the read database into the credentials database"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_database_is_named_after_the_read_database() {
        let url = |name: &str| format!("postgres://gps@db:5432/{name}");
        assert_eq!(credentials_url_for(&url("gps_read")), url("gps_credentials"));
        assert_eq!(credentials_url_for(&url("gps_3f9a1c2e_read")), url("gps_3f9a1c2e_credentials"));
        assert_eq!(credentials_url_for(&url("catalogue")), url("catalogue_credentials"));
        assert_eq!(
            credentials_url_for("postgres://gps@db/gps_read?sslmode=require"),
            "postgres://gps@db/gps_credentials?sslmode=require"
        );
    }
}
