//! Emitters: a plan ([`crate::plan_doc::PlanDoc`]) written as the
//! pipeline of the engine that runs the shards: a GitHub Actions workflow,
//! a GitLab CI pipeline, a Kubernetes Indexed Job.

use anyhow::{bail, Result};

use crate::plan_doc::PlanDoc;

/// What the emitted pipelines need beyond the plan.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EmitArgs {}

/// An engine to emit for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A GitHub Actions workflow.
    Github,
    /// A GitLab CI pipeline.
    Gitlab,
    /// A Kubernetes Indexed Job.
    K8s,
}

/// `plan` written for `engine`.
pub fn emit(_plan: &PlanDoc, engine: Engine, _args: &EmitArgs) -> Result<String> {
    bail!("emitting a {engine:?} pipeline is not written yet")
}
