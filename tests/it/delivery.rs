//! Stage 5 end to end: approved predictions exported through a real gateway,
//! formatted, signed (C2PA) and delivered by a real delivery worker on the
//! shared JetStream consumer, with renditions in the embedded S3 store and
//! webhooks posted to a local axum receiver over HTTP.
//!
//! The receiver runs on 127.0.0.1, which the SSRF rules refuse; the gateway
//! and the worker are given an explicit allow-list of that one exact socket
//! address, nothing broader.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gps_commands::CommandHandler;
use gps_compute_agents::delivery::credentials::{
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, ContentCredentials, DEVELOPMENT_CA_FILE, GENERATION_ASSERTION,
};
use gps_compute_agents::delivery::{self, DeliverySettings, DeliveryWorker, SignedUrls};
use gps_compute_agents::secrets::{SecretVault, SecretsKey};
use gps_compute_agents::store::ComputeStore;
use gps_domain::export::{DeliveryLocation, Export, ExportCommand, SecretName};
use gps_domain::generation::{Generation, GenerationStatus};
use gps_domain::ids::{GenerationId, LookId, PredictionId};
use gps_domain::prediction::{Prediction, PredictionCommand, Provenance};
use gps_domain::values::{AssetRef, Name, ShotType, WorkflowName, WorkflowRef};
use gps_domain::wire::Actor;
use gps_nats::CommandMeta;
use gps_storage::{FetchLimits, ObjectKey, SafeFetcher};
use serde_json::json;

use crate::gateway::{Session, TestGateway};
use crate::harness::{TestDb, brand};
use crate::http::assert_status;
use crate::ingest_support::{picture, png_of, raw_request};
use crate::tcp_proxy::{TcpProxy, host_port};

/// Signed URLs the way a worker hands them out: absolute, to this gateway.
struct GatewayUrls {
    media: gps_gateway::media::Media,
    port: u16,
}

impl SignedUrls for GatewayUrls {
    fn signed_url(&self, key: &ObjectKey) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.media.signed_url(key))
    }
}

/// A gateway, a delivery worker running on it, and what they share.
struct Rig {
    gateway: TestGateway,
    owner: Session,
    vault: SecretVault,
    ca_pem: String,
    _compute_db: TestDb,
    _credentials_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// The proxy between the worker and NATS, when the worker is given one.
    proxy: Option<TcpProxy>,
}

impl Rig {
    /// Starts everything; `receiver` (if any) is the one address both the
    /// gateway and the worker may send webhooks to.
    async fn start(receiver: Option<SocketAddr>) -> Self {
        Self::start_with(receiver, |_| {}).await
    }

    /// [`Rig::start`], with the worker's settings changed by `adjust`.
    async fn start_with(receiver: Option<SocketAddr>, adjust: impl FnOnce(&mut DeliverySettings)) -> Self {
        Self::start_full(receiver, adjust, false).await
    }

    /// [`Rig::start`], with the worker reaching NATS through a proxy (`proxy`)
    /// that the test can cut.
    async fn start_proxied(receiver: Option<SocketAddr>) -> Self {
        Self::start_full(receiver, |_| {}, true).await
    }

