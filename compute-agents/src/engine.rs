//! The workflow engine: runs one attempt of a generation from its
//! `generation.requested` event alone.
//!
//! Nodes are the workflow's steps, per variant where the step says so. Every
//! node whose needs are done runs at once, so independent steps and the
//! variants of a step run side by side. Each finished node is persisted in the
//! compute database before it is reported, and a remote job is persisted as
//! soon as the provider accepts it: a redelivered generation skips finished
//! nodes, resumes waiting on submitted jobs, and never submits a paid request
//! twice. Cancellation is checked between rounds and while waiting on a remote
//! job, which is then cancelled at the provider.
//!
//! Paid calls: before every provider submission the engine asks the agent
//! ([`RunControl::before_paid_call`]) whether its lease on the generation still
//! holds — a copy that lost it stops without calling ([`RunEnd::LeaseLost`]) —
//! and records the node's intent before a call that is not idempotent. A call
//! whose outcome is unknown (see [`crate::providers`]), or an intent found
//! without an outcome on a redelivery (the agent died between the call and
//! recording its result), marks the node `unknown` and ends the run with
//! [`RunEnd::OutcomeUnknown`]: the generation fails with that reason, and
//! only a person's retry (a new attempt) calls again.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use gps_domain::generation::GenerationRequested;
use gps_domain::ids::BrandId;
use gps_domain::prediction::QualityReport;
use gps_domain::values::{AssetRef, ContentHash, ImageFormat};
use serde_json::json;

use crate::blobs::{self, Blobs};
use crate::providers::{Capability, InputImage, InputRole, Polled, Submitted, Task};
use crate::quality::{self, GateSettings};
use crate::router::{CallGuard, Router};
use crate::store::{CompletedStep, ComputeStore, NodeKey, StoredStep};
use crate::workflow::{StepKind, StepSpec, Workflow, WorkflowSet};

/// What the engine's own steps (analyse, prompt, quality) record as provider.
pub const ENGINE_PROVIDER: &str = "engine";

/// The agent's side of a run: cancellation and reporting to the event log.
pub trait RunControl: Send + Sync {
    /// Whether the generation was cancelled meanwhile (asked while waiting on
    /// a remote job; between levels the reports answer it, see below).
    fn cancelled(&self) -> BoxFuture<'_, bool>;
    /// Checked before every paid provider call: whether this copy of the run
    /// may still call (its lease holds). An error stops the run without
    /// calling. For a call that is not idempotent, `intent` names the node
    /// and the provider, recorded with the check (see the module docs).
    fn before_paid_call<'a>(
        &'a self,
        intent: Option<(&'a NodeKey<'a>, &'a str)>,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Whether the compute store may hold nodes of this attempt from an
    /// earlier copy (false for the first copy ever to run it: nothing to
    /// resume, so the store is not read).
    fn may_resume(&self) -> bool {
        true
    }
    /// Reports nodes that finished together as one append (each named as
    /// [`node_name`] names it, e.g. `generate/2`). `Ok(false)`: the log
    /// refused them because the generation is over (cancelled, or finished
    /// by another copy); the run stops before starting anything else. Every
    /// node starts only after the report of the nodes it needs, so this
    /// report is the cancellation check between levels.
    fn steps_completed<'a>(
        &'a self,
        steps: &'a [(String, CompletedStep)],
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// One variant's output.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantOutput {
    /// Its index, from 0.
    pub index: u8,
    /// The stored image.
    pub asset: AssetRef,
    /// The provider that made the image.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// The seed it was made with.
    pub seed: u64,
    /// The prompt, when one was sent.
    pub prompt: Option<String>,
    /// The quality gate's report, when the workflow has a gate.
    pub quality: Option<QualityReport>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    /// Every node finished.
    Completed(Vec<VariantOutput>),
    /// The generation was cancelled; remote jobs in flight were cancelled.
    Cancelled,
    /// A node failed.
    Failed {
        /// Why, in words a person understands.
        reason: String,
        /// Whether another try may succeed.
        retryable: bool,
    },
    /// A call that is not idempotent may or may not have been done; it is not
    /// repeated without a person's retry.
    OutcomeUnknown {
        /// Which call, and why its outcome is unknown.
        reason: String,
    },
    /// Another copy of the generation took the lease over; this one stopped
    /// without calling.
    LeaseLost {
        /// What the check found.
        reason: String,
    },
}

/// The engine and everything it runs with.
pub struct Engine {
    /// Routing to providers.
    pub router: Arc<Router>,
    /// Object storage.
    pub blobs: Arc<dyn Blobs>,
    /// Step state.
    pub store: ComputeStore,
    /// Known workflows.
    pub workflows: WorkflowSet,
    /// Gate thresholds not set by the shooting's rules.
    pub gate: GateSettings,
    /// How often a remote job is polled.
    pub poll_every: Duration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("router", &self.router).field("gate", &self.gate).finish()
    }
}

