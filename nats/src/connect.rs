//! Connecting to NATS and checking the server is new enough.
//!
//! A role logs in with a user and password ([`Credentials`]) and, against
//! servers with TLS on client connections (the shipped production configs),
//! trusts the CA named by [`ConnectSettings::ca_file`]: the connection is then
//! TLS or nothing, whatever the URL's scheme.
//!
//! Servers before 2.12 silently ignore the atomic batch headers and the
//! `allow_atomic` stream setting, which would turn an all-or-nothing write into
//! a partial one; so every role checks the version before doing anything.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ConnectError;

/// A server version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

/// The oldest server GPS accepts.
pub const MIN_SERVER_VERSION: ServerVersion = ServerVersion { major: 2, minor: 12, patch: 0 };

impl ServerVersion {
    /// Parses `2.15.1`, `v2.15.1` or `2.12.0-beta.1` (pre-release suffixes are ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u32>().ok());
        Some(ServerVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().flatten().unwrap_or(0),
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Checks a server's reported version against [`MIN_SERVER_VERSION`].
pub fn check_version(url: &str, reported: &str) -> Result<ServerVersion, ConnectError> {
    match ServerVersion::parse(reported) {
        Some(version) if version >= MIN_SERVER_VERSION => Ok(version),
        _ => Err(ConnectError::TooOld {
            url: url.to_owned(),
            found: reported.to_owned(),
            needed: MIN_SERVER_VERSION,
        }),
    }
}

/// A password that never prints: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A NATS user and password (see `nats/config/accounts.conf` for the roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user, e.g. `gateway`.
    pub user: String,
    /// Its password.
    pub password: Password,
}

/// The servers of `url`: one address, or a comma-separated list of a
/// cluster's nodes, any of which may be down when a role starts (the client
/// tries each, and learns the others from the one it reaches).
pub fn server_addresses(url: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    let bad = |reason: String| ConnectError::BadUrl { url: url.to_owned(), reason };
    let addresses = url
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<async_nats::ServerAddr>().map_err(|e| bad(format!("{part}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if addresses.is_empty() {
        return Err(bad("no address given".to_owned()));
    }
    Ok(addresses)
}

/// How a role reaches its server beyond the address: its login, and the CA
/// it trusts for the server's TLS certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectSettings {
    /// Log in as this user; `None` connects anonymously.
    pub credentials: Option<Credentials>,
    /// A PEM file of the CA that signed the servers' certificates. When set,
    /// the connection must be TLS (a server that does not offer it is
    /// refused) and only that CA is trusted; a `tls://` URL without it trusts
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl ConnectError {
    /// Whether the server refused the login (a wrong or missing user or
    /// password), as opposed to being unreachable.
    pub fn is_refused_login(&self) -> bool {
        matches!(
            self,
            ConnectError::Unreachable { source, .. }
                if matches!(
                    source.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                )
        )
    }
}

/// Connects to `url` (one address or a comma-separated list) and refuses
/// servers older than 2.12 or without JetStream.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ConnectError> {
    connect_as(url, name, &ConnectSettings::default()).await
}

/// [`connect`], logging in as `credentials` when given.
pub async fn connect_with(
    url: &str,
    name: &str,
    credentials: Option<&Credentials>,
) -> Result<async_nats::Client, ConnectError> {
    connect_as(url, name, &ConnectSettings { credentials: credentials.cloned(), ca_file: None }).await
}

/// [`connect`] with a login and a trusted CA, as `settings` say.
pub async fn connect_as(
    url: &str,
    name: &str,
    settings: &ConnectSettings,
) -> Result<async_nats::Client, ConnectError> {
    let mut options = match &settings.credentials {
        Some(credentials) => async_nats::ConnectOptions::with_user_and_password(
            credentials.user.clone(),
            credentials.password.expose().to_owned(),
        ),
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(ca_file) = &settings.ca_file {
        check_ca_file(ca_file)?;
        options = options.add_root_certificates(ca_file.clone()).require_tls(true);
    }
    let addresses = server_addresses(url)?;
    let client = options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .max_reconnects(None)
        // The first address is this role's own node (roles are spread over
        // a cluster's nodes); the others are its fallbacks.
        .retain_servers_order()
        .connect(addresses)
        .await
        .map_err(|source| ConnectError::Unreachable { url: url.to_owned(), source })?;
    let info = client.server_info();
    check_version(url, &info.version)?;
    if !info.jetstream {
        return Err(ConnectError::NoJetStream { url: url.to_owned() });
    }
    Ok(client)
}

/// Reads the CA file up front, so a wrong path or a file without a
/// certificate is named instead of surfacing as a failed handshake.
fn check_ca_file(path: &std::path::Path) -> Result<(), ConnectError> {
    let bad = |reason: String| ConnectError::CaFile { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("it holds no PEM certificate".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_prints() {
        let credentials = Credentials { user: "gateway".into(), password: Password::new("s3cret-value") };
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert_eq!(Password::new("x").to_string(), "***");
    }

    #[tokio::test]
    async fn a_missing_or_empty_ca_file_is_named_before_anything_is_dialled() {
        let missing = ConnectSettings { credentials: None, ca_file: Some("/nonexistent/ca.pem".into()) };
        let error = connect_as("tls://127.0.0.1:1", "t", &missing).await.expect_err("no such file");
        assert!(matches!(error, ConnectError::CaFile { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let dir = std::env::temp_dir().join(format!("gps-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").expect("write");
        let settings = ConnectSettings { credentials: None, ca_file: Some(empty) };
        let error = connect_as("tls://127.0.0.1:1", "t", &settings).await.expect_err("no certificate");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn versions_parse_with_or_without_prefix_and_suffix() {
        assert_eq!(ServerVersion::parse("v2.15.1"), Some(ServerVersion { major: 2, minor: 15, patch: 1 }));
        assert_eq!(
            ServerVersion::parse("2.12.0-RC.3"),
            Some(ServerVersion { major: 2, minor: 12, patch: 0 })
        );
        assert_eq!(ServerVersion::parse("garbage"), None);
    }

    #[test]
    fn a_cluster_is_given_as_a_comma_separated_list_and_a_bad_entry_is_named() {
        let nodes = server_addresses("nats://127.0.0.1:4222, nats://127.0.0.1:4223,").expect("two nodes");
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].port(), 4223);
        let message =
            server_addresses("nats://127.0.0.1:4222,http://x:1").expect_err("bad scheme").to_string();
        assert!(message.contains("http://x:1") && message.contains("separated by commas"), "{message}");
        assert!(server_addresses(" , ").is_err());
    }

    #[test]
    fn servers_before_2_12_are_refused_with_both_versions_named() {
        let error = check_version("nats://x", "2.9.25").expect_err("too old");
        let message = error.to_string();
        assert!(message.contains("2.9.25") && message.contains("2.12.0"), "{message}");
        assert!(check_version("nats://x", "2.11.9").is_err());
        assert!(check_version("nats://x", "2.12.0").is_ok());
        assert!(check_version("nats://x", "3.0.0").is_ok());
    }
}
