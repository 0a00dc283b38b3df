//! Layer blobs kept where a build cache holds them until something reads
//! them.
//!
//! A step served by a `--cache-from` cache needs its layer's bytes only
//! when something reads them: a step that runs on top of it (its parent
//! chain is unpacked), `rbk run`, `rbk save`, an export that writes the
//! bytes, a push to another registry. Committing or tagging an image, or
//! pushing it where the blob already is, needs only its digest and size. So
//! such a layer is recorded, not downloaded: `remote/<hex>` says where the
//! blob can be fetched from (a registry repository, or a file of a local
//! cache directory), as which blob (its digest there, and whether it must
//! be decompressed to the digest the record is named by), and its size.
//! [`super::ContentStore::has`] counts it as present;
//! [`super::ContentStore::open_blob`], `read` and `ensure` fetch it on first
//! read, verified like any blob written to the store, and keep it as an
//! ordinary blob from then on (the compressed copy too, for a later push).
//!
//! Fetching from a registry goes through a [`Fetcher`] the program installs
//! once ([`set_fetcher`]): the registry client, with the credentials a pull
//! would use, so a later process (`rbk save` after the build) can reach the
//! registry again. `prune` keeps a record exactly while an image, a cache
//! record or a lease needs its blob ([`sweep`]).

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::{write_atomic, ContentStore};
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layout::Layout;
use crate::lease::Leased;
use crate::oci::Descriptor;

/// Where a remote blob is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Place {
    /// A registry's repository, as `host[:port]/path`.
    Registry {
        /// The repository (`localhost:5000/cache/app`).
        repository: String,
    },
    /// A file (a local cache directory's blob).
    File {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Registry { repository } => write!(f, "registry repository {repository}"),
            Place::File { path } => write!(f, "{}", path.display()),
        }
    }
}

/// Where a layer's bytes can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Where the blob is.
    pub place: Place,
    /// The blob there. When its digest is not the one the record is named
    /// by, it is that layer compressed: it is decompressed after download
    /// and the result verified against the record's digest.
    pub blob: Descriptor,
}

/// `remote/<hex>`: the layer's size (in the form the digest names) and
/// where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    size: u64,
    source: Source,
}

