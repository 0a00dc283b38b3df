//! `rbk-scheduler` solves a build graph: it computes cache keys from the
//! build context and parents, looks them up, and runs the misses in
//! parallel — RUN steps in a namespace sandbox, COPY/ADD as file operations —
//! committing each as a layer through the store's traits.
//!
//! It never parses Dockerfiles, reads CLI flags or draws on a terminal.

pub mod build;
pub mod context;
pub mod explain;
pub mod fileop;
mod plan;
pub mod progress;
pub mod sandbox;
pub mod shared_cache;
pub mod solve;
mod steps;

pub use steps::StepError;
