//! The Shooting aggregate: a production run's defaults (style, subject, shot types,
//! output), its rules (quality gates, variants per shot) and its launch lifecycle.
//!
//! The lifecycle is an explicit state machine:
//!
//! ```text
//!            launch (1, 2, …)            complete
//!   Draft ─────────────────────► Launched ─────────► Completed
//!     ▲ │                          │                    │
//!     │ └──── reopen (for edits) ◄─┘                    │
//!     │                                                 │
//!     └──────────────► Archived ◄───────────────────────┘
//!        archive                       archive
//! ```
//!
//! Defaults and rules change only in Draft, and so do the shooting's looks (the
//! [`crate::look`] aggregate checks the [`ShootingView`] it is given): a launched
//! shooting takes no changes without a new launch. Looks are separate aggregates, so
//! the shooting does not know them; the command path passes the looks it found with
//! [`ShootingCommand::LaunchShooting`], and the launch records them with their
//! effective shot types, which makes [`ShootingLaunched`] the generation plan.
//!
//! Decision: `ArchiveShooting` on an archived shooting and `ReopenShooting` on a
//! draft are already satisfied and record nothing; every other command on an
//! archived shooting is refused.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, LookId, ShootingId, StyleId, SubjectId};
use crate::values::{Name, OutputSpec, ShotType, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most shot types a shooting's defaults (or a look's override) may list.
pub const MAX_SHOT_TYPES: usize = 20;
/// The accepted number of variants generated per shot.
pub const VARIANTS_PER_SHOT: std::ops::RangeInclusive<u8> = 1..=8;

/// What every look of the shooting uses unless it says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingDefaults {
    /// The default style; looks without their own style use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<StyleId>,
    /// The default subject (virtual model); looks without their own use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectId>,
    /// The default shot types, without duplicates; may be empty when every look
    /// brings its own.
    pub shot_types: Vec<ShotType>,
    /// What every generation outputs.
    pub output: OutputSpec,
}

/// Which produced variants may reach review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QualityGates {
    /// Variants whose long edge is below this many pixels are discarded.
    /// At most the output's long edge, so the gate can be met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_long_edge_px: Option<u32>,
    /// Whether a variant must pass the automatic checks (product fidelity,
    /// artefacts) before it reaches review.
    pub require_automatic_checks: bool,
}

/// How the shooting's generations run and what they must meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingRules {
    /// Quality gates applied to every variant.
    pub quality_gates: QualityGates,
    /// How many variants each shot (a look × a shot type) produces, 1 to 8.
    pub variants_per_shot: u8,
}

impl Default for ShootingRules {
    /// The rules a new shooting starts with: four variants per shot, automatic
    /// checks required, no minimum resolution beyond the output spec.
    fn default() -> Self {
        ShootingRules {
            quality_gates: QualityGates { min_long_edge_px: None, require_automatic_checks: true },
            variants_per_shot: 4,
        }
    }
}

/// Where a shooting is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShootingStatus {
    /// Being configured; defaults, rules and looks may change.
    Draft,
    /// Launched; its generations run. Reopen it to change anything.
    Launched,
    /// Finished; nothing more is generated.
    Completed,
    /// Put away; accepts nothing.
    Archived,
}

/// A look as the command path found it when launching: the shooting only needs
/// its id and its own shot types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookAtLaunch {
    /// The look.
    pub look_id: LookId,
    /// The look's own shot types, or `None` when it uses the shooting's defaults.
    pub shot_types: Option<Vec<ShotType>>,
}

/// Shooting commands.
#[derive(Debug, Clone, PartialEq)]
pub enum ShootingCommand {
    /// Creates a shooting in Draft, with the default rules.
    CreateShooting {
        /// The new shooting's id.
        shooting_id: ShootingId,
        /// The owning brand.
        brand_id: BrandId,
        /// Display name.
        name: Name,
        /// Defaults for its looks.
        defaults: ShootingDefaults,
    },
    /// Renames the shooting; allowed in any state but Archived.
    RenameShooting {
        /// The new name.
        name: Name,
    },
    /// Replaces the defaults (Draft only).
    UpdateShootingDefaults {
        /// The new defaults, as a whole.
        defaults: ShootingDefaults,
    },
    /// Replaces the rules (Draft only).
    SetShootingRules {
        /// The new rules, as a whole.
        rules: ShootingRules,
    },
    /// Launches a draft: its looks' generations may be requested.
    LaunchShooting {
        /// The shooting's current (not removed) looks, as the command path
        /// loaded them; at least one.
        looks: Vec<LookAtLaunch>,
    },
    /// Takes a launched shooting back to Draft so it can be edited and launched again.
    ReopenShooting {
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
    /// Stops a launched shooting's work: the launch's generations that have not
    /// finished are cancelled (by the process manager), and the shooting goes back
    /// to Draft so it can be changed and launched again. Predictions already
    /// produced stay for review.
    CancelLaunch {
        /// Why, for the activity feed and the cancelled generations.
        reason: Option<Text>,
    },
    /// Marks a launched shooting as finished.
    CompleteShooting,
    /// Puts a draft or completed shooting away for good.
    ArchiveShooting {
        /// Why, for the activity feed.
        reason: Option<Text>,
    },
}

/// A shooting was created, in Draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingCreated {
    /// The shooting's id.
    pub shooting_id: ShootingId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// Display name.
    pub name: Name,
    /// Defaults for its looks.
    pub defaults: ShootingDefaults,
    /// The rules it starts with (recorded, so a later change of the built-in
    /// default does not change history).
    pub rules: ShootingRules,
}

