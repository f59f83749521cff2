//! Adding members by address (issue 16): the answer never tells whether the
//! address had an account; a person GPS made for it gets a mail with a
//! one-time link to choose a password, which works once, expires, and never
//! enters the event log; before that, signing in fails like any wrong
//! password.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::gateway::{Session, TestGateway};
use crate::http::Response;

const PASSWORD: &str = "a long enough password";
const NEW_PASSWORD: &str = "my own new password";

async fn add(gateway: &TestGateway, owner: &Session, email: &str, role: &str) -> Response {
    gateway
        .as_user(owner, "POST", "/api/v1/brands/acme/members", Some(json!({"email": email, "role": role})))
        .await
}

fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object().expect("an object").keys().cloned().collect()
}

/// The mails in the outbox addressed to `email`.
fn mails_to(gateway: &TestGateway, email: &str) -> Vec<String> {
    gateway.outbox_mails().into_iter().filter(|mail| mail.contains(&format!("<{email}>"))).collect()
}

/// The one-time token in a mail's link, if it has one.
fn token_in(mail: &str) -> Option<String> {
    let (_, rest) = mail.split_once("/app/set-password?token=")?;
    Some(rest.chars().take_while(char::is_ascii_hexdigit).collect())
}

async fn set_password(gateway: &TestGateway, token: &str, password: &str) -> Response {
    gateway.call("POST", "/api/v1/password", &[], Some(json!({"token": token, "password": password}))).await
}

async fn sign_in(gateway: &TestGateway, email: &str, password: &str) -> Response {
    gateway.call("POST", "/api/v1/session", &[], Some(json!({"email": email, "password": password}))).await
}

/// A brand `acme` owned by ana; zoe has an account (with a password) and
/// new@example.com has none. Both are added as reviewers.
async fn acme_with_zoe_and_a_newcomer_added() -> (TestGateway, Session, Response, Response) {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    gateway.person("zoe").await;
    let known = add(&gateway, &owner, "zoe@example.com", "reviewer").await;
    let unknown = add(&gateway, &owner, "new.comer@example.com", "reviewer").await;
    (gateway, owner, known, unknown)
}

#[tokio::test]
async fn adding_an_address_without_an_account_answers_like_adding_one_with_an_account_and_both_are_mailed() {
    let (gateway, owner, known, unknown) = acme_with_zoe_and_a_newcomer_added().await;
    assert_eq!(known.status, 201, "{}", known.body);
    assert_eq!(unknown.status, known.status, "{}", unknown.body);
    assert_eq!(keys(&unknown.json()), keys(&known.json()));
    assert_eq!(unknown.json()["events"], known.json()["events"]);
    assert_eq!(unknown.header("content-type"), known.header("content-type"));
    let newcomer = unknown.json()["id"].as_str().expect("member id").to_owned();

    // Both are members, the newcomer under a name from their address.
    let sequence = unknown.json()["stream_sequence"].as_u64().expect("sequence");
    let members = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/members?min_sequence={sequence}"), None)
        .await;
    assert_eq!(members.status, 200, "{}", members.body);
    let members = members.json()["items"].as_array().cloned().expect("items");
    let member = |id: &str| members.iter().find(|m| m["member_id"] == id).cloned();
    assert_eq!(member("zoe").expect("zoe is a member")["role"], "reviewer");
    let added = member(&newcomer).expect("the newcomer is a member");
    assert_eq!(added["role"], "reviewer");
    assert_eq!(added["display_name"], "New Comer");
    assert_eq!(added["email"], "new.comer@example.com");

    // One mail each: zoe's without a link, the newcomer's with one.
    let to_zoe = mails_to(&gateway, "zoe@example.com");
    let to_newcomer = mails_to(&gateway, "new.comer@example.com");
    assert_eq!((to_zoe.len(), to_newcomer.len()), (1, 1), "{:?}", gateway.outbox_mails());
    for mail in [&to_zoe[0], &to_newcomer[0]] {
        assert!(mail.contains("Subject: You were added to Brand on GPS\r\n"), "{mail}");
        assert!(mail.contains("as reviewer"), "{mail}");
        assert!(mail.contains("\r\nDate: ") && mail.contains("\r\nMessage-ID: <"), "{mail}");
    }
    assert_eq!(token_in(&to_zoe[0]), None, "a person with a password gets no link");
    assert_eq!(token_in(&to_newcomer[0]).map(|t| t.len()), Some(64), "{}", to_newcomer[0]);

    // Re-adding either, with the same role or another, answers alike: the
    // domain's rule for members, whoever has a password.
    let again_known = add(&gateway, &owner, "zoe@example.com", "reviewer").await;
    let again_unknown = add(&gateway, &owner, "new.comer@example.com", "reviewer").await;
    assert_eq!(again_known.status, again_unknown.status, "{} / {}", again_known.body, again_unknown.body);
    assert_eq!(keys(&again_known.json()), keys(&again_unknown.json()));
    assert_eq!(again_unknown.json()["events"], 0);
    let other_role_known = add(&gateway, &owner, "zoe@example.com", "producer").await;
    let other_role_unknown = add(&gateway, &owner, "new.comer@example.com", "producer").await;
    assert_eq!(other_role_known.status, 422, "{}", other_role_known.body);
    assert_eq!(other_role_unknown.status, 422, "{}", other_role_unknown.body);
    assert_eq!(keys(&other_role_known.json()), keys(&other_role_unknown.json()));
    // Adding again resent a link to the person without a password (how an
    // owner resends a lost one), and mailed nobody else.
    assert_eq!(mails_to(&gateway, "zoe@example.com").len(), 1);
    let resent = mails_to(&gateway, "new.comer@example.com");
    assert_eq!(resent.len(), 2, "{:?}", gateway.outbox_mails());
    assert_ne!(token_in(&resent[0]), token_in(&resent[1]), "a new link");
}

