//! One product per SKU in a brand, decided on the write side.
//!
//! A product's SKU never changes, but two writers can create two products with
//! the same SKU at once (two imports, an import and the API, two API calls with
//! different product ids), and a read model that lags cannot see the first. So
//! before a product is created its SKU is claimed in the JetStream key-value
//! bucket [`SKU_CLAIMS_BUCKET`]: a create-only write (the server refuses it
//! when the key exists) under `<brand>.<sha256 of the SKU>`, whose value is the
//! product id. Whoever holds the claim owns the SKU; everyone else is refused,
//! or (an import) updates the holder.
//!
//! A claim whose product was not created with that SKU (its creation was
//! refused, or its writer died in between) is released by the refused writer
//! or taken over by the next one; a claim whose product does not exist at all
//! may still be in flight, so it is taken over only once it is older than
//! [`STALE_CLAIM_AFTER`]. Products created before claims existed are
//! claimed once per installation by [`SkuClaims::backfill`].

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use gps_domain::DomainError;
use gps_domain::ids::{BrandId, ProductId};
use gps_domain::product::{Product, ProductCommand};
use gps_domain::values::Sku;
use gps_domain::wire::EventEnvelope;
use gps_nats::{EventLog, LogScan};
use sha2::{Digest, Sha256};

use crate::{CommandError, CommandHandler, CommandMeta, Outcome};

/// The key-value bucket holding one claim per (brand, SKU).
pub const SKU_CLAIMS_BUCKET: &str = "GPS_SKU_CLAIMS";

/// How old a claim whose product does not exist must be before another
/// product may take its SKU: far longer than any command takes, so a claim
/// whose creation is still in flight is never taken.
pub const STALE_CLAIM_AFTER: Duration = Duration::from_secs(5 * 60);

/// The key that records that products older than claims have been claimed.
const BACKFILLED_KEY: &str = "backfilled";

/// Why a SKU could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another product holds the SKU.
    #[error(
        "SKU {sku} is already product {holder} in this brand; update that product, or give this one another SKU"
    )]
    Taken {
        /// The SKU.
        sku: String,
        /// The product that has it.
        holder: ProductId,
    },
    /// Another product's creation claimed the SKU moments ago.
    #[error(
        "SKU {sku} is being created as product {holder}; if that creation failed, the SKU is free again \
         within {} minutes",
        STALE_CLAIM_AFTER.as_secs() / 60
    )]
    Pending {
        /// The SKU.
        sku: String,
        /// The product being created with it.
        holder: ProductId,
    },
    /// The bucket could not be reached; retrying is safe.
    #[error("SKU claims unavailable: {0}")]
    Unavailable(String),
}

impl From<ClaimError> for CommandError {
    fn from(error: ClaimError) -> Self {
        match error {
            ClaimError::Unavailable(message) => CommandError::Unavailable(message),
            refused @ (ClaimError::Taken { .. } | ClaimError::Pending { .. }) => CommandError::Rejected {
                address: "sku".into(),
                error: DomainError::InvalidState(refused.to_string()),
            },
        }
    }
}

/// A claim as stored.
#[derive(Debug, Clone)]
struct Claim {
    holder: ProductId,
    revision: u64,
    age: Duration,
}

/// The SKU claims of every brand.
#[derive(Clone)]
pub struct SkuClaims {
    store: kv::Store,
    handler: CommandHandler,
}

impl std::fmt::Debug for SkuClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkuClaims").field("bucket", &SKU_CLAIMS_BUCKET).finish()
    }
}

fn unavailable(error: impl std::fmt::Display) -> ClaimError {
    ClaimError::Unavailable(error.to_string())
}

/// `<brand>.<sha256 of the SKU, 32 hex digits>`: SKUs may hold characters a
/// key cannot, and the hash keeps one brand's keys under one prefix.
fn claim_key(brand: &BrandId, sku: &str) -> String {
    let digest = Sha256::digest(sku.as_bytes());
    format!("{brand}.{}", &hex::encode(digest)[..32])
}

