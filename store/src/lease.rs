//! Leases: what a running process uses, so `prune` (in another process)
//! leaves it alone, in the manner of containerd's leases.
//!
//! Each process that writes or uses content gets one lease file,
//! `leases/<pid>-<n>`, which it holds with an exclusive `flock(2)` for its
//! whole life and to which it appends one line per resource:
//! `blob sha256:<hex>` or `snapshot <key>`. The kernel releases the lock
//! when the process dies, however it dies; so a lease file whose lock can be
//! taken belongs to a dead process and is deleted by the next reader.
//!
//! The protocol that makes this exact:
//! - a writer adds a resource to its lease *before* it appears (before a
//!   blob or snapshot is renamed into place);
//! - a user of an existing resource (a base image, a cache hit, a snapshot
//!   to stack on) adds it while holding the store lock shared, in the same
//!   critical section in which it checks that the resource exists;
//! - `prune` holds the store lock exclusive, lists its candidates first and
//!   reads the live leases after, so anything that appeared before the list
//!   was leased before the read.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::flock::{flock, FlockMode, Locked};

use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layout::Layout;

/// One resource a lease keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Leased {
    /// A blob.
    Blob(Digest),
    /// A snapshot, by key (a chain id's hex for committed layers).
    Snapshot(String),
}

impl Leased {
    fn line(&self) -> String {
        match self {
            Leased::Blob(d) => format!("blob {d}\n"),
            Leased::Snapshot(k) => format!("snapshot {k}\n"),
        }
    }

    fn parse(line: &str) -> Option<Leased> {
        match line.split_once(' ')? {
            ("blob", d) => d.parse().ok().map(Leased::Blob),
            ("snapshot", k) if !k.is_empty() && !k.contains('/') => {
                Some(Leased::Snapshot(k.to_string()))
            }
            _ => None,
        }
    }
}

/// This process's lease on one store. The file is made on first use, so
/// commands that only read (`images`, `inspect`) leave nothing behind.
#[derive(Debug)]
pub struct Lease {
    dir: PathBuf,
    open: Mutex<Option<LeaseFile>>,
    // A read-only store's: nothing can be pruned from it, so nothing is
    // leased (and no lease file could be written).
    disabled: bool,
}

#[derive(Debug)]
struct LeaseFile {
    file: Locked,
    path: PathBuf,
    held: HashSet<Leased>,
}

impl Lease {
    /// A lease in `root/leases`, not yet written.
    pub fn new(root: &Path) -> Lease {
        Lease {
            dir: Layout::new(root).leases(),
            open: Mutex::new(None),
            disabled: false,
        }
    }

    /// The lease of a process on a read-only store: adding is a no-op.
    pub fn disabled(root: &Path) -> Lease {
        Lease {
            dir: Layout::new(root).leases(),
            open: Mutex::new(None),
            disabled: true,
        }
    }

    /// Adds resources to the lease (those it holds already are skipped).
    pub fn add(&self, items: impl IntoIterator<Item = Leased>) -> Result<(), StoreError> {
        if self.disabled {
            return Ok(());
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.is_none() {
            *open = Some(self.create()?);
        }
        let Some(lf) = open.as_mut() else {
            return Ok(());
        };
        let mut text = String::new();
        for item in items {
            if !lf.held.contains(&item) {
                text.push_str(&item.line());
                lf.held.insert(item);
            }
        }
        if !text.is_empty() {
            // One write of whole lines to an O_APPEND file: a reader sees
            // each line whole or not at all (a torn last line is ignored).
            (&*lf.file)
                .write_all(text.as_bytes())
                .at("write lease", &lf.path)?;
        }
        Ok(())
    }

    /// The lease file, if this process has used the store.
    pub fn path(&self) -> Option<PathBuf> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.as_ref().map(|lf| lf.path.clone())
    }

