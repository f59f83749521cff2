//! The Generation aggregate: one run of a workflow for a look × shot type.
//!
//! Its first event, `generation.requested`, carries a complete snapshot of the
//! inputs — products with their image hashes, subject, style, look guidelines,
//! shot type, output spec, workflow version and seed, and for a revision the
//! parent prediction's image and the reviewer's feedback — so the compute side
//! runs (and reruns) a generation from that event alone and reads no business
//! read model. The snapshot types are defined here on purpose, apart from the
//! Product, Subject and Style aggregates: an event must keep meaning what it
//! meant when it was recorded, whatever those aggregates become later.
//!
//! Lifecycle: requested → running → completed | failed | cancelled.
//! - A failed generation whose failure is retryable may be retried; that starts a
//!   new attempt with the same inputs (back to requested). Completed and cancelled
//!   are final, and a cancelled generation produces nothing more.
//! - Starting a running generation again under another agent records the takeover:
//!   the shared consumer redelivers a crashed agent's work to another agent.
//! - The Prediction aggregate does not load this one; the command path passes
//!   [`Generation::status`] in with `ProducePrediction`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, GenerationId, LookId, PredictionId, ProductId, ShootingId, StyleId, SubjectId};
use crate::prediction::{RegionAnnotation, check_regions};
use crate::shooting::QualityGates;
use crate::values::{
    AssetRef, Category, Colour, ContentHash, CostMicros, Name, OutputSpec, ShotType, Sku, Text, WorkflowRef,
};
use crate::wire::Actor;
use crate::{Aggregate, AggregateKind, DomainError};

/// The most variants one generation makes.
pub const MAX_VARIANTS: u8 = 8;
/// The most products one generation shows (one look's outfit).
pub const MAX_PRODUCTS: usize = 20;

/// Where a generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GenerationStatus {
    /// Waiting for a compute agent (also after a retry).
    Requested,
    /// A compute agent is running its workflow.
    Running,
    /// Done; its predictions are recorded.
    Completed,
    /// Stopped by an error; see whether it is retryable.
    Failed,
    /// Stopped by a person or a process; it produces nothing more.
    Cancelled,
}

impl GenerationStatus {
    /// The status in words, for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            GenerationStatus::Requested => "requested",
            GenerationStatus::Running => "running",
            GenerationStatus::Completed => "completed",
            GenerationStatus::Failed => "failed",
            GenerationStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for GenerationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One product image as the generation sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductImageSnapshot {
    /// The stored image.
    pub asset: AssetRef,
    /// Which view it shows, e.g. `front`, `back`, `detail`, `flat_lay`.
    pub view: Name,
}

/// A product as it was when the generation was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductSnapshot {
    /// The product's id.
    pub product_id: ProductId,
    /// The brand's SKU.
    pub sku: Sku,
    /// Display name.
    pub name: Name,
    /// Category slug.
    pub category: Category,
    /// Free attributes (colour, material, fit…).
    pub attributes: BTreeMap<String, String>,
    /// Its images; at least one.
    pub images: Vec<ProductImageSnapshot>,
}

/// One base image of the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectImageSnapshot {
    /// The stored image.
    pub asset: AssetRef,
    /// The pose, e.g. `standing`, `walking`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<Name>,
    /// The camera angle, e.g. `front`, `three-quarter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub angle: Option<Name>,
}

/// The virtual model as it was when the generation was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectSnapshot {
    /// The subject's id.
    pub subject_id: SubjectId,
    /// Display name.
    pub name: Name,
    /// How the subject looks, in words the prompt step can use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
    /// Base images; at least one.
    pub images: Vec<SubjectImageSnapshot>,
}

/// A style as it was (at the version used) when the generation was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StyleSnapshot {
    /// The style's id.
    pub style_id: StyleId,
    /// The style version used (each revision of a style is a version).
    pub version: u32,
    /// Display name.
    pub name: Name,
    /// The background, e.g. `seamless warm grey paper`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<Text>,
    /// The background colour, when the style asks for a solid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_colour: Option<Colour>,
    /// The lighting, e.g. `soft daylight from the left`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lighting: Option<Text>,
    /// The mood, e.g. `calm, editorial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mood: Option<Text>,
    /// Prompt fragments added to every prompt of this style.
    pub prompt_fragments: Vec<Text>,
    /// Reference images of the style.
    pub reference_images: Vec<AssetRef>,
    /// What the images should do.
    pub do_guidelines: Vec<Text>,
    /// What the images must not do.
    pub dont_guidelines: Vec<Text>,
}

/// Everything a workflow reads besides the output spec, seed and shot type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationInputs {
    /// The products of the look; at least one.
    pub products: Vec<ProductSnapshot>,
    /// The model wearing them; absent for shots without a model (flat lay, still life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectSnapshot>,
    /// The style; absent when the look has none and the workflow's defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<StyleSnapshot>,
    /// The look's own guidelines.
    pub look_guidelines: Vec<Text>,
}

/// What makes a generation a revision of an earlier prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RevisionInput {
    /// The prediction being revised.
    pub parent_prediction_id: PredictionId,
    /// Its image: the revise workflow edits it, so the event carries it too.
    pub parent_asset: AssetRef,
    /// The reviewer's feedback.
    pub feedback: Text,
    /// The regions the reviewer marked, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionAnnotation>,
}

