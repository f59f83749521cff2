//! Settings of the `gps` binary: defaults, then a TOML file, then environment
//! variables, then command-line flags. Every setting is listed in
//! `docs/configuration.md` with its default and variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Everything `gps up` and the roles need to start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// Where the HTTP gateway listens. `GPS_HTTP_ADDR`; `GPS_PORT` or `--port`
    /// change only the port.
    pub(crate) http_addr: SocketAddr,
    /// Where local state lives (the embedded NATS store). `GPS_DATA_DIR`.
    pub(crate) data_dir: PathBuf,
    /// NATS settings.
    pub(crate) nats: NatsSettings,
    /// The Postgres database of the read models and the gateway's credentials
    /// (`DATABASE_URL`; created if missing).
    pub(crate) database_url: String,
    /// Mark the session cookie `Secure` (behind HTTPS). `GPS_COOKIE_SECURE`.
    pub(crate) cookie_secure: bool,
    /// On an installation without accounts, `gps up` creates the `demo` brand
    /// and its owner with a random password. `GPS_SEED_DEMO`; turn it off in
    /// production.
    pub(crate) seed_demo: bool,
}

/// How GPS reaches NATS.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NatsSettings {
    /// An external server (`NATS_URL`); when unset, `gps up` starts the pinned
    /// nats-server itself.
    pub(crate) url: Option<String>,
    /// Port of the embedded server. `GPS_NATS_PORT`.
    pub(crate) embedded_port: u16,
    /// Fsync every write on the embedded server (`sync_interval: always`), as
    /// production does. `GPS_NATS_SYNC_ALWAYS`.
    pub(crate) embedded_sync_always: bool,
    /// The event stream's deduplication window. `GPS_NATS_DUPLICATE_WINDOW_SECS`.
    pub(crate) duplicate_window: Duration,
    /// Stream replicas: 1 on one node, 3 in a cluster. `GPS_NATS_REPLICAS`.
    pub(crate) replicas: usize,
    /// Log in as this user (`NATS_USER`, or `nats.user` in the file)...
    pub(crate) user: Option<String>,
    /// ...with this password, read from `NATS_PASSWORD` only: secrets stay
    /// out of files.
    pub(crate) password: Option<gps_nats::Password>,
}

impl NatsSettings {
    /// The login, when a user is configured.
    pub(crate) fn credentials(&self) -> Option<gps_nats::Credentials> {
        Some(gps_nats::Credentials { user: self.user.clone()?, password: self.password.clone()? })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".gps"),
            nats: NatsSettings {
                url: None,
                embedded_port: 4333,
                embedded_sync_always: true,
                duplicate_window: Duration::from_secs(10 * 60),
                replicas: 1,
                user: None,
                password: None,
            },
            database_url: "postgres://postgres@127.0.0.1:5432/gps_read".into(),
            cookie_secure: false,
            seed_demo: true,
        }
    }
}

/// The file form: every field optional, unknown fields refused so a typo is
/// reported instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http_addr: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    cookie_secure: Option<bool>,
    seed_demo: Option<bool>,
    #[serde(default)]
    nats: FileNats,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNats {
    url: Option<String>,
    embedded_port: Option<u16>,
    embedded_sync_always: Option<bool>,
    duplicate_window_secs: Option<u64>,
    replicas: Option<usize>,
    user: Option<String>,
}

impl Settings {
    /// Loads defaults, then `file` (or `GPS_CONFIG`), then the environment.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut settings = Settings::default();
        let file = file.map(Path::to_path_buf).or_else(|| env("GPS_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
            settings
                .apply_file(&text)
                .with_context(|| format!("in the configuration file {}", path.display()))?;
        }
        settings.apply_env(&env)?;
        Ok(settings)
    }

