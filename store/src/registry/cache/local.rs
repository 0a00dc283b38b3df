//! `type=local`: the cache in a directory that many CI jobs may share.
//!
//! ```text
//! DIR/blobs/sha256/<hex>      layers as the exporting store kept them
//! DIR/records/<sha256(key)>   one record each: the same manifest a registry
//!                             record has (config embedded, the layer named)
//! DIR/index.json, oci-layout  an OCI layout naming the index of the last
//!                             export's records (for listing)
//! ```
//!
//! Every file is written beside its place and renamed into it, blobs
//! before the records that name them: concurrent exports never lose each
//! other's records (each key is its own file) and a reader never sees half
//! of one. Older rbk wrote one manifest listing every record; such a
//! directory is still read.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::records::{self, IndexConfig, IndexEntry, INDEX_MEDIA_TYPE};
use super::{local_entries, CacheConfig, CacheEntry, ExportReport};
use crate::cache::CacheRecord;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::Store;
use crate::layout::Layout;
use crate::oci::{now_rfc3339, MEDIA_TYPE_OCI_MANIFEST};
use crate::oci::{Descriptor, Index, Manifest, ANNOTATION_REF_NAME, MEDIA_TYPE_OCI_INDEX};

/// The annotation naming the cache manifest in a local layout's index.
const LOCAL_REF_NAME: &str = "rbk-buildcache";

/// A blob of the layout at `dir`.
pub(super) fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    Layout::new(dir).blob(digest)
}

/// The record file of `key` in `dir`.
fn record_path(dir: &Path, key: &str) -> PathBuf {
    dir.join("records").join(Digest::of(key.as_bytes()).hex())
}

/// Reads a blob of the layout at `dir`, checked against its digest.
fn read_layout_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    let path = layout_blob(dir, digest);
    let bytes = std::fs::read(&path).map_err(|e| StoreError::from_io("read", &path, e))?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(StoreError::Corrupt {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// What the layout's `index.json` names.
pub(super) enum Head {
    /// No cache index (there may still be records).
    Nothing,
    /// A whole cache as older rbk wrote it.
    Whole(Vec<CacheEntry>),
    /// An index listing this many records.
    Index(usize),
}

/// Reads what the layout at `dir` names in its `index.json`.
pub(super) fn read_head(dir: &Path) -> Result<Head, StoreError> {
    let index_path = Layout::new(dir).index();
    let index_bytes = match std::fs::read(&index_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Head::Nothing),
        Err(e) => return Err(StoreError::from_io("read", &index_path, e)),
    };
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| StoreError::json(format!("{}", index_path.display()), e))?;
    let Some(desc) = index.manifests.iter().find(|d| {
        d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(LOCAL_REF_NAME)
    }) else {
        return Ok(Head::Nothing);
    };
    let manifest: Manifest = serde_json::from_slice(&read_layout_blob(dir, &desc.digest)?)
        .map_err(|e| StoreError::json(format!("the cache manifest in {}", dir.display()), e))?;
    let config_bytes = read_layout_blob(dir, &manifest.config.digest)?;
    let what = format!("the cache records in {}", dir.display());
    if manifest.config.media_type == INDEX_MEDIA_TYPE {
        let index: IndexConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| StoreError::json(what, e))?;
        return Ok(Head::Index(index.records.len()));
    }
    let config: CacheConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| StoreError::json(what, e))?;
    Ok(Head::Whole(config.records))
}

/// The record of `key` in the layout at `dir`, if it has one whose layer
/// is there too.
pub(super) fn read_record(dir: &Path, key: &str) -> Result<Option<CacheEntry>, String> {
    let path = record_path(dir, key);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let at = |e: String| format!("{}: {e}", path.display());
    let m = records::parse_manifest(&bytes).map_err(at)?;
    let entry = records::entry_of(&m, key).map_err(at)?;
    if let Some(l) = &entry.record.layer {
        if !layout_blob(dir, &l.digest).exists() {
            return Ok(None);
        }
    }
    Ok(Some(entry))
}

