//! Stage 5, Deliver: the delivery worker. It consumes export events through
//! the shared durable consumer `gps-delivery` (`consume`, like the compute
//! agents), formats each approved prediction for the export's preset
//! snapshot ([`format`]), embeds signed content credentials
//! ([`credentials`]), stores the rendition, and delivers the export to its
//! destination ([`destinations`]), writing every step back as an export
//! command with a deterministic id.
//!
//! Resumable by the events: a redelivered (or retried) export skips the
//! renditions it already produced and the deliveries already recorded, so a
//! crashed worker's export finishes on another without doing work twice.
//! Renditions are formatted in parallel (`parallel_renditions` at once, on
//! the blocking pool). Progress is the events themselves:
//! `export.rendition_produced`, `export.delivery_attempted`,
//! `export.rendition_delivered` (where, when, checksum), `export.completed`.
//!
//! Failures: a preset the build cannot render, an image that cannot meet the
//! preset's size limit or an approved image missing from storage fail the
//! export at once (not retryable: the preset or the data must change). A
//! destination that does not answer is tried again with exponential backoff
//! (`retry_base` doubling up to `retry_cap`), each attempt recorded; after
//! `max_attempts` the export fails as retryable, so a person can retry it
//! later. Infrastructure trouble (NATS, object storage) is negatively
//! acknowledged and redelivered. An S3 delivery whose key a newer export
//! (requested later in the log) already wrote leaves that object alone,
//! records the skip in its delivery attempt and fails the export, not
//! retryable, naming the newer export ([`destinations`] explains the order
//! and the conditional writes that keep it).
//!
//! The consume loop runs under [`crate::supervise`] ([`run_with`] reports it in
//! a `RoleHealth`), and the worker refuses to start when the compute
//! database, which holds the delivery state (sealed secrets), belongs to
//! another event log.
//!
//! Architecture invariant: like an agent, the worker reads no business read
//! model — only the export, prediction and generation aggregates from the log
//! — and writes only through `CommandHandler`.

pub mod credentials;
pub mod destinations;
pub mod format;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;
use futures::StreamExt;
use gps_commands::{CommandError, CommandHandler, CommandMeta};
use gps_domain::AggregateKind;
use gps_domain::export::{Export, ExportCommand, ExportDestination, ExportRequested, ExportStatus, FileName};
use gps_domain::generation::{Generation, GenerationRequested, ProductSnapshot};
use gps_domain::ids::{PredictionId, RenditionId};
use gps_domain::prediction::{Prediction, PredictionProduced};
use gps_domain::values::{AssetRef, ChannelPresetSpec, Text};
use gps_domain::wire::EventEnvelope;
use gps_nats::AggregateAddress;
use gps_storage::{ObjectKey, ObjectStore, SafeFetcher};
use sha2::{Digest, Sha256};

use crate::consume::{self, ConsumerSpec, ack, header};
use crate::secrets::SecretVault;
use crate::supervise::{self, RoleHealth};
use credentials::{ContentCredentials, Ingredient, ManifestFacts};
use destinations::{Delivered, Failure};

/// The durable consumer every delivery worker shares.
pub const DURABLE: &str = "gps-delivery";
/// The subjects it reads: every export's events (it acts on requests and retries).
pub const FILTER: &str = "gps.evt.*.export.*";

/// Absolute, signed, expiring URLs of stored objects, for webhook receivers
/// (implemented over the gateway's CDN signing key by the binary).
pub trait SignedUrls: Send + Sync + 'static {
    /// A URL that reads `key` for at least the configured lifetime.
    fn signed_url(&self, key: &ObjectKey) -> String;
}

/// How a delivery worker works.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// This worker's name, for logs.
    pub name: String,
    /// The durable consumer's name.
    pub durable: String,
    /// How long an export may go without a heartbeat before another worker takes it.
    pub ack_wait: Duration,
    /// Exports worked on at once.
    pub max_in_flight: usize,
    /// Renditions formatted at once per export.
    pub parallel_renditions: usize,
    /// The first retry delay after a failed delivery attempt.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_cap: Duration,
    /// Attempts before the export fails (retryable).
    pub max_attempts: u32,
}