#[tokio::test]
async fn a_person_added_without_an_account_chooses_a_password_with_the_mailed_link_signs_in_and_sees_the_brand()
 {
    let (gateway, _owner, _, unknown) = acme_with_zoe_and_a_newcomer_added().await;
    let newcomer = unknown.json()["id"].as_str().expect("member id").to_owned();
    let mail = mails_to(&gateway, "new.comer@example.com").pop().expect("a mail");
    let token = token_in(&mail).expect("a link");

    // A password too short is refused without using the link up.
    let short = set_password(&gateway, &token, "short").await;
    assert_eq!(short.status, 400, "{}", short.body);
    assert_eq!(short.json()["field"], "password");

    let set = set_password(&gateway, &token, NEW_PASSWORD).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.json()["user_id"], newcomer);

    let signed_in = sign_in(&gateway, "new.comer@example.com", NEW_PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").and_then(|c| c.split(';').next()).expect("cookie").to_owned();
    let me = gateway.call("GET", "/api/v1/me", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["id"], newcomer);
    let brands: Vec<(String, String)> = me["brands"]
        .as_array()
        .expect("brands")
        .iter()
        .map(|m| {
            (
                m["brand"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(brands, vec![("acme".to_owned(), "reviewer".to_owned())]);
}

#[tokio::test]
async fn a_mailed_link_works_once_and_unknown_or_expired_links_are_refused_naming_the_token() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    assert_eq!(add(&gateway, &owner, "first@example.com", "viewer").await.status, 201);
    assert_eq!(add(&gateway, &owner, "second@example.com", "viewer").await.status, 201);
    let first = token_in(&mails_to(&gateway, "first@example.com")[0]).expect("link");
    let second = token_in(&mails_to(&gateway, "second@example.com")[0]).expect("link");

    assert_eq!(set_password(&gateway, &first, NEW_PASSWORD).await.status, 200);
    let refusals = [
        ("used", set_password(&gateway, &first, "yet another password").await, "already used"),
        ("unknown", set_password(&gateway, &"ab".repeat(32), NEW_PASSWORD).await, "not known"),
    ];
    // The second link expires unused.
    sqlx::query(
        "UPDATE auth.password_tokens SET expires_at = now() - interval '1 second'
         WHERE token_hash = encode(sha256(convert_to($1, 'UTF8')), 'hex')",
    )
    .bind(&second)
    .execute(&gateway.state.credentials)
    .await
    .expect("expire the link");
    let expired = set_password(&gateway, &second, NEW_PASSWORD).await;
    for (case, refused, why) in refusals.into_iter().chain([("expired", expired, "expired")]) {
        assert_eq!(refused.status, 400, "{case}: {}", refused.body);
        let problem = refused.json();
        assert_eq!(problem["field"], "token", "{case}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{case}: {detail}");
        assert!(
            detail.contains("add you again") && detail.contains("gps admin set-password"),
            "{case} says what to do: {detail}"
        );
    }
    // The used link did not change the password it first set.
    assert_eq!(sign_in(&gateway, "first@example.com", NEW_PASSWORD).await.status, 200);
    assert_eq!(sign_in(&gateway, "first@example.com", "yet another password").await.status, 401);
}

#[tokio::test]
async fn setting_a_password_ends_the_persons_other_links() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let other = gateway.brand_with_owner("globex", "bo").await;
    assert_eq!(add(&gateway, &owner, "new@example.com", "viewer").await.status, 201);
    let added = gateway
        .as_user(
            &other,
            "POST",
            "/api/v1/brands/globex/members",
            Some(json!({"email": "new@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let links: Vec<String> =
        mails_to(&gateway, "new@example.com").iter().filter_map(|m| token_in(m)).collect();
    assert_eq!(links.len(), 2, "each brand's mail carries a link while there is no password");
    assert_eq!(set_password(&gateway, &links[1], NEW_PASSWORD).await.status, 200);
    let stale = set_password(&gateway, &links[0], "another new password").await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert_eq!(stale.json()["field"], "token");
}

#[tokio::test]
async fn no_event_holds_the_mailed_token_or_link() {
    let (gateway, _owner, _, unknown) = acme_with_zoe_and_a_newcomer_added().await;
    let mail = mails_to(&gateway, "new.comer@example.com").pop().expect("a mail");
    let token = token_in(&mail).expect("a link");
    assert_eq!(set_password(&gateway, &token, NEW_PASSWORD).await.status, 200);
    let newcomer = unknown.json()["id"].as_str().expect("id").to_owned();

    let mut scan = gps_nats::LogScan::open(&gateway.state.log, "gps.evt.>", 1).await.expect("scan");
    let (mut person_events, mut brand_events) = (0, 0);
    while let Some(message) = scan.next().await.expect("next") {
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        let headers = format!("{:?}", message.headers);
        for secret in [token.as_str(), "set-password?token", NEW_PASSWORD] {
            assert!(
                !text.contains(secret) && !headers.contains(secret),
                "{} holds {secret}: {text}",
                message.subject
            );
        }
        if message.subject.ends_with(&format!(".person.{newcomer}")) {
            person_events += 1;
        }
        if message.subject.contains(".acme.brand.") {
            brand_events += 1;
        }
    }
    assert_eq!(person_events, 2, "registered, then the password changed");
    assert!(brand_events >= 3, "created, zoe added, the newcomer added");
}

#[tokio::test]
async fn signing_in_as_a_person_added_without_an_account_fails_like_a_wrong_password_until_they_choose_one() {
    let (gateway, _owner, _, added) = acme_with_zoe_and_a_newcomer_added().await;
    assert_eq!(added.status, 201, "the newcomer is a person now: {}", added.body);
    let user_id = added.json()["id"].as_str().expect("id").to_owned();
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM auth.passwords WHERE user_id = $1")
            .bind(&user_id)
            .fetch_optional(&gateway.state.credentials)
            .await
            .expect("stored hash");
    assert_eq!(
        stored.as_deref(),
        Some(gps_gateway::accounts::NO_PASSWORD),
        "an account without a usable password"
    );
    let newcomer = sign_in(&gateway, "new.comer@example.com", PASSWORD).await;
    let wrong = sign_in(&gateway, "zoe@example.com", "not zoe's password").await;
    let nobody = sign_in(&gateway, "nobody@example.com", PASSWORD).await;
    assert_eq!(newcomer.status, 401, "{}", newcomer.body);
    for other in [&wrong, &nobody] {
        assert_eq!(newcomer.status, other.status);
        assert_eq!(newcomer.json()["detail"], other.json()["detail"]);
        assert_eq!(keys(&newcomer.json()), keys(&other.json()));
    }
    // Also with the password hash's placeholder itself, or nothing at all.
    assert_eq!(sign_in(&gateway, "new.comer@example.com", "!none").await.status, 401);
}

#[tokio::test]
async fn the_page_behind_the_link_sets_the_password_with_a_form() {
    let (gateway, _owner, _, _) = acme_with_zoe_and_a_newcomer_added().await;
    let mail = mails_to(&gateway, "new.comer@example.com").pop().expect("a mail");
    let token = token_in(&mail).expect("a link");
    let page = gateway.call("GET", &format!("/app/set-password?token={token}"), &[], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!(r#"name="token" value="{token}""#)), "{}", page.body);
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));

    let post = |password: &str, confirm: &str| {
        let form = format!(
            "token={token}&password={}&confirm={}",
            password.replace(' ', "+"),
            confirm.replace(' ', "+")
        );
        let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "http://127.0.0.1")];
        let port = gateway.port;
        async move {
            crate::ingest_support::raw_request(port, "POST", "/app/set-password", &headers, form.as_bytes())
                .await
        }
    };
    let differing = post(NEW_PASSWORD, "something else entirely").await;
    assert_eq!(differing.status, 400, "{}", differing.text());
    assert!(differing.text().contains("differ"));
    let done = post(NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("Your password is set"), "{}", done.text());
    assert_eq!(sign_in(&gateway, "new.comer@example.com", NEW_PASSWORD).await.status, 200);
    let again = post("a third password here", "a third password here").await;
    assert_eq!(again.status, 400);
    assert!(again.text().contains("already used"), "{}", again.text());
}
