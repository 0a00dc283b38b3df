//! Path handling inside an untrusted rootfs: resolving container paths to host
//! paths without ever leaving the rootfs (whatever its symlinks say), and
//! creating the stub files and directories that mounts need, then removing
//! them after the run so they never end up in a committed layer.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::SandboxError;

/// How many symlinks one resolution may follow (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// What a mount needs at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StubKind {
    /// A directory (for directory mounts and filesystems).
    Dir,
    /// A regular file (for single-file bind mounts).
    File,
}

/// Resolves `path` (a path inside the container) to a host path under
/// `root`, following symlinks as the container would see them: absolute
/// links restart at `root` and `..` never climbs above it. Components that do
/// not exist are appended as they are.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, SandboxError> {
    walk(root, path, None, &mut Vec::new())
}

/// Like [`resolve_in_root`], but creates what is missing: directories along
/// the way and, at the end, a `kind` stub. Everything created is appended to
/// `created` (parents first) so [`remove_stubs`] can undo it.
pub fn ensure_stub(
    root: &Path,
    path: &str,
    kind: StubKind,
    created: &mut Vec<Stub>,
) -> Result<PathBuf, SandboxError> {
    walk(root, path, Some(kind), created)
}

/// A file or directory the sandbox created in a rootfs, with the modification
/// time of its parent before the creation (restored after removal so the
/// parent does not look changed).
#[derive(Debug, Clone)]
pub struct Stub {
    /// Host path of the created entry.
    pub path: PathBuf,
    /// What was created.
    pub kind: StubKind,
    parent_mtime: Option<filetime::FileTime>,
}

fn split(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// An I/O error of `op` on `p`.
fn io(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let p = p.to_path_buf();
    move |source| SandboxError::Io {
        op,
        path: p,
        source,
    }
}

fn walk(
    root: &Path,
    path: &str,
    create: Option<StubKind>,
    created: &mut Vec<Stub>,
) -> Result<PathBuf, SandboxError> {
    let mut pending = split(Path::new(path));
    let mut stack: Vec<OsString> = Vec::new();
    let mut links = 0usize;
    let current = |stack: &[OsString]| {
        let mut p = root.to_path_buf();
        p.extend(stack);
        p
    };
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let parent = current(&stack);
        let here = parent.join(&name);
        match fs::symlink_metadata(&here) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(SandboxError::SymlinkLoop {
                        path: path.to_string(),
                    });
                }
                let target = fs::read_link(&here).map_err(io("read link", &here))?;
                if target.is_absolute() {
                    stack.clear();
                }
                let mut next = split(&target);
                next.extend(pending);
                pending = next;
            }
            Ok(md) => {
                if create.is_some() && !pending.is_empty() && !md.is_dir() {
                    return Err(SandboxError::MountTarget {
                        target: path.to_string(),
                        reason: "a component of the path is not a directory",
                    });
                }
                stack.push(name);
            }
            Err(e)
                if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                let Some(kind) = create else {
                    // Nothing to follow; later components will not exist either.
                    stack.push(name);
                    continue;
                };
                // Missing parents of the mount point are directories.
                let kind = if pending.is_empty() {
                    kind
                } else {
                    StubKind::Dir
                };
                created.push(make_stub(&parent, here, kind)?);
                stack.push(name);
            }
            Err(source) => {
                return Err(SandboxError::Io {
                    op: "inspect",
                    path: here,
                    source,
                })
            }
        }
    }
    let resolved = current(&stack);
    if let Some(kind) = create {
        check_target(&resolved, kind, path)?;
    }
    Ok(resolved)
}

/// Creates `here` (in `parent`) as an empty `kind`, remembering the
/// parent's mtime so removing the stub can restore it.
fn make_stub(parent: &Path, here: PathBuf, kind: StubKind) -> Result<Stub, SandboxError> {
    let parent_mtime = fs::metadata(parent)
        .ok()
        .map(|m| filetime::FileTime::from_last_modification_time(&m));
    match kind {
        StubKind::Dir => {
            fs::create_dir(&here).map_err(io("create directory", &here))?;
            fs::set_permissions(&here, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io("set permissions of", &here))?;
        }
        StubKind::File => {
            fs::File::create_new(&here).map_err(io("create", &here))?;
        }
    }
    Ok(Stub {
        path: here,
        kind,
        parent_mtime,
    })
}

/// A mount of a `kind` source needs a target of the same kind.
fn check_target(resolved: &Path, kind: StubKind, path: &str) -> Result<(), SandboxError> {
    let md = fs::metadata(resolved).map_err(|source| SandboxError::Io {
        op: "inspect",
        path: resolved.to_path_buf(),
        source,
    })?;
    let ok = match kind {
        StubKind::Dir => md.is_dir(),
        StubKind::File => !md.is_dir(),
    };
    if ok {
        return Ok(());
    }
    Err(SandboxError::MountTarget {
        target: path.to_string(),
        reason: match kind {
            StubKind::Dir => "a directory cannot be mounted over a file",
            StubKind::File => "a file cannot be mounted over a directory",
        },
    })
}

