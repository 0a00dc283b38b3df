//! The copy snapshotter, for machines without overlay: every snapshot is a
//! full, independent copy of its parent's tree, mounted with a single bind.
//! Slower and bigger than overlay, but needs nothing from the kernel.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::meta::{check_diff_id, tree_size, validate_key, Dirs, Meta};
use super::tree::copy_tree;
use super::{SnapshotError, SnapshotInfo, SnapshotState, Snapshotter};
use crate::digest::Digest;
use crate::layer::{self, ApplyMode, ApplyStats, DiffOptions, LayerInfo};
use crate::mount::Mount;

/// Snapshots as plain directory copies.
#[derive(Debug)]
pub struct CopySnapshotter {
    dirs: Dirs,
}

impl CopySnapshotter {
    /// Opens (creating) a snapshot directory, e.g. `$RBK_ROOT/snapshots`.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Ok(Self {
            dirs: Dirs::open(root)?,
        })
    }

    /// The directory this snapshotter keeps its snapshots in.
    pub fn root(&self) -> &Path {
        self.dirs.root()
    }

    fn bind(src: PathBuf, ro: bool) -> Vec<Mount> {
        vec![Mount {
            kind: "bind".into(),
            source: src,
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        }]
    }

    fn mounts_for(&self, meta: &Meta) -> Vec<Mount> {
        match (meta.state, &meta.parent) {
            // A view needs no copy of its own: the committed parent never
            // changes, so a read-only bind of it is enough.
            (SnapshotState::View, Some(p)) => Self::bind(self.dirs.fs(p), true),
            (SnapshotState::Active, _) => Self::bind(self.dirs.fs(&meta.key), false),
            _ => Self::bind(self.dirs.fs(&meta.key), true),
        }
    }
}

impl Snapshotter for CopySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        validate_key(key)?;
        if self.exists(key) {
            return Err(SnapshotError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let st = self.dirs.stage()?;
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
            copy_tree(&self.dirs.fs(p), &st.fs())?;
        }
        let meta = Meta {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            state: SnapshotState::Active,
            size: None,
        };
        self.dirs.publish(st, key, &meta)?;
        Ok(self.mounts_for(&meta))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        validate_key(key)?;
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
        }
        let st = self.dirs.stage()?;
        let meta = Meta {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            state: SnapshotState::View,
            size: Some(0),
        };
        self.dirs.publish(st, key, &meta)?;
        Ok(self.mounts_for(&meta))
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        Ok(self.mounts_for(&self.dirs.meta(key)?))
    }

    fn kind(&self) -> super::SnapshotterKind {
        super::SnapshotterKind::Copy
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        validate_key(name)?;
        let meta = self.dirs.meta_in_state(key, SnapshotState::Active)?;
        let committed = Meta {
            key: name.to_string(),
            parent: meta.parent,
            state: SnapshotState::Committed,
            size: Some(tree_size(&self.dirs.fs(key))?),
        };
        self.dirs.rename(key, name, &committed)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.dirs.remove(key)
    }

    fn stat(&self, key: &str) -> Result<SnapshotInfo, SnapshotError> {
        self.dirs.info(self.dirs.meta(key)?)
    }

    fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        self.dirs
            .all()?
            .into_iter()
            .map(|m| self.dirs.info(m))
            .collect()
    }

    fn exists(&self, key: &str) -> bool {
        self.dirs.meta(key).is_ok()
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        self.dirs.meta(key)?;
        Ok(self.dirs.fs(key))
    }

    fn diff(
        &self,
        key: &str,
        out: &mut dyn Write,
        opts: DiffOptions,
    ) -> Result<LayerInfo, SnapshotError> {
        let meta = self.dirs.meta(key)?;
        let base = meta.parent.as_deref().map(|p| self.dirs.fs(p));
        Ok(layer::diff_trees(
            base.as_deref(),
            &self.dirs.fs(key),
            out,
            opts,
        )?)
    }

    fn apply_layer(
        &self,
        name: &str,
        parent: Option<&str>,
        layer: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<ApplyStats, SnapshotError> {
        validate_key(name)?;
        if self.exists(name) {
            return Err(SnapshotError::AlreadyExists {
                key: name.to_string(),
            });
        }
        let st = self.dirs.stage()?;
        if let Some(p) = parent {
            self.dirs.meta_in_state(p, SnapshotState::Committed)?;
            copy_tree(&self.dirs.fs(p), &st.fs())?;
        }
        let stats = layer::apply(layer, &st.fs(), ApplyMode::Merge)?;
        check_diff_id(name, expected, &stats)?;
        let meta = Meta {
            key: name.to_string(),
            parent: parent.map(str::to_string),
            state: SnapshotState::Committed,
            size: Some(tree_size(&st.fs())?),
        };
        self.dirs.publish(st, name, &meta)?;
        Ok(stats)
    }
}
