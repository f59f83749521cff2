//! Compute agents end to end: real NATS, a real compute database, the embedded
//! S3 endpoint, and local servers speaking the providers' protocols. A launched
//! shooting ends in predictions with provenance; revisions link to their
//! parent; cancelling calls fal's cancel; retries, fallbacks and the breaker
//! follow the error classes; a Gemini refusal fails the generation with its
//! reason; the colour gate flags a hue-shifted garment; and a SIGKILLed
//! `gps agent` process is replaced without a second paid submission.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gps_commands::{CommandHandler, CommandMeta};
use gps_compute_agents::agent::{self, AgentSettings};
use gps_compute_agents::engine::Engine;
use gps_compute_agents::providers::fal::{FalProvider, FalSettings};
use gps_compute_agents::providers::gemini::{GeminiProvider, GeminiSettings};
use gps_compute_agents::providers::http_worker::{HttpWorkerProvider, HttpWorkerSettings};
use gps_compute_agents::providers::local::LocalProvider;
use gps_compute_agents::providers::{ApiKey, Capability, InputImage, InputRole, Provider, Task};
use gps_compute_agents::quality::GateSettings;
use gps_compute_agents::router::{ProviderLimits, RetryPolicy, Router};
use gps_compute_agents::store::ComputeStore;
use gps_compute_agents::workflow::WorkflowSet;
use gps_domain::Aggregate;
use gps_domain::generation::{
    Generation, GenerationCommand, GenerationInputs, GenerationRequested, GenerationStatus,
    ProductImageSnapshot, ProductSnapshot,
};
use gps_domain::ids::{GenerationId, ImageId, LookId, PredictionId, ProductId, ShootingId};
use gps_domain::look::{Look, LookCommand, LookGuidelines};
use gps_domain::prediction::{Prediction, PredictionCommand};
use gps_domain::product::{ImageView, Product, ProductCommand};
use gps_domain::shooting::{Shooting, ShootingCommand, ShootingDefaults};
use gps_domain::values::{
    AspectRatio, AssetRef, Category, ImageFormat, Name, OutputSpec, ShotType, Sku, Text, WorkflowName,
    WorkflowRef,
};
use gps_domain::wire::Actor;
use gps_nats::AggregateAddress;
use image::{Rgba, RgbaImage};
use tokio::sync::watch;

use crate::compute_servers::{FalServer, GeminiServer, WorkerAnswer, WorkerServer};
use crate::harness::{TestDb, TestNats, brand};

pub(crate) const BLUE: [u8; 3] = [30, 60, 170];

/// A product photo: a garment of `colour` on a white backdrop.
pub(crate) fn product_photo(colour: [u8; 3]) -> Bytes {
    let mut photo = RgbaImage::from_pixel(200, 250, Rgba([250, 250, 250, 255]));
    for x in 50..150 {
        for y in 30..220 {
            // A little texture, so the image is not flat.
            let shade = if (x / 6 + y / 6) % 2 == 0 { 0 } else { 12 };
            photo.put_pixel(
                x,
                y,
                Rgba([colour[0].saturating_add(shade), colour[1].saturating_add(shade), colour[2], 255]),
            );
        }
    }
    gps_compute_agents::imaging::encode(&photo, "png").expect("encode").0
}

fn text(s: &str) -> Text {
    Text::parse(s).expect("text")
}

fn name(s: &str) -> Name {
    Name::parse(s).expect("name")
}

fn output() -> OutputSpec {
    OutputSpec::new(AspectRatio::parse("4:5").expect("ratio"), 320, ImageFormat::Png).expect("output")
}

pub(crate) fn meta() -> CommandMeta {
    CommandMeta::generated(Actor::System("test".into()))
}

pub(crate) fn address<A: Aggregate>(id: &str) -> AggregateAddress {
    AggregateAddress::new(brand(), A::KIND, id).expect("address")
}