impl DeliverySettings {
    /// Defaults: 30 s, doubling to 30 min, 60 attempts — about 26 hours of
    /// retries before an export is failed for a person to look at.
    pub fn new(name: impl Into<String>) -> Self {
        DeliverySettings {
            name: name.into(),
            durable: DURABLE.to_owned(),
            ack_wait: Duration::from_secs(60),
            max_in_flight: 4,
            parallel_renditions: 4,
            retry_base: Duration::from_secs(30),
            retry_cap: Duration::from_secs(30 * 60),
            max_attempts: 60,
        }
    }

    /// The delay after failed attempt `number` (1-based).
    pub fn retry_delay(&self, number: u32) -> Duration {
        let doubled = self.retry_base.saturating_mul(1u32 << number.saturating_sub(1).min(20));
        doubled.min(self.retry_cap)
    }
}

/// What a worker needs.
pub struct DeliveryWorker {
    /// The command path.
    pub commands: CommandHandler,
    /// GPS's object storage (approved images in, renditions and ZIPs out).
    pub store: ObjectStore,
    /// The C2PA signing credentials.
    pub credentials: Arc<ContentCredentials>,
    /// The sealed destination secrets.
    pub secrets: SecretVault,
    /// The SSRF-safe client for webhooks and brand S3 endpoints.
    pub targets: SafeFetcher,
    /// Signed URLs for webhook bodies.
    pub urls: Arc<dyn SignedUrls>,
    /// The settings.
    pub settings: DeliverySettings,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn spec(settings: &DeliverySettings) -> ConsumerSpec {
    ConsumerSpec {
        durable: settings.durable.clone(),
        filter: FILTER.to_owned(),
        ack_wait: settings.ack_wait,
        // The worker decides when to give up (max_attempts); JetStream keeps redelivering.
        max_deliver: -1,
        backoff: Vec::new(),
        max_in_flight: settings.max_in_flight,
        wanted: |message| header(message, "Gps-Event-Type").is_none_or(is_work),
    }
}

/// Runs the worker until `shutdown` resolves; exports in flight are left
/// unacknowledged and go to another worker. Unsupervised health: see [`run_with`].
pub async fn run(
    worker: Arc<DeliveryWorker>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), consume::ConsumeError> {
    run_with(worker, RoleHealth::new("delivery-worker"), shutdown).await
}

/// Runs the worker under supervision (the consume loop is restarted with
/// backoff when its consumer is deleted or its pull fails; `health` says
/// whether it is bound) until `shutdown` resolves. Refuses to start when the
/// compute database (where the delivery secrets live) belongs to another
/// event log.
pub async fn run_with(
    worker: Arc<DeliveryWorker>,
    health: RoleHealth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), consume::ConsumeError> {
    let log = worker.commands.log().clone();
    let store = crate::store::ComputeStore::from_pool(worker.secrets.pool().clone());
    crate::agent::check_log_binding(&log, &store, "compute database (delivery state)").await?;
    tracing::info!(worker = %worker.settings.name, durable = %worker.settings.durable, "delivery worker consuming export events");
    let spec = spec(&worker.settings);
    let name = worker.settings.name.clone();
    let session_health = health.clone();
    supervise::supervise(
        health,
        supervise::Backoff::default(),
        |stop| {
            let (worker, log, spec, health) =
                (worker.clone(), log.clone(), spec.clone(), session_health.clone());
            async move {
                consume::run(
                    &log,
                    &spec,
                    &health,
                    move |message| {
                        let worker = worker.clone();
                        async move { handle(&worker, message).await }
                    },
                    stop,
                )
                .await
            }
        },
        shutdown,
    )
    .await;
    tracing::info!(worker = %name, "delivery worker stopped");
    Ok(())
}

/// Why an export is put back for later.
struct Later {
    reason: String,
    delay: Duration,
}

fn is_work(event_type: &str) -> bool {
    matches!(event_type, "export.requested" | "export.retried")
}

async fn handle(worker: &DeliveryWorker, message: Arc<Message>) {
    let envelope: EventEnvelope = match serde_json::from_slice(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, "undecodable event on the export subjects; skipped");
            ack(&message, AckKind::Term).await;
            return;
        }
    };
    if !is_work(&envelope.event_type) {
        ack(&message, AckKind::Ack).await;
        return;
    }
    let Some(address) = AggregateAddress::from_subject(&message.subject) else {
        ack(&message, AckKind::Term).await;
        return;
    };
    // The consume loop heartbeats the message from its receipt until this returns.
    match work(worker, &address, &envelope).await {
        Ok(()) => ack(&message, AckKind::Ack).await,
        Err(Later { reason, delay }) => {
            tracing::warn!(export = %address, %reason, ?delay, "export put back for later");
            ack(&message, AckKind::Nak(Some(delay))).await;
        }
    }
}

