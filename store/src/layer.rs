//! Layers: turning a changed filesystem tree into an OCI layer tar (with
//! whiteouts, a diffID and a blob digest computed in one streaming pass) and
//! unpacking such a tar onto a directory without ever writing outside it.
//!
//! - [`diff_upper`] reads an overlayfs upper dir (whiteouts are 0/0 char
//!   devices, opaque dirs carry an `overlay.opaque` xattr);
//! - [`diff_trees`] compares two plain trees (the copy snapshotter);
//! - [`apply`] unpacks, either merging into a full tree or writing overlay
//!   whiteouts into a fresh layer dir.
//!
//! Output is deterministic: entries in sorted order, no atime/ctime, no user
//! or group names, whiteouts with zero metadata, so the same tree gives the
//! same diffID on any machine.

mod apply;
mod diff;
mod lower;

use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

pub use apply::{apply, apply_detached, apply_over};
pub use diff::{diff_trees, diff_upper, tar_dir};

use crate::compress::{Compression, Level};
use crate::digest::Digest;

/// Prefix of an OCI whiteout file: `.wh.name` deletes `name` of lower layers.
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
/// An entry with this name marks its directory opaque: lower contents hidden.
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Xattr overlayfs sets on an opaque upper directory (as root).
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The opaque xattr this process's overlay mounts read: `user.overlay.*`
/// in a user namespace (overlay mounted with `userxattr`), else
/// `trusted.overlay.*`.
pub(crate) fn opaque_xattr() -> &'static str {
    if crate::process::in_user_namespace() {
        OVERLAY_OPAQUE_USER_XATTR
    } else {
        OVERLAY_OPAQUE_XATTR
    }
}
/// The same in rootless (`userxattr`) overlay mounts.
pub(crate) const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";

/// What [`diff_upper`] / [`diff_trees`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes in the image config's rootfs).
    pub diff_id: Digest,
    /// sha256 of the bytes written (the blob name; equals `diff_id` when
    /// uncompressed).
    pub digest: Digest,
    /// Bytes written (the blob size).
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_size: u64,
    /// OCI media type matching the compression.
    pub media_type: &'static str,
}

/// How to write a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffOptions {
    /// Codec for the blob.
    pub compression: Compression,
    /// Codec level, `None` for the default.
    pub level: Level,
    /// Clamp every mtime to at most this Unix time (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<i64>,
}

impl From<Compression> for DiffOptions {
    fn from(compression: Compression) -> Self {
        DiffOptions {
            compression,
            ..DiffOptions::default()
        }
    }
}

/// What [`apply`] does with whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// The target is a full tree (copy snapshotter): whiteouts delete.
    Merge,
    /// The target is a fresh overlay layer dir: whiteouts become 0/0 char
    /// devices and opaque markers the `trusted.overlay.opaque` xattr.
    Overlay,
}

/// What [`apply`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the whole tar stream read (check it against the config).
    pub diff_id: Digest,
    /// Bytes of the tar stream.
    pub size: u64,
    /// Entries created or updated (whiteouts not included).
    pub entries: u64,
    /// Whiteouts and opaque markers honoured.
    pub whiteouts: u64,
}

/// Everything that can go wrong diffing or applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the layer stream failed.
    #[error("cannot write layer: {source}")]
    Write {
        /// The error from the output or the compressor.
        #[source]
        source: std::io::Error,
    },
    /// The tar stream could not be read (truncated, corrupt).
    #[error("cannot read layer tar{}: {source}", .after.as_ref().map(|a| format!(" after entry {a:?}")).unwrap_or_default())]
    Read {
        /// The last entry read successfully, for context.
        after: Option<String>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An entry that would write outside the target or through a link.
    #[error("refusing layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// An entry that cannot be applied (unknown type, name clash).
    #[error("cannot apply layer entry {entry:?}: {reason}")]
    Entry {
        /// The entry's name as written in the tar.
        entry: String,
        /// What went wrong.
        reason: String,
    },
    /// An entry whose header has a field that does not parse.
    #[error("cannot apply layer entry {entry:?}: invalid {field}")]
    Header {
        /// The entry's name as written in the tar.
        entry: String,
        /// The field ("mode", "uid", "PAX header", ...).
        field: &'static str,
        /// The tar crate's parse error.
        #[source]
        source: std::io::Error,
    },
    /// An overlay upper dir that uses a feature diffing cannot represent
    /// (redirect_dir renames, metacopy).
    #[error("{} uses overlay feature {xattr}, which a layer tar cannot express; mount overlays with redirect_dir=off,metacopy=off", .path.display())]
    OverlayFeature {
        /// The file carrying the xattr.
        path: PathBuf,
        /// The xattr found.
        xattr: String,
    },
    /// A layer applied before its lower layers are on disk
    /// ([`apply_detached`]) needs to know what they show.
    #[error("layer entry {entry:?} needs what the lower layers show")]
    NeedsLowers {
        /// The entry's name as written in the tar.
        entry: String,
    },
}

impl LayerError {
    pub(crate) fn io<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| LayerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The metadata of `p` (not following a symlink), or `None` when there is
/// nothing there.
fn lstat_opt(p: &Path) -> Result<Option<Metadata>, LayerError> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayerError::io("stat", p)(e)),
    }
}

/// Whether `m` is an overlay whiteout: a 0/0 character device.
fn is_overlay_whiteout(m: &Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Cleans a tar entry name into a relative path of normal components:
/// leading `/` and `.` components are dropped (as GNU tar and Docker do), and
/// any `..` is refused. An empty result means the root itself.
pub(crate) fn clean_entry_path(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("its path contains a `..` component".into()),
            Component::Prefix(_) => return Err("its path has a drive prefix".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_or_refused() {
        let ok = [
            ("a/b", "a/b"),
            ("./a/b/", "a/b"),
            ("/etc/passwd", "etc/passwd"),
            ("//x/./y", "x/y"),
            ("./", ""),
            ("...", "..."),
        ];
        for (raw, want) in ok {
            assert_eq!(
                clean_entry_path(Path::new(raw)).unwrap(),
                Path::new(want),
                "{raw}"
            );
        }
        for bad in ["../x", "a/../../x", "/../etc", "a/.."] {
            assert!(clean_entry_path(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
