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

use crate::flock::{self as file_lock, FlockMode, Locked};

use crate::error::{IoResultExt, StoreError};

/// A held lock on the store; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct LockGuard {
    // None for a nested guard of a thread that already holds the lock.
    lock: Option<Locked>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some((_, n)) = held.get_mut(&self.path) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.path);
                }
            }
        });
        self.lock.take();
    }
}

thread_local! {
    /// The store locks this thread holds, with their mode and nesting
    /// depth. A nested request is granted without a second `flock(2)`,
    /// which would deadlock against the thread's own lock (locks of two
    /// open files conflict even within one process, which is what keeps
    /// *other* threads out).
    static HELD: std::cell::RefCell<std::collections::HashMap<PathBuf, (LockMode, usize)>> =
        Default::default();
}

/// How a lock is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Several readers at once.
    Shared,
    /// One writer, no readers.
    Exclusive,
}

/// Opens (creating) a lock file. On a read-only filesystem it is opened
/// for reading, which `flock(2)` is as happy with, and `None` if it is
/// not there: nothing can change a store nobody can write.
fn open_lock_file(path: &Path) -> Result<Option<File>, StoreError> {
    let rw = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path);
    match rw {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => match File::open(path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at("open lock file", path),
        },
        Err(e) => Err(StoreError::Io {
            op: "open lock file",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Whether `path`'s filesystem is mounted read-only.
pub(crate) fn read_only_fs(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK) == Err(nix::errno::Errno::EROFS)
}

/// The refusal of a change to the read-only store whose lock is `path`.
fn read_only(path: &Path) -> StoreError {
    StoreError::ReadOnly {
        root: path.parent().unwrap_or(path).to_path_buf(),
    }
}

fn flock(path: &Path, file: File, mode: FlockMode) -> Result<Option<Locked>, StoreError> {
    file_lock::flock(file, mode).map_err(|source| StoreError::Lock {
        path: path.to_path_buf(),
        source,
    })
}

/// Takes the store's mutation lock at `path`, waiting for other holders.
/// Re-entrant within a thread: a thread holding the lock exclusive may take
/// it again in either mode, and one holding it shared may take it shared;
/// asking for exclusive while holding it shared is refused (an upgrade could
/// deadlock against another upgrader).
pub(crate) fn lock(path: &Path, mode: LockMode) -> Result<LockGuard, StoreError> {
    let nested = HELD.with(|held| {
        let mut held = held.borrow_mut();
        match held.get_mut(path) {
            Some((LockMode::Shared, _)) if mode == LockMode::Exclusive => Err(StoreError::Lock {
                path: path.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::Deadlock,
                    "exclusive lock requested while holding it shared",
                ),
            }),
            Some((_, n)) => {
                *n += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    })?;
    if nested {
        return Ok(LockGuard {
            lock: None,
            path: path.to_path_buf(),
        });
    }
    if mode == LockMode::Exclusive && read_only_fs(path.parent().unwrap_or(path)) {
        return Err(read_only(path));
    }
    let Some(file) = open_lock_file(path)? else {
        // A read-only store without a lock file: nothing to wait for.
        HELD.with(|held| held.borrow_mut().insert(path.to_path_buf(), (mode, 1)));
        return Ok(LockGuard {
            lock: None,
            path: path.to_path_buf(),
        });
    };
    let arg = match mode {
        LockMode::Shared => FlockMode::Shared,
        LockMode::Exclusive => FlockMode::Exclusive,
    };
    match flock(path, file, arg)? {
        Some(l) => {
            HELD.with(|held| held.borrow_mut().insert(path.to_path_buf(), (mode, 1)));
            Ok(LockGuard {
                lock: Some(l),
                path: path.to_path_buf(),
            })
        }
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
pub(crate) struct ActiveLock {
    // None on a read-only store that has never been opened read-write.
    _lock: Option<Locked>,
}

impl ActiveLock {
    /// Registers this process as a user of the store. If no other process
    /// holds the store open, `when_alone` runs first (under an exclusive
    /// lock), which is how `tmp/` leftovers of crashed processes are swept.
    pub(crate) fn acquire(
        path: &Path,
        when_alone: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<Self, StoreError> {
        let Some(file) = open_lock_file(path)? else {
            return Ok(ActiveLock { _lock: None });
        };
        if let Some(excl) = flock(path, file, FlockMode::TryExclusive)? {
            let res = when_alone();
            // Downgrading is not atomic in flock(2): another process may slip
            // in between and sweep tmp/ too, which is harmless since we have
            // not staged anything yet.
            let relocked = file_lock::relock(&excl, FlockMode::Shared);
            res?;
            if relocked.is_ok_and(|held| held) {
                return Ok(ActiveLock { _lock: Some(excl) });
            }
        }
        let file = open_lock_file(path)?.ok_or_else(|| StoreError::Lock {
            path: path.to_path_buf(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })?;
        match flock(path, file, FlockMode::Shared)? {
            Some(l) => Ok(ActiveLock { _lock: Some(l) }),
            None => Err(StoreError::Lock {
                path: path.to_path_buf(),
                source: io::Error::from(io::ErrorKind::WouldBlock),
            }),
        }
    }

    /// Whether another process (or another open of the store) has the store
    /// open right now. Briefly converts our shared lock to exclusive: flock
    /// drops the old lock before trying the new one, so the caller must not
    /// be staging anything in tmp/ meanwhile (garbage collection, which
    /// asks this, does not).
    pub(crate) fn others_present(&self) -> bool {
        let Some(lock) = &self._lock else {
            return true;
        };
        let alone = file_lock::relock(lock, FlockMode::TryExclusive).is_ok_and(|held| held);
        // Back to shared whatever happened; blocking is fine since only
        // exclusive holders (momentary, in `acquire`) can be in the way.
        let _ = file_lock::relock(lock, FlockMode::Shared);
        !alone
    }
}

/// A named lock shared by every process on the store (one step's cache key,
/// one snapshot to unpack): `locks/<name>.lock`, taken with `flock(2)`.
///
/// The kernel drops the lock when its holder dies, so a SIGKILLed process
/// never leaves a stale lock: the next waiter takes it over. The holder
/// unlinks the file before letting go, so lock files do not pile up; a
/// waiter that then finds it locked a file no longer at the path starts
/// again on the new one, which keeps the exclusion exact.
#[derive(Debug)]
pub struct KeyLock {
    lock: Option<Locked>,
    path: PathBuf,
}

/// How long a waiter sleeps between tries: short enough that a cancelled
/// build stops at once, long enough to cost nothing while another process
/// runs a step for minutes.
const KEY_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(25);

impl KeyLock {
    /// Takes lock `name` in `dir`, waiting while another holder has it.
    /// `on_wait` is called once, when the lock is found taken (to tell the
    /// user); `cancelled` is polled while waiting, and returns `Ok(None)`
    /// when it says so.
    pub fn acquire(
        dir: &Path,
        name: &str,
        mut on_wait: impl FnMut(),
        cancelled: impl Fn() -> bool,
    ) -> Result<Option<KeyLock>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(dir).at("create directory", dir)?;
        let path = dir.join(format!("{name}.lock"));
        let mut told = false;
        loop {
            let Some(file) = open_lock_file(&path)? else {
                return Err(read_only(dir));
            };
            let Some(held) = flock(&path, file, FlockMode::TryExclusive)? else {
                if !told {
                    told = true;
                    on_wait();
                }
                if cancelled() {
                    return Ok(None);
                }
                std::thread::sleep(KEY_LOCK_POLL);
                continue;
            };
            // The file we locked must still be the one at the path: the
            // previous holder may have unlinked it just before we got it.
            let ours = held.metadata().at("stat lock file", &path)?;
            match std::fs::metadata(&path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    return Ok(Some(KeyLock {
                        lock: Some(held),
                        path,
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at("stat", &path),
            }
        }
    }
}

/// Lock files in `dir` that nobody holds (their holder died before it could
/// unlink them). With `remove`, each is deleted under its lock, with the
/// same inode check as [`KeyLock::acquire`].
pub(crate) fn stale_key_locks(dir: &Path, remove: bool) -> Result<Vec<PathBuf>, StoreError> {
    use std::os::unix::fs::MetadataExt;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("list", dir),
    };
    let mut out = Vec::new();
    for entry in rd {
        let path = entry.at("list", dir)?.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at("open lock file", &path),
        };
        let Some(held) = flock(&path, file, FlockMode::TryExclusive)? else {
            continue;
        };
        let same = match (held.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            if remove {
                let _ = std::fs::remove_file(&path);
            }
            out.push(path);
        }
    }
    Ok(out)
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then release it.
        let _ = std::fs::remove_file(&self.path);
        self.lock.take();
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
        let f = open_lock_file(&p).unwrap().unwrap();
        assert!(flock(&p, f, FlockMode::TryExclusive).unwrap().is_none());
        drop((a, b));
        let f = open_lock_file(&p).unwrap().unwrap();
        assert!(flock(&p, f, FlockMode::TryExclusive).unwrap().is_some());
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

    #[test]
    fn key_locks_exclude_each_other_and_leave_no_files() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (dir, inside, max) = (dir.path().to_path_buf(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let g = KeyLock::acquire(&dir, "k", || {}, || false)
                            .unwrap()
                            .unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1, "two holders at once");
        assert!(!dir.path().join("k.lock").exists());
    }

    #[test]
    fn a_waiter_reports_once_and_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let _held = KeyLock::acquire(dir.path(), "k", || {}, || false)
            .unwrap()
            .unwrap();
        let mut waits = 0;
        let polls = std::cell::Cell::new(0);
        let got = KeyLock::acquire(
            dir.path(),
            "k",
            || waits += 1,
            || {
                polls.set(polls.get() + 1);
                polls.get() > 3
            },
        )
        .unwrap();
        assert!(got.is_none());
        assert_eq!(waits, 1);
    }

    #[test]
    fn the_store_lock_is_reentrant_within_a_thread_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        let outer = lock(&p, LockMode::Exclusive).unwrap();
        // Nested in the same thread: granted at once, in either mode.
        let inner = lock(&p, LockMode::Shared).unwrap();
        let inner2 = lock(&p, LockMode::Exclusive).unwrap();
        drop((inner, inner2));
        // Another thread still waits for the outer lock.
        let p2 = p.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _g = lock(&p2, LockMode::Shared).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(outer);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        // Upgrading shared to exclusive is refused, not a deadlock.
        let s = lock(&p, LockMode::Shared).unwrap();
        assert!(lock(&p, LockMode::Exclusive).is_err());
        drop(s);
        drop(lock(&p, LockMode::Exclusive).unwrap());
    }
}
