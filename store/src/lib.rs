//! `rbk-store` owns everything on disk: content-addressed blobs in an OCI
//! image layout, the image index (tags), the build cache index, snapshots
//! (kernel overlay or plain copies), layer diff/apply, and save/load/import.
//!
//! It knows nothing of Dockerfiles or build graphs.

pub mod archive;
pub mod cache;
pub mod check;
pub mod compress;
pub mod content;
pub mod digest;
pub mod error;
pub mod images;
pub mod layer;
pub mod lazy;
pub mod lease;
pub mod lock;
pub mod oci;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod sys;
pub mod unpack;
pub mod variant;
pub mod workspace;

pub use cache::{BuildCache, CacheIndex, CacheRecord};
pub use content::{BlobWriter, ContentStore};
pub use digest::Digest;
pub use error::StoreError;
pub use images::{BrokenImage, Image, Store};
pub use reference::Reference;
