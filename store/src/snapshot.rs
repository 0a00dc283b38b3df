//! Snapshots: the filesystem trees builds run in and layers unpack into,
//! in the shape of containerd's snapshotter API.
//!
//! A snapshot is *active* (writable, being built), *committed* (immutable,
//! usable as a parent; named by the layer's chain id) or a *view*
//! (read-only, for inspection). Snapshotters only compute [`Mount`]s as
//! plain data; [`crate::mount::mount_all`] performs them, so everything here is
//! testable without root and one test suite covers every backend.
//!
//! On disk (under the directory given to `open`): `<key>/fs` (the tree),
//! `<key>/work` (overlay's scratch), `<key>/meta.json`, and `.tmp/` for
//! staging. A snapshot only exists when its `meta.json` names it; anything
//! is built in `.tmp/` and renamed into place, so a killed process never
//! leaves a half-made snapshot that looks committed.

mod copy;
mod meta;
mod overlay;
mod tree;

use std::io::{Read, Write};
use std::path::PathBuf;

/// The key of a build step's scratch snapshot: private to this process,
/// swept by name once it is gone (see `crate::leftovers`), and made
/// without fsyncs (worthless after a crash, which ends its step). The
/// store's one definition of the `active-<pid>-…` convention.
pub fn scratch_key(unique: &str) -> String {
    format!("{SCRATCH_PREFIX}{}-{unique}", std::process::id())
}

/// What every [`scratch_key`] starts with.
pub(crate) const SCRATCH_PREFIX: &str = "active-";

pub use copy::CopySnapshotter;
pub(crate) use meta::{
    discard_dir, exists_in, fsck, parent_of, staging_of, tree_of, SnapshotHealth,
};
pub use overlay::{overlay_supported, overlay_works_in, OverlaySnapshotter};

use crate::digest::Digest;
use crate::layer::{ApplyStats, DiffOptions, LayerError, LayerInfo};
use crate::mount::Mount;

/// Which snapshotter made a snapshot, and so how its layer is made again
/// from its files (for layers written on demand, see
/// [`crate::content::lazy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotterKind {
    /// An overlay upper directory: its files are the layer.
    Overlay,
    /// A full copy: the layer is its difference from its parent's copy.
    Copy,
}

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    /// Immutable; may be a parent.
    Committed,
    /// Writable; becomes committed through [`Snapshotter::commit`].
    Active,
    /// Read-only view of a parent.
    View,
}

/// What [`Snapshotter::stat`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The snapshot's key (a chain id's hex for committed layers).
    pub key: String,
    /// Its parent, if any.
    pub parent: Option<String>,
    /// Its state.
    pub state: SnapshotState,
    /// Bytes of its own files (the layer's, or for a copy snapshot the whole
    /// tree's), hard links counted once.
    pub size: u64,
}