/// Generation commands.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "commands are built once and passed by reference; boxing the big variant buys nothing"
)]
pub enum GenerationCommand {
    /// Requests a generation with its complete input snapshot, recorded as given.
    RequestGeneration(GenerationRequested),
    /// A compute agent takes the generation on.
    StartGeneration {
        /// The agent, e.g. `agent-7f3c@host-2`.
        agent: Name,
    },
    /// A compute agent reports one finished workflow step.
    CompleteStep {
        /// The step, e.g. `analyse`, `prompt`, `generate`, `enhance`.
        step: Name,
        /// The provider adapter used, e.g. `fal`, `local`.
        provider: Name,
        /// The provider's model.
        model: Name,
        /// How long the step took, in milliseconds.
        duration_ms: u64,
        /// What the step cost.
        cost: CostMicros,
        /// Which try of the step succeeded (1 = the first).
        attempt: u32,
    },
    /// A compute agent reports several finished workflow steps at once (the
    /// steps of one DAG level that finished together), recorded as one
    /// append. Each is judged as [`GenerationCommand::CompleteStep`] judges
    /// one: a report already recorded is a redelivery and adds nothing.
    CompleteSteps {
        /// The finished steps, in the order they are recorded.
        steps: Vec<GenerationStepCompleted>,
    },
    /// A compute agent reports the generation done, with what it produced.
    CompleteGeneration {
        /// The predictions produced, one per variant that succeeded.
        prediction_ids: Vec<PredictionId>,
    },
    /// A compute agent reports the generation failed.
    FailGeneration {
        /// What went wrong, in words a brand's content team understands.
        reason: Text,
        /// Whether trying again may succeed (a timeout, a rate limit) or not (a
        /// refused prompt, an unsupported input).
        retryable: bool,
    },
    /// Stops the generation; it produces nothing more.
    CancelGeneration {
        /// Who cancelled it.
        cancelled_by: Actor,
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
    /// Runs a failed, retryable generation again with the same inputs.
    RetryGeneration {
        /// The new attempt's number: the current attempt plus one. Carrying it
        /// makes a repeated retry of the same failure record nothing.
        attempt: u32,
    },
}

/// A generation was requested. This event alone is enough to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationRequested {
    /// The generation's id.
    pub generation_id: GenerationId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// The shooting it belongs to.
    pub shooting_id: ShootingId,
    /// The look it shows.
    pub look_id: LookId,
    /// The shot type it makes.
    pub shot_type: ShotType,
    /// How many variants to make (1..=8).
    pub variants: u8,
    /// The workflow and version to run.
    pub workflow: WorkflowRef,
    /// The seed, so the run can be repeated.
    pub seed: u64,
    /// What to output.
    pub output: OutputSpec,
    /// The input snapshot.
    pub inputs: GenerationInputs,
    /// Present when this generation revises an earlier prediction. The video
    /// workflow reads the image it animates from here too (its parent is the
    /// approved prediction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionInput>,
    /// The shooting's quality gates at request time; absent in requests
    /// recorded before gates travelled with the request (the agent's defaults
    /// apply then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_gates: Option<QualityGates>,
}

impl GenerationRequested {
    /// The content hash of every input asset, in a stable order without
    /// duplicates: products, subject, style references, then the revised image.
    /// This is what a prediction's provenance lists.
    pub fn input_hashes(&self) -> Vec<ContentHash> {
        let inputs = &self.inputs;
        let products = inputs.products.iter().flat_map(|p| p.images.iter().map(|i| &i.asset.hash));
        let subject = inputs.subject.iter().flat_map(|s| s.images.iter().map(|i| &i.asset.hash));
        let style = inputs.style.iter().flat_map(|s| s.reference_images.iter().map(|a| &a.hash));
        let parent = self.revision.iter().map(|r| &r.parent_asset.hash);
        let mut hashes: Vec<ContentHash> = Vec::new();
        for hash in products.chain(subject).chain(style).chain(parent) {
            if !hashes.contains(hash) {
                hashes.push(hash.clone());
            }
        }
        hashes
    }
}

/// A compute agent took the generation on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationStarted {
    /// The agent.
    pub agent: Name,
    /// The attempt it runs (1 for the first, +1 per retry).
    pub attempt: u32,
}

/// One workflow step finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationStepCompleted {
    /// The step.
    pub step: Name,
    /// The provider adapter used.
    pub provider: Name,
    /// The provider's model.
    pub model: Name,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// What it cost.
    pub cost: CostMicros,
    /// Which try of the step succeeded (1 = the first).
    pub attempt: u32,
}

/// The generation is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationCompleted {
    /// The predictions it produced.
    pub prediction_ids: Vec<PredictionId>,
}

/// The generation failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationFailed {
    /// What went wrong, in words a person understands.
    pub reason: Text,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// The attempt that failed.
    pub attempt: u32,
}

/// The generation was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationCancelled {
    /// Who cancelled it.
    pub cancelled_by: Actor,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// A failed generation was retried: a new attempt with the same inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerationRetried {
    /// The new attempt's number.
    pub attempt: u32,
}

crate::domain_events! {
    aggregate: Generation,
    /// Generation events.
    #[expect(
        clippy::large_enum_variant,
        reason = "an aggregate's history is short; boxing the first payload would break the From impls for no gain"
    )]
    pub enum GenerationEvent {
        /// See [`GenerationRequested`].
        Requested(GenerationRequested) = ("generation.requested", 1),
        /// See [`GenerationStarted`].
        Started(GenerationStarted) = ("generation.started", 1),
        /// See [`GenerationStepCompleted`].
        StepCompleted(GenerationStepCompleted) = ("generation.step_completed", 1),
        /// See [`GenerationCompleted`].
        Completed(GenerationCompleted) = ("generation.completed", 1),
        /// See [`GenerationFailed`].
        Failed(GenerationFailed) = ("generation.failed", 1),
        /// See [`GenerationCancelled`].
        Cancelled(GenerationCancelled) = ("generation.cancelled", 1),
        /// See [`GenerationRetried`].
        Retried(GenerationRetried) = ("generation.retried", 1),
    }
}

