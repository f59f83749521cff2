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
    /// Reverse proxies in front of the gateway, whose `X-Forwarded-For` is
    /// believed (sign-in throttling counts per source address).
    /// `GPS_TRUSTED_PROXIES`, comma-separated IP addresses.
    pub(crate) trusted_proxies: Vec<std::net::IpAddr>,
    /// On an installation without accounts, `gps up` creates the `demo` brand
    /// and its owner with a random password. `GPS_SEED_DEMO`; turn it off in
    /// production.
    pub(crate) seed_demo: bool,
    /// Who may create brands: `platform_admins` (default; granted with `gps
    /// admin grant-platform-admin`) or `any_person`. `GPS_BRAND_CREATION`.
    pub(crate) brand_creation: gps_gateway::accounts::BrandCreation,
    /// Where the projector and agent roles serve `/metrics` (the gateway
    /// serves it on its own port). `metrics_addr`, `GPS_METRICS_ADDR`; unset =
    /// not served.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// The bearer token that lets callers from elsewhere read `/metrics`;
    /// without it, only callers on the same machine may. `GPS_METRICS_TOKEN`,
    /// environment only.
    pub(crate) metrics_token: Option<gps_storage::SecretKey>,
    /// `/readyz` reports a projection more than this many stream sequences
    /// behind the log. `readiness_max_lag`, `GPS_READINESS_MAX_LAG`.
    pub(crate) readiness_max_lag: u64,
    /// The address people reach the gateway at, e.g. `https://gps.example.com`:
    /// links in mail point there. `public_url`, `GPS_PUBLIC_URL`; unset = the
    /// address each request was sent to (its `Host`).
    pub(crate) public_url: Option<String>,
    /// Mail to people (added to a brand, with a link to choose a password).
    pub(crate) mail: MailConfig,
    /// Object storage.
    pub(crate) storage: StorageConfig,
    /// Uploads and CDN URLs.
    pub(crate) media: MediaConfig,
}

/// Where objects are stored: an S3-compatible endpoint, or (no endpoint) the
/// embedded one over `<data_dir>/objects`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageConfig {
    /// `GPS_S3_ENDPOINT`; unset = the embedded endpoint.
    pub(crate) endpoint: Option<String>,
    /// `GPS_S3_REGION`.
    pub(crate) region: String,
    /// `GPS_S3_BUCKET`.
    pub(crate) bucket: String,
    /// `GPS_S3_ACCESS_KEY_ID`.
    pub(crate) access_key_id: Option<String>,
    /// `GPS_S3_SECRET_ACCESS_KEY`, environment only.
    pub(crate) secret_access_key: Option<gps_storage::SecretKey>,
    /// `GPS_S3_PATH_STYLE`.
    pub(crate) path_style: bool,
}

/// Where mail goes. Today an outbox folder: one `.eml` file per message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MailConfig {
    /// `mail_outbox_dir`, `GPS_MAIL_OUTBOX_DIR`; unset = `<data_dir>/outbox`.
    pub(crate) outbox_dir: Option<PathBuf>,
    /// The `From` of every mail. `mail_from`, `GPS_MAIL_FROM`.
    pub(crate) from: String,
    /// How long a mailed link to choose a password works.
    /// `password_link_hours`, `GPS_PASSWORD_LINK_HOURS`.
    pub(crate) password_link_hours: u64,
}

impl Settings {
    /// The outbox folder mail is written to.
    pub(crate) fn mail_outbox_dir(&self) -> PathBuf {
        self.mail.outbox_dir.clone().unwrap_or_else(|| self.data_dir.join("outbox"))
    }
}

