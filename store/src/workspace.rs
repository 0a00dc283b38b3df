//! Workspaces: a writable snapshot over an image's layers, mounted where a
//! process can use it — the root a RUN step runs in and the root `rbk run`
//! gives a container — and, for a build, committed as a layer.
//!
//! One sequence, in containerd's words, shared by `rbk build` and `rbk run`:
//!
//! 1. **unpack** — every layer becomes a committed snapshot named by its
//!    chain id, once across processes, leased so a concurrent `prune`
//!    spares it ([`crate::unpack::unpack_layers`]; [`unpack_image`] for a
//!    whole image);
//! 2. **prepare** — an *active* snapshot over the top one
//!    ([`Snapshotter::prepare`], or [`Snapshotter::view`] for a read-only
//!    one), whose mounts are computed as data;
//! 3. **mount** — the mounts performed at `tmp/<key>-rootfs` (or
//!    `tmp/<key>-view`) by [`crate::mount::mount_all`]: a kernel overlay, or a
//!    bind of the copy snapshotter's directory;
//! 4. **commit** (a build) — unmounted, the upper directory diffed into a
//!    layer, the snapshot committed under the layer's chain id
//!    ([`Workspace::commit`]);
//! 5. **release** — dropping the [`Workspace`] unmounts it, removes its
//!    mount point and, unless committed or kept ([`PrepareOptions::keep`]), the
//!    active snapshot.
//!
//! The mount point's name (`<key>-rootfs`, `<key>-view` under `tmp/`) is
//! what [`crate::check::dead_step_mount`] recognises to sweep what a
//! killed process left.

use std::path::{Path, PathBuf};

use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::{Image, Store};
use crate::layer::DiffOptions;
use crate::lease::Leased;
use crate::mount::Mount;
use crate::mount::{MountError, MountGuard};
use crate::oci::{self, Descriptor};
use crate::snapshot::{SnapshotError, Snapshotter};
use crate::unpack::{unpack_layers, LayerRef, UnpackError};

/// Why a workspace could not be made, committed or released.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The image's layers could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The snapshotter refused (a missing parent, a disk error).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The content store (writing, leasing the layer).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation on the mount point or the upper directory.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl WorkspaceError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        WorkspaceError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Makes sure every layer of `image` is a committed snapshot (step 1) and
/// returns the top one's key, the parent of its workspaces (`None` for an
/// image without layers).
pub fn unpack_image(
    store: &Store,
    snapshotter: &dyn Snapshotter,
    image: &Image,
) -> Result<Option<String>, WorkspaceError> {
    let diff_ids = &image.config.rootfs.diff_ids;
    let layers = &image.manifest.layers;
    if diff_ids.len() != layers.len() {
        return Err(StoreError::LayerCountMismatch {
            image: image.id.clone(),
            diff_ids: diff_ids.len(),
            layers: layers.len(),
        }
        .into());
    }
    let refs: Vec<LayerRef<'_>> = layers
        .iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| LayerRef { blob, diff_id })
        .collect();
    unpack_layers::<UnpackError>(store, snapshotter, &refs, |_| Ok(()), || false)
        .map_err(WorkspaceError::from)
}

/// How [`Workspace::prepare`] makes the active snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Mount a writable overlay `volatile` where the kernel has it: its
    /// unmount does not wait for the upper filesystem to reach the disk,
    /// and the process's fsyncs return at once; [`Workspace::commit`]
    /// syncs instead. For a snapshot mounted once (a build step).
    pub volatile: bool,
    /// Mount the active snapshot `key` as it is when it exists (a
    /// container started again finds its files), instead of failing.
    pub resume: bool,
    /// Keep the active snapshot when the workspace is released (a
    /// detached container's layer stays until `rbk rm`).
    pub keep: bool,
}

/// What [`Workspace::commit`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitOptions {
    /// The layer's compression; an uncompressed layer is only hashed, its
    /// tar written when something reads it (see [`crate::content::lazy`]).
    pub compression: Compression,
    /// Files get mtimes no later than this (Unix seconds).
    pub clamp_mtime: Option<i64>,
}

