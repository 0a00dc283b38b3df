//! Writing into a destination rootfs without ever leaving it.
//!
//! Every path handed to [`Writer`] was produced by `resolve_in_root` or is a
//! child of a directory this writer checked with `lstat`. Directories are
//! only entered when `lstat` says they are real directories (a symlink where
//! a directory is needed is an error, as in BuildKit), files are created
//! with `O_CREAT | O_EXCL | O_NOFOLLOW` after removing whatever was there,
//! and a symlink in the way of a file is replaced, never followed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use filetime::FileTime;

use super::{CopyStats, FileOpError};

/// Ownership, mode and time to give one written entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attrs {
    /// `(uid, gid)`.
    pub owner: (u32, u32),
    /// Permission bits; ignored for symlinks.
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch; `None` keeps "now".
    pub mtime_ns: Option<i64>,
}

/// Counters shared by parallel writers.
#[derive(Default)]
struct Counters {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    hardlinks: AtomicU64,
    bytes: AtomicU64,
    skipped: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Writes entries under one rootfs and keeps the statistics. Methods take
/// `&self` so independent entries can be written from several threads.
pub(crate) struct Writer {
    root: PathBuf,
    /// Whether ownership was asked for (`--chown`): then failing to set it
    /// is an error; otherwise (root:root or kept ids, as an unprivileged
    /// user) it is skipped.
    explicit_owner: bool,
    /// Owner of directories created on the way to the destination.
    parent_owner: (u32, u32),
    /// First copy of each multiply-linked source inode, to link again.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
    /// Directory mtimes, set last because writing children changes them.
    dir_times: Mutex<Vec<(PathBuf, i64)>>,
    counters: Counters,
}

impl Writer {
    pub fn new(root: &Path, explicit_owner: bool, parent_owner: (u32, u32)) -> Self {
        Writer {
            root: root.to_path_buf(),
            explicit_owner,
            parent_owner,
            links: Mutex::new(HashMap::new()),
            dir_times: Mutex::new(Vec::new()),
            counters: Counters::default(),
        }
    }

    /// What was written so far.
    pub fn stats(&self) -> CopyStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CopyStats {
            files: get(&c.files),
            dirs: get(&c.dirs),
            symlinks: get(&c.symlinks),
            hardlinks: get(&c.hardlinks),
            bytes: get(&c.bytes),
            skipped: get(&c.skipped),
        }
    }

    /// Counts an entry that was not written (a FIFO, socket or device).
    pub fn skip(&self) {
        bump(&self.counters.skipped, 1);
    }

