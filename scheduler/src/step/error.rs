//! Why a step failed ([`StepError`]), and how that ends it for the user.

use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::context::ContextError;
use crate::fileop::FileOpError;
use crate::progress::Outcome;
use rbk_runtime::sandbox::SandboxError;

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
