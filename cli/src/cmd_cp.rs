//! `rbk cp`: copies files and directories between a container and the
//! host, with `docker cp`'s rules for where they land.
//!
//! The container's side is reached through its init's `/proc/PID/root`
//! (its files as its processes see them, volumes included), or for a
//! stopped container through its layer, mounted for the copy; and never
//! left:
//! the path named on the command line is resolved with openat2's
//! `RESOLVE_IN_ROOT`, so its symlinks (`/evil -> /`, `../../..`) resolve
//! inside the container as they would for the container's own processes;
//! below that, every entry is opened relative to its directory's fd with
//! `O_NOFOLLOW`, so a symlink in a copied tree is copied as a link and
//! never followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};

use rbk_store::snapshot::Snapshotter;
use rbk_store::workspace::Workspace;

use rbk_runtime::container;

/// `rbk cp`
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "One side is CONTAINER:PATH (a running container; PATH is taken from \
the container's /). As docker cp: a file lands in DEST if that is a directory, else becomes \
DEST; a directory is copied into DEST when DEST exists (SRC/. copies its content only), else \
becomes DEST. Symlinks inside the container resolve inside it, never on the host.

Examples:
  rbk cp web:/etc/nginx/nginx.conf .
  rbk cp ./site/. web:/usr/share/nginx/html
  rbk cp -a db:/var/lib/mysql ./backup"
)]
pub struct CpArgs {
    /// Archive mode: keep the files' uid and gid
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Follow a symlink named as SRC (its target is copied)
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Source: CONTAINER:PATH or a host path
    #[arg(value_name = "SRC", add = crate::complete::containers())]
    pub src: String,
    /// Destination: CONTAINER:PATH or a host path
    #[arg(value_name = "DEST", add = crate::complete::containers())]
    pub dest: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Host(String),
    Container { name: String, path: String },
}

/// `CONTAINER:PATH`, else a host path (one with a colon in it is written
/// `./a:b` or absolute, as with Docker).
fn side(arg: &str) -> Side {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg.to_string());
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() => Side::Container {
            name: name.to_string(),
            path: path.to_string(),
        },
        _ => Side::Host(arg.to_string()),
    }
}

/// A path split as `docker cp` reads it.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    /// The directory holding the entry (`/` for the root itself).
    parent: String,
    /// The entry's name in `parent` (`.` for the root or `…/..`).
    name: String,
    /// `…/.`: a directory's content, not the directory.
    content_only: bool,
    /// `…/`: must be a directory.
    trailing_slash: bool,
}

fn split(path: &str) -> Split {
    let content_only = path == "." || path.ends_with("/.");
    let trailing_slash = path.ends_with('/');
    let trimmed = path.trim_end_matches("/.").trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some((p, n)) => (if p.is_empty() { "/" } else { p }, n),
        None => ("/", trimmed),
    };
    let (parent, name) = match name {
        // The directory itself: resolve all of it, take it as ".".
        "" | "." | ".." => (if trimmed.is_empty() { "/" } else { trimmed }, "."),
        n => (parent, n),
    };
    Split {
        parent: parent.to_string(),
        name: name.to_string(),
        content_only,
        trailing_slash,
    }
}

/// What is copied, and how owners are set.
struct Opts {
    archive: bool,
    bytes: u64,
}

/// `rbk cp`
pub fn cp(root: &Path, a: &CpArgs) -> Result<i32> {
    let mut o = Opts {
        archive: a.archive,
        bytes: 0,
    };
    // Opened only for a stopped container, whose layer is mounted from it.
    let mut snapshotter = None;
    match (side(&a.src), side(&a.dest)) {
        (Side::Container { name, path }, Side::Host(dest)) => {
            let (croot, _layer) = container_root(root, &name, &mut snapshotter)?;
            copy_out(&croot, &path, Path::new(&dest), a.follow_link, &mut o)
                .with_context(|| format!("cannot copy {name}:{path} to {dest}"))?;
        }
        (Side::Host(src), Side::Container { name, path }) => {
            let (croot, _layer) = container_root(root, &name, &mut snapshotter)?;
            copy_in(Path::new(&src), &croot, &path, a.follow_link, &mut o)
                .with_context(|| format!("cannot copy {src} to {name}:{path}"))?;
        }
        (Side::Container { .. }, Side::Container { .. }) => {
            bail!("copying between containers is not supported: copy to the host first")
        }
        (Side::Host(_), Side::Host(_)) => {
            bail!("one of SRC and DEST must be CONTAINER:PATH")
        }
    }
    eprintln!(
        "Successfully copied {} to {}",
        crate::human::human_size(o.bytes),
        a.dest
    );
    Ok(0)
}

