//! Who is calling: persons (email + password, argon2id; a session cookie) and
//! machine clients (API keys, stored hashed, shown once). Who a person is
//! comes from the log (`crate::accounts`: person events, the `accounts` read
//! model); how they prove it is the credentials store, gateway-owned mutable
//! state in the `auth` schema (password hashes, sessions, key hashes,
//! failed sign-ins) that is never an event and not rebuilt from the log.
//!
//! What a caller may do in a brand is decided by the Brand aggregate itself
//! (membership and roles are events), loaded from the log on each request, so
//! a revoked role or key stops working at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use gps_domain::brand::{ApiScope, Brand, Role};
use gps_domain::ids::{ApiClientId, BrandId, MemberId};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::access::Credential;
use crate::{ApiError, AppState};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "gps_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers
/// refuse it unless it is `Secure`, for this host only and the whole path, so
/// a sibling subdomain or a plain-HTTP page cannot plant or overwrite it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-gps_session";
/// The header carrying the CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::days(7);
/// The shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (argon2 hashes any length; this bounds the work).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Runs the gateway's migrations in the `auth` schema.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS auth").execute(&mut *connection).await?;
    sqlx::query("SET search_path TO auth").execute(&mut *connection).await?;
    let result = sqlx::migrate!("./migrations/auth").run(&mut *connection).await;
    // The connection goes back to the pool; leave it as it came.
    sqlx::query("SET search_path TO DEFAULT").execute(&mut *connection).await?;
    result.map_err(|e| sqlx::Error::Migrate(Box::new(e)))
}