/// The state of a generation, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Generation {
    request: Option<GenerationRequested>,
    status: Option<GenerationStatus>,
    attempt: u32,
    agent: Option<Name>,
    steps: Vec<GenerationStepCompleted>,
    total_cost: CostMicros,
    predictions: Vec<PredictionId>,
    failure: Option<GenerationFailed>,
}

impl Generation {
    /// The status, or `None` if the generation was never requested.
    pub fn status(&self) -> Option<GenerationStatus> {
        self.status
    }

    /// The request with its input snapshot, once requested.
    pub fn request(&self) -> Option<&GenerationRequested> {
        self.request.as_ref()
    }

    /// The current attempt (1 for the first; 0 before the request).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The agent running the current attempt.
    pub fn agent(&self) -> Option<&Name> {
        self.agent.as_ref()
    }

    /// The steps completed in the current attempt, in order.
    pub fn steps(&self) -> &[GenerationStepCompleted] {
        &self.steps
    }

    /// What every step of every attempt cost together.
    pub fn total_cost(&self) -> CostMicros {
        self.total_cost
    }

    /// The predictions of a completed generation.
    pub fn predictions(&self) -> &[PredictionId] {
        &self.predictions
    }

    /// The last failure, while the generation is failed.
    pub fn failure(&self) -> Option<&GenerationFailed> {
        self.failure.as_ref()
    }

    fn existing(&self) -> Result<(&GenerationRequested, GenerationStatus), DomainError> {
        match (&self.request, self.status) {
            (Some(request), Some(status)) => Ok((request, status)),
            _ => Err(DomainError::NotFound { kind: AggregateKind::Generation }),
        }
    }

    /// Why a generation that is over (completed, failed or cancelled) refuses
    /// `action`, and what to do instead.
    fn over(&self, id: &GenerationId, status: GenerationStatus, action: &str) -> DomainError {
        DomainError::invalid_state(match (status, &self.failure) {
            (GenerationStatus::Completed, _) => format!(
                "generation {id} is already completed, so it cannot {action}; request a new generation for more variants"
            ),
            (GenerationStatus::Cancelled, _) => format!(
                "generation {id} was cancelled and produces nothing more, so it cannot {action}; request a new generation instead"
            ),
            (_, Some(failure)) if failure.retryable => {
                format!("generation {id} failed ({}), so it cannot {action}; retry it first", failure.reason)
            }
            (_, Some(failure)) => format!(
                "generation {id} failed ({}) and cannot be retried, so it cannot {action}; request a new generation instead",
                failure.reason
            ),
            (status, None) => format!("generation {id} is {status}, so it cannot {action}"),
        })
    }

    /// The events of reporting `steps`: one per report not recorded yet.
    fn step_reports(&self, steps: &[GenerationStepCompleted]) -> Result<Vec<GenerationEvent>, DomainError> {
        use GenerationStatus::{Cancelled, Completed, Failed, Requested, Running};
        let (request, status) = self.existing()?;
        let id = &request.generation_id;
        match status {
            Running => {}
            Requested => {
                return Err(DomainError::invalid_state(format!(
                    "generation {id} has not started; start it before reporting its steps"
                )));
            }
            Completed | Failed | Cancelled => return Err(self.over(id, status, "complete a step")),
        }
        if let Some(zero) = steps.iter().find(|s| s.attempt == 0) {
            return Err(DomainError::rule(format!(
                "step {} of generation {id} reports try 0; tries count from 1",
                zero.step
            )));
        }
        // The same report twice is a redelivery. A different report of the
        // same step is a real rerun that was paid for, so it is recorded.
        let mut events: Vec<GenerationEvent> = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            if !self.steps.contains(step) && !steps[..index].contains(step) {
                events.push(step.clone().into());
            }
        }
        Ok(events)
    }
}

fn check_request(request: &GenerationRequested) -> Result<(), DomainError> {
    let id = &request.generation_id;
    if !(1..=MAX_VARIANTS).contains(&request.variants) {
        return Err(DomainError::rule(format!(
            "a generation makes 1 to {MAX_VARIANTS} variants; {} were asked for — request several generations for more",
            request.variants
        )));
    }
    if request.workflow.version == 0 {
        return Err(DomainError::rule(format!(
            "workflow {} has no version 0; versions start at 1",
            request.workflow.name
        )));
    }
    let products = &request.inputs.products;
    if products.is_empty() {
        return Err(DomainError::rule(format!(
            "generation {id} has no product; add products to look {} before generating",
            request.look_id
        )));
    }
    if products.len() > MAX_PRODUCTS {
        return Err(DomainError::rule(format!(
            "a generation shows at most {MAX_PRODUCTS} products; look {} gives {}",
            request.look_id,
            products.len()
        )));
    }
    for (index, product) in products.iter().enumerate() {
        if products[..index].iter().any(|earlier| earlier.product_id == product.product_id) {
            return Err(DomainError::rule(format!(
                "product {} is listed twice in generation {id}; list each product once",
                product.product_id
            )));
        }
        if product.images.is_empty() {
            return Err(DomainError::rule(format!(
                "product {} ({}) has no image; upload one before generating",
                product.product_id, product.sku
            )));
        }
    }
    if let Some(subject) = &request.inputs.subject
        && subject.images.is_empty()
    {
        return Err(DomainError::rule(format!(
            "subject {} has no base image; upload one before generating with it",
            subject.subject_id
        )));
    }
    if let Some(revision) = &request.revision {
        check_regions(&revision.regions)?;
    }
    Ok(())
}

impl Aggregate for Generation {
    const KIND: AggregateKind = AggregateKind::Generation;
    const STATE_VERSION: u32 = 1;
    type Command = GenerationCommand;
    type Event = GenerationEvent;

