//! The on-disk bookkeeping both snapshotters share: key validation,
//! `meta.json`, staging in `.tmp/` and atomic renames into place.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{SnapshotError, SnapshotInfo, SnapshotState};
use crate::digest::Digest;
use crate::layer::ApplyStats;

const META: &str = "meta.json";
const STAGING: &str = ".tmp";
/// Lock files of the slots being published (see `Dirs::slot_lock`).
const LOCKS: &str = ".locks";

/// A snapshot's `meta.json`. `key` must equal the directory name, which is
/// what makes a renamed-but-not-yet-rewritten snapshot invisible.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Meta {
    pub key: String,
    pub parent: Option<String>,
    #[serde(rename = "kind")]
    pub state: SnapshotState,
    /// Known for committed snapshots; computed on demand otherwise.
    #[serde(default)]
    pub size: Option<u64>,
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshot directory and its staging area.
#[derive(Debug)]
pub(super) struct Dirs {
    root: PathBuf,
    counter: AtomicU64,
}

/// A directory under `.tmp/` being filled; removed on drop unless
/// published.
pub(super) struct Staging {
    pub path: PathBuf,
    published: bool,
}

impl Staging {
    pub(super) fn fs(&self) -> PathBuf {
        self.path.join("fs")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: leftovers in .tmp are swept by the next `open`.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) fn validate_key(key: &str) -> Result<(), SnapshotError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::InvalidKey {
            key: key.to_string(),
        })
    }
}

/// What `fsck` finds of one snapshot directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotHealth {
    /// A complete snapshot.
    Sound {
        /// Its state.
        state: SnapshotState,
        /// Its parent's key.
        parent: Option<String>,
    },
    /// Half-made or damaged; the text says how.
    Broken(String),
}

