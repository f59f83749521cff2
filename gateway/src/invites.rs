//! Adding people to brands by address, and the one-time links that let a
//! person GPS created choose their password.
//!
//! Adding a member never tells the caller whether the address already had
//! an account: when none does, [`member_for_address`] creates the person
//! (the same person aggregate and privacy-vault sealing as `gps admin
//! create-user`, without a usable password), and both cases then take one
//! path: the brand's `AddMember`, then a mail to the person ([`notify`]).
//! A person without a password gets in that mail a link with a one-time
//! token: 32 random bytes, of which only the sha256 is kept
//! (`auth.password_tokens` in the credentials store), valid for
//! [`TOKEN_LIFETIME`] unless configured otherwise, and used once through
//! `POST /api/v1/password` ([`set_password_with_token`]) or the page behind
//! the link (`/app/set-password`). Setting a password ends every other
//! outstanding token of the person (`accounts::change_password`).
//!
//! Tokens and links never enter an event or a log line; the mail (the
//! outbox file) is the only place a link is written.

use std::time::Duration;

use gps_domain::brand::{Email, Role};
use gps_domain::ids::{BrandId, MemberId};
use gps_domain::values::Name;
use gps_domain::wire::Actor;
use sqlx::PgPool;

use crate::auth::{User, random_token, sha256_hex};
use crate::mail::Message;
use crate::{ApiError, AppState};

/// How long a mailed link to choose a password stays valid by default.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(72 * 3600);

/// The purpose recorded with an invitation's token.
const SET_PASSWORD: &str = "set_password";

/// What a person who lost their link is told to do.
const ASK_AGAIN: &str = "ask the brand owner to add you again (a new mail brings a new link), \
                         or an operator to run `gps admin set-password`";

/// The address the browser reached the UI at (`https://gps.example.com`), set
/// by the UI host on its in-process API calls (a request extension no client
/// can set), whose own `Host` names no real address.
#[derive(Debug, Clone)]
pub struct LinkBase(pub String);

