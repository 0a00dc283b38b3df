//! One module per kind of step, each holding what goes into its cache key
//! and how it runs: [`from`] (FROM), [`run`] (RUN), [`copy`] (COPY/ADD),
//! [`workdir`] (WORKDIR: a layer when it creates its directory),
//! [`metadata`] (ENV, CMD, LABEL… — a key, no layer). The match over the
//! graph's ops is here, once for keys and once for execution, so a new kind
//! of step touches its own file and these two functions.

pub mod copy;
mod cutoff;
pub mod from;
pub mod metadata;
pub mod run;
pub mod workdir;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_compiler::graph::{Op, Source};
use rbk_compiler::Vertex;

use crate::backend::{BackendError, Layer, Layers, Mounted, WorkDirs};
use crate::context::{ContextError, Selection};
use crate::fileop::FileOpError;
use crate::progress::{Outcome, Reporter, Step};
use crate::state::State;
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::{Executor, NetworkMode, SandboxError};

pub use copy::Contexts;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The command exited non-zero.
    #[error("command {command} exited with code {code}{}", tail_text(.tail))]
    Exit {
        /// The argv, shown as a JSON list.
        command: String,
        /// Exit code.
        code: i32,
        /// Its last output lines.
        tail: Vec<String>,
    },
    /// The sandbox could not run it.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// A COPY/ADD failed.
    #[error(transparent)]
    File(#[from] FileOpError),
    /// The build context could not be read.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A `RUN --mount=type=bind` source is not in its context or stage.
    #[error("bind mount source {path:?}")]
    BindSource {
        /// The source as written.
        path: String,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// `COPY --chmod` with a mode that is neither octal nor symbolic.
    #[error("invalid --chmod={0}: {1}")]
    Chmod(String, String),
    /// A base image is missing or unreadable.
    #[error("base image {image} is not usable (bring it in with `rbk load`, `rbk import` or `rbk pull`)")]
    BaseImage {
        /// The reference.
        image: String,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// A base image of another platform than the build asks for: never a
    /// silent fallback to another architecture.
    #[error("base image {image} is {have}, and this build asks for {wanted}: rbk does not fall back to another platform (bring in the {wanted} image: `rbk pull --platform {wanted} {image}`, or `rbk import`/`rbk load` one)")]
    BasePlatform {
        /// The reference.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// The platform it has.
        have: String,
    },
    /// A secret the step requires was not given.
    #[error("secret {0:?} is required: pass --secret id={0},src=FILE")]
    MissingSecret(String),
    /// An SSH agent the step requires was not given.
    #[error("SSH agent {0:?} is required: pass --ssh {0} (or --ssh {0}=SOCKET|KEYFILE)")]
    MissingSsh(String),
    /// A feature this version does not have.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    /// The store (layers, snapshots, cache) failed.
    #[error(transparent)]
    Backend(BackendError),
    /// Local I/O failed.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Stopped because another step failed or the user interrupted.
    #[error("cancelled")]
    Cancelled,
    /// A bug: the graph is not what the scheduler expects.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<BackendError> for StepError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Cancelled => StepError::Cancelled,
            e => StepError::Backend(e),
        }
    }
}

impl StepError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StepError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl StepError {
    /// How a step that failed with this error ended: canceled when it was
    /// stopped, else failed.
    pub fn outcome(&self) -> Outcome {
        match self {
            StepError::Cancelled => Outcome::Canceled,
            _ => Outcome::Failed,
        }
    }
}

/// How a step that ended with `result` ended.
pub(crate) fn outcome_of<T>(result: &Result<T, StepError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ran,
        Err(e) => e.outcome(),
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n  | {}", tail.join("\n  | "))
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
    pub(crate) fn view(
        &self,
        state: &State,
        cancel: &CancelToken,
    ) -> Result<Box<dyn Mounted + '_>, StepError> {
        let parent = self.layers.unpack(&state.layers, cancel)?;
        Ok(self.layers.view(parent.as_deref())?)
    }
}

/// A COPY's context files, each with the blake3 of its record, in
/// selection order. The copy on a miss reuses them: a large context is
/// walked once, not twice, and the copy holds what the key was made of (its
/// local sources: URLs are fetched beside them).
#[derive(Debug)]
pub(crate) struct FileDigests {
    /// What the COPY selected (only its local sources, when it also names
    /// URLs).
    pub selection: Arc<Selection>,
    /// Their digest.
    pub digest: crate::context::ContentDigest,
}

