//! Content-addressed blobs under `blobs/sha256/<hex>` (the OCI image layout).
//!
//! Blobs are written through a [`BlobWriter`] that stages them in `tmp/`,
//! hashes while writing, fsyncs and renames into place, so a reader never
//! sees half a blob and a crash leaves only garbage in `tmp/`. Every read
//! verifies the digest, so on-disk corruption is reported, never served.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layout::{Layout, SNAPSHOTS_MODE, STORE_ROOT_MODE};
use crate::lease::{Lease, Leased};
use crate::lock::{lock, ActiveLock, LockMode};

pub mod lazy;
pub mod remote;

/// The blob store of one root. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct ContentStore {
    layout: Layout,
    blobs: PathBuf,
    tmp: PathBuf,
    // Held for the life of every clone: tells other processes that our
    // staging files in tmp/ are live.
    active: Arc<ActiveLock>,
    // What this process writes or uses, kept from other processes' prune.
    lease: Arc<Lease>,
    // On a read-only filesystem: read, never written.
    read_only: bool,
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root`: `blobs/sha256/`,
    /// `tmp/` and `oci-layout`. If no other process has the store open, old
    /// staging files in `tmp/` are deleted.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let layout = Layout::new(root);
        let blobs = layout.blobs();
        let tmp = layout.tmp();
        let read_only = root.is_dir() && crate::lock::read_only_fs(root);
        if read_only {
            return Self::open_read_only(layout, blobs, tmp);
        }
        fs::create_dir_all(root).at("create directory", root)?;
        // Before anything is put under it: image trees must never be
        // reachable by other local users (setuid binaries, devices). A
        // directory that holds other things than a store (`--root ~` by
        // mistake) is not narrowed: its snapshots/ is, which suffices.
        if is_store_or_empty(root) {
            crate::sys::restrict_dir(root, STORE_ROOT_MODE)
                .at("restrict the permissions of", root)?;
        }
        fs::create_dir_all(&blobs).at("create directory", &blobs)?;
        fs::create_dir_all(&tmp).at("create directory", &tmp)?;
        // Where build steps mount their trees: the owner's alone, whatever
        // the root allows.
        crate::sys::restrict_dir(&tmp, SNAPSHOTS_MODE).at("restrict the permissions of", &tmp)?;
        // Register as a user before staging anything in tmp/, or another
        // opener that believes it is alone could sweep our staging file.
        let active = ActiveLock::acquire(&layout.active(), || sweep_tmp(&tmp))?;
        sweep_dead_processes(&layout);
        let marker = layout.oci_layout();
        if !marker.exists() {
            write_atomic(&tmp, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(ContentStore {
            layout,
            blobs,
            tmp,
            active: Arc::new(active),
            lease: Arc::new(Lease::new(root)),
            read_only: false,
        })
    }

    /// A store on a read-only filesystem (a shared cache mounted
    /// read-only): nothing is created or swept, nothing is leased (nobody
    /// can prune it from under us), and a change is refused with
    /// [`StoreError::ReadOnly`].
    fn open_read_only(layout: Layout, blobs: PathBuf, tmp: PathBuf) -> Result<Self, StoreError> {
        if !blobs.is_dir() {
            return Err(StoreError::Io {
                op: "open the store at",
                path: layout.root().to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "it is read-only and holds no store (no blobs/sha256)",
                ),
            });
        }
        let active = ActiveLock::acquire(&layout.active(), || Ok(()))?;
        let root = layout.root().to_path_buf();
        Ok(ContentStore {
            layout,
            blobs,
            tmp,
            active: Arc::new(active),
            lease: Arc::new(Lease::disabled(&root)),
            read_only: true,
        })
    }

    /// Whether the store is on a read-only filesystem.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// This process's lease on the store (see [`crate::lease`]).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The store lock (shared by [`crate::images::Store::lock`]).
    fn lock_path(&self) -> PathBuf {
        self.layout.lock()
    }

    /// Whether the blob is present (see [`ContentStore::has`]); if so it is
    /// leased to this process, so no concurrent `prune` removes it before
    /// it is used or referenced.
    pub(crate) fn has_leased(&self, d: &Digest) -> Result<bool, StoreError> {
        self.leased_if(d, Self::has)
    }

    /// [`ContentStore::has_leased`] for a blob readable without the
    /// network (see [`ContentStore::has_local`]): what a pull or a write of
    /// the same bytes need not fetch again.
    pub(crate) fn has_local_leased(&self, d: &Digest) -> Result<bool, StoreError> {
        self.leased_if(d, Self::has_local)
    }

    fn leased_if(
        &self,
        d: &Digest,
        present: fn(&Self, &Digest) -> bool,
    ) -> Result<bool, StoreError> {
        let _guard = lock(&self.lock_path(), LockMode::Shared)?;
        if !present(self, d) {
            return Ok(false);
        }
        self.lease.add([Leased::Blob(d.clone())])?;
        Ok(true)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where things are under the store's root.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether another process has this store open (see
    /// [`ActiveLock::others_present`]); garbage collection then spares
    /// recent blobs that a running build may be about to reference.
    pub(crate) fn others_active(&self) -> bool {
        self.active.others_present()
    }

    /// The staging directory; files there are garbage once their writer is
    /// gone.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Starts writing a new blob, staged in `tmp/` until committed.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        self.new_writer(true)
    }

    /// Like [`ContentStore::writer`], for a caller that computes the sha256
    /// of the very bytes it writes (a layer diff hashes its stream for the
    /// diff id): the blob is not hashed a second time, and
    /// [`BlobWriter::commit`] must be given that digest, which names it.
    pub fn writer_prehashed(&self) -> Result<BlobWriter, StoreError> {
        self.new_writer(false)
    }

    fn new_writer(&self, hash: bool) -> Result<BlobWriter, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                root: self.root().to_path_buf(),
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .at("create a staging file in", &self.tmp)?;
        let (file, path) = tmp.into_parts();
        Ok(BlobWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            path,
            hasher: hash.then(Sha256::new),
            size: 0,
            blobs: self.blobs.clone(),
            lease: self.lease.clone(),
            lock: self.lock_path(),
        })
    }

    /// Stores `data` and returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        if self.has_local_leased(&digest)? {
            return Ok(digest);
        }
        let mut w = self.writer()?;
        w.write_all(data).at("write", w.staging_path())?;
        Ok(w.commit(Some(&digest))?.0)
    }

    /// Stores everything `reader` yields, checking it against `expected`.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let mut w = self.writer()?;
        let staging = w.staging_path().to_path_buf();
        io::copy(reader, &mut w).map_err(|e| StoreError::from_io("copy into", &staging, e))?;
        w.commit(expected)
    }

    /// Whether the blob is present (its content is not checked), as a
    /// file, as a layer its snapshot can make (see [`lazy`]) or as a layer
    /// a build cache holds, fetched when it is read (see [`remote`]).
    pub fn has(&self, d: &Digest) -> bool {
        self.has_local(d) || remote::size(self.root(), d).is_some()
    }

    /// Whether `d` is a layer a build step of this store made (it can be
    /// made again from its snapshot, see [`lazy`]): a layer no other store
    /// is likely to have pushed already.
    pub fn made_here(&self, d: &Digest) -> bool {
        lazy::size(self.root(), d).is_some()
    }

    /// Whether the blob can be read without the network: a file, or a
    /// layer its snapshot can make.
    pub fn has_local(&self, d: &Digest) -> bool {
        self.path(d).is_file() || lazy::size(self.root(), d).is_some()
    }

    /// The blob's size.
    pub fn size(&self, d: &Digest) -> Result<u64, StoreError> {
        match fs::metadata(self.path(d)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => lazy::size(self.root(), d)
                .or_else(|| remote::size(self.root(), d))
                .ok_or_else(|| StoreError::BlobMissing { digest: d.clone() }),
            Err(e) => Err(e).at("stat", &self.path(d)),
        }
    }

    /// Makes sure the blob is a file (a layer kept only as its snapshot is
    /// written now); for readers that open [`ContentStore::path`] directly.
    pub fn ensure(&self, d: &Digest) -> Result<(), StoreError> {
        if self.path(d).is_file() {
            return Ok(());
        }
        if self.read_only && self.has(d) {
            return Err(StoreError::ReadOnly {
                root: self.root().to_path_buf(),
            });
        }
        if self.materialize(d)? {
            return Ok(());
        }
        Err(StoreError::BlobMissing { digest: d.clone() })
    }

    /// Writes blob `d`'s file from what stands for it: a layer kept only as
    /// its snapshot (lazy) or one still in a registry or cache directory
    /// (remote). False when nothing does.
    fn materialize(&self, d: &Digest) -> Result<bool, StoreError> {
        Ok(lazy::materialize(self, d)? || remote::materialize(self, d)?)
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// Reads a whole blob, verifying its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(d);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.read_only {
                    let mut data = Vec::new();
                    self.open_blob(d)?
                        .read_to_end(&mut data)
                        .map_err(|e| StoreError::from_io("read", &path, e))?;
                    return Ok(data);
                }
                if self.materialize(d)? {
                    return self.read(d);
                }
                return Err(StoreError::BlobMissing { digest: d.clone() });
            }
            Err(e) => return Err(e).at("read", &path),
        };
        let actual = Digest::of(&data);
        if &actual != d {
            return Err(StoreError::Corrupt {
                expected: d.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// Opens a blob for streaming. The reader hashes what it yields and, at
    /// end of file, fails with [`StoreError::Corrupt`] (inside an
    /// `io::Error`; see [`StoreError::from_io`]) if the content is wrong.
    pub fn open_blob(&self, d: &Digest) -> Result<VerifyingReader<File>, StoreError> {
        let path = self.path(d);
        match File::open(&path) {
            Ok(f) => Ok(VerifyingReader::new(f, d.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.read_only => {
                // A lazy layer is made outside the store, in an unnamed
                // temporary file; a remote one cannot be fetched into a
                // store this process may not write (ReadOnly, not missing).
                match lazy::materialize_detached(self, d)? {
                    Some(f) => Ok(VerifyingReader::new(f, d.clone())),
                    None => {
                        remote::materialize(self, d)?;
                        Err(StoreError::BlobMissing { digest: d.clone() })
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.materialize(d)? {
                    return self.open_blob(d);
                }
                Err(StoreError::BlobMissing { digest: d.clone() })
            }
            Err(e) => Err(e).at("open", &path),
        }
    }

    /// Deletes a blob; deleting a missing blob is not an error.
    pub fn delete(&self, d: &Digest) -> Result<(), StoreError> {
        let path = self.path(d);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at("delete", &path),
        }
    }

    /// Every blob in the store (names that are not digests are ignored).
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).at("list", &self.blobs)? {
            let entry = entry.at("list", &self.blobs)?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(d) = Digest::from_hex(name) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Whether `root` is a store already (it has `oci-layout`) or empty.
/// The records in `dir` (lazy or remote layers'), each named by the hex of
/// the blob it is about, with their paths; none if `dir` cannot be read.
/// Other names are skipped.
fn records_in(dir: &Path) -> Vec<(Digest, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let d = Digest::from_hex(e.file_name().to_str()?).ok()?;
            Some((d, e.path()))
        })
        .collect()
}

fn is_store_or_empty(root: &Path) -> bool {
    Layout::new(root).oci_layout().is_file()
        || fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_none())
}

/// Deletes what dead processes left that is known dead whoever else has
/// the store open: lease files and key lock files nobody holds (`flock(2)`
/// locks die with their process, so this is exact, pid reuse or not).
/// Failures are left for `rbk system check` to report.
fn sweep_dead_processes(layout: &Layout) {
    let _ = crate::lease::live_leases(layout.root(), None, true);
    let _ = crate::lock::stale_key_locks(&layout.locks(), true);
}

/// Deletes everything in `tmp/`: called only when no other process has the
/// store open, so it is all left over from crashes.
fn sweep_tmp(tmp: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(tmp).at("list", tmp)? {
        let entry = entry.at("list", tmp)?;
        let path = entry.path();
        let res = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        // A leftover we cannot delete (e.g. a still-mounted dir) must not
        // stop the store from opening; it is retried next time.
        let _ = res;
    }
    Ok(())
}

/// Writes `data` to `dest` atomically: staged in `tmp`, fsynced, renamed.
pub(crate) fn write_atomic(tmp: &Path, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut f = tempfile::Builder::new()
        .prefix("write-")
        .tempfile_in(tmp)
        .at("create a staging file in", tmp)?;
    f.write_all(data).at("write", f.path())?;
    f.as_file().sync_all().at("sync", f.path())?;
    f.persist(dest).map_err(|e| StoreError::Io {
        op: "rename into place",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    sync_parent(dest);
    Ok(())
}

/// Best-effort fsync of `path`'s directory, so the rename itself is durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// A blob being written. Hashes as it goes; [`BlobWriter::commit`] moves it
/// into the store. Dropping it without committing deletes the staging file.
#[derive(Debug)]
pub struct BlobWriter {
    out: BufWriter<File>,
    path: tempfile::TempPath,
    /// None for a pre-hashed writer: the committer supplies the digest.
    hasher: Option<Sha256>,
    size: u64,
    blobs: PathBuf,
    lease: Arc<Lease>,
    lock: PathBuf,
}

impl BlobWriter {
    /// The staging file (for error messages).
    pub fn staging_path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Finishes the blob: checks it against `expected` (if given), fsyncs
    /// and renames it to `blobs/sha256/<hex>`. Returns its digest and size.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let staged = self.stage(expected)?;
        let out = (staged.digest.clone(), staged.size);
        staged.publish()?;
        Ok(out)
    }

    /// Finishes and verifies the blob like [`BlobWriter::commit`] but leaves
    /// it in `tmp/`, for callers (like `load`) that publish a set of blobs
    /// only once all of them are known to be good.
    pub fn stage(self, expected: Option<&Digest>) -> Result<StagedBlob, StoreError> {
        let BlobWriter {
            out,
            path,
            hasher,
            size,
            blobs,
            lease,
            lock,
        } = self;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: e.into_error(),
        })?;
        let digest = match (hasher, expected) {
            (Some(h), _) => Digest::from_hasher(h),
            (None, Some(e)) => e.clone(),
            (None, None) => {
                return Err(StoreError::Io {
                    op: "commit a pre-hashed blob without its digest:",
                    path: path.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a pre-hashed blob needs its digest",
                    ),
                })
            }
        };
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(StoreError::Corrupt {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let dest = blobs.join(digest.hex());
        if !dest.is_file() {
            file.sync_all().at("sync", &path)?;
            set_readable(&file, &path)?;
        }
        Ok(StagedBlob {
            path,
            digest,
            size,
            dest,
            lease,
            lock,
        })
    }
}

/// A verified blob waiting in `tmp/`; dropping it deletes it.
#[derive(Debug)]
pub struct StagedBlob {
    path: tempfile::TempPath,
    digest: Digest,
    size: u64,
    dest: PathBuf,
    lease: Arc<Lease>,
    lock: PathBuf,
}

impl StagedBlob {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the staged content can be read until it is published.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the blob into the store (a no-op if it is already there),
    /// leased to this process so no concurrent `prune` removes it before
    /// something references it.
    pub fn publish(self) -> Result<(), StoreError> {
        // Shared with other writers, exclusive of prune: a blob that is
        // already there cannot vanish between this check and the lease.
        let _guard = lock(&self.lock, LockMode::Shared)?;
        self.lease.add([Leased::Blob(self.digest.clone())])?;
        if self.dest.is_file() {
            return Ok(());
        }
        let dest = self.dest;
        self.path.persist(&dest).map_err(|e| StoreError::Io {
            op: "rename into place",
            path: dest.clone(),
            source: e.error,
        })?;
        sync_parent(&dest);
        Ok(())
    }
}

/// Staging files are created 0600; blobs are world-readable like any OCI
/// layout, so other users' tools (skopeo, umoci) can read a shared store.
fn set_readable(file: &File, path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .at("set permissions of", path)
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A reader that hashes what passes through it and fails at end of file if
/// the content does not match the expected digest.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Digest,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, expecting its content to hash to `expected`.
    pub fn new(inner: R, expected: Digest) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            expected,
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
        } else if !self.done {
            self.done = true;
            let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    StoreError::Corrupt {
                        expected: self.expected.clone(),
                        actual,
                    },
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = cs.put(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        assert_eq!(cs.size(&d).unwrap(), 5);
        fs::write(cs.path(&d), b"jello").unwrap();
        let err = cs.read(&d).unwrap_err().to_string();
        assert!(err.contains(d.as_str()), "{err}");
        let mut buf = Vec::new();
        let e = cs.open_blob(&d).unwrap().read_to_end(&mut buf).unwrap_err();
        let e = StoreError::from_io("read", Path::new("x"), e);
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn prehashed_writer_takes_the_callers_digest_and_reads_verify_it() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let mut w = cs.writer_prehashed().unwrap();
        w.write_all(b"layer bytes").unwrap();
        let err = w.commit(None).unwrap_err().to_string();
        assert!(err.contains("without its digest"), "{err}");
        let mut w = cs.writer_prehashed().unwrap();
        w.write_all(b"layer bytes").unwrap();
        let d = Digest::of(b"layer bytes");
        assert_eq!(w.commit(Some(&d)).unwrap(), (d.clone(), 11));
        assert_eq!(cs.read(&d).unwrap(), b"layer bytes");
        // A wrong digest is not caught at commit (that is the point), but
        // every read of the blob still is.
        let mut w = cs.writer_prehashed().unwrap();
        w.write_all(b"other bytes").unwrap();
        let wrong = Digest::of(b"not these");
        w.commit(Some(&wrong)).unwrap();
        assert!(cs.read(&wrong).is_err());
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let mut w = cs.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(cs.tmp_dir()).unwrap().count(), 0);
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn commit_checks_expected_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let mut w = cs.writer().unwrap();
        w.write_all(b"abc").unwrap();
        let wrong = Digest::of(b"abd");
        assert!(matches!(
            w.commit(Some(&wrong)),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(cs.list().unwrap().is_empty());
    }
}
