//! A fake [`Executor`] for tests of the scheduler: it runs nothing, records
//! every spec it is given, and answers with what a closure decides (which may
//! also write files into the rootfs to play the command's effects).

use std::path::Path;
use std::sync::Mutex;

use super::{CancelToken, ExecSpec, Executor, OutputStream, SandboxError};

/// What a fake run produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeOutcome {
    /// The exit code to return.
    pub code: i32,
    /// Bytes "written" to stdout.
    pub stdout: Vec<u8>,
    /// Bytes "written" to stderr.
    pub stderr: Vec<u8>,
}

type Handler = dyn Fn(&Path, &ExecSpec) -> Result<FakeOutcome, SandboxError> + Send + Sync;

/// An [`Executor`] that calls a closure instead of running a container.
pub struct FakeExecutor {
    handler: Box<Handler>,
    calls: Mutex<Vec<(std::path::PathBuf, ExecSpec)>>,
}

impl FakeExecutor {
    /// A fake whose runs are decided by `handler(rootfs, spec)`.
    pub fn new(
        handler: impl Fn(&Path, &ExecSpec) -> Result<FakeOutcome, SandboxError> + Send + Sync + 'static,
    ) -> Self {
        FakeExecutor {
            handler: Box::new(handler),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// A fake where every run succeeds silently.
    pub fn succeeding() -> Self {
        Self::new(|_, _| Ok(FakeOutcome::default()))
    }

    /// Every (rootfs, spec) run so far, in call order.
    pub fn calls(&self) -> Vec<(std::path::PathBuf, ExecSpec)> {
        match self.calls.lock() {
            Ok(calls) => calls.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl std::fmt::Debug for FakeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeExecutor")
            .field("calls", &self.calls().len())
            .finish()
    }
}

impl Executor for FakeExecutor {
    fn run(
        &self,
        rootfs: &Path,
        spec: &ExecSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        match self.calls.lock() {
            Ok(mut calls) => calls.push((rootfs.to_path_buf(), spec.clone())),
            Err(poisoned) => poisoned
                .into_inner()
                .push((rootfs.to_path_buf(), spec.clone())),
        }
        if cancel.is_cancelled() {
            return Err(SandboxError::Cancelled);
        }
        let outcome = (self.handler)(rootfs, spec)?;
        if !outcome.stdout.is_empty() {
            output(OutputStream::Stdout, &outcome.stdout);
        }
        if !outcome.stderr.is_empty() {
            output(OutputStream::Stderr, &outcome.stderr);
        }
        if cancel.is_cancelled() {
            return Err(SandboxError::Cancelled);
        }
        Ok(outcome.code)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_and_replays_the_outcome() {
        let fake = FakeExecutor::new(|root, spec| {
            std::fs::write(root.join("ran"), spec.args.join(" ")).unwrap();
            Ok(FakeOutcome {
                code: 3,
                stdout: b"out".to_vec(),
                stderr: b"err".to_vec(),
            })
        });
        let dir = tempfile::tempdir().unwrap();
        let spec = ExecSpec {
            args: vec!["make".into(), "all".into()],
            ..ExecSpec::default()
        };
        let mut seen = Vec::new();
        let code = fake
            .run(
                dir.path(),
                &spec,
                &mut |s, d| seen.push((s, d.to_vec())),
                &CancelToken::new(),
            )
            .unwrap();
        assert_eq!(code, 3);
        assert_eq!(
            seen,
            [
                (OutputStream::Stdout, b"out".to_vec()),
                (OutputStream::Stderr, b"err".to_vec())
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ran")).unwrap(),
            "make all"
        );
        assert_eq!(fake.calls(), [(dir.path().to_path_buf(), spec)]);
    }

    #[test]
    fn a_cancelled_token_fails_the_run() {
        let fake = FakeExecutor::succeeding();
        let token = CancelToken::new();
        token.cancel();
        let err = fake
            .run(Path::new("/"), &ExecSpec::default(), &mut |_, _| {}, &token)
            .unwrap_err();
        assert!(matches!(err, SandboxError::Cancelled));
    }
}
