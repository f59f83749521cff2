//! The auditors' tools on a real gateway, NATS and Postgres: a prediction's
//! history with production, review and delivery (all through the command
//! path), logged audit reads and a refused auditor write, as-of rebuilds
//! between two approvals, log verification on an intact log and on a copy
//! with one rewritten event, the shadow rebuild comparison before and after a
//! hand-edited row, and export bundles verified with their files alone.

use std::process::Command;

use gps_commands::CommandHandler;
use gps_domain::export::{
    DeliveryLocation, Export, ExportCandidate, ExportCommand, ExportDestination, FileName,
};
use gps_domain::generation::GenerationStatus;
use gps_domain::ids::{ExportId, GenerationId, LookId, PredictionId, RenditionId};
use gps_domain::prediction::{Prediction, PredictionCommand, Provenance, ReviewState};
use gps_domain::values::{
    AspectRatio, AssetRef, Background, Channel, ChannelPresetSpec, ColourSpace, ContentHash, FitMode,
    ImageFormat, Name, ShotType, WorkflowName, WorkflowRef,
};
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use gps_projections::audit::{as_of, bundle, compare, history, verify};
use serde_json::json;
use time::OffsetDateTime;

use crate::gateway::{Session, TestGateway};
use crate::harness::{TestNats, brand};
use crate::http::assert_status;

fn hash(seed: u8) -> ContentHash {
    ContentHash::parse(format!("sha256:{}", format!("{seed:02x}").repeat(32))).expect("hash")
}

fn asset(seed: u8) -> AssetRef {
    AssetRef {
        hash: hash(seed),
        media_type: "image/jpeg".into(),
        bytes: 1000,
        width: Some(1600),
        height: Some(2000),
    }
}

fn system(role: &str) -> CommandMeta {
    CommandMeta::generated(Actor::System(role.into()))
}

/// Records prediction `id` of brand `acme` as a compute agent does.
async fn produce_prediction(gateway: &TestGateway, id: &str) -> u64 {
    let command = PredictionCommand::ProducePrediction {
        prediction_id: PredictionId::parse(id).expect("id"),
        brand_id: brand(),
        generation_id: GenerationId::parse("g1").expect("id"),
        look_id: LookId::parse("l1").expect("id"),
        shot_type: ShotType::parse("full-body").expect("shot type"),
        variant_index: 0,
        asset: asset(9),
        provenance: Provenance {
            workflow: WorkflowRef { name: WorkflowName::parse("on-model").expect("name"), version: 3 },
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
    let outcome = gateway
        .state
        .commands
        .execute::<Prediction>(&address, &system("compute-agent"), &command)
        .await
        .expect("produce");
    outcome.stream_sequence
}

/// Exports `prediction` (approved) and delivers its rendition, as the
/// delivery process does, through the command path.
async fn deliver(gateway: &TestGateway, export: &str, prediction: &str) {
    let address = CommandHandler::address::<Export>(&brand(), export).expect("address");
    let commands = [
        ExportCommand::RequestExport {
            export_id: ExportId::parse(export).expect("id"),
            brand_id: brand(),
            predictions: vec![ExportCandidate {
                prediction_id: PredictionId::parse(prediction).expect("id"),
                review_state: ReviewState::Approved,
            }],
            channel: Channel::parse("web-shop").expect("channel"),
            preset: ChannelPresetSpec {
                long_edge_px: 2000,
                aspect_ratio: AspectRatio::parse("1:1").expect("ratio"),
                fit: FitMode::Pad,
                background: Background::White,
                format: ImageFormat::Jpeg,
                quality: 90,
                colour_space: ColourSpace::Srgb,
                max_bytes: None,
                naming_pattern: "{sku}_{view}_{n}.jpg".into(),
            },
            destination: ExportDestination::ZipDownload,
        },
        ExportCommand::ProduceRendition {
            rendition_id: RenditionId::parse("r1").expect("id"),
            prediction_id: PredictionId::parse(prediction).expect("id"),
            asset: asset(20),
            file_name: FileName::parse("dress_front_1.jpg").expect("file name"),
            checksum: hash(20),
            products: vec![],
        },
        ExportCommand::MarkRenditionDelivered {
            rendition_id: RenditionId::parse("r1").expect("id"),
            location: DeliveryLocation::parse("s3://acme-dam/exports/dress_front_1.jpg").expect("location"),
            checksum: hash(20),
        },
    ];
    for command in commands {
        gateway
            .state
            .commands
            .execute::<Export>(&address, &system("delivery"), &command)
            .await
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    }
}

/// `acme` owned by ana, with an auditor signed in as `audrey`.
async fn acme_with_auditor(gateway: &TestGateway) -> (Session, Session) {
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let auditor = gateway.user("audrey").await;
    let added = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "audrey@example.com", "role": "auditor"})),
        )
        .await;
    assert_status(&added, 201);
    (owner, auditor)
}

