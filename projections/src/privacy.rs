//! The privacy vault: one AES-256-GCM key per person, so personal data can be
//! written into the immutable log sealed and later forgotten without
//! rewriting it (crypto-shredding).
//!
//! Keys live in the `privacy` schema of the credentials database
//! (`privacy.person_keys`; the gateway's `accounts` module names it), not in
//! the read database: they cannot be rebuilt from the log, and losing them
//! would make every sealed address unreadable. Mutable, deletable state that
//! is never an event and never leaves Postgres; queries that open sealed
//! data take the vault's pool next to the read pool. A person is found by the sha256 of their lowercase email address
//! (so sealing the same address twice names the same person, which keeps
//! "one member per email" checkable on sealed values); forgetting destroys the
//! key and that digest together, and afterwards every sealed copy — in the
//! log, in snapshots, in read models, in export bundles — is noise. The hash
//! chain covers the ciphertext, which does not change, so verification still
//! passes.
//!
//! The nonce is random per sealing and the person id is bound as additional
//! authenticated data, so a ciphertext cannot be moved to another person.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use gps_domain::brand::{Email, MemberEmail, SealedData, SealedEmail};
use gps_domain::ids::PersonId;
use gps_domain::person::SealedName;
use gps_domain::values::Name;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Why the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Postgres failed.
    #[error("privacy vault: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The system could not produce random bytes or encrypt.
    #[error("privacy vault: {0}")]
    Crypto(String),
}

/// Creates the vault's schema and table (idempotent).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS privacy;
         CREATE TABLE IF NOT EXISTS privacy.person_keys (
             person_id     text PRIMARY KEY,
             -- sha256 of the lowercase email; NULL once forgotten
             email_digest  text UNIQUE,
             -- 32-byte AES-256-GCM key; NULL once forgotten
             key           bytea,
             created_at    timestamptz NOT NULL DEFAULT now(),
             forgotten_at  timestamptz
         );",
    )
    .execute(pool)
    .await?;
    Ok(())
}

fn digest(email: &Email) -> String {
    hex::encode(Sha256::digest(email.as_str().as_bytes()))
}

fn random(bytes: usize) -> Result<Vec<u8>, PrivacyError> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| PrivacyError::Crypto("no randomness available".into()))?;
    Ok(buffer)
}

/// The person an email address belongs to and their key, created on first use.
async fn person_for(pool: &PgPool, email: &Email) -> Result<(PersonId, Vec<u8>), PrivacyError> {
    let digest = digest(email);
    let candidate = format!("person-{}", hex::encode(random(12)?));
    sqlx::query(
        "INSERT INTO privacy.person_keys (person_id, email_digest, key) VALUES ($1, $2, $3)
         ON CONFLICT (email_digest) DO NOTHING",
    )
    .bind(&candidate)
    .bind(&digest)
    .bind(random(32)?)
    .execute(pool)
    .await?;
    let (person, key): (String, Vec<u8>) =
        sqlx::query_as("SELECT person_id, key FROM privacy.person_keys WHERE email_digest = $1")
            .bind(&digest)
            .fetch_one(pool)
            .await?;
    let person = PersonId::parse(person).map_err(|e| PrivacyError::Crypto(e.to_string()))?;
    Ok((person, key))
}

/// Seals an email address with its person's key (creating the person on first use).
pub async fn seal_email(pool: &PgPool, email: &Email) -> Result<MemberEmail, PrivacyError> {
    let (person_id, ciphertext) = seal(pool, email, email.as_str()).await?;
    Ok(MemberEmail::Sealed(SealedEmail { person_id, ciphertext }))
}

/// Seals a person's email address and display name, both with the key of the
/// person the address belongs to (created on first use), for `person.registered`.
pub async fn seal_person(
    pool: &PgPool,
    email: &Email,
    display_name: &Name,
) -> Result<(SealedEmail, SealedName), PrivacyError> {
    let (person_id, ciphertext) = seal(pool, email, email.as_str()).await?;
    let name = seal_name(pool, email, display_name).await?;
    Ok((SealedEmail { person_id, ciphertext }, name))
}

/// Seals a display name with the key of the person `email` belongs to.
pub async fn seal_name(
    pool: &PgPool,
    email: &Email,
    display_name: &Name,
) -> Result<SealedName, PrivacyError> {
    let (person_id, ciphertext) = seal(pool, email, display_name.as_str()).await?;
    Ok(SealedName { person_id, ciphertext })
}