/// A delivery command's metadata. Its id is namespaced by the aggregate kind
/// and the brand: an export id is the client's choice, and the log
/// de-duplicates message ids across the whole stream, so `fail:exp-1:1` of
/// one brand must not be taken for another brand's (or a generation's).
fn meta(envelope: &EventEnvelope, parts: &[&str]) -> CommandMeta {
    let namespaced: Vec<&str> =
        ["export", envelope.brand.as_str()].into_iter().chain(parts.iter().copied()).collect();
    consume::caused_by(envelope, "delivery", &namespaced)
}

fn text(s: &str) -> Text {
    consume::clipped_text(s)
}

/// The deterministic id of the rendition of `prediction` in `export`.
pub fn rendition_id(export: &str, prediction: &PredictionId) -> RenditionId {
    let digest = Sha256::digest(format!("{export}/{prediction}").as_bytes());
    RenditionId::parse(format!("r{}", &hex::encode(digest)[..23]))
        .unwrap_or_else(|_| unreachable!("hex digits are a valid id"))
}

/// What the worker knows about one exported prediction.
#[derive(Debug, Clone)]
struct Source {
    produced: PredictionProduced,
    generation: Option<GenerationRequested>,
    file_name: FileName,
}

impl Source {
    fn products(&self) -> &[ProductSnapshot] {
        self.generation.as_ref().map_or(&[], |g| &g.inputs.products)
    }

    fn skus(&self) -> Vec<String> {
        self.products().iter().map(|p| p.sku.to_string()).collect()
    }
}

/// The file name a naming pattern gives one prediction, with the format's
/// extension (replacing any other the pattern ends in).
pub fn file_name(
    pattern: &str,
    sku: &str,
    view: &str,
    n: u32,
    preset: &str,
    prediction: &str,
    extension: &str,
) -> String {
    let filled = pattern
        .replace("{sku}", sku)
        .replace("{view}", view)
        .replace("{n}", &n.to_string())
        .replace("{preset}", preset)
        .replace("{prediction}", prediction);
    let cleaned: String =
        filled.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '-' } else { c }).collect();
    let stem = match cleaned.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty() && ext.len() <= 5 && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            stem
        }
        _ => cleaned.as_str(),
    };
    let stem = stem.trim_start_matches('.');
    let stem = if stem.is_empty() { prediction } else { stem };
    format!("{stem}.{extension}")
}

/// Gives each name a unique spelling by appending `-2`, `-3`, … to later duplicates.
fn unique(names: Vec<String>) -> Vec<String> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut taken: std::collections::BTreeSet<String> = names.iter().cloned().collect();
    names
        .into_iter()
        .map(|name| {
            let count = seen.entry(name.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                return name;
            }
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
            let mut suffix = *count;
            loop {
                let candidate = format!("{stem}-{suffix}.{ext}");
                if taken.insert(candidate.clone()) {
                    return candidate;
                }
                suffix += 1;
            }
        })
        .collect()
}