    /// The rootfs being written.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `path` and its missing parents (mode 0755, the parent owner),
    /// refusing to pass through anything that is not a real directory.
    pub fn ensure_dir(&self, path: &Path) -> Result<(), FileOpError> {
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| FileOpError::Escape {
                path: path.to_path_buf(),
            })?;
        let mut cur = self.root.clone();
        for part in rel.components() {
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(FileOpError::NotADirectory { path: cur }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&cur)
                        .map_err(io_at("create directory", &cur))?;
                    // The umask may have narrowed the mode.
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io_at("chmod", &cur))?;
                    self.chown(&cur, self.parent_owner)?;
                    bump(&self.counters.dirs, 1);
                }
                Err(e) => return Err(io_at("lstat", &cur)(e)),
            }
        }
        Ok(())
    }

    /// Makes `path` a directory with `attrs`: created if missing, updated if
    /// already a directory, an error if something else is there.
    pub fn dir(&self, path: &Path, attrs: Attrs) -> Result<(), FileOpError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(FileOpError::NotADirectory {
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .map_err(io_at("create directory", path))?;
                bump(&self.counters.dirs, 1);
            }
            Err(e) => return Err(io_at("lstat", path)(e)),
        }
        self.chown(path, attrs.owner)?;
        fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))
            .map_err(io_at("chmod", path))?;
        if let (Some(ns), Ok(mut times)) = (attrs.mtime_ns, self.dir_times.lock()) {
            times.push((path.to_path_buf(), ns));
        }
        Ok(())
    }

    /// Writes a regular file at `path` from `content`. When `link_key`
    /// (device, inode) was written before, makes a hard link instead.
    pub fn file(
        &self,
        path: &Path,
        content: Content<'_>,
        attrs: Attrs,
        link_key: Option<(u64, u64)>,
    ) -> Result<(), FileOpError> {
        let first = link_key.and_then(|k| self.links.lock().ok()?.get(&k).cloned());
        if let Some(first) = first {
            self.clear(path)?;
            fs::hard_link(first, path).map_err(io_at("hard-link", path))?;
            bump(&self.counters.hardlinks, 1);
            return Ok(());
        }
        let create = || {
            File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        };
        // Most copies land where nothing is: create first, and only when
        // something is there (O_EXCL refuses it, symlink or not) look at it
        // and replace it. One lstat per file less.
        let mut file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.clear(path)?;
                create()
            }
            other => other,
        }
        .map_err(io_at("create", path))?;
        let n = match content {
            // File to file: std copies in the kernel (copy_file_range, else
            // sendfile), not 8 KiB at a time through user space.
            Content::File(src) => io::copy(src, &mut file),
            Content::Reader(r) => io::copy(r, &mut file),
        }
        .map_err(io_at("write", path))?;
        self.fchown(&file, path, attrs.owner)?;
        // After chown, which clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(attrs.mode))
            .map_err(io_at("chmod", path))?;
        if let Some(ns) = attrs.mtime_ns {
            let t = file_time(ns);
            filetime::set_file_handle_times(&file, Some(t), Some(t))
                .map_err(io_at("set times of", path))?;
        }
        if let (Some(key), Ok(mut links)) = (link_key, self.links.lock()) {
            links.insert(key, path.to_path_buf());
        }
        bump(&self.counters.files, 1);
        bump(&self.counters.bytes, n);
        Ok(())
    }

    /// Creates a symlink at `path` pointing at `target` (kept verbatim).
    pub fn symlink(&self, path: &Path, target: &Path, attrs: Attrs) -> Result<(), FileOpError> {
        self.clear(path)?;
        std::os::unix::fs::symlink(target, path).map_err(io_at("create symlink", path))?;
        self.chown(path, attrs.owner)?;
        if let Some(ns) = attrs.mtime_ns {
            let t = file_time(ns);
            filetime::set_symlink_file_times(path, t, t).map_err(io_at("set times of", path))?;
        }
        bump(&self.counters.symlinks, 1);
        Ok(())
    }

    /// Hard-links `path` to `existing` (both inside the rootfs).
    pub fn hard_link(&self, path: &Path, existing: &Path) -> Result<(), FileOpError> {
        self.clear(path)?;
        fs::hard_link(existing, path).map_err(io_at("hard-link", path))?;
        bump(&self.counters.hardlinks, 1);
        Ok(())
    }

    /// Gives the file a hard link from an archive made the archive's owner
    /// and mode for that member, as Docker's and BuildKit's unpacking does
    /// (the link's header wins over the earlier member's: it is one inode).
    /// A link to a symlink keeps the symlink's mode.
    pub fn link_attrs(&self, path: &Path, attrs: Attrs) -> Result<(), FileOpError> {
        self.chown(path, attrs.owner)?;
        let meta = fs::symlink_metadata(path).map_err(io_at("stat", path))?;
        if !meta.file_type().is_symlink() {
            fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))
                .map_err(io_at("chmod", path))?;
        }
        Ok(())
    }

    /// Sets the directory times collected so far, deepest first.
    pub fn finish(&self) -> Result<(), FileOpError> {
        let mut times = match self.dir_times.lock() {
            Ok(mut times) => std::mem::take(&mut *times),
            Err(_) => Vec::new(),
        };
        times.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, ns) in times {
            let t = file_time(ns);
            filetime::set_symlink_file_times(&path, t, t).map_err(io_at("set times of", &path))?;
        }
        Ok(())
    }

    /// Removes a non-directory at `path` so a new entry can take its place.
    fn clear(&self, path: &Path) -> Result<(), FileOpError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => Err(FileOpError::ReplaceDir {
                path: path.to_path_buf(),
            }),
            Ok(_) => fs::remove_file(path).map_err(io_at("replace", path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at("lstat", path)(e)),
        }
    }

    fn chown(&self, path: &Path, (uid, gid): (u32, u32)) -> Result<(), FileOpError> {
        let r = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        self.owner_result(r, path, uid, gid)
    }

    fn fchown(&self, file: &File, path: &Path, (uid, gid): (u32, u32)) -> Result<(), FileOpError> {
        let r = std::os::unix::fs::fchown(file, Some(uid), Some(gid));
        self.owner_result(r, path, uid, gid)
    }

    fn owner_result(
        &self,
        r: io::Result<()>,
        path: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<(), FileOpError> {
        match r {
            Ok(()) => Ok(()),
            // Unprivileged: implicit ownership cannot be had and is not
            // worth failing for; an explicit --chown is.
            Err(e) if !self.explicit_owner && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            Err(source) => Err(FileOpError::Chown {
                path: path.to_path_buf(),
                uid,
                gid,
                source,
            }),
        }
    }
}

fn file_time(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Maps an `io::Error` to [`FileOpError::Io`] with the operation and path.
pub(crate) fn io_at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileOpError {
    let path = path.to_path_buf();
    move |source| FileOpError::Io { op, path, source }
}

/// Where a regular file's bytes come from.
pub enum Content<'a> {
    /// Another file, copied by the kernel.
    File(&'a mut File),
    /// Any stream (archive entries, downloads, heredocs).
    Reader(&'a mut dyn io::Read),
}
