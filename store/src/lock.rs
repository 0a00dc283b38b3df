//! Process locks on the store, so several `rbk` processes can share one root.
//!
//! Two `flock(2)` locks, both released by the kernel when their holder dies
//! (even by SIGKILL), so a crash never leaves a stale lock behind:
//!
//! - `lock`: taken exclusive around every mutation of `index.json`, cache
//!   records and garbage collection, shared around reads that need a
//!   consistent view.
//! - `active`: every open store holds it shared for its whole life. A process
//!   that can take it exclusive is alone, so whatever is in `tmp/` is left
//!   over from a crash and can be deleted. Without this, one process could
//!   sweep away another's half-written blob.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{IoResultExt, StoreError};

/// A held lock on the store; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _lock: Flock<File>,
}

/// How a lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Several readers at once.
    Shared,
    /// One writer, no readers.
    Exclusive,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .at("open lock file", path)
}

fn flock(path: &Path, mut file: File, arg: FlockArg) -> Result<Option<Flock<File>>, StoreError> {
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => return Ok(Some(l)),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => {
                return Err(StoreError::Lock {
                    path: path.to_path_buf(),
                    source: io::Error::from_raw_os_error(e as i32),
                })
            }
        }
    }
}

/// Takes the store's mutation lock at `path`, waiting for other holders.
pub fn lock(path: &Path, mode: LockMode) -> Result<LockGuard, StoreError> {
    let file = open_lock_file(path)?;
    let arg = match mode {
        LockMode::Shared => FlockArg::LockShared,
        LockMode::Exclusive => FlockArg::LockExclusive,
    };
    match flock(path, file, arg)? {
        Some(l) => Ok(LockGuard { _lock: l }),
        // A blocking flock never reports EWOULDBLOCK; treat it as an error
        // rather than panic if a kernel ever does.
        None => Err(StoreError::Lock {
            path: path.to_path_buf(),
            source: io::Error::from(io::ErrorKind::WouldBlock),
        }),
    }
}

/// The "this process uses the store" lock, held shared while a store is open.
#[derive(Debug)]
pub struct ActiveLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl ActiveLock {
    /// Registers this process as a user of the store. If no other process
    /// holds the store open, `when_alone` runs first (under an exclusive
    /// lock), which is how `tmp/` leftovers of crashed processes are swept.
    pub fn acquire(
        path: &Path,
        when_alone: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        if let Some(excl) = flock(path, open_lock_file(path)?, FlockArg::LockExclusiveNonblock)? {
            let res = when_alone();
            // Downgrading is not atomic in flock(2): another process may slip
            // in between and sweep tmp/ too, which is harmless since we have
            // not staged anything yet.
            let relocked = excl.relock(FlockArg::LockShared);
            res?;
            if relocked.is_ok() {
                return Ok(ActiveLock {
                    _lock: excl,
                    path: path.to_path_buf(),
                });
            }
        }
        let file = open_lock_file(path)?;
        match flock(path, file, FlockArg::LockShared)? {
            Some(l) => Ok(ActiveLock {
                _lock: l,
                path: path.to_path_buf(),
            }),
            None => Err(StoreError::Lock {
                path: path.to_path_buf(),
                source: io::Error::from(io::ErrorKind::WouldBlock),
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether another process (or another open of the store) has the store
    /// open right now. Briefly converts our shared lock to exclusive: flock
    /// drops the old lock before trying the new one, so the caller must not
    /// be staging anything in tmp/ meanwhile (garbage collection, which
    /// asks this, does not).
    pub fn others_present(&self) -> bool {
        let alone = self._lock.relock(FlockArg::LockExclusiveNonblock).is_ok();
        // Back to shared whatever happened; blocking is fine since only
        // exclusive holders (momentary, in `acquire`) can be in the way.
        let _ = self._lock.relock(FlockArg::LockShared);
        !alone
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let a = lock(&p, LockMode::Shared).unwrap();
        let b = lock(&p, LockMode::Shared).unwrap();
        let f = open_lock_file(&p).unwrap();
        assert!(flock(&p, f, FlockArg::LockExclusiveNonblock)
            .unwrap()
            .is_none());
        drop((a, b));
        let f = open_lock_file(&p).unwrap();
        assert!(flock(&p, f, FlockArg::LockExclusiveNonblock)
            .unwrap()
            .is_some());
    }

    #[test]
    fn sweep_runs_only_when_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("active");
        let mut ran = 0;
        let first = ActiveLock::acquire(&p, || {
            ran += 1;
            Ok(())
        })
        .unwrap();
        let second = ActiveLock::acquire(&p, || {
            ran += 10;
            Ok(())
        })
        .unwrap();
        assert_eq!(ran, 1);
        assert!(first.others_present());
        drop(second);
        assert!(!first.others_present());
        assert!(!first.others_present(), "the check must keep our own lock");
        drop(first);
        let _third = ActiveLock::acquire(&p, || {
            ran += 100;
            Ok(())
        })
        .unwrap();
        assert_eq!(ran, 101);
    }
}