/// The shooting was renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingRenamed {
    /// The new name.
    pub name: Name,
}

/// The shooting's defaults were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingDefaultsUpdated {
    /// The new defaults, as a whole.
    pub defaults: ShootingDefaults,
}

/// The shooting's rules were replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingRulesSet {
    /// The new rules, as a whole.
    pub rules: ShootingRules,
}

/// One look of a launch with the shot types it is generated in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LaunchedLook {
    /// The look.
    pub look_id: LookId,
    /// Its effective shot types at launch (its own, else the shooting's defaults).
    pub shot_types: Vec<ShotType>,
}

/// The shooting was launched: one generation per look and shot type may be requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingLaunched {
    /// 1 for the first launch, then +1 for each launch after a reopen.
    pub launch_number: u32,
    /// The looks launched, with their effective shot types.
    pub looks: Vec<LaunchedLook>,
}

/// The launched shooting went back to Draft for edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingReopened {
    /// The launch that was reopened.
    pub launch_number: u32,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// The launched shooting's work was stopped and it went back to Draft. The
/// event carries the launch's looks so the process manager that cancels the
/// launch's generations needs nothing else (the shooting's state moves on when
/// it is launched again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingLaunchCancelled {
    /// The launch that was cancelled.
    pub launch_number: u32,
    /// The looks of that launch, with their effective shot types.
    pub looks: Vec<LaunchedLook>,
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// The shooting was completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingCompleted {
    /// The launch that was completed (the last one).
    pub launch_number: u32,
}

/// The shooting was archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShootingArchived {
    /// Why, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

crate::domain_events! {
    aggregate: Shooting,
    /// Shooting events.
    pub enum ShootingEvent {
        /// See [`ShootingCreated`].
        Created(ShootingCreated) = ("shooting.created", 1),
        /// See [`ShootingRenamed`].
        Renamed(ShootingRenamed) = ("shooting.renamed", 1),
        /// See [`ShootingDefaultsUpdated`].
        DefaultsUpdated(ShootingDefaultsUpdated) = ("shooting.defaults_updated", 1),
        /// See [`ShootingRulesSet`].
        RulesSet(ShootingRulesSet) = ("shooting.rules_set", 1),
        /// See [`ShootingLaunched`].
        Launched(ShootingLaunched) = ("shooting.launched", 1),
        /// See [`ShootingReopened`].
        Reopened(ShootingReopened) = ("shooting.reopened", 1),
        /// See [`ShootingLaunchCancelled`].
        LaunchCancelled(ShootingLaunchCancelled) = ("shooting.launch_cancelled", 1),
        /// See [`ShootingCompleted`].
        Completed(ShootingCompleted) = ("shooting.completed", 1),
        /// See [`ShootingArchived`].
        Archived(ShootingArchived) = ("shooting.archived", 1),
    }
}

/// What other aggregates need to know about a shooting: the command path loads
/// the shooting and passes this into every Look command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShootingView {
    /// The shooting's id.
    pub shooting_id: ShootingId,
    /// The owning brand.
    pub brand_id: BrandId,
    /// Display name.
    pub name: Name,
    /// Where it is in its lifecycle.
    pub status: ShootingStatus,
    /// The latest launch: 0 before the first launch, then 1, 2, …
    pub launch_number: u32,
    /// Defaults for its looks.
    pub defaults: ShootingDefaults,
    /// Its rules.
    pub rules: ShootingRules,
}

impl ShootingView {
    /// Checks that the shooting is a draft, so its `what` (e.g. `looks`,
    /// `defaults`) may change; otherwise says what to do instead.
    pub fn check_editable(&self, what: &str) -> Result<(), DomainError> {
        let id = &self.shooting_id;
        match self.status {
            ShootingStatus::Draft => Ok(()),
            ShootingStatus::Launched => Err(DomainError::invalid_state(format!(
                "shooting {id} is launched (launch {}); reopen it to change its {what}, then launch again",
                self.launch_number
            ))),
            ShootingStatus::Completed => Err(DomainError::invalid_state(format!(
                "shooting {id} is completed, so its {what} can no longer change; create a new shooting instead"
            ))),
            ShootingStatus::Archived => Err(self.archived_error()),
        }
    }

    fn archived_error(&self) -> DomainError {
        DomainError::invalid_state(format!(
            "shooting {} is archived and accepts no changes; create a new shooting instead",
            self.shooting_id
        ))
    }
}

/// The state of a shooting, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Shooting {
    /// Present once created.
    pub current: Option<ShootingView>,
    /// The looks of the latest launch (empty before the first launch).
    pub launched_looks: Vec<LaunchedLook>,
}

