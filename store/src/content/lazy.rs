//! Layer blobs made when something needs them.
//!
//! A build step's layer exists twice if it is committed as a blob: once as
//! the snapshot's files (what the next step stacks on) and once as the
//! uncompressed tar of the same bytes. So an uncompressed layer is only
//! hashed at commit (its diff id, which is also its blob digest), and a
//! record `lazy/<digest hex>` names the snapshots that hold it. The tar is
//! written the first time something reads the blob — save, push, a cache
//! export, `-o`, unpacking it for another parent — by diffing the snapshot
//! again (layer output is deterministic: sorted entries, no atime/ctime),
//! verified against the digest, and kept as an ordinary blob from then on.
//!
//! The snapshots a record names are kept by `prune` exactly when an image or
//! a cache record needs the layer (they are the chains of those), and
//! lookups ignore snapshots that are gone; a blob whose every snapshot is
//! gone is missing, as a deleted blob would be.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{write_atomic, ContentStore};
use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layer::{self, DiffOptions};
use crate::layout::Layout;
use crate::snapshot::{self, SnapshotterKind};

/// Where a layer's bytes can be made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The snapshot (a chain id's hex) under `snapshots/`.
    pub snapshot: String,
    /// How it was made.
    pub kind: SnapshotterKind,
    /// The mtime clamp it was committed with (`SOURCE_DATE_EPOCH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamp_mtime: Option<i64>,
}

/// `lazy/<hex>`: the layer's size and the snapshots holding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    size: u64,
    sources: Vec<Source>,
}

fn record_path(root: &Path, d: &Digest) -> PathBuf {
    Layout::new(root).lazy().join(d.hex())
}

