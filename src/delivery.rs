//! The delivery worker's wiring for `gps agent` and `gps up`: C2PA signing
//! credentials, the secrets key, signed URLs for webhook receivers and the
//! worker settings, all from the environment (`docs/configuration.md`,
//! "Delivery"); and `gps secrets set|remove`, which stores a destination
//! secret sealed without it ever entering an event or a log line.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use gps_compute_agents::delivery::credentials::ContentCredentials;
use gps_compute_agents::delivery::{DeliverySettings, DeliveryWorker, SignedUrls};
use gps_compute_agents::secrets::{SecretVault, SecretsKey};
use gps_compute_agents::store::ComputeStore;

use crate::agent::compute_database_url;
use gps_domain::export::SecretName;
use gps_domain::ids::BrandId;
use gps_storage::{FetchLimits, ObjectKey, ObjectStore, SafeFetcher};

use crate::agent::{env, number};
use crate::config::Settings;

/// Signed CDN URLs, absolute, with the gateways' signing key.
struct CdnUrls(gps_gateway::media::Media);

impl SignedUrls for CdnUrls {
    fn signed_url(&self, key: &ObjectKey) -> String {
        self.0.signed_url(key)
    }
}

/// The C2PA credentials: `GPS_C2PA_CERT_FILE` and `GPS_C2PA_KEY_FILE`, else
/// the local development certificate under `<data_dir>/c2pa` (generated once, and said so).
pub(crate) fn credentials(settings: &Settings) -> anyhow::Result<ContentCredentials> {
    match (env("GPS_C2PA_CERT_FILE"), env("GPS_C2PA_KEY_FILE")) {
        (Some(cert), Some(key)) => ContentCredentials::from_files(Path::new(&cert), Path::new(&key))
            .context("loading GPS_C2PA_CERT_FILE / GPS_C2PA_KEY_FILE"),
        (None, None) => {
            let dir = settings.data_dir.join("c2pa");
            let (credentials, generated) = ContentCredentials::development(&dir).with_context(|| {
                format!("preparing the development C2PA certificate in {}", dir.display())
            })?;
            if generated {
                tracing::warn!(dir = %dir.display(), "generated a local development C2PA signing certificate; renditions are signed but trusted by nobody else — set GPS_C2PA_CERT_FILE and GPS_C2PA_KEY_FILE in production");
                println!(
                    "generated a local development C2PA certificate in {} (not trusted outside this installation)",
                    dir.display()
                );
            } else {
                tracing::info!(dir = %dir.display(), "signing renditions with the local development C2PA certificate");
            }
            Ok(credentials)
        }
        _ => anyhow::bail!(
            "set both GPS_C2PA_CERT_FILE and GPS_C2PA_KEY_FILE, or neither (development certificate)"
        ),
    }
}

/// The secrets key: `GPS_SECRETS_KEY` (64 hex digits), else generated once
/// into `<data_dir>/secrets-key` (mode 600) and never printed.
pub(crate) fn secrets_key(settings: &Settings) -> anyhow::Result<SecretsKey> {
    if let Some(hex_digits) = env("GPS_SECRETS_KEY") {
        return SecretsKey::from_hex(&hex_digits)
            .map_err(|reason| anyhow::anyhow!("GPS_SECRETS_KEY: {reason}"));
    }
    let path = settings.data_dir.join("secrets-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return SecretsKey::from_hex(&existing).map_err(|reason| {
            anyhow::anyhow!(
                "{}: {reason}; it seals stored secrets, so restore it rather than delete it",
                path.display()
            )
        });
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let key = SecretsKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, key.to_hex().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated the key that seals delivery secrets");
    Ok(key)
}

async fn vault(settings: &Settings) -> anyhow::Result<SecretVault> {
    let store = ComputeStore::connect(&compute_database_url(settings), 4)
        .await
        .context("connecting to the compute database (delivery secrets); set GPS_COMPUTE_DATABASE_URL")?;
    Ok(SecretVault::new(store.pool().clone(), &secrets_key(settings)?))
}

