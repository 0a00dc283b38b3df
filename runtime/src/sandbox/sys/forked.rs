//! What a forked child may do when a step of its setup fails: report the
//! step and its errno to rbk on the status pipe, and exit at once. Used by
//! the keeper, init and the joiner ([`super::child`], [`super::join`]) and
//! by the terminal setup inside the container ([`super::terminal`]); it
//! depends on none of them.

use std::os::fd::RawFd;

use nix::errno::Errno;

use super::{Step, EXIT_SETUP, STATUS_FD};

/// Ends the forked process at once with `code`.
pub(super) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors, which must not run in a forked child.
    unsafe { libc::_exit(code) }
}

/// Writes a 12-byte status record: tag, step, arg, value (errno or pid).
pub(super) fn report(step: Step, arg: u32, value: i32) {
    let mut rec = [0u8; 12];
    rec[0..2].copy_from_slice(&(step as u16).to_le_bytes());
    rec[4..8].copy_from_slice(&arg.to_le_bytes());
    rec[8..12].copy_from_slice(&value.to_le_bytes());
    // SAFETY: writes from a valid stack buffer to an fd we own; a write of
    // 12 bytes to a pipe is atomic.
    unsafe { libc::write(STATUS_FD, rec.as_ptr().cast(), rec.len()) };
}

/// Reports that `step` failed with `e` and exits.
pub(super) fn fail(step: Step, arg: u32, e: Errno) -> ! {
    report(step, arg, e as i32);
    exit(EXIT_SETUP)
}

/// The value of `r`, or [`fail`] with its error.
pub(super) fn check<T>(r: nix::Result<T>, step: Step, arg: u32) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(step, arg, e),
    }
}

/// Closes a raw descriptor, ignoring failure.
pub(super) fn close_raw(fd: RawFd) {
    // SAFETY: closing an fd number this process owns and no longer uses.
    unsafe { libc::close(fd) };
}
