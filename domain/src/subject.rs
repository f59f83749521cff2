//! The Subject aggregate: a virtual model identity (a described person with base
//! images in known poses and angles) that looks put the products on.
//!
//! A subject is usable — may be picked for a look — once it exists, is not
//! retired and has at least one base image ([`Subject::is_usable`]); the Look
//! aggregate gets that answer passed in with its command. A retired subject
//! accepts no changes and is never un-retired: generations already made keep
//! their image keys in their own events, so retiring breaks nothing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, ImageId, SubjectId};
use crate::values::{AssetRef, ImageAnalysis, Name, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most base images one subject may carry.
pub const MAX_BASE_IMAGES: usize = 20;

/// The body pose a base image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pose {
    /// Standing upright.
    Standing,
    /// Seated.
    Seated,
    /// Mid-stride.
    Walking,
    /// Leaning against something.
    Leaning,
    /// Kneeling.
    Kneeling,
    /// Crouching.
    Crouching,
}

/// The camera angle of a base image, relative to the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Angle {
    /// Facing the camera.
    Front,
    /// Turned about 45 degrees.
    ThreeQuarter,
    /// Side on.
    Profile,
    /// Facing away.
    Back,
}

/// Subject commands.
#[derive(Debug, Clone, PartialEq)]
pub enum SubjectCommand {
    /// Creates a subject for a brand.
    CreateSubject {
        /// The new subject's id.
        subject_id: SubjectId,
        /// The owning brand.
        brand_id: BrandId,
        /// Display name.
        name: Name,
        /// Who the subject is (appearance, age range, build), for prompts and people.
        description: Text,
    },
    /// Attaches an uploaded base image.
    AddSubjectBaseImage {
        /// The image's id within the subject.
        image_id: ImageId,
        /// The stored asset.
        asset: AssetRef,
        /// The pose it shows.
        pose: Pose,
        /// The camera angle.
        angle: Angle,
        /// What ingest learned about the image, when it was uploaded through GPS.
        analysis: Option<ImageAnalysis>,
    },
    /// Detaches a base image (the stored asset stays, content-addressed).
    RemoveSubjectBaseImage {
        /// The image to remove.
        image_id: ImageId,
    },
    /// Replaces the description.
    UpdateSubjectDescription {
        /// The new description.
        description: Text,
    },
    /// Retires the subject for good.
    RetireSubject {
        /// Why, for the activity feed and the audit trail.
        reason: Text,
    },
}

/// A subject was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectCreated {
    /// The subject's id.
    pub subject_id: SubjectId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// Display name.
    pub name: Name,
    /// Who the subject is.
    pub description: Text,
}

/// A base image was attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectBaseImageAdded {
    /// The image's id within the subject.
    pub image_id: ImageId,
    /// The stored asset.
    pub asset: AssetRef,
    /// The pose it shows.
    pub pose: Pose,
    /// The camera angle.
    pub angle: Angle,
    /// What ingest learned about the image (original, perceptual hash,
    /// colours); absent in events written before ingest recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<ImageAnalysis>,
}

/// A base image was detached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectBaseImageRemoved {
    /// The removed image.
    pub image_id: ImageId,
}

/// The description was replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectDescriptionUpdated {
    /// The new description.
    pub description: Text,
}

/// The subject was retired for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubjectRetired {
    /// Why.
    pub reason: Text,
}

crate::domain_events! {
    aggregate: Subject,
    /// Subject events.
    pub enum SubjectEvent {
        /// See [`SubjectCreated`].
        Created(SubjectCreated) = ("subject.created", 1),
        /// See [`SubjectBaseImageAdded`].
        BaseImageAdded(SubjectBaseImageAdded) = ("subject.base_image_added", 1),
        /// See [`SubjectBaseImageRemoved`].
        BaseImageRemoved(SubjectBaseImageRemoved) = ("subject.base_image_removed", 1),
        /// See [`SubjectDescriptionUpdated`].
        DescriptionUpdated(SubjectDescriptionUpdated) = ("subject.description_updated", 1),
        /// See [`SubjectRetired`].
        Retired(SubjectRetired) = ("subject.retired", 1),
    }
}

