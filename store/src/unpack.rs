//! Unpacking a stack of layers into committed snapshots: each layer once,
//! however many threads and processes ask for it at the same time.
//!
//! Per layer, a [`KeyLock`] named after its chain id lets one process
//! unpack while the others wait and then find it done; the snapshot is
//! leased (see [`crate::lease`]) in the same critical section that checks
//! it exists, so a concurrent `prune` cannot remove it from under the
//! caller.

use crate::compress;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::Store;
use crate::lock::KeyLock;
use crate::oci::{self, Descriptor};
use crate::snapshot::{SnapshotError, Snapshotter, SnapshotterKind, StagedLayer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Why a stack of layers could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer blob could not be read or decompressed.
    #[error("cannot read layer {digest}")]
    Read {
        /// The layer blob.
        digest: Digest,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Applying the layer failed (a bad tar, a diff id mismatch, a disk
    /// error).
    #[error("cannot unpack layer {digest}")]
    Apply {
        /// The layer blob.
        digest: Digest,
        /// Why.
        #[source]
        source: SnapshotError,
    },
    /// Locking or leasing in the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Interrupted while waiting for another process's unpack.
    #[error("cancelled")]
    Cancelled,
}

/// One layer: its blob and its uncompressed digest.
#[derive(Debug, Clone, Copy)]
pub struct LayerRef<'a> {
    /// The blob as stored.
    pub blob: &'a Descriptor,
    /// Its diff id.
    pub diff_id: &'a Digest,
}

/// Makes sure every layer of `layers` (bottom to top) is a committed
/// snapshot and returns the top one's key (`None` for no layers).
///
/// `fetch` runs before a missing layer's blob is read (a registry cache
/// brings it in); `cancelled` is polled while waiting for another process.
pub fn unpack_layers<E: From<UnpackError>>(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    layers: &[LayerRef<'_>],
    fetch: impl Fn(&Descriptor) -> Result<(), E>,
    cancelled: impl Fn() -> bool,
) -> Result<Option<String>, E> {
    let ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = oci::chain_ids(&ids);
    // Before anything is unpacked: an image too deep to mount is refused
    // now, not after unpacking every layer.
    if let Some(top) = chain.last() {
        crate::images::check_layer_count(&top.to_string(), layers.len())
            .map_err(UnpackError::from)?;
    }
    let locks = store.layout().locks();
    let keys: Vec<String> = chain.iter().map(|c| c.hex().to_string()).collect();
    let mut ahead = stage_ahead(store, snapshotter, layers, &keys);
    let mut parent: Option<String> = None;
    for (i, (layer, key)) in layers.iter().zip(keys).enumerate() {
        let exists = || snapshotter.exists(&key);
        // Fast path: already there (and now leased).
        if !store
            .lease_snapshot(&key, exists)
            .map_err(UnpackError::from)?
        {
            let Some(_guard) =
                KeyLock::acquire(&locks, &format!("unpack-{key}"), || {}, &cancelled)
                    .map_err(UnpackError::from)?
            else {
                return Err(UnpackError::Cancelled.into());
            };
            // Another process may have finished it while we waited.
            if !store
                .lease_snapshot(&key, exists)
                .map_err(UnpackError::from)?
                && !stack(store, snapshotter, layer, &key, parent.as_deref())?
            {
                match ahead.get_mut(i).and_then(Option::take) {
                    Some(staged) => commit(snapshotter, layer, staged, &key, parent.as_deref())?,
                    None => {
                        fetch(layer.blob)?;
                        apply(store, snapshotter, layer, &key, parent.as_deref())?;
                    }
                }
            }
        }
        parent = Some(key);
    }
    Ok(parent)
}

/// Stacks `layer` over `parent` as snapshot `key` by linking the files of
/// the layer's own snapshot — the one with no parent, named by its diff id
/// (a `COPY --link` layer, or any bottom layer) — instead of reading its
/// tar; false when there is none or the snapshotter cannot (the caller
/// applies the tar).
fn stack(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    layer: &LayerRef<'_>,
    key: &str,
    parent: Option<&str>,
) -> Result<bool, UnpackError> {
    let own = layer.diff_id.hex().to_string();
    if parent.is_none() || !store.lease_snapshot(&own, || snapshotter.exists(&own))? {
        return Ok(false);
    }
    match snapshotter.stack(key, parent, &own) {
        Ok(true) => {}
        Err(SnapshotError::AlreadyExists { .. }) => return Ok(true),
        // A link refused (a file of an id this process may not link, in a
        // user namespace): the tar makes the same tree.
        Ok(false) | Err(_) => return Ok(false),
    }
    crate::content::lazy::alias(&store.content, &layer.blob.digest, &own, key)?;
    Ok(true)
}

/// A layer unpacked ahead ([`stage_ahead`]), or why it could not be.
type Staged = Result<StagedLayer, SnapshotError>;

/// Unpacks the layers still to make side by side, each into a staging dir
/// of its own, before they are committed in order: with the overlay
/// snapshotter a layer's dir holds just its own changes, so it does not
/// need the layers below on disk unless it has a parent it does not carry
/// itself (then it is left to [`apply`], in order). Only layers whose blob
/// is here (nothing to fetch) and that no snapshot can stack; nothing
/// unless at least two can go side by side.
fn stage_ahead(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    layers: &[LayerRef<'_>],
    keys: &[String],
) -> Vec<Option<Staged>> {
    let mut out: Vec<Option<Staged>> = layers.iter().map(|_| None).collect();
    if snapshotter.kind() != SnapshotterKind::Overlay {
        return out;
    }
    let wanted: Vec<usize> = (0..layers.len())
        .filter(|&i| {
            let l = &layers[i];
            !snapshotter.exists(&keys[i])
                && store.content.path(&l.blob.digest).is_file()
                && (i == 0 || !snapshotter.exists(l.diff_id.hex()))
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(wanted.len());
    if threads < 2 {
        return out;
    }
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(&i) = wanted.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let staged = stage(store, snapshotter, &layers[i], &keys[i], i > 0);
                    done.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((i, staged));
                }
            });
        }
    });
    for (i, staged) in done.into_inner().unwrap_or_else(PoisonError::into_inner) {
        if let (Some(slot), Some(staged)) = (out.get_mut(i), staged) {
            *slot = Some(staged);
        }
    }
    out
}