/// Where mailed links point: the configured public URL (`public_url`,
/// `GPS_PUBLIC_URL`) when there is one; else the address the browser used
/// for a UI call; else the request's `Host`, over https when the gateway
/// serves HTTPS (as for `Secure` cookies). Production sets `public_url`: a
/// `Host` header is the caller's to write.
pub(crate) fn link_base(
    state: &AppState,
    peer: &crate::auth::Peer,
    headers: &axum::http::HeaderMap,
    from_ui: Option<&LinkBase>,
) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    if let Some(LinkBase(base)) = from_ui {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty() && host.chars().all(|c| c.is_ascii_graphic() && !"/?#@\\".contains(c))
        })
        .unwrap_or("localhost");
    let scheme = if crate::auth::secure_cookies(state, peer, headers) { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The person an added member is, and whether they still need a password.
#[derive(Debug, Clone)]
pub struct MemberPerson {
    /// The person (the member id is their user id).
    pub user: User,
    /// They have no usable password yet: their mail carries a link.
    pub needs_password: bool,
}

/// A display name from an address's local part: `anna.maria_b@x` →
/// `Anna Maria B`. Falls back to the whole local part, then to "Member".
pub fn name_from_address(email: &Email) -> Name {
    let local = email.as_str().split('@').next().unwrap_or_default();
    let words: Vec<String> = local
        .split(['.', '_', '-', '+'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        })
        .collect();
    Name::parse(words.join(" "))
        .or_else(|_| Name::parse(local))
        .unwrap_or_else(|_| Name::parse("Member").expect("a valid name"))
}

/// The person who signs in with `email`, created without a password when
/// no account uses the address. `new_user_id` is the user id a new person
/// gets (derived from the request's Idempotency-Key when there is one, so a
/// retry addresses the same person). `display_name` names a new person
/// (default: from the address); an existing person keeps their own name.
pub async fn member_for_address(
    state: &AppState,
    email: &Email,
    display_name: Option<&Name>,
    new_user_id: &MemberId,
    actor: Actor,
) -> Result<MemberPerson, ApiError> {
    let existing = match crate::accounts::user_by_email(&state.db, &state.credentials, email).await? {
        Some(user) => Some(user),
        None => {
            let name = display_name.cloned().unwrap_or_else(|| name_from_address(email));
            let created = crate::accounts::create_person_without_password(
                &state.commands,
                &state.db,
                &state.credentials,
                new_user_id,
                email,
                &name,
                actor,
            )
            .await;
            match created {
                Ok(created) => return Ok(MemberPerson { user: created.user, needs_password: true }),
                // Someone else claimed the address a moment ago (another
                // request, a person the read model does not show yet): the
                // credentials store knows whose it is.
                Err(ApiError::Conflict(_)) => {
                    let Some(user_id) =
                        crate::accounts::user_id_of_address(&state.credentials, email).await?
                    else {
                        return Err(ApiError::Conflict(format!(
                            "{email} is being added by another request right now; try again"
                        )));
                    };
                    let shown =
                        crate::accounts::user_by_id(&state.db, &state.credentials, user_id.as_str()).await?;
                    Some(shown.unwrap_or(User {
                        user_id: user_id.to_string(),
                        email: email.to_string(),
                        display_name: name.to_string(),
                    }))
                }
                Err(other) => return Err(other),
            }
        }
    };
    let user = existing.expect("an existing person");
    let user_id = MemberId::parse(&user.user_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let needs_password = !crate::accounts::has_password(&state.credentials, &user_id).await?;
    Ok(MemberPerson { user, needs_password })
}

/// Makes a one-time token for `user_id` to choose a password, valid for
/// `lifetime`; returns the token (only its hash is stored).
pub async fn issue_token(
    credentials: &PgPool,
    user_id: &MemberId,
    lifetime: Duration,
) -> Result<String, ApiError> {
    let token = random_token(32)?;
    let lifetime = time::Duration::try_from(lifetime).map_err(|e| ApiError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO auth.password_tokens (token_hash, user_id, purpose, expires_at)
         VALUES ($1, $2, $3, now() + $4)",
    )
    .bind(sha256_hex(&token))
    .bind(user_id.as_str())
    .bind(SET_PASSWORD)
    .bind(lifetime)
    .execute(credentials)
    .await?;
    Ok(token)
}

/// Sets a password with a mailed one-time token. The password is checked
/// first (a refused password leaves the token usable); the token is then
/// consumed in one statement, so of two concurrent uses one wins; the
/// password is set as `gps admin set-password` sets it, which ends the
/// person's other tokens and sessions. An unknown, used or expired token is
/// refused naming the field `token`. Returns the user id.
pub async fn set_password_with_token(
    state: &AppState,
    token: &str,
    password: &str,
) -> Result<MemberId, ApiError> {
    crate::auth::check_new_password(password)?;
    let token_hash = sha256_hex(token.trim());
    let consumed: Option<String> = sqlx::query_scalar(
        "UPDATE auth.password_tokens SET used_at = now()
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(&token_hash)
    .bind(SET_PASSWORD)
    .fetch_optional(&state.credentials)
    .await?;
    let Some(user_id) = consumed else {
        let known: Option<(bool, bool)> = sqlx::query_as(
            "SELECT used_at IS NOT NULL, expires_at <= now() FROM auth.password_tokens WHERE token_hash = $1",
        )
        .bind(&token_hash)
        .fetch_optional(&state.credentials)
        .await?;
        let why = match known {
            Some((true, _)) => "this link was already used, or a password was set since it was sent",
            Some((false, true)) => "this link has expired",
            _ => "this link is not known (check that the whole link was copied)",
        };
        return Err(ApiError::field("token", format!("{why}; {ASK_AGAIN}")));
    };
    let id = MemberId::parse(&user_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let changed = crate::accounts::change_password(
        &state.commands,
        &state.credentials,
        &id,
        password,
        Actor::Member(id.clone()),
    )
    .await;
    if let Err(error) = changed {
        // Nothing was set: the link stays usable for another try.
        sqlx::query("UPDATE auth.password_tokens SET used_at = NULL WHERE token_hash = $1")
            .bind(&token_hash)
            .execute(&state.credentials)
            .await?;
        return Err(error);
    }
    Ok(id)
}

/// Mails a member that they were added to `brand` as `role`, with a link to
/// choose a password when they have none. A mail that cannot be handed
/// over is logged (never its text) and does not undo the membership: the
/// caller's answer must not depend on the person, and an operator can
/// still give them a password (`gps admin set-password`).
pub async fn notify(
    state: &AppState,
    brand: &BrandId,
    brand_name: &str,
    role: Role,
    person: &MemberPerson,
    link_base: &str,
) {
    let user_id = match MemberId::parse(&person.user.user_id) {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(%error, "an added member's id does not parse; no mail sent");
            return;
        }
    };
    let mut body = format!(
        "Hello {name},\n\nyou were added to the brand {brand_name} ({brand}) in GPS as {role}.\n",
        name = person.user.display_name,
    );
    if person.needs_password {
        let token = match issue_token(&state.credentials, &user_id, state.password_link_lifetime).await {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, user = %user_id, %brand, "no link to choose a password could be made; no mail sent");
                return;
            }
        };
        let hours = state.password_link_lifetime.as_secs() / 3600;
        body.push_str(&format!(
            "\nChoose your password here (the link works once, for {hours} hours):\n\n{base}/app/set-password?token={token}\n\nThen sign in at {base}/app/sign-in with this address.\n",
            base = link_base.trim_end_matches('/'),
        ));
    } else {
        body.push_str(&format!(
            "\nSign in at {base}/app/sign-in as usual; the brand is in your list.\n",
            base = link_base.trim_end_matches('/'),
        ));
    }
    body.push_str("\nIf you did not expect this, you can ignore this mail.\n");
    let message = Message {
        to: person.user.email.clone(),
        to_name: person.user.display_name.clone(),
        subject: format!("You were added to {brand_name} on GPS"),
        body,
    };
    match state.mailer.send(&message).await {
        Ok(_) => tracing::info!(user = %user_id, %brand, "membership mail handed to the mailer"),
        Err(error) => {
            tracing::error!(%error, user = %user_id, %brand, "the membership mail could not be sent")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_comes_from_the_address_local_part() {
        let name = |email: &str| name_from_address(&Email::parse(email).expect("email")).to_string();
        assert_eq!(name("anna.maria_b@example.com"), "Anna Maria B");
        assert_eq!(name("zoe@example.com"), "Zoe");
        assert_eq!(name("j+gps@example.com"), "J Gps");
    }
}
