//! A persistent map from a file's identity and stat to its blake3 digest, so
//! an unchanged build context is hashed with `lstat` alone.
//!
//! A file is known by its device and inode; its entry is trusted only when
//! size, mtime and ctime agree too. ctime cannot be set from user space, so
//! any write to the file changes it, and a new file that reuses the inode
//! gets a new ctime. A file whose timestamps are so recent that a write in
//! the same clock tick could go unnoticed ("racily clean", as git calls it)
//! is hashed but not remembered. Keying by inode rather than path keeps the
//! map small and fixed-size (no path bytes to read, allocate or hash) and
//! lets a renamed or hard-linked file keep its entry.
//!
//! On disk: `RBKSTAT2`, an entry count (u64 LE), then fixed 76-byte entries:
//! dev, ino, size (u64 LE), mtime and ctime (i64 LE nanoseconds), the
//! 32-byte digest and the entry's age (u32 LE: saves since a build last
//! used it). A file that does not parse is treated as empty: a cache is
//! never the source of truth. An entry unused for [`MAX_AGE`] saves is
//! dropped, so the cache of a context does not grow forever.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ContextError, EntryMeta};

const MAGIC: &[u8; 8] = b"RBKSTAT2";
const ENTRY_LEN: usize = 76;

/// Saves an entry survives without a build using it.
const MAX_AGE: u32 = 16;

/// How recent a change must be for its entry to be left out of the cache.
/// Filesystems with nanosecond timestamps tick at most every 10 ms; one with
/// whole-second timestamps (both nanosecond fields zero) needs two seconds.
const RACY_FINE_NS: i64 = 50_000_000;
const RACY_COARSE_NS: i64 = 2_000_000_000;

/// Which file.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Id {
    dev: u64,
    ino: u64,
}

/// What must not have changed since the file was hashed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

/// Whether two stats are of the same file in the same state, as far as
/// the cache can tell (what an entry must agree on to be trusted).
pub(crate) fn same_version(a: &EntryMeta, b: &EntryMeta) -> bool {
    id_of(a) == id_of(b) && stamp_of(a) == stamp_of(b)
}

fn id_of(meta: &EntryMeta) -> Id {
    Id {
        dev: meta.dev,
        ino: meta.ino,
    }
}

fn stamp_of(meta: &EntryMeta) -> Stamp {
    Stamp {
        size: meta.size,
        mtime_ns: meta.mtime_ns,
        ctime_ns: meta.ctime_ns,
    }
}

/// One remembered file.
struct Slot {
    stamp: Stamp,
    digest: [u8; 32],
    /// Saves since a build last used it, as loaded.
    age: u32,
    /// Looked up or stored since loading.
    used: AtomicBool,
}

type Decoded = HashMap<Id, Slot, std::hash::BuildHasherDefault<IdHasher>>;

/// A hash of a device and inode number for the cache's map (tens of
/// thousands of lookups per build): multiply-rotate per word. Inode numbers
/// are the filesystem's, not an attacker's choice.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        self.0 = (self.0 ^ x).wrapping_mul(K).rotate_left(29);
    }

    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown takes its bucket from the low
        // bits and its tag from the top seven.
        let x = self.0 ^ (self.0 >> 32);
        x.wrapping_mul(0xD6E8_FEB8_6659_FD93)
    }
}

/// The stat cache; shareable between threads.
#[derive(Default)]
pub struct StatCache {
    entries: RwLock<Decoded>,
    hits: AtomicU64,
    misses: AtomicU64,
    changed: AtomicU64,
}

