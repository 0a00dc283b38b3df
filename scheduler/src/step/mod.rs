//! Step kinds, as BuildKit's ops: the planner and the runner know one
//! trait, [`StepKind`] — what a step reads (its cache map), how it runs,
//! whether it makes a layer, whether its layer stands apart from its parent
//! (`COPY --link`) — and [`resolve`] is the one place that matches on the
//! graph's [`Op`] to pick the kind. One file per kind: [`from`] (FROM),
//! [`run`] (RUN), [`copy`] (COPY/ADD), [`workdir`] (WORKDIR: a layer when
//! it creates its directory), [`metadata`] (ENV, CMD, LABEL…: a key, no
//! layer). A new instruction is a file here and a line in [`resolve`].
//!
//! What a step selects in a build context is the context module's
//! ([`Contexts`]): made once a build, when the key is made, and read again
//! by the step when it runs.
//!
//! A build can bring kinds of its own through a [`Resolve`] (see
//! `BuildSession::with_steps`): tests add a fake kind that way.

pub mod copy;
mod cutoff;
mod error;
pub mod from;
pub mod metadata;
pub mod run;
pub mod workdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_compiler::graph::Op;

use crate::backend::{Layer, Layers, Mounted, WorkDirs};
use crate::context::Selected;
use crate::progress::{Reporter, Step};
use crate::state::State;
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::{Executor, NetworkMode};

pub use crate::context::Contexts;
pub(crate) use cutoff::result_key;
pub(crate) use error::outcome_of;
pub use error::StepError;
pub use from::BaseImages;

/// How a step's result stands to its parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPolicy {
    /// FROM: no parent; the result is the base image's state
    /// ([`StepKind::base`]).
    Base,
    /// The image config only: the parent's filesystem under a new key,
    /// nothing run (ENV, CMD, LABEL…).
    Config,
    /// One layer, always (RUN, COPY, ADD).
    Layer,
    /// A layer only when the step changes the filesystem: WORKDIR whose
    /// directory is there already adds none, and a cache record without a
    /// layer serves it.
    LayerIfChanged,
}

impl LayerPolicy {
    /// Whether the step runs on a filesystem and may make a layer.
    pub fn runs(self) -> bool {
        matches!(self, LayerPolicy::Layer | LayerPolicy::LayerIfChanged)
    }
}

/// What [`StepKind::execute`] did to the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It changed: commit a layer.
    Changed,
    /// Nothing to do (a WORKDIR whose directory exists): under
    /// [`LayerPolicy::LayerIfChanged`], no layer.
    Unchanged,
}

/// A right the command line must grant (`--allow`), as BuildKit's
/// entitlements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entitlement {
    /// `network.host`: the host's network.
    NetworkHost,
    /// `security.insecure`: no sandbox confinement.
    SecurityInsecure,
}

impl Entitlement {
    /// Its name, as `--allow` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::NetworkHost => "network.host",
            Entitlement::SecurityInsecure => "security.insecure",
        }
    }
}

/// What a running step gets besides its filesystem.
pub struct Execution<'e> {
    /// The step, for its output.
    pub step: &'e Step,
    /// The states of its inputs other than the parent (stages copied or
    /// mounted from), in the graph's order.
    pub extra: &'e [&'e State],
    /// Stops it.
    pub cancel: &'e CancelToken,
}

/// One kind of step: everything the planner and the runner need to know
/// of it. Each method but [`StepKind::policy`] has a default for the kinds
/// that do not use it.
pub trait StepKind: Send + Sync {
    /// How its result stands to its parent's.
    fn policy(&self) -> LayerPolicy;

    /// What it reads beyond its definition and parent: the content part of
    /// its cache key and its plaintext (BuildKit's cache map).
    /// `from_keys` are the keys of the stages it copies or mounts from.
    fn inputs(&self, env: &StepEnv<'_>, from_keys: &[&str]) -> Result<StepInputs, StepError> {
        let _ = (env, from_keys);
        Ok(StepInputs::plain(String::new(), serde_json::json!({})))
    }

    /// Whether its [`StepKind::inputs`] read build contexts only, not the
    /// keys of other stages: the planner then computes them at once, beside
    /// every other step's (a build's contexts are walked in parallel).
    fn inputs_are_early(&self) -> bool {
        false
    }

    /// For [`LayerPolicy::Base`]: the image it names and its platform,
    /// resolved before anything runs; `None` for `scratch`.
    fn base_image(&self) -> Option<(&str, &str)> {
        None
    }

    /// For [`LayerPolicy::Base`]: the state it starts from, for a vertex of
    /// definition digest `def`.
    fn base(&self, bases: &BaseImages<'_>, def: &str) -> Result<State, StepError> {
        let _ = (bases, def);
        Err(StepError::Internal("not a base image"))
    }

    /// Runs it on the filesystem mounted at `rootfs`.
    fn execute(
        &self,
        env: &StepEnv<'_>,
        run: &Execution<'_>,
        rootfs: &Path,
    ) -> Result<Change, StepError> {
        let _ = (env, run, rootfs);
        Err(StepError::Internal("not a step that runs"))
    }