    async fn start_full(
        receiver: Option<SocketAddr>,
        adjust: impl FnOnce(&mut DeliverySettings),
        proxied: bool,
    ) -> Self {
        let gateway = TestGateway::start_with_state(
            |_| {},
            |state| match receiver {
                Some(address) => state.allowing_webhook_target(address),
                None => state,
            },
        )
        .await;
        let owner = gateway.brand_with_owner("acme", "ana").await;
        let compute_db = TestDb::create().await;
        let compute = ComputeStore::connect(compute_db.url(), 4).await.expect("compute database");
        let vault = SecretVault::new(compute.pool().clone(), &SecretsKey::generate());
        let credentials_dir = tempfile::tempdir().expect("credentials dir");
        let (credentials, generated) =
            ContentCredentials::development(credentials_dir.path()).expect("credentials");
        assert!(generated);
        let ca_pem = std::fs::read_to_string(credentials_dir.path().join(DEVELOPMENT_CA_FILE)).expect("ca");
        let mut targets = SafeFetcher::new(FetchLimits {
            max_bytes: 64 * 1024,
            timeout: Duration::from_secs(10),
            max_redirects: 0,
        });
        if let Some(address) = receiver {
            targets = targets.allowing(address);
        }
        let mut settings = DeliverySettings::new("delivery-test");
        settings.retry_base = Duration::from_millis(200);
        settings.retry_cap = Duration::from_secs(1);
        settings.ack_wait = Duration::from_secs(10);
        adjust(&mut settings);
        let (commands, proxy) = if proxied {
            let proxy = TcpProxy::start(host_port(gateway.nats.server.url())).await;
            let client = gps_nats::connect(&proxy.nats_url(), "gps-test-delivery").await.expect("connect");
            let log = gps_nats::EventLog::new(client, gps_nats::StreamSettings::default());
            (CommandHandler::new(log), Some(proxy))
        } else {
            (gateway.state.commands.clone(), None)
        };
        let worker = Arc::new(DeliveryWorker {
            commands,
            store: gateway.state.media.store().clone(),
            credentials: Arc::new(credentials),
            secrets: vault.clone(),
            targets,
            urls: Arc::new(GatewayUrls { media: gateway.state.media.clone(), port: gateway.port }),
            settings,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(delivery::run(worker, async move {
            let _ = stopped.await;
        }));
        Rig {
            gateway,
            owner,
            vault,
            ca_pem,
            _compute_db: compute_db,
            _credentials_dir: credentials_dir,
            _stop: stop,
            proxy,
        }
    }

    /// A produced prediction `id`, approved.
    async fn approved_prediction(&self, id: &str, variant_index: u8) -> PredictionId {
        let prediction_id = self.produced_prediction(id, variant_index).await;
        let approved = self
            .gateway
            .as_user(&self.owner, "POST", &format!("/api/v1/brands/acme/predictions/{id}/approve"), None)
            .await;
        assert_status(&approved, 200);
        prediction_id
    }

    /// Requests generation `g1` (from the frozen example: product
    /// `prod-dr-2041`, SKU `DR-2041/BLK`, a front photo) and produces
    /// prediction `id` of it with a real stored image, awaiting review.
    async fn produced_prediction(&self, id: &str, variant_index: u8) -> PredictionId {
        self.produced_prediction_shaded(id, variant_index, 30 + variant_index * 40).await
    }

    /// [`Rig::produced_prediction`], with the garment's green channel `green`.
    async fn produced_prediction_shaded(&self, id: &str, variant_index: u8, green: u8) -> PredictionId {
        let commands = &self.gateway.state.commands;
        let generation = CommandHandler::address::<Generation>(&brand(), "g1").expect("address");
        if commands.load::<Generation>(&generation).await.expect("load").position.aggregate_version == 0 {
            crate::gateway_operate::request_generation(&self.gateway, "g1").await;
        }
        // A grey studio backdrop with a garment: 1200×1500 PNG.
        let mut image = picture(1200, 1500, [90, 90, 90]);
        for y in 300..1300 {
            for x in 400..800 {
                image.put_pixel(x, y, image::Rgb([180, green, 40]));
            }
        }
        let bytes = png_of(&image);
        let stored = self
            .gateway
            .state
            .media
            .store()
            .put(&brand(), bytes.clone().into(), "image/png")
            .await
            .expect("store");
        let prediction_id = PredictionId::parse(id).expect("id");
        let command = PredictionCommand::ProducePrediction {
            prediction_id: prediction_id.clone(),
            brand_id: brand(),
            generation_id: GenerationId::parse("g1").expect("id"),
            look_id: LookId::parse("l1").expect("id"),
            shot_type: ShotType::parse("full-body-front").expect("shot type"),
            variant_index,
            asset: AssetRef {
                hash: stored.hash,
                media_type: "image/png".into(),
                bytes: bytes.len() as u64,
                width: Some(1200),
                height: Some(1500),
            },
            provenance: Provenance {
                workflow: WorkflowRef { name: WorkflowName::parse("on-model").expect("name"), version: 1 },
                provider: Name::parse("fal").expect("name"),
                model: Name::parse("flux-pro-kontext").expect("name"),
                // Above i64::MAX, as real seeds often are (c2pa once refused them).
                seed: 14_765_702_486_986_883_656,
                // The product photo of the frozen generation request.
                input_hashes: vec![
                    gps_domain::values::ContentHash::parse(
                        "sha256:cea9ba527dc62abc9d036df71df02e86752ac2f73216a230e669df052708a733",
                    )
                    .expect("hash"),
                ],
                prompt: None,
            },
            quality: None,
            generation_status: GenerationStatus::Running,
        };
        let address = CommandHandler::address::<Prediction>(&brand(), id).expect("address");
        let meta = CommandMeta::generated(Actor::System("compute-agent".into()));
        commands.execute::<Prediction>(&address, &meta, &command).await.expect("produce");
        prediction_id
    }

    /// [`Rig::approved_prediction`] with the garment's green channel `green`.
    async fn approved_prediction_shaded(&self, id: &str, variant_index: u8, green: u8) -> PredictionId {
        let prediction_id = self.produced_prediction_shaded(id, variant_index, green).await;
        let approved = self
            .gateway
            .as_user(&self.owner, "POST", &format!("/api/v1/brands/acme/predictions/{id}/approve"), None)
            .await;
        assert_status(&approved, 200);
        prediction_id
    }

    /// Waits until export `id` is completed or failed, and returns it.
    async fn settled(&self, id: &str) -> serde_json::Value {
        for _ in 0..1200 {
            let read = self
                .gateway
                .as_user(&self.owner, "GET", &format!("/api/v1/brands/acme/exports/{id}"), None)
                .await;
            if read.status == 200 {
                let export = read.json();
                if matches!(export["status"].as_str(), Some("completed" | "failed")) {
                    return export;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("export {id} did not settle within 2 minutes");
    }

    async fn export(&self, body: serde_json::Value) -> crate::http::Response {
        self.gateway.as_user(&self.owner, "POST", "/api/v1/brands/acme/exports", Some(body)).await
    }

    /// Waits until export `id` is completed (or failed, which fails the test).
    async fn completed(&self, id: &str) -> serde_json::Value {
        // Formatting runs unoptimised in tests: allow it two minutes.
        for _ in 0..1200 {
            let read = self
                .gateway
                .as_user(&self.owner, "GET", &format!("/api/v1/brands/acme/exports/{id}"), None)
                .await;
            if read.status == 200 {
                let export = read.json();
                match export["status"].as_str() {
                    Some("completed") => return export,
                    Some("failed") => panic!("export {id} failed: {}", read.body),
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("export {id} did not complete within 2 minutes");
    }

    async fn stored(&self, hash: &str) -> Vec<u8> {
        let hash = gps_domain::values::ContentHash::parse(hash).expect("hash");
        self.gateway
            .state
            .media
            .store()
            .get(&ObjectKey::content(&brand(), &hash))
            .await
            .expect("rendition stored")
            .body
            .to_vec()
    }
}

/// Reads the C2PA manifest of `bytes` with the development CA trusted.
fn manifest_of(bytes: &[u8], media_type: &str, ca_pem: &str) -> c2pa::Reader {
    let context = c2pa::Context::new()
        .with_settings(json!({ "trust": { "trust_anchors": ca_pem } }))
        .expect("settings");
    let reader = c2pa::Reader::from_context(context)
        .with_stream(media_type, Cursor::new(bytes))
        .expect("a C2PA manifest");
    assert_eq!(reader.validation_state(), c2pa::ValidationState::Trusted, "{:?}", reader.validation_status());
    reader
}

#[tokio::test]
async fn an_approved_prediction_exported_with_several_presets_gets_exact_renditions_with_content_credentials()
{
    let rig = Rig::start(None).await;
    rig.approved_prediction("pr1", 0).await;
    // A brand preset in PNG and one in WebP, next to the built-in web-pdp (JPEG).
    for (name, format, ratio) in [("square-png", "png", "1:1"), ("story-webp", "webp", "9:16")] {
        let spec = json!({
            "long_edge_px": 640, "aspect_ratio": ratio, "fit": "pad", "background": {"kind": "white"},
            "format": format, "quality": 90, "colour_space": "srgb", "naming_pattern": "{sku}_{view}_{n}_{preset}"
        });
        let defined = rig
            .gateway
            .as_user(
                &rig.owner,
                "PUT",
                &format!("/api/v1/brands/acme/channel-presets/{name}"),
                Some(json!({"spec": spec})),
            )
            .await;
        assert_status(&defined, 200);
    }
    let expected = [
        ("ex-pdp", "web-pdp", "image/jpeg", 1600u64, 2000u64, "DR-2041-BLK_full-body-front_1.jpg"),
        ("ex-square", "square-png", "image/png", 640, 640, "DR-2041-BLK_full-body-front_1_square-png.png"),
        ("ex-story", "story-webp", "image/webp", 360, 640, "DR-2041-BLK_full-body-front_1_story-webp.webp"),
    ];
    for (id, channel, ..) in expected {
        let accepted = rig
            .export(json!({"export_id": id, "predictions": ["pr1"], "channel": channel, "destination": {"kind": "zip_download"}}))
            .await;
        assert_status(&accepted, 201);
        assert_eq!(accepted.json()["skipped_unchanged"], json!([]));
    }
    for (id, channel, media_type, width, height, file_name) in expected {
        let export = rig.completed(id).await;
        let renditions = export["renditions"].as_array().expect("renditions");
        assert_eq!(renditions.len(), 1, "{export}");
        let rendition = &renditions[0];
        assert_eq!(rendition["file_name"], file_name);
        assert_eq!(rendition["asset"]["media_type"], media_type);
        assert_eq!(
            (rendition["asset"]["width"].as_u64(), rendition["asset"]["height"].as_u64()),
            (Some(width), Some(height))
        );
        assert_eq!(rendition["products"], json!(["prod-dr-2041"]));
        assert!(rendition["location"].as_str().is_some_and(|l| l.starts_with("zip:acme/")), "{rendition}");
        assert_eq!(export["delivery_attempts"][0]["succeeded"], true);

        // The stored bytes are what the read model says, and decode to the preset's size.
        let bytes = rig.stored(rendition["checksum"].as_str().expect("checksum")).await;
        let decoded = image::load_from_memory(&bytes).expect("a readable image");
        assert_eq!((u64::from(decoded.width()), u64::from(decoded.height())), (width, height), "{channel}");
        assert_eq!(image::guess_format(&bytes).expect("format").to_mime_type(), media_type);

        // Its content credentials: made with generative AI, from the product photo.
        let reader = manifest_of(&bytes, media_type, &rig.ca_pem);
        let manifest = reader.active_manifest().expect("a manifest");
        let ingredients: Vec<&str> = manifest.ingredients().iter().filter_map(|i| i.title()).collect();
        assert_eq!(ingredients, ["DR-2041/BLK front"], "{channel}");
        let actions: serde_json::Value = manifest.find_assertion("c2pa.actions.v2").expect("actions");
        let created = actions["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .find(|a| a["action"] == "c2pa.created")
            .expect("created");
        // The frozen generation request revises an earlier prediction: an
        // edit of an existing image, so the composite source type.
        assert_eq!(created["digitalSourceType"], COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA);
        let generation: serde_json::Value =
            manifest.find_assertion(GENERATION_ASSERTION).expect("generation");
        assert_eq!(
            (generation["workflow"].as_str(), generation["model"].as_str()),
            (Some("on-model"), Some("flux-pro-kontext"))
        );
        assert_eq!(generation["prediction_id"], "pr1");

        // The ZIP download: a signed URL; inside, the file and the manifests.
        let download = rig
            .gateway
            .as_user(&rig.owner, "GET", &format!("/api/v1/brands/acme/exports/{id}/download"), None)
            .await;
        assert_status(&download, 303);
        let url = download.header("location").expect("location").to_owned();
        assert!(url.starts_with("/cdn/acme/") && url.contains("sig="), "{url}");
        let zip = raw_request(rig.gateway.port, "GET", &url, &[], b"").await;
        assert_eq!(zip.status, 200);
        let mut archive = zip::ZipArchive::new(Cursor::new(zip.body)).expect("a ZIP");
        let mut inside = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name(file_name).expect("the rendition"), &mut inside)
            .expect("read");
        assert_eq!(inside, bytes);
        let mut csv = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("manifest.csv").expect("manifest.csv"), &mut csv)
            .expect("read");
        let sha = rendition["checksum"].as_str().expect("checksum").trim_start_matches("sha256:");
        assert!(
            csv.contains(&format!("DR-2041/BLK,{channel},{file_name},pr1,")) && csv.contains(sha),
            "{csv}"
        );
        let mut json_manifest = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("manifest.json").expect("manifest.json"),
            &mut json_manifest,
        )
        .expect("read");
        let entries: serde_json::Value = serde_json::from_str(&json_manifest).expect("json");
        assert_eq!(entries[0]["sha256"], sha);
    }

    // Tracking: per product, what went where.
    let deliveries = rig
        .gateway
        .as_user(&rig.owner, "GET", "/api/v1/brands/acme/products/prod-dr-2041/deliveries", None)
        .await;
    assert_status(&deliveries, 200);
    let listed = deliveries.json();
    let mut sorted: Vec<&str> =
        listed["items"].as_array().expect("items").iter().filter_map(|d| d["export_id"].as_str()).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, ["ex-pdp", "ex-square", "ex-story"], "{}", deliveries.body);

    // Re-exporting unchanged content to the same destination is skipped, unless forced.
    let again = rig
        .export(
            json!({"predictions": ["pr1"], "channel": "web-pdp", "destination": {"kind": "zip_download"}}),
        )
        .await;
    assert_status(&again, 200);
    assert_eq!(again.json()["skipped_unchanged"], json!(["pr1"]));
    assert!(again.json()["detail"].as_str().is_some_and(|d| d.contains("force")), "{}", again.body);
    rig.approved_prediction("pr2", 1).await;
    let partly = rig
        .export(json!({"export_id": "ex-partly", "predictions": ["pr1", "pr2"], "channel": "web-pdp", "destination": {"kind": "zip_download"}}))
        .await;
    assert_status(&partly, 201);
    assert_eq!(partly.json()["skipped_unchanged"], json!(["pr1"]));
    let forced = rig
        .export(json!({"export_id": "ex-forced", "predictions": ["pr1"], "channel": "web-pdp", "destination": {"kind": "zip_download"}, "force": true}))
        .await;
    assert_status(&forced, 201);
    let partly = rig.completed("ex-partly").await;
    assert_eq!(partly["prediction_ids"], json!(["pr2"]));
    rig.completed("ex-forced").await;

    // A rejected prediction is refused, naming it.
    let rejected = rig.produced_prediction("pr3", 2).await;
    let reject = rig
        .gateway
        .as_user(
            &rig.owner,
            "POST",
            &format!("/api/v1/brands/acme/predictions/{rejected}/reject"),
            Some(json!({"reason": "wrong colour"})),
        )
        .await;
    assert_status(&reject, 200);
    let refused = rig
        .export(
            json!({"predictions": ["pr3"], "channel": "web-pdp", "destination": {"kind": "zip_download"}}),
        )
        .await;
    assert_status(&refused, 422);
    assert!(refused.body.contains("pr3") && refused.body.contains("rejected"), "{}", refused.body);
}

/// What the test receiver saw.
#[derive(Default)]
struct Received {
    requests: u32,
    /// Idempotency key → the body it first delivered (what the receiver "processed").
    processed: BTreeMap<String, serde_json::Value>,
    /// The idempotency key and rendition count of every signed request, in order.
    keys: Vec<(String, usize)>,
    bad_signatures: u32,
}

/// A webhook receiver on 127.0.0.1 that answers 503 to the first `failures`
/// requests, checks every signature with `secret`, and processes each
/// idempotency key once.
async fn receiver(failures: u32, secret: &'static [u8]) -> (SocketAddr, Arc<Mutex<Received>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(Received::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hooks/gps",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = state.clone();
            async move {
                let mut seen = seen.lock().expect("lock");
                seen.requests += 1;
                let header = |name: &str| {
                    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
                };
                // Verify as the documentation says: HMAC-SHA256 over timestamp + "." + body.
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
                let message = [header("x-gps-timestamp").as_bytes(), b".", &body].concat();
                let given = header("x-gps-signature");
                let valid = given
                    .strip_prefix("sha256=")
                    .and_then(|h| hex::decode(h).ok())
                    .is_some_and(|tag| aws_lc_rs::hmac::verify(&key, &message, &tag).is_ok());
                if !valid {
                    seen.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let json: serde_json::Value = serde_json::from_slice(&body).expect("json body");
                let count = json["renditions"].as_array().map_or(0, Vec::len);
                seen.keys.push((header("idempotency-key"), count));
                if seen.requests <= failures {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                seen.processed.entry(header("idempotency-key")).or_insert(json);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (address, seen)
}

#[tokio::test]
async fn a_webhook_that_fails_twice_then_succeeds_receives_the_export_once_with_a_valid_signature() {
    let (address, seen) = receiver(2, b"hook-secret-of-acme").await;
    let rig = Rig::start(Some(address)).await;
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_HOOK").expect("name"), b"hook-secret-of-acme")
        .await
        .expect("secret stored");
    rig.approved_prediction("pr1", 0).await;
    let url = format!("http://{address}/hooks/gps");
    let accepted = rig
        .export(json!({"export_id": "ex-hook", "predictions": ["pr1"], "channel": "social-square",
                       "destination": {"kind": "webhook", "url": url, "secret": "ACME_HOOK"}}))
        .await;
    assert_status(&accepted, 201);
    let export = rig.completed("ex-hook").await;

    let (requests, bad_signatures, processed) = {
        let seen = seen.lock().expect("lock");
        (seen.requests, seen.bad_signatures, seen.processed.clone())
    };
    assert_eq!((requests, bad_signatures), (3, 0), "two refusals, then the delivery; every signature valid");
    assert_eq!(processed.len(), 1, "processed once, under one idempotency key: {processed:?}");
    let (key, body) = processed.iter().next().expect("one");
    assert!(key.starts_with("gps-export-"), "{key}");
    assert_eq!(body["export_id"], "ex-hook");
    let rendition = &body["renditions"][0];
    assert_eq!((rendition["width"].as_u64(), rendition["height"].as_u64()), (Some(1080), Some(1080)));
    // The signed URL in the body serves the rendition.
    let path = rendition["url"]
        .as_str()
        .expect("url")
        .split_once(&format!("127.0.0.1:{}", rig.gateway.port))
        .expect("ours")
        .1
        .to_owned();
    let fetched = raw_request(rig.gateway.port, "GET", &path, &[], b"").await;
    assert_eq!(fetched.status, 200);
    let reader = manifest_of(&fetched.body, "image/jpeg", &rig.ca_pem);
    assert!(reader.active_manifest().is_some());

    // Every attempt is visible: two failures with a retry time, then success.
    let attempts = export["delivery_attempts"].as_array().expect("attempts");
    let outcomes: Vec<(bool, bool)> = attempts
        .iter()
        .map(|a| (a["succeeded"].as_bool().expect("bool"), a["retry_in_seconds"].is_number()))
        .collect();
    assert_eq!(outcomes, [(false, true), (false, true), (true, false)], "{attempts:?}");
    assert!(attempts[0]["detail"].as_str().is_some_and(|d| d.contains("503")), "{attempts:?}");
    assert!(export["renditions"][0]["location"].as_str().is_some_and(|l| l.starts_with(&url)), "{export}");
}

#[tokio::test]
async fn a_webhook_on_loopback_or_a_private_range_is_refused_when_the_export_is_requested() {
    let rig = Rig::start(None).await;
    rig.approved_prediction("pr1", 0).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://2130706433/hook",
    ] {
        let refused = rig
            .export(json!({"predictions": ["pr1"], "channel": "web-pdp",
                           "destination": {"kind": "webhook", "url": url, "secret": "ACME_HOOK"}}))
            .await;
        assert_status(&refused, 400);
        assert_eq!(refused.json()["field"], "destination.url", "{url}: {}", refused.body);
    }
}

#[tokio::test]
async fn an_export_to_a_brand_bucket_writes_every_rendition_under_its_prefix_with_stored_credentials() {
    // The brand's own S3-compatible bucket: a second embedded endpoint.
    let bucket_dir = tempfile::tempdir().expect("bucket dir");
    let server = gps_storage::EmbeddedS3::start(bucket_dir.path()).await.expect("brand's S3 endpoint");
    let mut brand_bucket = server.settings().clone();
    brand_bucket.bucket = "acme-dam".into();
    gps_storage::ObjectStore::connect(&brand_bucket).await.expect("bucket created");
    let rig = Rig::start(Some(server.address())).await;
    let credentials = json!({
        "endpoint": brand_bucket.endpoint,
        "region": brand_bucket.region,
        "access_key_id": brand_bucket.access_key_id,
        "secret_access_key": brand_bucket.secret_access_key.expose(),
        "path_style": true,
    });
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_S3").expect("name"), credentials.to_string().as_bytes())
        .await
        .expect("credentials stored");
    rig.approved_prediction("pr1", 0).await;
    let accepted = rig
        .export(json!({"export_id": "ex-s3", "predictions": ["pr1"], "channel": "marketplace-main",
                       "destination": {"kind": "s3", "bucket": "acme-dam", "prefix": "gps/summer/", "credentials": "ACME_S3"}}))
        .await;
    assert_status(&accepted, 201);
    let export = rig.completed("ex-s3").await;
    let rendition = &export["renditions"][0];
    let file_name = "DR-2041-BLK_main_1.jpg";
    assert_eq!(rendition["file_name"], file_name);
    assert_eq!(rendition["location"], format!("s3://acme-dam/gps/summer/{file_name}"));
    // The object in the brand's bucket is the rendition, byte for byte.
    let written =
        std::fs::read(bucket_dir.path().join("acme-dam/gps/summer").join(file_name)).expect("object written");
    assert_eq!(written, rig.stored(rendition["checksum"].as_str().expect("checksum")).await);
    let decoded = image::load_from_memory(&written).expect("image");
    assert_eq!((decoded.width(), decoded.height()), (2000, 2000));
    // The secret never appears in the export's events or read model.
    let secret = brand_bucket.secret_access_key.expose().to_owned();
    assert!(!export.to_string().contains(&secret));
    let address = CommandHandler::address::<gps_domain::export::Export>(&brand(), "ex-s3").expect("address");
    let loaded = rig.gateway.state.commands.load::<gps_domain::export::Export>(&address).await.expect("load");
    for envelope in &loaded.envelopes {
        assert!(!envelope.payload.to_string().contains(&secret), "{}", envelope.event_type);
    }
}

#[tokio::test]
async fn a_destination_secret_is_stored_sealed_and_opens_only_for_its_brand_name_and_key() {
    use gps_compute_agents::secrets::SecretError;
    let db = TestDb::create().await;
    let compute = ComputeStore::connect(db.url(), 2).await.expect("compute database");
    let key = SecretsKey::generate();
    let vault = SecretVault::new(compute.pool().clone(), &key);
    let name = SecretName::parse("ACME_HOOK").expect("name");
    vault.set(&brand(), &name, b"top-secret-value").await.expect("stored");
    assert_eq!(vault.get(&brand(), &name).await.expect("opens").expose(), b"top-secret-value");
    assert!(!format!("{:?}", vault.get(&brand(), &name).await.expect("opens")).contains("top-secret"));
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM delivery_secrets")
        .fetch_one(compute.pool())
        .await
        .expect("row");
    assert!(!sealed.windows(16).any(|w| w == b"top-secret-value"), "never stored in clear");
    // Another key (a different installation) cannot open it.
    let stranger = SecretVault::new(compute.pool().clone(), &SecretsKey::generate());
    assert!(matches!(stranger.get(&brand(), &name).await, Err(SecretError::Unreadable { .. })));
    // Copied to another brand, the sealed value does not open there.
    sqlx::query("UPDATE delivery_secrets SET brand = 'other'").execute(compute.pool()).await.expect("moved");
    let other = gps_domain::ids::BrandId::parse("other").expect("brand");
    assert!(matches!(vault.get(&other, &name).await, Err(SecretError::Unreadable { .. })));
    let missing = vault.get(&brand(), &name).await.expect_err("gone from acme");
    assert!(missing.to_string().contains("gps secrets set acme ACME_HOOK"), "{missing}");
}

#[tokio::test]
async fn a_webhook_delivery_resumed_after_a_partial_marking_keeps_its_idempotency_key_and_its_renditions() {
    let (address, seen) = receiver(1, b"hook-secret-of-acme").await;
    // A long pause after the failed first attempt: time for the partial marking below.
    let rig = Rig::start_with(Some(address), |settings| settings.retry_base = Duration::from_secs(4)).await;
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_HOOK").expect("name"), b"hook-secret-of-acme")
        .await
        .expect("secret stored");
    rig.approved_prediction("pr1", 0).await;
    rig.approved_prediction("pr2", 1).await;
    let url = format!("http://{address}/hooks/gps");
    let accepted = rig
        .export(json!({"export_id": "ex-resume", "predictions": ["pr1", "pr2"], "channel": "social-square",
                       "destination": {"kind": "webhook", "url": url, "secret": "ACME_HOOK"}}))
        .await;
    assert_status(&accepted, 201);
    let commands = &rig.gateway.state.commands;
    let export_address = CommandHandler::address::<Export>(&brand(), "ex-resume").expect("address");
    let mut state = commands.load::<Export>(&export_address).await.expect("load").state;
    for _ in 0..1200 {
        if state.delivery_attempts() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        state = commands.load::<Export>(&export_address).await.expect("load").state;
    }
    assert_eq!(state.delivery_attempts(), 1, "the first attempt failed and waits for its retry");
    // What a worker that stopped half-way through recording a delivery leaves:
    // one of the two renditions marked delivered.
    let (rendition_id, rendition) = state.renditions().iter().next().expect("a rendition");
    let mark = ExportCommand::MarkRenditionDelivered {
        rendition_id: rendition_id.clone(),
        location: DeliveryLocation::parse(format!("{url}#{}", rendition.produced.file_name))
            .expect("location"),
        checksum: rendition.produced.checksum.clone(),
    };
    commands
        .execute::<Export>(&export_address, &CommandMeta::generated(Actor::System("delivery".into())), &mark)
        .await
        .expect("partially marked");
    rig.completed("ex-resume").await;
    let keys = seen.lock().expect("lock").keys.clone();
    assert_eq!(keys.len(), 2, "the refused delivery and its resumption: {keys:?}");
    assert_eq!(keys[0], keys[1], "the same Idempotency-Key and the same two renditions: {keys:?}");
    assert_eq!(keys[1].1, 2);
}

#[tokio::test]
async fn an_older_export_delivered_late_to_a_brand_bucket_does_not_overwrite_the_newer_one() {
    let bucket_dir = tempfile::tempdir().expect("bucket dir");
    let server = gps_storage::EmbeddedS3::start(bucket_dir.path()).await.expect("brand's S3 endpoint");
    let mut brand_bucket = server.settings().clone();
    brand_bucket.bucket = "acme-dam".into();
    gps_storage::ObjectStore::connect(&brand_bucket).await.expect("bucket created");
    // The older export keeps retrying (its credentials are stored late) until the newer one is done.
    let rig = Rig::start_with(Some(server.address()), |settings| {
        settings.retry_base = Duration::from_millis(200);
        settings.retry_cap = Duration::from_millis(500);
        settings.max_attempts = 10_000;
    })
    .await;
    let credentials = json!({
        "endpoint": brand_bucket.endpoint,
        "region": brand_bucket.region,
        "access_key_id": brand_bucket.access_key_id,
        "secret_access_key": brand_bucket.secret_access_key.expose(),
        "path_style": true,
    })
    .to_string();
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_S3").expect("name"), credentials.as_bytes())
        .await
        .expect("credentials stored");
    // Two approved images of the same product and view (variant 1): the same file name.
    rig.approved_prediction_shaded("pr-old", 0, 30).await;
    rig.approved_prediction_shaded("pr-new", 0, 200).await;
    let destination = |secret: &str| json!({"kind": "s3", "bucket": "acme-dam", "prefix": "gps/summer/", "credentials": secret});
    let older = rig
        .export(json!({"export_id": "ex-old", "predictions": ["pr-old"], "channel": "marketplace-main",
                       "destination": destination("ACME_S3_LATE")}))
        .await;
    assert_status(&older, 201);
    let commands = &rig.gateway.state.commands;
    let old_address = CommandHandler::address::<Export>(&brand(), "ex-old").expect("address");
    for _ in 0..1200 {
        if commands.load::<Export>(&old_address).await.expect("load").state.delivery_attempts() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        commands.load::<Export>(&old_address).await.expect("load").state.delivery_attempts() >= 1,
        "the older export's first delivery failed and waits for its retry"
    );
    let newer = rig
        .export(json!({"export_id": "ex-new", "predictions": ["pr-new"], "channel": "marketplace-main",
                       "destination": destination("ACME_S3")}))
        .await;
    assert_status(&newer, 201);
    let newer = rig.completed("ex-new").await;
    let file_name = "DR-2041-BLK_main_1.jpg";
    assert_eq!(newer["renditions"][0]["file_name"], file_name);
    let object = bucket_dir.path().join("acme-dam/gps/summer").join(file_name);
    let newer_bytes = rig.stored(newer["renditions"][0]["checksum"].as_str().expect("checksum")).await;
    assert!(
        std::fs::read(&object).expect("object written") == newer_bytes,
        "the newer export wrote the object"
    );
    // Now the older export can reach the bucket: it is delivered late.
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_S3_LATE").expect("name"), credentials.as_bytes())
        .await
        .expect("late credentials stored");
    let older = rig.settled("ex-old").await;
    // The bucket still holds the newer export's content.
    assert!(
        std::fs::read(&object).expect("object still there") == newer_bytes,
        "the late, older export overwrote the newer one: {older}"
    );
    let older_bytes = rig.stored(older["renditions"][0]["checksum"].as_str().expect("checksum")).await;
    assert!(older_bytes != newer_bytes, "the two exports have different content");
    // The older export records the skip: in its last delivery attempt and its outcome.
    let attempts = older["delivery_attempts"].as_array().expect("attempts");
    let last = attempts.last().expect("an attempt").clone();
    let detail = last["detail"].as_str().expect("detail");
    assert!(detail.contains("0 objects written") && detail.contains("a newer export (ex-new"), "{last}");
    assert!(detail.contains(&format!("s3://acme-dam/gps/summer/{file_name}")), "{detail}");
    assert_eq!(older["status"], "failed", "{older}");
    assert_eq!(older["renditions"][0]["delivered"], false, "{older}");
    let reason = older["failure_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ex-new") && reason.contains("Request a new export"), "{older}");
    // The object names its writer: the newer export.
    let head = gps_storage::ExternalBucket::new(&brand_bucket)
        .head(&format!("gps/summer/{file_name}"))
        .await
        .expect("head")
        .expect("object");
    assert_eq!(head.metadata.get("gps-export").map(String::as_str), Some("ex-new"), "{head:?}");
}

#[tokio::test]
async fn a_delivery_worker_whose_connections_are_cut_again_and_again_delivers_each_export_under_one_key() {
    let (address, seen) = receiver(0, b"hook-secret-of-acme").await;
    let rig = Rig::start_proxied(Some(address)).await;
    rig.vault
        .set(&brand(), &SecretName::parse("ACME_HOOK").expect("name"), b"hook-secret-of-acme")
        .await
        .expect("secret stored");
    let url = format!("http://{address}/hooks/gps");
    let exports: Vec<String> = (0..4).map(|i| format!("ex-cut-{i}")).collect();
    for (i, export) in exports.iter().enumerate() {
        let prediction = format!("pr-cut-{i}");
        rig.approved_prediction(&prediction, 0).await;
        let accepted = rig
            .export(json!({"export_id": export, "predictions": [prediction], "channel": "social-square",
                           "destination": {"kind": "webhook", "url": url, "secret": "ACME_HOOK"}}))
            .await;
        assert_status(&accepted, 201);
    }
    let proxy = rig.proxy.as_ref().expect("proxied");
    let ((), cuts) = proxy
        .cutting_every(Duration::from_millis(400), async {
            for export in &exports {
                rig.completed(export).await;
            }
        })
        .await;
    assert!(cuts >= 2, "the run was cut {cuts} times");
    assert!(proxy.connections() > 2, "the worker reconnected after the cuts");
    // Redeliveries (if any) had their chance to post again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.bad_signatures, 0);
    // A webhook may be posted again after a cut (at least once), but always
    // under the export's one key, so the receiver keeps each export once.
    let mut keys_per_export: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (key, body) in &seen.processed {
        keys_per_export
            .entry(body["export_id"].as_str().expect("export id").to_owned())
            .or_default()
            .insert(key.clone());
    }
    assert_eq!(keys_per_export.len(), 4, "every export reached the receiver: {keys_per_export:?}");
    assert!(keys_per_export.values().all(|keys| keys.len() == 1), "one key per export: {keys_per_export:?}");
    let distinct: std::collections::BTreeSet<&String> = seen.keys.iter().map(|(key, _)| key).collect();
    assert_eq!(distinct.len(), 4, "every post carried its export's key: {:?}", seen.keys);
}
