//! Running a container's process under its restart policy: what a
//! supervising `rbk run` does between putting the container on record and
//! finishing it.

use std::path::Path;

use super::record::Record;
use crate::cancel::CancelToken;
use crate::sandbox::{
    forward_signals, ExecSpec, Executor, NamespaceExecutor, OutputStream, SandboxError,
};

/// `--restart`: when a container that exited runs again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit, at most this many times (`None`: no limit).
    OnFailure(Option<u32>),
}

impl RestartPolicy {
    /// Whether a container that exited with `code` after `restarts`
    /// restarts runs again.
    pub fn again(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// Runs the container's process `spec` over `rootfs` in the sandbox, the
/// signals this process gets forwarded to it, and again after an exit
/// while `policy` says so and nobody stopped it (`rbk stop`, a signal);
/// `on_restart(n, code)` hears of the `n`th restart after exit code
/// `code`. Returns the last exit code.
pub fn supervise(
    rootfs: &Path,
    spec: &ExecSpec,
    policy: RestartPolicy,
    record: &Record,
    output: &mut dyn FnMut(OutputStream, &[u8]),
    on_restart: &mut dyn FnMut(u32, i32),
) -> Result<i32, SandboxError> {
    let cancel = CancelToken::new();
    let _forward = forward_signals(&cancel)?;
    let mut restarts = 0u32;
    loop {
        let code = NamespaceExecutor.run(rootfs, spec, output, &cancel)?;
        if !policy.again(code, restarts) || cancel.is_cancelled() || record.stopping() {
            return Ok(code);
        }
        restarts += 1;
        record.restarted(restarts, code);
        on_restart(restarts, code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_follow_the_policy() {
        let cases = [
            (RestartPolicy::No, 1, 0, false),
            (RestartPolicy::OnFailure(None), 0, 0, false),
            (RestartPolicy::OnFailure(None), 1, 100, true),
            (RestartPolicy::OnFailure(Some(3)), 1, 2, true),
            (RestartPolicy::OnFailure(Some(3)), 1, 3, false),
        ];
        for (policy, code, restarts, want) in cases {
            assert_eq!(
                policy.again(code, restarts),
                want,
                "{policy:?} {code} {restarts}"
            );
        }
    }
}
