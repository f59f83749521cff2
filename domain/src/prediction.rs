//! The Prediction aggregate: one produced variant of a generation and its review.
//!
//! A prediction is produced by a compute agent while its generation runs, with the
//! provenance needed to explain and reproduce it (workflow version, provider,
//! model, seed, input hashes, prompt). People then review it:
//! pending → approved | rejected | revision requested. A reviewer may take an
//! approval or a rejection back (`ResetReview`), which returns it to pending; a
//! requested revision cannot be taken back, because it has already started a new
//! generation whose predictions are reviewed instead. Comments can be added in
//! any review state.
//!
//! The prediction does not load its generation: whoever sends `ProducePrediction`
//! passes the generation's current status in, and only a running generation
//! produces anything (a cancelled, failed or completed one produces nothing more).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::generation::GenerationStatus;
use crate::ids::{BrandId, CommentId, GenerationId, InvalidValue, LookId, PredictionId};
use crate::values::{AssetRef, ContentHash, Name, ShotType, Text, WorkflowRef};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most region annotations one revision request may carry.
pub const MAX_REGIONS: usize = 20;
/// The most comments one prediction may carry.
pub const MAX_COMMENTS: usize = 500;
/// The highest variant index plus one: a generation makes at most this many variants.
pub const MAX_VARIANT_INDEX: u8 = crate::generation::MAX_VARIANTS;

/// Where a prediction stands in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Not reviewed yet (or its review was reset).
    Pending,
    /// Approved: it may be exported.
    Approved,
    /// Rejected: it is never exported.
    Rejected,
    /// The reviewer asked for a revision; a new generation makes the revised variants.
    RevisionRequested,
}

impl ReviewState {
    /// The state in words, for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Rejected => "rejected",
            ReviewState::RevisionRequested => "revision requested",
        }
    }
}

impl std::fmt::Display for ReviewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rectangle of a prediction's image that a reviewer points at, with what should
/// change there. Coordinates are fractions of the image's width and height
/// (0 = left or top edge, 1 = right or bottom edge), so they survive resizing.
/// Only a rectangle that lies inside the image and is not empty can be built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "RegionFields", into = "RegionFields")]
pub struct RegionAnnotation {
    x: f64,
    y: f64,
    width: f64,
    height: f64,
    note: Text,
}

/// The wire shape of a [`RegionAnnotation`]; deserializing goes through
/// [`RegionAnnotation::new`], so a stored region is checked like a new one.
#[derive(Serialize, Deserialize, JsonSchema)]
struct RegionFields {
    /// Left edge, as a fraction of the image width (0..=1).
    #[schemars(range(min = 0.0, max = 1.0))]
    x: f64,
    /// Top edge, as a fraction of the image height (0..=1).
    #[schemars(range(min = 0.0, max = 1.0))]
    y: f64,
    /// Width, as a fraction of the image width (above 0; x + width at most 1).
    #[schemars(range(min = 0.0, max = 1.0))]
    width: f64,
    /// Height, as a fraction of the image height (above 0; y + height at most 1).
    #[schemars(range(min = 0.0, max = 1.0))]
    height: f64,
    /// What should change in this region.
    note: Text,
}

impl RegionAnnotation {
    /// Builds a region, refusing coordinates outside the image or an empty area.
    pub fn new(x: f64, y: f64, width: f64, height: f64, note: Text) -> Result<Self, InvalidValue> {
        let refuse = |reason: &str| {
            InvalidValue::new("region", &format!("x={x} y={y} width={width} height={height}"), reason)
        };
        if ![x, y, width, height].iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
            return Err(refuse(
                "x, y, width and height are fractions of the image, each from 0 to 1 (0.5 is the middle)",
            ));
        }
        if width == 0.0 || height == 0.0 {
            return Err(refuse("the region is empty; give it a width and a height above 0"));
        }
        // A small tolerance, so that fractions computed from pixels (e.g. 1/3 + 2/3)
        // are not refused for a rounding error.
        const EDGE_TOLERANCE: f64 = 1e-9;
        if x + width > 1.0 + EDGE_TOLERANCE || y + height > 1.0 + EDGE_TOLERANCE {
            return Err(refuse(
                "the region reaches outside the image; x + width and y + height must be at most 1",
            ));
        }
        Ok(RegionAnnotation { x, y, width, height, note })
    }

    /// Left edge (fraction of the width).
    pub fn x(&self) -> f64 {
        self.x
    }

    /// Top edge (fraction of the height).
    pub fn y(&self) -> f64 {
        self.y
    }

    /// Width (fraction of the image width).
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Height (fraction of the image height).
    pub fn height(&self) -> f64 {
        self.height
    }

    /// What should change in this region.
    pub fn note(&self) -> &Text {
        &self.note
    }
}