/// The lowercase hex sha256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `bytes` random bytes from the OS, hex encoded.
pub fn random_token(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buffer))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Checks a new password, explaining a refusal.
pub fn check_new_password(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::field(
            "password",
            format!("it is {chars} characters long; use at least {MIN_PASSWORD_CHARS}"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::field(
            "password",
            format!("it is longer than {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A stored user.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    /// The user's id, also their member id in brands.
    pub user_id: String,
    /// Their email address.
    pub email: String,
    /// Their display name.
    pub display_name: String,
}

/// Failed sign-ins allowed per account and source address within
/// [`SIGN_IN_WINDOW`].
pub const MAX_FAILED_SIGN_INS: i64 = 5;
/// Failed sign-ins allowed per source address, on any accounts, within
/// [`SIGN_IN_WINDOW`] (against trying one password on many accounts).
pub const MAX_FAILED_SIGN_INS_PER_SOURCE: i64 = 20;
/// The sliding window over which failed sign-ins are counted.
pub const SIGN_IN_WINDOW: Duration = Duration::minutes(15);

/// Runs password hashing work off the async workers, bounded (see
/// [`crate::cpu`]): a burst of sign-ins queues instead of taking every core.
pub(crate) async fn argon2_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    crate::cpu::run(crate::cpu::Work::Password, work).await
}

/// Counts this attempt as failed before the password is checked, unless the
/// account has had [`MAX_FAILED_SIGN_INS`] failures from this source, or the
/// source [`MAX_FAILED_SIGN_INS_PER_SOURCE`] on any accounts, within
/// [`SIGN_IN_WINDOW`]; then it refuses, saying when to try again. The check
/// and the count are one step under advisory locks of the account and the
/// source, so a burst of parallel guesses gets no more tries than a sequence;
/// a success takes its count back. Counted in Postgres, so every gateway
/// enforces the same limits; they apply whether or not the account exists.
async fn count_sign_in_attempt(pool: &PgPool, email: &str, source: &str) -> Result<(), ApiError> {
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('gps sign-in account ' || lower(trim($1)), 0)), \
                pg_advisory_xact_lock(hashtextextended('gps sign-in source ' || $2, 0))",
    )
    .bind(email)
    .bind(source)
    .execute(&mut *transaction)
    .await?;
    let (for_account, for_source, oldest): (i64, i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE email = lower(trim($1))), count(*), \
                min(failed_at) FILTER (WHERE email = lower(trim($1))) \
         FROM auth.sign_in_failures WHERE source = $2 AND failed_at > now() - make_interval(secs => $3)",
    )
    .bind(email)
    .bind(source)
    .bind(SIGN_IN_WINDOW.as_seconds_f64())
    .fetch_one(&mut *transaction)
    .await?;
    let minutes = SIGN_IN_WINDOW.whole_minutes();
    let refusal = if for_account >= MAX_FAILED_SIGN_INS {
        let retry_at = oldest.unwrap_or_else(OffsetDateTime::now_utc) + SIGN_IN_WINDOW;
        Some((
            format!(
                "too many failed sign-ins for this account from your address ({for_account} in the last {minutes} minutes)"
            ),
            retry_at,
        ))
    } else if for_source >= MAX_FAILED_SIGN_INS_PER_SOURCE {
        Some((
            format!(
                "too many failed sign-ins from your address ({for_source} in the last {minutes} minutes)"
            ),
            OffsetDateTime::now_utc() + SIGN_IN_WINDOW,
        ))
    } else {
        None
    };
    if let Some((what, retry_at)) = refusal {
        let retry_after_secs =
            u64::try_from((retry_at - OffsetDateTime::now_utc()).whole_seconds().max(1)).unwrap_or(1);
        return Err(ApiError::TooManyRequests {
            message: format!(
                "{what}; try again in {retry_after_secs} s, or reset the password if it is forgotten"
            ),
            retry_after_secs,
        });
    }
    // Also forget failures older than a day, so the table stays small.
    sqlx::query(
        "WITH _old AS (DELETE FROM auth.sign_in_failures WHERE failed_at < now() - interval '1 day') \
         INSERT INTO auth.sign_in_failures (email, source, failed_at) VALUES (lower(trim($1)), $2, now())",
    )
    .bind(email)
    .bind(source)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

/// Checks an email and password; on success opens a session and returns the
/// cookie token and the CSRF token. Failed attempts are counted per account
/// and source address, and per source (see [`MAX_FAILED_SIGN_INS`]).
pub async fn sign_in(
    state: &AppState,
    email: &str,
    password: &str,
    source: &SourceAddress,
) -> Result<(User, String, String), ApiError> {
    let pool = &state.credentials;
    let source = source.to_string();
    count_sign_in_attempt(pool, email, &source).await?;
    // Who signs in with the address comes from the accounts read model
    // (rebuilt from person events), the hash from the credentials store.
    let user = match gps_domain::brand::Email::parse(email) {
        Ok(email) => crate::accounts::user_by_email(&state.db, pool, &email).await?,
        Err(_) => None,
    };
    let stored: Option<String> = match &user {
        Some(user) => {
            sqlx::query_scalar("SELECT password_hash FROM auth.passwords WHERE user_id = $1")
                .bind(&user.user_id)
                .fetch_optional(pool)
                .await?
        }
        None => None,
    };
    // Verify against a dummy hash when the user is unknown, or has not chosen
    // a password yet (a person created when a brand owner added their
    // address), so neither the answer nor its timing tells which emails
    // have accounts.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let (user, stored) = match (user, stored) {
        (Some(user), Some(hash)) if crate::accounts::is_usable_hash(&hash) => (Some(user), hash),
        _ => {
            let dummy = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
            (None, dummy.clone())
        }
    };
    let password = password.to_owned();
    let valid = argon2_work(move || verify_password(&password, &stored)).await?;
    let user = match (user, valid) {
        (Some(user), true) => user,
        // The attempt was counted as failed before the check.
        _ => return Err(ApiError::Unauthenticated("the email or the password is not right".into())),
    };
    sqlx::query("DELETE FROM auth.sign_in_failures WHERE email = lower(trim($1)) AND source = $2")
        .bind(email)
        .bind(&source)
        .execute(pool)
        .await?;
    let token = random_token(32)?;
    let csrf = random_token(16)?;
    sqlx::query(
        "INSERT INTO auth.sessions (token_hash, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(&token))
    .bind(&user.user_id)
    .bind(&csrf)
    .bind(OffsetDateTime::now_utc() + SESSION_LIFETIME)
    .execute(pool)
    .await?;
    Ok((user, token, csrf))
}

/// Ends a session, here and in every gateway's cache.
pub async fn sign_out(state: &AppState, token: &str) -> Result<(), ApiError> {
    let token_hash = sha256_hex(token);
    sqlx::query("DELETE FROM auth.sessions WHERE token_hash = $1")
        .bind(&token_hash)
        .execute(&state.credentials)
        .await?;
    state.access.signed_out(&state.log, &token_hash).await;
    Ok(())
}

/// A new API key `gps_<prefix>_<secret>` and its prefix, not yet stored
/// ([`store_api_key`] keeps only its hash).
pub fn new_api_key() -> Result<(String, String), ApiError> {
    let prefix = format!("gps_{}", random_token(6)?);
    let key = api_key_under(&prefix)?;
    Ok((prefix, key))
}

/// A new secret under a prefix already recorded as a client's fingerprint.
pub fn api_key_under(prefix: &str) -> Result<String, ApiError> {
    Ok(format!("{prefix}_{}", random_token(32)?))
}

/// Stores the hash of a client's key, unless the client has one: a key is
/// stored once per client, so a replayed registration never makes a second
/// one. Returns whether this key was stored.
pub async fn store_api_key(
    pool: &PgPool,
    brand: &BrandId,
    api_client_id: &ApiClientId,
    prefix: &str,
    key: &str,
) -> Result<bool, ApiError> {
    let stored = sqlx::query(
        "INSERT INTO auth.api_keys (key_prefix, brand, api_client_id, secret_hash) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(prefix)
    .bind(brand.as_str())
    .bind(api_client_id.as_str())
    .bind(sha256_hex(key))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(stored == 1)
}

/// Marks an API key revoked (the Brand aggregate also records the revocation).
pub async fn revoke_api_key(
    pool: &PgPool,
    brand: &BrandId,
    api_client_id: &ApiClientId,
) -> Result<(), ApiError> {
    sqlx::query("UPDATE auth.api_keys SET revoked_at = now() WHERE brand = $1 AND api_client_id = $2")
        .bind(brand.as_str())
        .bind(api_client_id.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Where a request comes from, for throttling sign-ins: the TCP peer, or,
/// when the peer is one of the gateway's trusted reverse proxies, the nearest
/// address in `X-Forwarded-For` that is not one of them (a client can write
/// that header, so only what trusted proxies appended is believed). IPv6
/// sources count by their /64, the block one subscriber usually holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddress(pub Option<std::net::IpAddr>);

impl SourceAddress {
    /// The source of a request from `peer` carrying `headers`.
    pub fn of(
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
        trusted_proxies: &[std::net::IpAddr],
    ) -> Self {
        let Some(peer) = peer.map(|ip| ip.to_canonical()) else { return SourceAddress(None) };
        if !is_trusted_proxy(trusted_proxies, peer) {
            return SourceAddress(Some(peer));
        }
        let forwarded: Vec<std::net::IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| entry.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        let client = forwarded.iter().rev().find(|ip| !is_trusted_proxy(trusted_proxies, **ip)).copied();
        SourceAddress(Some(client.unwrap_or(peer)))
    }
}

/// Whether `ip` is one of the gateway's trusted reverse proxies (IPv4-mapped
/// IPv6 and IPv4 spellings are the same address).
fn is_trusted_proxy(trusted_proxies: &[std::net::IpAddr], ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted_proxies.iter().any(|proxy| proxy.to_canonical() == ip)
}

impl std::fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("unknown"),
            Some(std::net::IpAddr::V4(v4)) => write!(f, "{v4}"),
            Some(std::net::IpAddr::V6(v6)) => {
                let s = v6.segments();
                write!(f, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// The TCP peer of a request (absent for the UI's in-process calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

impl FromRequestParts<AppState> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(Peer(peer)) = Peer::from_request_parts(parts, state).await;
        Ok(SourceAddress::of(peer, &parts.headers, &state.trusted_proxies))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person signed in with a session cookie.
    User {
        /// Their user (and member) id.
        user_id: MemberId,
    },
    /// A machine client with an API key of one brand.
    ApiClient {
        /// The brand the key belongs to.
        brand: BrandId,
        /// The client.
        api_client_id: ApiClientId,
    },
}

impl Principal {
    /// The actor recorded on the events this caller causes.
    pub fn actor(&self) -> gps_domain::wire::Actor {
        match self {
            Principal::User { user_id } => gps_domain::wire::Actor::Member(user_id.clone()),
            Principal::ApiClient { api_client_id, .. } => {
                gps_domain::wire::Actor::ApiClient(api_client_id.clone())
            }
        }
    }

    /// A stable text naming the caller, used to scope idempotency keys. Ids
    /// never hold `:`, so two callers never share a scope (with `-` as the
    /// separator, brand `a-b`'s client `c` and brand `a`'s client `b-c` did).
    pub fn scope(&self) -> String {
        match self {
            Principal::User { user_id } => format!("u:{user_id}"),
            Principal::ApiClient { brand, api_client_id } => format!("k:{brand}:{api_client_id}"),
        }
    }
}

pub(crate) fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|value| {
        value.split(';').find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_owned())
        })
    })
}

