//! The Style aggregate: a named visual style (background, lighting, mood, prompt
//! fragments, reference images, do / don't guidelines). Each complete definition
//! is a version: creation records version 1, every revision the next number, so
//! a generation can carry `(version, StyleDefinition)` as a snapshot and stay
//! reproducible however the style changes later.
//!
//! An archived style accepts no revisions and is not offered for new looks; it
//! is never deleted, because generations refer to its versions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, InvalidValue, StyleId};
use crate::values::{AssetRef, Colour, Name, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most guidelines one style definition may hold.
pub const MAX_GUIDELINES: usize = 50;
/// The most characters one guideline may have; longer rules are split.
pub const MAX_GUIDELINE_CHARS: usize = 500;
/// The most reference images one style definition may hold.
pub const MAX_REFERENCE_IMAGES: usize = 20;
/// The most prompt fragments of each polarity (positive, negative).
pub const MAX_PROMPT_FRAGMENTS: usize = 50;

/// Whether a guideline asks for something or forbids it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuidelineKind {
    /// Do this.
    Do,
    /// Don't do this.
    Dont,
}

/// One brand guideline: a do or a don't, e.g. "don't crop the shoes".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Guideline {
    /// Do or don't.
    pub kind: GuidelineKind,
    /// The rule in words; never empty.
    pub text: Text,
}

impl Guideline {
    /// Builds a guideline from typed text, refusing empty text.
    pub fn parse(kind: GuidelineKind, text: &str) -> Result<Self, InvalidValue> {
        let text = Text::parse(text).map_err(|error| InvalidValue { what: "guideline", ..error })?;
        Ok(Guideline { kind, text })
    }
}

/// A complete style definition: what a generation needs to render the style.
/// The Generation aggregate carries it as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StyleDefinition {
    /// The background, e.g. "seamless paper, warm off-white".
    pub background: Text,
    /// The background colour, when it is a solid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_colour: Option<Colour>,
    /// The lighting, e.g. "soft key from the left, gentle fill".
    pub lighting: Text,
    /// The mood, e.g. "calm, confident, editorial".
    pub mood: Text,
    /// Prompt fragments that steer towards the style.
    pub positive_prompt: Vec<Text>,
    /// Prompt fragments that steer away from what the style is not.
    pub negative_prompt: Vec<Text>,
    /// Reference images of the style.
    pub reference_images: Vec<AssetRef>,
    /// Brand guidelines as do / don't rules.
    pub guidelines: Vec<Guideline>,
}

