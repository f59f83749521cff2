//! Process managers: events that turn into commands.
//!
//! - A launched shooting requests one generation per look × shot type, with the
//!   shooting's variants, output and quality gates, and a complete snapshot of
//!   the look's products, subject and style loaded from their aggregates, so the
//!   compute side needs nothing but the request.
//! - A revision request on a prediction requests a new generation of the
//!   `revise` workflow, linked to the parent prediction, with the reviewer's
//!   feedback and regions.
//! - A cancelled launch cancels each of that launch's generations that has not
//!   finished; the compute agents see the cancellation and stop (and cancel the
//!   remote request where the provider allows).
//!
//! Generation ids, seeds and command ids are derived from the triggering facts
//! (brand, shooting, launch, look, shot type; or the revised prediction), so
//! processing an event twice requests nothing twice. A durable consumer
//! (`gps-process-managers`) delivers the events; an event is acknowledged once
//! its commands are on the log.
//!
//! The consume loop pulls only as many events as it has free slots (no
//! prefetch), heartbeats each one it holds (a guard aborts the heartbeat when
//! the work ends, panics included), and never terminates an event it cannot
//! read: an undecodable event, or one whose aggregate holds an event this
//! build cannot decode, is parked — negatively acknowledged with a long delay
//! ([`PARK_DELAY`]) — so it is read again after an upgrade. [`run_session`]
//! ends with an error when the consumer is deleted or a pull fails; the
//! binary runs it under a supervisor that binds again and reports readiness.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gps_domain::generation::{
    Generation, GenerationCommand, GenerationInputs, GenerationRequested, GenerationStatus,
    ProductImageSnapshot, ProductSnapshot, RevisionInput, StyleSnapshot, SubjectImageSnapshot,
    SubjectSnapshot,
};
use gps_domain::ids::{
    BrandId, GenerationId, LookId, PredictionId, ProductId, ShootingId, StyleId, SubjectId,
};
use gps_domain::look::Look;
use gps_domain::prediction::{Prediction, PredictionRevisionRequested};
use gps_domain::product::Product;
use gps_domain::shooting::{
    Shooting, ShootingLaunchCancelled, ShootingLaunched, ShootingStatus, ShootingView,
};
use gps_domain::style::{GuidelineKind, Style};
use gps_domain::subject::Subject;
use gps_domain::values::{Name, ShotType, Text, WorkflowName, WorkflowRef};
use gps_domain::wire::{Actor, EventEnvelope};
use gps_domain::{Aggregate, AggregateKind};
use gps_nats::AggregateAddress;
use sha2::{Digest, Sha256};

use crate::{CommandError, CommandHandler, CommandMeta};

/// The durable consumer of the process managers.
pub const DURABLE: &str = "gps-process-managers";

/// The event types [`react`] acts on; the consumer acknowledges every other
/// event from the headers alone, without decoding it.
const REACTS_TO: &[&str] =
    &["shooting.launched", "shooting.launch_cancelled", "prediction.revision_requested"];

/// What a process manager did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// The event needs nothing.
    Ignored,
    /// Generations were requested (or had been, by an earlier delivery).
    Requested(Vec<GenerationId>),
    /// Some generations could not be requested; the reasons say why.
    Refused(Vec<String>),
    /// These generations were cancelled (those already finished are left as they are).
    Cancelled(Vec<GenerationId>),
}

fn digest(parts: &[&str]) -> [u8; 32] {
    Sha256::digest(parts.join("/").as_bytes()).into()
}