/// The real parts an in-process agent runs on.
pub(crate) struct Compute {
    pub(crate) nats: TestNats,
    pub(crate) db: TestDb,
    objects: std::path::PathBuf,
    pub(crate) storage: gps_storage::ObjectStore,
    pub(crate) embedded: Option<gps_storage::EmbeddedS3>,
    pub(crate) commands: CommandHandler,
    pub(crate) store: ComputeStore,
    pub(crate) stop: watch::Sender<bool>,
}

impl Compute {
    /// NATS, a compute database and object storage, without an agent.
    pub(crate) async fn parts() -> Self {
        let nats = TestNats::start().await;
        let log = nats.event_log().await;
        let db = TestDb::create().await;
        let store = ComputeStore::connect(db.url(), 8).await.expect("compute database");
        let objects = std::env::temp_dir().join(format!("gps-objects-{}", uuid::Uuid::new_v4().simple()));
        let (storage, embedded) = gps_storage::ObjectStore::embedded(&objects).await.expect("object storage");
        let (stop, _) = watch::channel(false);
        Compute {
            nats,
            db,
            objects,
            storage,
            embedded: Some(embedded),
            commands: CommandHandler::new(log),
            store,
            stop,
        }
    }

    /// The parts plus an agent and the process managers running in this process.
    pub(crate) async fn start(router: Router) -> Self {
        let compute = Self::parts().await;
        compute.spawn_agent(router, "agent-test");
        compute
    }

    pub(crate) fn engine(&self, router: Router) -> Arc<Engine> {
        Arc::new(Engine {
            router: Arc::new(router),
            blobs: Arc::new(self.storage.clone()),
            store: self.store.clone(),
            workflows: WorkflowSet::built_in().expect("workflows"),
            gate: GateSettings::default(),
            poll_every: Duration::from_millis(50),
        })
    }

    pub(crate) fn spawn_agent(&self, router: Router, agent_name: &str) {
        let mut settings = AgentSettings::new(agent_name);
        settings.ack_wait = Duration::from_secs(5);
        settings.max_deliver = 3;
        self.spawn_agent_with(router, settings);
    }

    /// An agent with `settings` and the process managers, in this process.
    pub(crate) fn spawn_agent_with(&self, router: Router, settings: AgentSettings) {
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(agent::run(
            self.commands.clone(),
            self.engine(router),
            settings,
            stopped(self.stop.subscribe()),
        ));
        tokio::spawn(gps_commands::process_managers::run(
            self.commands.clone(),
            stopped(self.stop.subscribe()),
        ));
    }

    pub(crate) async fn asset(&self, bytes: Bytes) -> AssetRef {
        gps_compute_agents::blobs::store(&self.storage, &brand(), bytes, "image/png")
            .await
            .expect("store asset")
    }

    pub(crate) async fn request(&self, request: GenerationRequested) {
        let address = address::<Generation>(request.generation_id.as_str());
        self.commands
            .execute::<Generation>(&address, &meta(), &GenerationCommand::RequestGeneration(request))
            .await
            .expect("request generation");
    }

    pub(crate) async fn generation(&self, id: &GenerationId) -> Generation {
        self.commands.load::<Generation>(&address::<Generation>(id.as_str())).await.expect("load").state
    }