/// The person a session token belongs to and the session's CSRF token, if
/// The `Set-Cookie` value that starts a session (HttpOnly, SameSite=Strict,
/// `Secure` on HTTPS deployments); the API's and the UI's sign-in share it.
pub(crate) fn session_cookie(token: &str, secure: bool) -> Result<axum::http::HeaderValue, ApiError> {
    let (name, secure) = if secure { (SECURE_SESSION_COOKIE, "; Secure") } else { (SESSION_COOKIE, "") };
    let cookie = format!(
        "{name}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_LIFETIME.whole_seconds()
    );
    axum::http::HeaderValue::from_str(&cookie).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The `Set-Cookie` value that ends a session in the browser.
pub(crate) fn cleared_session_cookie(secure: bool) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_static(if secure {
        "__Host-gps_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
    } else {
        "gps_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    })
}

/// Whether the session cookie of this request's answer is `Secure`: always
/// when the gateway is configured so, and when a trusted reverse proxy says
/// the browser reached it over HTTPS (`X-Forwarded-Proto: https`).
pub(crate) fn secure_cookies(state: &AppState, peer: &Peer, headers: &axum::http::HeaderMap) -> bool {
    if state.cookie_secure {
        return true;
    }
    let from_trusted_proxy = peer.0.is_some_and(|peer| is_trusted_proxy(&state.trusted_proxies, peer));
    let https = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()).is_some_and(|proto| {
        proto.split(',').next_back().is_some_and(|last| last.trim().eq_ignore_ascii_case("https"))
    });
    if from_trusted_proxy && https {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "served over HTTPS through a trusted proxy, but cookie_secure is off: \
                 session cookies are made Secure for those requests; set GPS_COOKIE_SECURE=true"
            );
        });
        return true;
    }
    false
}