/// Upload limits and CDN URLs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediaConfig {
    /// `GPS_UPLOAD_MAX_BYTES`.
    pub(crate) max_upload_bytes: u64,
    /// `GPS_IMAGE_MAX_PIXELS`.
    pub(crate) max_image_pixels: u64,
    /// `GPS_PUBLIC_BASE_URL`: where a CDN in front serves `/cdn/…`.
    pub(crate) public_base_url: String,
    /// `GPS_CDN_URL_LIFETIME_SECS`.
    pub(crate) url_lifetime_secs: u64,
    /// `GPS_CDN_SIGNING_KEY`, environment only; unset = generated once into
    /// `<data_dir>/cdn-signing-key` (mode 600).
    pub(crate) url_signing_key: Option<gps_storage::SecretKey>,
    /// `GPS_IMPORT_MAX_BYTES`: the largest catalog import request.
    pub(crate) import_max_bytes: u64,
    /// `GPS_IMPORT_MAX_ROWS`.
    pub(crate) import_max_rows: u32,
    /// `GPS_IMPORT_MAX_IMAGES`.
    pub(crate) import_max_images: u32,
    /// `GPS_IMPORT_ZIP_MAX_BYTES`: all files of an images ZIP, inflated.
    pub(crate) import_zip_max_bytes: u64,
    /// `GPS_IMPORT_FETCH_ALLOW`: internal `host:port` addresses image URLs may
    /// reach (comma-separated socket addresses); empty = none.
    pub(crate) import_fetch_allow: Vec<SocketAddr>,
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
    /// The CA that signed the servers' TLS certificates (PEM). Set, every
    /// connection to `url` must be TLS. `GPS_NATS_CA_FILE`.
    pub(crate) ca_file: Option<PathBuf>,
}

impl NatsSettings {
    /// The login, when a user is configured.
    pub(crate) fn credentials(&self) -> Option<gps_nats::Credentials> {
        Some(gps_nats::Credentials { user: self.user.clone()?, password: self.password.clone()? })
    }

