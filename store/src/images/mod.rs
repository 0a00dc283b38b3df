//! The image store facade: blobs + `index.json` (tags) + cache index, and
//! the operations `rbk images/tag/rmi/prune` and the builder need.
//!
//! `index.json` lists one entry per tag, annotated with the full normalised
//! name (`docker.io/library/nginx:latest`), plus one unannotated entry per
//! untagged ("dangling", `<none>`) image. Every change to it is a
//! read-modify-write under the exclusive store lock, written atomically.
//!
//! The operations are split by what they do: `index` edits `index.json`
//! (tags, `rmi`), `resolve` reads images back and leases them, `commit`
//! writes new images and indexes, `prune` collects garbage, and
//! `layer_size` counts layers as Docker does.

mod commit;
mod index;
mod layer_size;
mod prune;
mod resolve;

use std::fs;
use std::path::{Path, PathBuf};

use crate::cache::CacheIndex;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layout::{Layout, SNAPSHOTS_MODE};
use crate::lock::{lock, LockGuard, LockMode};
use crate::oci::{
    chain_ids, Descriptor, ImageConfig, Index, Manifest, PlatformSpec, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

pub use index::RemoveEvent;
pub use prune::{PruneOptions, PruneReport};

/// The most layers an image may have: Docker's overlay2 stacks at most
/// 128 lower layers, and an image rbk cannot run is refused before any of
/// its layers is unpacked (at load, import, build and run). The overlay
/// snapshotter's short links keep this many mountable.
pub const MAX_LAYERS: usize = 128;

/// Refuses an image (`image`, for the message) of more than [`MAX_LAYERS`]
/// layers.
pub(crate) fn check_layer_count(image: &str, layers: usize) -> Result<(), StoreError> {
    if layers > MAX_LAYERS {
        return Err(StoreError::TooManyLayers {
            image: image.to_string(),
            layers,
            max: MAX_LAYERS,
        });
    }
    Ok(())
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// The image id: its config digest, as Docker shows it.
    pub id: Digest,
    /// The manifest's digest (what `name@sha256:…` pins).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// The tags pointing at it (empty for a dangling image).
    pub tags: Vec<Reference>,
    /// Bytes of content: config plus layer blobs as stored (uncompressed
    /// for layers rbk built or imported, compressed for pulled ones).
    pub size: u64,
    /// The multi-platform index the name resolved through, when it names
    /// one: this image is one of its platforms.
    pub index: Option<ImageIndex>,
}

impl Image {
    /// The chain ids of the image's layers, which name its snapshots.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.config.rootfs.diff_ids)
    }

    /// The digest its name points at: the index's, or the manifest's.
    pub fn entry_digest(&self) -> &Digest {
        self.index
            .as_ref()
            .map_or(&self.manifest_digest, |i| &i.digest)
    }

    /// Its platform (`os/arch[/variant]`), when the config states one.
    pub fn platform(&self) -> Option<PlatformSpec> {
        PlatformSpec::of_config(&self.config)
    }
}

/// An image index (OCI index or Docker manifest list) in the store: one
/// name for the images of several platforms. A pull of some platforms keeps
/// the whole index with only those platforms' images present.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageIndex {
    /// The index's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The index.
    pub index: Index,
    /// For each entry of `index.manifests`: whether its manifest is in the
    /// store (and so the image usable here).
    pub present: Vec<bool>,
}

impl ImageIndex {
    /// The entries that are images of a platform, with whether each is
    /// present: (platform, manifest descriptor, present).
    pub fn platforms(&self) -> impl Iterator<Item = (PlatformSpec, &Descriptor, bool)> {
        self.index
            .manifests
            .iter()
            .zip(&self.present)
            .filter(|(d, _)| d.is_platform_image())
            .filter_map(|(d, &present)| {
                let p = d.platform.as_ref()?;
                Some((PlatformSpec::of_platform(p), d, present))
            })
    }

    /// The entries that are no platform's image but belong with the index
    /// (BuildKit's attestation manifests, see [`Descriptor::attests`]) and
    /// are in the store: kept, saved and pushed with it as they are.
    pub fn attachments(&self) -> impl Iterator<Item = &Descriptor> {
        self.index
            .manifests
            .iter()
            .zip(&self.present)
            .filter(|(d, &present)| present && d.attests().is_some())
            .map(|(d, _)| d)
    }

    /// The platforms present in the store, as `os/arch[/variant]`.
    pub fn present_platforms(&self) -> Vec<String> {
        self.platforms()
            .filter(|(_, _, present)| *present)
            .map(|(p, _, _)| p.to_string())
            .collect()
    }

    /// The entry for `want`, if present; else `None`.
    fn entry_for(&self, want: &PlatformSpec) -> Option<&Descriptor> {
        self.platforms()
            .find(|(p, _, present)| *present && want.accepts(p))
            .map(|(_, d, _)| d)
    }
}

/// An `index.json` entry whose image cannot be read (see
/// [`Store::list_all`]); `rbk system check` says more, `rbk rmi` by one of
/// its tags removes it.
#[derive(Debug)]
pub struct BrokenImage {
    /// The manifest or index the entry names.
    pub digest: Digest,
    /// Its tags, sorted.
    pub tags: Vec<Reference>,
    /// What is wrong.
    pub error: StoreError,
}

impl BrokenImage {
    /// Its first tag, or its digest.
    pub fn name(&self) -> String {
        self.tags
            .first()
            .map_or_else(|| self.digest.to_string(), Reference::familiar)
    }
}

/// Whether a media type names an index rather than one image's manifest.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Whether `media_type` names a single-image manifest rbk can store.
pub(crate) fn is_manifest_media_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// The store: content, image index and build cache under one root.
#[derive(Debug, Clone)]
pub struct Store {
    /// The blobs.
    pub content: ContentStore,
    /// The build cache index.
    pub cache: CacheIndex,
    layout: Layout,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let content = ContentStore::open(root)?;
        let cache = CacheIndex::open(root)?;
        let layout = Layout::new(root);
        let snapshots = layout.snapshots();
        if !content.is_read_only() {
            fs::create_dir_all(&snapshots).at("create directory", &snapshots)?;
            crate::sys::restrict_dir(&snapshots, SNAPSHOTS_MODE)
                .at("restrict the permissions of", &snapshots)?;
        }
        let store = Store {
            content,
            cache,
            layout,
        };
        if !store.content.is_read_only() {
            crate::leftovers::sweep_dead_steps(&store.layout);
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// Where things are under the store's root.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where the snapshot of a chain id lives: `snapshots/<chain-id-hex>`.
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layout.snapshot(chain_id.hex())
    }

    /// Takes the store lock (exclusive for mutations, shared for reads that
    /// need a consistent view of several files).
    pub(crate) fn lock(&self, mode: LockMode) -> Result<LockGuard, StoreError> {
        lock(&self.layout.lock(), mode)
    }

    /// Reads and parses a JSON blob.
    fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        d: &Digest,
        what: &str,
    ) -> Result<T, StoreError> {
        let data = self.content.read(d)?;
        serde_json::from_slice(&data).map_err(|e| StoreError::json(format!("{what} {d}"), e))
    }
}