/// A committed workspace: the new layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLayer {
    /// The layer's blob as the image's manifest lists it.
    pub blob: Descriptor,
    /// Its uncompressed digest.
    pub diff_id: Digest,
}

/// An active (or view) snapshot mounted under the store's `tmp/`, released
/// when dropped.
pub struct Workspace<'a> {
    snapshotter: &'a dyn Snapshotter,
    /// The snapshot; `None` once committed or when kept.
    snapshot: Option<String>,
    key: String,
    target: PathBuf,
    mounted: Option<MountGuard>,
    /// Mounted `volatile`: the commit must sync the upper filesystem.
    volatile: bool,
}

impl<'a> Workspace<'a> {
    /// Prepares the active snapshot `key` over `parent` (steps 2 and 3) and
    /// mounts it at `<root>/tmp/<key>-rootfs`.
    pub fn prepare(
        root: &Path,
        snapshotter: &'a dyn Snapshotter,
        key: &str,
        parent: Option<&str>,
        opts: PrepareOptions,
    ) -> Result<Self, WorkspaceError> {
        let mounts = if opts.resume && snapshotter.exists(key) {
            snapshotter.mounts(key)?
        } else {
            snapshotter.prepare(key, parent)?
        };
        let mut ws = Workspace::unmounted(root, snapshotter, key, "rootfs", opts.keep)?;
        if opts.volatile {
            if let Some(fast) = with_volatile(&mounts) {
                if let Ok(guard) = crate::mount::mount_all(&fast, &ws.target) {
                    ws.mounted = Some(guard);
                    ws.volatile = true;
                    return Ok(ws);
                }
            }
        }
        ws.mounted = Some(crate::mount::mount_all(&mounts, &ws.target)?);
        Ok(ws)
    }

    /// Mounts the existing active snapshot `key` at `<root>/tmp/<key>-rootfs`
    /// as it is (a stopped container's layer, to copy from); the snapshot
    /// stays when the workspace is released.
    pub fn resume(
        root: &Path,
        snapshotter: &'a dyn Snapshotter,
        key: &str,
    ) -> Result<Self, WorkspaceError> {
        let mounts = snapshotter.mounts(key)?;
        let mut ws = Workspace::unmounted(root, snapshotter, key, "rootfs", true)?;
        ws.mounted = Some(crate::mount::mount_all(&mounts, &ws.target)?);
        Ok(ws)
    }

    /// A read-only view `key` of the committed snapshot `parent`, mounted
    /// at `<root>/tmp/<key>-view` (a stage another step copies from).
    pub fn view(
        root: &Path,
        snapshotter: &'a dyn Snapshotter,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Self, WorkspaceError> {
        let mounts = snapshotter.view(key, parent)?;
        let mut ws = Workspace::unmounted(root, snapshotter, key, "view", false)?;
        ws.mounted = Some(crate::mount::mount_all(&mounts, &ws.target)?);
        Ok(ws)
    }

    /// The workspace of snapshot `key`, its mount point made, nothing
    /// mounted yet. From here on, dropping it removes the snapshot unless
    /// it `keep`s it.
    fn unmounted(
        root: &Path,
        snapshotter: &'a dyn Snapshotter,
        key: &str,
        suffix: &str,
        keep: bool,
    ) -> Result<Self, WorkspaceError> {
        let ws = Workspace {
            snapshotter,
            snapshot: (!keep).then(|| key.to_string()),
            key: key.to_string(),
            target: crate::Layout::new(root)
                .tmp()
                .join(format!("{key}-{suffix}")),
            mounted: None,
            volatile: false,
        };
        std::fs::create_dir_all(&ws.target)
            .map_err(|e| WorkspaceError::io("create", &ws.target, e))?;
        Ok(ws)
    }

    /// Where it is mounted.
    pub fn rootfs(&self) -> &Path {
        &self.target
    }

    /// The snapshot's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Unmounts it now, reporting a failure (release does it silently).
    pub fn unmount(&mut self) -> Result<(), WorkspaceError> {
        match self.mounted.take() {
            Some(m) => Ok(m.unmount()?),
            None => Ok(()),
        }
    }

