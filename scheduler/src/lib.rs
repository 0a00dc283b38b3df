//! `rbk-scheduler` solves a build graph: it computes cache keys from the
//! build context and parents, looks them up, and runs the misses in
//! parallel — RUN steps in a namespace sandbox, COPY/ADD as file operations —
//! committing each as a layer.
//!
//! The core ([`session`], [`plan`](crate::session), the runner, [`step`])
//! uses only the traits of [`backend`]; [`backend::store::StoreBackend`]
//! implements them over rbk-store. It never parses Dockerfiles, reads CLI
//! flags or the environment, or draws on a terminal.

pub mod backend;
pub mod context;
pub mod explain;
pub mod export;
pub mod fileop;
pub mod fleet;
pub mod image;
mod labels;
mod plan;
pub mod progress;
mod runner;
pub mod session;
pub mod shard;
pub mod shared_cache;
pub mod solve;
pub mod state;
pub mod step;

pub use session::{
    BuildError, BuildOptions, BuildSession, BuildSummary, BuiltImage, Entitlements, Services,
    StepOutcome, VertexPlan,
};
pub use step::StepError;

/// An error and its sources on one line, `a: b: c`.
pub use rbk_store::error::error_chain;