    /// Waits until the generation reaches a final status.
    pub(crate) async fn finished(&self, id: &GenerationId) -> Generation {
        for _ in 0..1200 {
            let generation = self.generation(id).await;
            if matches!(
                generation.status(),
                Some(GenerationStatus::Completed | GenerationStatus::Failed | GenerationStatus::Cancelled)
            ) {
                return generation;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("generation {id} did not finish: {:?}", self.generation(id).await.status());
    }

    pub(crate) async fn prediction(&self, id: &PredictionId) -> Prediction {
        self.commands.load::<Prediction>(&address::<Prediction>(id.as_str())).await.expect("load").state
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        drop(self.embedded.take());
        let _ = std::fs::remove_dir_all(&self.objects);
    }
}

pub(crate) fn request(id: &str, workflow: &str, variants: u8, product: &AssetRef) -> GenerationRequested {
    GenerationRequested {
        generation_id: GenerationId::parse(id).expect("id"),
        brand_id: brand(),
        shooting_id: ShootingId::parse("s1").expect("id"),
        look_id: LookId::parse("l1").expect("id"),
        shot_type: ShotType::parse("front").expect("shot type"),
        variants,
        workflow: WorkflowRef { name: WorkflowName::parse(workflow).expect("workflow"), version: 1 },
        seed: 7,
        output: output(),
        inputs: GenerationInputs {
            products: vec![ProductSnapshot {
                product_id: ProductId::parse("dress").expect("id"),
                sku: Sku::parse("DR-1").expect("sku"),
                name: name("Linen dress"),
                category: Category::parse("dresses").expect("category"),
                attributes: BTreeMap::from([("colour".to_owned(), "blue".to_owned())]),
                images: vec![ProductImageSnapshot { asset: product.clone(), view: name("front") }],
            }],
            subject: None,
            style: None,
            look_guidelines: vec![text("show the whole dress")],
        },
        revision: None,
        quality_gates: None,
    }
}

pub(crate) fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        tries_per_provider: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(60),
    }
}

pub(crate) fn local() -> (Arc<dyn Provider>, ProviderLimits) {
    (Arc::new(LocalProvider::new("png")), ProviderLimits::default())
}

pub(crate) fn worker(
    name: &str,
    url: &str,
    capabilities: Vec<Capability>,
) -> (Arc<dyn Provider>, ProviderLimits) {
    worker_with(name, url, capabilities, false, Duration::from_secs(10))
}

/// An http-worker adapter; `idempotent`: the worker honours `Idempotency-Key`.
pub(crate) fn worker_with(
    name: &str,
    url: &str,
    capabilities: Vec<Capability>,
    idempotent: bool,
    timeout: Duration,
) -> (Arc<dyn Provider>, ProviderLimits) {
    let settings = HttpWorkerSettings {
        name: name.into(),
        url: url.into(),
        capabilities,
        key: None,
        timeout,
        idempotent,
    };
    (Arc::new(HttpWorkerProvider::new(settings)), ProviderLimits::default())
}

pub(crate) fn fal(url: &str) -> (Arc<dyn Provider>, ProviderLimits) {
    let mut settings = FalSettings::new(url, ApiKey::new("test-fal-key"));
    settings.models.retain(|c, _| *c == Capability::Generate);
    (Arc::new(FalProvider::new(settings)), ProviderLimits::default())
}

pub(crate) fn routes(pairs: &[(Capability, &[&str])]) -> BTreeMap<Capability, Vec<String>> {
    pairs.iter().map(|(c, names)| (*c, names.iter().map(|n| (*n).to_owned()).collect())).collect()
}

fn task(bytes: &Bytes) -> Task {
    Task {
        capability: Capability::Generate,
        prompt: "a blue dress".into(),
        seed: 1,
        width: 64,
        height: 80,
        aspect_ratio: "4:5".into(),
        background: None,
        images: vec![InputImage {
            role: InputRole::Product,
            hash: gps_compute_agents::blobs::content_hash(bytes),
            media_type: "image/png".into(),
            bytes: bytes.clone(),
        }],
        idempotency_key: "acme/g-test/1/generate/0".into(),
    }
}