/// Checks every snapshot directory under `root` (the snapshotter's root):
/// its `meta.json` present, parsable and naming it, its tree present, its
/// parent present and committed. Staging (`.tmp`) and links (`.l`) are not
/// snapshots and are skipped. Changes nothing.
pub(crate) fn fsck(root: &Path) -> Result<Vec<(String, SnapshotHealth)>, SnapshotError> {
    let dirs = Dirs {
        root: root.to_path_buf(),
        counter: AtomicU64::new(0),
    };
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read directory", root)(e)),
    };
    let mut metas = Vec::new();
    for e in rd {
        let e = e.map_err(io_err("read directory", root))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let meta = match dirs.meta(&name) {
            Ok(_) if !dirs.fs(&name).is_dir() => Err("its tree (fs/) is missing".to_string()),
            Ok(m) => Ok(m),
            Err(SnapshotError::NotFound { .. }) => {
                Err("meta.json is missing or names another snapshot (half made)".to_string())
            }
            Err(SnapshotError::InvalidKey { .. }) => Err("not a snapshot name".to_string()),
            Err(e) => Err(e.to_string()),
        };
        metas.push((name, meta));
    }
    let committed: HashSet<String> = metas
        .iter()
        .filter_map(|(n, m)| match m {
            Ok(m) if m.state == SnapshotState::Committed => Some(n.clone()),
            _ => None,
        })
        .collect();
    let mut out: Vec<(String, SnapshotHealth)> = metas
        .into_iter()
        .map(|(name, meta)| {
            let health = match meta {
                Err(why) => SnapshotHealth::Broken(why),
                Ok(m) => match &m.parent {
                    Some(p) if !committed.contains(p) => SnapshotHealth::Broken(format!(
                        "its parent {p} is missing or not committed"
                    )),
                    _ => SnapshotHealth::Sound {
                        state: m.state,
                        parent: m.parent,
                    },
                },
            };
            (name, health)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Dirs {
    /// Opens (creating) `root` and sweeps staging dirs of dead processes.
    pub(super) fn open(root: &Path) -> Result<Dirs, SnapshotError> {
        let staging = root.join(STAGING);
        fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
        crate::sys::restrict_dir(root, crate::layout::SNAPSHOTS_MODE)
            .map_err(io_err("restrict the permissions of", root))?;
        let d = Dirs {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        };
        d.sweep();
        Ok(d)
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Removes staging dirs whose owning process is gone (names start with
    /// the pid). Another live rbk's work is left alone.
    fn sweep(&self) {
        let staging = self.root.join(STAGING);
        let Ok(rd) = fs::read_dir(&staging) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    pub(super) fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    pub(super) fn fs(&self, key: &str) -> PathBuf {
        tree_of(&self.root, key)
    }

    /// Reads `meta.json` of `key`; a missing, mismatched or half-written
    /// snapshot is `NotFound`.
    pub(super) fn meta(&self, key: &str) -> Result<Meta, SnapshotError> {
        validate_key(key)?;
        let path = self.dir(key).join(META);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::NotFound {
                    key: key.to_string(),
                })
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let meta: Meta = serde_json::from_slice(&bytes)
            .map_err(|source| SnapshotError::Corrupt { path, source })?;
        if meta.key != key {
            return Err(SnapshotError::NotFound {
                key: key.to_string(),
            });
        }
        Ok(meta)
    }

    /// Like [`Dirs::meta`] but insisting on a state.
    pub(crate) fn meta_in_state(
        &self,
        key: &str,
        state: SnapshotState,
    ) -> Result<Meta, SnapshotError> {
        let m = self.meta(key)?;
        if m.state != state {
            return Err(SnapshotError::WrongState {
                key: key.to_string(),
                actual: m.state,
                expected: state,
            });
        }
        Ok(m)
    }

    /// Keys from `key` down to the base layer: `[key, parent, ...]`.
    pub(super) fn chain(&self, key: &str) -> Result<Vec<String>, SnapshotError> {
        let mut out = vec![key.to_string()];
        let mut cur = self.meta(key)?.parent;
        while let Some(p) = cur {
            if out.contains(&p) {
                // A cycle can only come from hand-edited metadata.
                return Err(SnapshotError::NotFound { key: p });
            }
            cur = self.meta(&p)?.parent;
            out.push(p);
        }
        Ok(out)
    }

    /// A fresh staging dir (with an empty `fs/`).
    pub(super) fn stage(&self) -> Result<Staging, SnapshotError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = self
            .root
            .join(STAGING)
            .join(format!("{}-{n}-{nanos}", std::process::id()));
        fs::create_dir(&path).map_err(io_err("create", &path))?;
        let st = Staging {
            path,
            published: false,
        };
        fs::create_dir(st.fs()).map_err(io_err("create", &st.fs()))?;
        Ok(st)
    }

    /// Writes `meta` into `dir` atomically (temp file, fsync, rename).
    pub(crate) fn write_meta(&self, dir: &Path, meta: &Meta) -> Result<(), SnapshotError> {
        self.write_meta_synced(dir, meta, true)
    }

    /// [`Dirs::write_meta`], its fsyncs only if `durable`.
    fn write_meta_synced(
        &self,
        dir: &Path,
        meta: &Meta,
        durable: bool,
    ) -> Result<(), SnapshotError> {
        let tmp = dir.join(".meta.json.tmp");
        let path = dir.join(META);
        let bytes = serde_json::to_vec_pretty(meta).map_err(|source| SnapshotError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        if durable {
            f.sync_all().map_err(io_err("sync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Moves a stale directory (one whose meta does not name it) out of
    /// the way of `key`.
    fn clear_slot(&self, key: &str) -> Result<(), SnapshotError> {
        let dir = self.dir(key);
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(());
        }
        match self.meta(key) {
            Ok(_) => Err(SnapshotError::AlreadyExists {
                key: key.to_string(),
            }),
            Err(SnapshotError::NotFound { .. }) | Err(SnapshotError::Corrupt { .. }) => {
                self.discard(&dir)
            }
            Err(e) => Err(e),
        }
    }

    /// Holds `key`'s slot while a snapshot is put in place there: between
    /// the rename and the meta rewrite the directory looks stale, and
    /// another writer of the same key (two steps, in one build or two,
    /// making the same change) must wait rather than clear it away. A lock
    /// of a process that died is released with it, so true leftovers are
    /// still cleared. Keys share 64 lock files (a bounded number; a
    /// collision only serialises two publications).
    fn slot_lock(&self, key: &str) -> Result<nix::fcntl::Flock<fs::File>, SnapshotError> {
        let dir = self.root.join(LOCKS);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let stripe = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 64;
        let path = dir.join(format!("{stripe:02}"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &path)(e.into()))
    }

    /// Publishes a filled staging dir as `key` with `meta`. A build
    /// step's scratch snapshot is published without fsyncs (see
    /// [`scratch`]).
    pub(super) fn publish(
        &self,
        mut st: Staging,
        key: &str,
        meta: &Meta,
    ) -> Result<(), SnapshotError> {
        let durable = !scratch(key);
        self.write_meta_synced(&st.path, meta, durable)?;
        let _slot = self.slot_lock(key)?;
        self.clear_slot(key)?;
        let dst = self.dir(key);
        rename_new(&st.path, &dst, key)?;
        st.published = true;
        if durable {
            sync_dir(&self.root)?;
        }
        Ok(())
    }

    /// Renames snapshot dir `from` to `to` and rewrites its meta. Until
    /// the rewrite lands, `to` holds a meta naming `from`, so it does not
    /// exist yet: a crash in between loses the active snapshot, never shows
    /// a half-committed one.
    pub(super) fn rename(&self, from: &str, to: &str, meta: &Meta) -> Result<(), SnapshotError> {
        let _slot = self.slot_lock(to)?;
        self.clear_slot(to)?;
        rename_new(&self.dir(from), &self.dir(to), to)?;
        sync_dir(&self.root)?;
        self.write_meta(&self.dir(to), meta)
    }

    /// Removes snapshot `key`: renamed into staging first (atomic
    /// disappearance), then deleted.
    pub(super) fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.meta(key)?;
        if let Some(child) = self.children(key)?.into_iter().next() {
            return Err(SnapshotError::HasChildren {
                key: key.to_string(),
                child,
            });
        }
        self.discard(&self.dir(key))
    }

    fn discard(&self, dir: &Path) -> Result<(), SnapshotError> {
        let st = self.stage()?;
        let grave = st.path.join("removed");
        fs::rename(dir, &grave).map_err(io_err("remove", dir))?;
        drop(st);
        Ok(())
    }

    /// All valid snapshots.
    pub(super) fn all(&self) -> Result<Vec<Meta>, SnapshotError> {
        let rd = fs::read_dir(&self.root).map_err(io_err("read directory", &self.root))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err("read directory", &self.root))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_key(&name).is_err() {
                continue;
            }
            match self.meta(&name) {
                Ok(m) => out.push(m),
                Err(SnapshotError::NotFound { .. }) => {}
                // Torn by a power cut (never fsynced): its process is
                // gone, and the snapshot with it.
                Err(SnapshotError::Corrupt { .. }) if scratch(&name) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn children(&self, key: &str) -> Result<Vec<String>, SnapshotError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|m| m.parent.as_deref() == Some(key))
            .map(|m| m.key)
            .collect())
    }

    /// Info for `meta`, computing the size of an uncommitted tree.
    pub(super) fn info(&self, meta: Meta) -> Result<SnapshotInfo, SnapshotError> {
        let size = match meta.size {
            Some(s) => s,
            None => tree_size(&self.fs(&meta.key))?,
        };
        Ok(SnapshotInfo {
            key: meta.key,
            parent: meta.parent,
            state: meta.state,
            size,
        })
    }
}

/// Whether `key` names a build step's scratch snapshot (see
/// [`super::scratch_key`]). It is made without fsyncs (three per RUN
/// step), and a meta of one that a power cut tore is skipped by
/// [`Dirs::all`]: the name is all a torn meta leaves to go by. A
/// container's layer (`run-<id>`) outlives its process and stays durable.
fn scratch(key: &str) -> bool {
    key.starts_with(super::SCRATCH_PREFIX)
}

fn rename_new(from: &Path, to: &Path, key: &str) -> Result<(), SnapshotError> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        // Renaming a directory onto a non-empty one fails this way: someone
        // else published the same key first.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
            Err(SnapshotError::AlreadyExists {
                key: key.to_string(),
            })
        }
        Err(e) => Err(io_err("rename", to)(e)),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync", dir))
}

/// Apparent size of a tree, hard-linked files counted once.
pub(super) fn tree_size(root: &Path) -> Result<u64, SnapshotError> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("read directory", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(io_err("read directory", &dir))?;
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
            if m.is_dir() {
                stack.push(p);
            } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

/// The metadata of snapshot `key` under the snapshotter directory `dir`,
/// read without opening a snapshotter (which would create and sweep);
/// `None` when it is missing or names another snapshot (half made).
fn peek_meta(dir: &Path, key: &str) -> Option<Meta> {
    let bytes = fs::read(dir.join(key).join(META)).ok()?;
    let meta: Meta = serde_json::from_slice(&bytes).ok()?;
    (meta.key == key).then_some(meta)
}

/// Whether snapshot `key` exists under the snapshotter directory `dir`
/// (its metadata names it), whatever its state.
pub(crate) fn exists_in(dir: &Path, key: &str) -> bool {
    peek_meta(dir, key).is_some()
}

/// The parent of snapshot `key` under the snapshotter directory `dir`, from
/// its metadata (whether or not that names it: a snapshot being renamed
/// still stands on its parent).
pub(crate) fn parent_of(dir: &Path, key: &str) -> Option<String> {
    let bytes = fs::read(dir.join(key).join(META)).ok()?;
    serde_json::from_slice::<Meta>(&bytes).ok()?.parent
}

/// The staging area under the snapshotter directory `dir`: what is being
/// made or removed, named after the process doing it (`<pid>-…`).
pub(crate) fn staging_of(dir: &Path) -> PathBuf {
    dir.join(STAGING)
}

/// The tree of snapshot `key` under the snapshotter directory `dir`
/// (whether or not it exists).
pub(crate) fn tree_of(dir: &Path, key: &str) -> PathBuf {
    dir.join(key).join("fs")
}

/// Deletes `path`, a snapshot's directory (or a half-made one) directly
/// under the snapshotter directory `dir`, without opening a snapshotter:
/// first renamed into the staging area (one atomic step, after which it no
/// longer exists as a snapshot), then removed, read-only directories and
/// all. A process killed in between leaves only staging garbage, which the
/// next open sweeps.
pub(crate) fn discard_dir(dir: &Path, path: &Path) -> Result<(), SnapshotError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let staging = dir.join(STAGING);
    fs::create_dir_all(&staging).map_err(io_err("create directory", &staging))?;
    let grave = staging.join(format!(
        "{}-gc-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::rename(path, &grave).map_err(io_err("move aside", path))?;
    crate::sys::remove_tree(&grave).map_err(io_err("delete", &grave))
}

/// Refuses a layer whose tar hashed to another diff id than `expected`.
pub(super) fn check_diff_id(
    key: &str,
    expected: Option<&Digest>,
    stats: &ApplyStats,
) -> Result<(), SnapshotError> {
    match expected {
        Some(e) if *e != stats.diff_id => Err(SnapshotError::DiffIdMismatch {
            key: key.to_string(),
            expected: e.clone(),
            actual: stats.diff_id.clone(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_names() {
        for ok in ["a", "build-1", "0f3a", "x.y_z", &"a".repeat(128)] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".tmp", "a/b", "a b", "ü", &"a".repeat(129)] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_torn_meta_is_skipped_only_for_a_build_steps_scratch_snapshot() {
        let t = tempfile::tempdir().unwrap();
        let d = Dirs::open(t.path()).unwrap();
        let m = |key: &str| Meta {
            key: key.into(),
            parent: None,
            state: SnapshotState::Active,
            size: None,
        };
        for key in ["active-1-2", "run-abc"] {
            d.publish(d.stage().unwrap(), key, &m(key)).unwrap();
        }
        assert_eq!(d.all().unwrap().len(), 2);
        // What a power cut leaves of a meta that was never fsynced.
        fs::write(t.path().join("active-1-2").join(META), b"").unwrap();
        let keys: Vec<String> = d.all().unwrap().into_iter().map(|m| m.key).collect();
        assert_eq!(keys, ["run-abc"]);
        // A container's layer is durable: its torn meta is an error.
        fs::write(t.path().join("run-abc").join(META), b"{").unwrap();
        assert!(matches!(d.all(), Err(SnapshotError::Corrupt { .. })));
    }

    #[test]
    fn half_made_snapshots_are_invisible_and_swept() {
        let t = tempfile::tempdir().unwrap();
        let d = Dirs::open(t.path()).unwrap();
        // A renamed dir whose meta still names the old key: not `b`.
        fs::create_dir_all(t.path().join("b/fs")).unwrap();
        let m = Meta {
            key: "a".into(),
            parent: None,
            state: SnapshotState::Committed,
            size: Some(0),
        };
        d.write_meta(&t.path().join("b"), &m).unwrap();
        assert!(matches!(d.meta("b"), Err(SnapshotError::NotFound { .. })));
        assert!(d.all().unwrap().is_empty());
        // Publishing `b` replaces the stale dir.
        let st = d.stage().unwrap();
        let m = Meta {
            key: "b".into(),
            ..m
        };
        d.publish(st, "b", &m).unwrap();
        assert_eq!(d.meta("b").unwrap().key, "b");
        // A dead process's staging dir is swept on open.
        let dead = t.path().join(".tmp/999999999-0-0");
        fs::create_dir_all(&dead).unwrap();
        Dirs::open(t.path()).unwrap();
        assert!(!dead.exists());
    }
}
