//! The Look aggregate: one look of a shooting (its products, subject, style,
//! guidelines and shot types). Each look is its own aggregate so that the looks of
//! one shooting can be edited concurrently without conflicting on one stream.
//!
//! Key invariant: a launched shooting takes no new or changed looks without a new
//! launch. The look cannot load its shooting (the domain does no IO), so every
//! command carries the shooting's [`ShootingView`], loaded by the command path, and
//! is refused unless that shooting is a draft. A look whose subject, style or shot
//! types are unset uses the shooting's defaults.
//!
//! Decision: `RemoveLook` on a removed look is already satisfied and records
//! nothing; every other command on a removed look is refused. A removed look's id
//! stays taken.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, LookId, ProductId, ShootingId, StyleId, SubjectId};
use crate::shooting::{LookAtLaunch, ShootingView, check_shot_types};
use crate::values::{Name, ShotType, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most products one look may combine.
pub const MAX_PRODUCTS: usize = 10;
/// The most rules each guideline list (dos, don'ts) may hold.
pub const MAX_GUIDELINES: usize = 20;
/// The longest accepted guideline, in characters.
pub const MAX_GUIDELINE_CHARS: usize = 500;

/// Free-text rules for the look's images, read by the prompt step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LookGuidelines {
    /// What the images must do, e.g. "show the back pleat".
    #[serde(default)]
    pub dos: Vec<Text>,
    /// What the images must not do, e.g. "no sunglasses".
    #[serde(default)]
    pub donts: Vec<Text>,
}

/// Look commands. Each carries the current state of the look's shooting.
#[derive(Debug, Clone, PartialEq)]
pub enum LookCommand {
    /// Adds a look to a draft shooting.
    CreateLook {
        /// The new look's id.
        look_id: LookId,
        /// The owning brand.
        brand_id: BrandId,
        /// The shooting the look belongs to.
        shooting_id: ShootingId,
        /// Display name.
        name: Name,
        /// The products worn or shown, 1 to 10, each once; the first is the main one.
        products: Vec<ProductId>,
        /// The subject, or `None` to use the shooting's default.
        subject: Option<SubjectId>,
        /// The style, or `None` to use the shooting's default.
        style: Option<StyleId>,
        /// Do / don't rules.
        guidelines: LookGuidelines,
        /// The look's own shot types, or `None` to use the shooting's defaults.
        shot_types: Option<Vec<ShotType>>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Renames the look.
    RenameLook {
        /// The new name.
        name: Name,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Replaces the look's products.
    ChangeLookProducts {
        /// The new products, 1 to 10, each once.
        products: Vec<ProductId>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Sets the look's subject, or `None` to use the shooting's default.
    ChangeLookSubject {
        /// The new subject.
        subject: Option<SubjectId>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Sets the look's style, or `None` to use the shooting's default.
    ChangeLookStyle {
        /// The new style.
        style: Option<StyleId>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Replaces the look's guidelines.
    SetLookGuidelines {
        /// The new guidelines, as a whole.
        guidelines: LookGuidelines,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Sets the look's own shot types, or `None` to use the shooting's defaults.
    SetLookShotTypes {
        /// The new shot types.
        shot_types: Option<Vec<ShotType>>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
    /// Removes the look from its shooting.
    RemoveLook {
        /// Why, for the activity feed.
        reason: Option<Text>,
        /// The shooting's current state.
        shooting: ShootingView,
    },
}

impl LookCommand {
    /// The shooting state the command carries.
    pub fn shooting(&self) -> &ShootingView {
        match self {
            LookCommand::CreateLook { shooting, .. }
            | LookCommand::RenameLook { shooting, .. }
            | LookCommand::ChangeLookProducts { shooting, .. }
            | LookCommand::ChangeLookSubject { shooting, .. }
            | LookCommand::ChangeLookStyle { shooting, .. }
            | LookCommand::SetLookGuidelines { shooting, .. }
            | LookCommand::SetLookShotTypes { shooting, .. }
            | LookCommand::RemoveLook { shooting, .. } => shooting,
        }
    }
}

/// A look was added to a shooting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookCreated {
    /// The look's id.
    pub look_id: LookId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// The shooting it belongs to.
    pub shooting_id: ShootingId,
    /// Display name.
    pub name: Name,
    /// The products, the main one first.
    pub products: Vec<ProductId>,
    /// Its own subject; absent means the shooting's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectId>,
    /// Its own style; absent means the shooting's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<StyleId>,
    /// Do / don't rules.
    #[serde(default)]
    pub guidelines: LookGuidelines,
    /// Its own shot types; absent means the shooting's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shot_types: Option<Vec<ShotType>>,
}

/// The look was renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookRenamed {
    /// The new name.
    pub name: Name,
}

/// The look's products were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookProductsChanged {
    /// The new products, the main one first.
    pub products: Vec<ProductId>,
}

/// The look's subject changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookSubjectChanged {
    /// The new subject; `null` means the shooting's default from now on.
    pub subject: Option<SubjectId>,
}

/// The look's style changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookStyleChanged {
    /// The new style; `null` means the shooting's default from now on.
    pub style: Option<StyleId>,
}

/// The look's guidelines were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookGuidelinesSet {
    /// The new guidelines, as a whole.
    pub guidelines: LookGuidelines,
}

/// The look's own shot types changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookShotTypesSet {
    /// The new shot types; `null` means the shooting's defaults from now on.
    pub shot_types: Option<Vec<ShotType>>,
}

