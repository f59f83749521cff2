//! Declarative workflows: versioned DAG files in `schemas/workflows/`.
//!
//! A workflow is a list of steps, each with a kind the engine knows, the steps
//! it needs, and whether it runs once per variant. The engine turns it into
//! nodes — (step, variant) for per-variant steps, (step, whole) otherwise — and
//! runs every node whose needs are done, so independent steps and the variants
//! of one step run side by side. The files are compiled in, so an agent and the
//! workflow versions it names in provenance can never disagree.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::providers::Capability;

/// What a step does; the engine has one implementation per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Measures the inputs: the dominant colours of the product images.
    Analyse,
    /// Composes the prompt from style, guidelines, subject, shot type (and feedback).
    Prompt,
    /// Makes an image (or clip) through a provider with the step's capability.
    Generate,
    /// Improves an image through a provider with the `enhance` capability.
    Enhance,
    /// Checks the image against the shooting's quality gates.
    Quality,
}

/// One step of a workflow file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// The step's id within the workflow, e.g. `generate`.
    pub id: String,
    /// What it does.
    pub kind: StepKind,
    /// The steps that must be done first.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The provider capability a generate or enhance step routes by.
    #[serde(default)]
    pub capability: Option<Capability>,
    /// Whether it runs once per variant.
    #[serde(default)]
    pub per_variant: bool,
}

/// A parsed, checked workflow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Its name, e.g. `on-model`.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// What it makes, for people.
    pub description: String,
    /// The steps, in file order (any order that respects `needs`).
    pub steps: Vec<StepSpec>,
}

/// Why a workflow file is refused.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Not valid TOML for a workflow.
    #[error("workflow file {file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// Parsed, but inconsistent.
    #[error("workflow {name} v{version}: {message}")]
    Invalid {
        /// The workflow.
        name: String,
        /// Its version.
        version: u32,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No such workflow in this build.
    #[error("workflow {name} v{version} is not known to this agent; known: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The version asked for.
        version: u32,
        /// What is known.
        known: String,
    },
}

/// The workflow files compiled into this build.
const BUILT_IN: &[(&str, &str)] = &[
    ("on-model.v1.toml", include_str!("../../schemas/workflows/on-model.v1.toml")),
    ("lifestyle.v1.toml", include_str!("../../schemas/workflows/lifestyle.v1.toml")),
    ("revise.v1.toml", include_str!("../../schemas/workflows/revise.v1.toml")),
    ("video.v1.toml", include_str!("../../schemas/workflows/video.v1.toml")),
];

impl Workflow {
    /// Parses and checks one workflow file.
    pub fn parse(file: &str, text: &str) -> Result<Self, WorkflowError> {
        let workflow: Workflow = toml::from_str(text)
            .map_err(|e| WorkflowError::Parse { file: file.to_owned(), message: e.to_string() })?;
        workflow.check()?;
        Ok(workflow)
    }

    fn invalid(&self, message: String) -> WorkflowError {
        WorkflowError::Invalid { name: self.name.clone(), version: self.version, message }
    }

    /// Refuses duplicate ids, unknown or later needs (which also rules out
    /// cycles: a step may only need steps listed before it), a provider step
    /// without a capability, and a per-variant need of a whole step.
    fn check(&self) -> Result<(), WorkflowError> {
        if self.steps.is_empty() {
            return Err(self.invalid("it has no steps".into()));
        }
        for (index, step) in self.steps.iter().enumerate() {
            let earlier = &self.steps[..index];
            if earlier.iter().any(|s| s.id == step.id) {
                return Err(
                    self.invalid(format!("step id {} is used twice; give each step its own id", step.id))
                );
            }
            for need in &step.needs {
                match earlier.iter().find(|s| &s.id == need) {
                    None => {
                        return Err(self.invalid(format!(
                            "step {} needs {need}, which is not a step listed before it (list steps in dependency order; cycles are impossible)",
                            step.id
                        )));
                    }
                    Some(needed) if needed.per_variant && !step.per_variant => {
                        return Err(self.invalid(format!(
                            "step {} runs once but needs the per-variant step {need}; make it per_variant",
                            step.id
                        )));
                    }
                    Some(_) => {}
                }
            }
            let needs_capability = matches!(step.kind, StepKind::Generate | StepKind::Enhance);
            if needs_capability && step.capability.is_none() {
                return Err(self.invalid(format!("step {} calls a provider; give it a capability", step.id)));
            }
            if matches!(step.kind, StepKind::Generate | StepKind::Enhance | StepKind::Quality)
                && !step.per_variant
            {
                return Err(self.invalid(format!("step {} works on images; make it per_variant", step.id)));
            }
        }
        Ok(())
    }

    /// The step `id`.
    pub fn step(&self, id: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// The workflows an agent can run, by name and version.
#[derive(Debug, Clone)]
pub struct WorkflowSet {
    workflows: BTreeMap<(String, u32), Workflow>,
}

impl WorkflowSet {
    /// The workflow files compiled into this build.
    pub fn built_in() -> Result<Self, WorkflowError> {
        let mut workflows = BTreeMap::new();
        for (file, text) in BUILT_IN {
            let workflow = Workflow::parse(file, text)?;
            workflows.insert((workflow.name.clone(), workflow.version), workflow);
        }
        Ok(WorkflowSet { workflows })
    }

    /// The workflow `name` v`version`.
    pub fn get(&self, name: &str, version: u32) -> Result<&Workflow, WorkflowError> {
        self.workflows.get(&(name.to_owned(), version)).ok_or_else(|| WorkflowError::Unknown {
            name: name.to_owned(),
            version,
            known: self.workflows.keys().map(|(n, v)| format!("{n} v{v}")).collect::<Vec<_>>().join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_workflows_parse_and_include_the_four_the_pipeline_needs() {
        let set = WorkflowSet::built_in().expect("built-in workflows are valid");
        for name in ["on-model", "lifestyle", "revise", "video"] {
            set.get(name, 1).unwrap_or_else(|e| panic!("{e}"));
        }
        let error = set.get("on-model", 9).expect_err("no v9");
        assert!(error.to_string().contains("on-model v1"), "{error}");
    }

    #[test]
    fn a_step_that_needs_a_later_or_missing_step_is_refused() {
        let text = r#"
            name = "x"
            version = 1
            description = "d"
            [[steps]]
            id = "a"
            kind = "prompt"
            needs = ["b"]
            [[steps]]
            id = "b"
            kind = "analyse"
        "#;
        let error = Workflow::parse("x.toml", text).expect_err("forward need");
        assert!(error.to_string().contains("needs b"), "{error}");
    }

    #[test]
    fn a_provider_step_without_a_capability_is_refused() {
        let text = r#"
            name = "x"
            version = 1
            description = "d"
            [[steps]]
            id = "g"
            kind = "generate"
            per_variant = true
        "#;
        let error = Workflow::parse("x.toml", text).expect_err("no capability");
        assert!(error.to_string().contains("capability"), "{error}");
    }
}