    fn apply_file(&mut self, text: &str) -> anyhow::Result<()> {
        let file: FileSettings = toml::from_str(text)
            .map_err(|error| {
                let hint = if error.to_string().contains("unknown field `password`") {
                    " (passwords are read from the environment only: set NATS_PASSWORD)"
                } else {
                    ""
                };
                anyhow::anyhow!("{error}{hint}")
            })
            .context("not valid GPS settings")?;
        if let Some(addr) = file.http_addr {
            self.http_addr = parse_addr("http_addr", &addr)?;
        }
        if let Some(dir) = file.data_dir {
            self.data_dir = dir;
        }
        if let Some(url) = file.database_url {
            self.database_url = url;
        }
        if let Some(secure) = file.cookie_secure {
            self.cookie_secure = secure;
        }
        if let Some(seed) = file.seed_demo {
            self.seed_demo = seed;
        }
        let nats = file.nats;
        if let Some(url) = nats.url {
            self.nats.url = Some(url);
        }
        if let Some(port) = nats.embedded_port {
            self.nats.embedded_port = port;
        }
        if let Some(sync) = nats.embedded_sync_always {
            self.nats.embedded_sync_always = sync;
        }
        if let Some(secs) = nats.duplicate_window_secs {
            self.nats.duplicate_window = Duration::from_secs(secs);
        }
        if let Some(replicas) = nats.replicas {
            self.nats.replicas = replicas;
        }
        if let Some(user) = nats.user {
            self.nats.user = Some(user);
        }
        self.check_without_password()
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(addr) = env("GPS_HTTP_ADDR") {
            self.http_addr = parse_addr("GPS_HTTP_ADDR", &addr)?;
        }
        if let Some(port) = env("GPS_PORT") {
            self.http_addr.set_port(parse_number("GPS_PORT", &port)?);
        }
        if let Some(dir) = env("GPS_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(url) = env("DATABASE_URL") {
            self.database_url = url;
        }
        if let Some(secure) = env("GPS_COOKIE_SECURE") {
            self.cookie_secure = parse_bool("GPS_COOKIE_SECURE", &secure)?;
        }
        if let Some(seed) = env("GPS_SEED_DEMO") {
            self.seed_demo = parse_bool("GPS_SEED_DEMO", &seed)?;
        }
        if let Some(url) = env("NATS_URL") {
            self.nats.url = Some(url);
        }
        if let Some(port) = env("GPS_NATS_PORT") {
            self.nats.embedded_port = parse_number("GPS_NATS_PORT", &port)?;
        }
        if let Some(sync) = env("GPS_NATS_SYNC_ALWAYS") {
            self.nats.embedded_sync_always = parse_bool("GPS_NATS_SYNC_ALWAYS", &sync)?;
        }
        if let Some(secs) = env("GPS_NATS_DUPLICATE_WINDOW_SECS") {
            self.nats.duplicate_window =
                Duration::from_secs(parse_number("GPS_NATS_DUPLICATE_WINDOW_SECS", &secs)?);
        }
        if let Some(replicas) = env("GPS_NATS_REPLICAS") {
            self.nats.replicas = parse_number("GPS_NATS_REPLICAS", &replicas)?;
        }
        if let Some(user) = env("NATS_USER") {
            self.nats.user = Some(user);
        }
        if let Some(password) = env("NATS_PASSWORD") {
            self.nats.password = Some(gps_nats::Password::new(password));
        }
        self.check_without_password()?;
        match (&self.nats.user, &self.nats.password) {
            (Some(user), None) => bail!("NATS user {user:?} is configured but NATS_PASSWORD is not set"),
            (None, Some(_)) => bail!("NATS_PASSWORD is set but no NATS user; set NATS_USER too"),
            _ => Ok(()),
        }
    }

    /// Checks what the file alone can settle (the password comes later, from
    /// the environment).
    fn check_without_password(&self) -> anyhow::Result<()> {
        if !matches!(self.nats.replicas, 1 | 3 | 5) {
            bail!("nats replicas is {}; use 1 on a single node, 3 or 5 in a cluster", self.nats.replicas);
        }
        if self.nats.duplicate_window < Duration::from_secs(1) {
            bail!("the duplicate window must be at least 1 second; it deduplicates retried commands");
        }
        if !(self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")) {
            bail!(
                "the database URL must start with postgres://, e.g. postgres://user@127.0.0.1:5432/gps_read"
            );
        }
        if let Some(url) = &self.nats.url
            && !(url.starts_with("nats://") || url.starts_with("tls://"))
        {
            bail!("NATS URL {url:?} must start with nats:// or tls://");
        }
        Ok(())
    }
}

fn parse_addr(name: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| format!("{name} = {value:?} is not an address such as 127.0.0.1:8080"))
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> anyhow::Result<T> {
    value.trim().parse().map_err(|_| anyhow::anyhow!("{name} = {value:?} is not a valid whole number"))
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name} = {value:?} must be true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let mut settings = Settings::default();
        settings
            .apply_file("http_addr = \"0.0.0.0:9000\"\n[nats]\nduplicate_window_secs = 30\n")
            .expect("valid file");
        assert_eq!(settings.http_addr.port(), 9000);
        assert_eq!(settings.nats.duplicate_window, Duration::from_secs(30));
        let env = |name: &str| (name == "GPS_PORT").then(|| "9100".to_owned());
        settings.apply_env(&env).expect("valid env");
        assert_eq!(settings.http_addr, "0.0.0.0:9100".parse().expect("addr"));
    }

    #[test]
    fn a_misspelt_setting_in_the_file_is_reported() {
        let error = Settings::default().apply_file("htp_addr = \"x\"").expect_err("unknown field");
        assert!(format!("{error:#}").contains("htp_addr"), "{error:#}");
        let error =
            Settings::default().apply_file("[nats]\npassword = \"x\"").expect_err("no passwords in files");
        assert!(format!("{error:#}").contains("NATS_PASSWORD"), "{error:#}");
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_expected() {
        let env = |name: &str| (name == "GPS_PORT").then(|| "eighty".to_owned());
        let error = Settings::default().apply_env(&env).expect_err("bad port");
        assert!(error.to_string().contains("GPS_PORT"), "{error}");
        let env = |name: &str| (name == "NATS_URL").then(|| "http://x".to_owned());
        assert!(Settings::default().apply_env(&env).is_err());
        assert!(Settings::default().apply_env(&no_env).is_ok());
    }

    #[test]
    fn a_nats_user_needs_a_password_from_the_environment_and_it_never_prints() {
        let user_only = |name: &str| (name == "NATS_USER").then(|| "gateway".to_owned());
        let error = Settings::default().apply_env(&user_only).expect_err("password missing");
        assert!(error.to_string().contains("NATS_PASSWORD"), "{error}");
        let both = |name: &str| match name {
            "NATS_USER" => Some("gateway".to_owned()),
            "NATS_PASSWORD" => Some("s3cret-value".to_owned()),
            _ => None,
        };
        let mut settings = Settings::default();
        settings.apply_env(&both).expect("valid");
        let credentials = settings.nats.credentials().expect("credentials");
        assert_eq!(credentials.user, "gateway");
        assert_eq!(credentials.password.expose(), "s3cret-value");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