impl SkuClaims {
    /// Opens the bucket, creating it on a server that has none (with the event
    /// log's replicas).
    pub async fn open(handler: CommandHandler) -> Result<Self, ClaimError> {
        let log = handler.log().clone();
        let jetstream = log.jetstream();
        let store = match jetstream.get_key_value(SKU_CLAIMS_BUCKET).await {
            Ok(store) => store,
            Err(_) => jetstream
                .create_key_value(kv::Config {
                    bucket: SKU_CLAIMS_BUCKET.into(),
                    description: "GPS: which product holds each SKU of a brand (one product per SKU)".into(),
                    history: 1,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    num_replicas: log.settings().replicas,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?,
        };
        Ok(SkuClaims { store, handler })
    }

    async fn claim_of(&self, key: &str) -> Result<Option<Claim>, ClaimError> {
        let Some(entry) = self.store.entry(key).await.map_err(unavailable)? else { return Ok(None) };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let holder = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|id| ProductId::parse(id).ok())
            .ok_or_else(|| unavailable(format!("the claim {key} holds no product id")))?;
        let created = entry.created;
        let age = (time::OffsetDateTime::now_utc() - created).try_into().unwrap_or(Duration::ZERO);
        Ok(Some(Claim { holder, revision: entry.revision, age }))
    }

    /// The product that holds `sku` in `brand`, if any.
    pub async fn holder(&self, brand: &BrandId, sku: &Sku) -> Result<Option<ProductId>, ClaimError> {
        Ok(self.claim_of(&claim_key(brand, sku.as_str())).await?.map(|claim| claim.holder))
    }

    /// What the log says of `product`: never created, or created with a SKU.
    async fn created_sku(&self, brand: &BrandId, product: &ProductId) -> Result<Option<Sku>, ClaimError> {
        let address = CommandHandler::address::<Product>(brand, product.as_str()).map_err(unavailable)?;
        let loaded = self.handler.load::<Product>(&address).await.map_err(unavailable)?;
        Ok(loaded.state.details.map(|details| details.sku))
    }

    /// Claims `sku` for `product`: done when it is free or already
    /// `product`'s, taken over from a stale claim whose product never came to
    /// be, refused otherwise.
    pub async fn claim(&self, brand: &BrandId, sku: &Sku, product: &ProductId) -> Result<(), ClaimError> {
        let key = claim_key(brand, sku.as_str());
        let value = Bytes::from(product.as_str().to_owned());
        // A few rounds: each lost race reads the winner again.
        for _ in 0..5 {
            match self.store.create(&key, value.clone()).await {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => return Err(unavailable(error)),
            }
            let Some(claim) = self.claim_of(&key).await? else { continue };
            if claim.holder == *product {
                return Ok(());
            }
            match self.created_sku(brand, &claim.holder).await? {
                Some(held) if held == *sku => {
                    return Err(ClaimError::Taken { sku: sku.to_string(), holder: claim.holder });
                }
                // The holder exists with another SKU (its creation with this
                // one was refused), and a product's SKU never changes.
                Some(_) => {}
                None if claim.age < STALE_CLAIM_AFTER => {
                    return Err(ClaimError::Pending { sku: sku.to_string(), holder: claim.holder });
                }
                // The holder's creation never landed and never will.
                None => {}
            }
            // Take the claim over, unless someone else changed it meanwhile.
            match self.store.update(&key, value.clone(), claim.revision).await {
                Ok(_) => return Ok(()),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(ClaimError::Unavailable(format!("the claim of SKU {sku} kept changing; try again")))
    }

    /// Gives `sku` up when `product` holds it but was not created with it (its
    /// creation was refused), so the SKU is free at once.
    pub async fn release_unused(
        &self,
        brand: &BrandId,
        sku: &Sku,
        product: &ProductId,
    ) -> Result<(), ClaimError> {
        let key = claim_key(brand, sku.as_str());
        let Some(claim) = self.claim_of(&key).await? else { return Ok(()) };
        if claim.holder != *product || self.created_sku(brand, product).await?.as_ref() == Some(sku) {
            return Ok(());
        }
        match self.store.delete_expect_revision(&key, Some(claim.revision)).await {
            Ok(()) => Ok(()),
            // Changed meanwhile: it is someone else's business now.
            Err(error) if error.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Executes a command that creates a product (`CreateProduct`, or an
    /// `ImportProduct` of a new product), claiming its SKU first: a SKU
    /// another product holds is refused, and a refused creation gives its
    /// claim back. Other product commands pass straight through.
    pub async fn execute_product(
        &self,
        brand: &BrandId,
        meta: &CommandMeta,
        command: &ProductCommand,
    ) -> Result<Outcome<Product>, CommandError> {
        let (ProductCommand::CreateProduct { product_id, sku, .. }
        | ProductCommand::ImportProduct { product_id, sku, .. }) = command
        else {
            return Err(CommandError::Invalid("only product creations claim a SKU".into()));
        };
        self.claim(brand, sku, product_id).await?;
        let address = CommandHandler::address::<Product>(brand, product_id.as_str())?;
        let outcome = self.handler.execute::<Product>(&address, meta, command).await;
        if let Err(CommandError::Rejected { .. }) = &outcome
            && let Err(error) = self.release_unused(brand, sku, product_id).await
        {
            tracing::warn!(%brand, %sku, %product_id, %error, "a refused creation kept its SKU claim");
        }
        outcome
    }

    /// Claims the SKU of every product created before claims existed, once per
    /// installation (a marker key records it). Where two old products share a
    /// SKU, the older keeps it; the other still works but can no longer be
    /// matched by SKU.
    pub async fn backfill(&self, log: &EventLog) -> Result<usize, ClaimError> {
        if self.store.entry(BACKFILLED_KEY).await.map_err(unavailable)?.is_some() {
            return Ok(0);
        }
        let filter = gps_nats::subjects::kind_filter(gps_domain::AggregateKind::Product);
        let mut scan = LogScan::open(log, &filter, 1).await.map_err(unavailable)?;
        let mut claimed = 0;
        while let Some(message) = scan.next().await.map_err(unavailable)? {
            let Ok(envelope) = serde_json::from_slice::<EventEnvelope>(&message.payload) else { continue };
            if envelope.event_type != "product.created" {
                continue;
            }
            let (Some(sku), Ok(brand)) =
                (envelope.payload.get("sku").and_then(|sku| sku.as_str()), BrandId::parse(&envelope.brand))
            else {
                continue;
            };
            let key = claim_key(&brand, sku);
            match self.store.create(&key, Bytes::from(envelope.aggregate_id.clone())).await {
                Ok(_) => claimed += 1,
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        self.store.put(BACKFILLED_KEY, Bytes::from_static(b"1")).await.map_err(unavailable)?;
        Ok(claimed)
    }
}
