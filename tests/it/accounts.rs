//! Accounts in the log: persons are events (`gps.evt._platform.person.<id>`),
//! the `accounts` read model is rebuilt from them, and only the credentials
//! database (password hashes, sessions, the vault's keys) is kept outside the
//! read database. Dropping the whole read database and rebuilding loses no
//! one; erasing a person shreds their sealed data and ends their sign-in.

use std::collections::BTreeMap;
use std::time::Duration;

use gps_domain::ids::MemberId;
use gps_domain::person::{Person, PersonRegistered};
use gps_domain::wire::Actor;
use serde_json::{Value, json};

use crate::gateway::TestGateway;

const PASSWORD: &str = "a long enough password";

/// Signs in with `email` and the test password; the status and, on success,
/// the session headers.
async fn sign_in(gateway: &TestGateway, email: &str) -> (u16, Option<(String, String)>) {
    let response = gateway
        .call("POST", "/api/v1/session", &[], Some(json!({"email": email, "password": PASSWORD})))
        .await;
    if response.status != 200 {
        return (response.status, None);
    }
    let cookie = response.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let csrf = response.json()["csrf_token"].as_str().expect("csrf").to_owned();
    (200, Some((cookie, csrf)))
}

/// The brands (with roles) `id` sees after signing in with their password.
async fn brands_seen_by(gateway: &TestGateway, id: &str) -> Value {
    let (status, session) = sign_in(gateway, &format!("{id}@example.com")).await;
    assert_eq!(status, 200, "{id} signs in");
    let (cookie, _) = session.expect("session");
    let me = gateway.call("GET", "/api/v1/me", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["id"], id);
    me["brands"].clone()
}

fn member(id: &str) -> MemberId {
    MemberId::parse(id).expect("member id")
}

#[tokio::test]
async fn every_person_signs_in_with_the_same_brands_and_roles_after_the_read_database_is_dropped_and_rebuilt()
{
    let mut gateway = TestGateway::start().await;
    let ana = gateway.brand_with_owner("acme", "ana").await;
    let bo = gateway.brand_with_owner("globex", "bo").await;
    gateway.user("cy").await;
    gateway.user("di").await;
    let mut last = 0;
    for (owner, brand, email, role) in [
        (&ana, "acme", "cy@example.com", "reviewer"),
        (&ana, "acme", "di@example.com", "producer"),
        (&bo, "globex", "cy@example.com", "viewer"),
        (&bo, "globex", "ana@example.com", "auditor"),
    ] {
        let path = format!("/api/v1/brands/{brand}/members");
        let added = gateway.as_user(owner, "POST", &path, Some(json!({"email": email, "role": role}))).await;
        assert_eq!(added.status, 201, "{}", added.body);
        last = last.max(added.json()["stream_sequence"].as_u64().expect("sequence"));
    }
    gps_projections::wait_for_sequence(&gateway.state.db, None, last, Duration::from_secs(20))
        .await
        .expect("read models caught up");
    let people = ["ana", "bo", "cy", "di"];
    let mut before = BTreeMap::new();
    for id in people {
        before.insert(id, brands_seen_by(&gateway, id).await);
    }
    assert_eq!(before["cy"].as_array().map(Vec::len), Some(2), "{before:?}");
    assert_eq!(before["ana"].as_array().map(Vec::len), Some(2), "{before:?}");

    // The whole read database goes, the accounts list included.
    gateway.stop_projections().await;
    let read_name = gateway.state.db.connect_options().get_database().expect("read database").to_owned();
    let admin_options = gateway.state.db.connect_options().as_ref().clone().database("postgres");
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect_with(&admin_options).await.expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{read_name}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .expect("drop the read database");
    let (status, _) = sign_in(&gateway, "cy@example.com").await;
    assert_ne!(status, 200, "nobody signs in while the read database is gone");

    // `gps projections rebuild` restores them from the log alone.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gps"))
        .args(["projections", "rebuild"])
        .env("DATABASE_URL", crate::audit::database_url(&gateway))
        .env("NATS_URL", gateway.nats.server.url())
        .output()
        .expect("run gps projections rebuild");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("accounts: rebuilt from 4 events"), "{stdout}");
    gateway.start_projections();

    for id in people {
        assert_eq!(brands_seen_by(&gateway, id).await, before[id], "{id} sees the same brands and roles");
    }
    let accounts = gps_projections::accounts::people(&gateway.state.db, &gateway.state.credentials)
        .await
        .expect("accounts");
    let readable: Vec<(String, Option<String>, Option<String>)> =
        accounts.into_iter().map(|a| (a.user_id, a.email, a.display_name)).collect();
    let expected: Vec<(String, Option<String>, Option<String>)> = people
        .iter()
        .map(|id| (id.to_string(), Some(format!("{id}@example.com")), Some(format!("User {id}"))))
        .collect();
    assert_eq!(readable, expected);
}

