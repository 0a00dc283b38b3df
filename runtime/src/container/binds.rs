//! The bind mounts a container gets besides its root: its volumes —
//! `-v` binds, named volumes, and anonymous ones (`-v /path` and the
//! image's VOLUMEs) seeded with what the image has there, as Docker's —
//! and its `/etc/hostname`.

use std::path::{Path, PathBuf};

use rbk_store::oci::ContainerConfig;

use super::volume::{self, normalize_target, Volume};
use super::ContainerError;
use crate::sandbox::rootfs::resolve_in_root;
use crate::sandbox::BindMount;

/// Directories a container used outside its layer (the `/etc/hostname`
/// file's, anonymous volumes), removed when dropped. Declared before the
/// mounts they hold, so dropped after them.
#[derive(Debug, Default)]
pub struct TempDirs(Vec<PathBuf>);

impl Drop for TempDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            // remove_dir_all does not cross into a still-mounted directory's
            // content on its own; a leftover mount makes this fail, which is
            // the safe outcome.
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The container's `/etc/hostname`, as Docker gives one: a file outside
/// its layer (in the store's `tmp/`, swept if rbk is killed), bound over
/// the image's. The directories returned remove it.
pub fn hostname_file(
    root: &Path,
    key: &str,
    hostname: &str,
) -> Result<(BindMount, TempDirs), ContainerError> {
    let dir = rbk_store::Layout::new(root)
        .tmp()
        .join(format!("{key}-etc"));
    std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io("create", &dir, e))?;
    let guard = TempDirs(vec![dir.clone()]);
    let file = dir.join("hostname");
    std::fs::write(&file, format!("{hostname}\n"))
        .map_err(|e| ContainerError::io("write", &file, e))?;
    let bind = BindMount {
        source: file,
        target: "/etc/hostname".into(),
        readonly: false,
    };
    Ok((bind, guard))
}

/// The binds of `volumes` for container `id` whose root is mounted at
/// `rootfs`: the `-v` binds, named volumes, and anonymous volumes — `-v
/// /path` and the image's VOLUMEs no `-v` covers — each an empty directory
/// outside the container layer seeded with what the image has there. The
/// directories returned remove the anonymous ones, unless the container
/// `keep`s them with its layer (a detached one, until `rbk rm`: `rbk start`
/// finds them as they were, as Docker's anonymous volumes).
pub fn volume_binds(
    root: &Path,
    id: &str,
    rootfs: &Path,
    config: &ContainerConfig,
    volumes: &[Volume],
    keep: bool,
) -> Result<(Vec<BindMount>, TempDirs), ContainerError> {
    let mut binds = Vec::new();
    let mut anonymous: Vec<String> = Vec::new();
    for v in volumes {
        match v {
            Volume::Bind(b) => binds.push(b.clone()),
            Volume::Anonymous(t) => anonymous.push(t.clone()),
            Volume::Named {
                name,
                target,
                readonly,
            } => binds.push(named_volume(root, rootfs, name, target, *readonly)?),
        }
    }
    for target in config.volumes.iter().flat_map(|v| v.keys()) {
        let target = normalize_target(target);
        let covered = binds.iter().any(|b| b.target == target) || anonymous.contains(&target);
        if !covered {
            anonymous.push(target);
        }
    }
    let volume_dir = volume::dir(root);
    let mut guard = TempDirs::default();
    for (n, target) in anonymous.iter().enumerate() {
        let dir = volume_dir.join(format!("{id}-{n}"));
        let kept = keep && dir.is_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io("create volume", &dir, e))?;
        if !keep {
            guard.0.push(dir.clone());
        }
        seed(rootfs, target, &dir, &dir.display().to_string(), !kept)?;
        binds.push(BindMount {
            source: dir,
            target: target.clone(),
            readonly: false,
        });
    }
    Ok((binds, guard))
}

/// Named volume `name` at `target`, made if it is not there; an empty one
/// is first seeded with what the image has at `target`, as Docker does.
fn named_volume(
    root: &Path,
    rootfs: &Path,
    name: &str,
    target: &str,
    readonly: bool,
) -> Result<BindMount, ContainerError> {
    volume::create(root, name)?;
    let data = volume::data(root, name);
    let empty = std::fs::read_dir(&data)
        .map_err(|e| ContainerError::io("read volume", &data, e))?
        .next()
        .is_none();
    seed(rootfs, target, &data, name, empty)?;
    Ok(BindMount {
        source: data,
        target: target.to_string(),
        readonly,
    })
}

/// Copies what the image has at `target` (a directory) into the volume
/// directory `dir`, called `volume` in errors, when `copy` says so (the
/// path is resolved either way: one escaping the root is refused).
fn seed(
    rootfs: &Path,
    target: &str,
    dir: &Path,
    volume: &str,
    copy: bool,
) -> Result<(), ContainerError> {
    let inside = resolve_in_root(rootfs, target).map_err(|source| ContainerError::Resolve {
        target: target.to_string(),
        source: Box::new(source),
    })?;
    if !copy || !inside.is_dir() {
        return Ok(());
    }
    copy_tree(&inside, dir).map_err(|source| ContainerError::Seed {
        target: target.to_string(),
        volume: volume.to_string(),
        source,
    })
}

/// Copies the tree under `from` into the existing directory `to`, keeping
/// owners, modes and symlinks (an anonymous volume starts as a copy of the
/// image's content there, owner included: mysqld needs its datadir's owner).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{lchown, MetadataExt as _, PermissionsExt as _};
    let md = std::fs::symlink_metadata(from)?;
    lchown(to, Some(md.uid()), Some(md.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let md = entry.metadata()?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
            continue;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            // Sockets, fifos and devices are not data worth seeding.
            continue;
        }
        lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_keeps_owners_modes_and_links() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), "x").unwrap();
        std::fs::set_permissions(
            src.path().join("d/f"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("d/f", src.path().join("l")).unwrap();
        copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("d/f")).unwrap(),
            "x"
        );
        let md = std::fs::metadata(dst.path().join("d/f")).unwrap();
        assert_eq!(md.mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.path().join("l")).unwrap(),
            Path::new("d/f")
        );
    }
}
