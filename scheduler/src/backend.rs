//! What the scheduler needs from the world outside it, as traits: base
//! images and image commits ([`Images`]), filesystem layers ([`Layers`]),
//! the step cache ([`StepCache`]) and the directories it may use
//! ([`WorkDirs`]). The build's core uses only these.
//!
//! [`store::StoreBackend`] implements them over rbk-store (content store,
//! snapshotter, cache index, registry caches): the one place where the real
//! implementations are wired in. The scheduler's tests implement them in
//! memory, so planning, caching, parallelism, cancellation and errors are
//! tested without root, mounts or network.

pub mod store;

use std::path::{Path, PathBuf};

use rbk_store::cache::CacheRecord;
use rbk_store::oci::{Descriptor, ImageConfig as OciConfig};
use rbk_store::reference::Reference;
use rbk_store::Digest;

use crate::shared_cache::{CacheMode, ExportedCache};
use rbk_runtime::cancel::CancelToken;

/// One layer of a filesystem state.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The blob as stored (or as a registry cache will provide it).
    pub blob: Descriptor,
    /// Its uncompressed digest.
    pub diff_id: Digest,
}

/// A base image, resolved once per build.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseImage {
    /// Its id (config digest): what a step's cache key depends on.
    pub id: Digest,
    /// Its layers, bottom to top.
    pub layers: Vec<Layer>,
    /// Its config (history, and the defaults the compiler started from).
    pub config: OciConfig,
}

/// An image the build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedImage {
    /// Image id (config digest).
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
}

/// Why the backend failed, typed by the layer it came from.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The content store, image index or cache index.
    #[error(transparent)]
    Store(Box<rbk_store::StoreError>),
    /// A snapshot.
    #[error(transparent)]
    Snapshot(Box<rbk_store::snapshot::SnapshotError>),
    /// Unpacking layers.
    #[error(transparent)]
    Unpack(Box<rbk_store::unpack::UnpackError>),
    /// A mount.
    #[error(transparent)]
    Mount(Box<rbk_store::mount::MountError>),
    /// A registry (a `--cache-from`/`--cache-to` cache).
    #[error(transparent)]
    Registry(Box<rbk_store::registry::RegistryError>),
    /// A file operation.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A shared cache stopped answering while the build waited on it.
    #[error("the shared cache {cache} does not answer: {message}")]
    Unreachable {
        /// The cache, as the user named it.
        cache: String,
        /// What the registry said, or why it could not be reached.
        message: String,
    },
    /// Interrupted.
    #[error("cancelled")]
    Cancelled,
}

