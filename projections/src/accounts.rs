//! Queries over the `accounts` read model (who can sign in), opening the
//! sealed email and display name with the privacy vault, which lives in the
//! credentials database (so each query takes both pools). The rows are
//! rebuilt from person events; nothing here is a credential (password hashes
//! and sessions are the gateway's credentials store).

use std::collections::HashMap;

use gps_domain::brand::Email;
use sqlx::PgPool;

use crate::privacy::{PrivacyError, open};

/// A person as the accounts read model knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user id, also their member id in brands.
    pub user_id: String,
    /// The vault person whose key seals their data.
    pub vault_person_id: String,
    /// The sign-in address; `None` once erased (or their key destroyed).
    pub email: Option<String>,
    /// The display name; `None` once erased.
    pub display_name: Option<String>,
    /// Whether the person was erased.
    pub erased: bool,
}

type Row = (String, String, Option<serde_json::Value>, Option<serde_json::Value>, bool);

/// Opens the rows' sealed data with the keys the vault (the credentials
/// database) holds for their persons.
async fn opened(vault: &PgPool, rows: Vec<Row>) -> Result<Vec<Account>, PrivacyError> {
    let persons: Vec<&str> = rows.iter().map(|row| row.1.as_str()).collect();
    let keys: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT person_id, key FROM privacy.person_keys WHERE person_id = ANY($1)")
            .bind(&persons)
            .fetch_all(vault)
            .await?;
    let keys: HashMap<String, Vec<u8>> =
        keys.into_iter().filter_map(|(person, key)| Some((person, key?))).collect();
    Ok(rows
        .into_iter()
        .map(|(user_id, vault_person_id, email, name, erased)| {
            let key = keys.get(&vault_person_id).map(Vec::as_slice);
            let reveal = |sealed: Option<serde_json::Value>| {
                let sealed = sealed?;
                let person = sealed.get("person_id")?.as_str()?.to_owned();
                let ciphertext = sealed.get("ciphertext")?.as_str()?.to_owned();
                open(&person, &ciphertext, key)
            };
            Account { email: reveal(email), display_name: reveal(name), user_id, vault_person_id, erased }
        })
        .collect())
}

/// The person (not erased) who signs in with `email`: the vault names the
/// person the address belongs to, the read model the account sealed for them.
pub async fn person_by_email(
    read: &PgPool,
    vault: &PgPool,
    email: &Email,
) -> Result<Option<Account>, PrivacyError> {
    let Some(person) = crate::privacy::person_of_email(vault, email).await? else { return Ok(None) };
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT user_id, vault_person_id, email_sealed, display_name_sealed, erased FROM accounts.users
         WHERE vault_person_id = $1 AND NOT erased ORDER BY registered_sequence LIMIT 1",
    )
    .bind(person.as_str())
    .fetch_all(read)
    .await?;
    Ok(opened(vault, rows).await?.pop())
}

/// The person with `user_id`, erased or not.
pub async fn person(read: &PgPool, vault: &PgPool, user_id: &str) -> Result<Option<Account>, PrivacyError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT user_id, vault_person_id, email_sealed, display_name_sealed, erased FROM accounts.users
         WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_all(read)
    .await?;
    Ok(opened(vault, rows).await?.pop())
}

/// Every person, in registration order.
pub async fn people(read: &PgPool, vault: &PgPool) -> Result<Vec<Account>, PrivacyError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT user_id, vault_person_id, email_sealed, display_name_sealed, erased FROM accounts.users
         ORDER BY registered_sequence",
    )
    .fetch_all(read)
    .await?;
    opened(vault, rows).await
}