    fn create(&self) -> Result<LeaseFile, StoreError> {
        fs::create_dir_all(&self.dir).at("create directory", &self.dir)?;
        let mut n = 0u64;
        loop {
            n += 1;
            let path = self.dir.join(format!("{}-{n}", std::process::id()));
            let file = match OpenOptions::new()
                .create_new(true)
                .append(true)
                .read(true)
                .open(&path)
            {
                Ok(f) => f,
                // Left by a dead process with our pid, or another lease of
                // this process (a second open of the store).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at("create lease", &path),
            };
            return match flock(file, FlockMode::TryExclusive) {
                // A sweeper that opened it between its creation and our
                // lock took it for a dead process's and unlinked it: a
                // lease nobody can read keeps nothing; make another.
                Ok(Some(file)) if !same_file(&file, &path) => continue,
                Ok(Some(file)) => Ok(LeaseFile {
                    file,
                    path,
                    held: HashSet::new(),
                }),
                // A sweeper is probing the file we just made (and will
                // delete it as a dead process's): make another.
                Ok(None) => continue,
                Err(source) => Err(StoreError::Lock { path, source }),
            };
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(lf) = open.take() {
            // Unlink while still holding the lock; readers then never see a
            // released lease file that is about to go anyway.
            let _ = fs::remove_file(&lf.path);
        }
    }
}

/// What the live leases of a store hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveLeases {
    /// Leased blobs.
    pub blobs: HashSet<Digest>,
    /// Leased snapshots.
    pub snapshots: HashSet<String>,
    /// Lease files of processes that are gone (removed when `sweep` was
    /// asked for, else only counted).
    pub dead: Vec<PathBuf>,
}

/// Reads every live lease under `root/leases` but `own` (the caller's: a
/// process does not prune from under itself). A lease file whose lock can
/// be taken belongs to a dead process: with `sweep` it is deleted (under
/// its lock, so no process can be adding to it), else only reported.
pub fn live_leases(root: &Path, own: Option<&Path>, sweep: bool) -> Result<LiveLeases, StoreError> {
    let dir = Layout::new(root).leases();
    let mut out = LiveLeases::default();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at("list", &dir),
    };
    for entry in rd {
        let path = entry.at("list", &dir)?.path();
        if own == Some(path.as_path()) {
            continue;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            // Its owner finished and unlinked it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).at("open lease", &path),
        };
        // Probe with a second open: our own lease conflicts with it too.
        let probe = File::open(&path).at("open lease", &path)?;
        match flock(probe, FlockMode::TryShared) {
            Ok(Some(dead)) => {
                // Only if the path is still this file: a lease made since
                // under the same name is live.
                if sweep && same_file(&dead, &path) {
                    let _ = fs::remove_file(&path);
                }
                out.dead.push(path);
            }
            Ok(None) => {
                let text = io::read_to_string(file).at("read lease", &path)?;
                // Only whole lines: the last may be mid-write.
                let whole = text.rfind('\n').map_or("", |i| &text[..i]);
                for item in whole.lines().filter_map(Leased::parse) {
                    match item {
                        Leased::Blob(d) => out.blobs.insert(d),
                        Leased::Snapshot(k) => out.snapshots.insert(k),
                    };
                }
            }
            Err(source) => return Err(StoreError::Lock { path, source }),
        }
    }
    Ok(out)
}

fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_are_read_and_dead_ones_swept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(
            live_leases(root, None, true).unwrap(),
            LiveLeases::default()
        );
        let lease = Lease::new(root);
        assert!(lease.path().is_none(), "nothing written before first use");
        let d = Digest::of(b"x");
        lease
            .add([Leased::Blob(d.clone()), Leased::Snapshot("abc".into())])
            .unwrap();
        lease.add([Leased::Blob(d.clone())]).unwrap();
        let path = lease.path().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
        let live = live_leases(root, None, true).unwrap();
        assert!(live.blobs.contains(&d));
        assert!(live.snapshots.contains("abc"));
        assert!(live.dead.is_empty());
        let without_own = live_leases(root, Some(&path), true).unwrap();
        assert!(without_own.blobs.is_empty());
        // A file nobody holds is a dead process's: swept, not read.
        let dead = root.join("leases/1-1");
        fs::write(&dead, format!("blob {}\n", Digest::of(b"y"))).unwrap();
        let live = live_leases(root, None, true).unwrap();
        assert!(!live.blobs.contains(&Digest::of(b"y")));
        assert_eq!(live.dead, vec![dead.clone()]);
        assert!(!dead.exists());
        drop(lease);
        assert!(!path.exists(), "a finished process removes its lease");
    }

    #[test]
    fn torn_and_foreign_lines_are_ignored() {
        assert_eq!(Leased::parse("snapshot a/b"), None);
        assert_eq!(Leased::parse("blob nonsense"), None);
        assert_eq!(Leased::parse("other x"), None);
        assert_eq!(
            Leased::parse("snapshot k1"),
            Some(Leased::Snapshot("k1".into()))
        );
    }
}
