//! The `accounts` projection: who can sign in (`users`), from person events.
//! Email and display name stay sealed, as the events carry them, and are
//! opened at query time with the privacy vault ([`crate::queries::person_by_email`]);
//! an erased person keeps their row (the user id is a member id in brand
//! events) with the sealed data removed.

use futures::future::BoxFuture;
use gps_domain::person::PersonEvent;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event};

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(apply_event(conn, e))
}

async fn apply_event(conn: &mut PgConnection, e: &Event) -> Result<(), sqlx::Error> {
    let AnyEvent::Person(event) = &e.event else { return Ok(()) };
    match event {
        PersonEvent::Registered(p) => {
            sqlx::query(
                "INSERT INTO users (user_id, vault_person_id, email_sealed, display_name_sealed, registered_at,
                                    registered_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6)
                 ON CONFLICT (user_id) DO UPDATE SET vault_person_id = EXCLUDED.vault_person_id,
                     email_sealed = EXCLUDED.email_sealed, display_name_sealed = EXCLUDED.display_name_sealed,
                     erased = false, version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence",
            )
            .bind(p.user_id.as_str())
            .bind(p.email.person_id.as_str())
            .bind(Json(&p.email))
            .bind(Json(&p.display_name))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        PersonEvent::DisplayNameChanged(p) => {
            sqlx::query(
                "UPDATE users SET display_name_sealed = $2, version = $3, last_sequence = $4 WHERE user_id = $1",
            )
            .bind(e.id())
            .bind(Json(&p.display_name))
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        PersonEvent::PasswordChanged(_) => {
            sqlx::query(
                "UPDATE users SET password_changed_at = $2, version = $3, last_sequence = $4 WHERE user_id = $1",
            )
            .bind(e.id())
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        PersonEvent::Erased(_) => {
            sqlx::query(
                "UPDATE users SET erased = true, email_sealed = NULL, display_name_sealed = NULL,
                                  version = $2, last_sequence = $3 WHERE user_id = $1",
            )
            .bind(e.id())
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
