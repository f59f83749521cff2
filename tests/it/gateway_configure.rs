//! The Configure stage's command endpoints (subjects, styles, shootings,
//! looks) on a real gateway: each round trip recorded as the right events,
//! fields named on malformed input, and domain refusals as 404/409/422.

use gps_commands::CommandHandler;
use gps_domain::Aggregate;
use gps_domain::look::Look;
use gps_domain::shooting::{Shooting, ShootingStatus};
use gps_domain::style::Style;
use gps_domain::subject::Subject;
use serde_json::json;

use crate::gateway::{Session, TestGateway, product};
use crate::harness::brand;
use crate::http::{Response, assert_status};

/// A valid style definition whose mood is `mood`.
pub(crate) fn style_definition(mood: &str) -> serde_json::Value {
    json!({
        "background": "seamless paper, warm off-white",
        "lighting": "soft key from the left",
        "mood": mood,
        "positive_prompt": ["editorial"],
        "negative_prompt": [],
        "reference_images": [],
        "guidelines": [{"kind": "dont", "text": "no props"}]
    })
}

/// Valid shooting defaults with this aspect ratio.
pub(crate) fn shooting_defaults(aspect_ratio: &str) -> serde_json::Value {
    json!({
        "shot_types": ["full-body", "detail"],
        "output": {"aspect_ratio": aspect_ratio, "long_edge_px": 2048, "format": "jpeg"}
    })
}

/// Shooting rules with this many variants per shot.
pub(crate) fn shooting_rules(variants_per_shot: u8) -> serde_json::Value {
    json!({"quality_gates": {"require_automatic_checks": true}, "variants_per_shot": variants_per_shot})
}

async fn load<A: Aggregate>(gateway: &TestGateway, id: &str) -> A {
    let address = CommandHandler::address::<A>(&brand(), id).expect("address");
    gateway.state.commands.load::<A>(&address).await.expect("load").state
}

/// The owner of brand `acme`, with a draft shooting `sh1` and a product `p1`.
async fn acme_with_shooting(gateway: &TestGateway) -> Session {
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p1"))).await;
    assert_status(&created, 201);
    let shooting = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/shootings",
            Some(json!({"shooting_id": "sh1", "name": "Summer", "defaults": shooting_defaults("4:5")})),
        )
        .await;
    assert_status(&shooting, 201);
    owner
}

#[tokio::test]
async fn a_subject_is_created_described_anew_and_retired_for_good() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/subjects",
            Some(json!({"subject_id": "mia", "name": "Mia", "description": "Tall, short dark hair"})),
        )
        .await;
    assert_status(&created, 201);
    assert_eq!(created.json()["id"], "mia");
    let sequence = created.json()["stream_sequence"].as_u64().expect("sequence");
    assert_eq!(created.header("gps-stream-sequence"), Some(sequence.to_string().as_str()));

    let described = gateway
        .as_user(
            &owner,
            "PATCH",
            "/api/v1/brands/acme/subjects/mia",
            Some(json!({"description": "Tall, long dark hair"})),
        )
        .await;
    assert_status(&described, 200);
    assert_eq!(described.json()["version"], 2);
    let subject: Subject = load(&gateway, "mia").await;
    let details = subject.details.expect("created");
    assert_eq!(details.name.as_str(), "Mia");
    assert_eq!(details.description.as_str(), "Tall, long dark hair");

    let retired = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/subjects/mia/retire",
            Some(json!({"reason": "contract ended"})),
        )
        .await;
    assert_status(&retired, 200);
    let subject: Subject = load(&gateway, "mia").await;
    assert_eq!(subject.retired.map(|r| r.as_str().to_owned()).as_deref(), Some("contract ended"));
    let after = gateway
        .as_user(&owner, "PATCH", "/api/v1/brands/acme/subjects/mia", Some(json!({"description": "x"})))
        .await;
    assert_status(&after, 409);

    let generated = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/subjects",
            Some(json!({"name": "Noa", "description": "Athletic build"})),
        )
        .await;
    assert_status(&generated, 201);
    let id = generated.json()["id"].as_str().expect("id").to_owned();
    assert!(load::<Subject>(&gateway, &id).await.details.is_some(), "a generated id {id} was used");
    let missing = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/subjects/ghost/retire", Some(json!({"reason": "r"})))
        .await;
    assert_status(&missing, 404);
}