#[tokio::test]
async fn an_erased_person_is_unreadable_in_the_log_and_can_no_longer_sign_in() {
    let gateway = TestGateway::start().await;
    let ana = gateway.brand_with_owner("acme", "ana").await;
    let cy = gateway.user("cy").await;
    let added = gateway
        .as_user(
            &ana,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "cy@example.com", "role": "reviewer"})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);

    // The registration in the log is sealed, and opens while cy exists.
    let address = gps_gateway::accounts::address(&member("cy")).expect("address");
    let loaded = gateway.state.commands.load::<Person>(&address).await.expect("load");
    assert_eq!(loaded.envelopes[0].event_type, "person.registered");
    assert_eq!(address.subject(), "gps.evt._platform.person.cy");
    let registered: PersonRegistered =
        serde_json::from_value(loaded.envelopes[0].payload.clone()).expect("person.registered");
    let sealed_email = gps_domain::brand::MemberEmail::Sealed(registered.email.clone());
    let db = &gateway.state.credentials;
    let reveal_email = || gps_projections::privacy::reveal(db, &sealed_email);
    let reveal_name = || async {
        let name = &registered.display_name;
        let key = gps_projections::privacy::key_of(db, name.person_id.as_str()).await.expect("key");
        gps_projections::privacy::open(name.person_id.as_str(), name.ciphertext.as_str(), key.as_deref())
    };
    assert_eq!(reveal_email().await.expect("reveal").as_deref(), Some("cy@example.com"));
    assert_eq!(reveal_name().await.as_deref(), Some("User cy"));
    let stored = crate::audit::log_text(&gateway.state.log).await;
    assert!(stored.contains("person.registered") && !stored.contains("cy@example.com"), "{stored}");

    let erased = gps_gateway::accounts::erase_person(
        &gateway.state.commands,
        db,
        &member("cy"),
        Actor::System("test".into()),
    )
    .await
    .expect("erase");
    assert_eq!(erased.ended_sessions.len(), 1, "cy's session ended");

    // Shredded: the same ciphertexts in the log no longer open.
    assert_eq!(reveal_email().await.expect("reveal"), None);
    assert_eq!(reveal_name().await, None);
    // No sign-in, and the session cy had is over.
    let (status, _) = sign_in(&gateway, "cy@example.com").await;
    assert_eq!(status, 401);
    let me = gateway.as_user(&cy, "GET", "/api/v1/me", None).await;
    assert_eq!(me.status, 401, "{}", me.body);
    let read = &gateway.state.db;
    gps_projections::wait_for_sequence(
        read,
        Some("accounts"),
        erased.stream_sequence,
        Duration::from_secs(10),
    )
    .await
    .expect("accounts caught up");
    let account = gps_projections::accounts::person(read, db, "cy").await.expect("account").expect("row");
    assert!(account.erased && account.email.is_none() && account.display_name.is_none(), "{account:?}");
    // The brand keeps the membership, with the address forgotten there too.
    let members = gateway.as_user(&ana, "GET", "/api/v1/brands/acme/members", None).await;
    assert_eq!(members.status, 200, "{}", members.body);
    let members = members.json();
    let cy_member =
        members["items"].as_array().expect("items").iter().find(|m| m["member_id"] == "cy").cloned();
    let cy_member = cy_member.expect("cy is still a member");
    assert_eq!(cy_member["email_forgotten"], true, "{cy_member}");
    assert_eq!(cy_member["role"], "reviewer");
    // Erasing again changes nothing; the log still verifies (persons included).
    gps_gateway::accounts::erase_person(
        &gateway.state.commands,
        db,
        &member("cy"),
        Actor::System("test".into()),
    )
    .await
    .expect("erase again");
    let loaded = gateway.state.commands.load::<Person>(&address).await.expect("load");
    assert_eq!(loaded.envelopes.len(), 2, "registered, erased");
    let verified =
        gps_projections::audit::verify::verify_log(&gateway.state.log, None).await.expect("verify");
    assert!(verified.passed(), "{:?}", verified.first_break);
}