/// A base image as the state keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BaseImage {
    /// The stored asset.
    pub asset: AssetRef,
    /// The pose it shows.
    pub pose: Pose,
    /// The camera angle.
    pub angle: Angle,
}

/// The state of a subject, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Subject {
    /// Present once created; the description follows updates.
    pub details: Option<SubjectCreated>,
    /// Base images by id.
    pub base_images: BTreeMap<ImageId, BaseImage>,
    /// Why it was retired, once it is.
    pub retired: Option<Text>,
}

impl Subject {
    /// Whether the subject may be used in a look: it exists, is not retired and
    /// has at least one base image.
    pub fn is_usable(&self) -> bool {
        self.details.is_some() && self.retired.is_none() && !self.base_images.is_empty()
    }

    fn existing(&self) -> Result<&SubjectCreated, DomainError> {
        self.details.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Subject })
    }

    fn editable(&self) -> Result<&SubjectCreated, DomainError> {
        let details = self.existing()?;
        if self.retired.is_some() {
            return Err(DomainError::invalid_state(format!(
                "subject {} is retired and accepts no changes; create a new subject instead",
                details.subject_id
            )));
        }
        Ok(details)
    }
}

impl Aggregate for Subject {
    const KIND: AggregateKind = AggregateKind::Subject;
    const STATE_VERSION: u32 = 1;
    type Command = SubjectCommand;
    type Event = SubjectEvent;