impl TryFrom<RegionFields> for RegionAnnotation {
    type Error = InvalidValue;
    fn try_from(fields: RegionFields) -> Result<Self, Self::Error> {
        RegionAnnotation::new(fields.x, fields.y, fields.width, fields.height, fields.note)
    }
}

impl From<RegionAnnotation> for RegionFields {
    fn from(region: RegionAnnotation) -> Self {
        RegionFields {
            x: region.x,
            y: region.y,
            width: region.width,
            height: region.height,
            note: region.note,
        }
    }
}

/// Checks the number of regions of one revision request.
pub(crate) fn check_regions(regions: &[RegionAnnotation]) -> Result<(), DomainError> {
    if regions.len() > MAX_REGIONS {
        return Err(DomainError::rule(format!(
            "a revision request marks at most {MAX_REGIONS} regions; {} were given — merge nearby regions or describe the rest in the comment",
            regions.len()
        )));
    }
    Ok(())
}

/// Where a prediction came from: enough to explain it and to make it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// The workflow and version that ran.
    pub workflow: WorkflowRef,
    /// The provider adapter that made the image, e.g. `fal`, `gemini`, `local`.
    pub provider: Name,
    /// The provider's model, e.g. `fal-ai/flux-pro/v1.1`.
    pub model: Name,
    /// The seed the provider was given.
    pub seed: u64,
    /// The content hashes of every input asset (product, subject and reference
    /// images, and the parent image of a revision).
    pub input_hashes: Vec<ContentHash>,
    /// The prompt sent to the provider, when the step used one (deterministic
    /// local operations have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Text>,
}

/// One automatic quality check of a produced image, with its figure, so a
/// reviewer sees why a prediction was flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityCheck {
    /// The check, e.g. `resolution`, `sharpness`, `colour_fidelity`.
    pub check: Name,
    /// Whether the image met the threshold.
    pub passed: bool,
    /// What was measured: long edge in pixels, variance of the Laplacian, or the
    /// worst CIEDE2000 ΔE of a product colour.
    pub measured: f64,
    /// The limit it was held to (a minimum for resolution and sharpness, a
    /// maximum for colour difference).
    pub threshold: f64,
    /// The figure in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text>,
}

/// What the automatic quality gate found. A prediction that fails is still
/// produced, flagged, so a reviewer decides with the figures in front of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityReport {
    /// Whether every check passed.
    pub passed: bool,
    /// Each check.
    pub checks: Vec<QualityCheck>,
}

/// Prediction commands.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "commands are built once and passed by reference; boxing the big variant buys nothing"
)]
pub enum PredictionCommand {
    /// Records a variant a compute agent produced.
    ProducePrediction {
        /// The new prediction's id.
        prediction_id: PredictionId,
        /// The owning brand.
        brand_id: BrandId,
        /// The generation that produced it.
        generation_id: GenerationId,
        /// The look it shows.
        look_id: LookId,
        /// The shot type it was made for.
        shot_type: ShotType,
        /// Which variant of the generation it is, from 0.
        variant_index: u8,
        /// The stored image.
        asset: AssetRef,
        /// Where it came from.
        provenance: Provenance,
        /// What the automatic quality gate measured, when the workflow has one.
        quality: Option<QualityReport>,
        /// The generation's status when the agent reports the output, as the command
        /// path read it; only a running generation produces predictions.
        generation_status: GenerationStatus,
    },
    /// Approves the prediction for export.
    ApprovePrediction,
    /// Rejects the prediction.
    RejectPrediction {
        /// Why, so the team and the next generation learn from it.
        reason: Text,
    },
    /// Asks for a revised variant; a process manager starts the new generation.
    RequestRevision {
        /// What should change.
        comment: Text,
        /// Where, optionally.
        regions: Vec<RegionAnnotation>,
    },
    /// Adds a comment without changing the review state.
    CommentOnPrediction {
        /// The comment's id.
        comment_id: CommentId,
        /// What the reviewer wrote.
        text: Text,
    },
    /// Takes an approval or a rejection back: the prediction is pending again.
    ResetReview {
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
}

/// A compute agent produced a variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionProduced {
    /// The prediction's id.
    pub prediction_id: PredictionId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// The generation that produced it.
    pub generation_id: GenerationId,
    /// The look it shows.
    pub look_id: LookId,
    /// The shot type it was made for.
    pub shot_type: ShotType,
    /// Which variant of the generation it is, from 0.
    pub variant_index: u8,
    /// The stored image.
    pub asset: AssetRef,
    /// Where it came from.
    pub provenance: Provenance,
    /// What the automatic quality gate measured; absent when the workflow has
    /// no gate (and in events recorded before gates existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityReport>,
}

