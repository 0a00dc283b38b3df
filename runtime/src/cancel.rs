//! Stopping a build, or one running command, from another thread (Ctrl-C,
//! a sibling step's failure): the solver, the steps and the sandbox all
//! watch the same token. Its own module: the solver knows nothing of
//! sandboxes.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

/// Shared flag and signal mailbox to stop or signal a running command from
/// another thread. Cloning shares the same token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    signal: AtomicI32,
}

impl CancelToken {
    /// A fresh, not-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the container's whole process tree (the run then returns
    /// [`crate::sandbox::SandboxError::Cancelled`]). Idempotent.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Asks the run to deliver signal `signo` (e.g. `libc::SIGTERM`) to the
    /// container's command; it is delivered within ~50 ms.
    pub fn send_signal(&self, signo: i32) {
        self.0.signal.store(signo, Ordering::SeqCst);
    }

    pub(crate) fn take_signal(&self) -> Option<i32> {
        match self.0.signal.swap(0, Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}
