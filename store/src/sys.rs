//! The store's raw system calls, and the only place in it with `unsafe`:
//! extended attributes and device nodes (which std does not offer), a
//! mount made from another working directory, `syncfs(2)`; and a tree
//! removal that gets past read-only directories.
#![allow(unsafe_code)] // libc calls and a fork; each block says why it is sound.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn cname(n: &OsStr) -> io::Result<CString> {
    CString::new(n.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })
}

fn not_supported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTSUP)
}

/// The names of the extended attributes of `path` (not following a final
/// symlink), in the order the filesystem lists them. A filesystem without
/// xattr support has none.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<OsString>> {
    let p = cpath(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `p` is a valid NUL-terminated string and `buf` is a live,
        // writable allocation of exactly `buf.len()` bytes.
        let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            _ if not_supported(&e) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect())
}

/// The value of xattr `name` on `path` (not following a final symlink), or
/// `None` when it is not set.
pub fn get_xattr(path: &Path, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let p = cpath(path)?;
    let n = cname(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `p` and `n` are NUL-terminated; `buf` is writable for
        // `buf.len()` bytes.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA) => return Ok(None),
            _ if not_supported(&e) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Sets xattr `name` on `path` itself (a symlink is not followed).
pub fn set_xattr(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let n = cname(name)?;
    // SAFETY: `p` and `n` are NUL-terminated; `value` is readable for
    // `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kind of special file [`make_node`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// Creates a device node or fifo at `path` with permission bits `perm`.
pub fn make_node(path: &Path, kind: NodeKind, perm: u32, major: u64, minor: u64) -> io::Result<()> {
    let kind_flag = match kind {
        NodeKind::Char => SFlag::S_IFCHR,
        NodeKind::Block => SFlag::S_IFBLK,
        NodeKind::Fifo => SFlag::S_IFIFO,
    };
    let dev = nix::sys::stat::makedev(major, minor);
    nix::sys::stat::mknod(
        path,
        kind_flag,
        Mode::from_bits_truncate(perm & 0o7777),
        dev,
    )
    .map_err(io::Error::from)
}

/// The major and minor numbers of a device id from `stat`.
pub(crate) fn dev_major_minor(rdev: u64) -> (u64, u64) {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// Takes from directory `path` every permission bit `max` does not allow
/// (the owner keeps rwx), when the process owns it: a store made 0755 by
/// an older rbk or a umask is tightened when opened. A directory of
/// another user, or on a read-only filesystem, is left as it is.
pub(crate) fn restrict_dir(path: &Path, max: u32) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let current = meta.mode() & 0o7777;
    let wanted = (current & max) | 0o700;
    if wanted == current {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)) {
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => Ok(()),
        other => other,
    }
}

/// Mounts `source` (of type `kind`) on `target` from a child process whose working
/// directory is `dir`, so `data` may name lower dirs relative to it (the
/// working directory is the whole process's: a thread cannot change it
/// for itself alone). The mount is in our mount namespace, which the child
/// shares.
pub(crate) fn mount_from(
    dir: &Path,
    source: &Path,
    target: &Path,
    kind: &str,
    flags: nix::mount::MsFlags,
    data: &str,
) -> Result<(), nix::Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |b: &[u8]| CString::new(b).map_err(|_| nix::Error::EINVAL);
    // Everything the child needs is made before the fork: after it, only
    // async-signal-safe calls (no allocation).
    let (dir, source) = (
        c(dir.as_os_str().as_bytes())?,
        c(source.as_os_str().as_bytes())?,
    );
    let (target, kind) = (c(target.as_os_str().as_bytes())?, c(kind.as_bytes())?);
    let data = c(data.as_bytes())?;
    // SAFETY: the child only makes raw syscalls (chdir, mount, _exit) on
    // memory prepared above, then exits without unwinding or running
    // destructors.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => unsafe {
            let failed = libc::chdir(dir.as_ptr()) != 0
                || libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    kind.as_ptr(),
                    flags.bits(),
                    data.as_ptr().cast(),
                ) != 0;
            let code = if failed { *libc::__errno_location() } else { 0 };
            libc::_exit(code.clamp(0, 255))
        },
        nix::unistd::ForkResult::Parent { child } => loop {
            use nix::sys::wait::{waitpid, WaitStatus};
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => return Err(nix::Error::from_raw(code)),
                Ok(WaitStatus::Signaled(..)) => return Err(nix::Error::EINTR),
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
        },
    }
}

/// `syncfs(2)` of the filesystem holding the open file `f`.
pub(crate) fn syncfs(f: &std::fs::File) -> io::Result<()> {
    // SAFETY: syncfs only reads the descriptor number, which `f` keeps
    // open for the duration of the call.
    let r = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(f)) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Deletes a tree, first making directories writable if a read-only one
/// (common in unpacked images) stops an unprivileged user.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path)
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}
