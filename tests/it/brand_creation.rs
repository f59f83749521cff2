//! Who may create a brand: an installation-wide setting (`brand_creation`),
//! by default platform admins only, granted and revoked by an operator.

use gps_domain::ids::MemberId;
use gps_gateway::accounts::{self, BrandCreation};
use serde_json::json;

use crate::gateway::TestGateway;

fn brand(id: &str) -> Option<serde_json::Value> {
    Some(json!({"brand_id": id, "name": "Brand"}))
}

#[tokio::test]
async fn a_person_who_is_not_a_platform_admin_is_refused_and_told_how_to_get_the_right() {
    let gateway = TestGateway::start().await;
    let ana = gateway.person("ana").await;
    let ana_id = MemberId::parse("ana").expect("id");

    let refused = gateway.as_user(&ana, "POST", "/api/v1/brands", brand("acme")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    let detail = refused.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        detail.contains("only platform admins may create brands")
            && detail.contains("gps admin grant-platform-admin"),
        "the refusal says who may and how to get the right: {detail}"
    );
    let address = gps_commands::CommandHandler::address::<gps_domain::brand::Brand>(
        &gps_domain::ids::BrandId::parse("acme").expect("brand"),
        "acme",
    )
    .expect("address");
    let loaded = gateway.state.commands.load::<gps_domain::brand::Brand>(&address).await.expect("load");
    assert!(!loaded.state.exists(), "nothing was written for the refused request");

    // Granted, the same request (same person, same session) creates the brand.
    assert!(
        accounts::grant_platform_admin(&gateway.state.credentials, &ana_id, "test").await.expect("grant")
    );
    assert!(
        !accounts::grant_platform_admin(&gateway.state.credentials, &ana_id, "test").await.expect("grant"),
        "a second grant changes nothing"
    );
    let created = gateway.as_user(&ana, "POST", "/api/v1/brands", brand("acme")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let members = gateway.as_user(&ana, "GET", "/api/v1/me", None).await;
    assert_eq!(members.status, 200, "{}", members.body);

    // Revoked, the next brand is refused again; the brand made stays hers.
    assert!(accounts::revoke_platform_admin(&gateway.state.credentials, &ana_id).await.expect("revoke"));
    let again = gateway.as_user(&ana, "POST", "/api/v1/brands", brand("second")).await;
    assert_eq!(again.status, 403, "{}", again.body);
    let product = json!({"product_id": "p1", "sku": "P-1", "name": "Dress", "category": "dresses"});
    let owned = gateway.as_user(&ana, "POST", "/api/v1/brands/acme/products", Some(product)).await;
    assert_eq!(owned.status, 201, "{}", owned.body);
}

#[tokio::test]
async fn a_grant_ends_with_the_erasure_of_its_person_and_an_unknown_id_cannot_be_granted() {
    let gateway = TestGateway::start().await;
    let _bob = gateway.person("bob").await;
    let bob = MemberId::parse("bob").expect("id");
    let credentials = &gateway.state.credentials;
    accounts::grant_platform_admin(credentials, &bob, "test").await.expect("grant");
    assert!(accounts::is_platform_admin(credentials, &bob).await.expect("check"));
    let listed = accounts::platform_admins(credentials).await.expect("list");
    assert_eq!(
        listed.iter().map(|admin| (admin.user_id.as_str(), admin.granted_by.as_str())).collect::<Vec<_>>(),
        [("bob", "test")]
    );
    assert!(listed[0].granted_at.ends_with('Z'), "{listed:?}");

    accounts::erase_person(
        &gateway.state.commands,
        credentials,
        &bob,
        gps_domain::wire::Actor::System("test".into()),
    )
    .await
    .expect("erase");
    assert!(!accounts::is_platform_admin(credentials, &bob).await.expect("check"));
    assert!(accounts::platform_admins(credentials).await.expect("list").is_empty());

    let nobody = MemberId::parse("nobody").expect("id");
    let error = accounts::grant_platform_admin(credentials, &nobody, "test").await.expect_err("no account");
    assert!(error.to_string().contains("nobody"), "{error}");
}

#[tokio::test]
async fn with_brand_creation_open_to_any_person_a_person_without_rights_creates_a_brand() {
    let gateway = TestGateway::start_with_state(
        |_| {},
        |mut state| {
            state.brand_creation = BrandCreation::AnyPerson;
            state
        },
    )
    .await;
    let carla = gateway.person("carla").await;
    let carla_id = MemberId::parse("carla").expect("id");
    assert!(!accounts::is_platform_admin(&gateway.state.credentials, &carla_id).await.expect("check"));
    let created = gateway.as_user(&carla, "POST", "/api/v1/brands", brand("carla-co")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    // API clients still never create brands.
    let registered = gateway
        .as_user(
            &carla,
            "POST",
            "/api/v1/brands/carla-co/api-clients",
            Some(json!({"api_client_id": "pim", "name": "PIM", "role": "producer"})),
        )
        .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let key = format!("Bearer {}", registered.json()["api_key"].as_str().expect("key"));
    let by_key =
        gateway.call("POST", "/api/v1/brands", &[("Authorization", key.as_str())], brand("key-co")).await;
    assert_eq!(by_key.status, 403, "{}", by_key.body);
}