impl FileDigests {
    /// Each file's path from the source root and its record's digest.
    pub fn named(&self) -> impl Iterator<Item = (String, &[u8; 32])> {
        self.digest.files(&self.selection)
    }
}

/// What a step reads beyond its definition and parent.
pub(crate) struct StepInputs {
    /// The content-derived part of the cache key.
    pub key: String,
    /// Its plaintext, for `--explain`.
    pub plaintext: serde_json::Value,
    /// The context files a COPY digested (path, record digest): the
    /// plaintext's `files`, made into JSON only when the step runs or is
    /// explained (a cache hit of a large context needs none of it).
    pub files: Option<Arc<FileDigests>>,
    /// What a RUN's bind mounts of a build context show, in mount order.
    pub binds: Vec<Arc<FileDigests>>,
}

impl StepInputs {
    fn plain(key: String, plaintext: serde_json::Value) -> Self {
        StepInputs {
            key,
            plaintext,
            files: None,
            binds: Vec::new(),
        }
    }
}

/// The context files a step's key was made of, for the step to read
/// exactly those: a COPY's sources, a RUN's context bind mounts.
#[derive(Default)]
pub(crate) struct Keyed {
    /// A COPY's selection and digest.
    pub files: Option<Arc<FileDigests>>,
    /// A RUN's context bind mounts', in mount order.
    pub binds: Vec<Arc<FileDigests>>,
}

/// What `vx` reads: see [`StepInputs`]. `from_keys` are the keys of the
/// stages it copies or mounts from.
pub(crate) fn inputs(
    env: &StepEnv<'_>,
    vx: &Vertex,
    from_keys: &[&str],
) -> Result<StepInputs, StepError> {
    match &vx.op {
        Op::Exec(e) => run::inputs(env, e, from_keys),
        Op::File(f) => copy::inputs(env, f, from_keys),
        Op::Workdir { path, user } => Ok(StepInputs::plain(
            String::new(),
            serde_json::json!({ "path": path, "user": user }),
        )),
        Op::Source { .. } | Op::Config { .. } => {
            Ok(StepInputs::plain(String::new(), serde_json::json!({})))
        }
    }
}

/// Runs a RUN/COPY/ADD/WORKDIR on a fresh filesystem over `parent` and
/// commits the change as a layer; `None` when a WORKDIR found its directory
/// there already (no change, no layer). A `COPY --link` runs on an empty
/// filesystem instead: its layer is the same over any parent (the caller
/// stacks it).
pub(crate) fn execute(
    env: &StepEnv<'_>,
    vx: &Vertex,
    step: &Step,
    parent: &State,
    extra: &[&State],
    keyed: Keyed,
    cancel: &CancelToken,
) -> Result<Option<Layer>, StepError> {
    // A `COPY --link` layer is made on nothing: it must not see the parent.
    let linked = matches!(&vx.op, Op::File(f) if f.link);
    let below: &[Layer] = if linked { &[] } else { &parent.layers };
    let parent_key = env.layers.unpack(below, cancel)?;
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    let ws = env.layers.prepare(parent_key.as_deref())?;
    match &vx.op {
        Op::Exec(exec) => run::execute(env, exec, step, ws.rootfs(), extra, &keyed.binds, cancel)?,
        Op::File(file) => {
            let src = match &file.from {
                Source::Context { path, .. } => {
                    copy::From::Context(PathBuf::from(path), keyed.files)
                }
                Source::Vertex(_) => copy::From::State(
                    extra
                        .first()
                        .ok_or(StepError::Internal("COPY --from without its input"))?,
                ),
            };
            copy::execute(env, file, &src, ws.rootfs(), cancel)?;
        }
        Op::Workdir { path, user } => {
            if workdir::exists(ws.rootfs(), path)? {
                return Ok(None);
            }
            workdir::create(ws.rootfs(), path, user)?;
        }
        Op::Source { .. } | Op::Config { .. } => {
            return Err(StepError::Internal("not a layer step"))
        }
    }
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    Ok(Some(ws.commit(below)?))
}

pub(crate) use cutoff::result_key;

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
