//! `rbk-store` owns everything on disk: content-addressed blobs in an OCI
//! image layout, the image index (tags), the build cache index, snapshots
//! (kernel overlay or plain copies), layer diff/apply, and save/load/import.
//!
//! It knows nothing of Dockerfiles or build graphs.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod archive;
pub mod attested;
pub mod cache;
pub mod check;
pub mod compress;
pub mod content;
pub mod digest;
pub mod error;
pub mod flock;
pub mod fs_ext;
pub mod images;
pub mod layer;
pub mod layout;
pub mod lease;
mod leftovers;
pub mod lock;
pub mod mount;
pub mod oci;
pub mod process;
pub mod reference;
pub mod registry;
pub mod snapshot;
mod sys;
pub mod unpack;
pub mod variant;
pub mod workspace;

pub use cache::{BuildCache, CacheIndex, CacheRecord};
pub use content::{BlobWriter, ContentStore};
pub use digest::Digest;
pub use error::StoreError;
pub use images::{BrokenImage, Image, Store};
pub use layout::Layout;
pub use reference::Reference;
