//! `flock(2)`: the advisory locks the store's process locks, key locks and
//! leases are made of. The kernel drops a lock when the last descriptor of
//! its open file closes, so a dead process never holds one.

use std::fs::File;
use std::io;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A file locked with `flock(2)`; dropping it unlocks.
pub type Locked = Flock<File>;

/// How to lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlockMode {
    /// Shared, waiting for exclusive holders.
    Shared,
    /// Exclusive, waiting for every other holder.
    Exclusive,
    /// Shared, or `None` at once when an exclusive holder has it.
    TryShared,
    /// Exclusive, or `None` at once when anyone else has it.
    TryExclusive,
}

impl FlockMode {
    fn arg(self) -> FlockArg {
        match self {
            FlockMode::Shared => FlockArg::LockShared,
            FlockMode::Exclusive => FlockArg::LockExclusive,
            FlockMode::TryShared => FlockArg::LockSharedNonblock,
            FlockMode::TryExclusive => FlockArg::LockExclusiveNonblock,
        }
    }
}

/// Locks `file`; `Ok(None)` when a `Try…` mode finds it taken. Retries on
/// EINTR.
pub fn flock(mut file: File, mode: FlockMode) -> io::Result<Option<Locked>> {
    loop {
        match Flock::lock(file, mode.arg()) {
            Ok(l) => return Ok(Some(l)),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// Changes the mode of a held lock (not atomic: `flock(2)` drops the old
/// lock before taking the new one). `Ok(false)` when a `Try…` mode finds
/// it taken, in which case the lock is no longer held in any mode.
pub fn relock(lock: &Locked, mode: FlockMode) -> io::Result<bool> {
    match lock.relock(mode.arg()) {
        Ok(()) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}