fn kinds_and_actors(events: &serde_json::Value) -> Vec<(String, String)> {
    events
        .as_array()
        .expect("events")
        .iter()
        .map(|event| {
            let actor = &event["actor"];
            (
                event["event_type"].as_str().expect("type").to_owned(),
                format!("{}:{}", actor["kind"].as_str().expect("kind"), actor["id"].as_str().expect("id")),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_predictions_history_tells_production_review_and_delivery_with_actors_and_the_read_is_logged() {
    let gateway = TestGateway::start().await;
    let (owner, auditor) = acme_with_auditor(&gateway).await;
    produce_prediction(&gateway, "p1").await;
    let comment = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/predictions/p1/comments",
            Some(json!({"text": "Nice drape"})),
        )
        .await;
    assert_status(&comment, 201);
    assert_status(
        &gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/p1/approve", None).await,
        200,
    );
    deliver(&gateway, "e1", "p1").await;

    let response =
        gateway.as_user(&auditor, "GET", "/api/v1/brands/acme/audit/prediction/p1/history", None).await;
    assert_status(&response, 200);
    let found = response.json();
    assert_eq!(
        kinds_and_actors(&found["events"]),
        [
            ("prediction.produced".to_owned(), "system:compute-agent".to_owned()),
            ("prediction.commented".to_owned(), "member:ana".to_owned()),
            ("prediction.approved".to_owned(), "member:ana".to_owned()),
        ]
    );
    let events = found["events"].as_array().expect("events");
    // Versions in order, each with its command and correlation ids and the state after it.
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["aggregate_version"], index as u64 + 1);
        assert!(event["command_id"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(event["correlation_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    assert_eq!(events[0]["payload"]["provenance"]["seed"], 42);
    assert_eq!(events[0]["payload"]["provenance"]["workflow"]["version"], 3);
    assert_eq!(events[0]["payload"]["provenance"]["provider"], "local");
    let state_after = |index: usize| events[index]["state_after"].to_string();
    assert!(state_after(0).contains("pending") || state_after(0).contains("Pending"), "{}", state_after(0));
    assert!(state_after(2).contains("approved") || state_after(2).contains("Approved"), "{}", state_after(2));
    // Delivery: the export that includes the prediction, with its own actors.
    let related = found["related"].as_array().expect("related");
    assert_eq!(related.len(), 1, "{found}");
    assert_eq!(related[0]["aggregate_id"], "e1");
    assert_eq!(
        kinds_and_actors(&related[0]["events"]),
        [
            ("export.requested".to_owned(), "system:delivery".to_owned()),
            ("export.rendition_produced".to_owned(), "system:delivery".to_owned()),
            ("export.rendition_delivered".to_owned(), "system:delivery".to_owned()),
        ]
    );
    let delivered = &related[0]["events"][2];
    assert!(delivered["stream_sequence"].as_u64() > events[2]["stream_sequence"].as_u64());

    // The read is on the record, in the brand's audit trail: who read what.
    // The records are aggregates of their own: the brand's stream does not grow.
    let brand_history =
        gateway.as_user(&owner, "GET", "/api/v1/brands/acme/audit/brand/acme/history", None).await;
    assert_status(&brand_history, 200);
    let brand_events = brand_history.json()["events"].as_array().expect("events").clone();
    assert!(
        brand_events.iter().all(|event| event["event_type"] != "brand.audit_accessed"),
        "reads are no longer written on the brand: {brand_events:?}"
    );
    let trail = gateway.as_user(&auditor, "GET", "/api/v1/brands/acme/audit/accesses", None).await;
    assert_status(&trail, 200);
    let reads = trail.json()["reads"].as_array().expect("reads").clone();
    let read_of = |read: &serde_json::Value| {
        (
            read["actor"]["id"].as_str().unwrap_or_default().to_owned(),
            read["aggregate_type"].clone(),
            read["aggregate_id"].clone(),
        )
    };
    assert_eq!(
        reads.iter().map(read_of).collect::<Vec<_>>(),
        [
            ("audrey".to_owned(), json!("prediction"), json!("p1")),
            ("ana".to_owned(), json!("brand"), json!("acme")),
            ("audrey".to_owned(), json!("audit_access"), json!("all")),
        ],
        "{reads:?}"
    );
    assert!(reads.iter().all(|read| read["event_type"] == "audit_access.recorded"));
    assert_eq!(trail.json()["next_after"], serde_json::Value::Null);
    // Paged: one read per page, each page pointing at the next.
    let first = gateway.as_user(&auditor, "GET", "/api/v1/brands/acme/audit/accesses?limit=1", None).await;
    assert_status(&first, 200);
    assert_eq!(first.json()["reads"].as_array().expect("reads").len(), 1);
    let after = first.json()["next_after"].as_u64().expect("a next page");
    let second = gateway
        .as_user(&auditor, "GET", &format!("/api/v1/brands/acme/audit/accesses?limit=1&after={after}"), None)
        .await;
    assert_eq!(read_of(&second.json()["reads"][0]), read_of(&reads[1]));
    let refused = gateway.as_user(&auditor, "GET", "/api/v1/brands/acme/audit/accesses?limit=0", None).await;
    assert_status(&refused, 400);
    assert_eq!(refused.json()["field"], "limit");

    // The auditor reads everything and changes nothing.
    let produced_at = found["events"][2]["stream_sequence"].as_u64().expect("sequence");
    let read = format!("/api/v1/brands/acme/predictions/p1?min_sequence={produced_at}");
    let seen = gateway.as_user(&auditor, "GET", &read, None).await;
    assert_status(&seen, 200);
    assert_eq!(seen.json()["review_state"], "approved");
    let write = gateway
        .as_user(&auditor, "POST", "/api/v1/brands/acme/products", Some(crate::gateway::product("p9")))
        .await;
    assert_status(&write, 403);
    let approve = gateway
        .as_user(&auditor, "POST", "/api/v1/brands/acme/predictions/p1/reject", Some(json!({"reason": "no"})))
        .await;
    assert_status(&approve, 403);
    // Only owners and auditors read histories; a bad type or instant is named.
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
    assert_status(
        &gateway.as_user(&viewer, "GET", "/api/v1/brands/acme/audit/prediction/p1/history", None).await,
        403,
    );
    let bad_type =
        gateway.as_user(&auditor, "GET", "/api/v1/brands/acme/audit/invoice/p1/history", None).await;
    assert_status(&bad_type, 400);
    assert!(bad_type.body.contains("aggregate_type"), "{}", bad_type.body);
    let bad_time = gateway
        .as_user(&auditor, "GET", "/api/v1/brands/acme/audit/prediction/p1/history?as_of=yesterday", None)
        .await;
    assert_status(&bad_time, 400);
    assert!(bad_time.body.contains("as_of"), "{}", bad_time.body);
}

#[tokio::test]
async fn as_of_an_instant_between_two_approvals_shows_the_first_approved_and_the_second_not() {
    let gateway = TestGateway::start().await;
    let (owner, auditor) = acme_with_auditor(&gateway).await;
    produce_prediction(&gateway, "p1").await;
    produce_prediction(&gateway, "p2").await;
    assert_status(
        &gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/p1/approve", None).await,
        200,
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let between = OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_status(
        &gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/p2/approve", None).await,
        200,
    );

    let mut progress = Vec::new();
    let report = as_of::build_as_of(&gateway.state.db, &gateway.state.log, between, None, &mut |step| {
        progress.push(step);
    })
    .await
    .expect("as-of");
    assert_eq!(report.schemas.len(), gps_projections::ALL.len());
    assert!(progress.iter().any(|step| step.projection == "review" && step.done && step.events == 3));
    let schema = as_of::schema_name("review", between);
    let sql =
        format!("SELECT prediction_id, review_state FROM \"{schema}\".predictions ORDER BY prediction_id");
    let rows: Vec<(String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&gateway.state.db).await.expect("query as-of");
    assert_eq!(rows, [("p1".to_owned(), "approved".to_owned()), ("p2".to_owned(), "pending".to_owned())]);
    // The live read model moved on; the as-of schema did not.
    let live =
        gateway.as_user(&owner, "GET", "/api/v1/brands/acme/predictions/p2?min_sequence=1", None).await;
    assert_eq!(live.json()["review_state"], "approved", "{}", live.body);

    // The same instant through the API.
    let at = between.format(&time::format_description::well_known::Rfc3339).expect("format");
    let path = format!("/api/v1/brands/acme/audit/prediction/p2/history?as_of={}", at.replace('+', "%2B"));
    let cut = gateway.as_user(&auditor, "GET", &path, None).await;
    assert_status(&cut, 200);
    assert_eq!(
        kinds_and_actors(&cut.json()["events"]),
        [("prediction.produced".to_owned(), "system:compute-agent".to_owned())]
    );

    // Cleanup on request.
    let dropped = as_of::drop_as_of(&gateway.state.db, between).await.expect("drop");
    assert_eq!(dropped.len(), gps_projections::ALL.len());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_asof\\_%'")
        .fetch_one(&gateway.state.db)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

/// Copies every message of `from`'s stream into `to`'s, in order, rewriting
/// the body of the message at `rewrite` with `edit`.
async fn copy_stream(
    from: &gps_nats::EventLog,
    to: &gps_nats::EventLog,
    rewrite: u64,
    edit: impl Fn(&mut serde_json::Value),
) {
    let mut scan = gps_nats::LogScan::open(from, "gps.evt.>", 1).await.expect("scan");
    while let Some(message) = scan.next().await.expect("next") {
        let mut body = message.payload.clone();
        if message.sequence == rewrite {
            let mut value: serde_json::Value = serde_json::from_slice(&body).expect("json");
            edit(&mut value);
            body = serde_json::to_vec(&value).expect("json").into();
        }
        // Only GPS's own headers: the stored ones also carry the original
        // write's batch and concurrency headers, which a copy must not replay.
        let mut headers = async_nats::HeaderMap::new();
        for name in [
            gps_nats::HEADER_EVENT_TYPE,
            gps_nats::HEADER_SCHEMA_VERSION,
            gps_nats::HEADER_AGGREGATE_VERSION,
            gps_nats::HEADER_COMMAND_ID,
        ] {
            if let Some(value) = message.headers.get(name) {
                headers.insert(name, value.as_str());
            }
        }
        let ack = to
            .jetstream()
            .publish_with_headers(message.subject.clone(), headers, body)
            .await
            .expect("publish")
            .await
            .expect("ack");
        assert_eq!(ack.sequence, message.sequence, "the copy keeps sequences");
    }
}

fn gps() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gps"))
}

#[tokio::test]
async fn verify_passes_on_an_intact_log_and_names_the_event_rewritten_in_a_copy() {
    let gateway = TestGateway::start().await;
    let (owner, _auditor) = acme_with_auditor(&gateway).await;
    produce_prediction(&gateway, "p1").await;
    let approved = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/predictions/p1/reject",
            Some(json!({"reason": "Wrong sleeve length"})),
        )
        .await;
    assert_status(&approved, 200);
    let rejected_at: u64 = approved.json()["stream_sequence"].as_u64().expect("sequence");
    produce_prediction(&gateway, "p2").await;

    let intact = verify::verify_log(&gateway.state.log, None).await.expect("verify");
    assert!(intact.passed(), "{:?}", intact.first_break);
    assert!(intact.events_checked >= 6, "{intact:?}");
    let acme_only = verify::verify_log(&gateway.state.log, Some(&brand())).await.expect("verify");
    assert!(acme_only.passed());

    // A second server holds a copy of the log with the rejection's reason rewritten.
    let copy_nats = TestNats::start().await;
    let copy = copy_nats.event_log().await;
    copy_stream(&gateway.state.log, &copy, rejected_at, |body| {
        body["payload"]["reason"] = json!("Looks great");
    })
    .await;
    let tampered = verify::verify_log(&copy, None).await.expect("verify copy");
    let broken = tampered.first_break.expect("the rewrite is found");
    assert_eq!(broken.stream_sequence, rejected_at);
    assert_eq!(broken.check, verify::Check::Chain);
    assert_eq!(broken.event_type.as_deref(), Some("prediction.rejected"));
    assert!(broken.reason.contains("altered"), "{broken}");

    // The command line exits non-zero and names the event.
    let output = gps()
        .args(["audit", "verify", "--skip-read-models"])
        .env("NATS_URL", copy_nats.server.url())
        .output()
        .expect("run gps");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("stream sequence {rejected_at}")), "{stderr}");
    let output = gps()
        .args(["audit", "verify", "--skip-read-models"])
        .env("NATS_URL", url_of(&gateway))
        .output()
        .expect("run gps");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // An event whose payload no longer matches its schema (hash resealed, so
    // only the schema check can catch it) and one by a stranger.
    let resealed = TestNats::start().await;
    let resealed_log = resealed.event_log().await;
    copy_stream(&gateway.state.log, &resealed_log, rejected_at, |body| {
        body["payload"]["reason"] = json!(17);
        reseal(body);
    })
    .await;
    let broken = verify::verify_log(&resealed_log, None).await.expect("verify").first_break.expect("break");
    assert_eq!((broken.stream_sequence, broken.check), (rejected_at, verify::Check::Schema), "{broken}");
    let stranger = TestNats::start().await;
    let stranger_log = stranger.event_log().await;
    copy_stream(&gateway.state.log, &stranger_log, rejected_at, |body| {
        body["actor"] = json!({"kind": "member", "id": "mallory"});
        reseal(body);
    })
    .await;
    let broken = verify::verify_log(&stranger_log, None).await.expect("verify").first_break.expect("break");
    assert_eq!((broken.stream_sequence, broken.check), (rejected_at, verify::Check::Actor), "{broken}");
    assert!(broken.reason.contains("mallory"), "{broken}");
}

/// Recomputes an edited envelope's hash, as a forger who knows the algorithm
/// would (only the aggregate's first event keeps its chain intact this way
/// when it has successors; here the edited event is its aggregate's last).
fn reseal(body: &mut serde_json::Value) {
    let mut envelope: gps_domain::wire::EventEnvelope =
        serde_json::from_value(body.clone()).expect("envelope");
    gps_nats::chain::seal(&mut envelope);
    body["hash"] = json!(envelope.hash);
}

fn url_of(gateway: &TestGateway) -> String {
    format!("nats://127.0.0.1:{}", gateway.state.log.client().server_info().port)
}

#[tokio::test]
async fn the_shadow_rebuild_compares_equal_and_reports_a_row_edited_by_hand() {
    let gateway = TestGateway::start().await;
    let (owner, _auditor) = acme_with_auditor(&gateway).await;
    let created = gateway
        .as_user(&owner, "POST", "/api/v1/brands/acme/products", Some(crate::gateway::product("p1")))
        .await;
    assert_status(&created, 201);
    produce_prediction(&gateway, "pr1").await;
    let approved = gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/pr1/approve", None).await;
    let sequence = approved.json()["stream_sequence"].as_u64().expect("sequence");
    gps_projections::wait_for_sequence(&gateway.state.db, None, sequence, std::time::Duration::from_secs(10))
        .await
        .expect("read models caught up");

    let intact = compare::compare_read_models(&gateway.state.db, &gateway.state.log).await.expect("compare");
    assert!(intact.differences().is_empty(), "{:?}", intact.differences());
    assert!(
        intact
            .tables
            .iter()
            .any(|t| t.projection == "catalog" && t.table == "products" && t.live_rows == Some(1))
    );

    sqlx::query("UPDATE catalog.products SET name = 'Edited by hand' WHERE product_id = 'p1'")
        .execute(&gateway.state.db)
        .await
        .expect("edit");
    let edited = compare::compare_read_models(&gateway.state.db, &gateway.state.log).await.expect("compare");
    let differences: Vec<String> =
        edited.differences().iter().map(|t| format!("{}.{}", t.projection, t.table)).collect();
    assert_eq!(differences, ["catalog.products"]);
    let products = edited.differences()[0];
    assert_eq!(products.live_rows, products.rebuilt_rows, "same count, other content");
    assert_ne!(products.live_checksum, products.rebuilt_checksum);
    // The shadows are gone.
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%\\_verify'")
        .fetch_one(&gateway.state.db)
        .await
        .expect("count");
    assert_eq!(left, 0);
}

#[tokio::test]
async fn an_exported_bundle_verifies_with_only_its_files_and_a_changed_byte_fails_it() {
    let gateway = TestGateway::start().await;
    let (owner, _auditor) = acme_with_auditor(&gateway).await;
    produce_prediction(&gateway, "p1").await;
    assert_status(
        &gateway.as_user(&owner, "POST", "/api/v1/brands/acme/predictions/p1/approve", None).await,
        200,
    );
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let window_start = OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    deliver(&gateway, "e1", "p1").await;
    produce_prediction(&gateway, "p2").await;

    let root = std::env::temp_dir().join(format!("gps-audit-{}", uuid::Uuid::new_v4().simple()));
    let whole = root.join("whole");
    let report = bundle::export(&gateway.state.log, &brand(), None, None, &whole).await.expect("export");
    assert!(report.verification.bundle.passed() && report.verification.log.passed(), "{report:?}");
    for file in ["events.jsonl", "anchors.json", "manifest.json", "verification.json", "SHA256SUMS"] {
        assert!(whole.join(file).is_file(), "{file}");
    }
    assert!(whole.join("schemas/prediction.approved.v1.schema.json").is_file());
    assert!(whole.join("schemas/export.rendition_delivered.v1.schema.json").is_file());

    // Moved elsewhere, it verifies without NATS or Postgres: the command gets
    // no server address at all (and an unreachable one, to be sure).
    let moved = root.join("moved");
    std::fs::rename(&whole, &moved).expect("move");
    let output = gps()
        .args(["audit", "verify-bundle"])
        .arg(&moved)
        .env("NATS_URL", "nats://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .expect("run gps");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verified"), "{stdout}");

    // A window starting after the approval: anchors carry the chains in.
    let window = root.join("window");
    let report = bundle::export(&gateway.state.log, &brand(), Some(window_start), None, &window)
        .await
        .expect("export");
    let events = report.manifest.events;
    assert_eq!(events, 4, "3 export events and p2's production");
    let checked = bundle::verify_bundle(&window).expect("verify");
    assert!(checked.passed(), "{checked:?}");
    let anchors = std::fs::read_to_string(window.join("anchors.json")).expect("anchors");
    assert!(anchors.contains("gps.evt.acme.prediction.p1"), "{anchors}");

    // One changed byte, or a dropped line with a recomputed checksum file, fails it.
    let events_file = window.join("events.jsonl");
    let original = std::fs::read_to_string(&events_file).expect("read");
    std::fs::write(&events_file, original.replacen("dress_front_1", "dress_front_2", 1)).expect("write");
    let checked = bundle::verify_bundle(&window).expect("verify");
    assert!(!checked.passed());
    assert!(checked.file_problems.iter().any(|p| p.contains("events.jsonl")), "{checked:?}");
    let dropped: String = original.lines().skip(1).map(|line| format!("{line}\n")).collect();
    rewrite_with_checksum(&window, "events.jsonl", &dropped);
    let checked = bundle::verify_bundle(&window).expect("verify");
    let broken = checked.events.as_ref().and_then(|e| e.first_break.clone()).expect("a break");
    assert_eq!(broken.check, verify::Check::Version, "{broken}");

    // A payload forged to another type, hash resealed and checksums recomputed:
    // the bundle's own schema file catches it.
    let forged = root.join("forged");
    bundle::export(&gateway.state.log, &brand(), None, None, &forged).await.expect("export");
    let text = std::fs::read_to_string(forged.join("events.jsonl")).expect("read");
    let lines: String = text
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).expect("json");
            if event["event_type"] == "export.rendition_produced" {
                event["payload"]["asset"]["bytes"] = json!("a lot");
                let sequence = event["stream_sequence"].take();
                event.as_object_mut().expect("object").remove("stream_sequence");
                reseal(&mut event);
                event["stream_sequence"] = sequence;
            }
            format!("{}\n", serde_json::to_string(&event).expect("json"))
        })
        .collect();
    rewrite_with_checksum(&forged, "events.jsonl", &lines);
    let checked = bundle::verify_bundle(&forged).expect("verify");
    assert!(checked.file_problems.is_empty(), "{checked:?}");
    let broken = checked.events.as_ref().and_then(|e| e.first_break.clone()).expect("a break");
    assert_eq!(broken.check, verify::Check::Schema, "{broken}");
    assert!(broken.reason.contains("export.rendition_produced.v1.schema.json"), "{broken}");
    assert!(broken.reason.contains("/asset/bytes"), "{broken}");
    let _ = std::fs::remove_dir_all(&root);

    // An unknown aggregate reference is refused with the expected form named.
    let error = history::parse_reference("acme/p1").expect_err("refused");
    assert!(error.to_string().contains("<brand>/<aggregate-type>/<id>"), "{error}");
}