/// One layer unpacked ahead; `None` to leave it to [`apply`] (which also
/// reports a blob that cannot be opened).
fn stage(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    layer: &LayerRef<'_>,
    key: &str,
    on_parent: bool,
) -> Option<Staged> {
    let blob = store.content.open_blob(&layer.blob.digest).ok()?;
    let mut plain = compress::decompress(blob).ok()?;
    snapshotter
        .stage_layer(key, &mut plain, Some(layer.diff_id), on_parent)
        .transpose()
}

/// Commits a layer unpacked ahead as snapshot `key` on `parent`.
fn commit(
    snapshotter: &dyn Snapshotter,
    layer: &LayerRef<'_>,
    staged: Staged,
    key: &str,
    parent: Option<&str>,
) -> Result<(), UnpackError> {
    match staged.and_then(|s| snapshotter.commit_staged(s, key, parent)) {
        Ok(_) | Err(SnapshotError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(UnpackError::Apply {
            digest: layer.blob.digest.clone(),
            source,
        }),
    }
}

fn apply(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    layer: &LayerRef<'_>,
    key: &str,
    parent: Option<&str>,
) -> Result<(), UnpackError> {
    let digest = &layer.blob.digest;
    let read = |source| UnpackError::Read {
        digest: digest.clone(),
        source,
    };
    let blob = store.content.open_blob(digest).map_err(read)?;
    let mut plain = compress::decompress(blob).map_err(|e| {
        read(StoreError::from_io(
            "decompress",
            &store.content.path(digest),
            e,
        ))
    })?;
    match snapshotter.apply_layer(key, parent, &mut plain, Some(layer.diff_id)) {
        // Made by something that does not take the lock (an older rbk):
        // as good as ours.
        Ok(_) | Err(SnapshotError::AlreadyExists { .. }) => Ok(()),
        Err(source) => Err(UnpackError::Apply {
            digest: digest.clone(),
            source,
        }),
    }
}