#[tokio::test]
async fn a_429_then_success_is_retried_and_a_400_or_a_malformed_answer_is_handled_by_its_class() {
    let server = WorkerServer::start().await;
    // An idempotent worker (it honours Idempotency-Key), so even an unreadable
    // answer may be asked again; a worker that is not is tested below.
    let router = Router::new(
        vec![worker_with("worker", &server.url, vec![Capability::Generate], true, Duration::from_secs(10))],
        BTreeMap::new(),
        fast_policy(),
    );
    let photo = product_photo(BLUE);

    server.script([WorkerAnswer::Status(429, Some(0))]);
    let done = router.run(&task(&photo), Duration::from_millis(10)).await.expect("retried after the 429");
    assert_eq!(server.calls(), 2, "one 429, then the success");
    assert_eq!(done.tries, 2);
    assert_eq!(done.provider, "worker");

    server.script([WorkerAnswer::Status(400, None)]);
    let error = router.run(&task(&photo), Duration::from_millis(10)).await.expect_err("a 400 is not retried");
    assert_eq!(server.calls(), 3, "the 400 was sent once");
    assert!(!error.retryable, "{error}");
    assert!(error.message.contains("400"), "{error}");

    server.script([WorkerAnswer::Malformed]);
    let done =
        router.run(&task(&photo), Duration::from_millis(10)).await.expect("a malformed answer is retried");
    assert_eq!(server.calls(), 5);
    assert_eq!(done.tries, 2);
}

#[tokio::test]
async fn a_provider_that_is_down_trips_the_breaker_and_work_falls_back_to_the_next_provider() {
    let server = WorkerServer::start().await;
    server.always(WorkerAnswer::Status(503, None));
    let router = Router::new(
        vec![worker("flaky", &server.url, vec![Capability::Generate]), local()],
        routes(&[(Capability::Generate, &["flaky", "local"])]),
        fast_policy(),
    );
    let photo = product_photo(BLUE);
    let first = router.run(&task(&photo), Duration::from_millis(10)).await.expect("fell back");
    assert_eq!(first.provider, "local");
    assert_eq!(server.calls(), 3, "three tries before falling back");
    let second = router.run(&task(&photo), Duration::from_millis(10)).await.expect("fell back at once");
    assert_eq!(second.provider, "local");
    assert_eq!(server.calls(), 3, "the open breaker keeps the down provider from being called again");
}

#[tokio::test]
async fn a_gemini_safety_refusal_fails_the_generation_with_that_reason_and_is_not_retried() {
    let gemini = GeminiServer::start(serde_json::json!({
        "candidates": [{ "content": { "parts": [{ "text": "I can't create that image." }] }, "finishReason": "IMAGE_SAFETY" }],
        "usageMetadata": { "promptTokenCount": 12, "candidatesTokenCount": 0, "totalTokenCount": 12 }
    }))
    .await;
    let provider = GeminiProvider::new(GeminiSettings {
        base_url: gemini.url.clone(),
        model: "gemini-2.5-flash-image".into(),
        key: ApiKey::new("test-gemini-key"),
        timeout: Duration::from_secs(10),
    });
    let router = Router::new(
        vec![(Arc::new(provider), ProviderLimits::default()), local()],
        routes(&[(Capability::Generate, &["gemini", "local"])]),
        fast_policy(),
    );
    let compute = Compute::start(router).await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let id = GenerationId::parse("g-refused").expect("id");
    compute.request(request(id.as_str(), "on-model", 1, &photo)).await;
    let generation = compute.finished(&id).await;
    assert_eq!(generation.status(), Some(GenerationStatus::Failed));
    let failure = generation.failure().expect("failure");
    assert!(failure.reason.as_str().contains("IMAGE_SAFETY"), "{}", failure.reason);
    assert!(!failure.retryable);
    assert_eq!(
        gemini.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a refusal is neither retried nor sent elsewhere"
    );
}