/// Seals `plain` with the key of the person `email` belongs to.
async fn seal(pool: &PgPool, email: &Email, plain: &str) -> Result<(PersonId, SealedData), PrivacyError> {
    let (person, key) = person_for(pool, email).await?;
    let crypto = |_| PrivacyError::Crypto("AES-256-GCM sealing failed".into());
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).map_err(crypto)?);
    let nonce_bytes = random(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(crypto)?;
    let mut sealed = plain.as_bytes().to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(person.as_str().as_bytes()), &mut sealed)
        .map_err(crypto)?;
    let mut out = nonce_bytes;
    out.extend(sealed);
    let ciphertext = SealedData::parse(hex::encode(out)).map_err(|e| PrivacyError::Crypto(e.to_string()))?;
    Ok((person, ciphertext))
}

/// The vault person an email address belongs to, if the vault knows it (and
/// has not forgotten it); creates nothing.
pub async fn person_of_email(pool: &PgPool, email: &Email) -> Result<Option<PersonId>, PrivacyError> {
    let person: Option<String> = sqlx::query_scalar(
        "SELECT person_id FROM privacy.person_keys WHERE email_digest = $1 AND key IS NOT NULL",
    )
    .bind(digest(email))
    .fetch_optional(pool)
    .await?;
    person.map(|p| PersonId::parse(p).map_err(|e| PrivacyError::Crypto(e.to_string()))).transpose()
}

/// The key of a vault person, `None` once forgotten.
pub async fn key_of(pool: &PgPool, person: &str) -> Result<Option<Vec<u8>>, PrivacyError> {
    let key: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT key FROM privacy.person_keys WHERE person_id = $1")
            .bind(person)
            .fetch_optional(pool)
            .await?;
    Ok(key.flatten())
}

/// Opens a sealed value with `key`; `None` when the key is gone or does not fit.
pub fn open(person: &str, ciphertext: &str, key: Option<&[u8]>) -> Option<String> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key?).ok()?);
    let bytes = hex::decode(ciphertext).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = sealed.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(person.as_bytes()), &mut buffer).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The readable address of a member email: the plain one, the opened sealed
/// one, or `None` when its person was forgotten.
pub async fn reveal(pool: &PgPool, email: &MemberEmail) -> Result<Option<String>, PrivacyError> {
    match email {
        MemberEmail::Plain(email) => Ok(Some(email.to_string())),
        MemberEmail::Sealed(sealed) => {
            let key: Option<Option<Vec<u8>>> =
                sqlx::query_scalar("SELECT key FROM privacy.person_keys WHERE person_id = $1")
                    .bind(sealed.person_id.as_str())
                    .fetch_optional(pool)
                    .await?;
            Ok(open(sealed.person_id.as_str(), sealed.ciphertext.as_str(), key.flatten().as_deref()))
        }
    }
}

/// What forgetting found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Forgotten {
    /// The person whose key was destroyed, if the vault knew the address.
    pub person_id: Option<String>,
}

/// Destroys the key (and the address digest) of the person `email` belongs
/// to. Idempotent: forgetting an unknown or already forgotten address
/// changes nothing.
pub async fn forget_email(pool: &PgPool, email: &Email) -> Result<Forgotten, PrivacyError> {
    let person: Option<String> = sqlx::query_scalar(
        "UPDATE privacy.person_keys SET key = NULL, email_digest = NULL, forgotten_at = now()
         WHERE email_digest = $1 RETURNING person_id",
    )
    .bind(digest(email))
    .fetch_optional(pool)
    .await?;
    Ok(Forgotten { person_id: person })
}

/// Destroys a person's key by id.
pub async fn forget_person(pool: &PgPool, person: &PersonId) -> Result<bool, PrivacyError> {
    let updated = sqlx::query(
        "UPDATE privacy.person_keys SET key = NULL, email_digest = NULL, forgotten_at = coalesce(forgotten_at, now())
         WHERE person_id = $1",
    )
    .bind(person.as_str())
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_person() {
        let key = vec![7u8; 32];
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key"));
        let nonce_bytes = [1u8; NONCE_LEN];
        let mut sealed = b"ana@example.com".to_vec();
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(b"person-a".as_slice()),
                &mut sealed,
            )
            .expect("seal");
        let mut bytes = nonce_bytes.to_vec();
        bytes.extend(sealed);
        let text = hex::encode(bytes);
        assert_eq!(open("person-a", &text, Some(&key)).as_deref(), Some("ana@example.com"));
        assert_eq!(open("person-b", &text, Some(&key)), None, "bound to its person");
        assert_eq!(open("person-a", &text, Some(&[8u8; 32])), None, "another key");
        assert_eq!(open("person-a", &text, None), None, "a destroyed key");
    }
}
