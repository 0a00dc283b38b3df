//! The store's error type: every variant carries what a user needs to act on
//! it (the digest, the path, the image name, the archive entry).

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::layout::Layout;

mod archive;

pub use archive::ArchiveError;

/// Everything that can go wrong in the content store, the image index, the
/// cache index and save/load/import (what is wrong with an archive itself
/// is an [`ArchiveError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A blob that something refers to is not in the store.
    #[error("blob {digest} is not in the store")]
    BlobMissing {
        /// The missing blob.
        digest: Digest,
    },
    /// A blob whose bytes do not hash to its name.
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    Corrupt {
        /// The digest the blob should have.
        expected: Digest,
        /// What its content actually hashes to.
        actual: Digest,
    },
    /// A blob whose length differs from what its descriptor says.
    #[error("blob {digest} has {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size from the descriptor.
        expected: u64,
        /// The size on disk or in the archive.
        actual: u64,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done ("read", "create", "rename", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A JSON document (manifest, config, index, cache record) is invalid.
    #[error("invalid {what}")]
    Json {
        /// Which document, e.g. "manifest sha256:..." or "index.json".
        what: String,
        /// The parse error with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A manifest or index whose media type rbk does not handle.
    #[error("unsupported media type {media_type:?} in {what}")]
    UnsupportedMediaType {
        /// The media type found.
        media_type: String,
        /// Where it was found.
        what: String,
    },
    /// Something is wrong with one image's blobs; `source` says what.
    #[error("image {image} is broken")]
    InImage {
        /// The image, by name or id.
        image: String,
        /// What is wrong.
        #[source]
        source: Box<StoreError>,
    },
    /// A `--platform` value that is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform(String),
    /// An image index without the platform asked for.
    #[error("image {image} has no {wanted} variant (it has {})", if .available.is_empty() { "none in this store".to_string() } else { .available.join(", ") })]
    PlatformNotInImage {
        /// The image.
        image: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms it has in this store.
        available: Vec<String>,
    },
    /// A layer kept where a build cache holds it (see
    /// [`crate::content::remote`]) could not be fetched.
    #[error("cannot fetch layer {digest} from {from}")]
    RemoteFetch {
        /// The layer.
        digest: Digest,
        /// Where it was to come from.
        from: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A layer made on demand from its snapshot could not be written.
    #[error("cannot make layer {digest} from snapshot {snapshot}")]
    LayerSource {
        /// The layer.
        digest: Digest,
        /// The snapshot it was made from.
        snapshot: String,
        /// What went wrong.
        #[source]
        source: Box<crate::layer::LayerError>,
    },
    /// A snapshot could not be read, made or removed.
    #[error(transparent)]
    Snapshot(Box<crate::snapshot::SnapshotError>),
    /// An index whose platforms are not all in the store, asked to leave
    /// it whole (push, save).
    #[error("image {image} lists platforms that are not in this store: {} (pull them: `rbk pull --all-platforms`)", .missing.join(", "))]
    IncompleteIndex {
        /// The image.
        image: String,
        /// The platforms missing.
        missing: Vec<String>,
    },
    /// Two images of one platform put in one index.
    #[error("two images for {platform} in one index ({first} and {second}): an index holds one image per platform")]
    DuplicatePlatform {
        /// The platform.
        platform: String,
        /// The first image.
        first: String,
        /// The second.
        second: String,
    },
    /// An image name that does not follow Docker's reference grammar.
    #[error("invalid reference {text:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No image has this name, tag, id or digest.
    #[error("no such image: {name}")]
    ImageNotFound {
        /// The name or id that was looked up.
        name: String,
    },
    /// A short id that matches several images.
    #[error("image id prefix {prefix} is ambiguous: it matches {}", .matches.join(", "))]
    AmbiguousId {
        /// The prefix given.
        prefix: String,
        /// The short ids of the images it matches.
        matches: Vec<String>,
    },
    /// `rmi ID` of an image that several tags point at, without `--force`.
    #[error(
        "unable to delete {id} (must be forced): image is referenced by several tags: {}",
        .tags.join(", ")
    )]
    ImageHasTags {
        /// The image's short id.
        id: String,
        /// Its tags.
        tags: Vec<String>,
    },
    /// `untag` of a tag that does not exist.
    #[error("no such tag: {reference}")]
    TagNotFound {
        /// The tag, in familiar form.
        reference: String,
    },
    /// A tag operation needs a `name:tag`, not a digest reference.
    #[error("cannot tag {reference}: a tag cannot carry a digest")]
    TagWithDigest {
        /// The offending reference.
        reference: String,
    },
    /// An image of more layers than rbk stacks: refused before anything is
    /// unpacked (the kernel could not mount it anyway).
    #[error("image {image} has {layers} layers; rbk stacks at most {max} (as Docker's overlay2 does): squash it into fewer layers (e.g. a multi-stage build that copies the result into one)")]
    TooManyLayers {
        /// The image, by name or id.
        image: String,
        /// How many layers it has.
        layers: usize,
        /// The most rbk stacks ([`crate::images::MAX_LAYERS`]).
        max: usize,
    },
    /// The store is on a read-only filesystem (a shared cache mounted
    /// read-only) and the command would change it.
    #[error("the store at {} is read-only: it can be read but not changed (remount it read-write, or give this command a writable --root)", .root.display())]
    ReadOnly {
        /// The store's root directory.
        root: PathBuf,
    },
    /// The store's disk is full, or its owner's quota spent: the store's
    /// problem, not the input's.
    #[error("no space left on the store's disk at {} (cannot {op} {}): free space there (`rbk image prune`, `rbk system check --repair`) or give rbk another --root", .root.display(), .path.display())]
    NoSpace {
        /// The store's root directory.
        root: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The file being written.
        path: PathBuf,
        /// The OS error (ENOSPC or EDQUOT).
        #[source]
        source: io::Error,
    },
    /// The store lock could not be taken.
    #[error("cannot lock the store at {}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The config's diff_ids do not match the archive's layers.
    #[error("image {image}: config lists {diff_ids} layers but the manifest has {layers}")]
    LayerCountMismatch {
        /// The image (config digest).
        image: Digest,
        /// How many diff_ids the config lists.
        diff_ids: usize,
        /// How many layers the manifest lists.
        layers: usize,
    },
    /// A tar to load or import that is not a sound archive.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Attaches the operation and path to an `io::Result`, so that errors name
/// the file concerned instead of a bare "No such file or directory".
pub trait IoResultExt<T> {
    /// Converts the error into [`StoreError::Io`] with `op` and `path`.
    fn at(self, op: &'static str, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoResultExt<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(op, path, source))
    }
}

impl From<crate::snapshot::SnapshotError> for StoreError {
    /// A snapshot's filesystem error is the store's, told as any other
    /// (a full disk as [`StoreError::NoSpace`]).
    fn from(e: crate::snapshot::SnapshotError) -> Self {
        match e {
            crate::snapshot::SnapshotError::Io { op, path, source } => {
                StoreError::io(op, &path, source)
            }
            e => StoreError::Snapshot(Box::new(e)),
        }
    }
}

impl StoreError {
    /// Wraps a serde_json error with the document it came from.
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        StoreError::Json {
            what: what.into(),
            source,
        }
    }

    /// A failed filesystem operation on `path`. A full disk (ENOSPC,
    /// EDQUOT) or a read-only one (EROFS) under a store is said to be the
    /// store's, whatever the command was reading from.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        let root = || Layout::containing(path).map(Path::to_path_buf);
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => {
                if let Some(root) = root() {
                    return StoreError::NoSpace {
                        root,
                        op,
                        path: path.to_path_buf(),
                        source,
                    };
                }
            }
            Some(libc::EROFS) => {
                if let Some(root) = root() {
                    return StoreError::ReadOnly { root };
                }
            }
            _ => {}
        }
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether this is the store's disk being full or read-only (not the
    /// input's fault).
    pub fn is_store_disk(&self) -> bool {
        matches!(
            self,
            StoreError::NoSpace { .. } | StoreError::ReadOnly { .. }
        )
    }

    /// Recovers a `StoreError` smuggled through an `io::Error` (as the
    /// verifying reader does at EOF), or wraps a plain one with its context.
    pub fn from_io(op: &'static str, path: &Path, e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(se) = inner.downcast::<StoreError>() {
                    return *se;
                }
            }
            // Unreachable in practice: we just checked the type.
            return StoreError::Io {
                op,
                path: path.to_path_buf(),
                source: io::Error::other("corrupt blob"),
            };
        }
        StoreError::io(op, path, e)
    }
}

/// An error and its sources on one line, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