/// The root of a container's files: a running one's init's
/// `/proc/PID/root`, or a stopped one's layer, mounted for the copy (held
/// by the second value, which unmounts it when dropped; the snapshotter it
/// is mounted from is opened into `snapshotter`).
fn container_root<'s>(
    root: &Path,
    name: &str,
    snapshotter: &'s mut Option<Box<dyn Snapshotter>>,
) -> Result<(OwnedFd, Option<StoppedLayer<'s>>)> {
    let state = container::find(root, name)?;
    let (path, layer) = match container::init_pid(root, &state) {
        Some(pid) => {
            crate::sys::join_user_namespace(pid).map_err(|e| {
                anyhow!(
                    "cannot enter the user namespace of container {}: {e}",
                    state.name
                )
            })?;
            (PathBuf::from(format!("/proc/{pid}/root")), None)
        }
        None => {
            let snap: &'s dyn Snapshotter = &**snapshotter.insert(crate::snapshotter(root)?);
            let layer = StoppedLayer::mount(root, snap, &state)?;
            (layer.workspace.rootfs().to_path_buf(), Some(layer))
        }
    };
    let fd = nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        anyhow!(
            "cannot open container {}'s root {}: {e}",
            state.name,
            path.display()
        )
    })?;
    Ok((fd, layer))
}

/// A stopped container's layer, mounted where its run mounts it, with the
/// container's lock held so that `rbk start` waits for the copy.
struct StoppedLayer<'s> {
    workspace: Workspace<'s>,
    _lock: rbk_store::sys::flock::Locked,
}

impl<'s> StoppedLayer<'s> {
    fn mount(
        root: &Path,
        snap: &'s dyn Snapshotter,
        s: &container::State,
    ) -> Result<StoppedLayer<'s>> {
        let key = container::layer_key(&s.id);
        if !snap.exists(&key) {
            bail!(
                "container {} has no layer to copy (it was started by an older rbk, or removed)",
                s.name
            );
        }
        if !crate::sys::is_root() {
            bail!(
                "container {} is not running: copying with a stopped rootless container needs it running (rbk start {})",
                s.name,
                s.name
            );
        }
        let lock = container::lock(root, &s.id)?;
        let workspace = Workspace::resume(root, snap, &key)
            .with_context(|| format!("cannot mount the layer of container {}", s.name))?;
        Ok(StoppedLayer {
            workspace,
            _lock: lock,
        })
    }
}

impl Drop for StoppedLayer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.workspace.unmount() {
            eprintln!(
                "rbk: warning: cannot unmount {}: {e}",
                self.workspace.rootfs().display()
            );
        }
    }
}

/// Opens `path` of the container as its processes would, symlinks
/// resolved inside its root.
fn open_in_root(croot: &OwnedFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(croot, if rel.is_empty() { "." } else { rel }, how)
}