    /// Unmounts it and records what changed as a layer over the layers
    /// whose diff ids are `below` (step 4); the active snapshot becomes the
    /// committed one named by the new chain id. When another process
    /// committed the same change meanwhile, theirs is kept.
    pub fn commit(
        mut self,
        store: &Store,
        below: &[Digest],
        opts: CommitOptions,
    ) -> Result<CommittedLayer, WorkspaceError> {
        self.unmount()?;
        let snap = self.snapshotter;
        let active = self.key.clone();
        // What the unmount of a non-volatile overlay would have waited for,
        // done while the layer is hashed: the layer's bytes reach the disk
        // before its snapshot is committed.
        let synced = match self.volatile {
            true => {
                let upper = snap.upper_dir(&active)?;
                let sync = {
                    let upper = upper.clone();
                    std::thread::spawn(move || crate::mount::sync_filesystem(&upper))
                };
                Some((upper, sync))
            }
            false => None,
        };
        let diff_opts = DiffOptions {
            compression: opts.compression,
            clamp_mtime: opts.clamp_mtime,
            ..DiffOptions::default()
        };
        // An uncompressed layer is only hashed: its bytes are the
        // snapshot's, and the tar is written when something reads it. A
        // compressed one is written now (the diff hashes its stream: diff
        // id and blob digest; no second hash).
        let lazy = opts.compression == Compression::None;
        let (info, digest, size) = if lazy {
            let info = snap.diff(&active, &mut std::io::sink(), diff_opts)?;
            let (digest, size) = (info.digest.clone(), info.size);
            (info, digest, size)
        } else {
            let mut writer = store.content.writer_prehashed()?;
            let info = snap.diff(&active, &mut writer, diff_opts)?;
            let (digest, size) = writer.commit(Some(&info.digest))?;
            (info, digest, size)
        };
        if let Some((upper, sync)) = synced {
            let done = sync
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sync thread panicked")));
            done.map_err(|e| WorkspaceError::io("sync the filesystem of", &upper, e))?;
        }
        let mut ids = below.to_vec();
        ids.push(info.diff_id.clone());
        let name = oci::chain_ids(&ids)
            .pop()
            .map(|c| c.hex().to_string())
            .unwrap_or_default();
        // Leased before it appears, so a concurrent prune spares it.
        store
            .content
            .lease()
            .add([Leased::Snapshot(name.clone())])?;
        match snap.commit(&name, &active) {
            Ok(()) => self.snapshot = None,
            // Another build committed the same change meanwhile: keep
            // theirs (ours is removed on release).
            Err(SnapshotError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if lazy && !store.content.path(&digest).is_file() {
            let source = crate::content::lazy::Source {
                snapshot: name,
                kind: snap.kind(),
                clamp_mtime: opts.clamp_mtime,
            };
            crate::content::lazy::record(&store.content, &digest, size, source)?;
        }
        Ok(CommittedLayer {
            blob: Descriptor::new(opts.compression.layer_media_type(), digest, size),
            diff_id: info.diff_id,
        })
    }
}

impl Drop for Workspace<'_> {
    fn drop(&mut self) {
        drop(self.mounted.take());
        if let Some(key) = self.snapshot.take() {
            let _ = self.snapshotter.remove(&key);
        }
        // Not remove_dir_all: a mount left behind keeps its content.
        let _ = std::fs::remove_dir(&self.target);
    }
}

/// `mounts` with their writable overlay mounted `volatile`, where the
/// kernel has it; `None` when there is no such mount (a snapshot on
/// nothing is a bind mount) or no such option.
fn with_volatile(mounts: &[Mount]) -> Option<Vec<Mount>> {
    let writable_overlay =
        |m: &Mount| m.kind == "overlay" && m.options.iter().any(|o| o.starts_with("upperdir="));
    if !crate::mount::overlay_volatile_supported() || !mounts.iter().any(writable_overlay) {
        return None;
    }
    let mut out = mounts.to_vec();
    for m in out.iter_mut().filter(|m| writable_overlay(m)) {
        m.options.push("volatile".to_string());
    }
    Some(out)
}