    fn decide(&self, command: &SubjectCommand) -> Result<Vec<SubjectEvent>, DomainError> {
        match command {
            SubjectCommand::CreateSubject { subject_id, brand_id, name, description } => {
                if self.details.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Subject,
                        id: subject_id.to_string(),
                    });
                }
                Ok(vec![
                    SubjectCreated {
                        subject_id: subject_id.clone(),
                        brand_id: brand_id.clone(),
                        name: name.clone(),
                        description: description.clone(),
                    }
                    .into(),
                ])
            }
            SubjectCommand::AddSubjectBaseImage { image_id, asset, pose, angle, analysis } => {
                let current = self.editable()?;
                if let Some(existing) = self.base_images.get(image_id) {
                    if existing.asset == *asset && existing.pose == *pose && existing.angle == *angle {
                        return Ok(vec![]);
                    }
                    return Err(DomainError::rule(format!(
                        "subject {} already has a base image {image_id}; remove it first or use another id",
                        current.subject_id
                    )));
                }
                if let Some((other, _)) =
                    self.base_images.iter().find(|(_, image)| image.asset.hash == asset.hash)
                {
                    return Err(DomainError::rule(format!(
                        "this file is already attached to subject {} as base image {other}",
                        current.subject_id
                    )));
                }
                if self.base_images.len() >= MAX_BASE_IMAGES {
                    return Err(DomainError::rule(format!(
                        "subject {} already has {MAX_BASE_IMAGES} base images, the most allowed; remove one first",
                        current.subject_id
                    )));
                }
                Ok(vec![
                    SubjectBaseImageAdded {
                        image_id: image_id.clone(),
                        asset: asset.clone(),
                        pose: *pose,
                        angle: *angle,
                        analysis: analysis.clone(),
                    }
                    .into(),
                ])
            }
            SubjectCommand::RemoveSubjectBaseImage { image_id } => {
                let current = self.editable()?;
                if !self.base_images.contains_key(image_id) {
                    return Err(DomainError::rule(format!(
                        "subject {} has no base image {image_id}",
                        current.subject_id
                    )));
                }
                Ok(vec![SubjectBaseImageRemoved { image_id: image_id.clone() }.into()])
            }
            SubjectCommand::UpdateSubjectDescription { description } => {
                let current = self.editable()?;
                if current.description == *description {
                    return Ok(vec![]);
                }
                Ok(vec![SubjectDescriptionUpdated { description: description.clone() }.into()])
            }
            SubjectCommand::RetireSubject { reason } => {
                self.existing()?;
                if self.retired.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![SubjectRetired { reason: reason.clone() }.into()])
            }
        }
    }

    fn evolve(mut self, event: &SubjectEvent) -> Self {
        match event {
            SubjectEvent::Created(created) => self.details = Some(created.clone()),
            SubjectEvent::BaseImageAdded(added) => {
                self.base_images.insert(
                    added.image_id.clone(),
                    BaseImage { asset: added.asset.clone(), pose: added.pose, angle: added.angle },
                );
            }
            SubjectEvent::BaseImageRemoved(removed) => {
                self.base_images.remove(&removed.image_id);
            }
            SubjectEvent::DescriptionUpdated(updated) => {
                if let Some(details) = self.details.as_mut() {
                    details.description = updated.description.clone();
                }
            }
            SubjectEvent::Retired(retired) => self.retired = Some(retired.reason.clone()),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{asset, given};

    fn text(value: &str) -> Text {
        Text::parse(value).expect("text")
    }

    fn image_id(id: &str) -> ImageId {
        ImageId::parse(id).expect("id")
    }

    fn created() -> SubjectEvent {
        SubjectCreated {
            subject_id: SubjectId::parse("mia").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Mia").expect("name"),
            description: text("Woman, late twenties, short dark hair, athletic build"),
        }
        .into()
    }

    fn create_command() -> SubjectCommand {
        let SubjectEvent::Created(c) = created() else { unreachable!() };
        SubjectCommand::CreateSubject {
            subject_id: c.subject_id,
            brand_id: c.brand_id,
            name: c.name,
            description: c.description,
        }
    }

    fn image_added(id: &str, seed: u8) -> SubjectEvent {
        SubjectBaseImageAdded {
            image_id: image_id(id),
            asset: asset(seed),
            pose: Pose::Standing,
            angle: Angle::Front,
            analysis: None,
        }
        .into()
    }

    fn add_image(id: &str, seed: u8) -> SubjectCommand {
        SubjectCommand::AddSubjectBaseImage {
            image_id: image_id(id),
            asset: asset(seed),
            pose: Pose::Standing,
            angle: Angle::Front,
            analysis: None,
        }
    }

    fn retired() -> SubjectEvent {
        SubjectRetired { reason: text("contract ended") }.into()
    }

    #[test]
    fn creating_a_new_subject_records_subject_created() {
        given::<Subject>(&[]).when(&create_command()).then(&[created()]);
    }

    #[test]
    fn creating_a_subject_that_exists_is_rejected() {
        given::<Subject>(&[created()])
            .when(&create_command())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn every_command_but_create_on_a_subject_that_does_not_exist_is_rejected() {
        let commands = [
            add_image("front", 1),
            SubjectCommand::RemoveSubjectBaseImage { image_id: image_id("front") },
            SubjectCommand::UpdateSubjectDescription { description: text("Someone") },
            SubjectCommand::RetireSubject { reason: text("no longer needed") },
        ];
        for command in &commands {
            given::<Subject>(&[])
                .when(command)
                .then_rejected(|e| *e == DomainError::NotFound { kind: AggregateKind::Subject });
        }
    }

    #[test]
    fn adding_a_base_image_records_its_pose_and_angle() {
        let command = SubjectCommand::AddSubjectBaseImage {
            image_id: image_id("seated-side"),
            asset: asset(3),
            pose: Pose::Seated,
            angle: Angle::ThreeQuarter,
            analysis: None,
        };
        given::<Subject>(&[created()]).when(&command).then(&[SubjectBaseImageAdded {
            image_id: image_id("seated-side"),
            asset: asset(3),
            pose: Pose::Seated,
            angle: Angle::ThreeQuarter,
            analysis: None,
        }
        .into()]);
    }

    #[test]
    fn adding_the_same_base_image_again_records_nothing() {
        given::<Subject>(&[created(), image_added("front", 1)]).when(&add_image("front", 1)).then(&[]);
    }

    #[test]
    fn adding_another_file_under_a_taken_image_id_is_rejected() {
        given::<Subject>(&[created(), image_added("front", 1)])
            .when(&add_image("front", 2))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("remove it first")));
    }

    #[test]
    fn adding_a_file_already_attached_under_another_id_is_rejected() {
        given::<Subject>(&[created(), image_added("front", 1)])
            .when(&add_image("front-2", 1))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("already attached")));
    }

    #[test]
    fn adding_more_than_the_base_image_limit_is_rejected() {
        let mut history = vec![created()];
        history.extend((0..MAX_BASE_IMAGES).map(|i| image_added(&format!("i{i}"), i as u8)));
        given::<Subject>(&history)
            .when(&add_image("one-more", 200))
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("remove one first")));
    }

    #[test]
    fn removing_a_base_image_records_base_image_removed() {
        given::<Subject>(&[created(), image_added("front", 1)])
            .when(&SubjectCommand::RemoveSubjectBaseImage { image_id: image_id("front") })
            .then(&[SubjectBaseImageRemoved { image_id: image_id("front") }.into()]);
    }

    #[test]
    fn removing_an_unknown_base_image_is_rejected() {
        given::<Subject>(&[created()])
            .when(&SubjectCommand::RemoveSubjectBaseImage { image_id: image_id("nope") })
            .then_rejected(|e| matches!(e, DomainError::RuleViolated(m) if m.contains("no base image nope")));
    }

    #[test]
    fn updating_the_description_records_description_updated() {
        given::<Subject>(&[created()])
            .when(&SubjectCommand::UpdateSubjectDescription {
                description: text("Woman, thirties, red hair"),
            })
            .then(&[SubjectDescriptionUpdated { description: text("Woman, thirties, red hair") }.into()]);
    }

    #[test]
    fn updating_the_description_to_the_current_one_records_nothing() {
        given::<Subject>(&[created()])
            .when(&SubjectCommand::UpdateSubjectDescription {
                description: text("Woman, late twenties, short dark hair, athletic build"),
            })
            .then(&[]);
    }

    #[test]
    fn retiring_a_subject_records_subject_retired_with_the_reason() {
        given::<Subject>(&[created()])
            .when(&SubjectCommand::RetireSubject { reason: text("contract ended") })
            .then(&[retired()]);
    }

    #[test]
    fn retiring_a_retired_subject_again_records_nothing() {
        given::<Subject>(&[created(), retired()])
            .when(&SubjectCommand::RetireSubject { reason: text("still gone") })
            .then(&[]);
    }

    #[test]
    fn a_retired_subject_accepts_no_changes() {
        let commands = [
            add_image("side", 2),
            SubjectCommand::RemoveSubjectBaseImage { image_id: image_id("front") },
            SubjectCommand::UpdateSubjectDescription { description: text("Someone else") },
        ];
        for command in &commands {
            given::<Subject>(&[created(), image_added("front", 1), retired()]).when(command).then_rejected(
                |e| matches!(e, DomainError::InvalidState(m) if m.contains("create a new subject")),
            );
        }
    }

    #[test]
    fn a_subject_is_usable_only_once_it_has_a_base_image_and_until_it_is_retired() {
        assert!(!Subject::replay(&[]).is_usable());
        assert!(!Subject::replay(&[created()]).is_usable());
        assert!(Subject::replay(&[created(), image_added("front", 1)]).is_usable());
        assert!(!Subject::replay(&[created(), image_added("front", 1), retired()]).is_usable());
        let removed = SubjectBaseImageRemoved { image_id: image_id("front") }.into();
        assert!(!Subject::replay(&[created(), image_added("front", 1), removed]).is_usable());
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let state = Subject::replay(&[
            created(),
            image_added("front", 1),
            image_added("back", 2),
            SubjectBaseImageRemoved { image_id: image_id("front") }.into(),
            SubjectDescriptionUpdated { description: text("Woman, thirties") }.into(),
        ]);
        assert_eq!(state.base_images.keys().map(ImageId::as_str).collect::<Vec<_>>(), ["back"]);
        assert_eq!(state.details.as_ref().map(|d| &d.description), Some(&text("Woman, thirties")));
        assert_eq!(state.retired, None);
        crate::testing::assert_snapshot_round_trip(&state);
    }
}