/// The session token of a request's cookies (either cookie name).
pub(crate) fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    cookie(headers, SECURE_SESSION_COOKIE).or_else(|| cookie(headers, SESSION_COOKIE))
}

/// The principal and CSRF token of a session token, when the session is
/// current.
pub(crate) async fn session(state: &AppState, token: &str) -> Result<(Principal, String), ApiError> {
    let token_hash = sha256_hex(token);
    let credentials = match state.access.credential(&state.log, &token_hash) {
        Some(Credential { principal, csrf: Some(csrf) }) => (principal, csrf),
        _ => {
            let row: Option<(String, String)> = sqlx::query_as(
                "SELECT user_id, csrf_token FROM auth.sessions WHERE token_hash = $1 AND expires_at > now()",
            )
            .bind(&token_hash)
            .fetch_optional(&state.credentials)
            .await?;
            let Some((user_id, csrf)) = row else {
                return Err(ApiError::Unauthenticated(
                    "the session has expired or was ended; sign in again".into(),
                ));
            };
            let user_id = MemberId::parse(user_id).map_err(|e| ApiError::Internal(e.to_string()))?;
            let principal = Principal::User { user_id };
            state.access.store_credential(
                token_hash,
                Credential { principal: principal.clone(), csrf: Some(csrf.clone()) },
            );
            (principal, csrf)
        }
    };
    Ok(credentials)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Authenticated already by a middleware of this request (extensions
        // are the server's own, never a client's).
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            let value = authorization
                .to_str()
                .map_err(|_| ApiError::Unauthenticated("the Authorization header is not text".into()))?;
            let key = value.strip_prefix("Bearer ").ok_or_else(|| {
                ApiError::Unauthenticated("use `Authorization: Bearer <API key>` for API keys".into())
            })?;
            return api_client(state, key.trim()).await;
        }
        let Some(token) = session_token(&parts.headers) else {
            return Err(ApiError::Unauthenticated(
                "sign in (POST /api/v1/session) or send an API key as `Authorization: Bearer <key>`".into(),
            ));
        };
        let (principal, csrf) = session(state, &token).await?;
        // A cookie travels with cross-site requests; a write must also prove it
        // comes from our UI by echoing the session's CSRF token.
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(csrf.as_str()) {
                return Err(ApiError::Forbidden(format!(
                    "a write with a session cookie needs the {CSRF_HEADER} header returned at sign-in"
                )));
            }
        }
        Ok(principal)
    }
}

