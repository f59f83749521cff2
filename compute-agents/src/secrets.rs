//! The delivery secrets: webhook signing secrets and S3 credentials a brand's
//! exports name (`SecretName`), stored sealed in the compute database.
//!
//! Events carry only a secret's name: they are immutable and widely read, so
//! a secret in one could never be taken back. The value is sealed with
//! AES-256-GCM under the secrets key from configuration (`GPS_SECRETS_KEY`),
//! with a random nonce per write and `<brand>/<name>` as additional
//! authenticated data, so a sealed value copied to another brand or name does
//! not open. A database dump alone reveals nothing; the key never enters
//! Postgres, a log line or an error message.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use gps_domain::export::SecretName;
use gps_domain::ids::BrandId;
use sqlx::{PgPool, Row};

/// The key that seals delivery secrets: 32 bytes. Never printed.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl SecretsKey {
    /// Parses 64 hex digits.
    pub fn from_hex(hex_digits: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_digits.trim())
            .map_err(|_| "the secrets key must be 64 hex digits (32 bytes)".to_owned())?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("the secrets key has {} bytes; give 32 (64 hex digits)", b.len())
        })?;
        Ok(SecretsKey(key))
    }

    /// A fresh random key (tests, and a first `gps up`, which stores it).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        random_fill(&mut key);
        SecretsKey(key)
    }

    /// The key as 64 hex digits, for storing it where configuration is kept.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

fn random_fill(buffer: &mut [u8]) {
    aws_lc_rs::rand::fill(buffer).unwrap_or_else(|_| panic!("the system random source failed"));
}

/// Why a secret could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No secret of that name in the brand.
    #[error("brand {brand} has no stored secret {name}; store it with `gps secrets set {brand} {name}`")]
    Missing {
        /// The brand.
        brand: String,
        /// The name.
        name: String,
    },
    /// The sealed value does not open with this key (another key, or tampering).
    #[error("secret {name} of brand {brand} does not open with the configured secrets key")]
    Unreadable {
        /// The brand.
        brand: String,
        /// The name.
        name: String,
    },
    /// The value is empty or too large.
    #[error("a secret is 1 to 16384 bytes long; this one has {0}")]
    Size(usize),
    /// Postgres failed.
    #[error("secret store: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// A secret's value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// Sealed secrets per brand in the compute database.
#[derive(Clone)]
pub struct SecretVault {
    pool: PgPool,
    key: std::sync::Arc<LessSafeKey>,
}

impl fmt::Debug for SecretVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretVault(***)")
    }
}

fn aad(brand: &BrandId, name: &SecretName) -> String {
    format!("{brand}/{name}")
}

impl SecretVault {
    /// The compute database the vault lives in.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The vault over the compute database `pool` (migrated by `Store::connect`).
    pub fn new(pool: PgPool, key: &SecretsKey) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, &key.0)
            .unwrap_or_else(|_| unreachable!("32 bytes is an AES-256 key"));
        SecretVault { pool, key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    /// Stores (or replaces) `name` of `brand`.
    pub async fn set(&self, brand: &BrandId, name: &SecretName, value: &[u8]) -> Result<(), SecretError> {
        if value.is_empty() || value.len() > 16384 {
            return Err(SecretError::Size(value.len()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce);
        let mut sealed = value.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(brand, name).as_bytes()),
                &mut sealed,
            )
            .unwrap_or_else(|_| unreachable!("sealing a bounded buffer cannot fail"));
        sqlx::query(
            "INSERT INTO delivery_secrets (brand, name, nonce, sealed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (brand, name) DO UPDATE SET nonce = $3, sealed = $4, updated_at = now()",
        )
        .bind(brand.as_str())
        .bind(name.as_str())
        .bind(&nonce[..])
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Opens `name` of `brand`.
    pub async fn get(&self, brand: &BrandId, name: &SecretName) -> Result<SecretValue, SecretError> {
        let row = sqlx::query("SELECT nonce, sealed FROM delivery_secrets WHERE brand = $1 AND name = $2")
            .bind(brand.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| SecretError::Missing { brand: brand.to_string(), name: name.to_string() })?;
        let unreadable = || SecretError::Unreadable { brand: brand.to_string(), name: name.to_string() };
        let nonce: Vec<u8> = row.get("nonce");
        let mut sealed: Vec<u8> = row.get("sealed");
        let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| unreadable())?;
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(aad(brand, name).as_bytes()), &mut sealed)
            .map_err(|_| unreadable())?;
        Ok(SecretValue(opened.to_vec()))
    }

    /// Removes `name` of `brand`; whether there was one.
    pub async fn remove(&self, brand: &BrandId, name: &SecretName) -> Result<bool, SecretError> {
        let removed = sqlx::query("DELETE FROM delivery_secrets WHERE brand = $1 AND name = $2")
            .bind(brand.as_str())
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(removed.rows_affected() > 0)
    }
}