/// Everything that can go wrong managing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot {key:?} does not exist")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// A snapshot with this key already exists.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key cannot be a directory name.
    #[error("invalid snapshot key {key:?}: use 1-128 characters from [A-Za-z0-9._-], not starting with '.'")]
    InvalidKey {
        /// The key given.
        key: String,
    },
    /// The operation needs another state (e.g. committing a committed one).
    #[error("snapshot {key:?} is {actual:?}, expected {expected:?}")]
    WrongState {
        /// The snapshot.
        key: String,
        /// The state it has.
        actual: SnapshotState,
        /// The state the operation needs.
        expected: SnapshotState,
    },
    /// Removing a snapshot that others are stacked on.
    #[error("snapshot {key:?} is the parent of {child:?}; remove that first")]
    HasChildren {
        /// The snapshot.
        key: String,
        /// One of its children.
        child: String,
    },
    /// The overlay lowerdir list no longer fits the kernel's option limit.
    #[error("snapshot {key:?} stacks {depth} layers; its overlay options ({len} bytes) exceed the kernel's limit of {limit} bytes")]
    ChainTooDeep {
        /// The snapshot being mounted.
        key: String,
        /// Number of lower layers.
        depth: usize,
        /// Length of the option string.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A layer whose content does not hash to the diffID the image claims.
    #[error("layer for snapshot {key:?} has diffID {actual}, but the image says {expected}")]
    DiffIdMismatch {
        /// The snapshot being unpacked.
        key: String,
        /// The diffID from the image config.
        expected: Digest,
        /// What the tar hashed to.
        actual: Digest,
    },
    /// A snapshot's metadata file is unreadable.
    #[error("snapshot metadata {} is corrupt: {source}", .path.display())]
    Corrupt {
        /// The `meta.json`.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Diffing or applying the layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// A place to build and stack filesystem trees (overlay or copies).
pub trait Snapshotter: Send + Sync {
    /// Creates active snapshot `key` on top of committed `parent` and returns
    /// the mounts that give a writable view of it.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// Creates a read-only view `key` of committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// The mounts of an existing active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;
    /// Turns active `key` into committed `name` (a chain id's hex). The
    /// snapshot must be unmounted. Fails with `AlreadyExists` when another
    /// build committed `name` first; the caller then removes `key`.
    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError>;
    /// Which snapshotter this is: how its snapshots make their layers (for
    /// layers written on demand, see [`crate::content::lazy`]).
    fn kind(&self) -> SnapshotterKind;
    /// Deletes a snapshot that no other snapshot has as parent.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;
    /// Describes a snapshot.
    fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError>;
    /// Every snapshot (for garbage collection), in key order.
    fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError>;
    /// Whether snapshot `key` exists (half-made ones do not).
    fn exists(&self, key: &str) -> bool;
    /// The directory holding the snapshot's own files: overlay's upper dir
    /// (or a committed layer's dir), or a copy snapshot's full tree.
    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;
    /// Writes the changes of snapshot `key` relative to its parent as a
    /// layer.
    fn diff(
        &self,
        key: &str,
        out: &mut dyn Write,
        opts: DiffOptions,
    ) -> Result<LayerInfo, SnapshotError>;
    /// Makes committed snapshot `name` over `parent` from the files of
    /// committed snapshot `layer`, which must have no parent (a layer's
    /// files on their own, as `COPY --link` makes them), without reading the
    /// layer's tar. `Ok(false)` where this snapshotter cannot (a copy
    /// snapshotter's tree is its parent's and the layer's merged) or `layer`
    /// is not such a snapshot; the caller then applies the tar.
    fn stack(&self, name: &str, parent: Option<&str>, layer: &str) -> Result<bool, SnapshotError> {
        let _ = (name, parent, layer);
        Ok(false)
    }
    /// Unpacks the uncompressed layer tar `layer` on top of `parent` as
    /// committed snapshot `name`. With `expected`, a tar hashing to anything
    /// else is refused and nothing is committed.
    fn apply_layer(
        &self,
        name: &str,
        parent: Option<&str>,
        layer: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<ApplyStats, SnapshotError>;
    /// Unpacks `layer`, to be snapshot `name`, ahead of its parent
    /// (`on_parent`: it will have one),
    /// to commit later with [`Snapshotter::commit_staged`]: layers of one
    /// image unpacked side by side. `Ok(None)` where this snapshotter
    /// cannot (a copy snapshotter's tree is its parent's and the layer's
    /// merged) or the layer needs what its parent shows; the caller then
    /// uses [`Snapshotter::apply_layer`]. With `expected`, a tar hashing to
    /// anything else is refused.
    fn stage_layer(
        &self,
        name: &str,
        layer: &mut dyn Read,
        expected: Option<&Digest>,
        on_parent: bool,
    ) -> Result<Option<StagedLayer>, SnapshotError> {
        let _ = (name, layer, expected, on_parent);
        Ok(None)
    }
    /// Commits a layer [`Snapshotter::stage_layer`] made as snapshot `name`
    /// on committed `parent`, as [`Snapshotter::apply_layer`] would have.
    fn commit_staged(
        &self,
        staged: StagedLayer,
        name: &str,
        parent: Option<&str>,
    ) -> Result<ApplyStats, SnapshotError> {
        let _ = (staged, parent);
        Err(SnapshotError::NotFound {
            key: name.to_string(),
        })
    }
}

/// A layer unpacked by [`Snapshotter::stage_layer`], not yet a snapshot;
/// removed when dropped uncommitted.
pub struct StagedLayer {
    staging: meta::Staging,
    stats: ApplyStats,
}

impl std::fmt::Debug for StagedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedLayer")
            .field("path", &self.staging.path)
            .finish_non_exhaustive()
    }
}
