//! Commands on running work and delivery set-up over a real gateway:
//! generations cancelled and retried, channel presets defined, redefined and
//! removed, and exports requested — refused for predictions that are not
//! approved and for presets that do not exist, each refusal naming the field.

use gps_commands::CommandHandler;
use gps_domain::generation::{Generation, GenerationCommand, GenerationRequested};
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use serde_json::json;

use crate::gateway::{TestGateway, channel_preset_spec};
use crate::harness::brand;
use crate::http::assert_status;

/// Requests generation `id` of brand `acme` through the command path, as the
/// launch process manager does, from the frozen example of the event.
pub(crate) async fn request_generation(gateway: &TestGateway, id: &str) {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/fixtures/generation.requested.v1.json"
        ))
        .expect("fixture"),
    )
    .expect("json");
    let mut payload = fixture["payload"].clone();
    payload["generation_id"] = json!(id);
    let requested: GenerationRequested = serde_json::from_value(payload).expect("generation requested");
    let address = CommandHandler::address::<Generation>(&brand(), id).expect("address");
    let meta = CommandMeta::generated(Actor::System("launch".into()));
    gateway
        .state
        .commands
        .execute::<Generation>(&address, &meta, &GenerationCommand::RequestGeneration(requested))
        .await
        .expect("request");
}

async fn fail_generation(gateway: &TestGateway, id: &str, retryable: bool) {
    let address = CommandHandler::address::<Generation>(&brand(), id).expect("address");
    let commands = [
        GenerationCommand::StartGeneration {
            agent: gps_domain::values::Name::parse("agent-1").expect("agent"),
        },
        GenerationCommand::FailGeneration {
            reason: gps_domain::values::Text::parse("the provider timed out").expect("text"),
            retryable,
        },
    ];
    for command in commands {
        let meta = CommandMeta::generated(Actor::System("agent".into()));
        gateway.state.commands.execute::<Generation>(&address, &meta, &command).await.expect("command");
    }
}

#[tokio::test]
async fn a_producer_cancels_a_running_generation_and_retries_a_failed_one() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    request_generation(&gateway, "g-cancel").await;
    let cancelled = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/generations/g-cancel/cancel",
            Some(json!({"reason": "wrong style"})),
        )
        .await;
    assert_status(&cancelled, 200);
    let path = format!(
        "/api/v1/brands/acme/generations/g-cancel?min_sequence={}",
        cancelled.json()["stream_sequence"]
    );
    let read = gateway.as_user(&owner, "GET", &path, None).await;
    assert_status(&read, 200);
    assert_eq!(read.json()["status"], "cancelled", "{}", read.body);
    // A cancelled generation cannot be retried.
    let retry = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/generations/g-cancel/retry", None).await;
    assert_status(&retry, 409);

    request_generation(&gateway, "g-retry").await;
    fail_generation(&gateway, "g-retry", true).await;
    let retried =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/generations/g-retry/retry", None).await;
    assert_status(&retried, 200);
    let address = CommandHandler::address::<Generation>(&brand(), "g-retry").expect("address");
    let loaded = gateway.state.commands.load::<Generation>(&address).await.expect("load");
    assert_eq!(loaded.state.attempt(), 2);

    request_generation(&gateway, "g-final").await;
    fail_generation(&gateway, "g-final", false).await;
    let refused =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/generations/g-final/retry", None).await;
    assert_status(&refused, 409);
    assert!(refused.body.contains("a retry cannot fix"), "{}", refused.body);

    let missing = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/generations/nope/cancel", None).await;
    assert_status(&missing, 404);
}