type NodeId = (String, i32);

enum NodeFailure {
    Failed { reason: String, retryable: bool },
    Unknown { reason: String },
    Stopped { reason: String },
    Cancelled,
}

impl NodeFailure {
    /// Which failure decides the run when several happen: a cancellation or a
    /// lost lease stops everything, an unknown outcome outranks a failure.
    fn rank(&self) -> u8 {
        match self {
            NodeFailure::Cancelled => 3,
            NodeFailure::Stopped { .. } => 2,
            NodeFailure::Unknown { .. } => 1,
            NodeFailure::Failed { .. } => 0,
        }
    }
}

/// The guard of one node's provider calls: the lease check, and the intent
/// recorded before a call that is not idempotent.
struct NodeGuard<'a> {
    state: &'a RunState<'a>,
    key: NodeKey<'a>,
    called: Mutex<Option<String>>,
}

impl CallGuard for NodeGuard<'_> {
    fn before_call<'a>(&'a self, provider: &'a str, idempotent: bool) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let intent = (!idempotent).then_some((&self.key, provider));
            self.state.control.before_paid_call(intent).await?;
            *self.called.lock().unwrap_or_else(|e| e.into_inner()) = Some(provider.to_owned());
            Ok(())
        })
    }
}

/// Counts a node's end in the metrics: by provider, step and outcome, with
/// the duration and cost of a completed one. (A failed node names no
/// provider: the router may have tried several.)
fn record_node(step: &str, result: &Result<CompletedStep, NodeFailure>) {
    let metrics = gps_nats::metrics::metrics();
    let (provider, outcome) = match result {
        Ok(completed) => (completed.provider.as_str(), "completed"),
        Err(NodeFailure::Failed { .. }) => ("", "failed"),
        Err(NodeFailure::Unknown { .. }) => ("", "outcome_unknown"),
        Err(NodeFailure::Stopped { .. }) => ("", "stopped"),
        Err(NodeFailure::Cancelled) => ("", "cancelled"),
    };
    metrics
        .steps
        .get_or_create(&gps_nats::metrics::StepLabels {
            provider: provider.to_owned(),
            step: step.to_owned(),
            outcome: outcome.to_owned(),
        })
        .inc();
    if let Ok(completed) = result {
        let labels = gps_nats::metrics::ProviderLabels { provider: completed.provider.clone() };
        metrics.step_duration.get_or_create(&labels).observe(completed.duration_ms as f64 / 1000.0);
        metrics.step_cost_micros.get_or_create(&labels).inc_by(completed.cost_micros);
    }
}

fn failed(reason: impl Into<String>, retryable: bool) -> NodeFailure {
    NodeFailure::Failed { reason: reason.into(), retryable }
}

/// The output size for `request`: the long edge at the aspect ratio.
pub fn output_size(request: &GenerationRequested) -> (u32, u32) {
    let long = request.output.long_edge_px;
    let (w, h) =
        (u32::from(request.output.aspect_ratio.width()), u32::from(request.output.aspect_ratio.height()));
    if w >= h {
        (long, ((u64::from(long) * u64::from(h) + u64::from(w) / 2) / u64::from(w)) as u32)
    } else {
        (((u64::from(long) * u64::from(w) + u64::from(h) / 2) / u64::from(h)) as u32, long)
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Webp => "webp",
        ImageFormat::Png | ImageFormat::Avif => "png",
    }
}

