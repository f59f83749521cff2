//! The API keeps its contract for every input: rejections of any kind are
//! problem documents naming the field, text Postgres cannot hold is refused
//! at the edge (never a 500), a `min_sequence` the log has not reached is
//! refused at once, and the OpenAPI document has no dangling reference.

use serde_json::json;

use crate::gateway::{TestGateway, product};
use crate::http::Response;

/// Asserts `response` is a problem document of `status` naming `field`.
fn assert_problem(response: &Response, status: u16, field: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/problem+json"), "{}", response.body);
    let problem = response.json();
    assert_eq!(problem["status"], status, "{}", response.body);
    assert_eq!(problem["field"], field, "{}", response.body);
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", response.body);
}

#[tokio::test]
async fn a_nul_in_the_sign_in_email_is_a_bad_request_naming_the_email() {
    let gateway = TestGateway::start().await;
    gateway.user("ana").await;
    let signed_in = gateway
        .call(
            "POST",
            "/api/v1/session",
            &[],
            Some(json!({"email": "ana\u{0}@example.com", "password": "a long enough password"})),
        )
        .await;
    assert_problem(&signed_in, 400, "email");
}

#[tokio::test]
async fn a_malformed_query_on_a_list_route_is_a_problem_naming_the_parameter() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let negative_wait = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products?wait_ms=-1", None).await;
    assert_problem(&negative_wait, 400, "wait_ms");
    let wordy_limit = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/subjects?limit=many", None).await;
    assert_problem(&wordy_limit, 400, "limit");
    let too_long_a_wait =
        gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products?wait_ms=30001", None).await;
    assert_problem(&too_long_a_wait, 400, "wait_ms");
    let nul_filter = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products?q=dr%00ess", None).await;
    assert_problem(&nul_filter, 400, "q");
    let unknown_quality =
        gateway.as_user(&owner, "GET", "/api/v1/brands/acme/predictions?quality=shiny", None).await;
    assert_problem(&unknown_quality, 400, "quality");
}

#[tokio::test]
async fn a_min_sequence_beyond_the_log_is_refused_at_once_naming_the_last_sequence() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let last = created.json()["stream_sequence"].as_u64().expect("sequence");

    let started = std::time::Instant::now();
    let beyond = gateway
        .as_user(&owner, "GET", "/api/v1/brands/acme/products?min_sequence=999999&wait_ms=20000", None)
        .await;
    // Refused without holding the request for its 20 s wait.
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "held for {:?}", started.elapsed());
    assert_problem(&beyond, 409, "min_sequence");
    assert!(beyond.json()["type"].as_str().is_some_and(|t| t.ends_with("beyond-the-log")), "{}", beyond.body);
    assert!(
        beyond.json()["detail"].as_str().is_some_and(|d| d.contains(&last.to_string())),
        "{}",
        beyond.body
    );

    let beyond_by_header = gateway
        .call(
            "GET",
            "/api/v1/brands/acme/products/p1",
            &[("Cookie", owner.cookie.as_str()), ("gps-min-sequence", "999999")],
            None,
        )
        .await;
    assert_problem(&beyond_by_header, 409, "gps-min-sequence");

    // The sequence the command answered is read as before.
    let read = gateway
        .as_user(&owner, "GET", &format!("/api/v1/brands/acme/products/p1?min_sequence={last}"), None)
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
}

#[tokio::test]
async fn bodies_of_the_wrong_type_size_or_text_are_problems_naming_the_field() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let mut nul_name = product("p1");
    nul_name["name"] = json!("Linen\u{0}dress");
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(nul_name)).await;
    assert_problem(&created, 400, "name");
    let mut nul_attribute = product("p1");
    nul_attribute["attributes"] = json!({"colour": "bl\u{0}ack"});
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(nul_attribute)).await;
    assert_problem(&created, 400, "attributes.colour");
    let wrong_shape = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(json!({"sku": 5, "name": "x"})))
        .await;
    assert_problem(&wrong_shape, 400, "sku");
    // An optional body (a reason) goes through the same checks.
    assert_eq!(
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await.status,
        201
    );
    let archived = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/products/p1/archive", Some(json!({"reason": "\u{0}"})))
        .await;
    assert_problem(&archived, 400, "reason");
    // `null` says "no body" as the document allows.
    let archived =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products/p1/archive", Some(json!(null))).await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    let nul_path = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products/p%001", None).await;
    assert_problem(&nul_path, 400, "product");
}

#[tokio::test]
async fn unknown_addresses_and_methods_are_problem_documents() {
    let gateway = TestGateway::start().await;
    let unknown = gateway.call("GET", "/api/v1/nothing-here", &[], None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.header("content-type"), Some("application/problem+json"));
    let wrong_method = gateway.call("PUT", "/api/v1/session", &[], None).await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.body);
    assert_eq!(wrong_method.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn an_api_client_id_used_before_is_a_conflict_not_a_server_error() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let client = json!({"api_client_id": "c1", "name": "Sync", "role": "viewer"});
    let first =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/api-clients", Some(client.clone())).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/api-clients", Some(client)).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.header("content-type"), Some("application/problem+json"));
}

#[tokio::test]
async fn a_body_over_its_limit_is_a_problem_naming_the_body() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let mut oversized = product("p1");
    // Over the 2 MiB every JSON body may have.
    oversized["name"] = json!("x".repeat(3 * 1024 * 1024));
    let created =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(oversized.clone())).await;
    assert_problem(&created, 413, "body");
    // With an Idempotency-Key the body is read first, for its fingerprint:
    // the same problem.
    let mut headers = owner.headers();
    headers.push(("Idempotency-Key", "too-large-1"));
    let keyed = gateway.call("POST", "/api/v1/brands/acme/products", &headers, Some(oversized)).await;
    assert_problem(&keyed, 413, "body");
}