impl std::fmt::Debug for StatCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatCache")
            .field("entries", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

impl StatCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a cache saved by [`StatCache::save`]. A missing or unreadable
    /// file gives an empty cache; only I/O errors other than "not found" on
    /// an existing file are reported.
    pub fn load(path: &Path) -> Result<Self, ContextError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new()),
            Err(source) => {
                return Err(ContextError::Io {
                    op: "read stat cache",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(Self {
            entries: RwLock::new(decode(&bytes).unwrap_or_default()),
            ..Self::default()
        })
    }

    /// Writes the cache to `path` atomically (a temporary file renamed into
    /// place), creating the parent directory.
    pub fn save(&self, path: &Path) -> Result<(), ContextError> {
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ContextError::Io {
                op,
                path: p,
                source,
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let bytes = self.encode();
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("create", dir))?;
        tmp.write_all(&bytes).map_err(io("write", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| io("rename into place", path)(e.error))?;
        Ok(())
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups answered without reading the file, since this cache was made.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that needed the file read.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// True when entries were added or replaced since loading (worth saving).
    pub fn is_dirty(&self) -> bool {
        self.changed.load(Ordering::Relaxed) > 0
    }

    /// The remembered digest of the file `meta` describes, if its stat
    /// still agrees.
    pub(crate) fn lookup(&self, meta: &EntryMeta) -> Option<[u8; 32]> {
        let found = self.entries.read().ok().and_then(|m| {
            let slot = m.get(&id_of(meta))?;
            slot.used.store(true, Ordering::Relaxed);
            (slot.stamp == stamp_of(meta)).then_some(slot.digest)
        });
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Remembers `digest` for the file `meta` describes, unless it changed
    /// too recently for its timestamps to prove a later change.
    pub(crate) fn insert(&self, meta: &EntryMeta, digest: [u8; 32]) {
        if is_racy(meta) {
            return;
        }
        if let Ok(mut map) = self.entries.write() {
            let slot = Slot {
                stamp: stamp_of(meta),
                digest,
                age: 0,
                used: AtomicBool::new(true),
            };
            map.insert(id_of(meta), slot);
            self.changed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let Ok(map) = self.entries.read() else {
            return Vec::new();
        };
        let kept: Vec<(&Id, &Slot, u32)> = map
            .iter()
            .filter_map(|(id, slot)| {
                let age = if slot.used.load(Ordering::Relaxed) {
                    0
                } else {
                    slot.age.saturating_add(1)
                };
                (age < MAX_AGE).then_some((id, slot, age))
            })
            .collect();
        let mut out = Vec::with_capacity(16 + kept.len() * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
        for (id, slot, age) in kept {
            for word in [id.dev, id.ino, slot.stamp.size] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            for time in [slot.stamp.mtime_ns, slot.stamp.ctime_ns] {
                out.extend_from_slice(&time.to_le_bytes());
            }
            out.extend_from_slice(&slot.digest);
            out.extend_from_slice(&age.to_le_bytes());
        }
        out
    }
}

fn is_racy(meta: &EntryMeta) -> bool {
    changed_near(meta, now_ns())
}

/// Whether `meta`'s last change is so close to `at_ns` (or after it) that a
/// write in the same clock tick, after `at_ns`, could leave the stat as it
/// is: then only the content tells whether the file is the one seen.
pub(crate) fn changed_near(meta: &EntryMeta, at_ns: i64) -> bool {
    let coarse = meta.mtime_ns % 1_000_000_000 == 0 && meta.ctime_ns % 1_000_000_000 == 0;
    let window = if coarse { RACY_COARSE_NS } else { RACY_FINE_NS };
    meta.mtime_ns.max(meta.ctime_ns) >= at_ns.saturating_sub(window)
}

/// The wall clock (the one file timestamps come from), in nanoseconds.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(i64::MAX)
}

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let (head, body) = bytes.split_at_checked(16)?;
    let (magic, count) = head.split_at(8);
    if magic != MAGIC {
        return None;
    }
    let count = usize::try_from(u64::from_le_bytes(count.try_into().ok()?)).ok()?;
    if body.len() != count.checked_mul(ENTRY_LEN)? {
        return None;
    }
    let mut map = Decoded::with_capacity_and_hasher(count, Default::default());
    for e in body.chunks_exact(ENTRY_LEN) {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                e.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        let id = Id {
            dev: word(0)?,
            ino: word(1)?,
        };
        let stamp = Stamp {
            size: word(2)?,
            mtime_ns: word(3)? as i64,
            ctime_ns: word(4)? as i64,
        };
        let slot = Slot {
            stamp,
            digest: e.get(40..72)?.try_into().ok()?,
            age: u32::from_le_bytes(e.get(72..76)?.try_into().ok()?),
            used: AtomicBool::new(false),
        };
        map.insert(id, slot);
    }
    Some(map)
}

/// Where a context's stat cache lives under a store's cache directory: one
/// file per context path, so two projects do not evict each other.
pub fn stat_cache_path(cache_dir: &Path, context_root: &Path) -> PathBuf {
    let key = blake3::hash(context_root.as_os_str().as_bytes());
    cache_dir.join(format!("stat-{}.bin", &key.to_hex()[..32]))
}
