//! What the gateway remembers between requests to authorize them without a
//! round trip to NATS and Postgres each time: the Brand aggregate (members,
//! roles, API clients) per brand, and who a session cookie or API key
//! belongs to.
//!
//! Why it stays correct:
//! - **Brands.** The gateway subscribes (core NATS) to every brand event as it
//!   is published (`gps.evt.*.brand.*`). Each message carries the aggregate
//!   version it creates (`Gps-Aggregate-Version`); the cache records the
//!   highest version announced per brand and serves a cached state only when
//!   it is at least that recent. The announcement can arrive before the event
//!   is stored, so a load that comes back older than announced is used for
//!   that request but not cached; the next request loads again. A member
//!   removed or an API client revoked therefore loses access on every gateway
//!   as soon as the event is published. While NATS is disconnected (messages
//!   could be missed) nothing is served from the cache, and entries older than
//!   [`BRAND_TTL`] are reloaded anyway.
//! - **Credentials.** A session or API key lookup is remembered for at most
//!   [`CREDENTIAL_TTL`]. Signing out forgets the session on this gateway at
//!   once and tells the others over `gps.gateway.signed_out`; an API key's
//!   revocation is a Brand event, so the brand check above refuses it even
//!   while its lookup is remembered.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gps_domain::brand::Brand;
use gps_domain::ids::BrandId;
use gps_nats::EventLog;

use crate::auth::Principal;

/// The longest a cached brand is served without reloading it.
pub const BRAND_TTL: Duration = Duration::from_secs(30);
/// The longest a session or API key lookup is remembered.
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(10);
/// Core NATS subject on which gateways announce ended sessions (the sha256
/// of the token, never the token).
pub const SIGNED_OUT_SUBJECT: &str = "gps.gateway.signed_out";

/// Every event of every Brand aggregate: membership, roles, API clients.
pub fn brand_events_subject() -> String {
    format!("{}.*.brand.*", gps_nats::subjects::EVENT_SUBJECT_PREFIX)
}
/// Entries kept per map before the oldest half is dropped.
const MAX_ENTRIES: usize = 100_000;

/// A resolved credential: who it is and, for a session, its CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) principal: Principal,
    pub(crate) csrf: Option<String>,
}

#[derive(Debug)]
struct CachedBrand {
    state: Arc<Brand>,
    version: u64,
    loaded_at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    brands: HashMap<BrandId, CachedBrand>,
    /// Highest aggregate version announced per brand.
    announced: HashMap<BrandId, u64>,
    credentials: HashMap<String, (Credential, Instant)>,
}

impl Inner {
    /// Records that `brand` has reached `version` and drops a cached state
    /// older than that.
    fn announce(&mut self, brand: &BrandId, version: u64) {
        let announced = self.announced.entry(brand.clone()).or_default();
        *announced = (*announced).max(version);
        if self.brands.get(brand).is_some_and(|cached| cached.version < version) {
            self.brands.remove(brand);
        }
    }
}

/// The gateway's authorization cache; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct AccessCache {
    inner: Arc<Mutex<Inner>>,
    /// Set once the invalidation subscriptions run; without them nothing is cached.
    watching: Arc<std::sync::atomic::AtomicBool>,
    /// The NATS client's connection count when the cache was last used: a
    /// higher count means it reconnected, and invalidations sent while it
    /// was away were missed, so everything cached is forgotten (fail closed).
    connects_seen: Arc<std::sync::atomic::AtomicU64>,
    /// How many invalidations (brand events, sign-out notices) arrived.
    notices: Arc<std::sync::atomic::AtomicU64>,
}

