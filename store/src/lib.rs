//! `rbk-store` owns everything on disk: content-addressed blobs in an OCI
//! image layout, the image index (tags), the build cache index, snapshots
//! (kernel overlay or plain copies), layer diff/apply, and save/load/import.
//!
//! It knows nothing of Dockerfiles or build graphs.

pub mod digest;

pub use digest::Digest;