#[tokio::test]
async fn persons_stay_out_of_every_brand_feed() {
    let gateway = TestGateway::start().await;
    let ana = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway
        .as_user(&ana, "POST", "/api/v1/brands/acme/products", Some(crate::gateway::product("p1")))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let sequence = created.json()["stream_sequence"].as_u64().expect("sequence");
    let activity = gateway
        .as_user(&ana, "GET", &format!("/api/v1/brands/acme/activity?min_sequence={sequence}"), None)
        .await;
    assert_eq!(activity.status, 200, "{}", activity.body);
    let types: Vec<String> = activity.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["event_type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(types.iter().any(|t| t == "product.created"), "{types:?}");
    assert!(!types.iter().any(|t| t.starts_with("person.")), "{types:?}");
    let platform_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activity.activity WHERE brand = '_platform'")
            .fetch_one(&gateway.state.db)
            .await
            .expect("count");
    assert_eq!(platform_rows, 0);
    // No request can name the platform scope as a brand: it is no brand id.
    let refused = gateway.as_user(&ana, "GET", "/api/v1/brands/_platform/events", None).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    let created = gateway
        .as_user(&ana, "POST", "/api/v1/brands", Some(json!({"brand_id": "_platform", "name": "Platform"})))
        .await;
    assert_eq!(created.status, 400, "{}", created.body);
    assert!(created.body.contains("platform-level"), "{}", created.body);
}

#[tokio::test]
async fn accounts_of_the_old_auth_users_table_move_into_the_log_once_and_still_sign_in() {
    let gateway = TestGateway::start().await;
    let db = &gateway.state.credentials;
    let hash = gps_gateway::auth::hash_password(PASSWORD).expect("hash");
    sqlx::query("INSERT INTO auth.users (user_id, email, display_name, password_hash) VALUES ('old', 'old@example.com', 'Old Timer', $1)")
        .bind(&hash)
        .execute(db)
        .await
        .expect("legacy row");
    assert_eq!(sign_in(&gateway, "old@example.com").await.0, 401, "not a person yet");

    let commands = &gateway.state.commands;
    assert_eq!(gps_gateway::accounts::migrate_legacy_users(commands, db).await.expect("migrate"), 1);
    assert_eq!(gps_gateway::accounts::migrate_legacy_users(commands, db).await.expect("again"), 0);
    let address = gps_gateway::accounts::address(&member("old")).expect("address");
    let loaded = commands.load::<Person>(&address).await.expect("load");
    assert_eq!(loaded.envelopes.len(), 1);
    assert_eq!(loaded.envelopes[0].command_id, "legacy-account:old");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.users").fetch_one(db).await.expect("count");
    assert_eq!(left, 0, "the readable address left the table");

    gps_projections::wait_for_sequence(
        &gateway.state.db,
        Some("accounts"),
        loaded.position.last_subject_sequence,
        Duration::from_secs(10),
    )
    .await
    .expect("accounts caught up");
    let (status, _) = sign_in(&gateway, "old@example.com").await;
    assert_eq!(status, 200, "the old password still signs in");
}

#[tokio::test]
async fn credentials_an_older_read_database_still_holds_move_into_the_credentials_database_once() {
    // An older installation kept `auth` and `privacy` in its read database.
    let db = crate::harness::TestDb::create().await;
    let read = sqlx::PgPool::connect(db.url()).await.expect("read pool");
    gps_gateway::auth::migrate(&read).await.expect("auth schema");
    gps_projections::privacy::migrate(&read).await.expect("privacy schema");
    sqlx::raw_sql(
        "INSERT INTO privacy.person_keys (person_id, email_digest, key, created_at)
             VALUES ('vp-ana', 'digest-ana', '\\x00ff10'::bytea, '2026-01-02T03:04:05Z');
         INSERT INTO auth.passwords (user_id, vault_person_id, password_hash) VALUES ('ana', 'vp-ana', '$argon2id$x');
         INSERT INTO auth.sessions (token_hash, user_id, csrf_token, expires_at)
             VALUES ('token-hash', 'ana', 'csrf', '2030-01-01T00:00:00Z');
         INSERT INTO auth.api_keys (key_prefix, brand, api_client_id, secret_hash, revoked_at)
             VALUES ('gps_abc', 'acme', 'pim', 'secret-hash', '2026-05-06T07:08:09Z');",
    )
    .execute(&read)
    .await
    .expect("old rows");
    let credentials_url = gps_gateway::accounts::credentials_url_for(db.url());
    let credentials =
        gps_gateway::accounts::connect_credentials(&credentials_url, Some(&read)).await.expect("moved");

    let key: (String, Vec<u8>, String) = sqlx::query_as(
        "SELECT email_digest, key, created_at::text FROM privacy.person_keys WHERE person_id = 'vp-ana'",
    )
    .fetch_one(&credentials)
    .await
    .expect("the person key moved");
    assert_eq!(key, ("digest-ana".into(), vec![0x00, 0xff, 0x10], "2026-01-02 03:04:05+00".into()));
    let password: String =
        sqlx::query_scalar("SELECT password_hash FROM auth.passwords WHERE user_id = 'ana'")
            .fetch_one(&credentials)
            .await
            .expect("the password moved");
    assert_eq!(password, "$argon2id$x");
    let session: String =
        sqlx::query_scalar("SELECT csrf_token FROM auth.sessions WHERE token_hash = 'token-hash'")
            .fetch_one(&credentials)
            .await
            .expect("the session moved");
    assert_eq!(session, "csrf");
    let revoked: Option<String> =
        sqlx::query_scalar("SELECT revoked_at::text FROM auth.api_keys WHERE key_prefix = 'gps_abc'")
            .fetch_one(&credentials)
            .await
            .expect("the API key moved");
    assert_eq!(revoked.as_deref(), Some("2026-05-06 07:08:09+00"));
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('auth', 'privacy')",
    )
    .fetch_one(&read)
    .await
    .expect("schemas");
    assert_eq!(left, 0, "the read database holds only what the log rebuilds");
    // Run again (another start): nothing to move, nothing lost.
    gps_gateway::accounts::connect_credentials(&credentials_url, Some(&read)).await.expect("again");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth.api_keys").fetch_one(&credentials).await.expect("n");
    assert_eq!(keys, 1);
}
