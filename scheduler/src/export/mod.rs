//! Where a build's images go besides the store: the final filesystem
//! written to a directory or a tarball, an image prepared in the format
//! it leaves the store in and pushed (by name or by digest only), the
//! platforms of one name committed as one index, and files written so a
//! failure never leaves half of one.
//!
//! The CLI parses `--output` and decides what goes where (and prints);
//! these functions do the work and report through their results.

pub mod file;
pub mod filesystem;
pub mod image;
pub mod index;

use std::path::PathBuf;

use rbk_store::registry::RegistryError;
use rbk_store::{Digest, StoreError};

/// What went wrong in an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file or directory could not be read or written.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done (`create`, `write`, `list`…).
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A scratch directory could not be made in the store.
    #[error("cannot make a scratch directory in the store")]
    Scratch(#[source] std::io::Error),
    /// The tarball could not be written.
    #[error("cannot write the tarball")]
    Tarball(#[source] std::io::Error),
    /// A layer could not be decompressed.
    #[error("cannot read layer {digest}")]
    ReadLayer {
        /// The layer.
        digest: Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A layer could not be unpacked.
    #[error("cannot unpack layer {digest} into {}", .dir.display())]
    Unpack {
        /// The layer.
        digest: Digest,
        /// Where it was being unpacked.
        dir: PathBuf,
        /// Why.
        #[source]
        source: rbk_store::layer::LayerError,
    },
    /// An image's layers could not be compressed for its export.
    #[error("cannot compress the layers of {image}")]
    Compress {
        /// The image (its id, or its index's digest).
        image: Digest,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// An image to push has no name.
    #[error("cannot push {target}: it has no name (give -t or name=)")]
    NoName {
        /// The target it was built as.
        target: String,
    },
    /// A push failed.
    #[error("cannot push {name}")]
    Push {
        /// The name pushed to, as people write it.
        name: String,
        /// Why.
        #[source]
        source: Box<RegistryError>,
    },
    /// A push by digest failed.
    #[error("cannot push {repository} by digest")]
    PushByDigest {
        /// The repository pushed into, as people write it.
        repository: String,
        /// Why.
        #[source]
        source: Box<RegistryError>,
    },
    /// The index of a multi-platform image could not be made.
    #[error("cannot make the index of {name}")]
    Index {
        /// The image name.
        name: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}