enum Stop {
    Fail(String),
    Later(Later),
}

fn later(worker: &DeliveryWorker, reason: impl ToString) -> Stop {
    Stop::Later(Later { reason: reason.to_string(), delay: worker.settings.retry_base })
}

async fn load_sources(worker: &DeliveryWorker, request: &ExportRequested) -> Result<Vec<Source>, Stop> {
    let (_, extension) = format::file_type(request.preset.format).map_err(|e| Stop::Fail(e.to_string()))?;
    let mut generations: BTreeMap<String, Option<GenerationRequested>> = BTreeMap::new();
    let mut loaded = Vec::with_capacity(request.prediction_ids.len());
    for prediction_id in &request.prediction_ids {
        let address = AggregateAddress::new(
            request.brand_id.clone(),
            AggregateKind::Prediction,
            prediction_id.as_str(),
        )
        .map_err(|e| Stop::Fail(e.to_string()))?;
        let prediction = worker.commands.load::<Prediction>(&address).await.map_err(|e| later(worker, e))?;
        let produced = prediction
            .state
            .produced()
            .cloned()
            .ok_or_else(|| Stop::Fail(format!("prediction {prediction_id} has no image in the log")))?;
        let generation_id = produced.generation_id.to_string();
        if !generations.contains_key(&generation_id) {
            let address =
                AggregateAddress::new(request.brand_id.clone(), AggregateKind::Generation, &generation_id)
                    .map_err(|e| Stop::Fail(e.to_string()))?;
            let generation =
                worker.commands.load::<Generation>(&address).await.map_err(|e| later(worker, e))?;
            generations.insert(generation_id.clone(), generation.state.request().cloned());
        }
        loaded.push((produced, generations[&generation_id].clone()));
    }
    let names: Vec<String> = loaded
        .iter()
        .map(|(produced, generation)| {
            let sku = generation
                .as_ref()
                .and_then(|g| g.inputs.products.first())
                .map_or_else(|| produced.prediction_id.to_string(), |p| p.sku.to_string());
            file_name(
                &request.preset.naming_pattern,
                &sku,
                produced.shot_type.as_str(),
                u32::from(produced.variant_index) + 1,
                request.channel.as_str(),
                produced.prediction_id.as_str(),
                extension,
            )
        })
        .collect();
    unique(names)
        .into_iter()
        .zip(loaded)
        .map(|(name, (produced, generation))| {
            let file_name =
                FileName::parse(&name).map_err(|e| Stop::Fail(format!("file name {name:?}: {e}")))?;
            Ok(Source { produced, generation, file_name })
        })
        .collect()
}

fn manifest_facts(request: &ExportRequested, source: &Source) -> ManifestFacts {
    let produced = &source.produced;
    let provenance = &produced.provenance;
    let ingredients = source
        .products()
        .iter()
        .flat_map(|product| {
            product.images.iter().map(move |image| Ingredient {
                title: format!("{} {}", product.sku, image.view),
                media_type: image.asset.media_type.clone(),
                hash: image.asset.hash.to_string(),
            })
        })
        .collect();
    ManifestFacts {
        title: source.file_name.to_string(),
        edits_existing_image: source.generation.as_ref().is_some_and(|g| g.revision.is_some()),
        software_agent: format!("{} / {}", provenance.provider, provenance.model),
        ingredients,
        generation: serde_json::json!({
            "workflow": provenance.workflow.name.as_str(),
            "workflow_version": provenance.workflow.version,
            "provider": provenance.provider.as_str(),
            "model": provenance.model.as_str(),
            // As text: seeds use all 64 bits, and c2pa stores assertion
            // numbers as signed 64-bit integers (it refused seeds ≥ 2^63).
            "seed": provenance.seed.to_string(),
            "generation_id": produced.generation_id.as_str(),
            "prediction_id": produced.prediction_id.as_str(),
            "brand": request.brand_id.as_str(),
            "channel": request.channel.as_str(),
            "export_id": request.export_id.as_str(),
        }),
    }
}