    /// Early cutoff: what its result key is made of besides its own op
    /// and its parent's filesystem (see `cutoff.rs`), known once its inputs
    /// are made; `None` when it has no result key.
    fn result_inputs(
        &self,
        env: &StepEnv<'_>,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<Option<Vec<String>>, StepError> {
        let _ = (env, extra, cancel);
        Ok(None)
    }

    /// The build context files its key was made of, listed in the key's
    /// plaintext (`files`, for `--explain` and the record): made once a
    /// build by the context module ([`Contexts`]), so asking again costs
    /// nothing.
    fn context_files(&self, env: &StepEnv<'_>) -> Result<Option<Arc<Selected>>, StepError> {
        let _ = env;
        Ok(None)
    }

    /// For a step whose layer does not depend on its parent (`COPY
    /// --link`): its definition without the parent (hex). The layer is then
    /// made on nothing, keyed without the parent, and stacked on whichever
    /// parent the step has, as BuildKit's `--link`.
    fn link_definition(&self) -> Option<String> {
        None
    }

    /// Whether running it needs the sandbox (checked once, before a build
    /// runs anything).
    fn needs_sandbox(&self) -> bool {
        false
    }

    /// The entitlements it needs, each with the option that asks for it
    /// (e.g. `RUN --network=host`).
    fn entitlements(&self) -> Vec<(&'static str, Entitlement)> {
        Vec::new()
    }
}

/// Picks the kind of step of each of a graph's ops.
pub trait Resolve: Sync {
    /// The kind of step `op` is.
    fn resolve<'g>(&self, op: &'g Op) -> Box<dyn StepKind + 'g>;
}

/// rbk's own step kinds: [`resolve`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

impl Resolve for Builtin {
    fn resolve<'g>(&self, op: &'g Op) -> Box<dyn StepKind + 'g> {
        resolve(op)
    }
}

/// The kind of step `op` is: the one match on the graph's ops.
pub fn resolve(op: &Op) -> Box<dyn StepKind + '_> {
    match op {
        Op::Source { image, platform } => Box::new(from::FromImage { image, platform }),
        Op::Exec(exec) => Box::new(run::RunStep(exec)),
        Op::File(file) => Box::new(copy::CopyStep(file)),
        Op::Workdir { path, user } => Box::new(workdir::WorkdirStep { path, user }),
        Op::Config { .. } => Box::new(metadata::Metadata),
    }
}

/// What steps need to run: the layer store, the executor, where to report,
/// the directories they may use, and the build's settings for RUN.
pub struct StepEnv<'a> {
    /// Layers: unpack, prepare, view, commit.
    pub layers: &'a dyn Layers,
    /// Runs RUN steps.
    pub executor: &'a dyn Executor,
    /// Receives RUN output.
    pub reporter: &'a dyn Reporter,
    /// Scratch, cache-mount and stat-cache directories.
    pub dirs: WorkDirs,
    /// Network for RUN steps that do not choose one.
    pub network: NetworkMode,
    /// `--secret id=…,src=…`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh id=…`: agent sockets by id.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Build contexts, opened once per build.
    pub contexts: Contexts,
}

impl StepEnv<'_> {
    /// A read-only mount of `state` (a stage copied or mounted from).
    pub fn view(
        &self,
        state: &State,
        cancel: &CancelToken,
    ) -> Result<Box<dyn Mounted + '_>, StepError> {
        let parent = self.layers.unpack(&state.layers, cancel)?;
        Ok(self.layers.view(parent.as_deref())?)
    }
}

/// What a step reads beyond its definition and parent.
#[derive(Debug)]
pub struct StepInputs {
    /// The content-derived part of the cache key.
    pub key: String,
    /// Its plaintext, for `--explain` (a COPY's context files are added
    /// when the step runs or is explained: see
    /// [`StepKind::context_files`]).
    pub plaintext: serde_json::Value,
}

impl StepInputs {
    /// Inputs of content key `key`, explained by `plaintext`.
    pub fn plain(key: String, plaintext: serde_json::Value) -> Self {
        StepInputs { key, plaintext }
    }
}

/// Runs step `kind` on a fresh filesystem over `parent` and commits the
/// change as a layer; `None` when it changed nothing and its policy is
/// [`LayerPolicy::LayerIfChanged`]. A step whose layer stands apart from
/// its parent ([`StepKind::link_definition`]) runs on an empty filesystem
/// instead: its layer is the same over any parent (the caller stacks it).
pub(crate) fn execute(
    env: &StepEnv<'_>,
    kind: &dyn StepKind,
    step: &Step,
    parent: &State,
    extra: &[&State],
    cancel: &CancelToken,
) -> Result<Option<Layer>, StepError> {
    // A linked layer is made on nothing: it must not see the parent.
    let below: &[Layer] = match kind.link_definition() {
        Some(_) => &[],
        None => &parent.layers,
    };
    let parent_key = env.layers.unpack(below, cancel)?;
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    let ws = env.layers.prepare(parent_key.as_deref())?;
    let run = Execution {
        step,
        extra,
        cancel,
    };
    let change = kind.execute(env, &run, ws.rootfs())?;
    if change == Change::Unchanged && kind.policy() == LayerPolicy::LayerIfChanged {
        return Ok(None);
    }
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    Ok(Some(ws.commit(below)?))
}

/// A cache key from its parts (length-prefixed, so parts cannot run into
/// each other).
pub(crate) fn key_of(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}