fn derived_id(prefix: &str, digest: &[u8; 32]) -> String {
    format!("{prefix}{}", &hex_string(digest)[..23])
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seed(digest: &[u8; 32]) -> u64 {
    u64::from_be_bytes(digest[24..32].try_into().unwrap_or([0; 8]))
}

/// The generation requested for `look` × `shot_type` at launch `launch` of a shooting.
pub fn launch_generation_id(
    brand: &BrandId,
    shooting: &ShootingId,
    launch: u32,
    look: &LookId,
    shot_type: &ShotType,
) -> GenerationId {
    let d =
        digest(&[brand.as_str(), shooting.as_str(), &launch.to_string(), look.as_str(), shot_type.as_str()]);
    GenerationId::parse(derived_id("g", &d)).unwrap_or_else(|_| unreachable!("hex digits are a valid id"))
}

/// The generation requested by the revision of `prediction`.
pub fn revision_generation_id(brand: &BrandId, prediction: &PredictionId) -> GenerationId {
    let d = digest(&[brand.as_str(), prediction.as_str(), "revision"]);
    GenerationId::parse(derived_id("r", &d)).unwrap_or_else(|_| unreachable!("hex digits are a valid id"))
}

fn text(s: String) -> Option<Text> {
    Text::parse(s).ok()
}

fn name_of<T: serde::Serialize>(value: &T) -> Option<Name> {
    serde_json::to_value(value).ok()?.as_str().and_then(|s| Name::parse(s).ok())
}

async fn load<A: Aggregate>(handler: &CommandHandler, brand: &BrandId, id: &str) -> Result<A, CommandError> {
    let address = CommandHandler::address::<A>(brand, id)?;
    Ok(handler.load::<A>(&address).await?.state)
}

fn meta(envelope: &EventEnvelope, command_id: String) -> CommandMeta {
    let mut meta = CommandMeta::new(command_id, Actor::System("process-manager".into()));
    meta.correlation_id = envelope.correlation_id.clone();
    meta.causation_id = envelope.event_id.clone();
    meta
}

/// Reacts to one stored event. Safe to call again with the same event.
pub async fn react(handler: &CommandHandler, envelope: &EventEnvelope) -> Result<Reaction, CommandError> {
    let Ok(brand) = BrandId::parse(&envelope.brand) else { return Ok(Reaction::Ignored) };
    match envelope.event_type.as_str() {
        "shooting.launched" => {
            let launched: ShootingLaunched = match serde_json::from_value(envelope.payload.clone()) {
                Ok(launched) => launched,
                Err(error) => {
                    return Err(CommandError::Invalid(format!("shooting.launched payload: {error}")));
                }
            };
            let shooting_id = ShootingId::parse(&envelope.aggregate_id)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            launch(handler, envelope, &brand, &shooting_id, &launched).await
        }
        "shooting.launch_cancelled" => {
            let cancelled: ShootingLaunchCancelled = match serde_json::from_value(envelope.payload.clone()) {
                Ok(cancelled) => cancelled,
                Err(error) => {
                    return Err(CommandError::Invalid(format!("shooting.launch_cancelled payload: {error}")));
                }
            };
            let shooting_id = ShootingId::parse(&envelope.aggregate_id)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            cancel_launch(handler, envelope, &brand, &shooting_id, &cancelled).await
        }
        "prediction.revision_requested" => {
            let requested: PredictionRevisionRequested =
                match serde_json::from_value(envelope.payload.clone()) {
                    Ok(requested) => requested,
                    Err(error) => {
                        return Err(CommandError::Invalid(format!(
                            "prediction.revision_requested payload: {error}"
                        )));
                    }
                };
            let prediction_id = PredictionId::parse(&envelope.aggregate_id)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            revise(handler, envelope, &brand, &prediction_id, requested).await
        }
        _ => Ok(Reaction::Ignored),
    }
}

async fn inputs_for(
    handler: &CommandHandler,
    brand: &BrandId,
    look: &Look,
    shooting: &ShootingView,
) -> Result<Result<GenerationInputs, String>, CommandError> {
    let Some(details) = look.details.as_ref() else {
        return Ok(Err("the look does not exist".into()));
    };
    let mut products = Vec::new();
    for product_id in &details.products {
        let product: Product = load(handler, brand, product_id.as_str()).await?;
        let Some(created) = product.details else {
            return Ok(Err(format!("product {product_id} does not exist")));
        };
        products.push(ProductSnapshot {
            product_id: ProductId::clone(product_id),
            sku: created.sku,
            name: created.name,
            category: created.category,
            attributes: created.attributes,
            images: product
                .images
                .values()
                .filter_map(|i| {
                    Some(ProductImageSnapshot { asset: i.asset.clone(), view: name_of(&i.view)? })
                })
                .collect(),
        });
    }
    let subject = match look.effective_subject(shooting) {
        Some(subject_id) => {
            let subject: Subject = load(handler, brand, subject_id.as_str()).await?;
            subject.details.map(|created| SubjectSnapshot {
                subject_id: SubjectId::clone(&subject_id),
                name: created.name,
                description: Some(created.description),
                images: subject
                    .base_images
                    .values()
                    .map(|i| SubjectImageSnapshot {
                        asset: i.asset.clone(),
                        pose: name_of(&i.pose),
                        angle: name_of(&i.angle),
                    })
                    .collect(),
            })
        }
        None => None,
    };
    let style = match look.effective_style(shooting) {
        Some(style_id) => {
            let style: Style = load(handler, brand, style_id.as_str()).await?;
            style.details.as_ref().map(|created| {
                let definition = &created.definition;
                let guidelines = |kind: GuidelineKind| {
                    definition
                        .guidelines
                        .iter()
                        .filter(|g| g.kind == kind)
                        .map(|g| g.text.clone())
                        .collect::<Vec<_>>()
                };
                let mut donts = guidelines(GuidelineKind::Dont);
                donts.extend(definition.negative_prompt.iter().cloned());
                StyleSnapshot {
                    style_id: StyleId::clone(&style_id),
                    version: created.version,
                    name: created.name.clone(),
                    background: Some(definition.background.clone()),
                    background_colour: definition.background_colour.clone(),
                    lighting: Some(definition.lighting.clone()),
                    mood: Some(definition.mood.clone()),
                    prompt_fragments: definition.positive_prompt.clone(),
                    reference_images: definition.reference_images.clone(),
                    do_guidelines: guidelines(GuidelineKind::Do),
                    dont_guidelines: donts,
                }
            })
        }
        None => None,
    };
    let mut look_guidelines = details.guidelines.dos.clone();
    look_guidelines.extend(details.guidelines.donts.iter().filter_map(|d| text(format!("Avoid: {d}"))));
    Ok(Ok(GenerationInputs { products, subject, style, look_guidelines }))
}

async fn launch(
    handler: &CommandHandler,
    envelope: &EventEnvelope,
    brand: &BrandId,
    shooting_id: &ShootingId,
    launched: &ShootingLaunched,
) -> Result<Reaction, CommandError> {
    let shooting: Shooting = load(handler, brand, shooting_id.as_str()).await?;
    let Some(view) = shooting.view() else { return Ok(Reaction::Ignored) };
    // Reacting late (a backlog, a redelivery): when this launch was cancelled,
    // reopened or superseded meanwhile, its generations are no longer wanted.
    if view.status != ShootingStatus::Launched || view.launch_number != launched.launch_number {
        return Ok(Reaction::Ignored);
    }
    let mut requested = Vec::new();
    let mut refused = Vec::new();
    for launched_look in &launched.looks {
        let look: Look = load(handler, brand, launched_look.look_id.as_str()).await?;
        let inputs = match inputs_for(handler, brand, &look, &view).await? {
            Ok(inputs) => inputs,
            Err(reason) => {
                refused.push(format!("look {}: {reason}", launched_look.look_id));
                continue;
            }
        };
        for shot_type in &launched_look.shot_types {
            let d = digest(&[
                brand.as_str(),
                shooting_id.as_str(),
                &launched.launch_number.to_string(),
                launched_look.look_id.as_str(),
                shot_type.as_str(),
            ]);
            let generation_id = launch_generation_id(
                brand,
                shooting_id,
                launched.launch_number,
                &launched_look.look_id,
                shot_type,
            );
            let workflow = if inputs.subject.is_some() { "on-model" } else { "lifestyle" };
            let request = GenerationRequested {
                generation_id: generation_id.clone(),
                brand_id: brand.clone(),
                shooting_id: shooting_id.clone(),
                look_id: launched_look.look_id.clone(),
                shot_type: shot_type.clone(),
                variants: view.rules.variants_per_shot,
                workflow: WorkflowRef {
                    name: WorkflowName::parse(workflow).unwrap_or_else(|_| unreachable!("a valid literal")),
                    version: 1,
                },
                seed: seed(&d),
                output: view.defaults.output.clone(),
                inputs: inputs.clone(),
                revision: None,
                quality_gates: Some(view.rules.quality_gates.clone()),
            };
            let meta = meta(envelope, format!("request:{generation_id}"));
            match request_generation(handler, &meta, brand, request).await? {
                Ok(()) => requested.push(generation_id),
                Err(reason) => {
                    refused.push(format!("look {} × {shot_type}: {reason}", launched_look.look_id))
                }
            }
        }
    }
    // The process managers handle events concurrently, so the launch may have
    // been cancelled while these requests were made, after the cancellation's
    // own reaction looked for them: look again and stop what this reaction started.
    let now: Shooting = load(handler, brand, shooting_id.as_str()).await?;
    if now
        .view()
        .is_none_or(|v| v.status != ShootingStatus::Launched || v.launch_number != launched.launch_number)
    {
        let reason = format!("shooting {shooting_id} launch {} was cancelled", launched.launch_number);
        let stopped = cancel_generations(handler, envelope, brand, requested, &reason).await?;
        return Ok(Reaction::Cancelled(stopped));
    }
    if refused.is_empty() { Ok(Reaction::Requested(requested)) } else { Ok(Reaction::Refused(refused)) }
}

async fn cancel_launch(
    handler: &CommandHandler,
    envelope: &EventEnvelope,
    brand: &BrandId,
    shooting_id: &ShootingId,
    cancelled: &ShootingLaunchCancelled,
) -> Result<Reaction, CommandError> {
    let reason = match &cancelled.reason {
        Some(reason) => {
            format!("shooting {shooting_id} launch {} was cancelled: {reason}", cancelled.launch_number)
        }
        None => format!("shooting {shooting_id} launch {} was cancelled", cancelled.launch_number),
    };
    let ids = cancelled.looks.iter().flat_map(|look| {
        look.shot_types.iter().map(|shot_type| {
            launch_generation_id(brand, shooting_id, cancelled.launch_number, &look.look_id, shot_type)
        })
    });
    let stopped = cancel_generations(handler, envelope, brand, ids.collect(), &reason).await?;
    Ok(Reaction::Cancelled(stopped))
}

/// Cancels each of `ids` that is waiting or running; returns those it cancelled.
async fn cancel_generations(
    handler: &CommandHandler,
    envelope: &EventEnvelope,
    brand: &BrandId,
    ids: Vec<GenerationId>,
    reason: &str,
) -> Result<Vec<GenerationId>, CommandError> {
    let mut stopped = Vec::new();
    for generation_id in ids {
        let address = AggregateAddress::new(brand.clone(), AggregateKind::Generation, generation_id.as_str())
            .map_err(|e| CommandError::Invalid(e.to_string()))?;
        let generation: Generation = handler.load::<Generation>(&address).await?.state;
        // Never requested (the launch refused that look) or already finished:
        // nothing to stop.
        if !matches!(generation.status(), Some(GenerationStatus::Requested | GenerationStatus::Running)) {
            continue;
        }
        let meta = meta(envelope, format!("cancel:{generation_id}"));
        let command = GenerationCommand::CancelGeneration {
            cancelled_by: envelope.actor.clone(),
            reason: text(reason.to_owned()),
        };
        match handler.execute::<Generation>(&address, &meta, &command).await {
            Ok(_) => stopped.push(generation_id),
            // It finished between the load and the command: leave it.
            Err(CommandError::Rejected { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(stopped)
}

async fn request_generation(
    handler: &CommandHandler,
    meta: &CommandMeta,
    brand: &BrandId,
    request: GenerationRequested,
) -> Result<Result<(), String>, CommandError> {
    let address =
        AggregateAddress::new(brand.clone(), AggregateKind::Generation, request.generation_id.as_str())
            .map_err(|e| CommandError::Invalid(e.to_string()))?;
    match handler.execute::<Generation>(&address, meta, &GenerationCommand::RequestGeneration(request)).await
    {
        Ok(_) => Ok(Ok(())),
        // Requested by an earlier delivery under the same id: nothing to do.
        Err(CommandError::Rejected { error: gps_domain::DomainError::AlreadyExists { .. }, .. }) => {
            Ok(Ok(()))
        }
        Err(CommandError::Rejected { error, .. }) => Ok(Err(error.to_string())),
        Err(error) => Err(error),
    }
}

async fn revise(
    handler: &CommandHandler,
    envelope: &EventEnvelope,
    brand: &BrandId,
    prediction_id: &PredictionId,
    requested: PredictionRevisionRequested,
) -> Result<Reaction, CommandError> {
    let follow_up = FollowUp::Revision { feedback: requested.comment, regions: requested.regions };
    let base = meta(envelope, String::new());
    match request_follow_up(handler, &base, brand, prediction_id, follow_up).await? {
        Ok(generation_id) => Ok(Reaction::Requested(vec![generation_id])),
        Err(reason) => Ok(Reaction::Refused(vec![reason])),
    }
}

/// The generation that animates the approved `prediction` into a short clip.
pub fn video_generation_id(brand: &BrandId, prediction: &PredictionId) -> GenerationId {
    let d = digest(&[brand.as_str(), prediction.as_str(), "video"]);
    GenerationId::parse(derived_id("v", &d)).unwrap_or_else(|_| unreachable!("hex digits are a valid id"))
}

/// Work derived from one produced prediction, with its parent's inputs.
#[derive(Debug, Clone)]
pub enum FollowUp {
    /// The `revise` workflow: edit the prediction with a reviewer's feedback.
    Revision {
        /// What to change.
        feedback: Text,
        /// Where, on the image.
        regions: Vec<gps_domain::prediction::RegionAnnotation>,
    },
    /// The `video` workflow: a short clip of the (approved) prediction.
    Video,
}

/// Requests the generation `follow_up` derives from `prediction_id`, linked to
/// it as parent, with an id derived from the prediction (so asking twice
/// requests once). `base` supplies the actor and correlation; the command id
/// is derived. Returns the generation id, or why it cannot be requested.
pub async fn request_follow_up(
    handler: &CommandHandler,
    base: &CommandMeta,
    brand: &BrandId,
    prediction_id: &PredictionId,
    follow_up: FollowUp,
) -> Result<Result<GenerationId, String>, CommandError> {
    let prediction: Prediction = load(handler, brand, prediction_id.as_str()).await?;
    let Some(produced) = prediction.produced() else {
        return Ok(Err(format!("prediction {prediction_id} does not exist")));
    };
    let parent: Generation = load(handler, brand, produced.generation_id.as_str()).await?;
    let Some(parent_request) = parent.request() else {
        return Ok(Err(format!(
            "the generation {} of prediction {prediction_id} is not in the log",
            produced.generation_id
        )));
    };
    let (generation_id, workflow, feedback, regions, quality_gates, variants) = match follow_up {
        FollowUp::Revision { feedback, regions } => (
            revision_generation_id(brand, prediction_id),
            "revise",
            feedback,
            regions,
            parent_request.quality_gates.clone(),
            parent_request.variants,
        ),
        FollowUp::Video => (
            video_generation_id(brand, prediction_id),
            "video",
            Text::parse("Animate the approved image into a short clip")
                .unwrap_or_else(|_| unreachable!("a valid literal")),
            Vec::new(),
            // A clip is reviewed by eye; one clip per approved image.
            None,
            1,
        ),
    };
    let d = digest(&[brand.as_str(), prediction_id.as_str(), workflow]);
    let request = GenerationRequested {
        generation_id: generation_id.clone(),
        brand_id: brand.clone(),
        shooting_id: parent_request.shooting_id.clone(),
        look_id: produced.look_id.clone(),
        shot_type: produced.shot_type.clone(),
        variants,
        workflow: WorkflowRef {
            name: WorkflowName::parse(workflow).unwrap_or_else(|_| unreachable!("a valid literal")),
            version: 1,
        },
        seed: seed(&d),
        output: parent_request.output.clone(),
        inputs: parent_request.inputs.clone(),
        revision: Some(RevisionInput {
            parent_prediction_id: prediction_id.clone(),
            parent_asset: produced.asset.clone(),
            feedback,
            regions,
        }),
        quality_gates,
    };
    let mut meta = base.clone();
    meta.command_id = format!("request:{generation_id}");
    Ok(request_generation(handler, &meta, brand, request).await?.map(|()| generation_id))
}

/// How long an event the process managers cannot read waits before it is
/// delivered again (after an upgrade, it is read).
pub const PARK_DELAY: Duration = Duration::from_secs(3600);

/// Events worked on at once.
const SLOTS: usize = 16;

/// How long one pull waits for events.
const PULL_EXPIRY: Duration = Duration::from_secs(1);

/// The process managers' ack wait: a held event is heartbeaten every third of it.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A task aborted when dropped (the heartbeat of one held event).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the process managers on their durable consumer until `shutdown`.
pub async fn run(
    handler: CommandHandler,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CommandError> {
    run_session(handler, || {}, shutdown).await
}

/// One session of the process managers: binds the durable consumer, calls
/// `bound`, and works until `shutdown` (then `Ok`) or until the consumer
/// fails — deleted, a pull refused, no longer answering (then `Err`, for a
/// supervisor to start another session).
pub async fn run_session(
    handler: CommandHandler,
    bound: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), CommandError> {
    let unavailable = |e: String| CommandError::Unavailable(e);
    let mut consumer = handler
        .log()
        .durable_consumer(DURABLE, vec!["gps.evt.*.shooting.*".into(), "gps.evt.*.prediction.*".into()], 0)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    bound();
    let handler = Arc::new(handler);
    let limit = Arc::new(tokio::sync::Semaphore::new(SLOTS));
    let mut idle_since = std::time::Instant::now();
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            () = &mut shutdown => return Ok(()),
            permit = limit.clone().acquire_owned() => permit.map_err(|e| unavailable(e.to_string()))?,
        };
        let mut permits = vec![first];
        while let Ok(permit) = limit.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let mut batch = tokio::select! {
            () = &mut shutdown => return Ok(()),
            batch = consumer.batch().max_messages(permits.len()).expires(PULL_EXPIRY).messages() => {
                batch.map_err(|e| unavailable(format!("process managers: pull request failed: {e}")))?
            }
        };
        let mut received = false;
        loop {
            let next = tokio::select! {
                () = &mut shutdown => return Ok(()),
                next = batch.next() => next,
            };
            let message = match next {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    return Err(unavailable(format!("process managers: pull failed: {error}")));
                }
            };
            received = true;
            let interesting = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Gps-Event-Type"))
                .is_none_or(|t| REACTS_TO.contains(&t.as_str()));
            if !interesting {
                let _ = message.ack().await;
                continue;
            }
            let Some(permit) = permits.pop() else {
                let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(None)).await;
                continue;
            };
            let message = Arc::new(message);
            let heartbeat = {
                let message = message.clone();
                AbortOnDrop(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(ACK_WAIT / 3).await;
                        let _ = message.ack_with(async_nats::jetstream::AckKind::Progress).await;
                    }
                }))
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _heartbeat = heartbeat;
                let _permit = permit;
                handle(&handler, &message).await;
            });
        }
        drop(permits);
        if received {
            idle_since = std::time::Instant::now();
        } else if idle_since.elapsed() >= Duration::from_secs(5) {
            consumer
                .info()
                .await
                .map_err(|e| unavailable(format!("process managers: the consumer no longer answers: {e}")))?;
            idle_since = std::time::Instant::now();
        }
    }
}

