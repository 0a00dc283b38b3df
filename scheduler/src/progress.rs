//! Progress events. The library calls a [`Reporter`]; the CLI draws.

use std::time::Duration;

pub use rbk_runtime::sandbox::OutputStream;

/// A step as shown to the user.
#[derive(Debug, Clone)]
pub struct Step {
    /// Vertex index in the build graph.
    pub vertex: usize,
    /// `[image stage N/M]`-style label, e.g. `nginx 3/8`.
    pub label: String,
    /// The instruction, first line.
    pub text: String,
    /// `source`, `exec`, `file` or `config`.
    pub kind: &'static str,
}

/// How a step ended.
#[derive(Debug, Clone)]
pub struct Finish {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time.
    pub duration: Duration,
    /// For a miss with `--explain`: why it missed.
    pub explain: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran.
    Ran,
    /// Its result came from the cache.
    Cached,
    /// It failed (the error is returned separately).
    Failed,
    /// It was stopped: the build was interrupted, or another step failed.
    Canceled,
}

/// Receives build events; implementations must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    /// A step started (cache lookup included).
    fn on_start(&self, step: &Step);
    /// Output of a running RUN step, in chunks as they arrive.
    fn on_log(&self, step: &Step, stream: OutputStream, data: &[u8]);
    /// A step finished.
    fn on_finish(&self, step: &Step, finish: &Finish);
}

/// A reporter that discards everything.
pub struct Silent;

impl Reporter for Silent {
    fn on_start(&self, _: &Step) {}
    fn on_log(&self, _: &Step, _: OutputStream, _: &[u8]) {}
    fn on_finish(&self, _: &Step, _: &Finish) {}
}