/// Fetches blobs from registries for the content store.
pub trait Fetcher: Send + Sync {
    /// Writes the blob `blob` of registry repository `repository` into
    /// `content`, verified against its digest.
    fn fetch(
        &self,
        content: &ContentStore,
        repository: &str,
        blob: &Descriptor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

static FETCHER: RwLock<Option<Arc<dyn Fetcher>>> = RwLock::new(None);

/// Installs how blobs are fetched from registries (the registry client
/// with the program's settings); the last one installed is used.
pub fn set_fetcher(f: Arc<dyn Fetcher>) {
    *FETCHER.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
}

fn fetcher() -> Option<Arc<dyn Fetcher>> {
    FETCHER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn record_path(root: &Path, d: &Digest) -> PathBuf {
    Layout::new(root).remote().join(d.hex())
}

fn read_record(root: &Path, d: &Digest) -> Option<Record> {
    let bytes = fs::read(record_path(root, d)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records that blob `digest` (`size` bytes) can be fetched from `source`,
/// leased to this process so a concurrent `prune` keeps the record until
/// an image or cache record names the blob. Nothing to do when the store
/// has the blob already.
pub fn record(
    content: &ContentStore,
    digest: &Digest,
    size: u64,
    source: Source,
) -> Result<(), StoreError> {
    if content.has_local(digest) {
        return Ok(());
    }
    let root = content.root();
    let dir = Layout::new(root).remote();
    fs::create_dir_all(&dir).at("create directory", &dir)?;
    let _guard = crate::lock::lock(&content.lock_path(), crate::lock::LockMode::Shared)?;
    content.lease().add([Leased::Blob(digest.clone())])?;
    let rec = Record { size, source };
    let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::json("remote layer record", e))?;
    write_atomic(content.tmp_dir(), &record_path(root, digest), &bytes)
}

/// Where blob `d` can be fetched from, if it is recorded as remote and not
/// in the store yet.
pub fn source(content: &ContentStore, d: &Digest) -> Option<Source> {
    if content.path(d).is_file() {
        return None;
    }
    read_record(content.root(), d).map(|r| r.source)
}

/// The size of a blob recorded as remote.
pub(crate) fn size(root: &Path, d: &Digest) -> Option<u64> {
    read_record(root, d).map(|r| r.size)
}

/// Fetches blob `d` from where its record says, verified, into the store;
/// false when it has no record.
pub(crate) fn materialize(content: &ContentStore, d: &Digest) -> Result<bool, StoreError> {
    let Some(rec) = read_record(content.root(), d) else {
        return Ok(false);
    };
    if content.is_read_only() {
        return Err(StoreError::ReadOnly {
            root: content.root().to_path_buf(),
        });
    }
    let src = &rec.source;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::RemoteFetch {
        digest: d.clone(),
        from: src.place.to_string(),
        source,
    };
    if !content.path(&src.blob.digest).is_file() {
        fetch_raw(content, src).map_err(failed)?;
    }
    if &src.blob.digest == d {
        return Ok(true);
    }
    // Kept compressed there: decompressed here, and verified against the
    // digest the record is named by (so the compressed blob, verified as
    // it came in, is not hashed again on the way).
    let staged = content.path(&src.blob.digest);
    let blob = fs::File::open(&staged).at("open", &staged)?;
    let mut plain = crate::compress::decompress(blob).at("decompress", &staged)?;
    content
        .ingest(&mut plain, Some(d))
        .map_err(|e| failed(Box::new(e)))?;
    Ok(true)
}

/// Writes `src`'s blob, as it is there, into the store (verified).
fn fetch_raw(
    content: &ContentStore,
    src: &Source,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    match &src.place {
        Place::File { path } => {
            let mut f = fs::File::open(path).at("open", path)?;
            let mut r: &mut dyn Read = &mut f;
            content.ingest(&mut r, Some(&src.blob.digest))?;
            Ok(())
        }
        Place::Registry { repository } => match fetcher() {
            Some(f) => f.fetch(content, repository, &src.blob),
            None => Err("this program cannot reach registries".into()),
        },
    }
}

/// The blobs recorded as remote and not fetched.
pub fn list(content: &ContentStore) -> Vec<Digest> {
    let mut out: Vec<Digest> = super::records_in(&Layout::new(content.root()).remote())
        .into_iter()
        .map(|(d, _)| d)
        .filter(|d| !content.path(d).is_file())
        .collect();
    out.sort();
    out
}

/// Deletes the records of blobs that are files now, and of blobs `keep`
/// does not hold (what the store's images, cache records and leases need)
/// unless a kept record is fetched through them (the compressed blob a
/// kept layer comes as, which is also its compressed copy for a push). For
/// `prune`, under the exclusive store lock.
pub(crate) fn sweep(content: &ContentStore, keep: &dyn Fn(&Digest) -> bool) {
    let records = super::records_in(&Layout::new(content.root()).remote());
    let through: HashSet<Digest> = records
        .iter()
        .filter(|(d, _)| keep(d) && !content.path(d).is_file())
        .filter_map(|(d, _)| read_record(content.root(), d))
        .map(|r| r.source.blob.digest)
        .collect();
    for (d, path) in records {
        if content.path(&d).is_file() || !(keep(&d) || through.contains(&d)) {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_remote_blob_is_present_and_fetched_on_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(&dir.path().join("store")).unwrap();
        let plain = b"layer bytes".to_vec();
        let packed = gzip(&plain);
        let cache = dir.path().join("cache-blob");
        fs::write(&cache, &packed).unwrap();
        let d = Digest::of(&plain);
        let blob = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Digest::of(&packed),
            packed.len() as u64,
        );
        let src = Source {
            place: Place::File {
                path: cache.clone(),
            },
            blob: blob.clone(),
        };
        record(&cs, &d, plain.len() as u64, src.clone()).unwrap();
        assert!(cs.has(&d));
        assert!(!cs.has_local(&d));
        assert_eq!(cs.size(&d).unwrap(), plain.len() as u64);
        assert_eq!(source(&cs, &d), Some(src.clone()));
        assert_eq!(list(&cs), vec![d.clone()]);
        // Prune keeps the compressed blob a kept layer comes as.
        record(
            &cs,
            &blob.digest,
            blob.size,
            Source {
                place: src.place.clone(),
                blob: blob.clone(),
            },
        )
        .unwrap();
        sweep(&cs, &|x| x == &d);
        assert!(cs.has(&blob.digest));
        sweep(&cs, &|_| false);
        assert!(!cs.has(&blob.digest) && !cs.has(&d));
        record(&cs, &d, plain.len() as u64, src.clone()).unwrap();
        // Nothing was read yet.
        assert!(!cs.path(&d).exists());
        assert_eq!(cs.read(&d).unwrap(), plain);
        assert!(cs.path(&d).is_file());
        assert!(
            cs.path(&blob.digest).is_file(),
            "the compressed copy is kept"
        );
        assert!(list(&cs).is_empty());
        sweep(&cs, &|_| true);
        assert!(!record_path(cs.root(), &d).exists());
    }

    #[test]
    fn a_read_only_store_says_so_for_a_remote_blob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let cs = ContentStore::open(&root).unwrap();
        let plain = b"layer bytes".to_vec();
        let cache = dir.path().join("cache-blob");
        fs::write(&cache, &plain).unwrap();
        let d = Digest::of(&plain);
        let blob = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            d.clone(),
            plain.len() as u64,
        );
        let src = Source {
            place: Place::File { path: cache },
            blob,
        };
        record(&cs, &d, plain.len() as u64, src).unwrap();
        drop(cs);
        // The same store as a read-only filesystem shows it: the blob
        // cannot be fetched into it, which is not the blob being missing.
        let layout = crate::layout::Layout::new(&root);
        let ro =
            ContentStore::open_read_only(layout.clone(), layout.blobs(), layout.tmp()).unwrap();
        assert!(ro.has(&d));
        assert!(matches!(ro.open_blob(&d), Err(StoreError::ReadOnly { .. })));
        assert!(matches!(ro.read(&d), Err(StoreError::ReadOnly { .. })));
        assert!(matches!(ro.ensure(&d), Err(StoreError::ReadOnly { .. })));
    }

    #[test]
    fn a_source_that_lies_is_refused_and_a_gone_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(&dir.path().join("store")).unwrap();
        let cache = dir.path().join("cache-blob");
        fs::write(&cache, b"other bytes").unwrap();
        let d = Digest::of(b"layer bytes");
        let src = Source {
            place: Place::File {
                path: cache.clone(),
            },
            blob: Descriptor::new("application/vnd.oci.image.layer.v1.tar", d.clone(), 11),
        };
        record(&cs, &d, 11, src).unwrap();
        let err = crate::error::error_chain(&cs.read(&d).unwrap_err());
        assert!(err.contains("corrupt"), "{err}");
        assert!(!cs.path(&d).exists());
        fs::remove_file(&cache).unwrap();
        let err = crate::error::error_chain(&cs.open_blob(&d).unwrap_err());
        assert!(err.contains(d.as_str()), "{err}");
        assert!(err.contains(&cache.display().to_string()), "{err}");
        // Prune drops a record nothing needs.
        sweep(&cs, &|_| false);
        assert!(!cs.has(&d));
    }
}
