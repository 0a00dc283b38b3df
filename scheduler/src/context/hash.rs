//! Content digests of selections: blake3 over paths, file content, mode,
//! ownership and symlink targets — never timestamps.

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rayon::prelude::*;

use super::statcache::same_version;
use super::{ContextError, EntryKind, EntryMeta, Selection, StatCache};

/// Files at least this big are read in chunks of this size, each hashed
/// with blake3's own multithreading; smaller ones are one read each, spread
/// over the pool. (No mmap: a file truncated while mapped would SIGBUS the
/// whole build.)
const BIG_FILE: u64 = 8 << 20;

/// Version tag mixed into every digest, bumped when the encoding changes.
const DOMAIN: &[u8] = b"rbk context digest v1\0";

/// The digest of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// blake3 of everything, lowercase hex.
    pub hex: String,
    /// Per entry of the selection, in its order: the blake3 of the entry's
    /// record (content, mode, ownership, link target), so a cache miss can
    /// name the file that changed (see [`ContentDigest::files`]).
    pub records: Vec<[u8; 32]>,
}

impl ContentDigest {
    /// Each entry's path as named from the source root, with its record's
    /// digest. Made on demand: a cache hit of a large context needs none of
    /// these names.
    pub fn files<'a>(
        &'a self,
        sel: &'a Selection,
    ) -> impl Iterator<Item = (String, &'a [u8; 32])> + 'a {
        let names = sel
            .sources
            .iter()
            .flat_map(|src| src.entries.iter().map(move |entry| src.name_of(entry)));
        names.zip(&self.records)
    }
}

/// Digests `sel`, hashing file contents in parallel and consulting `cache`.
pub(crate) fn digest_selection(
    sel: &Selection,
    cache: Option<&StatCache>,
) -> Result<ContentDigest, ContextError> {
    let work: Vec<(usize, usize)> = sel
        .sources
        .iter()
        .enumerate()
        .flat_map(|(s, src)| (0..src.entries.len()).map(move |e| (s, e)))
        .collect();
    let records: Vec<[u8; 32]> = work
        .par_iter()
        .map(|&(s, e)| {
            let src = &sel.sources[s];
            let entry = &src.entries[e];
            let content = if entry.meta.kind == EntryKind::File {
                let digest = content_digest(&entry.path, &entry.meta, cache);
                Some(digest.map_err(|e| match e {
                    ContextError::Changed { .. } => ContextError::Changed {
                        name: src.name_of(entry),
                    },
                    e => e,
                })?)
            } else {
                None
            };
            Ok(record(&entry.meta, content, sel.owners))
        })
        .collect::<Result<_, ContextError>>()?;

    let mut top = Batched::new();
    top.put(DOMAIN);
    let mut each = records.iter();
    for src in &sel.sources {
        for part in [&src.pattern, &src.name, &src.real] {
            top.put_len(part.as_bytes());
        }
        top.put(&(src.entries.len() as u64).to_le_bytes());
        for entry in &src.entries {
            let Some(rec) = each.next() else { break };
            top.put_len(entry.sub.as_bytes());
            top.put(rec);
        }
    }
    Ok(ContentDigest {
        hex: top.finish().to_hex().to_string(),
        records,
    })
}

/// The record digest of a regular file `meta` describes whose bytes hash
/// to `content` (what a copy compares with the key's record).
pub(crate) fn file_record(meta: &EntryMeta, content: [u8; 32], owners: bool) -> [u8; 32] {
    record(meta, Some(content), owners)
}

/// A reader that hashes what passes through it, for copies that check the
/// bytes they wrote are the bytes the key was made of.
pub(crate) struct HashingReader<'h, R> {
    /// Where the bytes come from.
    pub inner: R,
    /// What they hash to so far.
    pub hasher: &'h mut blake3::Hasher,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The blake3 of one entry's record: kind, mode, owner, and its content