fn read_record(root: &Path, d: &Digest) -> Option<Record> {
    let bytes = fs::read(record_path(root, d)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn snapshot_fs(root: &Path, key: &str) -> PathBuf {
    snapshot::tree_of(&Layout::new(root).snapshots(), key)
}

/// Whether a source's snapshot is still there (committed: its meta names
/// it).
fn available(root: &Path, s: &Source) -> bool {
    snapshot::exists_in(&Layout::new(root).snapshots(), &s.snapshot)
}

/// Records that `source` holds the uncompressed layer `digest` of `size`
/// bytes (added to the sources already recorded).
pub fn record(
    content: &ContentStore,
    digest: &Digest,
    size: u64,
    source: Source,
) -> Result<(), StoreError> {
    let root = content.root();
    let dir = Layout::new(root).lazy();
    fs::create_dir_all(&dir).at("create directory", &dir)?;
    let mut rec = read_record(root, digest).unwrap_or(Record {
        size,
        sources: Vec::new(),
    });
    rec.sources.retain(|s| s != &source && available(root, s));
    rec.sources.push(source);
    let bytes = serde_json::to_vec(&rec).map_err(|e| StoreError::json("lazy layer record", e))?;
    write_atomic(content.tmp_dir(), &record_path(root, digest), &bytes)
}

/// Records that snapshot `to` holds the same files as `from`, one of the
/// snapshots layer `digest` can be made from (a layer stacked by linking,
/// see [`crate::snapshot::Snapshotter::stack`]): either can make it then,
/// so `prune` removing one keeps the layer. Nothing to do for a layer that
/// is a blob already or has no record.
pub(crate) fn alias(
    content: &ContentStore,
    digest: &Digest,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let Some(rec) = read_record(content.root(), digest) else {
        return Ok(());
    };
    let Some(source) = rec.sources.iter().find(|s| s.snapshot == from) else {
        return Ok(());
    };
    let copy = Source {
        snapshot: to.to_string(),
        ..source.clone()
    };
    record(content, digest, rec.size, copy)
}

/// The size of a layer that can be made, if one of its snapshots is there.
pub(crate) fn size(root: &Path, d: &Digest) -> Option<u64> {
    let rec = read_record(root, d)?;
    rec.sources
        .iter()
        .any(|s| available(root, s))
        .then_some(rec.size)
}

/// Writes the blob `d` from one of its snapshots, verified; false when it
/// has no record or none of its snapshots is left.
pub(crate) fn materialize(content: &ContentStore, d: &Digest) -> Result<bool, StoreError> {
    let root = content.root();
    let Some(rec) = read_record(root, d) else {
        return Ok(false);
    };
    let Some(source) = rec.sources.iter().find(|s| available(root, s)) else {
        return Ok(false);
    };
    let mut w = content.writer()?;
    write_layer(root, d, source, &mut w)?;
    w.flush().at("write", content.tmp_dir())?;
    // A snapshot that no longer diffs to the digest is a corrupt source:
    // the writer refuses to store it under that name.
    w.commit(Some(d))?;
    Ok(true)
}

/// Streams the layer `d` from one of its snapshots into `w` (nothing
/// stored); false when it has no record or none of its snapshots is left.
pub(crate) fn stream(root: &Path, d: &Digest, w: &mut dyn Write) -> Result<bool, StoreError> {
    let Some(rec) = read_record(root, d) else {
        return Ok(false);
    };
    let Some(source) = rec.sources.iter().find(|s| available(root, s)) else {
        return Ok(false);
    };
    write_layer(root, d, source, w)?;
    Ok(true)
}

/// Like [`materialize`] for a store that cannot be written (mounted
/// read-only): the layer is made into an unnamed temporary file outside
/// the store and returned at its start, for the caller to verify as it
/// reads. `None` when no snapshot holds it.
pub(crate) fn materialize_detached(
    content: &ContentStore,
    d: &Digest,
) -> Result<Option<fs::File>, StoreError> {
    use std::io::{Seek, SeekFrom};
    let root = content.root();
    let Some(rec) = read_record(root, d) else {
        return Ok(None);
    };
    let Some(source) = rec.sources.iter().find(|s| available(root, s)) else {
        return Ok(None);
    };
    let scratch = std::env::temp_dir();
    let mut file = tempfile::tempfile_in(&scratch).at("create a temporary file in", &scratch)?;
    let mut w = std::io::BufWriter::new(&mut file);
    write_layer(root, d, source, &mut w)?;
    w.flush().at("write a temporary file in", &scratch)?;
    drop(w);
    file.seek(SeekFrom::Start(0))
        .at("rewind a temporary file in", &scratch)?;
    Ok(Some(file))
}

/// Writes the uncompressed layer `d` as snapshot `source` makes it.
fn write_layer(
    root: &Path,
    d: &Digest,
    source: &Source,
    w: &mut dyn Write,
) -> Result<(), StoreError> {
    let opts = DiffOptions {
        compression: Compression::None,
        clamp_mtime: source.clamp_mtime,
        ..DiffOptions::default()
    };
    let fs_dir = snapshot_fs(root, &source.snapshot);
    let made = match source.kind {
        SnapshotterKind::Overlay => layer::diff_upper(&fs_dir, w, opts),
        SnapshotterKind::Copy => {
            let snapshots = Layout::new(root).snapshots();
            let parent =
                snapshot::parent_of(&snapshots, &source.snapshot).map(|p| snapshot_fs(root, &p));
            layer::diff_trees(parent.as_deref(), &fs_dir, w, opts)
        }
    };
    made.map_err(|e| StoreError::LayerSource {
        digest: d.clone(),
        snapshot: source.snapshot.clone(),
        source: Box::new(e),
    })?;
    Ok(())
}

/// Deletes the records none of whose snapshots is left, and records of
/// layers that are blobs now. For `prune`, under the exclusive store lock,
/// after it deleted snapshots.
pub(crate) fn sweep(content: &ContentStore) {
    let root = content.root();
    for (d, path) in super::records_in(&Layout::new(root).lazy()) {
        let live =
            read_record(root, &d).is_some_and(|r| r.sources.iter().any(|s| available(root, s)));
        if !live || content.path(&d).is_file() {
            let _ = fs::remove_file(path);
        }
    }
}