#[tokio::test]
async fn the_colour_gate_flags_a_hue_shifted_garment_and_passes_a_faithful_one() {
    let server = WorkerServer::start().await;
    let router = Router::new(
        vec![worker("painter", &server.url, vec![Capability::Generate]), local()],
        routes(&[(Capability::Generate, &["painter"]), (Capability::Enhance, &["local"])]),
        fast_policy(),
    );
    let compute = Compute::start(router).await;
    let photo = compute.asset(product_photo(BLUE)).await;

    let faithful = GenerationId::parse("g-faithful").expect("id");
    compute.request(request(faithful.as_str(), "on-model", 1, &photo)).await;
    let done = compute.finished(&faithful).await;
    assert_eq!(done.status(), Some(GenerationStatus::Completed), "{:?}", done.failure());
    let produced = compute.prediction(&done.predictions()[0]).await;
    let report = produced.produced().and_then(|p| p.quality.clone()).expect("a quality report");
    let colour = report.checks.iter().find(|c| c.check.as_str() == "colour_fidelity").expect("colour check");
    assert!(colour.passed, "{colour:?}");

    server.set_hue(150.0);
    let shifted = GenerationId::parse("g-shifted").expect("id");
    compute.request(request(shifted.as_str(), "on-model", 1, &photo)).await;
    let done = compute.finished(&shifted).await;
    assert_eq!(done.status(), Some(GenerationStatus::Completed), "a flagged prediction is still produced");
    let produced = compute.prediction(&done.predictions()[0]).await;
    let report = produced.produced().and_then(|p| p.quality.clone()).expect("a quality report");
    let colour = report.checks.iter().find(|c| c.check.as_str() == "colour_fidelity").expect("colour check");
    assert!(!colour.passed, "{colour:?}");
    assert!(!report.passed);
    assert!(colour.measured > colour.threshold, "the figure shows why: {colour:?}");
}