/// The look was removed from its shooting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LookRemoved {
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

crate::domain_events! {
    aggregate: Look,
    /// Look events.
    pub enum LookEvent {
        /// See [`LookCreated`].
        Created(LookCreated) = ("look.created", 1),
        /// See [`LookRenamed`].
        Renamed(LookRenamed) = ("look.renamed", 1),
        /// See [`LookProductsChanged`].
        ProductsChanged(LookProductsChanged) = ("look.products_changed", 1),
        /// See [`LookSubjectChanged`].
        SubjectChanged(LookSubjectChanged) = ("look.subject_changed", 1),
        /// See [`LookStyleChanged`].
        StyleChanged(LookStyleChanged) = ("look.style_changed", 1),
        /// See [`LookGuidelinesSet`].
        GuidelinesSet(LookGuidelinesSet) = ("look.guidelines_set", 1),
        /// See [`LookShotTypesSet`].
        ShotTypesSet(LookShotTypesSet) = ("look.shot_types_set", 1),
        /// See [`LookRemoved`].
        Removed(LookRemoved) = ("look.removed", 1),
    }
}

/// The state of a look, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Look {
    /// Present once created; kept current by later events.
    pub details: Option<LookCreated>,
    /// Whether the look was removed.
    pub removed: bool,
}

impl Look {
    /// The shot types the look is generated in: its own, else the shooting's defaults.
    pub fn effective_shot_types(&self, shooting: &ShootingView) -> Vec<ShotType> {
        match self.details.as_ref().and_then(|details| details.shot_types.as_ref()) {
            Some(own) => own.clone(),
            None => shooting.defaults.shot_types.clone(),
        }
    }

    /// The subject the look is generated with: its own, else the shooting's default.
    pub fn effective_subject(&self, shooting: &ShootingView) -> Option<SubjectId> {
        self.details
            .as_ref()
            .and_then(|details| details.subject.clone())
            .or(shooting.defaults.subject.clone())
    }

    /// The style the look is generated in: its own, else the shooting's default.
    pub fn effective_style(&self, shooting: &ShootingView) -> Option<StyleId> {
        self.details.as_ref().and_then(|details| details.style.clone()).or(shooting.defaults.style.clone())
    }

    /// What `LaunchShooting` needs to know of this look; `None` when it does not
    /// exist or was removed, so it is not launched.
    pub fn at_launch(&self) -> Option<LookAtLaunch> {
        let details = self.details.as_ref().filter(|_| !self.removed)?;
        Some(LookAtLaunch { look_id: details.look_id.clone(), shot_types: details.shot_types.clone() })
    }

    fn existing(&self) -> Result<&LookCreated, DomainError> {
        self.details.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Look })
    }

    /// The look, if it may change now: it exists, is not removed, and the given
    /// shooting is its own and a draft.
    fn editable(&self, shooting: &ShootingView) -> Result<&LookCreated, DomainError> {
        let details = self.existing()?;
        if self.removed {
            return Err(DomainError::invalid_state(format!(
                "look {} was removed and accepts no changes; create a new look instead",
                details.look_id
            )));
        }
        check_own_shooting(&details.look_id, &details.brand_id, &details.shooting_id, shooting)?;
        shooting.check_editable("looks")?;
        Ok(details)
    }
}

/// Refuses a shooting view that is not the look's own shooting (a command path
/// that loaded the wrong shooting, or a look joining another brand's shooting).
fn check_own_shooting(
    look_id: &LookId,
    brand_id: &BrandId,
    shooting_id: &ShootingId,
    shooting: &ShootingView,
) -> Result<(), DomainError> {
    if shooting.shooting_id != *shooting_id || shooting.brand_id != *brand_id {
        return Err(DomainError::rule(format!(
            "look {look_id} belongs to shooting {shooting_id} of brand {brand_id}, but the state of \
             shooting {} of brand {} was given; pass the look's own shooting",
            shooting.shooting_id, shooting.brand_id
        )));
    }
    Ok(())
}