    fn decide(&self, command: &GenerationCommand) -> Result<Vec<GenerationEvent>, DomainError> {
        use GenerationStatus::{Cancelled, Completed, Failed, Requested, Running};
        match command {
            GenerationCommand::RequestGeneration(request) => {
                if self.request.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Generation,
                        id: request.generation_id.to_string(),
                    });
                }
                check_request(request)?;
                Ok(vec![request.clone().into()])
            }
            GenerationCommand::StartGeneration { agent } => {
                let (request, status) = self.existing()?;
                match status {
                    Requested => {
                        Ok(vec![GenerationStarted { agent: agent.clone(), attempt: self.attempt }.into()])
                    }
                    // The same agent starting again is a redelivery; another agent
                    // starting a running generation takes over a crashed agent's work.
                    Running if self.agent.as_ref() == Some(agent) => Ok(vec![]),
                    Running => {
                        Ok(vec![GenerationStarted { agent: agent.clone(), attempt: self.attempt }.into()])
                    }
                    Completed | Failed | Cancelled => Err(self.over(&request.generation_id, status, "start")),
                }
            }
            GenerationCommand::CompleteStep { step, provider, model, duration_ms, cost, attempt } => self
                .step_reports(&[GenerationStepCompleted {
                    step: step.clone(),
                    provider: provider.clone(),
                    model: model.clone(),
                    duration_ms: *duration_ms,
                    cost: *cost,
                    attempt: *attempt,
                }]),
            GenerationCommand::CompleteSteps { steps } => self.step_reports(steps),
            GenerationCommand::CompleteGeneration { prediction_ids } => {
                let (request, status) = self.existing()?;
                let id = &request.generation_id;
                match status {
                    Running => {}
                    Completed if self.predictions == *prediction_ids => return Ok(vec![]),
                    Completed => {
                        return Err(DomainError::invalid_state(format!(
                            "generation {id} is already completed with other predictions; request a new generation for more variants"
                        )));
                    }
                    Requested => {
                        return Err(DomainError::invalid_state(format!(
                            "generation {id} has not started; start it before completing it"
                        )));
                    }
                    Failed | Cancelled => return Err(self.over(id, status, "complete")),
                }
                if prediction_ids.is_empty() {
                    return Err(DomainError::rule(format!(
                        "generation {id} produced no prediction; fail it with the reason instead of completing it"
                    )));
                }
                if prediction_ids.len() > usize::from(request.variants) {
                    return Err(DomainError::rule(format!(
                        "generation {id} makes {} variants but {} predictions were reported",
                        request.variants,
                        prediction_ids.len()
                    )));
                }
                if let Some(twice) =
                    prediction_ids.iter().enumerate().find(|(i, p)| prediction_ids[..*i].contains(p))
                {
                    return Err(DomainError::rule(format!(
                        "prediction {} is reported twice for generation {id}; report each prediction once",
                        twice.1
                    )));
                }
                Ok(vec![GenerationCompleted { prediction_ids: prediction_ids.clone() }.into()])
            }
            GenerationCommand::FailGeneration { reason, retryable } => {
                let (request, status) = self.existing()?;
                match status {
                    Requested | Running => Ok(vec![
                        GenerationFailed {
                            reason: reason.clone(),
                            retryable: *retryable,
                            attempt: self.attempt,
                        }
                        .into(),
                    ]),
                    Failed => Ok(vec![]),
                    Completed | Cancelled => Err(self.over(&request.generation_id, status, "fail")),
                }
            }
            GenerationCommand::CancelGeneration { cancelled_by, reason } => {
                let (request, status) = self.existing()?;
                let id = &request.generation_id;
                match status {
                    Requested | Running => Ok(vec![
                        GenerationCancelled { cancelled_by: cancelled_by.clone(), reason: reason.clone() }
                            .into(),
                    ]),
                    Cancelled => Ok(vec![]),
                    Completed => Err(DomainError::invalid_state(format!(
                        "generation {id} is already completed, so there is nothing to cancel; reject its predictions instead"
                    ))),
                    Failed => Err(DomainError::invalid_state(format!(
                        "generation {id} already failed, so there is nothing to cancel; it runs again only if someone retries it"
                    ))),
                }
            }
            GenerationCommand::RetryGeneration { attempt } => {
                let (request, status) = self.existing()?;
                let id = &request.generation_id;
                let next = self.attempt + 1;
                match (status, &self.failure) {
                    (Failed, Some(failure)) if !failure.retryable => {
                        Err(DomainError::invalid_state(format!(
                            "generation {id} failed with an error a retry cannot fix ({}); request a new generation instead",
                            failure.reason
                        )))
                    }
                    (Failed, _) if *attempt == next => Ok(vec![GenerationRetried { attempt: next }.into()]),
                    (Failed, _) => Err(DomainError::rule(format!(
                        "the next attempt of generation {id} is {next}, not {attempt}"
                    ))),
                    // The retry that made this attempt, sent again.
                    (Requested | Running, _) if *attempt == self.attempt && self.attempt > 1 => Ok(vec![]),
                    (Requested | Running, _) => Err(DomainError::invalid_state(format!(
                        "generation {id} is {status}, not failed; only a failed generation can be retried"
                    ))),
                    (Completed | Cancelled, _) => Err(self.over(id, status, "be retried")),
                }
            }
        }
    }

    fn evolve(mut self, event: &GenerationEvent) -> Self {
        match event {
            GenerationEvent::Requested(requested) => {
                self.request = Some(requested.clone());
                self.status = Some(GenerationStatus::Requested);
                self.attempt = 1;
            }
            GenerationEvent::Started(started) => {
                self.status = Some(GenerationStatus::Running);
                self.agent = Some(started.agent.clone());
            }
            GenerationEvent::StepCompleted(step) => {
                self.total_cost = CostMicros(self.total_cost.0.saturating_add(step.cost.0));
                self.steps.push(step.clone());
            }
            GenerationEvent::Completed(completed) => {
                self.status = Some(GenerationStatus::Completed);
                self.predictions = completed.prediction_ids.clone();
            }
            GenerationEvent::Failed(failed) => {
                self.status = Some(GenerationStatus::Failed);
                self.failure = Some(failed.clone());
            }
            GenerationEvent::Cancelled(_) => self.status = Some(GenerationStatus::Cancelled),
            GenerationEvent::Retried(retried) => {
                self.status = Some(GenerationStatus::Requested);
                self.attempt = retried.attempt;
                self.agent = None;
                self.steps.clear();
                self.failure = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MemberId;
    use crate::testing::{asset, given};
    use crate::values::{AspectRatio, ImageFormat, WorkflowName};

    fn text(s: &str) -> Text {
        Text::parse(s).expect("text")
    }

    fn name(s: &str) -> Name {
        Name::parse(s).expect("name")
    }

    fn prediction(id: &str) -> PredictionId {
        PredictionId::parse(id).expect("id")
    }

    fn product(id: &str, seed: u8) -> ProductSnapshot {
        ProductSnapshot {
            product_id: ProductId::parse(id).expect("id"),
            sku: Sku::parse(format!("SKU-{id}")).expect("sku"),
            name: name("Linen dress"),
            category: Category::parse("dresses").expect("category"),
            attributes: BTreeMap::from([("colour".into(), "black".into())]),
            images: vec![ProductImageSnapshot { asset: asset(seed), view: name("front") }],
        }
    }

    fn request() -> GenerationRequested {
        GenerationRequested {
            generation_id: GenerationId::parse("g1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            shooting_id: ShootingId::parse("s1").expect("id"),
            look_id: LookId::parse("l1").expect("id"),
            shot_type: ShotType::parse("full-body-front").expect("shot type"),
            variants: 4,
            workflow: WorkflowRef { name: WorkflowName::parse("on-model").expect("name"), version: 1 },
            seed: 7,
            output: OutputSpec::new(AspectRatio::parse("4:5").expect("ratio"), 2048, ImageFormat::Jpeg)
                .expect("output"),
            inputs: GenerationInputs {
                products: vec![product("p1", 1)],
                subject: Some(SubjectSnapshot {
                    subject_id: SubjectId::parse("ava").expect("id"),
                    name: name("Ava"),
                    description: Some(text("early thirties, short dark hair")),
                    images: vec![SubjectImageSnapshot {
                        asset: asset(2),
                        pose: Some(name("standing")),
                        angle: Some(name("front")),
                    }],
                }),
                style: Some(StyleSnapshot {
                    style_id: StyleId::parse("studio").expect("id"),
                    version: 3,
                    name: name("Warm studio"),
                    background: Some(text("seamless warm grey paper")),
                    background_colour: None,
                    lighting: Some(text("soft daylight from the left")),
                    mood: Some(text("calm, editorial")),
                    prompt_fragments: vec![text("35mm, shallow depth of field")],
                    reference_images: vec![asset(3)],
                    do_guidelines: vec![text("show the whole garment")],
                    dont_guidelines: vec![text("no props")],
                }),
                look_guidelines: vec![text("sleeves rolled up")],
            },
            revision: None,
            quality_gates: None,
        }
    }

    fn requested() -> GenerationEvent {
        request().into()
    }

    fn requesting(change: impl FnOnce(&mut GenerationRequested)) -> GenerationCommand {
        let mut request = request();
        change(&mut request);
        GenerationCommand::RequestGeneration(request)
    }

    fn started(agent: &str, attempt: u32) -> GenerationEvent {
        GenerationStarted { agent: name(agent), attempt }.into()
    }

    fn start(agent: &str) -> GenerationCommand {
        GenerationCommand::StartGeneration { agent: name(agent) }
    }

    fn step_completed(step: &str, cost: u64) -> GenerationStepCompleted {
        GenerationStepCompleted {
            step: name(step),
            provider: name("local"),
            model: name("local-composite-v1"),
            duration_ms: 1200,
            cost: CostMicros(cost),
            attempt: 1,
        }
    }

    fn complete_step(step: &str, cost: u64) -> GenerationCommand {
        let s = step_completed(step, cost);
        GenerationCommand::CompleteStep {
            step: s.step,
            provider: s.provider,
            model: s.model,
            duration_ms: s.duration_ms,
            cost: s.cost,
            attempt: s.attempt,
        }
    }

    fn completed() -> GenerationEvent {
        GenerationCompleted { prediction_ids: vec![prediction("pr1"), prediction("pr2")] }.into()
    }

    fn complete() -> GenerationCommand {
        GenerationCommand::CompleteGeneration { prediction_ids: vec![prediction("pr1"), prediction("pr2")] }
    }

    fn failed(retryable: bool, attempt: u32) -> GenerationEvent {
        GenerationFailed { reason: text("the provider timed out"), retryable, attempt }.into()
    }

    fn fail(retryable: bool) -> GenerationCommand {
        GenerationCommand::FailGeneration { reason: text("the provider timed out"), retryable }
    }

    fn reviewer() -> Actor {
        Actor::Member(MemberId::parse("m1").expect("id"))
    }

    fn cancelled() -> GenerationEvent {
        GenerationCancelled { cancelled_by: reviewer(), reason: Some(text("wrong style")) }.into()
    }

    fn cancel() -> GenerationCommand {
        GenerationCommand::CancelGeneration { cancelled_by: reviewer(), reason: Some(text("wrong style")) }
    }

    fn retried(attempt: u32) -> GenerationEvent {
        GenerationRetried { attempt }.into()
    }

    fn running() -> Vec<GenerationEvent> {
        vec![requested(), started("agent-1", 1)]
    }

    fn with(mut history: Vec<GenerationEvent>, more: GenerationEvent) -> Vec<GenerationEvent> {
        history.push(more);
        history
    }

    fn invalid_state_containing(needle: &'static str) -> impl Fn(&DomainError) -> bool {
        move |e| matches!(e, DomainError::InvalidState(m) if m.contains(needle))
    }

    fn rule_containing(needle: &'static str) -> impl Fn(&DomainError) -> bool {
        move |e| matches!(e, DomainError::RuleViolated(m) if m.contains(needle))
    }

    // Requesting

    #[test]
    fn requesting_a_generation_records_the_complete_input_snapshot() {
        given::<Generation>(&[]).when(&GenerationCommand::RequestGeneration(request())).then(&[requested()]);
    }

    #[test]
    fn requesting_a_revision_records_the_parent_image_and_the_feedback() {
        let revision = RevisionInput {
            parent_prediction_id: prediction("pr0"),
            parent_asset: asset(4),
            feedback: text("make the hem longer"),
            regions: vec![RegionAnnotation::new(0.2, 0.7, 0.6, 0.3, text("hem")).expect("region")],
        };
        let command = requesting(|r| r.revision = Some(revision.clone()));
        let GenerationCommand::RequestGeneration(expected) = command.clone() else { unreachable!() };
        given::<Generation>(&[]).when(&command).then(&[expected.into()]);
    }

    #[test]
    fn requesting_a_generation_that_exists_is_rejected() {
        given::<Generation>(&[requested()])
            .when(&GenerationCommand::RequestGeneration(request()))
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn requesting_no_variants_or_more_than_eight_is_rejected() {
        for variants in [0, MAX_VARIANTS + 1] {
            given::<Generation>(&[])
                .when(&requesting(|r| r.variants = variants))
                .then_rejected(rule_containing("1 to 8 variants"));
        }
    }

    #[test]
    fn requesting_workflow_version_zero_is_rejected() {
        given::<Generation>(&[])
            .when(&requesting(|r| r.workflow.version = 0))
            .then_rejected(rule_containing("versions start at 1"));
    }

    #[test]
    fn requesting_a_generation_without_products_is_rejected() {
        given::<Generation>(&[])
            .when(&requesting(|r| r.inputs.products.clear()))
            .then_rejected(rule_containing("no product"));
    }

    #[test]
    fn requesting_more_products_than_the_limit_is_rejected() {
        let products = (0..=MAX_PRODUCTS).map(|i| product(&format!("p{i}"), i as u8)).collect();
        given::<Generation>(&[])
            .when(&requesting(|r| r.inputs.products = products))
            .then_rejected(rule_containing("at most"));
    }

    #[test]
    fn requesting_the_same_product_twice_is_rejected() {
        given::<Generation>(&[])
            .when(&requesting(|r| r.inputs.products.push(product("p1", 5))))
            .then_rejected(rule_containing("listed twice"));
    }

    #[test]
    fn requesting_a_product_without_images_is_rejected() {
        given::<Generation>(&[])
            .when(&requesting(|r| r.inputs.products[0].images.clear()))
            .then_rejected(rule_containing("has no image"));
    }

    #[test]
    fn requesting_a_subject_without_base_images_is_rejected() {
        given::<Generation>(&[])
            .when(&requesting(|r| {
                if let Some(subject) = r.inputs.subject.as_mut() {
                    subject.images.clear();
                }
            }))
            .then_rejected(rule_containing("no base image"));
    }

    #[test]
    fn requesting_a_revision_with_too_many_regions_is_rejected() {
        let region = RegionAnnotation::new(0.0, 0.0, 0.5, 0.5, text("here")).expect("region");
        let revision = RevisionInput {
            parent_prediction_id: prediction("pr0"),
            parent_asset: asset(4),
            feedback: text("fix"),
            regions: vec![region; crate::prediction::MAX_REGIONS + 1],
        };
        given::<Generation>(&[])
            .when(&requesting(|r| r.revision = Some(revision)))
            .then_rejected(rule_containing("regions"));
    }

    #[test]
    fn the_input_hashes_list_every_input_asset_once() {
        let mut request = request();
        request.inputs.products.push(product("p2", 1));
        request.revision = Some(RevisionInput {
            parent_prediction_id: prediction("pr0"),
            parent_asset: asset(4),
            feedback: text("fix"),
            regions: vec![],
        });
        assert_eq!(request.input_hashes(), vec![asset(1).hash, asset(2).hash, asset(3).hash, asset(4).hash]);
    }

    // Starting

    #[test]
    fn starting_a_requested_generation_records_started() {
        given::<Generation>(&[requested()]).when(&start("agent-1")).then(&[started("agent-1", 1)]);
    }

    #[test]
    fn starting_again_by_the_same_agent_records_nothing() {
        given::<Generation>(&running()).when(&start("agent-1")).then(&[]);
    }

    #[test]
    fn another_agent_starting_a_running_generation_takes_it_over() {
        given::<Generation>(&running()).when(&start("agent-2")).then(&[started("agent-2", 1)]);
    }

    #[test]
    fn starting_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[])
            .when(&start("agent-1"))
            .then_rejected(|e| matches!(e, DomainError::NotFound { kind: AggregateKind::Generation }));
    }

    #[test]
    fn starting_a_cancelled_generation_is_rejected() {
        given::<Generation>(&[requested(), cancelled()])
            .when(&start("agent-1"))
            .then_rejected(invalid_state_containing("cancelled"));
    }

    #[test]
    fn starting_a_completed_generation_is_rejected() {
        given::<Generation>(&with(running(), completed()))
            .when(&start("agent-1"))
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn starting_a_failed_generation_is_rejected_until_it_is_retried() {
        given::<Generation>(&with(running(), failed(true, 1)))
            .when(&start("agent-1"))
            .then_rejected(invalid_state_containing("retry it first"));
    }

    // Steps

    #[test]
    fn completing_a_step_records_its_provider_duration_and_cost() {
        given::<Generation>(&running())
            .when(&complete_step("generate", 40_000))
            .then(&[step_completed("generate", 40_000).into()]);
    }

    #[test]
    fn the_same_step_report_twice_records_nothing() {
        given::<Generation>(&with(running(), step_completed("generate", 40_000).into()))
            .when(&complete_step("generate", 40_000))
            .then(&[]);
    }

    #[test]
    fn a_paid_rerun_of_a_step_is_recorded_again() {
        given::<Generation>(&with(running(), step_completed("generate", 40_000).into()))
            .when(&complete_step("generate", 41_000))
            .then(&[step_completed("generate", 41_000).into()]);
    }

    #[test]
    fn steps_reported_together_record_each_new_one_once() {
        let steps = vec![
            step_completed("analyse", 0),
            step_completed("prompt", 0),
            step_completed("prompt", 0),
            step_completed("generate", 40_000),
        ];
        given::<Generation>(&with(running(), step_completed("analyse", 0).into()))
            .when(&GenerationCommand::CompleteSteps { steps })
            .then(&[step_completed("prompt", 0).into(), step_completed("generate", 40_000).into()]);
    }

    #[test]
    fn steps_reported_to_a_cancelled_generation_are_rejected() {
        given::<Generation>(&with(running(), cancelled()))
            .when(&GenerationCommand::CompleteSteps { steps: vec![step_completed("prompt", 0)] })
            .then_rejected(invalid_state_containing("was cancelled"));
    }

    #[test]
    fn steps_reported_together_with_try_zero_record_none() {
        let mut zero = step_completed("generate", 1);
        zero.attempt = 0;
        given::<Generation>(&running())
            .when(&GenerationCommand::CompleteSteps { steps: vec![step_completed("prompt", 0), zero] })
            .then_rejected(rule_containing("count from 1"));
    }

    #[test]
    fn a_step_reporting_try_zero_is_rejected() {
        let mut command = complete_step("generate", 1);
        if let GenerationCommand::CompleteStep { attempt, .. } = &mut command {
            *attempt = 0;
        }
        given::<Generation>(&running()).when(&command).then_rejected(rule_containing("count from 1"));
    }

    #[test]
    fn completing_a_step_before_the_generation_started_is_rejected() {
        given::<Generation>(&[requested()])
            .when(&complete_step("generate", 1))
            .then_rejected(invalid_state_containing("has not started"));
    }

    #[test]
    fn a_cancelled_generation_completes_no_step() {
        given::<Generation>(&with(running(), cancelled()))
            .when(&complete_step("generate", 1))
            .then_rejected(invalid_state_containing("cancelled"));
    }

    #[test]
    fn a_failed_generation_completes_no_step() {
        given::<Generation>(&with(running(), failed(false, 1)))
            .when(&complete_step("generate", 1))
            .then_rejected(invalid_state_containing("request a new generation"));
    }

    #[test]
    fn completing_a_step_of_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[])
            .when(&complete_step("generate", 1))
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Completing

    #[test]
    fn completing_a_running_generation_records_its_predictions() {
        given::<Generation>(&running()).when(&complete()).then(&[completed()]);
    }

    #[test]
    fn completing_again_with_the_same_predictions_records_nothing() {
        given::<Generation>(&with(running(), completed())).when(&complete()).then(&[]);
    }

    #[test]
    fn completing_again_with_other_predictions_is_rejected() {
        given::<Generation>(&with(running(), completed()))
            .when(&GenerationCommand::CompleteGeneration { prediction_ids: vec![prediction("pr9")] })
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn completing_a_generation_that_has_not_started_is_rejected() {
        given::<Generation>(&[requested()])
            .when(&complete())
            .then_rejected(invalid_state_containing("not started"));
    }

    #[test]
    fn a_cancelled_generation_cannot_complete() {
        given::<Generation>(&with(running(), cancelled()))
            .when(&complete())
            .then_rejected(invalid_state_containing("cancelled"));
    }

    #[test]
    fn a_failed_generation_cannot_complete() {
        given::<Generation>(&with(running(), failed(true, 1)))
            .when(&complete())
            .then_rejected(invalid_state_containing("failed"));
    }

    #[test]
    fn completing_without_predictions_is_rejected_in_favour_of_failing() {
        given::<Generation>(&running())
            .when(&GenerationCommand::CompleteGeneration { prediction_ids: vec![] })
            .then_rejected(rule_containing("fail it"));
    }

    #[test]
    fn completing_with_more_predictions_than_variants_is_rejected() {
        let prediction_ids = (0..5).map(|i| prediction(&format!("pr{i}"))).collect();
        given::<Generation>(&running())
            .when(&GenerationCommand::CompleteGeneration { prediction_ids })
            .then_rejected(rule_containing("makes 4 variants"));
    }

    #[test]
    fn completing_with_a_prediction_listed_twice_is_rejected() {
        given::<Generation>(&running())
            .when(&GenerationCommand::CompleteGeneration {
                prediction_ids: vec![prediction("pr1"), prediction("pr1")],
            })
            .then_rejected(rule_containing("twice"));
    }

    #[test]
    fn completing_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[])
            .when(&complete())
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Failing

    #[test]
    fn failing_a_running_generation_records_the_reason_and_whether_to_retry() {
        given::<Generation>(&running()).when(&fail(true)).then(&[failed(true, 1)]);
    }

    #[test]
    fn failing_a_requested_generation_records_failed() {
        given::<Generation>(&[requested()]).when(&fail(false)).then(&[failed(false, 1)]);
    }

    #[test]
    fn failing_a_failed_generation_records_nothing() {
        given::<Generation>(&with(running(), failed(true, 1))).when(&fail(true)).then(&[]);
    }

    #[test]
    fn failing_a_completed_generation_is_rejected() {
        given::<Generation>(&with(running(), completed()))
            .when(&fail(true))
            .then_rejected(invalid_state_containing("already completed"));
    }

    #[test]
    fn failing_a_cancelled_generation_is_rejected() {
        given::<Generation>(&with(running(), cancelled()))
            .when(&fail(true))
            .then_rejected(invalid_state_containing("cancelled"));
    }

    #[test]
    fn failing_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[])
            .when(&fail(true))
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Cancelling

    #[test]
    fn cancelling_a_running_generation_records_who_and_why() {
        given::<Generation>(&running()).when(&cancel()).then(&[cancelled()]);
    }

    #[test]
    fn cancelling_a_requested_generation_records_cancelled() {
        given::<Generation>(&[requested()]).when(&cancel()).then(&[cancelled()]);
    }

    #[test]
    fn cancelling_a_cancelled_generation_records_nothing() {
        given::<Generation>(&[requested(), cancelled()]).when(&cancel()).then(&[]);
    }

    #[test]
    fn cancelling_a_completed_generation_is_rejected() {
        given::<Generation>(&with(running(), completed()))
            .when(&cancel())
            .then_rejected(invalid_state_containing("reject its predictions instead"));
    }

    #[test]
    fn cancelling_a_failed_generation_is_rejected() {
        given::<Generation>(&with(running(), failed(true, 1)))
            .when(&cancel())
            .then_rejected(invalid_state_containing("nothing to cancel"));
    }

    #[test]
    fn cancelling_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[]).when(&cancel()).then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    // Retrying

    #[test]
    fn retrying_a_retryable_failure_records_the_next_attempt() {
        given::<Generation>(&with(running(), failed(true, 1)))
            .when(&GenerationCommand::RetryGeneration { attempt: 2 })
            .then(&[retried(2)]);
    }

    #[test]
    fn the_same_retry_sent_again_records_nothing() {
        given::<Generation>(&[requested(), started("agent-1", 1), failed(true, 1), retried(2)])
            .when(&GenerationCommand::RetryGeneration { attempt: 2 })
            .then(&[]);
    }

    #[test]
    fn retrying_with_a_wrong_attempt_number_is_rejected() {
        given::<Generation>(&with(running(), failed(true, 1)))
            .when(&GenerationCommand::RetryGeneration { attempt: 3 })
            .then_rejected(rule_containing("next attempt"));
    }

    #[test]
    fn retrying_a_failure_that_is_not_retryable_is_rejected() {
        given::<Generation>(&with(running(), failed(false, 1)))
            .when(&GenerationCommand::RetryGeneration { attempt: 2 })
            .then_rejected(invalid_state_containing("request a new generation instead"));
    }

    #[test]
    fn retrying_a_running_generation_is_rejected() {
        given::<Generation>(&running())
            .when(&GenerationCommand::RetryGeneration { attempt: 2 })
            .then_rejected(invalid_state_containing("only a failed generation"));
    }

    #[test]
    fn retrying_a_completed_or_cancelled_generation_is_rejected() {
        for end in [completed(), cancelled()] {
            given::<Generation>(&with(running(), end))
                .when(&GenerationCommand::RetryGeneration { attempt: 2 })
                .then_rejected(|e| matches!(e, DomainError::InvalidState(_)));
        }
    }

    #[test]
    fn retrying_a_generation_that_was_never_requested_is_rejected() {
        given::<Generation>(&[])
            .when(&GenerationCommand::RetryGeneration { attempt: 2 })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn a_retried_generation_starts_its_new_attempt() {
        given::<Generation>(&[requested(), started("agent-1", 1), failed(true, 1), retried(2)])
            .when(&start("agent-2"))
            .then(&[started("agent-2", 2)]);
    }

    // Replay and status

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let state = given::<Generation>(&[
            requested(),
            started("agent-1", 1),
            step_completed("analyse", 1_000).into(),
            failed(true, 1),
            retried(2),
            started("agent-2", 2),
            step_completed("analyse", 1_000).into(),
            step_completed("generate", 40_000).into(),
            completed(),
        ])
        .state();
        assert_eq!(state.status(), Some(GenerationStatus::Completed));
        assert_eq!(state.attempt(), 2);
        assert_eq!(state.steps().len(), 2);
        assert_eq!(state.total_cost(), CostMicros(42_000));
        assert_eq!(state.predictions(), &[prediction("pr1"), prediction("pr2")]);
        assert_eq!(state.request().map(|r| r.variants), Some(4));
        assert_eq!(Generation::default().status(), None);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn the_requested_event_round_trips_through_json() {
        let event = requested();
        let encoded = crate::wire::encode(&event);
        assert_eq!(encoded.event_type, "generation.requested");
        let decoded: GenerationEvent =
            crate::wire::decode(encoded.event_type, encoded.schema_version, encoded.payload)
                .expect("decodes");
        assert_eq!(decoded, event);
    }

    #[test]
    fn the_catalog_lists_every_event_at_version_1_with_a_schema() {
        let catalog = <GenerationEvent as crate::DomainEvent>::catalog();
        let names: Vec<&str> = catalog.iter().map(|schema| schema.event_type).collect();
        assert_eq!(
            names,
            [
                "generation.requested",
                "generation.started",
                "generation.step_completed",
                "generation.completed",
                "generation.failed",
                "generation.cancelled",
                "generation.retried"
            ]
        );
        for schema in &catalog {
            assert_eq!(schema.version, 1);
            assert!((schema.schema)().as_object().is_some(), "{}", schema.event_type);
        }
    }
}