async fn api_client(state: &AppState, key: &str) -> Result<Principal, ApiError> {
    let presented = sha256_hex(key);
    if let Some(credential) = state.access.credential(&state.log, &presented) {
        return Ok(credential.principal);
    }
    let invalid = || ApiError::Unauthenticated("the API key is not valid or was revoked".into());
    let prefix = key.rsplit_once('_').map(|(prefix, _)| prefix).ok_or_else(invalid)?;
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT brand, api_client_id, secret_hash FROM auth.api_keys WHERE key_prefix = $1 AND revoked_at IS NULL",
    )
    .bind(prefix)
    .fetch_optional(&state.credentials)
    .await?;
    let (brand, api_client_id, secret_hash) = row.ok_or_else(invalid)?;
    // Constant-time comparison of the hashes.
    let equal = presented.len() == secret_hash.len()
        && presented.bytes().zip(secret_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !equal {
        return Err(invalid());
    }
    let principal = Principal::ApiClient {
        brand: BrandId::parse(brand).map_err(|e| ApiError::Internal(e.to_string()))?,
        api_client_id: ApiClientId::parse(api_client_id).map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    // A revoked key stays refused while remembered: `authorize` checks the
    // Brand aggregate, which records the revocation.
    state.access.store_credential(presented, Credential { principal: principal.clone(), csrf: None });
    Ok(principal)
}

/// What a request wants to do in a brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the brand's data.
    Read,
    /// Create and change products, subjects, styles, shootings, looks; run
    /// generations and exports.
    Produce,
    /// Approve, reject, request revisions, comment.
    Review,
    /// Manage members, API clients and channel presets.
    Administer,
    /// Read audit histories (each read is itself recorded as an event).
    Audit,
    /// Follow the brand's event stream (the log itself, for downstream systems).
    Stream,
}

/// Which scope an API key needs for each action. `Administer` has none: API
/// clients are never owners, so no key can administer a brand.
const SCOPE_OF_ACTION: [(Action, ApiScope); 5] = [
    (Action::Read, ApiScope::Read),
    (Action::Produce, ApiScope::Produce),
    (Action::Review, ApiScope::Review),
    (Action::Audit, ApiScope::Audit),
    (Action::Stream, ApiScope::Stream),
];

/// The scope an API key needs for `action`; `None` when no key may do it.
pub fn scope_for(action: Action) -> Option<ApiScope> {
    SCOPE_OF_ACTION.iter().find(|(a, _)| *a == action).map(|(_, scope)| *scope)
}

/// The action a scope opens to an API key.
pub fn action_of(scope: ApiScope) -> Action {
    SCOPE_OF_ACTION.iter().find(|(_, s)| *s == scope).map_or(Action::Read, |(action, _)| *action)
}