impl Shooting {
    /// What Look commands need to know about this shooting, once it exists.
    pub fn view(&self) -> Option<ShootingView> {
        self.current.clone()
    }

    fn existing(&self) -> Result<&ShootingView, DomainError> {
        self.current.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Shooting })
    }
}

/// Checks a list of shot types: no duplicates, at most [`MAX_SHOT_TYPES`].
/// `whose` names the list in messages, e.g. `the shooting's defaults`.
pub(crate) fn check_shot_types(shot_types: &[ShotType], whose: &str) -> Result<(), DomainError> {
    if shot_types.len() > MAX_SHOT_TYPES {
        return Err(DomainError::rule(format!(
            "{whose} list {} shot types; at most {MAX_SHOT_TYPES} are allowed",
            shot_types.len()
        )));
    }
    let mut seen = BTreeSet::new();
    if let Some(repeated) = shot_types.iter().find(|shot_type| !seen.insert(*shot_type)) {
        return Err(DomainError::rule(format!(
            "{whose} list shot type {repeated} twice; give each shot type once"
        )));
    }
    Ok(())
}

/// Checks that the rules are possible, and possible with this output spec.
fn check_rules(rules: &ShootingRules, output: &OutputSpec) -> Result<(), DomainError> {
    if !VARIANTS_PER_SHOT.contains(&rules.variants_per_shot) {
        return Err(DomainError::rule(format!(
            "variants per shot must be from {} to {}; {} was given",
            VARIANTS_PER_SHOT.start(),
            VARIANTS_PER_SHOT.end(),
            rules.variants_per_shot
        )));
    }
    if let Some(minimum) = rules.quality_gates.min_long_edge_px {
        if !OutputSpec::LONG_EDGE_PX.contains(&minimum) {
            return Err(DomainError::rule(format!(
                "a minimum resolution of {minimum} px is not supported; give {} to {} px, or none",
                OutputSpec::LONG_EDGE_PX.start(),
                OutputSpec::LONG_EDGE_PX.end()
            )));
        }
        if minimum > output.long_edge_px {
            return Err(DomainError::rule(format!(
                "the minimum resolution ({minimum} px) is above the output's long edge ({} px), so no \
                 variant could pass; lower the minimum or raise the output's long edge first",
                output.long_edge_px
            )));
        }
    }
    Ok(())
}

impl Aggregate for Shooting {
    const KIND: AggregateKind = AggregateKind::Shooting;
    const STATE_VERSION: u32 = 1;
    type Command = ShootingCommand;
    type Event = ShootingEvent;

