//! `rbk-scheduler` solves a build graph: it computes cache keys from the
//! build context and parents, looks them up, and runs the misses in
//! parallel — RUN steps in a namespace sandbox, COPY/ADD as file operations —
//! committing each as a layer.
//!
//! The core ([`session`]: its planner and runner; [`step`]) uses only the
//! traits of [`backend`]; [`backend::store::StoreBackend`] implements them
//! over rbk-store. The planner and runner see a graph's ops only through
//! [`step::StepKind`], which [`step::resolve`] picks. It never parses
//! Dockerfiles, reads CLI flags or the environment, or draws on a terminal.

#![deny(missing_docs)]

pub mod backend;
pub mod context;
pub mod explain;
pub mod export;
pub mod fileop;
pub mod fleet;
pub mod image;
mod labels;
pub mod progress;
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
