//! The `brands` projection: brands, members (with role), API clients (no
//! secrets: only the public key fingerprint) and channel presets.

use futures::future::BoxFuture;
use gps_domain::brand::{BrandEvent, MemberEmail};
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::event::{AnyEvent, Event};
use crate::models::touch;

pub(crate) fn apply<'a>(conn: &'a mut PgConnection, e: &'a Event) -> BoxFuture<'a, Result<(), sqlx::Error>> {
    Box::pin(apply_event(conn, e))
}

async fn apply_event(conn: &mut PgConnection, e: &Event) -> Result<(), sqlx::Error> {
    let AnyEvent::Brand(event) = &e.event else { return Ok(()) };
    if !matches!(event, BrandEvent::Created(_)) {
        touch!(
            conn,
            e,
            "UPDATE brands SET updated_at = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND $2::text <> ''"
        )?;
    }
    match event {
        BrandEvent::Created(p) => {
            sqlx::query(
                "INSERT INTO brands (brand, name, created_at, updated_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $3, $4, $5, $4)",
            )
            .bind(e.brand())
            .bind(p.name.as_str())
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::Renamed(p) => {
            sqlx::query("UPDATE brands SET name = $2 WHERE brand = $1")
                .bind(e.brand())
                .bind(p.name.as_str())
                .execute(&mut *conn)
                .await?;
        }
        BrandEvent::MemberAdded(p) => {
            // A sealed address stays sealed here and is opened at query time,
            // so forgetting its person needs no change to this row.
            let (plain, sealed) = match &p.email {
                MemberEmail::Plain(email) => (Some(email.as_str()), None),
                MemberEmail::Sealed(sealed) => (None, Some(Json(sealed))),
            };
            sqlx::query(
                // A member id is added again only after its removal deleted the
                // row; should two additions meet anyway (the v1 and v2 golden
                // fixtures add the same member), the later one wins.
                "INSERT INTO members (brand, member_id, display_name, email, email_sealed, role, added_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)
                 ON CONFLICT (brand, member_id) DO UPDATE SET display_name = EXCLUDED.display_name,
                     email = EXCLUDED.email, email_sealed = EXCLUDED.email_sealed, role = EXCLUDED.role,
                     version = EXCLUDED.version, last_sequence = EXCLUDED.last_sequence",
            )
            .bind(e.brand())
            .bind(p.member_id.as_str())
            .bind(p.display_name.as_str())
            .bind(plain)
            .bind(sealed)
            .bind(p.role.as_str())
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::MemberRoleChanged(p) => {
            sqlx::query(
                "UPDATE members SET role = $3, version = $4, last_sequence = $5 WHERE brand = $1 AND member_id = $2",
            )
            .bind(e.brand())
            .bind(p.member_id.as_str())
            .bind(p.role.as_str())
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::MemberRemoved(p) => {
            sqlx::query("DELETE FROM members WHERE brand = $1 AND member_id = $2")
                .bind(e.brand())
                .bind(p.member_id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        BrandEvent::ApiClientRegistered(p) => {
            sqlx::query(
                "INSERT INTO api_clients (brand, api_client_id, name, role, key_fingerprint, registered_at, created_sequence, version, last_sequence, scopes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $9)",
            )
            .bind(e.brand())
            .bind(p.api_client_id.as_str())
            .bind(p.name.as_str())
            .bind(p.role.as_str())
            .bind(p.key_fingerprint.as_str())
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .bind(p.scopes.as_ref().map(|scopes| scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::ApiClientRevoked(p) => {
            sqlx::query(
                "UPDATE api_clients SET revoked = true, revoked_reason = $3, revoked_at = $4, version = $5, last_sequence = $6
                 WHERE brand = $1 AND api_client_id = $2",
            )
            .bind(e.brand())
            .bind(p.api_client_id.as_str())
            .bind(p.reason.as_ref().map(|r| r.as_str()))
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::ChannelPresetDefined(p) => {
            sqlx::query(
                "INSERT INTO channel_presets (brand, channel, preset_version, spec, defined_at, created_sequence, version, last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6)",
            )
            .bind(e.brand())
            .bind(p.channel.as_str())
            .bind(i64::from(p.version))
            .bind(Json(&p.spec))
            .bind(e.at)
            .bind(e.sequence)
            .bind(e.version)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::ChannelPresetRedefined(p) => {
            sqlx::query(
                "UPDATE channel_presets SET preset_version = $3, spec = $4, defined_at = $5, version = $6, last_sequence = $7
                 WHERE brand = $1 AND channel = $2",
            )
            .bind(e.brand())
            .bind(p.channel.as_str())
            .bind(i64::from(p.version))
            .bind(Json(&p.spec))
            .bind(e.at)
            .bind(e.version)
            .bind(e.sequence)
            .execute(&mut *conn)
            .await?;
        }
        BrandEvent::ChannelPresetRemoved(p) => {
            sqlx::query("DELETE FROM channel_presets WHERE brand = $1 AND channel = $2")
                .bind(e.brand())
                .bind(p.channel.as_str())
                .execute(&mut *conn)
                .await?;
        }
        // Audit reads are listed by the activity projection; no brand row changes
        // beyond the version bump above.
        BrandEvent::AuditAccessed(_) => {}
    }
    Ok(())
}