/// Formats, signs, stores and records the rendition of one prediction.
async fn produce(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    request: &ExportRequested,
    source: &Source,
) -> Result<(), Stop> {
    let produced = &source.produced;
    let key = ObjectKey::content(&request.brand_id, &produced.asset.hash);
    let original = match worker.store.get(&key).await {
        Ok(object) => object.body,
        Err(gps_storage::StorageError::NotFound { .. }) => {
            return Err(Stop::Fail(format!(
                "the approved image of prediction {} ({}) is not in storage",
                produced.prediction_id, produced.asset.hash
            )));
        }
        Err(error) => return Err(later(worker, error)),
    };
    let facts = manifest_facts(request, source);
    let credentials = worker.credentials.clone();
    let spec: ChannelPresetSpec = request.preset.clone();
    let formatted = crate::imaging::on_cpu(move || {
        format::render(&original, &spec, |bytes, media_type| {
            credentials.sign(bytes, media_type, &facts).map_err(|e| e.to_string())
        })
    })
    .await
    .map_err(|e| later(worker, e))?
    .map_err(|e| Stop::Fail(format!("prediction {}: {e}", produced.prediction_id)))?;
    let (width, height) = (formatted.width, formatted.height);
    let stored = worker
        .store
        .put(&request.brand_id, Bytes::from(formatted.bytes), formatted.media_type)
        .await
        .map_err(|e| later(worker, e))?;
    let asset = AssetRef {
        hash: stored.hash.clone(),
        media_type: formatted.media_type.to_owned(),
        bytes: stored.bytes,
        width: Some(width),
        height: Some(height),
    };
    let rendition_id = rendition_id(request.export_id.as_str(), &produced.prediction_id);
    let command = ExportCommand::ProduceRendition {
        rendition_id: rendition_id.clone(),
        prediction_id: produced.prediction_id.clone(),
        asset,
        file_name: source.file_name.clone(),
        checksum: stored.hash,
        products: source.products().iter().map(|p| p.product_id.clone()).collect(),
    };
    let meta = meta(envelope, &["rendition", address.id(), produced.prediction_id.as_str()]);
    match worker.commands.execute::<Export>(address, &meta, &command).await {
        Ok(_) => Ok(()),
        // Failed or completed meanwhile; the next look at the export decides.
        Err(CommandError::Rejected { error, .. }) => {
            tracing::info!(export = %address, %error, "rendition not recorded");
            Ok(())
        }
        Err(error) => Err(later(worker, error)),
    }
}

async fn fail(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    attempt: u32,
    reason: &str,
    retryable: bool,
) -> Result<(), Later> {
    let command = ExportCommand::FailExport { reason: text(reason), retryable };
    let meta = meta(envelope, &["fail", address.id(), &attempt.to_string()]);
    match worker.commands.execute::<Export>(address, &meta, &command).await {
        Ok(_) | Err(CommandError::Rejected { .. }) => Ok(()),
        Err(error) => Err(Later { reason: error.to_string(), delay: worker.settings.retry_base }),
    }
}

async fn load_export(worker: &DeliveryWorker, address: &AggregateAddress) -> Result<Export, Later> {
    worker
        .commands
        .load::<Export>(address)
        .await
        .map(|loaded| loaded.state)
        .map_err(|e| Later { reason: e.to_string(), delay: worker.settings.retry_base })
}