#[tokio::test]
async fn an_owner_defines_redefines_and_removes_a_channel_preset_and_bad_specs_name_the_field() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let path = "/api/v1/brands/acme/channel-presets/web-pdp";
    let defined = gateway.as_user(&owner, "PUT", path, Some(json!({"spec": channel_preset_spec()}))).await;
    assert_status(&defined, 200);
    let mut spec = channel_preset_spec();
    spec["quality"] = json!(70);
    let redefined = gateway.as_user(&owner, "PUT", path, Some(json!({"spec": spec}))).await;
    assert_status(&redefined, 200);
    let list =
        format!("/api/v1/brands/acme/channel-presets?min_sequence={}", redefined.json()["stream_sequence"]);
    let listed = gateway.as_user(&owner, "GET", &list, None).await;
    assert_status(&listed, 200);
    assert!(listed.body.contains("web-pdp") && listed.body.contains("70"), "{}", listed.body);

    let mut bad = channel_preset_spec();
    bad["quality"] = json!(0);
    let refused = gateway.as_user(&owner, "PUT", path, Some(json!({"spec": bad}))).await;
    assert_status(&refused, 400);
    assert_eq!(refused.json()["field"], "spec", "{}", refused.body);
    let mut unknown = channel_preset_spec();
    unknown["format"] = json!("bmp");
    let refused = gateway.as_user(&owner, "PUT", path, Some(json!({"spec": unknown}))).await;
    assert_status(&refused, 400);
    assert_eq!(refused.json()["field"], "spec.format", "{}", refused.body);
    let bad_name = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/channel-presets/-x",
            Some(json!({"spec": channel_preset_spec()})),
        )
        .await;
    assert_status(&bad_name, 400);
    assert_eq!(bad_name.json()["field"], "channel");

    let removed = gateway.as_user(&owner, "DELETE", path, None).await;
    assert_status(&removed, 200);
    let list =
        format!("/api/v1/brands/acme/channel-presets?min_sequence={}", removed.json()["stream_sequence"]);
    let listed = gateway.as_user(&owner, "GET", &list, None).await;
    assert!(!listed.body.contains("web-pdp"), "{}", listed.body);
}

#[tokio::test]
async fn an_export_takes_approved_predictions_only_with_an_existing_preset() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    crate::gateway_review::produce_prediction(&gateway, "pr-ok").await;
    crate::gateway_review::produce_prediction(&gateway, "pr-no").await;
    let approve =
        gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/pr-ok/approve", None).await;
    assert_status(&approve, 200);
    let reject = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/predictions/pr-no/reject",
            Some(json!({"reason": "blurred"})),
        )
        .await;
    assert_status(&reject, 200);

    let export = |predictions: serde_json::Value, channel: &str| json!({"predictions": predictions, "channel": channel, "destination": {"kind": "zip_download"}});
    // Neither the brand's nor built in (web-pdp would be built in).
    let no_preset = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/exports",
            Some(export(json!(["pr-ok"]), "print-lookbook")),
        )
        .await;
    assert_status(&no_preset, 400);
    assert_eq!(no_preset.json()["field"], "channel");
    assert!(
        no_preset.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("channel-presets") && d.contains("web-pdp")),
        "{}",
        no_preset.body
    );

    let defined = gateway
        .as_user(
            &owner,
            "PUT",
            "/api/v1/brands/acme/channel-presets/web-pdp",
            Some(json!({"spec": channel_preset_spec()})),
        )
        .await;
    assert_status(&defined, 200);
    let rejected_one = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/exports",
            Some(export(json!(["pr-ok", "pr-no"]), "web-pdp")),
        )
        .await;
    assert_status(&rejected_one, 422);
    assert!(rejected_one.body.contains("pr-no"), "{}", rejected_one.body);
    let empty = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/exports", Some(export(json!([]), "web-pdp")))
        .await;
    assert_status(&empty, 400);
    assert_eq!(empty.json()["field"], "predictions");
    let ghost = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/exports", Some(export(json!(["ghost"]), "web-pdp")))
        .await;
    assert_status(&ghost, 404);
    let bad_destination = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/exports",
            Some(json!({"predictions": ["pr-ok"], "channel": "web-pdp", "destination": {"kind": "ftp"}})),
        )
        .await;
    assert_status(&bad_destination, 400);
    assert!(bad_destination.json()["field"].as_str().is_some_and(|f| f.starts_with("destination")));

    let accepted = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/exports",
            Some(json!({"export_id": "ex-1", "predictions": ["pr-ok"], "channel": "web-pdp", "destination": {"kind": "zip_download"}})),
        )
        .await;
    assert_status(&accepted, 201);
    let path =
        format!("/api/v1/brands/acme/exports/ex-1?min_sequence={}", accepted.json()["stream_sequence"]);
    let read = gateway.as_user(&owner, "GET", &path, None).await;
    assert_status(&read, 200);
    assert_eq!(read.json()["channel"], "web-pdp", "{}", read.body);
}
