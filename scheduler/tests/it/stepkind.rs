//! A kind of step the scheduler does not know, brought in through a
//! [`Resolve`]: the planner keys it and the runner runs, caches and commits
//! it through the [`StepKind`] trait alone. `RUN stamp TEXT` resolves to a
//! kind that writes TEXT to `/stamp` itself (no sandbox), and `RUN keep`
//! to one that changes nothing and so adds no layer.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rbk_compiler::graph::Op;
use rbk_runtime::sandbox::{CancelToken, ExecSpec, Executor, OutputStream, SandboxError};
use rbk_scheduler::progress::Silent;
use rbk_scheduler::step::{
    self, BaseImages, Change, Execution, LayerPolicy, Resolve, StepEnv, StepError, StepInputs,
    StepKind,
};
use rbk_scheduler::{BuildOptions, BuildSession, BuildSummary};

use crate::fakes::{Backends, Files};

/// Writes its text to `/stamp`; keyed on the text.
struct Stamp(String);

impl StepKind for Stamp {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::Layer
    }

    fn inputs(&self, _: &StepEnv<'_>, _: &[&str]) -> Result<StepInputs, StepError> {
        let plaintext = serde_json::json!({ "stamp": self.0 });
        Ok(StepInputs::plain(self.0.clone(), plaintext))
    }

    fn execute(
        &self,
        _: &StepEnv<'_>,
        _: &Execution<'_>,
        rootfs: &Path,
    ) -> Result<Change, StepError> {
        std::fs::write(rootfs.join("stamp"), &self.0).unwrap();
        Ok(Change::Changed)
    }
}

/// Changes nothing: a layer only if it did.
struct Keep;

impl StepKind for Keep {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::LayerIfChanged
    }

    fn execute(&self, _: &StepEnv<'_>, _: &Execution<'_>, _: &Path) -> Result<Change, StepError> {
        Ok(Change::Unchanged)
    }
}

/// `RUN stamp …` and `RUN keep` as the fake kinds; the rest as rbk's.
struct WithFakes;

impl Resolve for WithFakes {
    fn resolve<'g>(&self, op: &'g Op) -> Box<dyn StepKind + 'g> {
        if let Op::Exec(e) = op {
            let script = e.args.last().map(String::as_str).unwrap_or_default();
            if let Some(text) = script.strip_prefix("stamp ") {
                return Box::new(Stamp(text.to_string()));
            }
            if script == "keep" {
                return Box::new(Keep);
            }
        }
        step::resolve(op)
    }
}

/// An executor that must not be used: the fake kinds run without it.
#[derive(Default)]
struct NoSandbox {
    asked: AtomicUsize,
}

impl Executor for NoSandbox {
    fn preflight(&self) -> Result<(), String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Err("no sandbox in this test".into())
    }

    fn run(
        &self,
        _: &Path,
        _: &ExecSpec,
        _: &mut dyn FnMut(OutputStream, &[u8]),
        _: &CancelToken,
    ) -> Result<i32, SandboxError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(1)
    }
}

struct World {
    b: Backends,
    sandbox: NoSandbox,
}

impl World {
    fn new() -> World {
        World {
            b: Backends::new(),
            sandbox: NoSandbox::default(),
        }
    }

    fn build(&self, dockerfile: &str) -> BuildSummary {
        let graph = self.b.graph(dockerfile, &[]);
        let bases = BaseImages::new(&self.b.images);
        let services = self.b.services(&bases, &self.sandbox, &Silent);
        let options = BuildOptions::default();
        BuildSession::with_steps(&graph, services, options, &WithFakes)
            .and_then(|s| s.build(&CancelToken::new()))
            .unwrap_or_else(|e| panic!("{}", rbk_scheduler::error_chain(&e)))
    }

    /// The last image's layers and its files, merged bottom to top.
    fn image(&self) -> (usize, Files) {
        let committed = self.b.images.committed.lock().unwrap();
        let layers = self.b.layers.layers.lock().unwrap();
        let descs = &committed.last().unwrap().1;
        let mut files = Files::new();
        for desc in descs {
            files.extend(layers[&desc.digest].clone());
        }
        (descs.len(), files)
    }
}

#[test]
fn a_step_kind_of_its_own_is_planned_run_cached_and_committed_through_the_trait() {
    let w = World::new();
    let df = "FROM base\nRUN stamp hello\nRUN keep\nCMD [\"/app\"]\n";
    let first = w.build(df);
    assert_eq!((first.ran, first.cached), (2, 0));
    let (layers, files) = w.image();
    // The base's layer and the stamp's: `keep` changed nothing.
    assert_eq!(layers, 2);
    assert_eq!(files.get("stamp").map(Vec::as_slice), Some(&b"hello"[..]));
    assert_eq!(
        w.sandbox.asked.load(Ordering::SeqCst),
        0,
        "no sandbox asked"
    );

    // Its key is its own inputs': the same text is served, another runs.
    let again = w.build(df);
    assert_eq!((again.ran, again.cached), (0, 2));
    let other = w.build(&df.replace("hello", "world"));
    assert_eq!((other.ran, other.cached), (2, 0));
    let (_, files) = w.image();
    assert_eq!(files.get("stamp").map(Vec::as_slice), Some(&b"world"[..]));
}
