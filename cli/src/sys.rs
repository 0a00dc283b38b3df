//! The CLI's syscalls, all here: whether rbk runs as root, and Ctrl-C and
//! SIGTERM setting a cancel token instead of killing rbk, so running steps
//! are stopped, mounts undone and nothing half-made is committed.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use rbk_scheduler::sandbox::CancelToken;

static TOKEN: OnceLock<CancelToken> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    if let Some(t) = TOKEN.get() {
        t.cancel();
    }
}

/// Whether rbk runs as root (the store's default place depends on it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Routes SIGINT and SIGTERM to `token` for the rest of the process.
pub fn cancel_on_interrupt(token: &CancelToken) {
    let _ = TOKEN.set(token.clone());
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic store through a token
        // that lives for the whole process (a static), which is
        // async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
}