#[tokio::test]
async fn a_style_is_created_at_version_one_revised_to_the_next_and_archived() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let created = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/styles",
            Some(json!({"style_id": "studio", "name": "Studio", "definition": style_definition("calm")})),
        )
        .await;
    assert_status(&created, 201);
    let revised = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/styles/studio/definition",
            Some(json!({"definition": style_definition("bold")})),
        )
        .await;
    assert_status(&revised, 200);
    let style: Style = load(&gateway, "studio").await;
    let (version, definition) = style.current().expect("created");
    assert_eq!(version, 2);
    assert_eq!(definition.mood.as_str(), "bold");

    // Archiving takes an optional body.
    let archived = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/styles/studio/archive", None).await;
    assert_status(&archived, 200);
    assert!(load::<Style>(&gateway, "studio").await.archived);
    let after = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/styles/studio/definition",
            Some(json!({"definition": style_definition("calm")})),
        )
        .await;
    assert_status(&after, 409);

    // A contradictory definition breaks a business rule.
    let mut contradictory = style_definition("calm");
    contradictory["guidelines"] =
        json!([{"kind": "do", "text": "No props"}, {"kind": "dont", "text": "no props"}]);
    let refused = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/styles",
            Some(json!({"name": "Odd", "definition": contradictory})),
        )
        .await;
    assert_status(&refused, 422);
    assert!(refused.json()["detail"].as_str().is_some_and(|d| d.contains("both a do and a don't")));
}

#[tokio::test]
async fn a_draft_shooting_is_renamed_and_configured_and_once_archived_takes_no_new_defaults() {
    let gateway = TestGateway::start().await;
    let owner = acme_with_shooting(&gateway).await;
    let renamed = gateway
        .as_user(&owner, "PATCH", "/api/v1/brands/acme/shootings/sh1", Some(json!({"name": "Summer 26"})))
        .await;
    assert_status(&renamed, 200);
    let defaults = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/defaults",
            Some(json!({"defaults": shooting_defaults("16:9")})),
        )
        .await;
    assert_status(&defaults, 200);
    let rules = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/rules",
            Some(json!({"rules": shooting_rules(2)})),
        )
        .await;
    assert_status(&rules, 200);
    let view = load::<Shooting>(&gateway, "sh1").await.view().expect("created");
    assert_eq!(view.name.as_str(), "Summer 26");
    assert_eq!(view.defaults.output.aspect_ratio.to_string(), "16:9");
    assert_eq!(view.rules.variants_per_shot, 2);
    assert_eq!(view.status, ShootingStatus::Draft);

    // Reopening a draft is already satisfied: nothing is recorded.
    let reopened = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/sh1/reopen", None).await;
    assert_status(&reopened, 200);
    assert_eq!(reopened.json()["events"], 0);
    let completed = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/sh1/complete", None).await;
    assert_status(&completed, 409);
    assert!(completed.json()["detail"].as_str().is_some_and(|d| d.contains("never been launched")));
    let impossible = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/rules",
            Some(json!({"rules": shooting_rules(9)})),
        )
        .await;
    assert_status(&impossible, 422);

    let archived = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/shootings/sh1/archive",
            Some(json!({"reason": "cancelled"})),
        )
        .await;
    assert_status(&archived, 200);
    assert_eq!(
        load::<Shooting>(&gateway, "sh1").await.view().expect("view").status,
        ShootingStatus::Archived
    );
    let refused = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/defaults",
            Some(json!({"defaults": shooting_defaults("1:1")})),
        )
        .await;
    assert_status(&refused, 409);
    assert!(refused.json()["detail"].as_str().is_some_and(|d| d.contains("archived")));
}

#[tokio::test]
async fn a_look_is_added_to_a_draft_shooting_changed_in_every_part_and_removed() {
    let gateway = TestGateway::start().await;
    let owner = acme_with_shooting(&gateway).await;
    let second = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(product("p2"))).await;
    assert_status(&second, 201);
    let created = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/shootings/sh1/looks",
            Some(json!({
                "look_id": "l1",
                "name": "Linen day",
                "products": ["p1"],
                "subject": "mia",
                "guidelines": {"dos": ["show the back pleat"]},
                "shot_types": ["detail"]
            })),
        )
        .await;
    assert_status(&created, 201);
    let look: Look = load(&gateway, "l1").await;
    let details = look.details.expect("created");
    assert_eq!(details.shooting_id.as_str(), "sh1");
    assert_eq!(details.subject.as_ref().map(|s| s.as_str()), Some("mia"));
    assert_eq!(details.style, None);
    assert_eq!(details.guidelines.dos.len(), 1);

    let base = "/api/v1/brands/acme/shootings/sh1/looks/l1";
    for (method, path, body) in [
        ("PATCH", base.to_owned(), json!({"name": "Linen evening"})),
        ("PUT", format!("{base}/products"), json!({"products": ["p2", "p1"]})),
        ("PUT", format!("{base}/subject"), json!({"subject": null})),
        ("PUT", format!("{base}/style"), json!({"style": "studio"})),
        ("PUT", format!("{base}/guidelines"), json!({"guidelines": {"donts": ["no sunglasses"]}})),
        ("PUT", format!("{base}/shot-types"), json!({"shot_types": null})),
    ] {
        let changed = gateway.as_user(&owner, method, &path, Some(body)).await;
        assert_status(&changed, 200);
        assert_eq!(changed.json()["events"], 1, "{method} {path}");
    }
    let look: Look = load(&gateway, "l1").await;
    let details = look.details.expect("created");
    assert_eq!(details.name.as_str(), "Linen evening");
    assert_eq!(details.products.iter().map(|p| p.as_str()).collect::<Vec<_>>(), ["p2", "p1"]);
    assert_eq!(details.subject, None);
    assert_eq!(details.style.as_ref().map(|s| s.as_str()), Some("studio"));
    assert!(details.guidelines.dos.is_empty());
    assert_eq!(details.guidelines.donts.len(), 1);
    assert_eq!(details.shot_types, None);

    let removed =
        gateway.as_user(&owner, "DELETE", base, Some(json!({"reason": "merged into another look"}))).await;
    assert_status(&removed, 200);
    assert!(load::<Look>(&gateway, "l1").await.removed);
    let renamed = gateway.as_user(&owner, "PATCH", base, Some(json!({"name": "Back again"}))).await;
    assert_status(&renamed, 409);

    // An archived shooting takes no new looks.
    let archived = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/sh1/archive", None).await;
    assert_status(&archived, 200);
    let late = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/shootings/sh1/looks",
            Some(json!({"name": "Late", "products": ["p1"]})),
        )
        .await;
    assert_status(&late, 409);
}