async fn park(message: &async_nats::jetstream::Message) {
    let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(Some(PARK_DELAY))).await;
}

async fn handle(handler: &CommandHandler, message: &async_nats::jetstream::Message) {
    let envelope: EventEnvelope = match serde_json::from_slice(&message.payload) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(%error, subject = %message.subject, delay = ?PARK_DELAY,
                "undecodable event; parked by the process managers until a build that reads it");
            park(message).await;
            return;
        }
    };
    match react(handler, &envelope).await {
        Ok(Reaction::Refused(reasons)) => {
            tracing::warn!(event = %envelope.event_type, ?reasons, "some generations could not be requested");
            let _ = message.ack().await;
        }
        Ok(_) => {
            let _ = message.ack().await;
        }
        Err(error @ (CommandError::Unavailable(_) | CommandError::Conflict { .. })) => {
            tracing::warn!(%error, "process manager will retry the event");
            let _ = message.ack_with(async_nats::jetstream::AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
        // Unreadable here (a payload or a stored event this build cannot
        // decode): parked, read again later.
        Err(error @ (CommandError::Invalid(_) | CommandError::Corrupt { .. })) => {
            tracing::error!(%error, event = %envelope.event_type, delay = ?PARK_DELAY,
                "process manager cannot read what the event needs; parked");
            park(message).await;
        }
        Err(error) => {
            tracing::error!(%error, event = %envelope.event_type, "process manager cannot act on the event; skipped");
            let _ = message.ack_with(async_nats::jetstream::AckKind::Term).await;
        }
    }
}