impl StyleDefinition {
    /// Checks the list bounds and the consistency of references and guidelines,
    /// explaining the first problem.
    pub fn validate(&self) -> Result<(), DomainError> {
        for (fragments, polarity) in
            [(&self.positive_prompt, "positive"), (&self.negative_prompt, "negative")]
        {
            if fragments.len() > MAX_PROMPT_FRAGMENTS {
                return Err(DomainError::rule(format!(
                    "a style has at most {MAX_PROMPT_FRAGMENTS} {polarity} prompt fragments; {} were given",
                    fragments.len()
                )));
            }
        }
        if self.reference_images.len() > MAX_REFERENCE_IMAGES {
            return Err(DomainError::rule(format!(
                "a style has at most {MAX_REFERENCE_IMAGES} reference images; {} were given, remove some",
                self.reference_images.len()
            )));
        }
        let mut seen_images = BTreeMap::new();
        for (position, image) in self.reference_images.iter().enumerate() {
            if !image.media_type.starts_with("image/") {
                return Err(DomainError::rule(format!(
                    "reference image {} is {}; references must be images",
                    position + 1,
                    image.media_type
                )));
            }
            if let Some(first) = seen_images.insert(&image.hash, position) {
                return Err(DomainError::rule(format!(
                    "reference images {} and {} are the same file; keep one",
                    first + 1,
                    position + 1
                )));
            }
        }
        if self.guidelines.len() > MAX_GUIDELINES {
            return Err(DomainError::rule(format!(
                "a style has at most {MAX_GUIDELINES} guidelines; {} were given, merge or remove some",
                self.guidelines.len()
            )));
        }
        // Guidelines are compared case-insensitively: "No props" and "no props"
        // are the same rule, and a do and a don't with the same words contradict.
        let mut seen_rules: BTreeMap<String, GuidelineKind> = BTreeMap::new();
        for guideline in &self.guidelines {
            let text = guideline.text.as_str();
            if text.chars().count() > MAX_GUIDELINE_CHARS {
                let start: String = text.chars().take(40).collect();
                return Err(DomainError::rule(format!(
                    "the guideline starting {start:?} is longer than {MAX_GUIDELINE_CHARS} characters; \
                     split it into shorter rules"
                )));
            }
            match seen_rules.insert(text.to_lowercase(), guideline.kind) {
                Some(kind) if kind == guideline.kind => {
                    return Err(DomainError::rule(format!("guideline {text:?} appears twice; keep one")));
                }
                Some(_) => {
                    return Err(DomainError::rule(format!(
                        "guideline {text:?} is both a do and a don't; keep the one you mean"
                    )));
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Style commands.
#[derive(Debug, Clone, PartialEq)]
pub enum StyleCommand {
    /// Creates a style with its first definition (version 1).
    CreateStyle {
        /// The new style's id.
        style_id: StyleId,
        /// The owning brand.
        brand_id: BrandId,
        /// Display name.
        name: Name,
        /// The first definition.
        definition: StyleDefinition,
    },
    /// Records a new complete definition as the next version.
    ReviseStyle {
        /// The new definition, complete.
        definition: StyleDefinition,
    },
    /// Adds one reference image to the current definition, recorded as the
    /// next version (an upload adds to what is there, without resending the
    /// whole definition, so it cannot overwrite a concurrent revision).
    AddStyleReferenceImage {
        /// The uploaded image.
        asset: AssetRef,
    },
    /// Archives the style: no more revisions, not offered for new looks.
    ArchiveStyle {
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
}

/// A style was created with its first definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StyleCreated {
    /// The style's id.
    pub style_id: StyleId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// Display name.
    pub name: Name,
    /// The version of `definition`: always 1 here.
    pub version: u32,
    /// The first definition.
    pub definition: StyleDefinition,
}

/// A style got a new definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StyleRevised {
    /// The new version number (2, 3, …).
    pub version: u32,
    /// The new, complete definition.
    pub definition: StyleDefinition,
}

/// A style was archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StyleArchived {
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

crate::domain_events! {
    aggregate: Style,
    /// Style events.
    pub enum StyleEvent {
        /// See [`StyleCreated`].
        Created(StyleCreated) = ("style.created", 1),
        /// See [`StyleRevised`].
        Revised(StyleRevised) = ("style.revised", 1),
        /// See [`StyleArchived`].
        Archived(StyleArchived) = ("style.archived", 1),
    }
}

/// The state of a style, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Style {
    /// Present once created; `version` and `definition` follow revisions.
    pub details: Option<StyleCreated>,
    /// Whether the style is archived.
    pub archived: bool,
}

impl Style {
    /// The current version number and definition, once created.
    pub fn current(&self) -> Option<(u32, &StyleDefinition)> {
        self.details.as_ref().map(|details| (details.version, &details.definition))
    }

    /// Whether the style may be picked for a new look: it exists and is not archived.
    pub fn is_usable(&self) -> bool {
        self.details.is_some() && !self.archived
    }

    fn existing(&self) -> Result<&StyleCreated, DomainError> {
        self.details.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Style })
    }
}

impl Aggregate for Style {
    const KIND: AggregateKind = AggregateKind::Style;
    const STATE_VERSION: u32 = 1;
    type Command = StyleCommand;
    type Event = StyleEvent;