pub(crate) fn database_url(gateway: &TestGateway) -> String {
    let options = gateway.state.db.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().expect("database")
    )
}

/// Every stored event body of the log, as text.
pub(crate) async fn log_text(log: &gps_nats::EventLog) -> String {
    let mut scan = gps_nats::LogScan::open(log, "gps.evt.>", 1).await.expect("scan");
    let mut text = String::new();
    while let Some(message) = scan.next().await.expect("next") {
        text.push_str(&String::from_utf8_lossy(&message.payload));
        text.push('\n');
    }
    text
}

#[tokio::test]
async fn forgetting_a_person_makes_their_email_unreadable_everywhere_while_verification_still_passes() {
    let gateway = TestGateway::start().await;
    let owner = gateway.brand_with_owner("acme", "ana").await;
    let _rui = gateway.user("rui").await;
    let added = gateway
        .as_user(
            &owner,
            "POST",
            "/api/v1/brands/acme/members",
            Some(json!({"email": "rui@example.com", "role": "reviewer"})),
        )
        .await;
    assert_status(&added, 201);
    let sequence = added.json()["stream_sequence"].as_u64().expect("sequence");
    let members_path = format!("/api/v1/brands/acme/members?min_sequence={sequence}");
    let member = |members: &serde_json::Value, id: &str| -> serde_json::Value {
        members["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|m| m["member_id"] == id)
            .cloned()
            .expect("member")
    };

    // Readable while the person is known, yet never in the clear in the log.
    let before = gateway.as_user(&owner, "GET", &members_path, None).await.json();
    assert_eq!(member(&before, "rui")["email"], "rui@example.com");
    assert_eq!(member(&before, "rui")["email_forgotten"], false);
    let stored = log_text(&gateway.state.log).await;
    assert!(stored.contains("brand.member_added") && stored.contains("\"sealed\""), "{stored}");
    assert!(!stored.contains("rui@example.com") && !stored.contains("ana@example.com"));

    // Forget rui through the command line, against this test's database.
    let output = gps()
        .args(["audit", "forget-person", "--email", "Rui@Example.com"])
        .env("DATABASE_URL", database_url(&gateway))
        .env("NATS_URL", gateway.nats.server.url())
        .output()
        .expect("run gps");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("destroyed the key"), "{stdout}");

    // The read model shows the address as forgotten; ana's stays readable.
    let after = gateway.as_user(&owner, "GET", &members_path, None).await.json();
    assert_eq!(member(&after, "rui")["email"], serde_json::Value::Null);
    assert_eq!(member(&after, "rui")["email_forgotten"], true);
    assert_eq!(member(&after, "rui")["role"], "reviewer", "membership itself stays");
    assert_eq!(member(&after, "ana")["email"], "ana@example.com");
    // The event's sealed copy no longer opens, in the log or in a history.
    let brand_address =
        CommandHandler::address::<gps_domain::brand::Brand>(&brand(), "acme").expect("address");
    let loaded = gateway.state.commands.load::<gps_domain::brand::Brand>(&brand_address).await.expect("load");
    let sealed = &loaded.state.members[&gps_domain::ids::MemberId::parse("rui").expect("id")].email;
    assert!(matches!(sealed, gps_domain::brand::MemberEmail::Sealed(_)));
    assert_eq!(
        gps_projections::privacy::reveal(&gateway.state.credentials, sealed).await.expect("reveal"),
        None
    );
    let history = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/audit/brand/acme/history", None).await;
    assert_status(&history, 200);
    assert!(!history.body.contains("rui@example.com"));
    // The account: erased in the log, no address, no password, no sign-in.
    assert!(stdout.contains("person rui: erased"), "{stdout}");
    // (the projector applies `person.erased` shortly after the command line wrote it)
    let mut rui = None;
    for _ in 0..100 {
        rui = gps_projections::accounts::person(&gateway.state.db, &gateway.state.credentials, "rui")
            .await
            .expect("account");
        if rui.as_ref().is_some_and(|rui| rui.erased) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rui = rui.expect("the erased person keeps their row");
    assert!(rui.erased && rui.email.is_none() && rui.display_name.is_none(), "{rui:?}");
    let passwords: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.passwords WHERE user_id = 'rui'")
        .fetch_one(&gateway.state.credentials)
        .await
        .expect("count");
    assert_eq!(passwords, 0);
    let sign_in = gateway
        .call(
            "POST",
            "/api/v1/session",
            &[],
            Some(json!({"email": "rui@example.com", "password": "a long enough password"})),
        )
        .await;
    assert_status(&sign_in, 401);

    // Nothing was rewritten: the log verifies and the read models match a rebuild.
    let verified = verify::verify_log(&gateway.state.log, None).await.expect("verify");
    assert!(verified.passed(), "{:?}", verified.first_break);
    let compared =
        compare::compare_read_models(&gateway.state.db, &gateway.state.log).await.expect("compare");
    assert!(compared.differences().is_empty(), "{:?}", compared.differences());
    // Forgetting again changes nothing and says so.
    let again = gps_projections::privacy::forget_email(
        &gateway.state.credentials,
        &gps_domain::brand::Email::parse("rui@example.com").expect("email"),
    )
    .await
    .expect("forget");
    assert_eq!(again.person_id, None);
}

/// Replaces a bundle file and its line in `SHA256SUMS`, as a forger would.
fn rewrite_with_checksum(dir: &std::path::Path, name: &str, contents: &str) {
    use sha2::Digest;
    std::fs::write(dir.join(name), contents).expect("write");
    let digest = hex::encode(sha2::Sha256::digest(contents.as_bytes()));
    let sums: String = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .expect("sums")
        .lines()
        .map(|line| {
            if line.ends_with(&format!("  {name}")) {
                format!("{digest}  {name}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), sums).expect("write");
}
