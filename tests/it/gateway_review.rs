//! The Review stage's endpoints on a real gateway: predictions are produced
//! through the command path (as the compute agents will; the API has no
//! endpoint for it), then approved, rejected, revised, commented on and reset
//! over HTTP — each recorded as the right event, refusals as 403/409/400 with
//! the field named, and the review state read back from the read model.

use gps_commands::CommandHandler;
use gps_domain::generation::GenerationStatus;
use gps_domain::ids::{GenerationId, LookId, MemberId, PredictionId};
use gps_domain::prediction::{Prediction, PredictionCommand, Provenance, ReviewState};
use gps_domain::values::{AssetRef, ContentHash, Name, ShotType, WorkflowName, WorkflowRef};
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use serde_json::json;

use crate::gateway::{Session, TestGateway};
use crate::harness::brand;
use crate::http::assert_status;

fn hash(seed: u8) -> ContentHash {
    ContentHash::parse(format!("sha256:{}", format!("{seed:02x}").repeat(32))).expect("hash")
}

/// Records prediction `id` of brand `acme` as a compute agent would, while its
/// generation runs.
pub(crate) async fn produce_prediction(gateway: &TestGateway, id: &str) {
    let command = PredictionCommand::ProducePrediction {
        prediction_id: PredictionId::parse(id).expect("id"),
        brand_id: brand(),
        generation_id: GenerationId::parse("g1").expect("id"),
        look_id: LookId::parse("l1").expect("id"),
        shot_type: ShotType::parse("full-body").expect("shot type"),
        variant_index: 0,
        asset: AssetRef {
            hash: hash(9),
            media_type: "image/jpeg".into(),
            bytes: 1000,
            width: Some(1600),
            height: Some(2000),
        },
        provenance: Provenance {
            workflow: WorkflowRef { name: WorkflowName::parse("on-model").expect("name"), version: 1 },
            provider: Name::parse("local").expect("name"),
            model: Name::parse("local-composite-v1").expect("name"),
            seed: 42,
            input_hashes: vec![hash(1), hash(2)],
            prompt: None,
        },
        quality: None,
        generation_status: GenerationStatus::Running,
    };
    let address = CommandHandler::address::<Prediction>(&brand(), id).expect("address");
    let meta = CommandMeta::generated(Actor::System("compute-agent".into()));
    let outcome =
        gateway.state.commands.execute::<Prediction>(&address, &meta, &command).await.expect("produce");
    assert_eq!(outcome.events.len(), 1);
}

async fn load(gateway: &TestGateway, id: &str) -> gps_commands::Loaded<Prediction> {
    let address = CommandHandler::address::<Prediction>(&brand(), id).expect("address");
    gateway.state.commands.load::<Prediction>(&address).await.expect("load")
}

/// The owner of `acme`, and a member with `role` signed in as `id`.
async fn acme_with_member(gateway: &TestGateway, id: &str, role: &str) -> (Session, Session) {
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let member = gateway.user(id).await;
    let added = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": format!("{id}@example.com"), "role": role})),
        )
        .await;
    assert_status(&added, 201);
    (owner, member)
}

#[tokio::test]
async fn a_reviewer_approves_a_produced_prediction_and_a_viewer_may_not() {
    let gateway = TestGateway::start().await;
    let (owner, reviewer) = acme_with_member(&gateway, "rita", "reviewer").await;
    let viewer = gateway.user("vic").await;
    let added = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "vic@example.com", "role": "viewer"})),
        )
        .await;
    assert_status(&added, 201);
    produce_prediction(&gateway, "pr1").await;

    let approve = "/api/v1/brands/acme/predictions/pr1/approve";
    let refused = gateway.as_user(&viewer, "POST", approve, None).await;
    assert_status(&refused, 403);
    assert_eq!(load(&gateway, "pr1").await.state.review_state(), Some(ReviewState::Pending));

    let approved = gateway.as_user(&reviewer, "POST", approve, None).await;
    assert_status(&approved, 200);
    assert_eq!(approved.json()["events"], 1);
    assert_eq!(approved.json()["id"], "pr1");
    let loaded = load(&gateway, "pr1").await;
    assert_eq!(loaded.state.review_state(), Some(ReviewState::Approved));
    let last = loaded.envelopes.last().expect("events");
    assert_eq!(last.event_type, "prediction.approved");
    assert_eq!(last.actor, Actor::Member(MemberId::parse("rita").expect("id")));

    // Approving again is already satisfied: nothing more is recorded.
    let again = gateway.as_user(&reviewer, "POST", approve, None).await;
    assert_status(&again, 200);
    assert_eq!(again.json()["events"], 0);
    let missing =
        gateway.as_user(&reviewer, "POST", "/api/v1/brands/acme/predictions/nope/approve", None).await;
    assert_status(&missing, 404);
}

#[tokio::test]
async fn approving_a_rejected_prediction_is_refused_until_its_review_is_reset() {
    let gateway = TestGateway::start().await;
    let (_owner, reviewer) = acme_with_member(&gateway, "rita", "reviewer").await;
    produce_prediction(&gateway, "pr1").await;
    let base = "/api/v1/brands/acme/predictions/pr1";

    let no_reason =
        gateway.as_user(&reviewer, "POST", &format!("{base}/reject"), Some(json!({"reason": ""}))).await;
    assert_status(&no_reason, 400);
    assert_eq!(no_reason.json()["field"], "reason");
    let rejected = gateway
        .as_user(
            &reviewer,
            "POST",
            &format!("{base}/reject"),
            Some(json!({"reason": "the sleeve is deformed"})),
        )
        .await;
    assert_status(&rejected, 200);
    assert_eq!(load(&gateway, "pr1").await.state.review_state(), Some(ReviewState::Rejected));

    let approve = format!("{base}/approve");
    let refused = gateway.as_user(&reviewer, "POST", &approve, None).await;
    assert_status(&refused, 409);
    assert!(refused.json()["detail"].as_str().is_some_and(|d| d.contains("reset")), "{}", refused.body);

    let reset = gateway
        .as_user(&reviewer, "POST", &format!("{base}/reset"), Some(json!({"reason": "fixed in retouch"})))
        .await;
    assert_status(&reset, 200);
    assert_eq!(reset.json()["events"], 1);
    assert_eq!(load(&gateway, "pr1").await.state.review_state(), Some(ReviewState::Pending));
    assert_status(&gateway.as_user(&reviewer, "POST", &approve, None).await, 200);
    assert_eq!(load(&gateway, "pr1").await.state.review_state(), Some(ReviewState::Approved));
}