    fn decide(&self, command: &StyleCommand) -> Result<Vec<StyleEvent>, DomainError> {
        match command {
            StyleCommand::CreateStyle { style_id, brand_id, name, definition } => {
                if self.details.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Style,
                        id: style_id.to_string(),
                    });
                }
                definition.validate()?;
                Ok(vec![
                    StyleCreated {
                        style_id: style_id.clone(),
                        brand_id: brand_id.clone(),
                        name: name.clone(),
                        version: 1,
                        definition: definition.clone(),
                    }
                    .into(),
                ])
            }
            StyleCommand::ReviseStyle { definition } => {
                let current = self.existing()?;
                if self.archived {
                    return Err(DomainError::invalid_state(format!(
                        "style {} is archived and accepts no revisions; create a new style instead",
                        current.style_id
                    )));
                }
                definition.validate()?;
                if current.definition == *definition {
                    return Ok(vec![]);
                }
                Ok(vec![StyleRevised { version: current.version + 1, definition: definition.clone() }.into()])
            }
            StyleCommand::AddStyleReferenceImage { asset } => {
                let current = self.existing()?;
                if self.archived {
                    return Err(DomainError::invalid_state(format!(
                        "style {} is archived and accepts no revisions; create a new style instead",
                        current.style_id
                    )));
                }
                // The same file again changes nothing: uploads are retried.
                if current.definition.reference_images.iter().any(|image| image.hash == asset.hash) {
                    return Ok(vec![]);
                }
                let mut definition = current.definition.clone();
                definition.reference_images.push(asset.clone());
                definition.validate()?;
                Ok(vec![StyleRevised { version: current.version + 1, definition }.into()])
            }
            StyleCommand::ArchiveStyle { reason } => {
                self.existing()?;
                if self.archived {
                    return Ok(vec![]);
                }
                Ok(vec![StyleArchived { reason: reason.clone() }.into()])
            }
        }
    }

    fn evolve(mut self, event: &StyleEvent) -> Self {
        match event {
            StyleEvent::Created(created) => self.details = Some(created.clone()),
            StyleEvent::Revised(revised) => {
                if let Some(details) = self.details.as_mut() {
                    details.version = revised.version;
                    details.definition = revised.definition.clone();
                }
            }
            StyleEvent::Archived(_) => self.archived = true,
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

    fn guideline(kind: GuidelineKind, value: &str) -> Guideline {
        Guideline::parse(kind, value).expect("guideline")
    }

    fn definition() -> StyleDefinition {
        StyleDefinition {
            background: text("seamless paper, warm off-white"),
            background_colour: Some(Colour::parse("#F5F0E8").expect("colour")),
            lighting: text("soft key from the left, gentle fill"),
            mood: text("calm, confident, editorial"),
            positive_prompt: vec![text("natural skin texture"), text("crisp fabric detail")],
            negative_prompt: vec![text("harsh shadows")],
            reference_images: vec![asset(1), asset(2)],
            guidelines: vec![
                guideline(GuidelineKind::Do, "show the full garment"),
                guideline(GuidelineKind::Dont, "crop the shoes"),
            ],
        }
    }

    fn revised_definition() -> StyleDefinition {
        StyleDefinition { mood: text("playful, sunny"), ..definition() }
    }

    fn created() -> StyleEvent {
        StyleCreated {
            style_id: StyleId::parse("studio-warm").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Studio warm").expect("name"),
            version: 1,
            definition: definition(),
        }
        .into()
    }

    fn create_with(definition: StyleDefinition) -> StyleCommand {
        StyleCommand::CreateStyle {
            style_id: StyleId::parse("studio-warm").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Studio warm").expect("name"),
            definition,
        }
    }

    fn archived() -> StyleEvent {
        StyleArchived { reason: None }.into()
    }

    fn is_rule(error: &DomainError, needle: &str) -> bool {
        matches!(error, DomainError::RuleViolated(message) if message.contains(needle))
    }

    #[test]
    fn creating_a_new_style_records_its_definition_as_version_1() {
        given::<Style>(&[]).when(&create_with(definition())).then(&[created()]);
    }

    #[test]
    fn creating_a_style_that_exists_is_rejected() {
        given::<Style>(&[created()])
            .when(&create_with(definition()))
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn every_command_but_create_on_a_style_that_does_not_exist_is_rejected() {
        let commands = [
            StyleCommand::ReviseStyle { definition: revised_definition() },
            StyleCommand::ArchiveStyle { reason: None },
        ];
        for command in &commands {
            given::<Style>(&[])
                .when(command)
                .then_rejected(|e| *e == DomainError::NotFound { kind: AggregateKind::Style });
        }
    }

    #[test]
    fn creating_a_style_with_too_many_guidelines_is_rejected() {
        let guidelines =
            (0..=MAX_GUIDELINES).map(|i| guideline(GuidelineKind::Do, &format!("rule {i}"))).collect();
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { guidelines, ..definition() }))
            .then_rejected(|e| is_rule(e, "at most 50 guidelines"));
    }

    #[test]
    fn creating_a_style_with_an_over_long_guideline_is_rejected() {
        let guidelines = vec![guideline(GuidelineKind::Do, &"a".repeat(MAX_GUIDELINE_CHARS + 1))];
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { guidelines, ..definition() }))
            .then_rejected(|e| is_rule(e, "split it into shorter rules"));
    }

    #[test]
    fn creating_a_style_with_the_same_guideline_twice_is_rejected() {
        let guidelines = vec![
            guideline(GuidelineKind::Dont, "crop the shoes"),
            guideline(GuidelineKind::Dont, "Crop the shoes"),
        ];
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { guidelines, ..definition() }))
            .then_rejected(|e| is_rule(e, "appears twice"));
    }

    #[test]
    fn creating_a_style_whose_guideline_is_both_a_do_and_a_dont_is_rejected() {
        let guidelines =
            vec![guideline(GuidelineKind::Do, "use props"), guideline(GuidelineKind::Dont, "use props")];
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { guidelines, ..definition() }))
            .then_rejected(|e| is_rule(e, "both a do and a don't"));
    }

    #[test]
    fn a_guideline_with_empty_text_cannot_be_made_or_decoded() {
        let error = Guideline::parse(GuidelineKind::Do, "   ").expect_err("empty");
        assert_eq!(error.what, "guideline");
        let json = serde_json::json!({ "kind": "do", "text": "" });
        assert!(serde_json::from_value::<Guideline>(json).is_err());
    }

    #[test]
    fn creating_a_style_with_too_many_reference_images_is_rejected() {
        let reference_images = (0..=MAX_REFERENCE_IMAGES as u8).map(asset).collect();
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { reference_images, ..definition() }))
            .then_rejected(|e| is_rule(e, "at most 20 reference images"));
    }

    #[test]
    fn creating_a_style_with_the_same_reference_image_twice_is_rejected() {
        given::<Style>(&[])
            .when(&create_with(StyleDefinition {
                reference_images: vec![asset(1), asset(1)],
                ..definition()
            }))
            .then_rejected(|e| is_rule(e, "reference images 1 and 2 are the same file"));
    }

    #[test]
    fn creating_a_style_with_a_reference_that_is_not_an_image_is_rejected() {
        let video = AssetRef { media_type: "video/mp4".into(), ..asset(1) };
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { reference_images: vec![video], ..definition() }))
            .then_rejected(|e| is_rule(e, "references must be images"));
    }

    #[test]
    fn creating_a_style_with_too_many_prompt_fragments_is_rejected() {
        let fragments: Vec<Text> =
            (0..=MAX_PROMPT_FRAGMENTS).map(|i| text(&format!("fragment {i}"))).collect();
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { positive_prompt: fragments.clone(), ..definition() }))
            .then_rejected(|e| is_rule(e, "positive prompt fragments"));
        given::<Style>(&[])
            .when(&create_with(StyleDefinition { negative_prompt: fragments, ..definition() }))
            .then_rejected(|e| is_rule(e, "negative prompt fragments"));
    }

    #[test]
    fn revising_a_style_records_the_next_version() {
        given::<Style>(&[created()])
            .when(&StyleCommand::ReviseStyle { definition: revised_definition() })
            .then(&[StyleRevised { version: 2, definition: revised_definition() }.into()]);
        given::<Style>(&[created(), StyleRevised { version: 2, definition: revised_definition() }.into()])
            .when(&StyleCommand::ReviseStyle { definition: definition() })
            .then(&[StyleRevised { version: 3, definition: definition() }.into()]);
    }

    #[test]
    fn a_revision_identical_to_the_current_definition_records_nothing() {
        given::<Style>(&[created()]).when(&StyleCommand::ReviseStyle { definition: definition() }).then(&[]);
    }

    #[test]
    fn revising_a_style_with_an_invalid_definition_is_rejected() {
        let definition = StyleDefinition { reference_images: vec![asset(1), asset(1)], ..definition() };
        given::<Style>(&[created()])
            .when(&StyleCommand::ReviseStyle { definition })
            .then_rejected(|e| is_rule(e, "same file"));
    }

    #[test]
    fn revising_an_archived_style_is_rejected() {
        given::<Style>(&[created(), archived()])
            .when(&StyleCommand::ReviseStyle { definition: revised_definition() })
            .then_rejected(|e| matches!(e, DomainError::InvalidState(m) if m.contains("create a new style")));
    }

    #[test]
    fn archiving_records_archived_and_archiving_again_records_nothing() {
        let reason = Some(text("summer campaign over"));
        given::<Style>(&[created()])
            .when(&StyleCommand::ArchiveStyle { reason: reason.clone() })
            .then(&[StyleArchived { reason }.into()]);
        given::<Style>(&[created(), archived()]).when(&StyleCommand::ArchiveStyle { reason: None }).then(&[]);
    }

    #[test]
    fn the_current_definition_is_the_latest_version_and_none_before_creation() {
        assert_eq!(Style::default().current(), None);
        let state = Style::replay(&[created()]);
        assert_eq!(state.current(), Some((1, &definition())));
        assert!(state.is_usable());
        assert!(!Style::replay(&[created(), archived()]).is_usable());
    }

    #[test]
    fn a_revision_survives_the_wire_round_trip() {
        let event: StyleEvent = StyleRevised { version: 2, definition: revised_definition() }.into();
        let encoded = crate::wire::encode(&event);
        assert_eq!(encoded.event_type, "style.revised");
        let decoded: StyleEvent =
            crate::wire::decode(encoded.event_type, encoded.schema_version, encoded.payload)
                .expect("decodes");
        assert_eq!(decoded, event);
    }

    #[test]
    fn replaying_the_events_rebuilds_the_state() {
        let state = Style::replay(&[
            created(),
            StyleRevised { version: 2, definition: revised_definition() }.into(),
            StyleRevised { version: 3, definition: definition() }.into(),
            archived(),
        ]);
        assert_eq!(state.current(), Some((3, &definition())));
        assert!(state.archived);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn adding_a_reference_image_records_the_next_version_with_it() {
        let mut expected = definition();
        expected.reference_images.push(asset(9));
        given::<Style>(&[created()])
            .when(&StyleCommand::AddStyleReferenceImage { asset: asset(9) })
            .then(&[StyleRevised { version: 2, definition: expected }.into()]);
    }

    #[test]
    fn adding_a_reference_image_already_there_records_nothing() {
        let first = definition().reference_images[0].clone();
        given::<Style>(&[created()]).when(&StyleCommand::AddStyleReferenceImage { asset: first }).then(&[]);
    }
}