fn dir_in_root(croot: &OwnedFd, path: &str) -> Result<OwnedFd> {
    open_in_root(croot, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(|e| anyhow!("{path} in the container: {}", e.desc()))
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
}

/// Copies the container's `path` to the host's `dest`.
fn copy_out(croot: &OwnedFd, path: &str, dest: &Path, follow: bool, o: &mut Opts) -> Result<()> {
    let mut s = split(path);
    let mut parent = dir_in_root(croot, &s.parent)?;
    let mut st = stat_at(parent.as_fd(), &s.name)?;
    // -L: follow the named link (inside the container), at most 40 times.
    let mut hops = 0;
    while follow && is_kind(&st, SFlag::S_IFLNK) && hops < 40 {
        let target = nix::fcntl::readlinkat(&parent, s.name.as_str())?;
        let target = target.to_string_lossy();
        let next = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("{}/{target}", s.parent)
        };
        s = Split {
            content_only: s.content_only,
            trailing_slash: s.trailing_slash,
            ..split(&next)
        };
        parent = dir_in_root(croot, &s.parent)?;
        st = stat_at(parent.as_fd(), &s.name)?;
        hops += 1;
    }
    let is_dir = is_kind(&st, SFlag::S_IFDIR);
    if s.trailing_slash && !is_dir {
        bail!("{path} in the container is not a directory");
    }
    let dest_md = std::fs::metadata(dest).ok();
    let base = if s.name == "." {
        OsString::from("")
    } else {
        OsString::from(&s.name)
    };
    match (is_dir, dest_md.map(|m| m.is_dir())) {
        (false, Some(true)) => out_entry(parent.as_fd(), OsStr::new(&s.name), &dest.join(&base), o),
        (false, _) if dest.to_string_lossy().ends_with('/') && !dest.exists() => {
            bail!("destination directory {} must exist", dest.display())
        }
        (false, _) => out_entry(parent.as_fd(), OsStr::new(&s.name), dest, o),
        (true, Some(false)) => bail!("cannot copy a directory to a file: {}", dest.display()),
        (true, Some(true)) if !s.content_only && !base.is_empty() => {
            out_entry(parent.as_fd(), OsStr::new(&s.name), &dest.join(&base), o)
        }
        (true, _) => out_entry(parent.as_fd(), OsStr::new(&s.name), dest, o),
    }
}

fn stat_at(dir: BorrowedFd<'_>, name: &str) -> Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| anyhow!("{name} in the container: {}", e.desc()))
}

/// The names in the directory open as `dir` (read through our own fd, so
/// it is that very directory).
fn names_in(dir: BorrowedFd<'_>) -> Result<Vec<OsString>> {
    let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let mut names = Vec::new();
    for e in std::fs::read_dir(&path).with_context(|| format!("cannot list {path}"))? {
        names.push(
            e.with_context(|| format!("cannot list {path}"))?
                .file_name(),
        );
    }
    Ok(names)
}

/// Copies the container's entry `name` of `dir` to the host path `host`,
/// without following any symlink of the container.
fn out_entry(dir: BorrowedFd<'_>, name: &OsStr, host: &Path, o: &mut Opts) -> Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| {
        anyhow!(
            "cannot stat {} in the container: {}",
            name.to_string_lossy(),
            e.desc()
        )
    })?;
    let nofollow = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let at = |what: &str| format!("cannot {what} {}", host.display());
    if is_kind(&st, SFlag::S_IFDIR) {
        let fd = openat(dir, name, nofollow | OFlag::O_DIRECTORY, Mode::empty())?;
        if !host.is_dir() {
            std::fs::create_dir(host).with_context(|| at("create"))?;
        }
        for child in names_in(fd.as_fd())? {
            out_entry(fd.as_fd(), &child, &host.join(&child), o)?;
        }
    } else if is_kind(&st, SFlag::S_IFREG) {
        let mut src = File::from(openat(dir, name, nofollow, Mode::empty())?);
        remove_non_dir(host)?;
        let mut dst = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .with_context(|| at("create"))?;
        o.bytes += std::io::copy(&mut src, &mut dst).with_context(|| at("write"))?;
    } else if is_kind(&st, SFlag::S_IFLNK) {
        let target = nix::fcntl::readlinkat(dir, name)?;
        remove_non_dir(host)?;
        std::os::unix::fs::symlink(&target, host).with_context(|| at("create"))?;
    } else {
        eprintln!(
            "rbk: skipping {}: not a file, directory or symlink",
            host.display()
        );
        return Ok(());
    }
    host_attrs(host, &st, o.archive).with_context(|| at("set the owner, mode or time of"))
}

