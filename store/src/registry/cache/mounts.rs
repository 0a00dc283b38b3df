//! Cache mounts that travel with the cache (`--cache-to …,cache-mounts=true`):
//! the contents of a `RUN --mount=type=cache` directory as a record of
//! key `cache-mount:<id>` whose layer is a gzip tar of the directory, so
//! they are exported, looked up, stored locally and pruned as any record.

use std::io::Write;
use std::path::Path;

use crate::cache::CacheRecord;
use crate::error::StoreError;
use crate::images::Store;
use crate::oci::{now_rfc3339, Descriptor, MEDIA_TYPE_OCI_LAYER_GZIP};

/// The prefix of a cache mount's record key (no step key has it).
pub(crate) const MOUNT_KEY_PREFIX: &str = "cache-mount:";

/// The family of cache mount records.
const MOUNT_FAMILY: &str = "cache-mount";

/// The record key of cache mount `id`.
pub fn mount_key(id: &str) -> String {
    format!("{MOUNT_KEY_PREFIX}{id}")
}

/// Bytes the regular files under `dir` hold (symlinks not followed).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Why a cache mount was not packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unpacked {
    /// The directory is missing or empty.
    Empty,
    /// Its files take more than the cap (bytes they take).
    TooLarge(u64),
}

/// Packs the cache mount `id` whose directory is `dir` into `store` as a
/// gzip tar, as a record: `Err(Unpacked)` when it is empty or its files
/// take more than `max` bytes.
pub fn pack_mount(
    store: &Store,
    id: &str,
    dir: &Path,
    max: u64,
) -> Result<Result<CacheRecord, Unpacked>, StoreError> {
    let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if empty {
        return Ok(Err(Unpacked::Empty));
    }
    let size = tree_size(dir);
    if size > max {
        return Ok(Err(Unpacked::TooLarge(size)));
    }
    let w = store.content.writer()?;
    let staging = w.staging_path().to_path_buf();
    let io = |e| StoreError::from_io("pack cache mount", dir, e);
    let gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir).map_err(io)?;
    let mut gz = tar.into_inner().map_err(io)?;
    gz.flush()
        .map_err(|e| StoreError::from_io("write", &staging, e))?;
    let w = gz
        .finish()
        .map_err(|e| StoreError::from_io("write", &staging, e))?;
    let (digest, len) = w.commit(None)?;
    Ok(Ok(CacheRecord {
        key: mount_key(id),
        family: MOUNT_FAMILY.to_string(),
        layer: Some(Descriptor::new(MEDIA_TYPE_OCI_LAYER_GZIP, digest, len)),
        diff_id: None,
        chain_id: None,
        config: None,
        inputs: serde_json::Value::Null,
        created: now_rfc3339(),
    }))
}

/// Unpacks the cache mount `blob` (in `store`) into `dir`, which is made;
/// no entry is written outside it.
pub fn unpack_mount(store: &Store, blob: &Descriptor, dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::from_io("create", dir, e))?;
    let reader = store.content.open_blob(&blob.digest)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    // `unpack` refuses entries that would land outside `dir`.
    archive
        .unpack(dir)
        .map_err(|e| StoreError::from_io("unpack cache mount into", dir, e))
}
