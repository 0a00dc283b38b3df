//! Resolving a path inside a root directory as `chroot(root)` would.
//!
//! Symlinks met on the way are followed, but an absolute target restarts at
//! the root and `..` never climbs above it, so the result always lies inside
//! the root whatever the links say. This is how both the source side (the
//! build context, another stage's rootfs) and the destination rootfs of a
//! COPY are addressed.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Linux gives up after 40 links (`MAXSYMLINKS`); so do we.
const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute or relative, both taken from `root`) to a
/// location inside `root`, following symlinks as a process chrooted into
/// `root` would. With `follow_last` false a symlink in the last component is
/// not followed (like `lstat`).
///
/// Components that do not exist are kept as they are, so the result may name
/// something to be created. A loop of links is an `ELOOP` error.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = split(path.as_bytes());
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    // Once a component does not exist nothing below it can be a link.
    let mut missing = false;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            // The parent exists again (or will fail its own lstat).
            missing = false;
            continue;
        }
        done.push(part);
        if missing {
            continue;
        }
        let is_last = todo.is_empty();
        let here = join(root, &done);
        let meta = match std::fs::symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                continue;
            }
            // ENOTDIR and the like: leave it to the caller's own syscall.
            Err(_) => {
                missing = true;
                continue;
            }
        };
        if !meta.file_type().is_symlink() || (is_last && !follow_last) {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(&here)?;
        done.pop();
        let target = target.as_os_str().as_bytes();
        if target.first() == Some(&b'/') {
            done.clear();
        }
        for part in split(target).into_iter().rev() {
            todo.push_front(part);
        }
    }
    Ok(join(root, &done))
}

/// The meaningful components of a `/`-separated path (no empty, no `.`).
fn split(path: &[u8]) -> VecDeque<OsString> {
    path.split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .map(|p| std::ffi::OsStr::from_bytes(p).to_os_string())
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../../../real", root.join("up")).unwrap();
        symlink("/tmp/x", root.join("etc")).unwrap();
        symlink("/self", root.join("self")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let r = |p: &str, follow: bool| resolve_in_root(root, p, follow).unwrap();
        assert_eq!(r("abs/sub", true), root.join("real/sub"));
        assert_eq!(r("/up/sub", true), root.join("real/sub"));
        assert_eq!(r("../../real", true), root.join("real"));
        assert_eq!(r("etc/passwd", true), root.join("tmp/x/passwd"));
        assert_eq!(r("abs", false), root.join("abs"));
        assert_eq!(r("abs", true), root.join("real"));
        assert_eq!(r("real/missing/../x", true), root.join("real/x"));
        for looped in ["loop1/x", "self"] {
            let err = resolve_in_root(root, looped, true).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        }
    }
}