/// Removes what is at `host` unless it is a directory (a file is replaced,
/// a symlink is not written through).
fn remove_non_dir(host: &Path) -> Result<()> {
    match std::fs::symlink_metadata(host) {
        Ok(m) if m.is_dir() => bail!(
            "cannot overwrite directory {} with a non-directory",
            host.display()
        ),
        Ok(_) => {
            std::fs::remove_file(host).with_context(|| format!("cannot replace {}", host.display()))
        }
        Err(_) => Ok(()),
    }
}

/// Mode, times and (with -a) owner of a copied entry on the host.
fn host_attrs(host: &Path, st: &FileStat, archive: bool) -> std::io::Result<()> {
    let link = is_kind(st, SFlag::S_IFLNK);
    if archive {
        std::os::unix::fs::lchown(host, Some(st.st_uid), Some(st.st_gid))?;
    }
    if !link {
        std::fs::set_permissions(host, std::fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    }
    let t = nix::sys::time::TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        host,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

/// Copies the host's `src` into the container at `path`.
fn copy_in(src: &Path, croot: &OwnedFd, path: &str, follow: bool, o: &mut Opts) -> Result<()> {
    let src_s = src.to_string_lossy();
    let content_only = src_s == "." || src_s.ends_with("/.");
    let md = if follow {
        std::fs::metadata(src)
    } else {
        std::fs::symlink_metadata(src)
    }
    .with_context(|| format!("cannot read {}", src.display()))?;
    let base = std::fs::canonicalize(src)
        .ok()
        .filter(|_| !md.is_symlink())
        .and_then(|p| p.file_name().map(OsStr::to_os_string))
        .or_else(|| src.file_name().map(OsStr::to_os_string))
        .unwrap_or_default();
    let s = split(path);
    let parent = dir_in_root(croot, &s.parent)?;
    // An existing directory (a symlink to one resolves inside the root).
    let dest_dir = match open_in_root(croot, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => Some(fd),
        Err(Errno::ENOENT) if s.trailing_slash => {
            bail!("destination directory {path} must exist in the container")
        }
        Err(Errno::ENOENT) => None,
        Err(Errno::ENOTDIR) if md.is_dir() => bail!("cannot copy a directory to a file: {path}"),
        Err(Errno::ENOTDIR) => None,
        Err(e) => bail!("{path} in the container: {}", e.desc()),
    };
    let src_md = |p: &Path| -> Result<std::fs::Metadata> {
        if follow {
            std::fs::metadata(p)
        } else {
            std::fs::symlink_metadata(p)
        }
        .with_context(|| format!("cannot read {}", p.display()))
    };
    match dest_dir {
        Some(dir) if md.is_dir() && content_only => {
            for e in
                std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))?
            {
                let e = e.with_context(|| format!("cannot list {}", src.display()))?;
                in_entry(
                    &e.path(),
                    &src_md(&e.path())?,
                    dir.as_fd(),
                    &e.file_name(),
                    o,
                )?;
            }
            Ok(())
        }
        Some(dir) => in_entry(src, &md, dir.as_fd(), &base, o),
        None => in_entry(src, &md, parent.as_fd(), OsStr::new(&s.name), o),
    }
}