/// Whether `role` may perform `action`.
pub fn allows(role: Role, action: Action) -> bool {
    match action {
        Action::Read => true,
        Action::Produce => matches!(role, Role::Owner | Role::Producer),
        Action::Review => matches!(role, Role::Owner | Role::Producer | Role::Reviewer),
        Action::Administer => matches!(role, Role::Owner),
        Action::Audit => matches!(role, Role::Owner | Role::Auditor),
        // Every member may read every event of the brand through the read
        // models already; the stream is the same facts in log order.
        Action::Stream => true,
    }
}

/// How often an open stream checks that its caller may still have it.
pub(crate) const ACCESS_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Ends `stream` once the request that opened it is no longer allowed to
/// `action` on `brand`: its API key revoked, its member removed or demoted,
/// its session signed out or expired. The credentials the request came with
/// are checked again every [`ACCESS_RECHECK`] the way a new request's would
/// be (the access cache answers most checks; revocations and sign-outs reach
/// it from every gateway through NATS), so a stream ends within about a
/// second of the change, and on a failure to check (fail closed).
pub(crate) fn while_allowed<S: futures::Stream>(
    stream: S,
    state: AppState,
    credentials: axum::http::HeaderMap,
    brand: BrandId,
    action: Action,
) -> impl futures::Stream<Item = S::Item> {
    use futures::StreamExt;
    let revoked = async move {
        loop {
            tokio::time::sleep(ACCESS_RECHECK).await;
            if let Err(error) = still_allowed(&state, &credentials, &brand, action).await {
                tracing::info!(%brand, %error, "closing a stream whose access ended");
                return;
            }
        }
    };
    stream.take_until(Box::pin(revoked))
}

/// Returns once the session of `token` has ended (signed out, expired, its
/// person erased) or cannot be checked; checked every [`ACCESS_RECHECK`].
pub(crate) async fn until_session_ends(state: &AppState, token: &str) {
    loop {
        tokio::time::sleep(ACCESS_RECHECK).await;
        if let Err(error) = session(state, token).await {
            tracing::info!(%error, "closing a UI socket whose session ended");
            return;
        }
    }
}

/// Whether the credentials among `headers` still allow `action` on `brand`.
async fn still_allowed(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    brand: &BrandId,
    action: Action,
) -> Result<(), ApiError> {
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            parts.headers.append(name.clone(), value.clone());
        }
    }
    let principal = Principal::from_request_parts(&mut parts, state).await?;
    authorize(state, &principal, brand, action).await.map(|_| ())
}

