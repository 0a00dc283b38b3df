//! What can be wrong with an archive that `load` or `import` reads: the
//! archive's fault, never the store's.

use std::io;

use crate::digest::Digest;

/// An archive (a docker-archive, an OCI archive or a rootfs tarball) that
/// cannot be taken in as it is.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An archive entry that would escape the archive's root.
    #[error("archive entry {entry:?} is unsafe: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The archive could not be read as a tar (often: it is truncated).
    #[error("cannot read the archive (is it truncated, or not a tar?)")]
    Read {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive ends in the middle of an entry.
    #[error("the archive is truncated: it ends inside {entry:?}")]
    Truncated {
        /// The entry that is cut short.
        entry: String,
    },
    /// The archive is neither a docker-archive nor an OCI layout.
    #[error("archive has neither manifest.json (docker-archive) nor index.json (OCI layout)")]
    Format,
    /// The archive's manifest names a file the archive does not contain.
    #[error("archive refers to {path:?}, which it does not contain")]
    Missing {
        /// The path or digest that is missing.
        path: String,
    },
    /// The archive's index or manifest.json names no image at all.
    #[error("archive contains no image")]
    Empty,
    /// A layer whose uncompressed content does not match the config's diff_id.
    #[error("layer {layer} uncompresses to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The diff_id from the config.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A `--change` line of `import` that cannot be applied.
    #[error("invalid --change {line:?}: {reason}")]
    InvalidChange {
        /// The line as given.
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--change` line whose argument should be a JSON array and is not.
    #[error("invalid --change {line:?}: expected a JSON array of strings")]
    ChangeNotJsonArray {
        /// The line as given.
        line: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}