async fn work(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
) -> Result<(), Later> {
    let state = load_export(worker, address).await?;
    let (Some(request), Some(ExportStatus::InProgress)) = (state.request().cloned(), state.status()) else {
        return Ok(());
    };
    let attempt = state.attempt();
    // A request whose export was retried since is worked on by the retry's event.
    let current = match envelope.event_type.as_str() {
        "export.retried" => {
            envelope.payload.get("attempt").and_then(|a| a.as_u64()) == Some(u64::from(attempt))
        }
        _ => attempt == 1,
    };
    if !current {
        return Ok(());
    }
    let outcome = async {
        if let Err(problem) = format::check_supported(&request.preset) {
            return Err(Stop::Fail(problem.to_string()));
        }
        let sources = load_sources(worker, &request).await?;
        let produced: Vec<&PredictionId> =
            state.renditions().values().map(|r| &r.produced.prediction_id).collect();
        let missing: Vec<Source> =
            sources.iter().filter(|s| !produced.contains(&&s.produced.prediction_id)).cloned().collect();
        let parallel = worker.settings.parallel_renditions.max(1);
        let request = &request;
        let results: Vec<Result<(), Stop>> = futures::stream::iter(missing)
            .map(|source| async move { produce(worker, address, envelope, request, &source).await })
            .buffer_unordered(parallel)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(sources)
    }
    .await;
    let sources = match outcome {
        Ok(sources) => sources,
        Err(Stop::Fail(reason)) => return fail(worker, address, envelope, attempt, &reason, false).await,
        Err(Stop::Later(later)) => return Err(later),
    };
    deliver(worker, address, envelope, &request, &sources).await
}