/// The caller's role in `brand`, checked against `action`. A caller who is
/// not a member gets "not found": the brand's existence is not revealed.
pub async fn authorize(
    state: &AppState,
    principal: &Principal,
    brand: &BrandId,
    action: Action,
) -> Result<Role, ApiError> {
    let not_found = || ApiError::NotFound(format!("brand {brand} not found"));
    if let Principal::ApiClient { brand: own, .. } = principal
        && own != brand
    {
        return Err(not_found());
    }
    let brand_state = match state.access.brand(&state.log, brand) {
        Some(cached) => cached,
        None => {
            let address = gps_commands::CommandHandler::address::<Brand>(brand, brand.as_str())?;
            let loaded = state.commands.load::<Brand>(&address).await?;
            let loaded_state = std::sync::Arc::new(loaded.state);
            state.access.store_brand(
                &state.log,
                brand,
                loaded_state.clone(),
                loaded.position.aggregate_version,
            );
            loaded_state
        }
    };
    let (role, client) = match principal {
        Principal::User { user_id } => (brand_state.role_of(user_id).ok_or_else(not_found)?, None),
        // The key's own brand (checked above): a revoked client is a revoked
        // key, even while this gateway still remembers the key's lookup.
        Principal::ApiClient { api_client_id, .. } => {
            let client = brand_state
                .active_api_client(api_client_id)
                .ok_or_else(|| ApiError::Unauthenticated("the API key is not valid or was revoked".into()))?;
            (client.role, Some(client))
        }
    };
    if !allows(role, action) {
        return Err(ApiError::Forbidden(
            format!("your role in brand {brand} ({role:?}) does not allow this").to_lowercase(),
        ));
    }
    // A key does what its role allows *and* its scopes name.
    if let Some(client) = client {
        match scope_for(action) {
            Some(scope) if client.has_scope(scope) => {}
            Some(scope) => {
                return Err(ApiError::Forbidden(format!(
                    "this API key does not have the `{scope}` scope; register an API client with \
                     \"scopes\" including \"{scope}\" for this"
                )));
            }
            None => return Err(ApiError::Forbidden("no API key may do this; sign in as an owner".into())),
        }
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_peer_unless_a_trusted_proxy_forwarded_the_request() {
        let headers = |forwarded: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-forwarded-for", forwarded.parse().expect("header"));
            headers
        };
        let ip = |text: &str| text.parse::<std::net::IpAddr>().expect("ip");
        let proxy = [ip("10.0.0.2")];
        // A client's own X-Forwarded-For is not believed.
        let direct = SourceAddress::of(Some(ip("203.0.113.9")), &headers("198.51.100.1"), &proxy);
        assert_eq!(direct.to_string(), "203.0.113.9");
        // Through the proxy: the address it appended, not what the client wrote before it.
        let proxied = SourceAddress::of(Some(ip("10.0.0.2")), &headers("1.2.3.4, 198.51.100.1"), &proxy);
        assert_eq!(proxied.to_string(), "198.51.100.1");
        let mapped = SourceAddress::of(Some(ip("::ffff:203.0.113.9")), &axum::http::HeaderMap::new(), &[]);
        assert_eq!(mapped.to_string(), "203.0.113.9");
        let v6 = SourceAddress::of(Some(ip("2001:4860:1:2:aaaa::1")), &axum::http::HeaderMap::new(), &[]);
        assert_eq!(v6.to_string(), "2001:4860:1:2::/64");
        assert_eq!(SourceAddress(None).to_string(), "unknown");
    }

    #[test]
    fn callers_whose_ids_join_to_the_same_text_keep_separate_idempotency_scopes() {
        let client = |brand: &str, client: &str| Principal::ApiClient {
            brand: BrandId::parse(brand).expect("brand"),
            api_client_id: ApiClientId::parse(client).expect("client"),
        };
        assert_ne!(client("a-b", "c").scope(), client("a", "b-c").scope());
        let user = Principal::User { user_id: gps_domain::ids::MemberId::parse("k-a-b").expect("member") };
        assert_ne!(user.scope(), client("a", "b").scope());
    }

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn short_passwords_are_refused_with_the_limit_named() {
        let error = check_new_password("short").expect_err("short");
        assert!(error.to_string().contains("12"), "{error}");
    }

    #[test]
    fn each_role_may_do_what_it_is_for() {
        use Action::*;
        let table = [
            (Role::Owner, [Read, Produce, Review, Administer, Audit, Stream].as_slice(), [].as_slice()),
            (Role::Producer, &[Read, Produce, Review, Stream], &[Administer, Audit]),
            (Role::Reviewer, &[Read, Review, Stream], &[Produce, Administer, Audit]),
            (Role::Viewer, &[Read, Stream], &[Produce, Review, Administer, Audit]),
            (Role::Auditor, &[Read, Audit, Stream], &[Produce, Review, Administer]),
        ];
        for (role, allowed, denied) in table {
            for action in allowed {
                assert!(allows(role, *action), "{role:?} {action:?}");
            }
            for action in denied {
                assert!(!allows(role, *action), "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn every_scope_opens_exactly_one_action_and_no_key_may_administer() {
        for scope in ApiScope::ALL {
            assert_eq!(scope_for(action_of(scope)), Some(scope), "{scope}");
        }
        assert_eq!(scope_for(Action::Administer), None);
    }

    #[test]
    fn tokens_are_random_hex_of_the_asked_length() {
        let a = random_token(32).expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_token(32).expect("token"));
    }
}