    /// How to connect to the server named by `url`: login and trusted CA.
    pub(crate) fn connect_settings(&self) -> gps_nats::ConnectSettings {
        gps_nats::ConnectSettings { credentials: self.credentials(), ca_file: self.ca_file.clone() }
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
                ca_file: None,
            },
            database_url: "postgres://postgres@127.0.0.1:5432/gps_read".into(),
            cookie_secure: false,
            trusted_proxies: Vec::new(),
            seed_demo: true,
            brand_creation: gps_gateway::accounts::BrandCreation::PlatformAdmins,
            metrics_addr: None,
            metrics_token: None,
            readiness_max_lag: 10_000,
            public_url: None,
            mail: MailConfig {
                outbox_dir: None,
                from: gps_gateway::mail::DEFAULT_FROM.into(),
                password_link_hours: 72,
            },
            storage: StorageConfig {
                endpoint: None,
                region: "us-east-1".into(),
                bucket: "gps".into(),
                access_key_id: None,
                secret_access_key: None,
                path_style: true,
            },
            media: MediaConfig {
                max_upload_bytes: 40 * 1024 * 1024,
                max_image_pixels: 50_000_000,
                public_base_url: String::new(),
                url_lifetime_secs: 24 * 3600,
                url_signing_key: None,
                import_max_bytes: 256 * 1024 * 1024,
                import_max_rows: 10_000,
                import_max_images: 50_000,
                import_zip_max_bytes: 2 * 1024 * 1024 * 1024,
                import_fetch_allow: Vec::new(),
            },
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
    trusted_proxies: Option<Vec<String>>,
    seed_demo: Option<bool>,
    brand_creation: Option<String>,
    metrics_addr: Option<String>,
    readiness_max_lag: Option<u64>,
    public_url: Option<String>,
    mail_outbox_dir: Option<PathBuf>,
    mail_from: Option<String>,
    password_link_hours: Option<u64>,
    #[serde(default)]
    nats: FileNats,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    media: FileMedia,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    endpoint: Option<String>,
    region: Option<String>,
    bucket: Option<String>,
    access_key_id: Option<String>,
    path_style: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMedia {
    max_upload_bytes: Option<u64>,
    max_image_pixels: Option<u64>,
    public_base_url: Option<String>,
    url_lifetime_secs: Option<u64>,
    import_max_bytes: Option<u64>,
    import_max_rows: Option<u32>,
    import_max_images: Option<u32>,
    import_zip_max_bytes: Option<u64>,
    import_fetch_allow: Option<Vec<String>>,
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
    ca_file: Option<PathBuf>,
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
                let text = error.to_string();
                let hint = if text.contains("unknown field `password`") {
                    " (passwords are read from the environment only: set NATS_PASSWORD)"
                } else if text.contains("unknown field `secret_access_key`") {
                    " (secrets are read from the environment only: set GPS_S3_SECRET_ACCESS_KEY)"
                } else if text.contains("unknown field `url_signing_key`") {
                    " (secrets are read from the environment only: set GPS_CDN_SIGNING_KEY)"
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
        if let Some(proxies) = file.trusted_proxies {
            self.trusted_proxies = parse_addresses("trusted_proxies", proxies.iter().map(String::as_str))?;
        }
        if let Some(seed) = file.seed_demo {
            self.seed_demo = seed;
        }
        if let Some(policy) = file.brand_creation {
            self.brand_creation = parse_brand_creation("brand_creation", &policy)?;
        }
        if let Some(lag) = file.readiness_max_lag {
            self.readiness_max_lag = lag;
        }
        if let Some(addr) = file.metrics_addr {
            self.metrics_addr = Some(parse_addr("metrics_addr", &addr)?);
        }
        if let Some(url) = file.public_url {
            self.public_url = Some(url);
        }
        if let Some(dir) = file.mail_outbox_dir {
            self.mail.outbox_dir = Some(dir);
        }
        if let Some(from) = file.mail_from {
            self.mail.from = from;
        }
        if let Some(hours) = file.password_link_hours {
            self.mail.password_link_hours = hours;
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
        if let Some(ca_file) = nats.ca_file {
            self.nats.ca_file = Some(ca_file);
        }
        let storage = file.storage;
        if let Some(endpoint) = storage.endpoint {
            self.storage.endpoint = Some(endpoint);
        }
        if let Some(region) = storage.region {
            self.storage.region = region;
        }
        if let Some(bucket) = storage.bucket {
            self.storage.bucket = bucket;
        }
        if let Some(id) = storage.access_key_id {
            self.storage.access_key_id = Some(id);
        }
        if let Some(path_style) = storage.path_style {
            self.storage.path_style = path_style;
        }
        let media = file.media;
        if let Some(bytes) = media.max_upload_bytes {
            self.media.max_upload_bytes = bytes;
        }
        if let Some(pixels) = media.max_image_pixels {
            self.media.max_image_pixels = pixels;
        }
        if let Some(url) = media.public_base_url {
            self.media.public_base_url = url;
        }
        if let Some(secs) = media.url_lifetime_secs {
            self.media.url_lifetime_secs = secs;
        }
        if let Some(bytes) = media.import_max_bytes {
            self.media.import_max_bytes = bytes;
        }
        if let Some(rows) = media.import_max_rows {
            self.media.import_max_rows = rows;
        }
        if let Some(images) = media.import_max_images {
            self.media.import_max_images = images;
        }
        if let Some(bytes) = media.import_zip_max_bytes {
            self.media.import_zip_max_bytes = bytes;
        }
        if let Some(allow) = media.import_fetch_allow {
            self.media.import_fetch_allow = allow
                .iter()
                .map(|address| parse_addr("media.import_fetch_allow", address))
                .collect::<anyhow::Result<_>>()?;
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
        if let Some(proxies) = env("GPS_TRUSTED_PROXIES") {
            self.trusted_proxies = parse_addresses(
                "GPS_TRUSTED_PROXIES",
                proxies.split(',').map(str::trim).filter(|entry| !entry.is_empty()),
            )?;
        }
        if let Some(seed) = env("GPS_SEED_DEMO") {
            self.seed_demo = parse_bool("GPS_SEED_DEMO", &seed)?;
        }
        if let Some(lag) = env("GPS_READINESS_MAX_LAG") {
            self.readiness_max_lag = parse_number("GPS_READINESS_MAX_LAG", &lag)?;
        }
        if let Some(addr) = env("GPS_METRICS_ADDR") {
            self.metrics_addr = Some(parse_addr("GPS_METRICS_ADDR", &addr)?);
        }
        if let Some(url) = env("GPS_PUBLIC_URL") {
            self.public_url = Some(url);
        }
        if let Some(dir) = env("GPS_MAIL_OUTBOX_DIR") {
            self.mail.outbox_dir = Some(PathBuf::from(dir));
        }
        if let Some(from) = env("GPS_MAIL_FROM") {
            self.mail.from = from;
        }
        if let Some(hours) = env("GPS_PASSWORD_LINK_HOURS") {
            self.mail.password_link_hours = parse_number("GPS_PASSWORD_LINK_HOURS", &hours)?;
        }
        if let Some(token) = env("GPS_METRICS_TOKEN") {
            self.metrics_token = Some(gps_storage::SecretKey::new(token));
        }
        if let Some(policy) = env("GPS_BRAND_CREATION") {
            self.brand_creation = parse_brand_creation("GPS_BRAND_CREATION", &policy)?;
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
        if let Some(ca_file) = env("GPS_NATS_CA_FILE") {
            self.nats.ca_file = Some(PathBuf::from(ca_file));
        }
        if let Some(endpoint) = env("GPS_S3_ENDPOINT") {
            self.storage.endpoint = Some(endpoint);
        }
        if let Some(region) = env("GPS_S3_REGION") {
            self.storage.region = region;
        }
        if let Some(bucket) = env("GPS_S3_BUCKET") {
            self.storage.bucket = bucket;
        }
        if let Some(id) = env("GPS_S3_ACCESS_KEY_ID") {
            self.storage.access_key_id = Some(id);
        }
        if let Some(secret) = env("GPS_S3_SECRET_ACCESS_KEY") {
            self.storage.secret_access_key = Some(gps_storage::SecretKey::new(secret));
        }
        if let Some(path_style) = env("GPS_S3_PATH_STYLE") {
            self.storage.path_style = parse_bool("GPS_S3_PATH_STYLE", &path_style)?;
        }
        if let Some(bytes) = env("GPS_UPLOAD_MAX_BYTES") {
            self.media.max_upload_bytes = parse_number("GPS_UPLOAD_MAX_BYTES", &bytes)?;
        }
        if let Some(pixels) = env("GPS_IMAGE_MAX_PIXELS") {
            self.media.max_image_pixels = parse_number("GPS_IMAGE_MAX_PIXELS", &pixels)?;
        }
        if let Some(url) = env("GPS_PUBLIC_BASE_URL") {
            self.media.public_base_url = url;
        }
        if let Some(secs) = env("GPS_CDN_URL_LIFETIME_SECS") {
            self.media.url_lifetime_secs = parse_number("GPS_CDN_URL_LIFETIME_SECS", &secs)?;
        }
        if let Some(bytes) = env("GPS_IMPORT_MAX_BYTES") {
            self.media.import_max_bytes = parse_number("GPS_IMPORT_MAX_BYTES", &bytes)?;
        }
        if let Some(rows) = env("GPS_IMPORT_MAX_ROWS") {
            self.media.import_max_rows = parse_number("GPS_IMPORT_MAX_ROWS", &rows)?;
        }
        if let Some(images) = env("GPS_IMPORT_MAX_IMAGES") {
            self.media.import_max_images = parse_number("GPS_IMPORT_MAX_IMAGES", &images)?;
        }
        if let Some(bytes) = env("GPS_IMPORT_ZIP_MAX_BYTES") {
            self.media.import_zip_max_bytes = parse_number("GPS_IMPORT_ZIP_MAX_BYTES", &bytes)?;
        }
        if let Some(allow) = env("GPS_IMPORT_FETCH_ALLOW") {
            self.media.import_fetch_allow = allow
                .split(',')
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .map(|address| parse_addr("GPS_IMPORT_FETCH_ALLOW", address))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(key) = env("GPS_CDN_SIGNING_KEY") {
            if key.len() < 32 {
                bail!(
                    "GPS_CDN_SIGNING_KEY has {} characters; give at least 32 (e.g. `openssl rand -hex 32`)",
                    key.len()
                );
            }
            self.media.url_signing_key = Some(gps_storage::SecretKey::new(key));
        }
        if self.storage.endpoint.is_some()
            && (self.storage.access_key_id.is_none() || self.storage.secret_access_key.is_none())
        {
            bail!("GPS_S3_ENDPOINT is set; set GPS_S3_ACCESS_KEY_ID and GPS_S3_SECRET_ACCESS_KEY too");
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
        if let Some(endpoint) = &self.storage.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            bail!("storage endpoint {endpoint:?} must start with http:// or https://");
        }
        if self.media.max_upload_bytes < 1024 {
            bail!("the upload limit is {} bytes; allow at least 1024", self.media.max_upload_bytes);
        }
        if self.media.url_lifetime_secs < 60 {
            bail!("CDN URLs must live at least 60 seconds; {} was given", self.media.url_lifetime_secs);
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("the public URL {url:?} must start with http:// or https://, e.g. https://gps.example.com");
        }
        if !(1..=24 * 30).contains(&self.mail.password_link_hours) {
            bail!(
                "password links must work between 1 hour and 30 days (720 hours); {} was given",
                self.mail.password_link_hours
            );
        }
        if self.mail.from.contains(['\r', '\n']) || !self.mail.from.contains('@') {
            bail!("mail_from {:?} must be one address, e.g. \"GPS <gps@example.com>\"", self.mail.from);
        }
        let base = &self.media.public_base_url;
        if !(base.is_empty() || base.starts_with("http://") || base.starts_with("https://")) {
            bail!("the public base URL {base:?} must start with http:// or https:// (or be empty)");
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

fn parse_addresses<'a>(
    name: &str,
    entries: impl Iterator<Item = &'a str>,
) -> anyhow::Result<Vec<std::net::IpAddr>> {
    entries
        .map(|entry| {
            entry.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "{name}: {entry:?} is not an IP address; list the proxies' addresses, e.g. 10.0.0.2"
                )
            })
        })
        .collect()
}

fn parse_brand_creation(name: &str, value: &str) -> anyhow::Result<gps_gateway::accounts::BrandCreation> {
    value.parse().map_err(|reason| anyhow::anyhow!("{name}: {reason}"))
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

    #[test]
    fn storage_and_media_settings_layer_and_secrets_stay_out_of_files() {
        let mut settings = Settings::default();
        settings
            .apply_file("[storage]\nendpoint = \"http://minio:9000\"\nbucket = \"assets\"\n[media]\nmax_upload_bytes = 2048\n")
            .expect("valid file");
        assert_eq!(settings.storage.bucket, "assets");
        assert_eq!(settings.media.max_upload_bytes, 2048);
        let error = Settings::default()
            .apply_file("[storage]\nsecret_access_key = \"x\"")
            .expect_err("no secrets in files");
        assert!(format!("{error:#}").contains("GPS_S3_SECRET_ACCESS_KEY"), "{error:#}");
        let missing_secret = |name: &str| (name == "GPS_S3_ENDPOINT").then(|| "http://minio:9000".to_owned());
        assert!(Settings::default().apply_env(&missing_secret).is_err());
        let short_key = |name: &str| (name == "GPS_CDN_SIGNING_KEY").then(|| "short".to_owned());
        assert!(Settings::default().apply_env(&short_key).is_err());
        let key = |name: &str| (name == "GPS_CDN_SIGNING_KEY").then(|| "k".repeat(40));
        let mut settings = Settings::default();
        settings.apply_env(&key).expect("valid");
        assert!(!format!("{settings:?}").contains(&"k".repeat(40)));
    }

    #[test]
    fn only_platform_admins_create_brands_unless_the_operator_opens_it_to_any_person() {
        use gps_gateway::accounts::BrandCreation;
        assert_eq!(Settings::default().brand_creation, BrandCreation::PlatformAdmins);
        let mut settings = Settings::default();
        settings.apply_file("brand_creation = \"any_person\"\n").expect("valid file");
        assert_eq!(settings.brand_creation, BrandCreation::AnyPerson);
        let env = |name: &str| (name == "GPS_BRAND_CREATION").then(|| "platform_admins".to_owned());
        settings.apply_env(&env).expect("valid env");
        assert_eq!(settings.brand_creation, BrandCreation::PlatformAdmins);
        let env = |name: &str| (name == "GPS_BRAND_CREATION").then(|| "everyone".to_owned());
        let error = Settings::default().apply_env(&env).expect_err("unknown policy");
        let message = format!("{error:#}");
        assert!(message.contains("GPS_BRAND_CREATION") && message.contains("any_person"), "{message}");
    }

    #[test]
    fn mail_goes_to_the_data_folders_outbox_unless_a_folder_is_configured() {
        let settings = Settings::default();
        assert_eq!(settings.mail_outbox_dir(), PathBuf::from(".gps/outbox"));
        assert_eq!(settings.mail.password_link_hours, 72);
        assert_eq!(settings.public_url, None);
        let mut settings = Settings::default();
        settings
            .apply_file(
                "mail_outbox_dir = \"/var/spool/gps\"\npublic_url = \"https://gps.example.com\"\npassword_link_hours = 24\n",
            )
            .expect("valid file");
        assert_eq!(settings.mail_outbox_dir(), PathBuf::from("/var/spool/gps"));
        assert_eq!(settings.public_url.as_deref(), Some("https://gps.example.com"));
        let env = |name: &str| match name {
            "GPS_MAIL_OUTBOX_DIR" => Some("/srv/outbox".to_owned()),
            "GPS_PASSWORD_LINK_HOURS" => Some("48".to_owned()),
            _ => None,
        };
        settings.apply_env(&env).expect("valid env");
        assert_eq!(settings.mail_outbox_dir(), PathBuf::from("/srv/outbox"));
        assert_eq!(settings.mail.password_link_hours, 48);
        let error =
            Settings::default().apply_file("public_url = \"gps.example.com\"\n").expect_err("no scheme");
        assert!(format!("{error:#}").contains("https://"), "{error:#}");
        let env = |name: &str| (name == "GPS_PASSWORD_LINK_HOURS").then(|| "0".to_owned());
        assert!(Settings::default().apply_env(&env).is_err());
    }

    #[test]
    fn import_limits_layer_and_the_fetch_allow_list_takes_only_socket_addresses() {
        let mut settings = Settings::default();
        assert!(settings.media.import_fetch_allow.is_empty(), "nothing internal is reachable by default");
        settings
            .apply_file("[media]\nimport_max_rows = 500\nimport_fetch_allow = [\"10.1.2.3:8080\"]\n")
            .expect("valid file");
        assert_eq!(settings.media.import_max_rows, 500);
        assert_eq!(settings.media.import_fetch_allow, vec![SocketAddr::from(([10, 1, 2, 3], 8080))]);
        let env = |name: &str| match name {
            "GPS_IMPORT_FETCH_ALLOW" => Some("127.0.0.1:9000, [::1]:9001".to_owned()),
            "GPS_IMPORT_MAX_BYTES" => Some("1048576".to_owned()),
            _ => None,
        };
        settings.apply_env(&env).expect("valid environment");
        assert_eq!(settings.media.import_fetch_allow.len(), 2);
        assert_eq!(settings.media.import_max_bytes, 1_048_576);
        let host_only = |name: &str| (name == "GPS_IMPORT_FETCH_ALLOW").then(|| "10.0.0.1".to_owned());
        let error = Settings::default().apply_env(&host_only).expect_err("a port is required");
        assert!(format!("{error:#}").contains("GPS_IMPORT_FETCH_ALLOW"), "{error:#}");
    }
}
