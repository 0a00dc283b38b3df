//! Where things are under a store's root: the one place that knows the
//! names of the store's files and directories.
//!
//! ```text
//! <root>/
//!   oci-layout, index.json     the OCI image layout's marker and tags
//!   blobs/sha256/<hex>         content-addressed blobs
//!   tmp/                       staging files and build steps' mount points
//!   snapshots/                 unpacked trees (see crate::snapshot)
//!   cache/                     the build cache index (and stat caches)
//!   cache-mounts/              `RUN --mount=type=cache` trees
//!   lazy/<hex>                 layers kept only as their snapshots
//!   remote/<hex>               layers kept only in a registry (or cache directory)
//!   variants/                  compressed variants of uncompressed layers
//!   layer-sizes/<hex>          layers' content sizes, as Docker counts them
//!   lock, active, locks/       the store lock, its users, key locks
//!   leases/                    what running processes hold
//!   containers/<id>/           containers' state
//!   volumes/<name>/            named volumes
//! ```
//!
//! What is inside `snapshots/` and `cache/` belongs to the modules that
//! own them. A saved OCI layout (and a local cache export) shares the
//! first three names, so [`Layout`] also names the parts of those.

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// The most a store's root directory allows: its owner only, and its group
/// may pass through (Docker's data root is 0710). Whatever is under it —
/// image trees with setuid binaries and device nodes among them — is out of
/// other local users' reach.
pub(crate) const STORE_ROOT_MODE: u32 = 0o710;

/// The most a snapshot directory allows (containerd's snapshot root is
/// 0700): the unpacked trees are for the builder and its sandbox alone.
pub(crate) const SNAPSHOTS_MODE: u32 = 0o700;

/// The paths of one store (or OCI layout), from its root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the store (or OCI layout) at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// The store whose file or directory `path` is: the nearest directory
    /// holding both `oci-layout` and `active` (which only a store has; a
    /// saved OCI layout has no `active`).
    pub fn containing(path: &Path) -> Option<&Path> {
        path.ancestors().find(|a| {
            let l = Layout::new(*a);
            l.oci_layout().is_file() && l.active().is_file()
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `oci-layout`: the OCI image layout's marker file.
    pub fn oci_layout(&self) -> PathBuf {
        self.root.join("oci-layout")
    }

    /// `index.json`: the tags (the OCI image layout's index).
    pub fn index(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// `blobs/sha256`: the blobs, each named by its digest's hex.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where blob `digest` lives (whether or not it exists).
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs().join(digest.hex())
    }

    /// `tmp`: staging files, and the mount points of build steps and
    /// containers; what a process left there is garbage once it is gone.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `snapshots`: the snapshotter's directory (see [`crate::snapshot`]).
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The directory of snapshot `key` (whether or not it exists).
    pub fn snapshot(&self, key: &str) -> PathBuf {
        self.snapshots().join(key)
    }

    /// `cache`: the build cache index, and the stat caches beside it.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// `cache-mounts`: the trees of `RUN --mount=type=cache`.
    pub fn cache_mounts(&self) -> PathBuf {
        self.root.join("cache-mounts")
    }

    /// `lazy`: records of layers kept only as their snapshots (see
    /// [`crate::content::lazy`]).
    pub fn lazy(&self) -> PathBuf {
        self.root.join("lazy")
    }

    /// `remote`: records of layers kept only where a build cache holds
    /// them (see [`crate::content::remote`]).
    pub fn remote(&self) -> PathBuf {
        self.root.join("remote")
    }

    /// `variants`: records of the compressed variants of layers.
    pub fn variants(&self) -> PathBuf {
        self.root.join("variants")
    }

    /// `layer-sizes`: layers' content sizes, as Docker counts them.
    pub fn layer_sizes(&self) -> PathBuf {
        self.root.join("layer-sizes")
    }

    /// `lock`: the store lock (see [`crate::lock`]).
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// `active`: held shared by every process that has the store open.
    pub fn active(&self) -> PathBuf {
        self.root.join("active")
    }

    /// `locks`: the key locks (see [`crate::lock::KeyLock`]).
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// `leases`: what running processes hold (see [`crate::lease`]).
    pub fn leases(&self) -> PathBuf {
        self.root.join("leases")
    }

    /// `containers`: one directory per container, by id.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `volumes`: named volumes, one directory each.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The directory of container `id`.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_ones_on_disk() {
        let l = Layout::new("/s");
        assert_eq!(l.tmp(), Path::new("/s/tmp"));
        assert_eq!(l.snapshot("k"), Path::new("/s/snapshots/k"));
        let d = Digest::of(b"x");
        assert_eq!(l.blob(&d), Path::new("/s/blobs/sha256").join(d.hex()));
        assert_eq!(l.index(), Path::new("/s/index.json"));
    }
}