impl AccessCache {
    /// Subscribes to brand events and sign-outs, then keeps the cache in step
    /// with them in a background task for as long as the client lives.
    pub async fn watch(log: &EventLog) -> Result<Self, async_nats::SubscribeError> {
        let cache = AccessCache::default();
        let client = log.client();
        let mut brand_events = client.subscribe(brand_events_subject()).await?;
        let mut sign_outs = client.subscribe(SIGNED_OUT_SUBJECT).await?;
        // The subscriptions exist on the server once the client has flushed them.
        let _ = client.flush().await;
        cache.connects_seen.store(client.statistics().connects.load(Ordering::SeqCst), Ordering::SeqCst);
        cache.watching.store(true, std::sync::atomic::Ordering::SeqCst);
        let watcher = cache.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = brand_events.next() => match message {
                        Some(message) => {
                            watcher.notices.fetch_add(1, Ordering::SeqCst);
                            watcher.brand_event(&message);
                        }
                        None => break,
                    },
                    message = sign_outs.next() => match message {
                        Some(message) => {
                            watcher.notices.fetch_add(1, Ordering::SeqCst);
                            watcher.forget_credential(&String::from_utf8_lossy(&message.payload));
                        }
                        None => break,
                    },
                }
            }
            // The client is gone: stop trusting the cache.
            watcher.watching.store(false, std::sync::atomic::Ordering::SeqCst);
            watcher.lock().brands.clear();
        });
        Ok(cache)
    }

    /// How many invalidations (brand events and sign-out notices) this cache
    /// has received: with NATS permissions that do not let the gateway user
    /// receive them, it stays at zero.
    pub fn notices_received(&self) -> u64 {
        self.notices.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn brand_event(&self, message: &async_nats::Message) {
        let Some(address) = gps_nats::AggregateAddress::from_subject(&message.subject) else { return };
        let version = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(gps_nats::HEADER_AGGREGATE_VERSION))
            .and_then(|value| value.as_str().parse::<u64>().ok())
            // Without a version, nothing cached can be trusted for this brand.
            .unwrap_or(u64::MAX);
        let brand = address.brand().clone();
        self.lock().announce(&brand, version);
    }

    /// Forgets every cached brand and credential when the NATS client has
    /// connected again since the cache last looked.
    fn forget_after_reconnect(&self, log: &EventLog) {
        let connects = log.client().statistics().connects.load(Ordering::SeqCst);
        if self.connects_seen.swap(connects, Ordering::SeqCst) != connects {
            let mut inner = self.lock();
            inner.brands.clear();
            inner.credentials.clear();
            tracing::info!(
                "reconnected to NATS: forgot the cached brands and credentials (invalidations may be missed)"
            );
        }
    }

    fn usable(&self, log: &EventLog) -> bool {
        self.forget_after_reconnect(log);
        self.watching.load(std::sync::atomic::Ordering::SeqCst)
            && matches!(log.client().connection_state(), async_nats::connection::State::Connected)
    }

    /// The cached state of `brand`, when it is known to be current.
    pub(crate) fn brand(&self, log: &EventLog, brand: &BrandId) -> Option<Arc<Brand>> {
        if !self.usable(log) {
            return None;
        }
        let inner = self.lock();
        let cached = inner.brands.get(brand)?;
        let announced = inner.announced.get(brand).copied().unwrap_or(0);
        (cached.version >= announced && cached.loaded_at.elapsed() < BRAND_TTL).then(|| cached.state.clone())
    }

    /// Remembers a freshly loaded brand state at `version`, unless a newer
    /// version was announced meanwhile.
    pub(crate) fn store_brand(&self, log: &EventLog, brand: &BrandId, state: Arc<Brand>, version: u64) {
        if !self.usable(log) {
            return;
        }
        let mut inner = self.lock();
        if inner.announced.get(brand).is_some_and(|announced| *announced > version) {
            return;
        }
        if inner.brands.len() >= MAX_ENTRIES {
            inner.brands.clear();
        }
        inner.brands.insert(brand.clone(), CachedBrand { state, version, loaded_at: Instant::now() });
    }

    /// Records a brand state this gateway has just written: announced at
    /// `version` and cached.
    pub(crate) fn brand_changed(&self, log: &EventLog, brand: &BrandId, state: Brand, version: u64) {
        self.lock().announce(brand, version);
        self.store_brand(log, brand, Arc::new(state), version);
    }

    /// A remembered credential, by the sha256 of its secret, while the
    /// sign-out notices that invalidate it can be trusted to arrive.
    pub(crate) fn credential(&self, log: &EventLog, secret_hash: &str) -> Option<Credential> {
        if !self.usable(log) {
            return None;
        }
        let inner = self.lock();
        let (credential, at) = inner.credentials.get(secret_hash)?;
        (at.elapsed() < CREDENTIAL_TTL).then(|| credential.clone())
    }

    /// Remembers a credential, by the sha256 of its secret.
    pub(crate) fn store_credential(&self, secret_hash: String, credential: Credential) {
        let mut inner = self.lock();
        if inner.credentials.len() >= MAX_ENTRIES {
            let now = Instant::now();
            inner.credentials.retain(|_, (_, at)| now.duration_since(*at) < CREDENTIAL_TTL);
            if inner.credentials.len() >= MAX_ENTRIES {
                inner.credentials.clear();
            }
        }
        inner.credentials.insert(secret_hash, (credential, Instant::now()));
    }

    /// Forgets a credential here at once.
    pub(crate) fn forget_credential(&self, secret_hash: &str) {
        self.lock().credentials.remove(secret_hash);
    }

    /// Forgets a session on this gateway and tells the others.
    pub async fn signed_out(&self, log: &EventLog, secret_hash: &str) {
        self.forget_credential(secret_hash);
        let client = log.client();
        if let Err(error) = client.publish(SIGNED_OUT_SUBJECT, secret_hash.to_owned().into()).await {
            tracing::warn!(%error, "could not tell other gateways about a sign-out; their cache expires it");
        }
        let _ = client.flush().await;
    }
}
