//! WORKDIR: besides setting the config's working directory (the
//! compiler's), it creates the directory, as BuildKit does, so an image
//! whose WORKDIR nothing else touches still has it. Missing components are
//! made 0755 and owned by the stage's USER (`--chown`'s rules; a user the
//! image does not know owns nothing: root, as in BuildKit). A directory
//! that already exists is left alone and the step adds no layer.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::{Change, Execution, LayerPolicy, StepEnv, StepError, StepInputs, StepKind};
use crate::context::resolve_in_root;
use crate::fileop::FileOpError;

/// WORKDIR `path`, created for `user`.
pub(crate) struct WorkdirStep<'g> {
    /// The directory.
    pub path: &'g str,
    /// The stage's USER.
    pub user: &'g str,
}

impl StepKind for WorkdirStep<'_> {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::LayerIfChanged
    }

    fn inputs(&self, _: &StepEnv<'_>, _: &[&str]) -> Result<StepInputs, StepError> {
        let plaintext = serde_json::json!({ "path": self.path, "user": self.user });
        Ok(StepInputs::plain(String::new(), plaintext))
    }

    fn execute(
        &self,
        _: &StepEnv<'_>,
        _: &Execution<'_>,
        rootfs: &Path,
    ) -> Result<Change, StepError> {
        if exists(rootfs, self.path)? {
            return Ok(Change::Unchanged);
        }
        create(rootfs, self.path, self.user)?;
        Ok(Change::Changed)
    }

    fn result_inputs(
        &self,
        _: &StepEnv<'_>,
        _: &[&crate::state::State],
        _: &rbk_runtime::cancel::CancelToken,
    ) -> Result<Option<Vec<String>>, StepError> {
        Ok(Some(Vec::new()))
    }
}

/// Whether `path` is already a directory in `rootfs` (following symlinks
/// inside it); an error when something else is in the way.
pub(crate) fn exists(rootfs: &Path, path: &str) -> Result<bool, FileOpError> {
    let at = resolve_in_root(rootfs, path, true).map_err(|source| FileOpError::Io {
        op: "resolve",
        path: Path::new(path).to_path_buf(),
        source,
    })?;
    match fs::metadata(&at) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(not_a_directory(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FileOpError::Io {
            op: "stat",
            path: at,
            source,
        }),
    }
}

/// Creates `path` and its missing parents in `rootfs`, owned by `user`.
pub(crate) fn create(rootfs: &Path, path: &str, user: &str) -> Result<(), FileOpError> {
    let owner = owner(rootfs, user)?;
    let mut walked = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        walked.push('/');
        walked.push_str(part);
        let at = resolve_in_root(rootfs, &walked, true).map_err(|source| FileOpError::Io {
            op: "resolve",
            path: Path::new(&walked).to_path_buf(),
            source,
        })?;
        match fs::metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Err(not_a_directory(&walked)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(FileOpError::Io {
                    op: "stat",
                    path: at,
                    source,
                })
            }
        }
        let io_err = |op| {
            let at = at.clone();
            move |source| FileOpError::Io {
                op,
                path: at,
                source,
            }
        };
        fs::create_dir(&at).map_err(io_err("create directory"))?;
        if owner != (0, 0) {
            std::os::unix::fs::lchown(&at, Some(owner.0), Some(owner.1))
                .map_err(io_err("chown"))?;
        }
        fs::set_permissions(&at, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod"))?;
    }
    Ok(())
}

/// The ids `user` (the USER instruction's value) stands for.
fn owner(rootfs: &Path, user: &str) -> Result<(u32, u32), FileOpError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    match crate::fileop::resolve_chown(rootfs, user) {
        Ok(ids) => Ok(ids),
        Err(FileOpError::BadChown { .. }) => Ok((0, 0)),
        Err(e) => Err(e),
    }
}

fn not_a_directory(path: &str) -> FileOpError {
    FileOpError::Io {
        op: "create the working directory",
        path: Path::new(path).to_path_buf(),
        source: io::Error::from_raw_os_error(libc::ENOTDIR),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn creates_missing_parts_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("srv")).unwrap();
        fs::set_permissions(root.join("srv"), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!exists(root, "/srv/app/data").unwrap());
        create(root, "/srv/app/data", "").unwrap();
        assert!(exists(root, "/srv/app/data").unwrap());
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("srv"), 0o700, "an existing directory is left alone");
        assert_eq!(mode("srv/app"), 0o755);
        assert_eq!(mode("srv/app/data"), 0o755);
    }

    #[test]
    fn follows_symlinks_inside_the_root_and_refuses_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("ln")).unwrap();
        create(root, "/ln/sub", "").unwrap();
        assert!(root.join("real/sub").is_dir());
        fs::write(root.join("file"), "x").unwrap();
        assert!(exists(root, "/file").is_err());
        assert!(create(root, "/file/sub", "").is_err());
    }
}
