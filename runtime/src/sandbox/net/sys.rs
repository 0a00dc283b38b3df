//! The syscalls of user-mode networking: making a network namespace that
//! no process lives in yet, and handing slirp4netns the descriptors it
//! needs (the namespace, its ready pipe, and the pipe whose closing tells
//! it to exit). Kept apart from the sandbox's own `sys` so that
//! networking and the sandbox's process code do not depend on each other.
#![allow(unsafe_code)]

use std::os::fd::{OwnedFd, RawFd};

/// A new network namespace (only `lo`, down), held by the returned fd and
/// owned by rbk's user namespace (the host's, or a rootless rbk's own, as
/// a keeper's `unshare` would make it). It is made on a short-lived thread
/// of its own: `unshare(CLONE_NEWNET)` moves only the calling thread, and
/// the thread ends once the namespace is open, so no thread of rbk stays
/// in it.
pub(super) fn new_netns() -> std::io::Result<OwnedFd> {
    std::thread::Builder::new()
        .name("rbk-netns".into())
        .spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
            std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the thread making a network namespace panicked"))?
}

/// Makes `fds` (close-on-exec here) inherited by the program `cmd` runs:
/// their close-on-exec flags are cleared in the child, after the fork.
pub(super) fn inherit_in_child<const N: usize>(cmd: &mut std::process::Command, fds: [RawFd; N]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes fcntl calls on
    // descriptor numbers (async-signal-safe, no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
