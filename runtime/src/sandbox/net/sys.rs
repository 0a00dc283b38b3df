//! The one syscall of user-mode networking: handing slirp4netns the read
//! end of the pipe whose closing tells it to exit. Kept apart from the
//! sandbox's own `sys` so that networking and the sandbox's process code
//! do not depend on each other.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// Makes `fd` (close-on-exec here) inherited by the program `cmd` runs:
/// its close-on-exec flag is cleared in the child, after the fork.
pub(super) fn inherit_in_child(cmd: &mut std::process::Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure makes one fcntl call on a
    // descriptor number (async-signal-safe, no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
