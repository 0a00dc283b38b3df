//! Copies of trees as snapshots need them: whole copies (the copy
//! snapshotter) and hard-linked ones (committed trees neither side changes).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::meta::io_err;
use super::SnapshotError;
use crate::sys;

/// Copies the contents of directory `src` into existing directory `dst`,
/// keeping types, modes, owners (as root), xattrs, mtimes, hard links,
/// symlinks, devices and fifos. Never follows a symlink.
pub(super) fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut c = Copier {
        links: HashMap::new(),
        root: crate::process::is_root(),
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
pub(super) fn link_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let mut c = Copier {
        links: HashMap::new(),
        root: crate::process::is_root(),
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