/// The prediction was approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionApproved {}

/// The prediction was rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionRejected {
    /// Why.
    pub reason: Text,
}

/// The reviewer asked for a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionRevisionRequested {
    /// What should change.
    pub comment: Text,
    /// Where, if the reviewer marked regions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionAnnotation>,
}

/// Someone commented on the prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionCommented {
    /// The comment's id.
    pub comment_id: CommentId,
    /// What was written.
    pub text: Text,
}

/// An approval or rejection was taken back; the prediction is pending again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PredictionReviewReset {
    /// The review state that was taken back.
    pub previous: ReviewState,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

crate::domain_events! {
    aggregate: Prediction,
    /// Prediction events.
    #[expect(
        clippy::large_enum_variant,
        reason = "an aggregate's history is short; boxing the first payload would break the From impls for no gain"
    )]
    pub enum PredictionEvent {
        /// See [`PredictionProduced`].
        Produced(PredictionProduced) = ("prediction.produced", 1),
        /// See [`PredictionApproved`].
        Approved(PredictionApproved) = ("prediction.approved", 1),
        /// See [`PredictionRejected`].
        Rejected(PredictionRejected) = ("prediction.rejected", 1),
        /// See [`PredictionRevisionRequested`].
        RevisionRequested(PredictionRevisionRequested) = ("prediction.revision_requested", 1),
        /// See [`PredictionCommented`].
        Commented(PredictionCommented) = ("prediction.commented", 1),
        /// See [`PredictionReviewReset`].
        ReviewReset(PredictionReviewReset) = ("prediction.review_reset", 1),
    }
}

/// The state of a prediction, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Prediction {
    produced: Option<PredictionProduced>,
    review: Option<ReviewState>,
    rejection: Option<Text>,
    revision: Option<PredictionRevisionRequested>,
    comments: BTreeMap<CommentId, Text>,
}

impl Prediction {
    /// The review state, or `None` if the prediction was never produced.
    pub fn review_state(&self) -> Option<ReviewState> {
        self.review
    }

    /// What was produced, once it was.
    pub fn produced(&self) -> Option<&PredictionProduced> {
        self.produced.as_ref()
    }

    /// The reason of the current rejection.
    pub fn rejection_reason(&self) -> Option<&Text> {
        self.rejection.as_ref()
    }

    /// The revision request, once one was made.
    pub fn revision(&self) -> Option<&PredictionRevisionRequested> {
        self.revision.as_ref()
    }

    /// The comments by id.
    pub fn comments(&self) -> &BTreeMap<CommentId, Text> {
        &self.comments
    }

    fn existing(&self) -> Result<(&PredictionProduced, ReviewState), DomainError> {
        match (&self.produced, self.review) {
            (Some(produced), Some(review)) => Ok((produced, review)),
            _ => Err(DomainError::NotFound { kind: AggregateKind::Prediction }),
        }
    }
}

/// Only a running generation produces predictions; says why any other does not.
fn require_running(generation_id: &GenerationId, status: GenerationStatus) -> Result<(), DomainError> {
    let message = match status {
        GenerationStatus::Running => return Ok(()),
        GenerationStatus::Requested => {
            format!("generation {generation_id} has not started; start it before reporting its predictions")
        }
        GenerationStatus::Completed => format!(
            "generation {generation_id} is already completed and produces nothing more; request a new generation for more variants"
        ),
        GenerationStatus::Failed => format!(
            "generation {generation_id} failed and produces nothing more; retry it to produce predictions again"
        ),
        GenerationStatus::Cancelled => {
            format!("generation {generation_id} was cancelled and produces nothing more; discard this output")
        }
    };
    Err(DomainError::invalid_state(message))
}

fn revision_already_requested(prediction_id: &PredictionId) -> DomainError {
    DomainError::invalid_state(format!(
        "a revision of prediction {prediction_id} was requested; review the revised predictions of the new generation instead"
    ))
}