/// The prompt for `request` under `workflow`: style, guidelines, subject and
/// shot type in plain words (and the reviewer's feedback for a revision).
pub fn compose_prompt(request: &GenerationRequested, workflow: &Workflow) -> String {
    let inputs = &request.inputs;
    let products = inputs
        .products
        .iter()
        .map(|p| {
            let colour = p.attributes.get("colour").or(p.attributes.get("color"));
            match colour {
                Some(colour) => format!("{} ({colour} {})", p.name, p.category),
                None => format!("{} ({})", p.name, p.category),
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut parts = Vec::new();
    match (workflow.name.as_str(), &request.revision) {
        ("revise", Some(revision)) => {
            parts.push(format!("Revise this image: {}.", revision.feedback));
            for region in &revision.regions {
                parts.push(format!(
                    "In the region at x {:.0}%, y {:.0}% ({:.0}% × {:.0}%): {}.",
                    region.x() * 100.0,
                    region.y() * 100.0,
                    region.width() * 100.0,
                    region.height() * 100.0,
                    region.note()
                ));
            }
            parts.push(format!("Keep the garments exactly as they are: {products}."));
        }
        ("video", _) => {
            parts.push(format!("A short, calm clip of this image: subtle natural motion, the garments ({products}) unchanged."));
        }
        _ => {
            let who = match &inputs.subject {
                Some(subject) => match &subject.description {
                    Some(description) => format!("{} ({description}) wearing", subject.name),
                    None => format!("{} wearing", subject.name),
                },
                None => "showing".to_owned(),
            };
            parts.push(format!("{} photo, {} shot: {who} {products}.", workflow.name, request.shot_type));
        }
    }
    if let Some(style) = &inputs.style {
        for (label, value) in
            [("Background", &style.background), ("Lighting", &style.lighting), ("Mood", &style.mood)]
        {
            if let Some(value) = value {
                parts.push(format!("{label}: {value}."));
            }
        }
        parts.extend(style.prompt_fragments.iter().map(|f| format!("{f}.")));
        parts.extend(style.do_guidelines.iter().map(|g| format!("Do: {g}.")));
        parts.extend(style.dont_guidelines.iter().map(|g| format!("Don't: {g}.")));
    }
    parts.extend(inputs.look_guidelines.iter().map(|g| format!("{g}.")));
    parts.join(" ")
}

fn background(request: &GenerationRequested) -> Option<[u8; 3]> {
    let colour = request.inputs.style.as_ref()?.background_colour.as_ref()?;
    let hex = colour.as_str().strip_prefix('#')?;
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

struct RunState<'a> {
    engine: &'a Engine,
    request: &'a GenerationRequested,
    workflow: &'a Workflow,
    attempt: u32,
    control: &'a dyn RunControl,
    cache: Mutex<HashMap<ContentHash, Bytes>>,
}

impl RunState<'_> {
    fn brand(&self) -> &BrandId {
        &self.request.brand_id
    }

    fn key<'k>(&'k self, step: &'k str, variant: i32) -> NodeKey<'k> {
        NodeKey {
            brand: &self.request.brand_id,
            generation: &self.request.generation_id,
            attempt: self.attempt,
            step,
            variant,
        }
    }

    async fn bytes(&self, hash: &ContentHash) -> Result<Bytes, NodeFailure> {
        if let Some(bytes) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(hash) {
            return Ok(bytes.clone());
        }
        let bytes = self
            .engine
            .blobs
            .get(self.brand(), hash)
            .await
            .map_err(|e| failed(e.to_string(), e.retryable))?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(hash.clone(), bytes.clone());
        Ok(bytes)
    }

    async fn input(&self, role: InputRole, asset: &AssetRef) -> Result<InputImage, NodeFailure> {
        Ok(InputImage {
            role,
            hash: asset.hash.clone(),
            media_type: asset.media_type.clone(),
            bytes: self.bytes(&asset.hash).await?,
        })
    }

    /// The result of the nearest need of `spec` (for `variant`) of one of `kinds`.
    fn need_result<'d>(
        &self,
        spec: &StepSpec,
        variant: i32,
        done: &'d BTreeMap<NodeId, CompletedStep>,
        kinds: &[StepKind],
    ) -> Option<&'d CompletedStep> {
        spec.needs.iter().rev().find_map(|need| {
            let need_spec = self.workflow.step(need)?;
            if !kinds.contains(&need_spec.kind) {
                return None;
            }
            let v = if need_spec.per_variant { variant } else { -1 };
            done.get(&(need.clone(), v))
        })
    }

    /// Any finished node of kind `kind` (for `variant`, or whole).
    fn kind_result<'d>(
        &self,
        kind: StepKind,
        variant: i32,
        done: &'d BTreeMap<NodeId, CompletedStep>,
    ) -> Option<&'d CompletedStep> {
        self.workflow.steps.iter().filter(|s| s.kind == kind).find_map(|s| {
            let v = if s.per_variant { variant } else { -1 };
            done.get(&(s.id.clone(), v))
        })
    }

    async fn run_node(
        &self,
        spec: &StepSpec,
        variant: i32,
        done: &BTreeMap<NodeId, CompletedStep>,
        stored: Option<StoredStep>,
    ) -> Result<CompletedStep, NodeFailure> {
        let started = Instant::now();
        let engine_step = |model: &str, result: serde_json::Value| CompletedStep {
            provider: ENGINE_PROVIDER.to_owned(),
            model: model.to_owned(),
            result,
            cost_micros: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            tries: 1,
        };
        match spec.kind {
            StepKind::Analyse => {
                let mut colours: Vec<[u8; 3]> = Vec::new();
                for product in &self.request.inputs.products {
                    let Some(image) = product.images.first() else { continue };
                    let bytes = self.bytes(&image.asset.hash).await?;
                    let found = crate::imaging::on_cpu(move || {
                        crate::imaging::decode(&bytes).map(|image| quality::dominant_colours(&image, 2))
                    })
                    .await
                    .map_err(|e| failed(format!("analysis stopped: {e}"), true))?
                    .map_err(|e| {
                        failed(format!("product {} image {}: {e}", product.sku, image.asset.hash), false)
                    })?;
                    colours.extend(found);
                }
                Ok(engine_step("dominant-colours-v1", json!({ "colours": colours })))
            }
            StepKind::Prompt => Ok(engine_step(
                "prompt-template-v1",
                json!({ "prompt": compose_prompt(self.request, self.workflow) }),
            )),
            StepKind::Generate | StepKind::Enhance => {
                self.provider_node(spec, variant, done, stored, started).await
            }
            StepKind::Quality => {
                let image = self
                    .need_result(spec, variant, done, &[StepKind::Generate, StepKind::Enhance])
                    .and_then(|r| serde_json::from_value::<AssetRef>(r.result["asset"].clone()).ok())
                    .ok_or_else(|| {
                        failed(
                            format!("step {} has no image to check; it must need an image step", spec.id),
                            false,
                        )
                    })?;
                let colours: Vec<[u8; 3]> = self
                    .kind_result(StepKind::Analyse, variant, done)
                    .and_then(|r| serde_json::from_value(r.result["colours"].clone()).ok())
                    .unwrap_or_default();
                let bytes = self.bytes(&image.hash).await?;
                let gates = self.request.quality_gates.clone();
                let mut settings = self.engine.gate;
                if let Some(min) = gates.as_ref().and_then(|g| g.min_long_edge_px) {
                    settings.min_long_edge_px = min;
                }
                let automatic = gates.as_ref().is_none_or(|g| g.require_automatic_checks);
                let report = crate::imaging::on_cpu(move || {
                    let image = crate::imaging::decode(&bytes)?;
                    let mut report =
                        quality::assess(&image, if automatic { &colours } else { &[] }, &settings);
                    if !automatic {
                        report.checks.retain(|c| c.check.as_str() == "resolution");
                        report.passed = report.checks.iter().all(|c| c.passed);
                    }
                    Ok::<_, crate::imaging::ImagingError>(report)
                })
                .await
                .map_err(|e| failed(format!("quality gate stopped: {e}"), true))?
                .map_err(|e| {
                    failed(format!("the image of step {} cannot be checked: {e}", spec.id), false)
                })?;
                Ok(engine_step("quality-gate-v1", json!({ "report": report })))
            }
        }
    }

    async fn task(
        &self,
        spec: &StepSpec,
        variant: i32,
        done: &BTreeMap<NodeId, CompletedStep>,
    ) -> Result<Task, NodeFailure> {
        let capability = spec.capability.unwrap_or(Capability::Generate);
        let (width, height) = output_size(self.request);
        let prompt = self
            .kind_result(StepKind::Prompt, variant, done)
            .and_then(|r| r.result["prompt"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut images = Vec::new();
        let previous = self
            .need_result(spec, variant, done, &[StepKind::Generate, StepKind::Enhance])
            .and_then(|r| serde_json::from_value::<AssetRef>(r.result["asset"].clone()).ok());
        match (spec.kind, capability, previous) {
            (_, _, Some(previous)) => images.push(self.input(InputRole::Source, &previous).await?),
            (_, Capability::Edit | Capability::Video | Capability::Enhance, None) => {
                let revision = self.request.revision.as_ref().ok_or_else(|| {
                    failed(
                        format!(
                            "workflow {} needs the image to work on; the request names none",
                            self.workflow.name
                        ),
                        false,
                    )
                })?;
                images.push(self.input(InputRole::Source, &revision.parent_asset).await?);
            }
            _ => {}
        }
        if capability == Capability::Generate || capability == Capability::Edit {
            for product in &self.request.inputs.products {
                if let Some(image) = product.images.first() {
                    images.push(self.input(InputRole::Product, &image.asset).await?);
                }
            }
        }
        if capability == Capability::Generate {
            if let Some(subject) = &self.request.inputs.subject
                && let Some(image) = subject.images.first()
            {
                images.push(self.input(InputRole::Subject, &image.asset).await?);
            }
            if let Some(style) = &self.request.inputs.style {
                for reference in style.reference_images.iter().take(2) {
                    images.push(self.input(InputRole::Reference, reference).await?);
                }
            }
        }
        Ok(Task {
            capability,
            prompt,
            seed: self.request.seed.wrapping_add(u64::try_from(variant.max(0)).unwrap_or(0)),
            width,
            height,
            aspect_ratio: self.request.output.aspect_ratio.to_string(),
            background: background(self.request),
            images,
            idempotency_key: format!(
                "{}/{}/{}/{}",
                self.request.brand_id,
                self.request.generation_id,
                self.attempt,
                node_name(&spec.id, variant)
            ),
        })
    }

    async fn provider_node(
        &self,
        spec: &StepSpec,
        variant: i32,
        done: &BTreeMap<NodeId, CompletedStep>,
        stored: Option<StoredStep>,
        started: Instant,
    ) -> Result<CompletedStep, NodeFailure> {
        let router = &self.engine.router;
        let task = self.task(spec, variant, done).await?;
        let key = self.key(&spec.id, variant);
        let (provider, model, tries, job) = match stored {
            Some(StoredStep::Submitted { provider, model, job, tries }) => {
                tracing::info!(generation = %self.request.generation_id, step = %spec.id, variant, %provider,
                    "resuming a submitted remote job instead of submitting again");
                (provider, model, u32::try_from(tries).unwrap_or(1), Some(job))
            }
            Some(StoredStep::Intent { provider }) => {
                let reason = format!(
                    "outcome unknown: step {} was sent to {provider}, and the agent stopped before its answer \
                     was recorded; it is not sent again automatically — retry the generation to run it again",
                    node_name(&spec.id, variant)
                );
                let _ = self.engine.store.record_unknown(&key, &provider, &reason).await;
                return Err(NodeFailure::Unknown { reason });
            }
            Some(StoredStep::Unknown { reason, .. }) => return Err(NodeFailure::Unknown { reason }),
            _ => {
                let guard = NodeGuard { state: self, key: key.clone(), called: Mutex::new(None) };
                let routed = match router.submit(&task, &guard).await {
                    Ok(routed) => routed,
                    Err(error) if error.stopped => {
                        return Err(NodeFailure::Stopped { reason: error.message });
                    }
                    Err(error) if error.outcome_unknown => {
                        let provider = guard.called.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let provider = provider.unwrap_or_default();
                        let reason = format!("step {}: {}", node_name(&spec.id, variant), error.message);
                        if let Err(problem) = self.engine.store.record_unknown(&key, &provider, &reason).await
                        {
                            tracing::error!(%problem, "the unknown outcome could not be recorded; the intent stays");
                        }
                        return Err(NodeFailure::Unknown { reason });
                    }
                    Err(error) => {
                        // Known not done (refused, or answered with an error):
                        // a later delivery may call again.
                        if let Err(problem) = self.engine.store.forget_intent(&key).await {
                            tracing::warn!(%problem, "a stale intent stays; a redelivery will report an unknown outcome");
                        }
                        return Err(failed(error.message, error.retryable));
                    }
                };
                match routed.value {
                    Submitted::Done(output) => {
                        return self
                            .finish(spec, variant, &task, &routed.provider, routed.tries, output, started)
                            .await;
                    }
                    Submitted::Pending(job) => {
                        // The job is recorded before anyone waits for it. Should the
                        // store fail now, this copy still waits on the job it holds;
                        // the intent row keeps a redelivery from submitting again.
                        if let Err(problem) = self
                            .engine
                            .store
                            .record_submitted(&key, &routed.provider, &routed.model, &job, routed.tries)
                            .await
                        {
                            tracing::error!(%problem, generation = %self.request.generation_id, step = %spec.id,
                                "the submitted job could not be recorded; waiting on it without resubmitting");
                        }
                        (routed.provider, routed.model, routed.tries, Some(job))
                    }
                }
            }
        };
        let Some(job) = job else { unreachable!("a pending submission always has a job") };
        let _ = model;
        loop {
            if self.control.cancelled().await {
                if let Err(error) = router.cancel(&provider, &job).await {
                    tracing::warn!(%error, "cancelling the remote job failed; it may still run at the provider");
                }
                return Err(NodeFailure::Cancelled);
            }
            match router.poll(&provider, &job).await {
                Ok(Polled::Pending) => tokio::time::sleep(self.engine.poll_every).await,
                Ok(Polled::Done(output)) => {
                    return self.finish(spec, variant, &task, &provider, tries, output, started).await;
                }
                Err(error) => {
                    if !error.retryable {
                        // The job can never finish; a later attempt may submit anew.
                        let _ = self.engine.store.forget_submitted(&key).await;
                    }
                    return Err(failed(error.message, error.retryable));
                }
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one private call site; a struct would only rename the arguments"
    )]
    async fn finish(
        &self,
        spec: &StepSpec,
        variant: i32,
        task: &Task,
        provider: &str,
        tries: u32,
        output: crate::providers::Output,
        started: Instant,
    ) -> Result<CompletedStep, NodeFailure> {
        // Only images and videos are results, judged by their bytes: anything
        // else a provider returns (an error page, a script) is never stored,
        // so the CDN can never serve it from GPS's origin.
        let Some(sniffed) = crate::imaging::sniffed_media_type(&output.bytes) else {
            return Err(failed(
                format!(
                    "{provider} returned content that is not an image or a video (it said {}); nothing was stored",
                    output.media_type
                ),
                false,
            ));
        };
        let output = crate::providers::Output { media_type: sniffed.to_owned(), ..output };
        // Re-encode images into the requested format when the provider gave
        // another one (videos are stored as they are).
        let wanted = format_name(self.request.output.format);
        // A clip (an animated WebP from the local provider) keeps its own format:
        // re-encoding would keep only its first frame.
        let (bytes, media_type) = if output.media_type.starts_with("image/")
            && spec.capability != Some(Capability::Video)
            && output.media_type != format!("image/{wanted}")
        {
            let bytes = output.bytes.clone();
            let wanted = wanted.to_owned();
            match crate::imaging::on_cpu(move || {
                crate::imaging::decode(&bytes).and_then(|image| crate::imaging::encode(&image, &wanted))
            })
            .await
            {
                Ok(Ok((bytes, media_type))) => (bytes, media_type.to_owned()),
                Ok(Err(error)) => {
                    return Err(failed(format!("{provider} returned an unreadable image: {error}"), true));
                }
                Err(error) => return Err(failed(format!("image worker stopped: {error}"), true)),
            }
        } else {
            (output.bytes.clone(), output.media_type.clone())
        };
        let asset = blobs::store(self.engine.blobs.as_ref(), self.brand(), bytes.clone(), &media_type)
            .await
            .map_err(|e| failed(e.to_string(), e.retryable))?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(asset.hash.clone(), bytes);
        let _ = variant;
        Ok(CompletedStep {
            provider: provider.to_owned(),
            model: output.model.clone(),
            result: json!({
                "asset": asset,
                "seed": output.seed.unwrap_or(task.seed),
                "prompt": (!task.prompt.is_empty()).then(|| task.prompt.clone()),
                "capability": spec.capability,
            }),
            cost_micros: self.engine.router.cost(provider, output.usage_units),
            duration_ms: started.elapsed().as_millis() as u64,
            tries,
        })
    }
}

/// The name a node is reported under: the step id, `/variant` for per-variant steps.
pub fn node_name(step: &str, variant: i32) -> String {
    if variant < 0 { step.to_owned() } else { format!("{step}/{variant}") }
}

impl Engine {
    /// Runs (or resumes) attempt `attempt` of `request`.
    pub async fn run(&self, request: &GenerationRequested, attempt: u32, control: &dyn RunControl) -> RunEnd {
        let workflow = match self.workflows.get(request.workflow.name.as_str(), request.workflow.version) {
            Ok(workflow) => workflow,
            Err(error) => return RunEnd::Failed { reason: error.to_string(), retryable: false },
        };
        let stored = if control.may_resume() {
            match self.store.steps(&request.brand_id, &request.generation_id, attempt).await {
                Ok(stored) => stored,
                Err(error) => return RunEnd::Failed { reason: error.to_string(), retryable: true },
            }
        } else {
            Vec::new()
        };
        let state =
            RunState { engine: self, request, workflow, attempt, control, cache: Mutex::new(HashMap::new()) };
        let mut done: BTreeMap<NodeId, CompletedStep> = BTreeMap::new();
        let mut submitted: BTreeMap<NodeId, StoredStep> = BTreeMap::new();
        for (id, step) in stored {
            match step {
                StoredStep::Completed(completed) => {
                    done.insert(id, completed);
                }
                submitted_step => {
                    submitted.insert(id, submitted_step);
                }
            }
        }
        if !done.is_empty() {
            // Reported again: the report is idempotent, and the agent that
            // finished these nodes may have died before reporting them.
            let reports: Vec<(String, CompletedStep)> =
                done.iter().map(|(id, completed)| (node_name(&id.0, id.1), completed.clone())).collect();
            match control.steps_completed(&reports).await {
                Ok(true) => {}
                Ok(false) => return RunEnd::Cancelled,
                Err(error) => return RunEnd::Failed { reason: error, retryable: true },
            }
        }
        let variants = i32::from(request.variants);
        let nodes: Vec<(&StepSpec, i32)> = workflow
            .steps
            .iter()
            .flat_map(|spec| {
                let range = if spec.per_variant { 0..variants } else { -1..0 };
                range.map(move |v| (spec, v))
            })
            .collect();
        let deps_done = |spec: &StepSpec, variant: i32, done: &BTreeMap<NodeId, CompletedStep>| {
            spec.needs.iter().all(|need| {
                let per_variant = workflow.step(need).is_some_and(|s| s.per_variant);
                done.contains_key(&(need.clone(), if per_variant { variant } else { -1 }))
            })
        };
        type NodeFuture<'f> =
            Pin<Box<dyn Future<Output = (NodeId, Result<CompletedStep, NodeFailure>)> + Send + 'f>>;
        let mut running: FuturesUnordered<NodeFuture<'_>> = FuturesUnordered::new();
        let mut started: std::collections::BTreeSet<NodeId> = done.keys().cloned().collect();
        let mut failure: Option<NodeFailure> = None;
        loop {
            if failure.is_none() {
                let ready: Vec<(&StepSpec, i32)> = nodes
                    .iter()
                    .filter(|(spec, v)| {
                        !started.contains(&(spec.id.clone(), *v)) && deps_done(spec, *v, &done)
                    })
                    .copied()
                    .collect();
                for (spec, variant) in ready {
                    let id: NodeId = (spec.id.clone(), variant);
                    started.insert(id.clone());
                    let snapshot = done.clone();
                    let stored = submitted.remove(&id);
                    let state = &state;
                    running.push(Box::pin(async move {
                        let result = state.run_node(spec, variant, &snapshot, stored).await;
                        record_node(&spec.id, &result);
                        (id, result)
                    }));
                }
            }
            let Some(first) = running.next().await else { break };
            // Nodes that finished together are recorded and reported together.
            let mut finished = vec![first];
            while let Some(Some(more)) = running.next().now_or_never() {
                finished.push(more);
            }
            let mut completed: Vec<(NodeId, CompletedStep)> = Vec::new();
            for (id, result) in finished {
                match result {
                    Ok(step) => completed.push((id, step)),
                    Err(error) => {
                        // The first failure of the highest rank decides; nodes already
                        // running finish so their paid results are kept for reuse.
                        if failure.as_ref().is_none_or(|f| error.rank() > f.rank()) {
                            failure = Some(error);
                        }
                    }
                }
            }
            if completed.is_empty() {
                continue;
            }
            let nodes: Vec<(&str, i32, &CompletedStep)> =
                completed.iter().map(|(id, step)| (id.0.as_str(), id.1, step)).collect();
            if let Err(error) =
                self.store.record_completed(&request.brand_id, &request.generation_id, attempt, &nodes).await
            {
                failure.get_or_insert(failed(error.to_string(), true));
                continue;
            }
            let reports: Vec<(String, CompletedStep)> =
                completed.iter().map(|(id, step)| (node_name(&id.0, id.1), step.clone())).collect();
            match control.steps_completed(&reports).await {
                Ok(true) => done.extend(completed),
                Ok(false) => failure = Some(NodeFailure::Cancelled),
                Err(error) => {
                    failure.get_or_insert(failed(error, true));
                }
            }
        }
        match failure {
            Some(NodeFailure::Cancelled) => return RunEnd::Cancelled,
            Some(NodeFailure::Stopped { reason }) => return RunEnd::LeaseLost { reason },
            Some(NodeFailure::Unknown { reason }) => return RunEnd::OutcomeUnknown { reason },
            Some(NodeFailure::Failed { reason, retryable }) => return RunEnd::Failed { reason, retryable },
            None => {}
        }
        let mut outputs = Vec::new();
        for variant in 0..variants {
            let image_step = workflow
                .steps
                .iter()
                .rev()
                .find(|s| s.per_variant && matches!(s.kind, StepKind::Generate | StepKind::Enhance));
            let generate_step = workflow.steps.iter().find(|s| s.per_variant && s.kind == StepKind::Generate);
            let quality_step = workflow.steps.iter().find(|s| s.per_variant && s.kind == StepKind::Quality);
            let (Some(image_step), Some(generate_step)) = (image_step, generate_step) else {
                return RunEnd::Failed {
                    reason: format!("workflow {} makes no image", workflow.name),
                    retryable: false,
                };
            };
            let image = &done[&(image_step.id.clone(), variant)];
            let generated = &done[&(generate_step.id.clone(), variant)];
            let Ok(asset) = serde_json::from_value::<AssetRef>(image.result["asset"].clone()) else {
                return RunEnd::Failed {
                    reason: format!("step {} recorded no image", image_step.id),
                    retryable: false,
                };
            };
            let quality = quality_step
                .and_then(|q| done.get(&(q.id.clone(), variant)))
                .and_then(|q| serde_json::from_value::<QualityReport>(q.result["report"].clone()).ok());
            outputs.push(VariantOutput {
                index: u8::try_from(variant).unwrap_or(u8::MAX),
                asset,
                provider: generated.provider.clone(),
                model: generated.model.clone(),
                seed: generated.result["seed"].as_u64().unwrap_or(request.seed),
                prompt: generated.result["prompt"].as_str().map(str::to_owned),
                quality,
            });
        }
        RunEnd::Completed(outputs)
    }
}