/// Copies the host's `host` as the entry `name` of the container's
/// directory `dir`, creating nothing through a symlink of the container.
fn in_entry(
    host: &Path,
    md: &std::fs::Metadata,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    o: &mut Opts,
) -> Result<()> {
    let at = |what: &str| format!("cannot {what} {} in the container", name.to_string_lossy());
    let existing = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let existing_dir = existing
        .as_ref()
        .is_some_and(|st| is_kind(st, SFlag::S_IFDIR));
    if md.is_dir() {
        if existing.is_some() && !existing_dir {
            bail!(
                "cannot overwrite non-directory {} with a directory",
                name.to_string_lossy()
            );
        }
        if existing.is_none() {
            nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o700))
                .map_err(|e| anyhow!("{}: {}", at("create"), e.desc()))?;
        }
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow!("{}: {}", at("open"), e.desc()))?;
        for e in
            std::fs::read_dir(host).with_context(|| format!("cannot list {}", host.display()))?
        {
            let e = e.with_context(|| format!("cannot list {}", host.display()))?;
            let child_md = std::fs::symlink_metadata(e.path())
                .with_context(|| format!("cannot read {}", e.path().display()))?;
            in_entry(&e.path(), &child_md, fd.as_fd(), &e.file_name(), o)?;
        }
        return container_attrs(&fd, md, o.archive)
            .map_err(|e| anyhow!("{}: {}", at("set the owner or mode of"), e.desc()));
    }
    if existing_dir {
        bail!(
            "cannot overwrite directory {} with a non-directory",
            name.to_string_lossy()
        );
    }
    if existing.is_some() {
        nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(|e| anyhow!("{}: {}", at("replace"), e.desc()))?;
    }
    if md.is_symlink() {
        return in_symlink(host, md, dir, name, o.archive);
    }
    if !md.is_file() {
        eprintln!(
            "rbk: skipping {}: not a file, directory or symlink",
            host.display()
        );
        return Ok(());
    }
    let mut src = File::open(host).with_context(|| format!("cannot read {}", host.display()))?;
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| anyhow!("{}: {}", at("create"), e.desc()))?;
    let mut dst = File::from(fd);
    o.bytes += std::io::copy(&mut src, &mut dst).with_context(|| at("write"))?;
    container_attrs(&dst, md, o.archive)
        .map_err(|e| anyhow!("{}: {}", at("set the owner or mode of"), e.desc()))
}

/// Copies the host's symlink `host` as `name` of `dir` (root's, or with
/// -a the link's owner).
fn in_symlink(
    host: &Path,
    md: &std::fs::Metadata,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    archive: bool,
) -> Result<()> {
    let at = |what: &str| format!("cannot {what} {} in the container", name.to_string_lossy());
    let target =
        std::fs::read_link(host).with_context(|| format!("cannot read {}", host.display()))?;
    nix::unistd::symlinkat(&target, dir, name)
        .map_err(|e| anyhow!("{}: {}", at("create"), e.desc()))?;
    let (uid, gid) = if archive {
        (md.uid(), md.gid())
    } else {
        (0, 0)
    };
    nix::unistd::fchownat(
        dir,
        name,
        Some(uid.into()),
        Some(gid.into()),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| anyhow!("{}: {}", at("set the owner of"), e.desc()))
}

/// Owner (root's, or the host file's with -a), mode and times of an entry
/// copied into the container, set through its fd.
fn container_attrs(fd: &impl AsFd, md: &std::fs::Metadata, archive: bool) -> nix::Result<()> {
    let (uid, gid) = if archive {
        (md.uid(), md.gid())
    } else {
        (0, 0)
    };
    nix::unistd::fchown(fd.as_fd(), Some(uid.into()), Some(gid.into()))?;
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(md.mode() & 0o7777))?;
    let t = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
    nix::sys::stat::futimens(fd.as_fd(), &t, &t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sides_read_like_docker() {
        let c = |n: &str, p: &str| Side::Container {
            name: n.into(),
            path: p.into(),
        };
        assert_eq!(side("web:/etc/x"), c("web", "/etc/x"));
        assert_eq!(side("web:rel"), c("web", "rel"));
        assert_eq!(side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(side("/abs:x"), Side::Host("/abs:x".into()));
        assert_eq!(side("plain"), Side::Host("plain".into()));
        assert_eq!(side(":x"), Side::Host(":x".into()));
    }

    #[test]
    fn paths_split_like_docker() {
        let s = |p: &str| {
            let s = split(p);
            (s.parent, s.name, s.content_only, s.trailing_slash)
        };
        let o = |p: &str, n: &str, c: bool, t: bool| (p.to_string(), n.to_string(), c, t);
        assert_eq!(s("/etc/passwd"), o("/etc", "passwd", false, false));
        assert_eq!(s("/etc/"), o("/", "etc", false, true));
        assert_eq!(s("/etc/."), o("/", "etc", true, false));
        assert_eq!(s("/"), o("/", ".", false, true));
        assert_eq!(s("rel"), o("/", "rel", false, false));
        assert_eq!(s("/a/.."), o("/a/..", ".", false, false));
        assert_eq!(
            s("/evil/etc/shadow"),
            o("/evil/etc", "shadow", false, false)
        );
    }
}