impl BackendError {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        BackendError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<rbk_store::unpack::UnpackError> for BackendError {
    fn from(e: rbk_store::unpack::UnpackError) -> Self {
        match e {
            rbk_store::unpack::UnpackError::Cancelled => BackendError::Cancelled,
            e => BackendError::Unpack(Box::new(e)),
        }
    }
}

impl From<rbk_store::StoreError> for BackendError {
    fn from(e: rbk_store::StoreError) -> Self {
        BackendError::Store(Box::new(e))
    }
}

impl From<rbk_store::snapshot::SnapshotError> for BackendError {
    fn from(e: rbk_store::snapshot::SnapshotError) -> Self {
        BackendError::Snapshot(Box::new(e))
    }
}

impl From<rbk_store::mount::MountError> for BackendError {
    fn from(e: rbk_store::mount::MountError) -> Self {
        BackendError::Mount(Box::new(e))
    }
}

impl From<rbk_store::registry::RegistryError> for BackendError {
    fn from(e: rbk_store::registry::RegistryError) -> Self {
        BackendError::Registry(Box::new(e))
    }
}

/// Which step keys a cache export carries: `keys(images, mode)`.
pub type ExportKeys<'k> = dyn Fn(Option<&[String]>, CacheMode) -> Vec<String> + 'k;

/// Base images in, images out.
pub trait Images: Send + Sync {
    /// Finds the image `name` (a tag or id) for `platform`
    /// (`os/arch[/variant]`: from a multi-platform index, that platform's
    /// image), kept for the build's duration (a concurrent `rmi` + `prune`
    /// cannot take it away).
    fn resolve(&self, name: &str, platform: &str) -> Result<BaseImage, BackendError>;
    /// Writes `config` and a manifest over `layers` (with `annotations`)
    /// and points `tags` at it.
    fn commit(
        &self,
        config: &OciConfig,
        layers: &[Descriptor],
        tags: &[Reference],
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<CommittedImage, BackendError>;
}

/// Filesystem states made of layers.
pub trait Layers: Send + Sync {
    /// Makes `layers` (bottom to top) available as one stacked snapshot and
    /// returns its key (`None` for no layers).
    fn unpack(
        &self,
        layers: &[Layer],
        cancel: &CancelToken,
    ) -> Result<Option<String>, BackendError>;
    /// A writable filesystem over the snapshot `parent`, mounted, for a
    /// step to change; dropping it without committing discards it.
    fn prepare(&self, parent: Option<&str>) -> Result<Box<dyn Workspace + '_>, BackendError>;
    /// A read-only mount of the snapshot `parent` (a stage copied from).
    fn view(&self, parent: Option<&str>) -> Result<Box<dyn Mounted + '_>, BackendError>;
    /// Makes a layer's blob present in the store if a registry cache
    /// served it and it is not there yet (before an image references it):
    /// recorded as kept in that cache, its bytes fetched when something
    /// first reads them.
    fn fetch(&self, layer: &Descriptor) -> Result<(), BackendError>;
}

/// A step's writable filesystem.
pub trait Workspace: Send {
    /// Where it is mounted.
    fn rootfs(&self) -> &Path;
    /// Unmounts it and records what changed as a new layer over `below`.
    fn commit(self: Box<Self>, below: &[Layer]) -> Result<Layer, BackendError>;
}

/// A read-only mount, unmounted on drop.
pub trait Mounted: Send {
    /// Where it is mounted.
    fn path(&self) -> &Path;
}

/// What the cache knows of a key.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// A record the build can use (its layer is local, or a registry cache
    /// has it), kept for the build's duration.
    pub hit: Option<CacheRecord>,
    /// Whether any record exists, usable or not (its layer pruned since).
    pub recorded: bool,
}

/// Held while a step runs; dropping it lets waiting builds in.
pub struct StepGuard(pub Box<dyn std::any::Any + Send>);

/// The build cache: key → the layer a step made.
pub trait StepCache: Send + Sync {
    /// What the cache has for `key` (the local cache, then `--cache-from`).
    fn lookup(&self, key: &str) -> Lookup;
    /// Records a step's result.
    fn put(&self, record: &CacheRecord) -> Result<(), BackendError>;
    /// The most recent record of `family` other than `key` (`--explain`).
    fn nearest(&self, family: &str, key: &str) -> Option<CacheRecord>;
    /// Takes the lock on running step `key`, shared by every build on the
    /// store (other processes too); `on_wait` is called once if another
    /// holds it. `None` when cancelled while waiting.
    fn lock(
        &self,
        key: &str,
        on_wait: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<Option<StepGuard>, BackendError>;
    /// Asks the `--cache-from` caches for `key` again (another builder of
    /// a fleet may have pushed it since the last question); an error when
    /// a cache does not answer. The local cache answers first.
    fn poll(&self, key: &str) -> Result<Option<CacheRecord>, BackendError> {
        Ok(self.lookup(key).hit)
    }
    /// Pushes the records of `keys` to the `--cache-to` registries now,
    /// before the build ends (a fleet's other builders wait on them).
    fn publish(&self, keys: &[&str]) -> Result<(), BackendError> {
        let _ = keys;
        Ok(())
    }
    /// Exports the `--cache-to` caches; `keys(images, mode)` lists the keys
    /// of the steps an export of those images in that mode carries.
    fn export(&self, keys: &ExportKeys<'_>) -> Result<Vec<ExportedCache>, BackendError>;
}

/// Directories a build may use for its own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDirs {
    /// Scratch files (secrets, tmpfs mounts), removed after each step.
    pub tmp: PathBuf,
    /// `RUN --mount=type=cache` directories, kept between builds.
    pub cache_mounts: PathBuf,
    /// Stat caches of build contexts, kept between builds.
    pub stat_caches: PathBuf,
}