/// The worker settings from `GPS_DELIVERY_*`.
fn delivery_settings() -> anyhow::Result<DeliverySettings> {
    let host = env("HOSTNAME").unwrap_or_else(|| "local".into());
    let mut delivery =
        DeliverySettings::new(env("GPS_DELIVERY_NAME").unwrap_or_else(|| {
            format!("delivery-{}@{host}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        }));
    delivery.max_in_flight = number("GPS_DELIVERY_CONCURRENCY", delivery.max_in_flight)?.max(1);
    delivery.parallel_renditions =
        number("GPS_DELIVERY_PARALLEL_RENDITIONS", delivery.parallel_renditions)?.max(1);
    delivery.retry_base = Duration::from_secs(number("GPS_DELIVERY_RETRY_BASE_SECS", 30u64)?.max(1));
    delivery.retry_cap = Duration::from_secs(number("GPS_DELIVERY_RETRY_CAP_SECS", 1800u64)?.max(1));
    delivery.max_attempts = number("GPS_DELIVERY_MAX_ATTEMPTS", delivery.max_attempts)?.max(1);
    Ok(delivery)
}

/// A delivery worker over `store`, configured from `settings` and the environment.
pub(crate) async fn worker(
    settings: &Settings,
    commands: gps_commands::CommandHandler,
    store: ObjectStore,
) -> anyhow::Result<Arc<DeliveryWorker>> {
    let key = match &settings.media.url_signing_key {
        Some(key) => gps_gateway::media::UrlSigningKey::new(key.expose().as_bytes().to_vec())
            .map_err(anyhow::Error::msg)?,
        None => crate::up::local_signing_key(&settings.data_dir)?,
    };
    let mut media = gps_gateway::media::MediaSettings::new(key);
    // Webhook receivers need absolute URLs; without a CDN in front, the gateway itself serves them.
    media.public_base_url = if settings.media.public_base_url.is_empty() {
        format!("http://{}", settings.http_addr)
    } else {
        settings.media.public_base_url.clone()
    };
    media.url_lifetime = Duration::from_secs(settings.media.url_lifetime_secs);
    let urls = CdnUrls(gps_gateway::media::Media::new(store.clone(), media));
    let limits = FetchLimits { max_bytes: 64 * 1024, timeout: Duration::from_secs(30), max_redirects: 0 };
    Ok(Arc::new(DeliveryWorker {
        commands,
        store,
        credentials: Arc::new(credentials(settings)?),
        secrets: vault(settings).await?,
        targets: SafeFetcher::new(limits),
        urls: Arc::new(urls),
        settings: delivery_settings()?,
    }))
}

/// `gps secrets …`: destination secrets, sealed in the compute database.
#[derive(Debug, Subcommand)]
pub(crate) enum SecretsAction {
    /// Stores a secret read from standard input (a webhook signing secret, or
    /// S3 credentials as JSON: endpoint, region, access_key_id,
    /// secret_access_key, path_style), replacing one of the same name.
    Set {
        /// The brand.
        brand: String,
        /// The name exports refer to, e.g. `ACME_DAM_WEBHOOK`.
        name: String,
    },
    /// Removes a secret.
    Remove {
        /// The brand.
        brand: String,
        /// The name.
        name: String,
    },
}

/// Runs a `gps secrets` command.
pub(crate) async fn secrets(settings: Settings, action: SecretsAction) -> anyhow::Result<()> {
    let vault = vault(&settings).await?;
    match action {
        SecretsAction::Set { brand, name } => {
            let brand = BrandId::parse(&brand)?;
            let name = SecretName::parse(&name)?;
            let mut value = Vec::new();
            std::io::stdin().read_to_end(&mut value).context("reading the secret from standard input")?;
            while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                value.pop();
            }
            vault.set(&brand, &name, &value).await?;
            println!("stored secret {name} of brand {brand} ({} bytes, sealed)", value.len());
        }
        SecretsAction::Remove { brand, name } => {
            let brand = BrandId::parse(&brand)?;
            let name = SecretName::parse(&name)?;
            if vault.remove(&brand, &name).await? {
                println!("removed secret {name} of brand {brand}");
            } else {
                anyhow::bail!("brand {brand} has no secret {name}");
            }
        }
    }
    Ok(())
}
