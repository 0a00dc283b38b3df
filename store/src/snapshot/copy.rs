//! The copy snapshotter, for machines without overlay: every snapshot is a
//! full, independent copy of its parent's tree, mounted with a single bind.
//! Slower and bigger than overlay, but needs nothing from the kernel.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::meta::{io_err, tree_size, validate_key, Dirs, Meta};
use super::overlay::check_diff_id;
use super::{Mount, SnapshotError, SnapshotInfo, SnapshotKind, Snapshotter};
use crate::digest::Digest;
use crate::layer::{self, ApplyMode, ApplyStats, DiffOptions, LayerInfo};
use crate::sys;

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
        match (meta.kind, &meta.parent) {
            // A view needs no copy of its own: the committed parent never
            // changes, so a read-only bind of it is enough.
            (SnapshotKind::View, Some(p)) => Self::bind(self.dirs.fs(p), true),
            (SnapshotKind::Active, _) => Self::bind(self.dirs.fs(&meta.key), false),
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
            self.dirs.meta_of_kind(p, SnapshotKind::Committed)?;
            copy_tree(&self.dirs.fs(p), &st.fs())?;
        }
        let meta = Meta {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            kind: SnapshotKind::Active,
            size: None,
        };
        self.dirs.publish(st, key, &meta)?;
        Ok(self.mounts_for(&meta))
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        validate_key(key)?;
        if let Some(p) = parent {
            self.dirs.meta_of_kind(p, SnapshotKind::Committed)?;
        }
        let st = self.dirs.stage()?;
        let meta = Meta {
            key: key.to_string(),
            parent: parent.map(str::to_string),
            kind: SnapshotKind::View,
            size: Some(0),
        };
        self.dirs.publish(st, key, &meta)?;
        Ok(self.mounts_for(&meta))
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        Ok(self.mounts_for(&self.dirs.meta(key)?))
    }

    fn kind(&self) -> crate::lazy::SnapshotKind {
        crate::lazy::SnapshotKind::Copy
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        validate_key(name)?;
        let meta = self.dirs.meta_of_kind(key, SnapshotKind::Active)?;
        let committed = Meta {
            key: name.to_string(),
            parent: meta.parent,
            kind: SnapshotKind::Committed,
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
            self.dirs.meta_of_kind(p, SnapshotKind::Committed)?;
            copy_tree(&self.dirs.fs(p), &st.fs())?;
        }
        let stats = layer::apply(layer, &st.fs(), ApplyMode::Merge)?;
        check_diff_id(name, expected, &stats)?;
        let meta = Meta {
            key: name.to_string(),
            parent: parent.map(str::to_string),
            kind: SnapshotKind::Committed,
            size: Some(tree_size(&st.fs())?),
        };
        self.dirs.publish(st, name, &meta)?;
        Ok(stats)
    }
}

/// Copies the contents of directory `src` into existing directory `dst`,
/// keeping types, modes, owners (as root), xattrs, mtimes, hard links,
/// symlinks, devices and fifos. Never follows a symlink.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut c = Copier {
        links: HashMap::new(),
        root: sys::is_root(),
        share_files: false,
    };
    c.dir(src, dst)?;
    let m = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    c.attrs(src, dst, &m)
}

/// [`copy_tree`] where every entry but a directory is a hard link to the
/// source's (directories are made anew with the same attributes): a second
/// tree of the same files, for trees neither side changes again (committed
/// snapshots).
pub fn link_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut c = Copier {
        links: HashMap::new(),
        root: sys::is_root(),
        share_files: true,
    };
    c.dir(src, dst)?;
    let m = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    c.attrs(src, dst, &m)
}

struct Copier {
    links: HashMap<(u64, u64), PathBuf>,
    root: bool,
    /// Hard-link files, symlinks and nodes instead of copying them.
    share_files: bool,
}

impl Copier {
    fn dir(&mut self, src: &Path, dst: &Path) -> Result<(), SnapshotError> {
        let rd = fs::read_dir(src).map_err(io_err("read directory", src))?;
        for e in rd {
            let e = e.map_err(io_err("read directory", src))?;
            let (s, d) = (e.path(), dst.join(e.file_name()));
            let m = fs::symlink_metadata(&s).map_err(io_err("stat", &s))?;
            let ft = m.file_type();
            if self.share_files && !ft.is_dir() {
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked,
                // never followed.
                fs::hard_link(&s, &d).map_err(io_err("link", &d))?;
                continue;
            }
            if !ft.is_dir() && m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, &d).map_err(io_err("link", &d))?;
                    continue;
                }
                self.links.insert(key, d.clone());
            }
            if ft.is_dir() {
                fs::create_dir(&d).map_err(io_err("create", &d))?;
                self.dir(&s, &d)?;
            } else if ft.is_file() {
                fs::copy(&s, &d).map_err(io_err("copy", &s))?;
            } else if ft.is_symlink() {
                let t = fs::read_link(&s).map_err(io_err("read link", &s))?;
                std::os::unix::fs::symlink(&t, &d).map_err(io_err("create symlink", &d))?;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = if ft.is_char_device() {
                    sys::NodeKind::Char
                } else if ft.is_block_device() {
                    sys::NodeKind::Block
                } else {
                    sys::NodeKind::Fifo
                };
                let (major, minor) = sys::dev_major_minor(m.rdev());
                sys::make_node(&d, kind, m.mode(), major, minor)
                    .map_err(io_err("create device node", &d))?;
            } else {
                // Sockets belong to a live process, not to a tree.
                continue;
            }
            self.attrs(&s, &d, &m)?;
        }
        Ok(())
    }

    /// Owner, then xattrs, then mode (chown clears setuid and
    /// capabilities), then times last (everything else touches them).
    fn attrs(&self, src: &Path, dst: &Path, m: &fs::Metadata) -> Result<(), SnapshotError> {
        if self.root {
            std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))
                .map_err(io_err("chown", dst))?;
        }
        for name in sys::list_xattrs(src).map_err(io_err("list xattrs of", src))? {
            if let Some(v) = sys::get_xattr(src, &name).map_err(io_err("read xattr of", src))? {
                if let Err(e) = sys::set_xattr(dst, &name, &v) {
                    if e.raw_os_error() != Some(libc::ENOTSUP) && self.root {
                        return Err(io_err("set xattr on", dst)(e));
                    }
                }
            }
        }
        if !m.file_type().is_symlink() {
            fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(io_err("chmod", dst))?;
        }
        let mtime = filetime::FileTime::from_last_modification_time(m);
        let atime = filetime::FileTime::from_last_access_time(m);
        filetime::set_symlink_file_times(dst, atime, mtime).map_err(io_err("set times of", dst))
    }
}