async fn deliver(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    request: &ExportRequested,
    sources: &[Source],
) -> Result<(), Later> {
    let state = load_export(worker, address).await?;
    if state.status() != Some(ExportStatus::InProgress) {
        return Ok(());
    }
    let skus: BTreeMap<&PredictionId, Vec<String>> =
        sources.iter().map(|s| (&s.produced.prediction_id, s.skus())).collect();
    // Every rendition, delivered before or not: a ZIP holds them all, and a
    // webhook resumed after a partial marking sends the body (and so the
    // Idempotency-Key) of the first delivery, so the receiver can tell.
    let all: Vec<Delivered<'_>> = state
        .renditions()
        .values()
        .map(|rendition| Delivered {
            rendition,
            skus: skus.get(&rendition.produced.prediction_id).cloned().unwrap_or_default(),
            preset: request.channel.to_string(),
        })
        .collect();
    let pending: Vec<Delivered<'_>> =
        all.iter().filter(|d| d.rendition.delivered_to.is_none()).cloned().collect();
    if !pending.is_empty() {
        let number = state.delivery_attempts() + 1;
        // Renditions an S3 pass left out because a newer export owns their keys.
        let mut superseded: Vec<destinations::Superseded> = Vec::new();
        let result = match &request.destination {
            ExportDestination::ZipDownload => destinations::zip_download(&worker.store, request, &all)
                .await
                .map(|delivered| (delivered, format!("ZIP of {} renditions stored", all.len()))),
            ExportDestination::S3 { bucket, prefix, credentials } => {
                match worker.secrets.get(&request.brand_id, credentials).await {
                    Ok(secret) => {
                        let stamp = export_stamp(worker, address, request).await?;
                        destinations::s3(
                            &worker.store,
                            &worker.targets,
                            request,
                            &stamp,
                            bucket,
                            prefix,
                            &secret,
                            &pending,
                        )
                        .await
                        .map(|outcome| {
                            let count = outcome.delivered.len();
                            let mut detail = format!("{count} objects written to s3://{bucket}/{prefix}");
                            if !outcome.superseded.is_empty() {
                                let reasons: Vec<&str> =
                                    outcome.superseded.iter().map(|s| s.reason.as_str()).collect();
                                detail.push_str(&format!(
                                    "; {} skipped: {}",
                                    reasons.len(),
                                    reasons.join("; ")
                                ));
                            }
                            superseded = outcome.superseded;
                            (outcome.delivered, detail)
                        })
                    }
                    Err(error) => Err(Failure::from(error)),
                }
            }
            ExportDestination::Webhook { url, secret } => {
                match worker.secrets.get(&request.brand_id, secret).await {
                    Ok(value) => {
                        destinations::webhook(
                            &worker.targets,
                            request,
                            url,
                            &value,
                            &all,
                            worker.urls.as_ref(),
                            number,
                        )
                        .await
                    }
                    Err(error) => Err(Failure::from(error)),
                }
            }
        };
        let attempt = state.attempt();
        match result {
            Ok((delivered, detail)) => {
                record_attempt(worker, address, envelope, number, true, &detail, None).await?;
                for (rendition_id, location) in delivered {
                    let Some(rendition) = state.renditions().get(&rendition_id) else { continue };
                    if rendition.delivered_to.is_some() {
                        continue;
                    }
                    let command = ExportCommand::MarkRenditionDelivered {
                        rendition_id: rendition_id.clone(),
                        location,
                        checksum: rendition.produced.checksum.clone(),
                    };
                    let meta = meta(envelope, &["delivered", address.id(), rendition_id.as_str()]);
                    match worker.commands.execute::<Export>(address, &meta, &command).await {
                        Ok(_) | Err(CommandError::Rejected { .. }) => {}
                        Err(error) => {
                            return Err(Later {
                                reason: error.to_string(),
                                delay: worker.settings.retry_base,
                            });
                        }
                    }
                }
                if !superseded.is_empty() {
                    // Nothing more to try: writing would put older content
                    // back; a new export (then the newest) can.
                    let reasons: Vec<String> = superseded
                        .iter()
                        .map(|s| format!("rendition {}: {}", s.rendition_id, s.reason))
                        .collect();
                    let reason = format!(
                        "not delivered: {}. Request a new export to deliver this content again",
                        reasons.join("; ")
                    );
                    return fail(worker, address, envelope, attempt, &reason, false).await;
                }
            }
            Err(failure) if !failure.retryable => {
                record_attempt(worker, address, envelope, number, false, &failure.detail, None).await?;
                return fail(worker, address, envelope, attempt, &failure.detail, false).await;
            }
            Err(failure) if number >= worker.settings.max_attempts => {
                record_attempt(worker, address, envelope, number, false, &failure.detail, None).await?;
                let reason = format!(
                    "the destination failed {number} delivery attempts; the last: {}. Fix the destination and retry the export",
                    failure.detail
                );
                return fail(worker, address, envelope, attempt, &reason, true).await;
            }
            Err(failure) => {
                let delay = worker.settings.retry_delay(number);
                record_attempt(worker, address, envelope, number, false, &failure.detail, Some(delay))
                    .await?;
                return Err(Later { reason: failure.detail, delay });
            }
        }
    }
    let meta = meta(envelope, &["complete", address.id(), &state.attempt().to_string()]);
    match worker.commands.execute::<Export>(address, &meta, &ExportCommand::CompleteExport).await {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected { error, .. }) => {
            tracing::info!(export = %address, %error, "export not completed");
            Ok(())
        }
        Err(error) => Err(Later { reason: error.to_string(), delay: worker.settings.retry_base }),
    }
}

/// Where this export stands among the exports that may write the same keys:
/// the stream sequence of its request, in this log.
async fn export_stamp(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    request: &ExportRequested,
) -> Result<destinations::ExportStamp, Later> {
    let later = |reason: String| Later { reason, delay: worker.settings.retry_base };
    let log = worker.commands.log();
    let events = log.load(address).await.map_err(|e| later(e.to_string()))?.events;
    let order = events
        .iter()
        .find(|e| e.event_type == "export.requested")
        .and_then(|e| e.stream_sequence)
        .ok_or_else(|| later(format!("export {} has no request in the log", request.export_id)))?;
    let identity = log.state().await.map_err(|e| later(e.to_string()))?.identity;
    Ok(destinations::ExportStamp { export_id: request.export_id.to_string(), order, log: identity.token() })
}