#[tokio::test]
async fn a_launch_takes_the_shootings_current_looks_and_a_launched_shooting_takes_no_new_look_until_reopened()
{
    let gateway = TestGateway::start().await;
    let owner = acme_with_shooting(&gateway).await;
    let looks = "/api/v1/brands/acme/shootings/sh1/looks";
    for body in [
        json!({"look_id": "l1", "name": "Detail", "products": ["p1"], "shot_types": ["detail"]}),
        json!({"look_id": "l2", "name": "Defaults", "products": ["p1"]}),
        json!({"look_id": "l3", "name": "Dropped", "products": ["p1"]}),
    ] {
        assert_status(&gateway.as_user(&owner, "POST", looks, Some(body)).await, 201);
    }
    let removed = gateway.as_user(&owner, "DELETE", &format!("{looks}/l3"), None).await;
    assert_status(&removed, 200);

    // The launch waits for the looks read model to have the removal, then
    // launches the current looks in the order they were added.
    let launch = "/api/v1/brands/acme/shootings/sh1/launch";
    let launched = gateway
        .as_user(&owner, "POST", launch, Some(json!({"min_sequence": removed.json()["stream_sequence"]})))
        .await;
    assert_status(&launched, 200);
    assert_eq!(launched.json()["events"], 1);
    let shooting = load::<Shooting>(&gateway, "sh1").await;
    assert_eq!(shooting.view().expect("view").status, ShootingStatus::Launched);
    let plan: Vec<(String, Vec<String>)> = shooting
        .launched_looks
        .iter()
        .map(|look| (look.look_id.to_string(), look.shot_types.iter().map(ToString::to_string).collect()))
        .collect();
    assert_eq!(
        plan,
        [
            ("l1".to_owned(), vec!["detail".to_owned()]),
            ("l2".to_owned(), vec!["full-body".to_owned(), "detail".to_owned()])
        ]
    );

    let late = json!({"look_id": "l4", "name": "Late", "products": ["p1"]});
    let refused = gateway.as_user(&owner, "POST", looks, Some(late.clone())).await;
    assert_status(&refused, 409);
    assert!(refused.json()["detail"].as_str().is_some_and(|d| d.contains("reopen")), "{}", refused.body);
    let again = gateway.as_user(&owner, "POST", launch, None).await;
    assert_status(&again, 409);

    let reopened = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/sh1/reopen", None).await;
    assert_status(&reopened, 200);
    let added = gateway.as_user(&owner, "POST", looks, Some(late)).await;
    assert_status(&added, 201);
    let relaunched = gateway
        .as_user(&owner, "POST", launch, Some(json!({"min_sequence": added.json()["stream_sequence"]})))
        .await;
    assert_status(&relaunched, 200);
    let shooting = load::<Shooting>(&gateway, "sh1").await;
    assert_eq!(shooting.view().expect("view").launch_number, 2);
    assert_eq!(
        shooting.launched_looks.iter().map(|look| look.look_id.as_str()).collect::<Vec<_>>(),
        ["l1", "l2", "l4"]
    );

    // A sequence the log has never reached: refused at once, nothing launched.
    let reopened = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/sh1/reopen", None).await;
    assert_status(&reopened, 200);
    let too_far =
        gateway.as_user(&owner, "POST", launch, Some(json!({"min_sequence": 999_999, "wait_ms": 200}))).await;
    assert_status(&too_far, 409);
    assert!(
        too_far.json()["type"].as_str().is_some_and(|t| t.ends_with("beyond-the-log")),
        "{}",
        too_far.body
    );
    assert_eq!(too_far.json()["field"], "min_sequence");
    assert_eq!(load::<Shooting>(&gateway, "sh1").await.view().expect("view").status, ShootingStatus::Draft);
    let missing = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/shootings/nope/launch", None).await;
    assert_status(&missing, 404);
}

