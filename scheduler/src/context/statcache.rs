//! A persistent map from a file's identity and stat to its blake3 digest, so
//! an unchanged build context is hashed with `lstat` alone.
//!
//! An entry is trusted only when the path, device, inode, size, mtime and
//! ctime all agree. ctime cannot be set from user space, so any write to the
//! file changes it. A file whose timestamps are so recent that a write in the
//! same clock tick could go unnoticed ("racily clean", as git calls it) is
//! hashed but not remembered.
//!
//! On disk: `RBKSTAT1`, an entry count (u64 LE), then per entry the path
//! length (u32 LE), the path bytes, dev, ino, size (u64 LE), mtime and ctime
//! (i64 LE nanoseconds) and the 32-byte digest. A file that does not parse is
//! treated as empty: a cache is never the source of truth. Entries not used
//! by a build are kept on save only while their file still exists.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ContextError, EntryMeta};

const MAGIC: &[u8; 8] = b"RBKSTAT1";

/// How recent a change must be for its entry to be left out of the cache.
/// Filesystems with nanosecond timestamps tick at most every 10 ms; one with
/// whole-second timestamps (both nanosecond fields zero) needs two seconds.
const RACY_FINE_NS: i64 = 50_000_000;
const RACY_COARSE_NS: i64 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Key {
    fn of(meta: &EntryMeta) -> Self {
        Key {
            dev: meta.dev,
            ino: meta.ino,
            size: meta.size,
            mtime_ns: meta.mtime_ns,
            ctime_ns: meta.ctime_ns,
        }
    }
}

/// One remembered file.
struct Slot {
    key: Key,
    digest: [u8; 32],
    /// Looked up or stored since loading; entries never used are dropped
    /// on save when their file is gone, so the cache does not grow forever.
    used: AtomicBool,
}

/// Path bytes → what is remembered about it.
type Decoded = HashMap<Vec<u8>, Slot, std::hash::BuildHasherDefault<PathHasher>>;

/// A fast hash of path bytes for the cache's map (tens of thousands of
/// lookups per build): 8 bytes at a time, multiply-rotate. Paths come from
/// the user's own build context; a crafted set of colliding names could
/// only slow that user's own build.
#[derive(Default)]
struct PathHasher(u64);

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(w))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.0 = (self.0 ^ u64::from_le_bytes(w) ^ rest.len() as u64)
            .wrapping_mul(K)
            .rotate_left(29);
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

    /// The remembered digest of the file at `path`, if its stat still agrees.
    pub(crate) fn lookup(&self, path: &Path, meta: &EntryMeta) -> Option<[u8; 32]> {
        let key = Key::of(meta);
        let found = self.entries.read().ok().and_then(|m| {
            let slot = m.get(path.as_os_str().as_bytes())?;
            slot.used.store(true, Ordering::Relaxed);
            (slot.key == key).then_some(slot.digest)
        });
        match found {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Remembers `digest` for `path`, unless the file changed too recently
    /// for its timestamps to prove a later change.
    pub(crate) fn insert(&self, path: &Path, meta: &EntryMeta, digest: [u8; 32]) {
        if is_racy(meta) {
            return;
        }
        if let Ok(mut map) = self.entries.write() {
            let slot = Slot {
                key: Key::of(meta),
                digest,
                used: AtomicBool::new(true),
            };
            map.insert(path.as_os_str().as_bytes().to_vec(), slot);
            self.changed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let Ok(map) = self.entries.read() else {
            return Vec::new();
        };
        let kept: Vec<(&Vec<u8>, &Slot)> = map
            .iter()
            .filter(|(path, slot)| {
                slot.used.load(Ordering::Relaxed)
                    || std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(path)).is_ok()
            })
            .collect();
        let mut out = Vec::with_capacity(16 + kept.len() * 110);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(kept.len() as u64).to_le_bytes());
        for (path, Slot { key, digest, .. }) in kept {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path);
            out.extend_from_slice(&key.dev.to_le_bytes());
            out.extend_from_slice(&key.ino.to_le_bytes());
            out.extend_from_slice(&key.size.to_le_bytes());
            out.extend_from_slice(&key.mtime_ns.to_le_bytes());
            out.extend_from_slice(&key.ctime_ns.to_le_bytes());
            out.extend_from_slice(digest);
        }
        out
    }
}

fn is_racy(meta: &EntryMeta) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(i64::MAX);
    let coarse = meta.mtime_ns % 1_000_000_000 == 0 && meta.ctime_ns % 1_000_000_000 == 0;
    let window = if coarse { RACY_COARSE_NS } else { RACY_FINE_NS };
    meta.mtime_ns.max(meta.ctime_ns) >= now.saturating_sub(window)
}

/// A little cursor over the saved bytes; `None` on any truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return None;
    }
    let count = r.u64()? as usize;
    // Never trust a count to size an allocation beyond what the bytes hold.
    let mut map =
        Decoded::with_capacity_and_hasher(count.min(bytes.len() / 76), Default::default());
    for _ in 0..count {
        let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
        let path = r.take(len)?.to_vec();
        let key = Key {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
        };
        let digest: [u8; 32] = r.take(32)?.try_into().ok()?;
        let used = AtomicBool::new(false);
        map.insert(path, Slot { key, digest, used });
    }
    Some(map)
}

/// Where a context's stat cache lives under a store's cache directory: one
/// file per context path, so two projects do not evict each other.
pub fn stat_cache_path(cache_dir: &Path, context_root: &Path) -> PathBuf {
    let key = blake3::hash(context_root.as_os_str().as_bytes());
    cache_dir.join(format!("stat-{}.bin", &key.to_hex()[..32]))
}