impl Aggregate for Prediction {
    const KIND: AggregateKind = AggregateKind::Prediction;
    const STATE_VERSION: u32 = 1;
    type Command = PredictionCommand;
    type Event = PredictionEvent;

    fn decide(&self, command: &PredictionCommand) -> Result<Vec<PredictionEvent>, DomainError> {
        match command {
            PredictionCommand::ProducePrediction {
                prediction_id,
                brand_id,
                generation_id,
                look_id,
                shot_type,
                variant_index,
                asset,
                provenance,
                quality,
                generation_status,
            } => {
                let produced = PredictionProduced {
                    prediction_id: prediction_id.clone(),
                    brand_id: brand_id.clone(),
                    generation_id: generation_id.clone(),
                    look_id: look_id.clone(),
                    shot_type: shot_type.clone(),
                    variant_index: *variant_index,
                    asset: asset.clone(),
                    provenance: provenance.clone(),
                    quality: quality.clone(),
                };
                if let Some(existing) = &self.produced {
                    // A redelivered generation reports the same output again: that
                    // is already recorded, whatever the generation's status now.
                    if *existing == produced {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Prediction,
                        id: prediction_id.to_string(),
                    });
                }
                require_running(generation_id, *generation_status)?;
                if *variant_index >= MAX_VARIANT_INDEX {
                    return Err(DomainError::rule(format!(
                        "variant index {variant_index} is out of range; a generation numbers its variants from 0 to {}",
                        MAX_VARIANT_INDEX - 1
                    )));
                }
                if provenance.input_hashes.is_empty() {
                    return Err(DomainError::rule(format!(
                        "prediction {prediction_id} names no input assets; list the content hashes of the images it was made from"
                    )));
                }
                Ok(vec![produced.into()])
            }
            PredictionCommand::ApprovePrediction => {
                let (produced, review) = self.existing()?;
                match review {
                    ReviewState::Pending => Ok(vec![PredictionApproved {}.into()]),
                    ReviewState::Approved => Ok(vec![]),
                    ReviewState::Rejected => Err(DomainError::invalid_state(format!(
                        "prediction {} was rejected; reset its review before approving it",
                        produced.prediction_id
                    ))),
                    ReviewState::RevisionRequested => {
                        Err(revision_already_requested(&produced.prediction_id))
                    }
                }
            }
            PredictionCommand::RejectPrediction { reason } => {
                let (produced, review) = self.existing()?;
                match review {
                    ReviewState::Pending => Ok(vec![PredictionRejected { reason: reason.clone() }.into()]),
                    ReviewState::Rejected => Ok(vec![]),
                    ReviewState::Approved => Err(DomainError::invalid_state(format!(
                        "prediction {} is approved; reset its review before rejecting it",
                        produced.prediction_id
                    ))),
                    ReviewState::RevisionRequested => {
                        Err(revision_already_requested(&produced.prediction_id))
                    }
                }
            }
            PredictionCommand::RequestRevision { comment, regions } => {
                let (produced, review) = self.existing()?;
                check_regions(regions)?;
                let requested =
                    PredictionRevisionRequested { comment: comment.clone(), regions: regions.clone() };
                match review {
                    ReviewState::Pending => Ok(vec![requested.into()]),
                    ReviewState::RevisionRequested if self.revision.as_ref() == Some(&requested) => {
                        Ok(vec![])
                    }
                    ReviewState::RevisionRequested => Err(DomainError::invalid_state(format!(
                        "a revision of prediction {} was already requested; comment on the revised predictions instead",
                        produced.prediction_id
                    ))),
                    ReviewState::Approved | ReviewState::Rejected => {
                        Err(DomainError::invalid_state(format!(
                            "prediction {} is {review}; reset its review before requesting a revision",
                            produced.prediction_id
                        )))
                    }
                }
            }
            PredictionCommand::CommentOnPrediction { comment_id, text } => {
                let (produced, _) = self.existing()?;
                if let Some(existing) = self.comments.get(comment_id) {
                    if existing == text {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::rule(format!(
                        "prediction {} already has a comment {comment_id}; use another comment id",
                        produced.prediction_id
                    )));
                }
                if self.comments.len() >= MAX_COMMENTS {
                    return Err(DomainError::rule(format!(
                        "prediction {} already has {MAX_COMMENTS} comments, the most allowed",
                        produced.prediction_id
                    )));
                }
                Ok(vec![PredictionCommented { comment_id: comment_id.clone(), text: text.clone() }.into()])
            }
            PredictionCommand::ResetReview { reason } => {
                let (produced, review) = self.existing()?;
                match review {
                    ReviewState::Pending => Ok(vec![]),
                    ReviewState::Approved | ReviewState::Rejected => {
                        Ok(vec![PredictionReviewReset { previous: review, reason: reason.clone() }.into()])
                    }
                    ReviewState::RevisionRequested => Err(DomainError::invalid_state(format!(
                        "a revision of prediction {} was requested and a new generation makes it; a revision request cannot be taken back — review the revised predictions instead",
                        produced.prediction_id
                    ))),
                }
            }
        }
    }

    fn evolve(mut self, event: &PredictionEvent) -> Self {
        match event {
            PredictionEvent::Produced(produced) => {
                self.produced = Some(produced.clone());
                self.review = Some(ReviewState::Pending);
            }
            PredictionEvent::Approved(_) => self.review = Some(ReviewState::Approved),
            PredictionEvent::Rejected(rejected) => {
                self.review = Some(ReviewState::Rejected);
                self.rejection = Some(rejected.reason.clone());
            }
            PredictionEvent::RevisionRequested(requested) => {
                self.review = Some(ReviewState::RevisionRequested);
                self.revision = Some(requested.clone());
            }
            PredictionEvent::Commented(commented) => {
                self.comments.insert(commented.comment_id.clone(), commented.text.clone());
            }
            PredictionEvent::ReviewReset(_) => {
                self.review = Some(ReviewState::Pending);
                self.rejection = None;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{asset, given};
    use crate::values::WorkflowName;

    fn text(s: &str) -> Text {
        Text::parse(s).expect("text")
    }

    fn provenance() -> Provenance {
        Provenance {
            workflow: WorkflowRef { name: WorkflowName::parse("on-model").expect("name"), version: 1 },
            provider: Name::parse("local").expect("name"),
            model: Name::parse("local-composite-v1").expect("name"),
            seed: 42,
            input_hashes: vec![asset(1).hash, asset(2).hash],
            prompt: Some(text("a model wearing a linen dress, studio light")),
        }
    }

    fn produced() -> PredictionEvent {
        PredictionProduced {
            prediction_id: PredictionId::parse("pr1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            generation_id: GenerationId::parse("g1").expect("id"),
            look_id: LookId::parse("l1").expect("id"),
            shot_type: ShotType::parse("full-body-front").expect("shot type"),
            variant_index: 0,
            asset: asset(9),
            provenance: provenance(),
            quality: None,
        }
        .into()
    }

    fn produce_while(generation_status: GenerationStatus) -> PredictionCommand {
        let PredictionEvent::Produced(p) = produced() else { unreachable!() };
        PredictionCommand::ProducePrediction {
            prediction_id: p.prediction_id,
            brand_id: p.brand_id,
            generation_id: p.generation_id,
            look_id: p.look_id,
            shot_type: p.shot_type,
            variant_index: p.variant_index,
            asset: p.asset,
            provenance: p.provenance,
            quality: p.quality,
            generation_status,
        }
    }

    fn produce() -> PredictionCommand {
        produce_while(GenerationStatus::Running)
    }

    fn approved() -> PredictionEvent {
        PredictionApproved {}.into()
    }

    fn rejected() -> PredictionEvent {
        PredictionRejected { reason: text("the sleeve is deformed") }.into()
    }

    fn region(note: &str) -> RegionAnnotation {
        RegionAnnotation::new(0.1, 0.2, 0.3, 0.4, text(note)).expect("region")
    }

    fn revision_requested() -> PredictionEvent {
        PredictionRevisionRequested { comment: text("make the hem longer"), regions: vec![region("hem")] }
            .into()
    }

    fn request_revision() -> PredictionCommand {
        PredictionCommand::RequestRevision {
            comment: text("make the hem longer"),
            regions: vec![region("hem")],
        }
    }

    fn is_invalid_state_containing(needle: &'static str) -> impl Fn(&DomainError) -> bool {
        move |e| matches!(e, DomainError::InvalidState(m) if m.contains(needle))
    }

    #[test]
    fn producing_a_prediction_of_a_running_generation_records_prediction_produced() {
        given::<Prediction>(&[]).when(&produce()).then(&[produced()]);
    }

    #[test]
    fn producing_the_same_prediction_again_records_nothing() {
        given::<Prediction>(&[produced()]).when(&produce_while(GenerationStatus::Completed)).then(&[]);
    }

    #[test]
    fn producing_a_different_output_under_a_taken_prediction_id_is_rejected() {
        let mut command = produce();
        if let PredictionCommand::ProducePrediction { asset: a, .. } = &mut command {
            *a = asset(10);
        }
        given::<Prediction>(&[produced()])
            .when(&command)
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn a_cancelled_generation_produces_no_prediction() {
        given::<Prediction>(&[])
            .when(&produce_while(GenerationStatus::Cancelled))
            .then_rejected(is_invalid_state_containing("cancelled"));
    }

    #[test]
    fn a_failed_generation_produces_no_prediction() {
        given::<Prediction>(&[])
            .when(&produce_while(GenerationStatus::Failed))
            .then_rejected(is_invalid_state_containing("failed"));
    }

    #[test]
    fn a_completed_generation_produces_no_prediction() {
        given::<Prediction>(&[])
            .when(&produce_while(GenerationStatus::Completed))
            .then_rejected(is_invalid_state_containing("completed"));
    }

    #[test]
    fn a_generation_that_has_not_started_produces_no_prediction() {
        given::<Prediction>(&[])
            .when(&produce_while(GenerationStatus::Requested))
            .then_rejected(is_invalid_state_containing("not started"));
    }

    #[test]
    fn producing_a_variant_index_beyond_the_variant_limit_is_rejected() {
        let mut command = produce();
        if let PredictionCommand::ProducePrediction { variant_index, .. } = &mut command {
            *variant_index = MAX_VARIANT_INDEX;
        }
        given::<Prediction>(&[]).when(&command).then_rejected(|e| matches!(e, DomainError::RuleViolated(_)));
    }

    #[test]
    fn producing_a_prediction_without_input_hashes_is_rejected() {
        let mut command = produce();
        if let PredictionCommand::ProducePrediction { provenance, .. } = &mut command {
            provenance.input_hashes.clear();
        }
        given::<Prediction>(&[])
            .when(&command)
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("input")));
    }

    #[test]
    fn approving_a_pending_prediction_records_approved() {
        given::<Prediction>(&[produced()]).when(&PredictionCommand::ApprovePrediction).then(&[approved()]);
    }

    #[test]
    fn approving_an_approved_prediction_records_nothing() {
        given::<Prediction>(&[produced(), approved()]).when(&PredictionCommand::ApprovePrediction).then(&[]);
    }

    #[test]
    fn approving_a_rejected_prediction_is_rejected_until_its_review_is_reset() {
        given::<Prediction>(&[produced(), rejected()])
            .when(&PredictionCommand::ApprovePrediction)
            .then_rejected(is_invalid_state_containing("reset its review"));
    }

    #[test]
    fn approving_a_prediction_whose_revision_was_requested_is_rejected() {
        given::<Prediction>(&[produced(), revision_requested()])
            .when(&PredictionCommand::ApprovePrediction)
            .then_rejected(is_invalid_state_containing("revised predictions"));
    }

    #[test]
    fn approving_a_prediction_that_was_never_produced_is_rejected() {
        given::<Prediction>(&[])
            .when(&PredictionCommand::ApprovePrediction)
            .then_rejected(|e| matches!(e, DomainError::NotFound { kind: AggregateKind::Prediction }));
    }

    #[test]
    fn rejecting_a_pending_prediction_records_rejected_with_its_reason() {
        given::<Prediction>(&[produced()])
            .when(&PredictionCommand::RejectPrediction { reason: text("the sleeve is deformed") })
            .then(&[rejected()]);
    }

    #[test]
    fn rejecting_a_rejected_prediction_records_nothing() {
        given::<Prediction>(&[produced(), rejected()])
            .when(&PredictionCommand::RejectPrediction { reason: text("still bad") })
            .then(&[]);
    }

    #[test]
    fn rejecting_an_approved_prediction_is_rejected_until_its_review_is_reset() {
        given::<Prediction>(&[produced(), approved()])
            .when(&PredictionCommand::RejectPrediction { reason: text("changed my mind") })
            .then_rejected(is_invalid_state_containing("reset its review"));
    }

    #[test]
    fn rejecting_a_prediction_whose_revision_was_requested_is_rejected() {
        given::<Prediction>(&[produced(), revision_requested()])
            .when(&PredictionCommand::RejectPrediction { reason: text("no") })
            .then_rejected(is_invalid_state_containing("revised predictions"));
    }

    #[test]
    fn rejecting_a_prediction_that_was_never_produced_is_rejected() {
        given::<Prediction>(&[])
            .when(&PredictionCommand::RejectPrediction { reason: text("no") })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn a_rejection_needs_a_reason() {
        // The reason is a `Text`, which cannot be empty: the command cannot be built
        // without one.
        assert!(Text::parse("   ").is_err());
    }

    #[test]
    fn requesting_a_revision_of_a_pending_prediction_records_revision_requested() {
        given::<Prediction>(&[produced()]).when(&request_revision()).then(&[revision_requested()]);
    }

    #[test]
    fn requesting_the_same_revision_again_records_nothing() {
        given::<Prediction>(&[produced(), revision_requested()]).when(&request_revision()).then(&[]);
    }

    #[test]
    fn requesting_a_different_revision_after_one_was_requested_is_rejected() {
        given::<Prediction>(&[produced(), revision_requested()])
            .when(&PredictionCommand::RequestRevision { comment: text("shorter instead"), regions: vec![] })
            .then_rejected(is_invalid_state_containing("already requested"));
    }

    #[test]
    fn requesting_a_revision_of_an_approved_prediction_is_rejected_until_its_review_is_reset() {
        given::<Prediction>(&[produced(), approved()])
            .when(&request_revision())
            .then_rejected(is_invalid_state_containing("reset its review"));
    }

    #[test]
    fn requesting_a_revision_with_too_many_regions_is_rejected() {
        let command = PredictionCommand::RequestRevision {
            comment: text("fix these"),
            regions: (0..=MAX_REGIONS).map(|_| region("here")).collect(),
        };
        given::<Prediction>(&[produced()])
            .when(&command)
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("regions")));
    }

    #[test]
    fn requesting_a_revision_of_a_prediction_that_was_never_produced_is_rejected() {
        given::<Prediction>(&[])
            .when(&request_revision())
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn a_region_must_lie_inside_the_image_and_not_be_empty() {
        assert!(RegionAnnotation::new(0.0, 0.0, 1.0, 1.0, text("all")).is_ok());
        assert!(RegionAnnotation::new(1.0 / 3.0, 0.0, 2.0 / 3.0, 1.0, text("right")).is_ok());
        for (x, y, w, h) in [
            (-0.1, 0.0, 0.5, 0.5),
            (0.0, 1.5, 0.5, 0.5),
            (0.6, 0.0, 0.5, 0.5),
            (0.0, 0.6, 0.5, 0.5),
            (0.2, 0.2, 0.0, 0.5),
            (f64::NAN, 0.0, 0.5, 0.5),
            (0.0, 0.0, f64::INFINITY, 0.5),
        ] {
            assert!(RegionAnnotation::new(x, y, w, h, text("bad")).is_err(), "{x} {y} {w} {h}");
        }
    }

    #[test]
    fn deserializing_a_region_checks_it_too() {
        let good = serde_json::json!({ "x": 0.1, "y": 0.1, "width": 0.5, "height": 0.5, "note": "collar" });
        let bad = serde_json::json!({ "x": 0.8, "y": 0.1, "width": 0.5, "height": 0.5, "note": "collar" });
        let region: RegionAnnotation = serde_json::from_value(good.clone()).expect("valid region");
        assert_eq!(serde_json::to_value(&region).expect("encodes"), good);
        assert!(serde_json::from_value::<RegionAnnotation>(bad).is_err());
    }

    #[test]
    fn commenting_records_commented_in_any_review_state() {
        let comment = PredictionCommand::CommentOnPrediction {
            comment_id: CommentId::parse("c1").expect("id"),
            text: text("nice light"),
        };
        let commented: PredictionEvent =
            PredictionCommented { comment_id: CommentId::parse("c1").expect("id"), text: text("nice light") }
                .into();
        given::<Prediction>(&[produced()]).when(&comment).then(std::slice::from_ref(&commented));
        given::<Prediction>(&[produced(), rejected()]).when(&comment).then(std::slice::from_ref(&commented));
    }

    #[test]
    fn the_same_comment_again_records_nothing() {
        let commented: PredictionEvent =
            PredictionCommented { comment_id: CommentId::parse("c1").expect("id"), text: text("nice light") }
                .into();
        given::<Prediction>(&[produced(), commented])
            .when(&PredictionCommand::CommentOnPrediction {
                comment_id: CommentId::parse("c1").expect("id"),
                text: text("nice light"),
            })
            .then(&[]);
    }

    #[test]
    fn another_text_under_a_taken_comment_id_is_rejected() {
        let commented: PredictionEvent =
            PredictionCommented { comment_id: CommentId::parse("c1").expect("id"), text: text("nice light") }
                .into();
        given::<Prediction>(&[produced(), commented])
            .when(&PredictionCommand::CommentOnPrediction {
                comment_id: CommentId::parse("c1").expect("id"),
                text: text("something else"),
            })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("another comment id")));
    }

    #[test]
    fn commenting_beyond_the_comment_limit_is_rejected() {
        let mut history = vec![produced()];
        history.extend((0..MAX_COMMENTS).map(|i| {
            PredictionEvent::from(PredictionCommented {
                comment_id: CommentId::parse(format!("c{i}")).expect("id"),
                text: text("hm"),
            })
        }));
        given::<Prediction>(&history)
            .when(&PredictionCommand::CommentOnPrediction {
                comment_id: CommentId::parse("one-more").expect("id"),
                text: text("hm"),
            })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("most allowed")));
    }

    #[test]
    fn commenting_on_a_prediction_that_was_never_produced_is_rejected() {
        given::<Prediction>(&[])
            .when(&PredictionCommand::CommentOnPrediction {
                comment_id: CommentId::parse("c1").expect("id"),
                text: text("hello"),
            })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn resetting_an_approval_or_a_rejection_records_review_reset() {
        let reset = PredictionCommand::ResetReview { reason: Some(text("clicked the wrong one")) };
        given::<Prediction>(&[produced(), approved()]).when(&reset).then(&[PredictionReviewReset {
            previous: ReviewState::Approved,
            reason: Some(text("clicked the wrong one")),
        }
        .into()]);
        given::<Prediction>(&[produced(), rejected()]).when(&reset).then(&[PredictionReviewReset {
            previous: ReviewState::Rejected,
            reason: Some(text("clicked the wrong one")),
        }
        .into()]);
    }

    #[test]
    fn resetting_a_pending_review_records_nothing() {
        given::<Prediction>(&[produced()]).when(&PredictionCommand::ResetReview { reason: None }).then(&[]);
    }

    #[test]
    fn resetting_a_requested_revision_is_rejected() {
        given::<Prediction>(&[produced(), revision_requested()])
            .when(&PredictionCommand::ResetReview { reason: None })
            .then_rejected(is_invalid_state_containing("cannot be taken back"));
    }

    #[test]
    fn resetting_the_review_of_a_prediction_that_was_never_produced_is_rejected() {
        given::<Prediction>(&[])
            .when(&PredictionCommand::ResetReview { reason: None })
            .then_rejected(|e| matches!(e, DomainError::NotFound { .. }));
    }

    #[test]
    fn a_reset_rejection_can_then_be_approved() {
        let reset: PredictionEvent =
            PredictionReviewReset { previous: ReviewState::Rejected, reason: None }.into();
        given::<Prediction>(&[produced(), rejected(), reset])
            .when(&PredictionCommand::ApprovePrediction)
            .then(&[approved()]);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let reset: PredictionEvent =
            PredictionReviewReset { previous: ReviewState::Rejected, reason: None }.into();
        let state = given::<Prediction>(&[produced(), rejected(), reset, approved()]).state();
        assert_eq!(state.review_state(), Some(ReviewState::Approved));
        assert_eq!(state.rejection_reason(), None);
        assert_eq!(state.produced().map(|p| p.variant_index), Some(0));
        assert_eq!(Prediction::default().review_state(), None);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn the_catalog_lists_every_event_at_version_1_with_a_schema() {
        let catalog = <PredictionEvent as crate::DomainEvent>::catalog();
        let names: Vec<&str> = catalog.iter().map(|schema| schema.event_type).collect();
        assert_eq!(
            names,
            [
                "prediction.produced",
                "prediction.approved",
                "prediction.rejected",
                "prediction.revision_requested",
                "prediction.commented",
                "prediction.review_reset"
            ]
        );
        for schema in &catalog {
            assert_eq!(schema.version, 1);
            assert!((schema.schema)().as_object().is_some(), "{}", schema.event_type);
        }
    }

    #[test]
    fn the_region_schema_describes_its_fields() {
        let schema = serde_json::to_value(schemars::schema_for!(RegionAnnotation)).expect("schema");
        let properties = &schema["properties"];
        for field in ["x", "y", "width", "height", "note"] {
            assert!(properties.get(field).is_some(), "{field} missing in {schema}");
        }
        assert_eq!(properties["x"]["maximum"], 1.0);
    }
}