/// Writes `records` and their layers (as `store` keeps them) into the
/// cache directory `dir`: each record its own file, so exports by other
/// jobs into the same directory, even at the same moment, keep theirs. A
/// record the directory has already is left as it is.
pub fn export_local(
    store: &Store,
    dir: &Path,
    records: &[CacheRecord],
) -> Result<ExportReport, StoreError> {
    let blobs_dir = Layout::new(dir).blobs();
    let records_dir = dir.join("records");
    for d in [&blobs_dir, &records_dir] {
        std::fs::create_dir_all(d).map_err(|e| StoreError::from_io("create", d, e))?;
    }
    let entries = local_entries(records);
    let created = now_rfc3339();
    let written: Vec<bool> = entries
        .par_iter()
        .map(|e| write_record(store, dir, e, &created, false))
        .collect::<Result<_, _>>()?;
    let mut layers: Vec<&Descriptor> = entries
        .iter()
        .filter_map(|e| e.record.layer.as_ref())
        .collect();
    layers.sort_by(|a, b| a.digest.cmp(&b.digest));
    layers.dedup_by(|a, b| a.digest == b.digest);
    let listed = entries
        .iter()
        .map(|e| IndexEntry {
            key: e.record.key.clone(),
            tag: format!("records/{}", Digest::of(e.record.key.as_bytes()).hex()),
        })
        .collect();
    let digest = write_index(dir, listed)?;
    let pushed = written.iter().filter(|w| **w).count();
    Ok(ExportReport {
        digest,
        records: entries.len(),
        layers: layers.len(),
        pushed,
        skipped: entries.len() - pushed,
    })
}

/// Writes the cache mount records `records` (their layers in `store`)
/// into the cache directory `dir`, each replacing the one there; returns
/// how many.
pub fn export_local_mounts(
    store: &Store,
    dir: &Path,
    records: &[CacheRecord],
) -> Result<usize, StoreError> {
    let blobs_dir = Layout::new(dir).blobs();
    let records_dir = dir.join("records");
    for d in [&blobs_dir, &records_dir] {
        std::fs::create_dir_all(d).map_err(|e| StoreError::from_io("create", d, e))?;
    }
    let created = now_rfc3339();
    for e in local_entries(records) {
        write_record(store, dir, &e, &created, true)?;
    }
    Ok(records.len())
}

/// Writes the layer and the record file of `entry` unless the record is
/// there (always with `always`); returns whether it wrote it.
fn write_record(
    store: &Store,
    dir: &Path,
    entry: &CacheEntry,
    created: &str,
    always: bool,
) -> Result<bool, StoreError> {
    let path = record_path(dir, &entry.record.key);
    let layer = entry.record.layer.as_ref();
    let layer_there = layer.is_none_or(|l| layout_blob(dir, &l.digest).exists());
    if !always && path.exists() && layer_there {
        return Ok(false);
    }
    if let Some(l) = layer {
        copy_blob(store, dir, &l.digest)?;
    }
    let artifact = records::record_artifact(entry, layer, created)?;
    write_atomically(&path, |f| std::io::Write::write_all(f, &artifact.manifest))?;
    Ok(true)
}

/// Writes the index of the export's records and swaps `index.json` to it
/// in one rename; returns the index manifest's digest.
fn write_index(dir: &Path, listed: Vec<IndexEntry>) -> Result<Digest, StoreError> {
    let (_, manifest_bytes) = records::index_artifact(listed, |b| write_blob(dir, b))?;
    let digest = write_blob(dir, &manifest_bytes)?;
    let mut desc = Descriptor::new(
        MEDIA_TYPE_OCI_MANIFEST,
        digest.clone(),
        manifest_bytes.len() as u64,
    );
    desc.annotations
        .insert(ANNOTATION_REF_NAME.into(), LOCAL_REF_NAME.into());
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
        manifests: vec![desc],
        ..Default::default()
    };
    let index_bytes =
        serde_json::to_vec_pretty(&index).map_err(|e| StoreError::json("index.json", e))?;
    replace_file(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    replace_file(dir, "index.json", &index_bytes)?;
    Ok(digest)
}

/// Copies a blob of `store` into the layout at `dir` (unless there).
fn copy_blob(store: &Store, dir: &Path, digest: &Digest) -> Result<(), StoreError> {
    let to = layout_blob(dir, digest);
    if to.exists() {
        return Ok(());
    }
    let mut from = store.content.open_blob(digest)?;
    write_atomically(&to, |f| std::io::copy(&mut from, f).map(drop))
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its digest.
fn write_blob(dir: &Path, bytes: &[u8]) -> Result<Digest, StoreError> {
    let digest = Digest::of(bytes);
    let to = layout_blob(dir, &digest);
    if !to.exists() {
        write_atomically(&to, |f| std::io::Write::write_all(f, bytes))?;
    }
    Ok(digest)
}

/// Writes `dir/name` through a temporary file and a rename.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically(&dir.join(name), |f| std::io::Write::write_all(f, bytes))
}

/// Writes `to` through a file beside it (named after this process and a
/// counter, so concurrent writers never share one), synced and renamed
/// into place, so readers of the layout never see half a file.
fn write_atomically(
    to: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let tmp = to.with_file_name(format!(".{name}.part-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::from_io("write", to, e));
    }
    Ok(())
}