/// digest, link target or device number.
pub(super) fn record(meta: &EntryMeta, content: Option<[u8; 32]>, owners: bool) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let kind: u8 = match meta.kind {
        EntryKind::File => b'f',
        EntryKind::Dir => b'd',
        EntryKind::Symlink => b'l',
        EntryKind::Other => b'o',
    };
    h.update(&[kind]);
    h.update(&meta.mode.to_le_bytes());
    if owners {
        h.update(&meta.uid.to_le_bytes());
        h.update(&meta.gid.to_le_bytes());
    }
    if let Some(content) = content {
        h.update(&content);
    }
    if let Some(link) = &meta.link {
        let target = link.as_os_str().as_bytes();
        h.update(&(target.len() as u64).to_le_bytes());
        h.update(target);
    }
    if meta.kind == EntryKind::Other {
        h.update(&meta.raw_mode.to_le_bytes());
        h.update(&meta.rdev.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

/// A blake3 hasher fed through a buffer: blake3 hashes a long input many
/// chunks at a time with SIMD, while tens of thousands of small updates
/// would go through its block buffer one by one. Same digest either way.
struct Batched {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl Batched {
    const SIZE: usize = 64 << 10;

    fn new() -> Self {
        Batched {
            hasher: blake3::Hasher::new(),
            buf: Vec::with_capacity(Self::SIZE),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > Self::SIZE {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
        if bytes.len() >= Self::SIZE {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// `bytes` preceded by their length, so neighbours cannot run together.
    fn put_len(&mut self, bytes: &[u8]) {
        self.put(&(bytes.len() as u64).to_le_bytes());
        self.put(bytes);
    }

    fn finish(mut self) -> blake3::Hash {
        self.hasher.update(&self.buf);
        self.hasher.finalize()
    }
}

/// The blake3 of a regular file's bytes, from the cache when it vouches.
pub(crate) fn content_digest(
    path: &Path,
    meta: &EntryMeta,
    cache: Option<&StatCache>,
) -> Result<[u8; 32], ContextError> {
    if let Some(digest) = cache.and_then(|c| c.lookup(meta)) {
        return Ok(digest);
    }
    let io = |source| ContextError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    // O_NOFOLLOW: the entry was a regular file when walked; if it has been
    // swapped for a symlink since, it changed (as when it is gone).
    let mut file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Err(e) if is_gone(&e) => return Err(changed(path)),
        other => other.map_err(io)?,
    };
    // The open file must be the one walked, before and after reading it:
    // else the digest would be of a file the selection does not describe.
    if !is_version(&file, meta).map_err(io)? {
        return Err(changed(path));
    }
    let digest = hash_file(&mut file, meta).map_err(io)?;
    if !is_version(&file, meta).map_err(io)? {
        return Err(changed(path));
    }
    // Remembered only for the file the walk saw, as it was (checked just
    // above), and not if it changed too recently to be sure (`insert`).
    if let Some(cache) = cache {
        cache.insert(meta, digest);
    }
    Ok(digest)
}

fn changed(path: &Path) -> ContextError {
    ContextError::Changed {
        name: path.display().to_string(),
    }
}

/// Whether an open error says the walked entry is no longer there as a
/// regular file (removed, or replaced by a symlink).
pub(crate) fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP)
}

/// Whether the open `file` is the file `meta` describes, unchanged.
pub(crate) fn is_version(file: &File, meta: &EntryMeta) -> std::io::Result<bool> {
    let now = EntryMeta::from_std(&file.metadata()?, None);
    Ok(same_version(&now, meta))
}

/// The blake3 of the file's bytes, read from its start.
fn hash_file(file: &mut File, meta: &EntryMeta) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    if meta.size >= BIG_FILE {
        let mut buf = vec![0u8; BIG_FILE as usize];
        loop {
            let n = read_full(file, &mut buf)?;
            h.update_rayon(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
    } else {
        let mut buf = Vec::with_capacity(meta.size as usize + 1);
        file.read_to_end(&mut buf)?;
        h.update(&buf);
    }
    Ok(*h.finalize().as_bytes())
}

/// Fills `buf` unless the file ends first; returns how much was read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