#[tokio::test]
async fn a_look_for_a_missing_shooting_or_another_brands_shooting_is_not_found() {
    let gateway = TestGateway::start().await;
    let owner = acme_with_shooting(&gateway).await;
    let bob = gateway.brand_with_owner("other", "bob").await;
    let theirs = gateway
        .as_user(
            &bob,
            "POST",
            "/api/v1/brands/other/shootings",
            Some(json!({"shooting_id": "sh-other", "name": "Theirs", "defaults": shooting_defaults("4:5")})),
        )
        .await;
    assert_status(&theirs, 201);
    let look = json!({"name": "Look", "products": ["p1"]});
    for shooting in ["sh-other", "nowhere"] {
        let response = gateway
            .as_user(
                &owner,
                "POST",
                &format!("/api/v1/brands/acme/shootings/{shooting}/looks"),
                Some(look.clone()),
            )
            .await;
        assert_status(&response, 404);
    }
    let elsewhere = gateway
        .as_user(&owner, "POST", "/api/v1/brands/other/shootings/sh-other/looks", Some(look.clone()))
        .await;
    assert_status(&elsewhere, 404);
    let missing_look = gateway
        .as_user(
            &owner,
            "PATCH",
            "/api/v1/brands/acme/shootings/sh1/looks/ghost",
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_status(&missing_look, 404);
}

#[tokio::test]
async fn malformed_configure_requests_get_a_400_that_names_the_field() {
    let gateway = TestGateway::start().await;
    let owner = acme_with_shooting(&gateway).await;
    let field = |response: &Response| {
        assert_status(response, 400);
        response.json()["field"].as_str().unwrap_or_default().to_owned()
    };

    let bad_ratio = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/defaults",
            Some(json!({"defaults": shooting_defaults("wide")})),
        )
        .await;
    assert_eq!(field(&bad_ratio), "defaults.output.aspect_ratio");
    assert!(bad_ratio.json()["detail"].as_str().is_some_and(|d| d.contains("W:H")), "{}", bad_ratio.body);

    let looks = "/api/v1/brands/acme/shootings/sh1/looks";
    let empty = gateway.as_user(&owner, "POST", looks, Some(json!({"name": "L", "products": []}))).await;
    assert_eq!(field(&empty), "products");
    let bad_product =
        gateway.as_user(&owner, "POST", looks, Some(json!({"name": "L", "products": ["p1", "a b"]}))).await;
    assert_eq!(field(&bad_product), "products[1]");
    let bad_shot_type = gateway
        .as_user(
            &owner,
            "POST",
            looks,
            Some(json!({"name": "L", "products": ["p1"], "shot_types": ["Full"]})),
        )
        .await;
    assert_eq!(field(&bad_shot_type), "shot_types[0]");
    let bad_guidelines = gateway
        .as_user(
            &owner,
            "POST",
            looks,
            Some(json!({"name": "L", "products": ["p1"], "guidelines": {"dos": [""]}})),
        )
        .await;
    assert_eq!(field(&bad_guidelines), "guidelines.dos[0]");

    let mut incomplete = style_definition("calm");
    incomplete.as_object_mut().expect("object").remove("lighting");
    let missing = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/styles",
            Some(json!({"name": "S", "definition": incomplete})),
        )
        .await;
    assert_eq!(field(&missing), "definition");
    assert!(missing.json()["detail"].as_str().is_some_and(|d| d.contains("lighting")), "{}", missing.body);

    let bad_rules = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/shootings/sh1/rules",
            Some(json!({"rules": {"quality_gates": {}, "variants_per_shot": 2}})),
        )
        .await;
    assert_eq!(field(&bad_rules), "rules.quality_gates");

    let unknown = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/subjects",
            Some(json!({"name": "Mia", "description": "d", "age": 30})),
        )
        .await;
    // The unknown field itself is named.
    assert_eq!(field(&unknown), "age", "{}", unknown.body);
    let no_reason =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/subjects/mia/retire", Some(json!({}))).await;
    assert_eq!(field(&no_reason), "body");
    let bad_id = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/shootings",
            Some(json!({"shooting_id": "a.b", "name": "S", "defaults": shooting_defaults("4:5")})),
        )
        .await;
    assert_eq!(field(&bad_id), "shooting_id");
}