    fn decide(&self, command: &ShootingCommand) -> Result<Vec<ShootingEvent>, DomainError> {
        match command {
            ShootingCommand::CreateShooting { shooting_id, brand_id, name, defaults } => {
                if self.current.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Shooting,
                        id: shooting_id.to_string(),
                    });
                }
                check_shot_types(&defaults.shot_types, "the shooting's defaults")?;
                let rules = ShootingRules::default();
                check_rules(&rules, &defaults.output)?;
                Ok(vec![
                    ShootingCreated {
                        shooting_id: shooting_id.clone(),
                        brand_id: brand_id.clone(),
                        name: name.clone(),
                        defaults: defaults.clone(),
                        rules,
                    }
                    .into(),
                ])
            }
            ShootingCommand::RenameShooting { name } => {
                let current = self.existing()?;
                if current.status == ShootingStatus::Archived {
                    return Err(current.archived_error());
                }
                if current.name == *name {
                    return Ok(vec![]);
                }
                Ok(vec![ShootingRenamed { name: name.clone() }.into()])
            }
            ShootingCommand::UpdateShootingDefaults { defaults } => {
                let current = self.existing()?;
                current.check_editable("defaults")?;
                check_shot_types(&defaults.shot_types, "the shooting's defaults")?;
                check_rules(&current.rules, &defaults.output)?;
                if current.defaults == *defaults {
                    return Ok(vec![]);
                }
                Ok(vec![ShootingDefaultsUpdated { defaults: defaults.clone() }.into()])
            }
            ShootingCommand::SetShootingRules { rules } => {
                let current = self.existing()?;
                current.check_editable("rules")?;
                check_rules(rules, &current.defaults.output)?;
                if current.rules == *rules {
                    return Ok(vec![]);
                }
                Ok(vec![ShootingRulesSet { rules: rules.clone() }.into()])
            }
            ShootingCommand::LaunchShooting { looks } => {
                let current = self.existing()?;
                let id = &current.shooting_id;
                match current.status {
                    ShootingStatus::Draft => {}
                    ShootingStatus::Launched => {
                        return Err(DomainError::invalid_state(format!(
                            "shooting {id} is already launched (launch {}); reopen it and change it \
                             before launching again",
                            current.launch_number
                        )));
                    }
                    ShootingStatus::Completed => {
                        return Err(DomainError::invalid_state(format!(
                            "shooting {id} is completed and cannot be launched again; create a new \
                             shooting instead"
                        )));
                    }
                    ShootingStatus::Archived => return Err(current.archived_error()),
                }
                if looks.is_empty() {
                    return Err(DomainError::rule(format!(
                        "shooting {id} has no looks; add at least one look before launching it"
                    )));
                }
                let mut seen = BTreeSet::new();
                let mut launched = Vec::with_capacity(looks.len());
                for look in looks {
                    if !seen.insert(&look.look_id) {
                        return Err(DomainError::rule(format!(
                            "look {} is listed twice for the launch; list each look once",
                            look.look_id
                        )));
                    }
                    let shot_types = match &look.shot_types {
                        Some(own) if !own.is_empty() => own.clone(),
                        _ => current.defaults.shot_types.clone(),
                    };
                    if shot_types.is_empty() {
                        return Err(DomainError::rule(format!(
                            "look {} has no shot types of its own and shooting {id} has no default shot \
                             types; set default shot types on the shooting or give the look its own",
                            look.look_id
                        )));
                    }
                    launched.push(LaunchedLook { look_id: look.look_id.clone(), shot_types });
                }
                Ok(vec![
                    ShootingLaunched { launch_number: current.launch_number + 1, looks: launched }.into(),
                ])
            }
            ShootingCommand::ReopenShooting { reason } => {
                let current = self.existing()?;
                match current.status {
                    ShootingStatus::Launched => Ok(vec![
                        ShootingReopened { launch_number: current.launch_number, reason: reason.clone() }
                            .into(),
                    ]),
                    // Already open for edits: the command is satisfied.
                    ShootingStatus::Draft => Ok(vec![]),
                    ShootingStatus::Completed => Err(DomainError::invalid_state(format!(
                        "shooting {} is completed and cannot be reopened; create a new shooting for more \
                         content",
                        current.shooting_id
                    ))),
                    ShootingStatus::Archived => Err(current.archived_error()),
                }
            }
            ShootingCommand::CancelLaunch { reason } => {
                let current = self.existing()?;
                let id = &current.shooting_id;
                match current.status {
                    ShootingStatus::Launched => Ok(vec![
                        ShootingLaunchCancelled {
                            launch_number: current.launch_number,
                            looks: self.launched_looks.clone(),
                            reason: reason.clone(),
                        }
                        .into(),
                    ]),
                    ShootingStatus::Draft if current.launch_number == 0 => Err(DomainError::invalid_state(
                        format!("shooting {id} has never been launched, so there is no work to cancel"),
                    )),
                    // Reopened or already cancelled: no launch is running.
                    ShootingStatus::Draft => Ok(vec![]),
                    ShootingStatus::Completed => Err(DomainError::invalid_state(format!(
                        "shooting {id} is completed; cancel its remaining generations one by one instead"
                    ))),
                    ShootingStatus::Archived => Err(current.archived_error()),
                }
            }
            ShootingCommand::CompleteShooting => {
                let current = self.existing()?;
                let id = &current.shooting_id;
                match current.status {
                    ShootingStatus::Launched => {
                        Ok(vec![ShootingCompleted { launch_number: current.launch_number }.into()])
                    }
                    ShootingStatus::Completed => Ok(vec![]),
                    ShootingStatus::Draft if current.launch_number == 0 => Err(DomainError::invalid_state(
                        format!("shooting {id} has never been launched; launch it before completing it"),
                    )),
                    ShootingStatus::Draft => Err(DomainError::invalid_state(format!(
                        "shooting {id} was reopened after launch {} and may have unlaunched changes; \
                         launch it again before completing it",
                        current.launch_number
                    ))),
                    ShootingStatus::Archived => Err(current.archived_error()),
                }
            }
            ShootingCommand::ArchiveShooting { reason } => {
                let current = self.existing()?;
                match current.status {
                    ShootingStatus::Draft | ShootingStatus::Completed => {
                        Ok(vec![ShootingArchived { reason: reason.clone() }.into()])
                    }
                    ShootingStatus::Archived => Ok(vec![]),
                    ShootingStatus::Launched => Err(DomainError::invalid_state(format!(
                        "shooting {} is launched (launch {}); complete it or reopen it before archiving it",
                        current.shooting_id, current.launch_number
                    ))),
                }
            }
        }
    }

    fn evolve(mut self, event: &ShootingEvent) -> Self {
        if let ShootingEvent::Created(created) = event {
            self.current = Some(ShootingView {
                shooting_id: created.shooting_id.clone(),
                brand_id: created.brand_id.clone(),
                name: created.name.clone(),
                status: ShootingStatus::Draft,
                launch_number: 0,
                defaults: created.defaults.clone(),
                rules: created.rules.clone(),
            });
            return self;
        }
        let Some(current) = self.current.as_mut() else {
            // Events before creation cannot be decided; ignore them rather than panic.
            return self;
        };
        match event {
            ShootingEvent::Created(_) => {}
            ShootingEvent::Renamed(renamed) => current.name = renamed.name.clone(),
            ShootingEvent::DefaultsUpdated(updated) => current.defaults = updated.defaults.clone(),
            ShootingEvent::RulesSet(set) => current.rules = set.rules.clone(),
            ShootingEvent::Launched(launched) => {
                current.status = ShootingStatus::Launched;
                current.launch_number = launched.launch_number;
                self.launched_looks = launched.looks.clone();
            }
            ShootingEvent::Reopened(_) | ShootingEvent::LaunchCancelled(_) => {
                current.status = ShootingStatus::Draft
            }
            ShootingEvent::Completed(_) => current.status = ShootingStatus::Completed,
            ShootingEvent::Archived(_) => current.status = ShootingStatus::Archived,
        }
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::given;
    use crate::values::{AspectRatio, ImageFormat};
    use crate::{DomainEvent, wire};

    pub(crate) fn shot(slug: &str) -> ShotType {
        ShotType::parse(slug).expect("shot type")
    }

    pub(crate) fn defaults() -> ShootingDefaults {
        ShootingDefaults {
            style: Some(StyleId::parse("studio-warm").expect("id")),
            subject: Some(SubjectId::parse("mia").expect("id")),
            shot_types: vec![shot("full-body-front"), shot("detail")],
            output: OutputSpec::new(AspectRatio::parse("4:5").expect("ratio"), 2048, ImageFormat::Jpeg)
                .expect("output"),
        }
    }

    fn id() -> ShootingId {
        ShootingId::parse("ss25").expect("id")
    }

    fn created() -> ShootingEvent {
        ShootingCreated {
            shooting_id: id(),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Summer 25").expect("name"),
            defaults: defaults(),
            rules: ShootingRules::default(),
        }
        .into()
    }

    fn create_command() -> ShootingCommand {
        ShootingCommand::CreateShooting {
            shooting_id: id(),
            brand_id: BrandId::parse("acme").expect("id"),
            name: Name::parse("Summer 25").expect("name"),
            defaults: defaults(),
        }
    }

    fn look(id: &str) -> LookId {
        LookId::parse(id).expect("id")
    }

    fn at_launch(id: &str) -> LookAtLaunch {
        LookAtLaunch { look_id: look(id), shot_types: None }
    }

    fn launch(ids: &[&str]) -> ShootingCommand {
        ShootingCommand::LaunchShooting { looks: ids.iter().map(|id| at_launch(id)).collect() }
    }

    fn launched(number: u32) -> ShootingEvent {
        ShootingLaunched {
            launch_number: number,
            looks: vec![LaunchedLook { look_id: look("l1"), shot_types: defaults().shot_types }],
        }
        .into()
    }

    fn reopened(number: u32) -> ShootingEvent {
        ShootingReopened { launch_number: number, reason: None }.into()
    }

    fn completed(number: u32) -> ShootingEvent {
        ShootingCompleted { launch_number: number }.into()
    }

    fn archived() -> ShootingEvent {
        ShootingArchived { reason: None }.into()
    }

    fn rules(variants: u8, min_long_edge_px: Option<u32>) -> ShootingRules {
        ShootingRules {
            quality_gates: QualityGates { min_long_edge_px, require_automatic_checks: true },
            variants_per_shot: variants,
        }
    }

    fn new_defaults() -> ShootingDefaults {
        ShootingDefaults { subject: None, shot_types: vec![shot("half-body")], ..defaults() }
    }

    fn invalid_state_containing(needles: &'static [&'static str]) -> impl FnOnce(&DomainError) -> bool {
        move |error| matches!(error, DomainError::InvalidState(m) if needles.iter().all(|n| m.contains(n)))
    }

    fn rule_containing(needle: &'static str) -> impl FnOnce(&DomainError) -> bool {
        move |error| matches!(error, DomainError::RuleViolated(m) if m.contains(needle))
    }

    fn not_found(error: &DomainError) -> bool {
        matches!(error, DomainError::NotFound { kind: AggregateKind::Shooting })
    }

    // CreateShooting

    #[test]
    fn creating_a_new_shooting_records_it_in_draft_with_the_default_rules() {
        given::<Shooting>(&[]).when(&create_command()).then(&[created()]);
        let view = given::<Shooting>(&[created()]).state().view().expect("created");
        assert_eq!((view.status, view.launch_number), (ShootingStatus::Draft, 0));
        assert_eq!(view.rules, ShootingRules::default());
    }

    #[test]
    fn creating_a_shooting_that_exists_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&create_command())
            .then_rejected(|e| matches!(e, DomainError::AlreadyExists { .. }));
    }

    #[test]
    fn creating_a_shooting_with_a_default_shot_type_listed_twice_is_rejected() {
        let mut command = create_command();
        if let ShootingCommand::CreateShooting { defaults, .. } = &mut command {
            defaults.shot_types = vec![shot("detail"), shot("detail")];
        }
        given::<Shooting>(&[]).when(&command).then_rejected(rule_containing("detail twice"));
    }

    #[test]
    fn creating_a_shooting_with_too_many_default_shot_types_is_rejected() {
        let mut command = create_command();
        if let ShootingCommand::CreateShooting { defaults, .. } = &mut command {
            defaults.shot_types = (0..=MAX_SHOT_TYPES).map(|i| shot(&format!("shot-{i}"))).collect();
        }
        given::<Shooting>(&[]).when(&command).then_rejected(rule_containing("at most"));
    }

    // RenameShooting

    #[test]
    fn renaming_a_shooting_records_the_new_name_even_when_launched() {
        let name = Name::parse("Summer 25, final").expect("name");
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::RenameShooting { name: name.clone() })
            .then(&[ShootingRenamed { name }.into()]);
    }

    #[test]
    fn renaming_a_shooting_to_its_current_name_records_nothing() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::RenameShooting { name: Name::parse("Summer 25").expect("name") })
            .then(&[]);
    }

    #[test]
    fn renaming_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[])
            .when(&ShootingCommand::RenameShooting { name: Name::parse("x").expect("name") })
            .then_rejected(not_found);
    }

    #[test]
    fn renaming_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::RenameShooting { name: Name::parse("x").expect("name") })
            .then_rejected(invalid_state_containing(&["archived", "create a new shooting"]));
    }

    // UpdateShootingDefaults

    #[test]
    fn updating_the_defaults_of_a_draft_records_them() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: new_defaults() })
            .then(&[ShootingDefaultsUpdated { defaults: new_defaults() }.into()]);
    }

    #[test]
    fn updating_the_defaults_to_the_same_values_records_nothing() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: defaults() })
            .then(&[]);
    }

    #[test]
    fn updating_the_defaults_of_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: defaults() })
            .then_rejected(not_found);
    }

    #[test]
    fn updating_the_defaults_with_a_shot_type_listed_twice_is_rejected() {
        let defaults = ShootingDefaults { shot_types: vec![shot("detail"), shot("detail")], ..defaults() };
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults })
            .then_rejected(rule_containing("twice"));
    }

    #[test]
    fn updating_the_defaults_of_a_launched_shooting_is_rejected_with_advice_to_reopen() {
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: new_defaults() })
            .then_rejected(invalid_state_containing(&["launch 1", "reopen it to change its defaults"]));
    }

    #[test]
    fn updating_the_defaults_of_a_completed_shooting_is_rejected() {
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: new_defaults() })
            .then_rejected(invalid_state_containing(&["completed", "create a new shooting"]));
    }

    #[test]
    fn updating_the_defaults_of_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: new_defaults() })
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    #[test]
    fn lowering_the_output_below_the_minimum_resolution_rule_is_rejected() {
        let mut small = defaults();
        small.output.long_edge_px = 1024;
        given::<Shooting>(&[created(), ShootingRulesSet { rules: rules(4, Some(2000)) }.into()])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: small })
            .then_rejected(rule_containing("lower the minimum"));
    }

    #[test]
    fn updating_the_defaults_after_reopening_is_accepted() {
        given::<Shooting>(&[created(), launched(1), reopened(1)])
            .when(&ShootingCommand::UpdateShootingDefaults { defaults: new_defaults() })
            .then(&[ShootingDefaultsUpdated { defaults: new_defaults() }.into()]);
    }

    // SetShootingRules

    #[test]
    fn setting_rules_on_a_draft_records_them() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::SetShootingRules { rules: rules(8, Some(2048)) })
            .then(&[ShootingRulesSet { rules: rules(8, Some(2048)) }.into()]);
    }

    #[test]
    fn setting_the_rules_it_already_has_records_nothing() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::SetShootingRules { rules: ShootingRules::default() })
            .then(&[]);
    }

    #[test]
    fn setting_rules_on_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[])
            .when(&ShootingCommand::SetShootingRules { rules: ShootingRules::default() })
            .then_rejected(not_found);
    }

    #[test]
    fn setting_zero_or_more_than_eight_variants_per_shot_is_rejected() {
        for variants in [0, 9] {
            given::<Shooting>(&[created()])
                .when(&ShootingCommand::SetShootingRules { rules: rules(variants, None) })
                .then_rejected(rule_containing("from 1 to 8"));
        }
    }

    #[test]
    fn setting_a_minimum_resolution_outside_the_supported_range_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::SetShootingRules { rules: rules(4, Some(100)) })
            .then_rejected(rule_containing("256 to 8192"));
    }

    #[test]
    fn setting_a_minimum_resolution_above_the_output_long_edge_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::SetShootingRules { rules: rules(4, Some(4096)) })
            .then_rejected(rule_containing("above the output's long edge"));
    }

    #[test]
    fn setting_rules_on_a_launched_shooting_is_rejected_with_advice_to_reopen() {
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::SetShootingRules { rules: rules(2, None) })
            .then_rejected(invalid_state_containing(&["launch 1", "reopen it to change its rules"]));
    }

    #[test]
    fn setting_rules_on_a_completed_shooting_is_rejected() {
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::SetShootingRules { rules: rules(2, None) })
            .then_rejected(invalid_state_containing(&["completed"]));
    }

    #[test]
    fn setting_rules_on_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::SetShootingRules { rules: rules(2, None) })
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    // LaunchShooting

    #[test]
    fn launching_a_draft_records_launch_1_with_each_looks_shot_types() {
        let command = ShootingCommand::LaunchShooting {
            looks: vec![
                at_launch("l1"),
                LookAtLaunch { look_id: look("l2"), shot_types: Some(vec![shot("lifestyle")]) },
            ],
        };
        given::<Shooting>(&[created()]).when(&command).then(&[ShootingLaunched {
            launch_number: 1,
            looks: vec![
                LaunchedLook { look_id: look("l1"), shot_types: defaults().shot_types },
                LaunchedLook { look_id: look("l2"), shot_types: vec![shot("lifestyle")] },
            ],
        }
        .into()]);
    }

    #[test]
    fn launching_again_after_reopening_records_the_next_launch_number() {
        given::<Shooting>(&[created(), launched(1), reopened(1)]).when(&launch(&["l1"])).then(&[launched(2)]);
    }

    #[test]
    fn launching_looks_that_all_have_their_own_shot_types_needs_no_default_shot_types() {
        let no_shot_types = ShootingDefaults { shot_types: vec![], ..defaults() };
        let command = ShootingCommand::LaunchShooting {
            looks: vec![LookAtLaunch { look_id: look("l1"), shot_types: Some(vec![shot("detail")]) }],
        };
        given::<Shooting>(&[created(), ShootingDefaultsUpdated { defaults: no_shot_types }.into()])
            .when(&command)
            .then(&[ShootingLaunched {
                launch_number: 1,
                looks: vec![LaunchedLook { look_id: look("l1"), shot_types: vec![shot("detail")] }],
            }
            .into()]);
    }

    #[test]
    fn launching_a_shooting_without_looks_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&launch(&[]))
            .then_rejected(rule_containing("add at least one look before launching"));
    }

    #[test]
    fn launching_with_a_look_listed_twice_is_rejected() {
        given::<Shooting>(&[created()]).when(&launch(&["l1", "l1"])).then_rejected(rule_containing("twice"));
    }

    #[test]
    fn launching_a_look_without_shot_types_when_the_shooting_has_no_defaults_is_rejected() {
        let no_shot_types = ShootingDefaults { shot_types: vec![], ..defaults() };
        given::<Shooting>(&[created(), ShootingDefaultsUpdated { defaults: no_shot_types }.into()])
            .when(&launch(&["l1"]))
            .then_rejected(rule_containing(
                "set default shot types on the shooting or give the look its own",
            ));
    }

    #[test]
    fn launching_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[]).when(&launch(&["l1"])).then_rejected(not_found);
    }

    #[test]
    fn launching_a_launched_shooting_is_rejected_with_advice_to_reopen() {
        given::<Shooting>(&[created(), launched(1)])
            .when(&launch(&["l1"]))
            .then_rejected(invalid_state_containing(&["already launched (launch 1)", "reopen"]));
    }

    #[test]
    fn launching_a_completed_shooting_is_rejected() {
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&launch(&["l1"]))
            .then_rejected(invalid_state_containing(&["completed", "create a new shooting"]));
    }

    #[test]
    fn launching_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&launch(&["l1"]))
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    // CancelLaunch

    #[test]
    fn cancelling_a_launch_records_its_looks_and_makes_the_shooting_a_draft_again() {
        let reason = Some(Text::parse("wrong subject").expect("text"));
        let looks = vec![LaunchedLook { look_id: look("l1"), shot_types: defaults().shot_types }];
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::CancelLaunch { reason: reason.clone() })
            .then(&[ShootingLaunchCancelled {
                launch_number: 1,
                looks: looks.clone(),
                reason: reason.clone(),
            }
            .into()]);
        let cancelled: ShootingEvent = ShootingLaunchCancelled { launch_number: 1, looks, reason }.into();
        let view =
            given::<Shooting>(&[created(), launched(1), cancelled.clone()]).state().view().expect("view");
        assert_eq!((view.status, view.launch_number), (ShootingStatus::Draft, 1));
        // Cancelling again finds nothing running.
        given::<Shooting>(&[created(), launched(1), cancelled])
            .when(&ShootingCommand::CancelLaunch { reason: None })
            .then(&[]);
    }

    #[test]
    fn cancelling_a_shooting_that_never_launched_or_is_completed_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::CancelLaunch { reason: None })
            .then_rejected(invalid_state_containing(&["never been launched"]));
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::CancelLaunch { reason: None })
            .then_rejected(invalid_state_containing(&["completed"]));
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::CancelLaunch { reason: None })
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    // ReopenShooting

    #[test]
    fn reopening_a_launched_shooting_records_reopened_and_makes_it_a_draft_again() {
        let reason = Some(Text::parse("swap the dress in look 3").expect("text"));
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::ReopenShooting { reason: reason.clone() })
            .then(&[ShootingReopened { launch_number: 1, reason }.into()]);
        let view = given::<Shooting>(&[created(), launched(1), reopened(1)]).state().view().expect("view");
        assert_eq!((view.status, view.launch_number), (ShootingStatus::Draft, 1));
    }

    #[test]
    fn reopening_a_draft_records_nothing() {
        given::<Shooting>(&[created()]).when(&ShootingCommand::ReopenShooting { reason: None }).then(&[]);
    }

    #[test]
    fn reopening_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[])
            .when(&ShootingCommand::ReopenShooting { reason: None })
            .then_rejected(not_found);
    }

    #[test]
    fn reopening_a_completed_shooting_is_rejected() {
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::ReopenShooting { reason: None })
            .then_rejected(invalid_state_containing(&["cannot be reopened", "create a new shooting"]));
    }

    #[test]
    fn reopening_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::ReopenShooting { reason: None })
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    // CompleteShooting

    #[test]
    fn completing_a_launched_shooting_records_completed() {
        given::<Shooting>(&[created(), launched(1), reopened(1), launched(2)])
            .when(&ShootingCommand::CompleteShooting)
            .then(&[completed(2)]);
    }

    #[test]
    fn completing_a_completed_shooting_records_nothing() {
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::CompleteShooting)
            .then(&[]);
    }

    #[test]
    fn completing_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[]).when(&ShootingCommand::CompleteShooting).then_rejected(not_found);
    }

    #[test]
    fn completing_a_shooting_that_was_never_launched_is_rejected() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::CompleteShooting)
            .then_rejected(invalid_state_containing(&["never been launched", "launch it"]));
    }

    #[test]
    fn completing_a_reopened_shooting_is_rejected_until_it_is_launched_again() {
        given::<Shooting>(&[created(), launched(1), reopened(1)])
            .when(&ShootingCommand::CompleteShooting)
            .then_rejected(invalid_state_containing(&["reopened after launch 1", "launch it again"]));
    }

    #[test]
    fn completing_an_archived_shooting_is_rejected() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::CompleteShooting)
            .then_rejected(invalid_state_containing(&["archived"]));
    }

    // ArchiveShooting

    #[test]
    fn archiving_a_draft_records_archived() {
        given::<Shooting>(&[created()])
            .when(&ShootingCommand::ArchiveShooting { reason: None })
            .then(&[archived()]);
    }

    #[test]
    fn archiving_a_completed_shooting_records_archived() {
        let reason = Some(Text::parse("season over").expect("text"));
        given::<Shooting>(&[created(), launched(1), completed(1)])
            .when(&ShootingCommand::ArchiveShooting { reason: reason.clone() })
            .then(&[ShootingArchived { reason }.into()]);
    }

    #[test]
    fn archiving_an_archived_shooting_records_nothing() {
        given::<Shooting>(&[created(), archived()])
            .when(&ShootingCommand::ArchiveShooting { reason: None })
            .then(&[]);
    }

    #[test]
    fn archiving_a_shooting_that_does_not_exist_is_rejected() {
        given::<Shooting>(&[])
            .when(&ShootingCommand::ArchiveShooting { reason: None })
            .then_rejected(not_found);
    }

    #[test]
    fn archiving_a_launched_shooting_is_rejected_with_advice_to_complete_or_reopen_it() {
        given::<Shooting>(&[created(), launched(1)])
            .when(&ShootingCommand::ArchiveShooting { reason: None })
            .then_rejected(invalid_state_containing(&["complete it or reopen it"]));
    }

    // Replay and wire

    #[test]
    fn replaying_the_events_rebuilds_the_view_and_the_last_launch() {
        let history = [
            created(),
            ShootingRulesSet { rules: rules(6, Some(1024)) }.into(),
            launched(1),
            reopened(1),
            ShootingDefaultsUpdated { defaults: new_defaults() }.into(),
            ShootingRenamed { name: Name::parse("Summer 25 v2").expect("name") }.into(),
            launched(2),
        ];
        let state = Shooting::replay(&history);
        let view = state.view().expect("created");
        assert_eq!(view.status, ShootingStatus::Launched);
        assert_eq!(view.launch_number, 2);
        assert_eq!(view.defaults, new_defaults());
        assert_eq!(view.rules, rules(6, Some(1024)));
        assert_eq!(view.name.as_str(), "Summer 25 v2");
        assert_eq!(state.launched_looks.len(), 1);
        assert_eq!(Shooting::replay(&[]).view(), None);
        crate::testing::assert_snapshot_round_trip(&state);
    }

    #[test]
    fn every_event_round_trips_through_its_wire_form() {
        let events = [
            created(),
            ShootingRenamed { name: Name::parse("x").expect("name") }.into(),
            ShootingDefaultsUpdated { defaults: new_defaults() }.into(),
            ShootingRulesSet { rules: rules(2, Some(512)) }.into(),
            launched(1),
            ShootingReopened { launch_number: 1, reason: Some(Text::parse("why").expect("text")) }.into(),
            ShootingLaunchCancelled {
                launch_number: 1,
                looks: vec![LaunchedLook { look_id: look("l1"), shot_types: defaults().shot_types }],
                reason: None,
            }
            .into(),
            completed(1),
            archived(),
        ];
        for event in events {
            let encoded = wire::encode(&event);
            assert!(encoded.event_type.starts_with("shooting."), "{}", encoded.event_type);
            assert_eq!(encoded.schema_version, 1);
            let decoded: ShootingEvent =
                wire::decode(encoded.event_type, encoded.schema_version, encoded.payload).expect("decodes");
            assert_eq!(decoded, event);
        }
        assert_eq!(ShootingEvent::catalog().len(), 9);
    }
}