fn check_products(products: &[ProductId]) -> Result<(), DomainError> {
    if products.is_empty() {
        return Err(DomainError::rule("a look needs at least one product; add the products it shows"));
    }
    if products.len() > MAX_PRODUCTS {
        return Err(DomainError::rule(format!(
            "a look combines at most {MAX_PRODUCTS} products; {} were given, so split them into several looks",
            products.len()
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(repeated) = products.iter().find(|product| !seen.insert(*product)) {
        return Err(DomainError::rule(format!(
            "product {repeated} is listed twice; list each product of a look once"
        )));
    }
    Ok(())
}

fn check_look_shot_types(shot_types: Option<&Vec<ShotType>>) -> Result<(), DomainError> {
    match shot_types {
        None => Ok(()),
        Some(own) if own.is_empty() => Err(DomainError::rule(
            "give the look at least one shot type, or none at all to use the shooting's default shot types",
        )),
        Some(own) => check_shot_types(own, "the look's shot types"),
    }
}

fn check_guidelines(guidelines: &LookGuidelines) -> Result<(), DomainError> {
    for (list, rules) in [("dos", &guidelines.dos), ("don'ts", &guidelines.donts)] {
        if rules.len() > MAX_GUIDELINES {
            return Err(DomainError::rule(format!(
                "the guidelines list {} {list}; at most {MAX_GUIDELINES} are allowed, so merge some",
                rules.len()
            )));
        }
        if let Some(long) = rules.iter().find(|rule| rule.as_str().chars().count() > MAX_GUIDELINE_CHARS) {
            return Err(DomainError::rule(format!(
                "a guideline is {} characters long; the limit is {MAX_GUIDELINE_CHARS}, so shorten or split it",
                long.as_str().chars().count()
            )));
        }
        let mut seen = BTreeSet::new();
        if let Some(repeated) = rules.iter().find(|rule| !seen.insert(*rule)) {
            return Err(DomainError::rule(format!(
                "the guideline {:?} is listed twice among the {list}; give it once",
                repeated.as_str()
            )));
        }
    }
    if let Some(both) = guidelines.dos.iter().find(|rule| guidelines.donts.contains(rule)) {
        return Err(DomainError::rule(format!(
            "the guideline {:?} is both a do and a don't; keep it in one list",
            both.as_str()
        )));
    }
    Ok(())
}

impl Aggregate for Look {
    const KIND: AggregateKind = AggregateKind::Look;
    const STATE_VERSION: u32 = 1;
    type Command = LookCommand;
    type Event = LookEvent;

    fn decide(&self, command: &LookCommand) -> Result<Vec<LookEvent>, DomainError> {
        match command {
            LookCommand::CreateLook {
                look_id,
                brand_id,
                shooting_id,
                name,
                products,
                subject,
                style,
                guidelines,
                shot_types,
                shooting,
            } => {
                if self.details.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Look,
                        id: look_id.to_string(),
                    });
                }
                check_own_shooting(look_id, brand_id, shooting_id, shooting)?;
                shooting.check_editable("looks")?;
                check_products(products)?;
                check_look_shot_types(shot_types.as_ref())?;
                check_guidelines(guidelines)?;
                Ok(vec![
                    LookCreated {
                        look_id: look_id.clone(),
                        brand_id: brand_id.clone(),
                        shooting_id: shooting_id.clone(),
                        name: name.clone(),
                        products: products.clone(),
                        subject: subject.clone(),
                        style: style.clone(),
                        guidelines: guidelines.clone(),
                        shot_types: shot_types.clone(),
                    }
                    .into(),
                ])
            }
            LookCommand::RenameLook { name, shooting } => {
                let current = self.editable(shooting)?;
                if current.name == *name {
                    return Ok(vec![]);
                }
                Ok(vec![LookRenamed { name: name.clone() }.into()])
            }
            LookCommand::ChangeLookProducts { products, shooting } => {
                let current = self.editable(shooting)?;
                check_products(products)?;
                if current.products == *products {
                    return Ok(vec![]);
                }
                Ok(vec![LookProductsChanged { products: products.clone() }.into()])
            }
            LookCommand::ChangeLookSubject { subject, shooting } => {
                let current = self.editable(shooting)?;
                if current.subject == *subject {
                    return Ok(vec![]);
                }
                Ok(vec![LookSubjectChanged { subject: subject.clone() }.into()])
            }
            LookCommand::ChangeLookStyle { style, shooting } => {
                let current = self.editable(shooting)?;
                if current.style == *style {
                    return Ok(vec![]);
                }
                Ok(vec![LookStyleChanged { style: style.clone() }.into()])
            }
            LookCommand::SetLookGuidelines { guidelines, shooting } => {
                let current = self.editable(shooting)?;
                check_guidelines(guidelines)?;
                if current.guidelines == *guidelines {
                    return Ok(vec![]);
                }
                Ok(vec![LookGuidelinesSet { guidelines: guidelines.clone() }.into()])
            }
            LookCommand::SetLookShotTypes { shot_types, shooting } => {
                let current = self.editable(shooting)?;
                check_look_shot_types(shot_types.as_ref())?;
                if current.shot_types == *shot_types {
                    return Ok(vec![]);
                }
                Ok(vec![LookShotTypesSet { shot_types: shot_types.clone() }.into()])
            }
            LookCommand::RemoveLook { reason, shooting } => {
                self.existing()?;
                if self.removed {
                    // Removing twice is already satisfied, whatever the shooting's state.
                    return Ok(vec![]);
                }
                self.editable(shooting)?;
                Ok(vec![LookRemoved { reason: reason.clone() }.into()])
            }
        }
    }

    fn evolve(mut self, event: &LookEvent) -> Self {
        if let LookEvent::Created(created) = event {
            self.details = Some(created.clone());
            return self;
        }
        let Some(details) = self.details.as_mut() else {
            // Events before creation cannot be decided; ignore them rather than panic.
            return self;
        };
        match event {
            LookEvent::Created(_) => {}
            LookEvent::Renamed(renamed) => details.name = renamed.name.clone(),
            LookEvent::ProductsChanged(changed) => details.products = changed.products.clone(),
            LookEvent::SubjectChanged(changed) => details.subject = changed.subject.clone(),
            LookEvent::StyleChanged(changed) => details.style = changed.style.clone(),
            LookEvent::GuidelinesSet(set) => details.guidelines = set.guidelines.clone(),
            LookEvent::ShotTypesSet(set) => details.shot_types = set.shot_types.clone(),
            LookEvent::Removed(_) => self.removed = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shooting::ShootingStatus;
    use crate::shooting::tests::{defaults, shot};
    use crate::testing::given;
    use crate::{DomainEvent, wire};

    fn shooting_in(status: ShootingStatus, launch_number: u32) -> ShootingView {
        ShootingView {
            shooting_id: ShootingId::parse("ss25").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Summer 25").expect("name"),
            status,
            launch_number,
            defaults: defaults(),
            rules: Default::default(),
        }
    }

    fn draft() -> ShootingView {
        shooting_in(ShootingStatus::Draft, 0)
    }

    fn product(id: &str) -> ProductId {
        ProductId::parse(id).expect("id")
    }

    fn text(rule: &str) -> Text {
        Text::parse(rule).expect("text")
    }

    fn created() -> LookEvent {
        LookCreated {
            look_id: LookId::parse("l1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            shooting_id: ShootingId::parse("ss25").expect("id"),
            name: Name::parse("Linen dress, beach").expect("name"),
            products: vec![product("dress"), product("hat")],
            subject: None,
            style: None,
            guidelines: LookGuidelines { dos: vec![text("show the back pleat")], donts: vec![] },
            shot_types: None,
        }
        .into()
    }

    fn create_command() -> LookCommand {
        let LookEvent::Created(c) = created() else { unreachable!() };
        LookCommand::CreateLook {
            look_id: c.look_id,
            brand_id: c.brand_id,
            shooting_id: c.shooting_id,
            name: c.name,
            products: c.products,
            subject: c.subject,
            style: c.style,
            guidelines: c.guidelines,
            shot_types: c.shot_types,
            shooting: draft(),
        }
    }

    /// `create_command()` with something changed.
    fn create_with(change: impl FnOnce(&mut LookCommand)) -> LookCommand {
        let mut command = create_command();
        change(&mut command);
        command
    }

    fn removed() -> LookEvent {
        LookRemoved { reason: None }.into()
    }

    /// One command of each kind after creation, each a real change.
    fn every_change(shooting: &ShootingView) -> Vec<LookCommand> {
        let shooting = shooting.clone();
        vec![
            LookCommand::RenameLook {
                name: Name::parse("Renamed").expect("name"),
                shooting: shooting.clone(),
            },
            LookCommand::ChangeLookProducts { products: vec![product("skirt")], shooting: shooting.clone() },
            LookCommand::ChangeLookSubject {
                subject: Some(SubjectId::parse("noah").expect("id")),
                shooting: shooting.clone(),
            },
            LookCommand::ChangeLookStyle {
                style: Some(StyleId::parse("noir").expect("id")),
                shooting: shooting.clone(),
            },
            LookCommand::SetLookGuidelines {
                guidelines: LookGuidelines::default(),
                shooting: shooting.clone(),
            },
            LookCommand::SetLookShotTypes {
                shot_types: Some(vec![shot("lifestyle")]),
                shooting: shooting.clone(),
            },
            LookCommand::RemoveLook { reason: None, shooting },
        ]
    }

    fn invalid_state_containing(needles: &'static [&'static str]) -> impl Fn(&DomainError) -> bool {
        move |error| matches!(error, DomainError::InvalidState(m) if needles.iter().all(|n| m.contains(n)))
    }

    fn rule_containing(needle: &'static str) -> impl FnOnce(&DomainError) -> bool {
        move |error| matches!(error, DomainError::RuleViolated(m) if m.contains(needle))
    }

    // CreateLook

    #[test]
    fn creating_a_look_in_a_draft_shooting_records_look_created() {
        given::<Look>(&[]).when(&create_command()).then(&[created()]);
    }

    #[test]
    fn creating_a_look_in_a_reopened_shooting_records_look_created() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shooting, .. } = c {
                    *shooting = shooting_in(ShootingStatus::Draft, 2);
                }
            }))
            .then(&[created()]);
    }

    #[test]
    fn creating_a_look_that_exists_is_rejected() {
        given::<Look>(&[created()])
            .when(&create_command())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { kind: AggregateKind::Look, .. }));
    }

    #[test]
    fn creating_a_look_under_the_id_of_a_removed_look_is_rejected() {
        given::<Look>(&[created(), removed()])
            .when(&create_command())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn creating_a_look_in_a_launched_shooting_is_rejected_until_a_new_launch() {
        let command = create_with(|c| {
            if let LookCommand::CreateLook { shooting, .. } = c {
                *shooting = shooting_in(ShootingStatus::Launched, 2);
            }
        });
        let error = Look::default().decide(&command).expect_err("launched");
        assert_eq!(
            error.to_string(),
            "shooting ss25 is launched (launch 2); reopen it to change its looks, then launch again"
        );
    }

    #[test]
    fn creating_a_look_in_a_completed_shooting_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shooting, .. } = c {
                    *shooting = shooting_in(ShootingStatus::Completed, 1);
                }
            }))
            .then_rejected(invalid_state_containing(&["completed", "create a new shooting"]));
    }

    #[test]
    fn creating_a_look_in_an_archived_shooting_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shooting, .. } = c {
                    *shooting = shooting_in(ShootingStatus::Archived, 0);
                }
            }))
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    #[test]
    fn creating_a_look_with_the_state_of_another_shooting_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shooting_id, .. } = c {
                    *shooting_id = ShootingId::parse("fw25").expect("id");
                }
            }))
            .then_rejected(rule_containing("pass the look's own shooting"));
    }

    #[test]
    fn creating_a_look_for_a_shooting_of_another_brand_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { brand_id, .. } = c {
                    *brand_id = BrandId::parse("other").expect("id");
                }
            }))
            .then_rejected(rule_containing("of brand acme"));
    }

    #[test]
    fn creating_a_look_without_products_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { products, .. } = c {
                    products.clear();
                }
            }))
            .then_rejected(rule_containing("at least one product"));
    }

    #[test]
    fn creating_a_look_with_more_than_ten_products_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { products, .. } = c {
                    *products = (0..=MAX_PRODUCTS).map(|i| product(&format!("p{i}"))).collect();
                }
            }))
            .then_rejected(rule_containing("split them into several looks"));
    }

    #[test]
    fn creating_a_look_with_a_product_listed_twice_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { products, .. } = c {
                    *products = vec![product("dress"), product("dress")];
                }
            }))
            .then_rejected(rule_containing("product dress is listed twice"));
    }

    #[test]
    fn creating_a_look_with_an_empty_list_of_own_shot_types_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shot_types, .. } = c {
                    *shot_types = Some(vec![]);
                }
            }))
            .then_rejected(rule_containing("at least one shot type, or none at all"));
    }

    #[test]
    fn creating_a_look_with_a_shot_type_listed_twice_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { shot_types, .. } = c {
                    *shot_types = Some(vec![shot("detail"), shot("detail")]);
                }
            }))
            .then_rejected(rule_containing("detail twice"));
    }

    #[test]
    fn creating_a_look_with_its_own_subject_style_and_shot_types_records_them() {
        let subject = Some(SubjectId::parse("noah").expect("id"));
        let style = Some(StyleId::parse("noir").expect("id"));
        let own = Some(vec![shot("lifestyle")]);
        let command = create_with(|c| {
            if let LookCommand::CreateLook { subject: s, style: st, shot_types, .. } = c {
                *s = subject.clone();
                *st = style.clone();
                *shot_types = own.clone();
            }
        });
        let LookEvent::Created(expected) = created() else { unreachable!() };
        given::<Look>(&[]).when(&command).then(&[LookCreated {
            subject,
            style,
            shot_types: own,
            ..expected
        }
        .into()]);
    }

    // Guidelines (CreateLook and SetLookGuidelines share the checks)

    fn set_guidelines(dos: Vec<Text>, donts: Vec<Text>) -> LookCommand {
        LookCommand::SetLookGuidelines { guidelines: LookGuidelines { dos, donts }, shooting: draft() }
    }

    #[test]
    fn creating_a_look_with_too_many_guidelines_is_rejected() {
        given::<Look>(&[])
            .when(&create_with(|c| {
                if let LookCommand::CreateLook { guidelines, .. } = c {
                    guidelines.donts = (0..=MAX_GUIDELINES).map(|i| text(&format!("rule {i}"))).collect();
                }
            }))
            .then_rejected(rule_containing("at most 20 are allowed"));
    }

    #[test]
    fn setting_a_guideline_longer_than_the_limit_is_rejected() {
        given::<Look>(&[created()])
            .when(&set_guidelines(vec![text(&"x".repeat(MAX_GUIDELINE_CHARS + 1))], vec![]))
            .then_rejected(rule_containing("shorten or split it"));
    }

    #[test]
    fn setting_a_guideline_twice_in_one_list_is_rejected() {
        given::<Look>(&[created()])
            .when(&set_guidelines(vec![], vec![text("no hats"), text("no hats")]))
            .then_rejected(rule_containing("listed twice among the don'ts"));
    }

    #[test]
    fn setting_a_guideline_that_is_both_a_do_and_a_dont_is_rejected() {
        given::<Look>(&[created()])
            .when(&set_guidelines(vec![text("smile")], vec![text("smile")]))
            .then_rejected(rule_containing("both a do and a don't"));
    }

    #[test]
    fn setting_guidelines_records_them() {
        let guidelines =
            LookGuidelines { dos: vec![text("golden hour light")], donts: vec![text("no hats")] };
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookGuidelines { guidelines: guidelines.clone(), shooting: draft() })
            .then(&[LookGuidelinesSet { guidelines }.into()]);
    }

    #[test]
    fn setting_the_guidelines_it_already_has_records_nothing() {
        given::<Look>(&[created()])
            .when(&set_guidelines(vec![text("show the back pleat")], vec![]))
            .then(&[]);
    }

    // RenameLook

    #[test]
    fn renaming_a_look_records_the_new_name() {
        let name = Name::parse("Linen dress, dunes").expect("name");
        given::<Look>(&[created()])
            .when(&LookCommand::RenameLook { name: name.clone(), shooting: draft() })
            .then(&[LookRenamed { name }.into()]);
    }

    #[test]
    fn renaming_a_look_to_its_current_name_records_nothing() {
        given::<Look>(&[created()])
            .when(&LookCommand::RenameLook {
                name: Name::parse("Linen dress, beach").expect("name"),
                shooting: draft(),
            })
            .then(&[]);
    }

    // ChangeLookProducts

    #[test]
    fn changing_the_products_records_the_new_list() {
        let products = vec![product("hat"), product("dress")];
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookProducts { products: products.clone(), shooting: draft() })
            .then(&[LookProductsChanged { products }.into()]);
    }

    #[test]
    fn changing_the_products_to_the_same_list_records_nothing() {
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookProducts {
                products: vec![product("dress"), product("hat")],
                shooting: draft(),
            })
            .then(&[]);
    }

    #[test]
    fn changing_the_products_to_none_is_rejected() {
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookProducts { products: vec![], shooting: draft() })
            .then_rejected(rule_containing("at least one product"));
    }

    #[test]
    fn changing_the_products_to_more_than_ten_is_rejected() {
        let products = (0..=MAX_PRODUCTS).map(|i| product(&format!("p{i}"))).collect();
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookProducts { products, shooting: draft() })
            .then_rejected(rule_containing("at most 10 products"));
    }

    #[test]
    fn changing_the_products_to_a_list_with_a_repeat_is_rejected() {
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookProducts {
                products: vec![product("hat"), product("hat")],
                shooting: draft(),
            })
            .then_rejected(rule_containing("listed twice"));
    }

    // ChangeLookSubject

    #[test]
    fn changing_the_subject_records_it_and_clearing_it_falls_back_to_the_shootings_default() {
        let noah = Some(SubjectId::parse("noah").expect("id"));
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookSubject { subject: noah.clone(), shooting: draft() })
            .then(&[LookSubjectChanged { subject: noah.clone() }.into()]);
        let with_noah = [created(), LookSubjectChanged { subject: noah.clone() }.into()];
        assert_eq!(Look::replay(&with_noah).effective_subject(&draft()), noah);
        given::<Look>(&with_noah)
            .when(&LookCommand::ChangeLookSubject { subject: None, shooting: draft() })
            .then(&[LookSubjectChanged { subject: None }.into()]);
        let cleared = Look::replay(&[created(), LookSubjectChanged { subject: None }.into()]);
        assert_eq!(cleared.effective_subject(&draft()), defaults().subject);
    }

    #[test]
    fn changing_the_subject_to_the_current_one_records_nothing() {
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookSubject { subject: None, shooting: draft() })
            .then(&[]);
    }

    // ChangeLookStyle

    #[test]
    fn changing_the_style_records_it_and_overrides_the_shootings_default() {
        let noir = Some(StyleId::parse("noir").expect("id"));
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookStyle { style: noir.clone(), shooting: draft() })
            .then(&[LookStyleChanged { style: noir.clone() }.into()]);
        let state = Look::replay(&[created(), LookStyleChanged { style: noir.clone() }.into()]);
        assert_eq!(state.effective_style(&draft()), noir);
        assert_eq!(Look::replay(&[created()]).effective_style(&draft()), defaults().style);
    }

    #[test]
    fn changing_the_style_to_the_current_one_records_nothing() {
        given::<Look>(&[created()])
            .when(&LookCommand::ChangeLookStyle { style: None, shooting: draft() })
            .then(&[]);
    }

    // SetLookShotTypes

    #[test]
    fn setting_own_shot_types_records_them_and_overrides_the_shootings_defaults() {
        let own = Some(vec![shot("lifestyle"), shot("detail")]);
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookShotTypes { shot_types: own.clone(), shooting: draft() })
            .then(&[LookShotTypesSet { shot_types: own.clone() }.into()]);
        assert_eq!(Look::replay(&[created()]).effective_shot_types(&draft()), defaults().shot_types);
        let state = Look::replay(&[created(), LookShotTypesSet { shot_types: own.clone() }.into()]);
        assert_eq!(Some(state.effective_shot_types(&draft())), own);
    }

    #[test]
    fn clearing_own_shot_types_returns_to_the_shootings_defaults() {
        let own = Some(vec![shot("lifestyle")]);
        given::<Look>(&[created(), LookShotTypesSet { shot_types: own }.into()])
            .when(&LookCommand::SetLookShotTypes { shot_types: None, shooting: draft() })
            .then(&[LookShotTypesSet { shot_types: None }.into()]);
    }

    #[test]
    fn setting_the_shot_types_it_already_has_records_nothing() {
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookShotTypes { shot_types: None, shooting: draft() })
            .then(&[]);
    }

    #[test]
    fn setting_an_empty_list_of_own_shot_types_is_rejected() {
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookShotTypes { shot_types: Some(vec![]), shooting: draft() })
            .then_rejected(rule_containing("or none at all"));
    }

    #[test]
    fn setting_own_shot_types_with_a_repeat_is_rejected() {
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookShotTypes {
                shot_types: Some(vec![shot("detail"), shot("detail")]),
                shooting: draft(),
            })
            .then_rejected(rule_containing("twice"));
    }

    #[test]
    fn setting_more_own_shot_types_than_the_limit_is_rejected() {
        let many = (0..=crate::shooting::MAX_SHOT_TYPES).map(|i| shot(&format!("shot-{i}"))).collect();
        given::<Look>(&[created()])
            .when(&LookCommand::SetLookShotTypes { shot_types: Some(many), shooting: draft() })
            .then_rejected(rule_containing("at most"));
    }

    // RemoveLook

    #[test]
    fn removing_a_look_records_removed_and_takes_it_out_of_the_next_launch() {
        let reason = Some(text("dress sold out"));
        given::<Look>(&[created()])
            .when(&LookCommand::RemoveLook { reason: reason.clone(), shooting: draft() })
            .then(&[LookRemoved { reason }.into()]);
        assert!(Look::replay(&[created()]).at_launch().is_some());
        assert_eq!(Look::replay(&[created(), removed()]).at_launch(), None);
    }

    #[test]
    fn removing_a_removed_look_records_nothing_even_when_the_shooting_is_launched() {
        given::<Look>(&[created(), removed()])
            .when(&LookCommand::RemoveLook {
                reason: None,
                shooting: shooting_in(ShootingStatus::Launched, 1),
            })
            .then(&[]);
    }

    // Rejections shared by every command after creation

    #[test]
    fn every_change_to_a_look_that_does_not_exist_is_rejected() {
        for command in every_change(&draft()) {
            given::<Look>(&[])
                .when(&command)
                .then_rejected(|e| matches!(e, DomainError::NotFound { kind: AggregateKind::Look }));
        }
    }

    #[test]
    fn every_change_but_removal_to_a_removed_look_is_rejected() {
        for command in every_change(&draft()) {
            if matches!(command, LookCommand::RemoveLook { .. }) {
                continue;
            }
            given::<Look>(&[created(), removed()])
                .when(&command)
                .then_rejected(invalid_state_containing(&["look l1 was removed", "create a new look"]));
        }
    }

    #[test]
    fn every_change_while_the_shooting_is_launched_is_rejected_until_a_new_launch() {
        for command in every_change(&shooting_in(ShootingStatus::Launched, 2)) {
            given::<Look>(&[created()]).when(&command).then_rejected(invalid_state_containing(&[
                "shooting ss25 is launched (launch 2); reopen it to change its looks, then launch again",
            ]));
        }
    }

    #[test]
    fn every_change_while_the_shooting_is_completed_is_rejected() {
        for command in every_change(&shooting_in(ShootingStatus::Completed, 1)) {
            given::<Look>(&[created()])
                .when(&command)
                .then_rejected(invalid_state_containing(&["completed", "create a new shooting"]));
        }
    }

    #[test]
    fn every_change_while_the_shooting_is_archived_is_rejected() {
        for command in every_change(&shooting_in(ShootingStatus::Archived, 1)) {
            given::<Look>(&[created()]).when(&command).then_rejected(invalid_state_containing(&["archived"]));
        }
    }

    #[test]
    fn every_change_carrying_the_state_of_another_shooting_is_rejected() {
        let mut other = draft();
        other.shooting_id = ShootingId::parse("fw25").expect("id");
        for command in every_change(&other) {
            given::<Look>(&[created()])
                .when(&command)
                .then_rejected(rule_containing("belongs to shooting ss25"));
        }
    }

    #[test]
    fn every_change_carrying_a_same_named_shooting_of_another_brand_is_rejected() {
        let mut other = draft();
        other.brand_id = BrandId::parse("other").expect("id");
        for command in every_change(&other) {
            given::<Look>(&[created()])
                .when(&command)
                .then_rejected(rule_containing("pass the look's own shooting"));
        }
    }

    #[test]
    fn every_change_after_the_shooting_is_reopened_records_one_event() {
        for command in every_change(&shooting_in(ShootingStatus::Draft, 1)) {
            let events = Look::replay(&[created()]).decide(&command).expect("accepted");
            assert_eq!(events.len(), 1, "{command:?}");
        }
    }

    // Replay and wire

    #[test]
    fn replaying_the_events_rebuilds_the_look() {
        let history = [
            created(),
            LookRenamed { name: Name::parse("Beach").expect("name") }.into(),
            LookProductsChanged { products: vec![product("skirt")] }.into(),
            LookSubjectChanged { subject: Some(SubjectId::parse("noah").expect("id")) }.into(),
            LookStyleChanged { style: Some(StyleId::parse("noir").expect("id")) }.into(),
            LookGuidelinesSet { guidelines: LookGuidelines::default() }.into(),
            LookShotTypesSet { shot_types: Some(vec![shot("lifestyle")]) }.into(),
        ];
        let state = Look::replay(&history);
        let details = state.details.clone().expect("created");
        assert_eq!(details.name.as_str(), "Beach");
        assert_eq!(details.products, vec![product("skirt")]);
        assert_eq!(details.subject, Some(SubjectId::parse("noah").expect("id")));
        assert_eq!(details.style, Some(StyleId::parse("noir").expect("id")));
        assert_eq!(details.guidelines, LookGuidelines::default());
        assert_eq!(
            state.at_launch(),
            Some(LookAtLaunch {
                look_id: LookId::parse("l1").expect("id"),
                shot_types: Some(vec![shot("lifestyle")])
            })
        );
        assert!(!state.removed);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        let events = [
            created(),
            LookRenamed { name: Name::parse("Beach").expect("name") }.into(),
            LookProductsChanged { products: vec![product("skirt")] }.into(),
            LookSubjectChanged { subject: None }.into(),
            LookStyleChanged { style: Some(StyleId::parse("noir").expect("id")) }.into(),
            LookGuidelinesSet { guidelines: LookGuidelines { dos: vec![text("a")], donts: vec![text("b")] } }
                .into(),
            LookShotTypesSet { shot_types: Some(vec![shot("detail")]) }.into(),
            LookRemoved { reason: Some(text("gone")) }.into(),
        ];
        for event in events {
            let encoded = wire::encode(&event);
            assert!(encoded.event_type.starts_with("look."), "{}", encoded.event_type);
            assert_eq!(encoded.schema_version, 1);
            let decoded: LookEvent =
                wire::decode(encoded.event_type, encoded.schema_version, encoded.payload).expect("decodes");
            assert_eq!(decoded, event);
        }
        assert_eq!(LookEvent::catalog().len(), 8);
    }
}