#[tokio::test]
async fn a_revision_request_names_the_region_field_at_fault_and_cannot_be_taken_back() {
    let gateway = TestGateway::start().await;
    let (_owner, reviewer) = acme_with_member(&gateway, "rita", "reviewer").await;
    produce_prediction(&gateway, "pr1").await;
    let revision = "/api/v1/brands/acme/predictions/pr1/revision";
    let sleeve = json!({"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4, "note": "the sleeve"});

    for (region, field) in [
        (json!({"x": 0.8, "y": 0.1, "width": 0.5, "height": 0.1, "note": "too wide"}), "regions[1].width"),
        (json!({"x": 0.1, "y": 1.5, "width": 0.1, "height": 0.1, "note": "below"}), "regions[1].y"),
        (json!({"x": 0.1, "y": 0.1, "width": 0.1, "height": 0.0, "note": "flat"}), "regions[1].height"),
        (json!({"x": 0.1, "y": 0.1, "width": 0.1, "height": 0.1, "note": " "}), "regions[1].note"),
    ] {
        let refused = gateway
            .as_user(
                &reviewer,
                "POST",
                revision,
                Some(json!({"comment": "fix these", "regions": [sleeve.clone(), region]})),
            )
            .await;
        assert_status(&refused, 400);
        assert_eq!(refused.json()["field"], field, "{}", refused.body);
    }
    let no_comment = gateway.as_user(&reviewer, "POST", revision, Some(json!({"comment": ""}))).await;
    assert_eq!(no_comment.json()["field"], "comment");
    assert_eq!(load(&gateway, "pr1").await.state.review_state(), Some(ReviewState::Pending));

    let requested = gateway
        .as_user(
            &reviewer,
            "POST",
            revision,
            Some(json!({"comment": "straighten the sleeve", "regions": [sleeve]})),
        )
        .await;
    assert_status(&requested, 200);
    let state = load(&gateway, "pr1").await.state;
    assert_eq!(state.review_state(), Some(ReviewState::RevisionRequested));
    let region = &state.revision().expect("revision").regions[0];
    assert_eq!((region.x(), region.width(), region.note().as_str()), (0.1, 0.3, "the sleeve"));

    let reset = gateway.as_user(&reviewer, "POST", "/api/v1/brands/acme/predictions/pr1/reset", None).await;
    assert_status(&reset, 409);
    assert!(reset.json()["detail"].as_str().is_some_and(|d| d.contains("cannot be taken back")));
}

#[tokio::test]
async fn comments_are_recorded_and_the_read_model_shows_the_review_state_and_the_comment() {
    let gateway = TestGateway::start().await;
    let (_owner, reviewer) = acme_with_member(&gateway, "rita", "reviewer").await;
    produce_prediction(&gateway, "pr1").await;
    let comments = "/api/v1/brands/acme/predictions/pr1/comments";

    let commented = gateway
        .as_user(&reviewer, "POST", comments, Some(json!({"comment_id": "c1", "text": "Lovely light"})))
        .await;
    assert_status(&commented, 201);
    assert_eq!(commented.json()["id"], "c1");
    assert_eq!(commented.json()["events"], 1);
    let repeated = gateway
        .as_user(&reviewer, "POST", comments, Some(json!({"comment_id": "c1", "text": "Lovely light"})))
        .await;
    assert_eq!(repeated.json()["events"], 0, "{}", repeated.body);
    let generated = gateway.as_user(&reviewer, "POST", comments, Some(json!({"text": "And the pose"}))).await;
    assert_status(&generated, 201);
    assert_ne!(generated.json()["id"], "c1");
    let empty = gateway.as_user(&reviewer, "POST", comments, Some(json!({"text": ""}))).await;
    assert_status(&empty, 400);
    assert_eq!(empty.json()["field"], "text");
    let bad_id =
        gateway.as_user(&reviewer, "POST", comments, Some(json!({"comment_id": "c 1", "text": "x"}))).await;
    assert_eq!(bad_id.json()["field"], "comment_id");
    let state = load(&gateway, "pr1").await.state;
    assert_eq!(state.comments().len(), 2);

    let approved =
        gateway.as_user(&reviewer, "POST", "/api/v1/brands/acme/predictions/pr1/approve", None).await;
    assert_status(&approved, 200);
    let sequence = approved.json()["stream_sequence"].as_u64().expect("sequence");
    let detail = gateway
        .as_user(
            &reviewer,
            "GET",
            &format!("/api/v1/brands/acme/predictions/pr1?min_sequence={sequence}"),
            None,
        )
        .await;
    assert_status(&detail, 200);
    let detail = detail.json();
    assert_eq!(detail["review_state"], "approved");
    assert_eq!(detail["comment_count"], 2);
    assert_eq!(detail["comments"][0]["comment_id"], "c1");
    assert_eq!(detail["comments"][0]["text"], "Lovely light");
    assert_eq!(detail["comments"][1]["text"], "And the pose");
}