async fn record_attempt(
    worker: &DeliveryWorker,
    address: &AggregateAddress,
    envelope: &EventEnvelope,
    number: u32,
    succeeded: bool,
    detail: &str,
    retry_in: Option<Duration>,
) -> Result<(), Later> {
    let command = ExportCommand::RecordDeliveryAttempt {
        number,
        succeeded,
        detail: text(detail),
        retry_in_seconds: retry_in.map(|d| d.as_secs().max(1)),
    };
    let meta = meta(envelope, &["attempt", address.id(), &number.to_string()]);
    let outcome = if succeeded {
        "succeeded"
    } else if retry_in.is_some() {
        "retrying"
    } else {
        "failed"
    };
    gps_nats::metrics::metrics()
        .delivery_attempts
        .get_or_create(&gps_nats::metrics::OutcomeLabels { outcome: outcome.to_owned() })
        .inc();
    match worker.commands.execute::<Export>(address, &meta, &command).await {
        Ok(_) | Err(CommandError::Rejected { .. }) => Ok(()),
        Err(error) => Err(Later { reason: error.to_string(), delay: worker.settings.retry_base }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_command_ids_of_the_same_export_id_in_two_brands_differ_and_never_look_like_an_agents() {
        let event = |brand: &str| EventEnvelope {
            event_id: "e1".into(),
            event_type: "export.requested".into(),
            schema_version: 1,
            brand: brand.into(),
            aggregate_type: "export".into(),
            aggregate_id: "exp-1".into(),
            aggregate_version: 1,
            occurred_at: "2026-12-02T10:00:00Z".into(),
            actor: gps_domain::wire::Actor::System("test".into()),
            command_id: "c1".into(),
            correlation_id: "c1".into(),
            causation_id: "c1".into(),
            prev_hash: gps_domain::wire::GENESIS_HASH.into(),
            hash: String::new(),
            payload: serde_json::Value::Null,
            stream_sequence: None,
        };
        let acme = meta(&event("acme"), &["fail", "exp-1", "1"]).command_id;
        let other = meta(&event("other"), &["fail", "exp-1", "1"]).command_id;
        assert_ne!(acme, other);
        assert_eq!(acme, "export:acme:fail:exp-1:1");
        let agents = crate::agent::command_id(&["fail", "exp-1", "1"]);
        assert_ne!(acme, agents);
    }

    #[test]
    fn a_file_name_fills_the_pattern_and_takes_the_format_extension() {
        assert_eq!(
            file_name("{sku}_{view}_{n}.jpg", "DR-2041", "front", 1, "web-pdp", "p1", "png"),
            "DR-2041_front_1.png"
        );
        assert_eq!(
            file_name("{sku}_{preset}", "DR/1", "front", 2, "web-pdp", "p1", "jpg"),
            "DR-1_web-pdp.jpg"
        );
        assert_eq!(file_name("{prediction}.{n}", "S", "v", 3, "c", "p9", "webp"), "p9.webp");
    }

    #[test]
    fn duplicate_file_names_get_a_counter() {
        assert_eq!(
            unique(vec!["a.jpg".into(), "a.jpg".into(), "a-2.jpg".into(), "b.jpg".into()]),
            ["a.jpg", "a-3.jpg", "a-2.jpg", "b.jpg"]
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let settings = DeliverySettings::new("test");
        let delays: Vec<u64> = (1..=9).map(|n| settings.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        let total: u64 = (1..settings.max_attempts).map(|n| settings.retry_delay(n).as_secs()).sum();
        assert!(total > 24 * 3600, "retries span more than a day: {total} s");
    }

    #[test]
    fn a_rendition_id_is_the_same_for_the_same_export_and_prediction() {
        let p = PredictionId::parse("p1").expect("id");
        assert_eq!(rendition_id("e1", &p), rendition_id("e1", &p));
        assert_ne!(rendition_id("e1", &p), rendition_id("e2", &p));
    }
}