#[tokio::test]
async fn cancelling_mid_run_stops_the_work_and_cancels_the_fal_request() {
    let fal_server = FalServer::start().await;
    let router = Router::new(
        vec![fal(&fal_server.url), local()],
        routes(&[(Capability::Generate, &["fal"])]),
        fast_policy(),
    );
    let compute = Compute::start(router).await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let id = GenerationId::parse("g-cancel").expect("id");
    compute.request(request(id.as_str(), "on-model", 2, &photo)).await;
    for _ in 0..2400 {
        if fal_server.submissions() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fal_server.submissions(), 2, "both variants were submitted");
    let cancel =
        GenerationCommand::CancelGeneration { cancelled_by: Actor::System("test".into()), reason: None };
    compute
        .commands
        .execute::<Generation>(&address::<Generation>(id.as_str()), &meta(), &cancel)
        .await
        .expect("cancel");
    for _ in 0..2400 {
        if fal_server.cancels() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(fal_server.cancels(), 2, "each in-flight fal request was cancelled");
    // Even when fal finishes the requests afterwards, nothing more is produced.
    fal_server.state.release.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let generation = compute.generation(&id).await;
    assert_eq!(generation.status(), Some(GenerationStatus::Cancelled));
    assert!(generation.predictions().is_empty());
    assert!(
        generation.steps().iter().all(|s| !s.step.as_str().starts_with("enhance")),
        "no step ran after the cancel"
    );
    assert_eq!(fal_server.submissions(), 2);
}

async fn execute<A: Aggregate>(commands: &CommandHandler, id: &str, command: A::Command) {
    commands.execute::<A>(&address::<A>(id), &meta(), &command).await.unwrap_or_else(|e| panic!("{id}: {e}"));
}

/// Creates one product (with a photo) per look, a shooting `summer` with
/// `shots` as default shot types, and launches it with one look per colour.
async fn launch_summer(compute: &Compute, colours: &[[u8; 3]], shots: &[&str]) -> ShootingId {
    let commands = &compute.commands;
    for (index, colour) in colours.iter().enumerate() {
        let id = format!("product-{index}");
        execute::<Product>(
            commands,
            &id,
            ProductCommand::CreateProduct {
                product_id: ProductId::parse(&id).expect("id"),
                brand_id: brand(),
                sku: Sku::parse(format!("SKU-{index}")).expect("sku"),
                name: name(&format!("Dress {index}")),
                category: Category::parse("dresses").expect("category"),
                attributes: BTreeMap::new(),
            },
        )
        .await;
        let asset = compute.asset(product_photo(*colour)).await;
        execute::<Product>(
            commands,
            &id,
            ProductCommand::AddProductImage {
                image_id: ImageId::parse("front").expect("id"),
                asset,
                view: ImageView::Front,
                analysis: None,
            },
        )
        .await;
    }
    let shooting_id = ShootingId::parse("summer").expect("id");
    execute::<Shooting>(
        commands,
        "summer",
        ShootingCommand::CreateShooting {
            shooting_id: shooting_id.clone(),
            brand_id: brand(),
            name: name("Summer"),
            defaults: ShootingDefaults {
                style: None,
                subject: None,
                shot_types: shots.iter().map(|s| ShotType::parse(*s).expect("shot")).collect(),
                output: output(),
            },
        },
    )
    .await;
    let view = || async {
        commands
            .load::<Shooting>(&address::<Shooting>("summer"))
            .await
            .expect("shooting")
            .state
            .view()
            .expect("view")
    };
    for index in 0..colours.len() {
        let id = format!("look-{index}");
        execute::<Look>(
            commands,
            &id,
            LookCommand::CreateLook {
                look_id: LookId::parse(&id).expect("id"),
                brand_id: brand(),
                shooting_id: shooting_id.clone(),
                name: name(&format!("Look {index}")),
                products: vec![ProductId::parse(format!("product-{index}")).expect("id")],
                subject: None,
                style: None,
                guidelines: LookGuidelines::default(),
                shot_types: None,
                shooting: view().await,
            },
        )
        .await;
    }
    let mut looks = Vec::new();
    for index in 0..colours.len() {
        let look =
            commands.load::<Look>(&address::<Look>(&format!("look-{index}"))).await.expect("look").state;
        looks.push(look.at_launch().expect("launchable"));
    }
    execute::<Shooting>(commands, "summer", ShootingCommand::LaunchShooting { looks }).await;

    shooting_id
}

#[tokio::test]
async fn a_launched_shooting_of_3_looks_by_2_shot_types_by_4_variants_yields_24_predictions_with_provenance_and_a_revision_links_to_its_parent()
 {
    let router = Router::new(vec![local()], BTreeMap::new(), fast_policy());
    let compute = Compute::start(router).await;
    let commands = &compute.commands;
    let colours = [[30u8, 60, 170], [160, 30, 40], [30, 130, 60]];
    let shooting_id = launch_summer(&compute, &colours, &["front", "back"]).await;

    // The process manager requests 6 generations with ids derived from the launch.
    let mut predictions = Vec::new();
    for index in 0..3 {
        for shot in ["front", "back"] {
            let id = gps_commands::process_managers::launch_generation_id(
                &brand(),
                &shooting_id,
                1,
                &LookId::parse(format!("look-{index}")).expect("id"),
                &ShotType::parse(shot).expect("shot"),
            );
            for _ in 0..2400 {
                if compute.generation(&id).await.status().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let generation = compute.finished(&id).await;
            assert_eq!(generation.status(), Some(GenerationStatus::Completed), "{:?}", generation.failure());
            assert_eq!(generation.predictions().len(), 4);
            assert!(generation.steps().iter().any(|s| s.step.as_str() == "generate/3"));
            predictions.extend(generation.predictions().iter().cloned());
        }
    }
    predictions.sort();
    predictions.dedup();
    assert_eq!(predictions.len(), 24, "24 distinct predictions");
    for id in &predictions {
        let prediction = compute.prediction(id).await;
        let produced = prediction.produced().expect("produced");
        let provenance = &produced.provenance;
        assert_eq!(provenance.workflow.name.as_str(), "lifestyle");
        assert_eq!(provenance.provider.as_str(), "local");
        assert!(
            provenance.model.as_str().starts_with("image-ops"),
            "the local provider is honest: {}",
            provenance.model
        );
        assert_eq!(provenance.input_hashes.len(), 1);
        assert!(provenance.prompt.is_some());
        let stored = compute
            .storage
            .get(&gps_storage::ObjectKey::content(&brand(), &produced.asset.hash))
            .await
            .expect("the image is in object storage");
        assert_eq!(stored.body.len() as u64, produced.asset.bytes);
        assert_eq!((produced.asset.width, produced.asset.height), (Some(256), Some(320)));
    }

    // A revision request starts a new generation linked to the parent prediction.
    let parent = predictions[0].clone();
    let revise =
        PredictionCommand::RequestRevision { comment: text("lift the hem a little"), regions: Vec::new() };
    execute::<Prediction>(commands, parent.as_str(), revise).await;
    let revision_id = gps_commands::process_managers::revision_generation_id(&brand(), &parent);
    for _ in 0..2400 {
        if compute.generation(&revision_id).await.status().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revision = compute.finished(&revision_id).await;
    assert_eq!(revision.status(), Some(GenerationStatus::Completed), "{:?}", revision.failure());
    let request = revision.request().expect("request");
    assert_eq!(request.workflow.name.as_str(), "revise");
    let link = request.revision.as_ref().expect("linked");
    assert_eq!(link.parent_prediction_id, parent);
    assert_eq!(link.feedback.as_str(), "lift the hem a little");
    for id in revision.predictions() {
        let produced = compute.prediction(id).await.produced().cloned().expect("produced");
        assert_eq!(produced.generation_id, revision_id);
        let parent_prediction = compute.prediction(&parent).await;
        let parent_hash = &parent_prediction.produced().expect("parent").asset.hash;
        assert!(produced.provenance.input_hashes.contains(parent_hash), "the revised image is an input");
    }
}

#[tokio::test]
async fn cancelling_a_launch_cancels_its_running_generations_and_their_fal_requests() {
    let fal_server = FalServer::start().await;
    let router = Router::new(
        vec![fal(&fal_server.url), local()],
        routes(&[(Capability::Generate, &["fal"])]),
        fast_policy(),
    );
    let compute = Compute::start(router).await;
    let shooting_id = launch_summer(&compute, &[BLUE], &["front", "back"]).await;
    // 2 generations × 4 variants, all held IN_PROGRESS by the fal server.
    // Up to two minutes: under a full suite's load a generation can be
    // redelivered (ack wait 5 s, then its backoff) before it submits.
    for _ in 0..2400 {
        if fal_server.submissions() == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fal_server.submissions(), 8, "every variant of both generations was submitted");
    let cancel = ShootingCommand::CancelLaunch { reason: Some(text("wrong subject")) };
    execute::<Shooting>(&compute.commands, "summer", cancel).await;
    for _ in 0..2400 {
        if fal_server.cancels() == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let generation_ids: Vec<GenerationId> = ["front", "back"]
        .iter()
        .map(|shot| {
            gps_commands::process_managers::launch_generation_id(
                &brand(),
                &shooting_id,
                1,
                &LookId::parse("look-0").expect("id"),
                &ShotType::parse(*shot).expect("shot"),
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for id in &generation_ids {
        statuses.push(compute.generation(id).await.status());
    }
    assert_eq!(
        fal_server.cancels(),
        8,
        "each in-flight fal request was cancelled; generations: {statuses:?}"
    );
    fal_server.state.release.store(true, std::sync::atomic::Ordering::SeqCst);
    for shot in ["front", "back"] {
        let id = gps_commands::process_managers::launch_generation_id(
            &brand(),
            &shooting_id,
            1,
            &LookId::parse("look-0").expect("id"),
            &ShotType::parse(shot).expect("shot"),
        );
        let generation = compute.finished(&id).await;
        assert_eq!(generation.status(), Some(GenerationStatus::Cancelled), "{shot}");
        assert!(generation.predictions().is_empty(), "{shot}: nothing produced after the cancel");
    }
    let shooting = compute.commands.load::<Shooting>(&address::<Shooting>("summer")).await.expect("load");
    let view = shooting.state.view().expect("view");
    assert_eq!(view.status, gps_domain::shooting::ShootingStatus::Draft, "editable again");
    assert_eq!(fal_server.submissions(), 8, "nothing was submitted again");
}

#[tokio::test]
async fn an_agent_process_killed_mid_workflow_is_replaced_without_a_duplicate_prediction_or_a_second_fal_submission()
 {
    let fal_server = FalServer::start().await;
    let compute = Compute::parts().await;
    let photo = compute.asset(product_photo(BLUE)).await;
    let storage = compute.embedded.as_ref().expect("embedded").settings().clone();
    let data_dir = std::env::temp_dir().join(format!("gps-agent-{}", uuid::Uuid::new_v4().simple()));
    let spawn_agent = |name: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gps"));
        command
            .arg("agent")
            .env("NATS_URL", compute.nats.server.url())
            .env("GPS_COMPUTE_DATABASE_URL", compute.db.url())
            .env("GPS_DATA_DIR", &data_dir)
            .env("GPS_S3_ENDPOINT", &storage.endpoint)
            .env("GPS_S3_BUCKET", &storage.bucket)
            .env("GPS_S3_ACCESS_KEY_ID", &storage.access_key_id)
            .env("GPS_S3_SECRET_ACCESS_KEY", storage.secret_access_key.expose())
            .env("GPS_S3_REGION", &storage.region)
            .env("GPS_S3_PATH_STYLE", "true")
            .env("FAL_KEY", "test-fal-key")
            .env("GPS_FAL_URL", &fal_server.url)
            .env("GPS_ROUTE_GENERATE", "fal")
            // Enhancement stays local, so every fal submission counted is a generation.
            .env("GPS_ROUTE_ENHANCE", "local")
            .env("GPS_AGENT_NAME", name)
            .env("GPS_AGENT_ACK_WAIT_SECS", "2")
            .env("GPS_AGENT_POLL_MS", "50")
            .env("GPS_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        command.spawn().expect("spawn gps agent")
    };
    let id = GenerationId::parse("g-crash").expect("id");
    compute.request(request(id.as_str(), "on-model", 2, &photo)).await;
    let mut first = spawn_agent("agent-first");
    // Wait until both paid requests are submitted and recorded, then kill the
    // agent while fal still works on them.
    for _ in 0..2400 {
        let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM steps WHERE status = 'submitted'")
            .fetch_one(compute.store.pool())
            .await
            .expect("count");
        if recorded == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fal_server.submissions(), 2, "both variants were submitted once");
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");
    assert_eq!(compute.generation(&id).await.status(), Some(GenerationStatus::Running));

    fal_server.state.release.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut second = spawn_agent("agent-second");
    let generation = compute.finished(&id).await;
    let _ = second.start_kill();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert_eq!(generation.status(), Some(GenerationStatus::Completed), "{:?}", generation.failure());
    assert_eq!(
        fal_server.submissions(),
        2,
        "the replacement polled the recorded requests instead of paying again"
    );
    assert_eq!(generation.agent().map(Name::as_str), Some("agent-second"), "the second agent took over");
    let mut ids = generation.predictions().to_vec();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "one prediction per variant, no duplicate");
    for index in 0..2u8 {
        let expected = agent::prediction_id(&brand(), &id, 1, index);
        assert!(ids.contains(&expected));
        let prediction = compute.prediction(&expected).await;
        assert_eq!(prediction.produced().map(|p| p.provenance.provider.as_str()), Some("fal"));
    }
}
