//! The gateway's authorization cache across gateways: a membership change,
//! an API key revocation or a sign-out made through one gateway takes effect
//! on another that had the brand and the credential cached, without waiting
//! for the cache to expire (it would take 30 s; these tests allow 2 s); and
//! sign-ins throttled per account after repeated wrong passwords.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::gateway::{Session, TestGateway, product};
use crate::http::{Response, request, request_from};

/// Calls `path` on `port` until `status` comes back or two seconds pass;
/// returns the last response.
async fn until_status(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
    status: u16,
) -> Response {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = request(port, method, path, headers, body.as_ref()).await;
        if response.status == status || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adds the person of `email` to acme with `role`, as its owner.
pub(crate) async fn add_member(gateway: &TestGateway, owner: &Session, email: &str, role: &str) {
    let added = gateway
        .as_user(owner, "POST", "/api/v1/brands/acme/members", Some(json!({"email": email, "role": role})))
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
}

#[tokio::test]
async fn a_role_change_and_a_removal_on_one_gateway_apply_at_once_on_another() {
    let gateway = TestGateway::start().await;
    let (other, _stop) = gateway.another_gateway().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let pat = gateway.user("pat").await;
    add_member(&gateway, &owner, "pat@example.com", "producer").await;

    // The other gateway learns the brand (and caches it) by serving pat.
    let created =
        request(other, "POST", "/api/v1/brands/acme/products", &pat.headers(), Some(&product("p1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!("/api/v1/brands/acme/products/p1?min_sequence={}", created.json()["stream_sequence"]);
    let read = request(other, "GET", &path, &pat.headers(), None).await;
    assert_eq!(read.status, 200, "{}", read.body);

    // Demoted through the first gateway: the other refuses pat's writes.
    let demoted = gateway
        .as_user(&owner, "PUT", "/api/v1/brands/acme/members/pat/role", Some(json!({"role": "viewer"})))
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.body);
    let refused =
        until_status(other, "POST", "/api/v1/brands/acme/products", &pat.headers(), Some(product("p2")), 403)
            .await;
    assert_eq!(
        refused.status, 403,
        "a demoted producer could still write through another gateway: {}",
        refused.body
    );

    // Removed: the brand disappears for pat on the other gateway.
    let removed = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/members/pat", None).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let hidden =
        until_status(other, "GET", "/api/v1/brands/acme/products/p1", &pat.headers(), None, 404).await;
    assert_eq!(
        hidden.status, 404,
        "a removed member could still read through another gateway: {}",
        hidden.body
    );
    // The owner is unaffected there.
    let owner_read = request(other, "GET", "/api/v1/brands/acme/products/p1", &owner.headers(), None).await;
    assert_eq!(owner_read.status, 200, "{}", owner_read.body);
}

#[tokio::test]
async fn a_sign_out_and_a_key_revocation_on_one_gateway_apply_at_once_on_another() {
    let gateway = TestGateway::start().await;
    let (other, _stop) = gateway.another_gateway().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let vic = gateway.user("vic").await;
    add_member(&gateway, &owner, "vic@example.com", "viewer").await;

    let registered = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/api-clients",
            Some(json!({"api_client_id": "shop", "name": "Shop", "role": "viewer"})),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let key = registered.json()["api_key"].as_str().expect("key").to_owned();
    let bearer = format!("Bearer {key}");
    let key_headers = [("Authorization", bearer.as_str())];

    // Both credentials are used (and remembered) on the other gateway.
    for headers in [vic.headers(), key_headers.to_vec()] {
        let listed = request(other, "GET", "/api/v1/brands/acme/products", &headers, None).await;
        assert_eq!(listed.status, 200, "{}", listed.body);
    }

    let revoked = gateway.as_user(&owner, "DELETE", "/api/v1/brands/acme/api-clients/shop", None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = until_status(other, "GET", "/api/v1/brands/acme/products", &key_headers, None, 401).await;
    assert_eq!(refused.status, 401, "a revoked key still worked on another gateway: {}", refused.body);

    let signed_out = gateway.call("DELETE", "/api/v1/session", &vic.headers(), None).await;
    assert_eq!(signed_out.status, 204, "{}", signed_out.body);
    let refused = until_status(other, "GET", "/api/v1/brands/acme/products", &vic.headers(), None, 401).await;
    assert_eq!(refused.status, 401, "a signed-out session still worked on another gateway: {}", refused.body);
}

#[tokio::test]
async fn a_guesser_gets_no_more_tries_in_a_burst_and_cannot_lock_the_owner_out() {
    let gateway = TestGateway::start().await;
    gateway.user("ana").await;
    let port = gateway.port;
    let attempt_from = |source: [u8; 4], email: String, password: String| async move {
        let body = json!({"email": email, "password": password});
        request_from(Some(source.into()), port, "POST", "/api/v1/session", &[], Some(&body)).await
    };
    // Twenty guesses at once from one address: as many get checked as one
    // after another would (the limit), the rest are refused unchecked.
    let guesser = [127, 0, 0, 2];
    let burst = (0..20).map(|n| attempt_from(guesser, "ana@example.com".into(), format!("guess number {n}")));
    let answers = futures::future::join_all(burst).await;
    let checked = answers.iter().filter(|answer| answer.status == 401).count();
    let refused = answers.iter().filter(|answer| answer.status == 429).count();
    assert_eq!(
        (checked, refused),
        (
            gps_gateway::auth::MAX_FAILED_SIGN_INS as usize,
            20 - gps_gateway::auth::MAX_FAILED_SIGN_INS as usize
        ),
        "{:?}",
        answers.iter().map(|answer| answer.status).collect::<Vec<_>>()
    );
    // The owner, elsewhere, signs in: the guesser's failures are the guesser's.
    let owner = attempt_from([127, 0, 0, 3], "ana@example.com".into(), "a long enough password".into()).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    let still = attempt_from(guesser, "ana@example.com".into(), "a long enough password".into()).await;
    assert_eq!(still.status, 429, "the guesser stays throttled on that account: {}", still.body);

    // One address trying many accounts is throttled across them.
    let sprayer = [127, 0, 0, 4];
    for n in 0..gps_gateway::auth::MAX_FAILED_SIGN_INS_PER_SOURCE {
        let wrong = attempt_from(sprayer, format!("person{n}@example.com"), "Summer2026!!".into()).await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    let sprayed = attempt_from(sprayer, "someone-else@example.com".into(), "Summer2026!!".into()).await;
    assert_eq!(sprayed.status, 429, "{}", sprayed.body);
    assert!(
        sprayed.json()["detail"].as_str().is_some_and(|d| d.contains("from your address")),
        "{}",
        sprayed.body
    );
    let elsewhere =
        attempt_from([127, 0, 0, 5], "someone-else@example.com".into(), "Summer2026!!".into()).await;
    assert_eq!(elsewhere.status, 401, "another address is not throttled: {}", elsewhere.body);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_host_bound_and_secure_and_works_like_the_plain_one() {
    // Behind a trusted proxy that says the browser came over HTTPS.
    let gateway = TestGateway::start_with_state(
        |_| {},
        |mut state| {
            state.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
            state
        },
    )
    .await;
    gateway.user("ana").await;
    let credentials = json!({"email": "ana@example.com", "password": "a long enough password"});
    let https = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "198.51.100.7")];
    let signed_in = gateway.call("POST", "/api/v1/session", &https, Some(credentials.clone())).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let set_cookie = signed_in.header("set-cookie").expect("cookie").to_owned();
    assert!(set_cookie.starts_with("__Host-gps_session="), "{set_cookie}");
    assert!(
        set_cookie.contains("; Secure") && set_cookie.contains("Path=/") && !set_cookie.contains("Domain")
    );
    let cookie = set_cookie.split(';').next().expect("pair").to_owned();
    let csrf = signed_in.json()["csrf_token"].as_str().expect("csrf").to_owned();
    let me = gateway.call("GET", "/api/v1/me", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let out = gateway
        .call(
            "DELETE",
            "/api/v1/session",
            &[("Cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str()), https[0]],
            None,
        )
        .await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.starts_with("__Host-gps_session=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(gateway.call("GET", "/api/v1/me", &[("Cookie", cookie.as_str())], None).await.status, 401);

    // Over plain HTTP the cookie keeps its plain name, without Secure.
    let plain = gateway.call("POST", "/api/v1/session", &[], Some(credentials)).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    let plain_cookie = plain.header("set-cookie").expect("cookie");
    assert!(plain_cookie.starts_with("gps_session=") && !plain_cookie.contains("Secure"), "{plain_cookie}");
}

#[tokio::test]
async fn the_sign_in_form_refuses_a_post_from_another_site() {
    let gateway = TestGateway::start().await;
    gateway.user("ana").await;
    let form = "email=ana%40example.com&password=a+long+enough+password&next=%2Fapp";
    // The test client sends `Host: 127.0.0.1`.
    let post = |origin: &'static str| async move {
        let headers = [("Content-Type", "application/x-www-form-urlencoded"), ("Origin", origin)];
        crate::ingest_support::raw_request(gateway.port, "POST", "/app/sign-in", &headers, form.as_bytes())
            .await
    };
    let foreign = post("https://evil.example").await;
    assert_eq!(foreign.status, 403, "{}", foreign.text());
    assert!(foreign.header("set-cookie").is_none(), "no session for a foreign form");
    let own = post("http://127.0.0.1").await;
    assert_eq!(own.status, 303, "{}", own.text());
    assert!(own.header("set-cookie").is_some_and(|c| c.starts_with("gps_session=")));
}

#[tokio::test]
async fn a_gateway_cut_off_from_nats_forgets_what_it_cached_since_it_may_have_missed_a_removal() {
    let nats = crate::harness::TestNats::start().await;
    let direct = nats.event_log().await;
    let proxy = crate::tcp_proxy::TcpProxy::start(crate::tcp_proxy::host_port(nats.server.url())).await;
    let client = gps_nats::connect(&proxy.nats_url(), "gps-test-gateway").await.expect("connect");
    let proxied = gps_nats::EventLog::new(client, gps_nats::StreamSettings::default());
    let gateway = TestGateway::start_on(nats, proxied.clone()).await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let bob = gateway.user("bob").await;
    add_member(&gateway, &owner, "bob@example.com", "producer").await;
    // Bob's access is now cached by this gateway.
    assert_eq!(gateway.as_user(&bob, "GET", "/api/v1/brands/acme/products", None).await.status, 200);

    // The gateway is cut off while another one removes bob: it misses the event.
    proxy.block();
    let other = gps_commands::CommandHandler::new(direct);
    let brand_address =
        gps_commands::CommandHandler::address::<gps_domain::brand::Brand>(&crate::harness::brand(), "acme")
            .expect("address");
    other
        .execute::<gps_domain::brand::Brand>(
            &brand_address,
            &gps_nats::CommandMeta::new("remove-bob", gps_domain::wire::Actor::System("test".into())),
            &gps_domain::brand::BrandCommand::RemoveMember {
                member_id: gps_domain::ids::MemberId::parse("bob").expect("id"),
            },
        )
        .await
        .expect("removed elsewhere");
    proxy.unblock();
    let reconnected = Instant::now();
    while !matches!(proxied.client().connection_state(), async_nats::connection::State::Connected) {
        assert!(reconnected.elapsed() < Duration::from_secs(20), "the gateway reconnects");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = gateway.as_user(&bob, "GET", "/api/v1/brands/acme/products", None).await;
    assert_eq!(refused.status, 404, "a removal missed while disconnected still applies: {}", refused.body);
}

#[tokio::test]
async fn repeated_wrong_passwords_throttle_that_account_only_and_say_when_to_retry() {
    let gateway = TestGateway::start().await;
    gateway.user("ana").await;
    gateway.user("bob").await;
    let attempt = |email: &str, password: &str| Some(json!({"email": email, "password": password}));
    for n in 0..gps_gateway::auth::MAX_FAILED_SIGN_INS {
        let wrong = gateway
            .call("POST", "/api/v1/session", &[], attempt("ana@example.com", &format!("guess number {n}")))
            .await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
    }
    // Even the right password is refused now, with when to try again.
    let throttled = gateway
        .call("POST", "/api/v1/session", &[], attempt("ANA@example.com ", "a long enough password"))
        .await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    let retry_after: u64 = throttled.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    assert!(
        throttled.json()["detail"].as_str().is_some_and(|d| d.contains("try again")),
        "{}",
        throttled.body
    );
    // Unknown accounts are throttled alike (nothing revealed), other accounts not at all.
    for _ in 0..=gps_gateway::auth::MAX_FAILED_SIGN_INS {
        gateway.call("POST", "/api/v1/session", &[], attempt("nobody@example.com", "whatever it is")).await;
    }
    let unknown =
        gateway.call("POST", "/api/v1/session", &[], attempt("nobody@example.com", "whatever it is")).await;
    assert_eq!(unknown.status, 429, "{}", unknown.body);
    let bob = gateway
        .call("POST", "/api/v1/session", &[], attempt("bob@example.com", "a long enough password"))
        .await;
    assert_eq!(bob.status, 200, "{}", bob.body);

    // Once the failures are older than the window, the right password works
    // again and clears the count.
    sqlx::query("UPDATE auth.sign_in_failures SET failed_at = failed_at - interval '16 minutes'")
        .execute(&gateway.state.credentials)
        .await
        .expect("age the failures");
    let ana = gateway
        .call("POST", "/api/v1/session", &[], attempt("ana@example.com", "a long enough password"))
        .await;
    assert_eq!(ana.status, 200, "{}", ana.body);
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth.sign_in_failures WHERE email = 'ana@example.com'")
            .fetch_one(&gateway.state.credentials)
            .await
            .expect("count");
    assert_eq!(left, 0);
}