/// Removes the stubs in `created` (newest first) from `root`. Call it only
/// once no process runs in the rootfs any more. An entry is removed only if
/// nothing on its path became a symlink (so a command that swapped a parent
/// for a link cannot make us delete a host file) and it is still an empty
/// file or directory (content the command put there belongs to the layer).
/// Returns the first error; keeps going past it.
pub fn remove_stubs(root: &Path, created: &mut Vec<Stub>) -> Result<(), SandboxError> {
    let mut first_err = None;
    while let Some(stub) = created.pop() {
        if let Err(e) = remove_stub(root, &stub) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn remove_stub(root: &Path, stub: &Stub) -> Result<(), SandboxError> {
    let Ok(rel) = stub.path.strip_prefix(root) else {
        return Ok(());
    };
    // Every ancestor (and the entry) must still be a real directory/file.
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_symlink() => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    let md = match fs::symlink_metadata(&stub.path) {
        Ok(md) => md,
        Err(_) => return Ok(()),
    };
    let result = match stub.kind {
        StubKind::File if md.is_file() && md.len() == 0 => fs::remove_file(&stub.path),
        StubKind::Dir if md.is_dir() => match fs::remove_dir(&stub.path) {
            // Not empty: the command wrote there; that is layer content.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => return Ok(()),
            other => other,
        },
        _ => return Ok(()),
    };
    result.map_err(|source| SandboxError::Io {
        op: "remove mount stub",
        path: stub.path.clone(),
        source,
    })?;
    if let (Some(mtime), Some(parent)) = (stub.parent_mtime, stub.path.parent()) {
        // Best effort: a differing mtime only makes the parent show in a diff.
        let _ = filetime::set_file_mtime(parent, mtime);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolution_never_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/etc")).unwrap();
        symlink("/usr/etc", root.join("etc")).unwrap();
        symlink("../../../../../../", root.join("up")).unwrap();
        symlink("/etc/passwd", root.join("usr/etc/pw")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        let cases: &[(&str, &str)] = &[
            ("/etc/hosts", "usr/etc/hosts"),
            ("etc/../etc/hosts", "usr/etc/hosts"),
            ("/../../etc", "usr/etc"),
            ("/up/etc/shadow", "usr/etc/shadow"),
            ("/up", ""),
            ("/usr/etc/pw", "usr/etc/passwd"),
            ("/missing/../x", "x"),
        ];
        for (input, want) in cases {
            let got = resolve_in_root(root, input).unwrap();
            assert_eq!(got, root.join(want), "{input}");
        }
        assert!(matches!(
            resolve_in_root(root, "/loop1"),
            Err(SandboxError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn stubs_are_created_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/keep"), "x").unwrap();
        let mut created = Vec::new();
        let hosts = ensure_stub(root, "/etc/hosts", StubKind::File, &mut created).unwrap();
        assert!(hosts.is_file());
        let deep = ensure_stub(root, "/run/secrets/a", StubKind::Dir, &mut created).unwrap();
        assert!(deep.is_dir());
        // Existing targets create nothing.
        ensure_stub(root, "/etc", StubKind::Dir, &mut created).unwrap();
        assert_eq!(created.len(), 4);
        remove_stubs(root, &mut created).unwrap();
        assert!(!root.join("etc/hosts").exists());
        assert!(!root.join("run").exists());
        assert!(root.join("etc/keep").exists());
    }

    #[test]
    fn stub_removal_keeps_content_and_ignores_swapped_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(outside.path().join("d")).unwrap();
        let root = dir.path();
        let mut created = Vec::new();
        ensure_stub(root, "/data/d", StubKind::Dir, &mut created).unwrap();
        fs::write(root.join("data/file"), "content").unwrap();
        // The "command" replaced data/d by a link to a host directory.
        fs::remove_dir(root.join("data/d")).unwrap();
        symlink(outside.path().join("d"), root.join("data/d")).unwrap();
        remove_stubs(root, &mut created).unwrap();
        assert!(outside.path().join("d").is_dir());
        assert!(root.join("data/file").exists());
    }

    #[test]
    fn type_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        let mut created = Vec::new();
        let err = ensure_stub(dir.path(), "/f", StubKind::Dir, &mut created).unwrap_err();
        assert!(matches!(err, SandboxError::MountTarget { .. }), "{err}");
        let err = ensure_stub(dir.path(), "/f/x", StubKind::Dir, &mut created).unwrap_err();
        assert!(matches!(err, SandboxError::MountTarget { .. }), "{err}");
    }
}
