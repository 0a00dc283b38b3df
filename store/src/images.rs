//! The image store facade: blobs + `index.json` (tags) + cache index, and
//! the operations `rbk images/tag/rmi/prune` and the builder need.
//!
//! `index.json` lists one entry per tag, annotated with the full normalised
//! name (`docker.io/library/nginx:latest`), plus one unannotated entry per
//! untagged ("dangling", `<none>`) image. Every change to it is a
//! read-modify-write under the exclusive store lock, written atomically.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::cache::CacheIndex;
use crate::content::{write_atomic, ContentStore};
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::lease::{live_leases, Leased};
use crate::lock::{lock, LockGuard, LockMode};
use crate::oci::{
    chain_ids, Descriptor, ImageConfig, Index, Manifest, PlatformSpec, ANNOTATION_REF_NAME,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

/// The most layers an image may have: Docker's overlay2 stacks at most
/// 128 lower layers, and an image rbk cannot run is refused before any of
/// its layers is unpacked (at load, import, build and run). The overlay
/// snapshotter's short links keep this many mountable.
pub const MAX_LAYERS: usize = 128;

/// Refuses an image (`image`, for the message) of more than [`MAX_LAYERS`]
/// layers.
pub fn check_layer_count(image: &str, layers: usize) -> Result<(), StoreError> {
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
            .filter_map(|(d, &present)| {
                let p = d.platform.as_ref()?;
                // Attestation manifests (BuildKit's `unknown/unknown`).
                (p.os != "unknown").then(|| (PlatformSpec::of_platform(p), d, present))
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

/// What `remove` did, in order, for `rmi` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// A tag was removed.
    Untagged(Reference),
    /// The image left the index (its blobs go at the next prune).
    Deleted(Digest),
}

/// What `prune` should consider garbage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Also drop every build cache record (and so what only they kept).
    pub cache: bool,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Dangling images dropped from the index.
    pub images: Vec<Digest>,
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Snapshots (chain ids) deleted.
    pub snapshots: Vec<Digest>,
    /// Cache records dropped.
    pub cache_records: usize,
    /// Bytes freed on disk.
    pub reclaimed: u64,
}

/// The store: content, image index and build cache under one root.
#[derive(Debug, Clone)]
pub struct Store {
    /// The blobs.
    pub content: ContentStore,
    /// The build cache index.
    pub cache: CacheIndex,
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let content = ContentStore::open(root)?;
        let cache = CacheIndex::open(root)?;
        let snapshots = root.join("snapshots");
        if !content.is_read_only() {
            fs::create_dir_all(&snapshots).at("create directory", &snapshots)?;
            crate::sys::restrict_dir(&snapshots, crate::sys::SNAPSHOTS_MODE)
                .at("restrict the permissions of", &snapshots)?;
        }
        let store = Store {
            content,
            cache,
            root: root.to_path_buf(),
        };
        if !store.content.is_read_only() {
            crate::check::sweep_dead_steps(&store);
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the snapshot of a chain id lives: `snapshots/<chain-id-hex>`.
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain_id.hex())
    }

    /// Takes the store lock (exclusive for mutations, shared for reads that
    /// need a consistent view of several files).
    pub fn lock(&self, mode: LockMode) -> Result<LockGuard, StoreError> {
        lock(&self.root.join("lock"), mode)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Reads `index.json` (an empty index if there is none yet).
    pub fn read_index(&self) -> Result<Index, StoreError> {
        Ok(self.read_index_bytes()?.0)
    }

    /// The index and the bytes it was read from (none if there is no file).
    fn read_index_bytes(&self) -> Result<(Index, Option<Vec<u8>>), StoreError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(data) => {
                let index =
                    serde_json::from_slice(&data).map_err(|e| StoreError::json("index.json", e))?;
                Ok((index, Some(data)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Index::default(), None)),
            Err(e) => Err(e).at("read", &path),
        }
    }

    pub(crate) fn write_index(&self, index: &Index) -> Result<(), StoreError> {
        let data = serde_json::to_vec(index).map_err(|e| StoreError::json("index.json", e))?;
        write_atomic(self.content.tmp_dir(), &self.index_path(), &data)
    }

    /// Runs `f` on the index under the exclusive lock and writes the result
    /// if it changed (a rebuild that tags what it already tagged writes
    /// nothing, and waits for no fsync).
    fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = self.lock(LockMode::Exclusive)?;
        let (mut index, before) = self.read_index_bytes()?;
        let out = f(&mut index)?;
        let data = serde_json::to_vec(&index).map_err(|e| StoreError::json("index.json", e))?;
        if before.as_deref() != Some(data.as_slice()) {
            write_atomic(self.content.tmp_dir(), &self.index_path(), &data)?;
        }
        Ok(out)
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

    /// Loads the image whose manifest is `manifest_digest`.
    pub fn image_by_manifest(
        &self,
        manifest_digest: &Digest,
        tags: Vec<Reference>,
    ) -> Result<Image, StoreError> {
        let bytes = self.content.read(manifest_digest)?;
        self.image_from_manifest(manifest_digest, &bytes, tags)
    }

    fn image_from_manifest(
        &self,
        manifest_digest: &Digest,
        bytes: &[u8],
        tags: Vec<Reference>,
    ) -> Result<Image, StoreError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::json(format!("manifest {manifest_digest}"), e))?;
        if let Some(mt) = &manifest.media_type {
            if is_index_media_type(mt) {
                return Err(StoreError::UnsupportedMediaType {
                    media_type: mt.clone(),
                    what: format!("manifest {manifest_digest}"),
                });
            }
        }
        let config: ImageConfig = self.read_json(&manifest.config.digest, "config")?;
        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        Ok(Image {
            id: manifest.config.digest.clone(),
            manifest_digest: manifest_digest.clone(),
            manifest,
            config,
            tags,
            size,
            index: None,
        })
    }

    /// Reads the index blob `digest` and which of its images are here.
    pub fn read_image_index(&self, digest: &Digest) -> Result<ImageIndex, StoreError> {
        let bytes = self.content.read(digest)?;
        self.image_index_from(digest, &bytes)
    }

    /// [`Store::read_image_index`] of an index already read as `bytes`.
    fn image_index_from(&self, digest: &Digest, bytes: &[u8]) -> Result<ImageIndex, StoreError> {
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::json(format!("index {digest}"), e))?;
        let present = index
            .manifests
            .iter()
            .map(|d| self.content.has(&d.digest))
            .collect();
        Ok(ImageIndex {
            digest: digest.clone(),
            media_type: index
                .media_type
                .clone()
                .unwrap_or_else(|| MEDIA_TYPE_OCI_INDEX.to_string()),
            index,
            present,
        })
    }

    /// Whether a document an `index.json` entry names is an index: by its
    /// media type, or (another tool's layout may leave it out) its shape.
    pub(crate) fn is_index_document(bytes: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Shape {
            media_type: Option<String>,
            manifests: Option<serde::de::IgnoredAny>,
        }
        serde_json::from_slice::<Shape>(bytes).is_ok_and(|shape| {
            shape.media_type.as_deref().is_some_and(is_index_media_type)
                || (shape.media_type.is_none() && shape.manifests.is_some())
        })
    }

    /// The image an `index.json` entry names: its manifest's, or from an
    /// index the one for `want` (an error naming the platforms it has when
    /// absent) — without `want`, this machine's platform, else the first
    /// present.
    pub fn image_by_entry(
        &self,
        digest: &Digest,
        tags: Vec<Reference>,
        want: Option<&PlatformSpec>,
    ) -> Result<Image, StoreError> {
        let bytes = self.content.read(digest)?;
        if !Self::is_index_document(&bytes) {
            return self.image_from_manifest(digest, &bytes, tags);
        }
        let index = self.image_index_from(digest, &bytes)?;
        let name = tags
            .first()
            .map_or_else(|| digest.to_string(), Reference::familiar);
        let entry = match want {
            Some(w) => index.entry_for(w),
            None => index
                .entry_for(&PlatformSpec::host())
                .or_else(|| index.platforms().find(|e| e.2).map(|e| e.1)),
        };
        let Some(entry) = entry else {
            return Err(StoreError::PlatformNotInImage {
                image: name,
                wanted: want.map_or_else(|| "usable".to_string(), ToString::to_string),
                available: index.present_platforms(),
            });
        };
        let mut image = self.image_by_manifest(&entry.digest.clone(), tags)?;
        image.index = Some(index);
        Ok(image)
    }

    /// The index grouped by manifest: each manifest digest with its tags
    /// (sorted), without reading any blob.
    pub fn tagged_manifests(&self) -> Result<BTreeMap<Digest, Vec<Reference>>, StoreError> {
        let index = {
            let _guard = self.lock(LockMode::Shared)?;
            self.read_index()?
        };
        let mut by_manifest: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for desc in &index.manifests {
            let tags = by_manifest.entry(desc.digest.clone()).or_default();
            // Names that are not references (e.g. a bare tag written by
            // another tool into this layout) do not count as tags.
            if let Some(r) = desc.ref_name().and_then(|n| Reference::parse(n).ok()) {
                if !tags.contains(&r) {
                    tags.push(r);
                }
            }
        }
        for tags in by_manifest.values_mut() {
            tags.sort();
        }
        Ok(by_manifest)
    }

    /// Every image that can be read, newest first; tags sorted. An image
    /// whose blobs are broken is left out (see [`Store::list_all`]): one
    /// broken image never hides the others.
    pub fn list(&self) -> Result<Vec<Image>, StoreError> {
        Ok(self.list_all()?.0)
    }

    /// Every image, newest first, and apart the index entries whose image
    /// cannot be read (a manifest or config missing or not JSON), each with
    /// what is wrong with it.
    pub fn list_all(&self) -> Result<(Vec<Image>, Vec<BrokenImage>), StoreError> {
        let by_manifest = self.tagged_manifests()?;
        let mut images = Vec::with_capacity(by_manifest.len());
        let mut broken = Vec::new();
        for (digest, tags) in by_manifest {
            match self.image_by_entry(&digest, tags.clone(), None) {
                Ok(image) => images.push(image),
                Err(error) => broken.push(BrokenImage {
                    digest,
                    tags,
                    error,
                }),
            }
        }
        images.sort_by(|a, b| {
            b.config
                .created
                .cmp(&a.config.created)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok((images, broken))
    }

    /// Finds an image by tag (`nginx`, `nginx:1`), full or short id (config
    /// digest, with or without `sha256:`), or manifest digest
    /// (`name@sha256:…` or `sha256:…`). A name of a multi-platform index
    /// gives this machine's platform (else the first present).
    pub fn resolve(&self, name_or_id: &str) -> Result<Image, StoreError> {
        self.resolve_for(name_or_id, None)
    }

    /// [`Store::resolve`] for platform `want`: from an index, that
    /// platform's image, or an error naming the platforms it has. A
    /// single-platform image is returned as it is (the caller checks its
    /// platform, see [`Image::platform`]).
    pub fn resolve_for(
        &self,
        name_or_id: &str,
        want: Option<&PlatformSpec>,
    ) -> Result<Image, StoreError> {
        let named = |e| match e {
            StoreError::PlatformNotInImage {
                wanted, available, ..
            } => StoreError::PlatformNotInImage {
                image: name_or_id.to_string(),
                wanted,
                available,
            },
            e => e,
        };
        let (image, picked) = self.find(name_or_id, want).map_err(named)?;
        match (want, &image.index) {
            (Some(w), Some(index)) if !picked => {
                let digest = index.digest.clone();
                self.image_by_entry(&digest, image.tags, Some(w))
                    .map_err(named)
            }
            _ => Ok(image),
        }
    }

    /// The image `name_or_id` names, and whether it is already `want`'s
    /// image of an index (a tag is resolved for the platform at once).
    fn find(
        &self,
        name_or_id: &str,
        want: Option<&PlatformSpec>,
    ) -> Result<(Image, bool), StoreError> {
        let not_found = || StoreError::ImageNotFound {
            name: name_or_id.to_string(),
        };
        // A tag is found in index.json alone: one image read, not all.
        if let Ok(r) = Reference::parse(name_or_id) {
            if r.digest().is_none() {
                let tagged = self
                    .tagged_manifests()?
                    .into_iter()
                    .find(|(_, tags)| tags.contains(&r));
                if let Some((digest, tags)) = tagged {
                    return match self.image_by_entry(&digest, tags, want) {
                        Ok(image) => Ok((image, true)),
                        Err(e @ StoreError::PlatformNotInImage { .. }) if want.is_some() => Err(e),
                        Err(e) => Err(StoreError::InImage {
                            image: r.familiar(),
                            source: Box::new(e),
                        }),
                    };
                }
            }
        }
        let images = self.list()?;
        let is = |i: &Image, d: &Digest| {
            &i.id == d
                || &i.manifest_digest == d
                || i.index.as_ref().is_some_and(|x| &x.digest == d)
        };
        let digest = name_or_id.parse::<Digest>().ok().or_else(|| {
            Reference::parse(name_or_id)
                .ok()
                .and_then(|r| r.digest().cloned())
        });
        if let Some(d) = &digest {
            if let Some(i) = images.iter().find(|i| is(i, d)) {
                return Ok((i.clone(), false));
            }
            // Another platform of an index.
            return self
                .index_members(&images)?
                .into_iter()
                .find(|i| is(i, d))
                .map(|i| (i, false))
                .ok_or_else(not_found);
        }
        if let Ok(r) = Reference::parse(name_or_id) {
            if let Some(i) = images.iter().find(|i| i.tags.contains(&r)) {
                return Ok((i.clone(), false));
            }
        }
        let prefix = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if !prefix.is_empty() && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return match self.by_id_prefix(&prefix.to_ascii_lowercase(), &images)? {
                Some(image) => Ok((image, false)),
                None => Err(not_found()),
            };
        }
        Err(not_found())
    }

    /// The one image among `images` (or their indexes' other images) whose
    /// id starts with `prefix`; an error when several do.
    fn by_id_prefix(&self, prefix: &str, images: &[Image]) -> Result<Option<Image>, StoreError> {
        let mut hits: Vec<Image> = images
            .iter()
            .filter(|i| i.id.hex().starts_with(prefix))
            .cloned()
            .collect();
        if hits.is_empty() {
            hits = self
                .index_members(images)?
                .into_iter()
                .filter(|i| i.id.hex().starts_with(prefix))
                .collect();
        }
        let mut ids: Vec<String> = hits.iter().map(|i| i.id.short().to_string()).collect();
        ids.dedup();
        match ids.len() {
            0 => Ok(None),
            1 => Ok(Some(hits.swap_remove(0))),
            _ => Err(StoreError::AmbiguousId {
                prefix: prefix.to_string(),
                matches: ids,
            }),
        }
    }

    /// The present images of the indexes among `images` that `list` does
    /// not show (each index shows as its default platform), untagged.
    fn index_members(&self, images: &[Image]) -> Result<Vec<Image>, StoreError> {
        let mut out = Vec::new();
        for i in images {
            let Some(index) = &i.index else { continue };
            for (_, desc, present) in index.platforms() {
                if present && desc.digest != i.manifest_digest {
                    out.push(self.image_by_manifest(&desc.digest, Vec::new())?);
                }
            }
        }
        Ok(out)
    }

    /// [`Store::resolve`], leasing what the image is made of (its blobs and
    /// its layers' snapshots) to this process in the same critical section,
    /// so a concurrent `rmi` + `prune` cannot take it away while it is used
    /// (a build's base, the image `run`, `save` or `push` read).
    pub fn resolve_leased(&self, name_or_id: &str) -> Result<Image, StoreError> {
        self.resolve_leased_for(name_or_id, None)
    }

    /// [`Store::resolve_leased`] for platform `want` (see
    /// [`Store::resolve_for`]).
    pub fn resolve_leased_for(
        &self,
        name_or_id: &str,
        want: Option<&PlatformSpec>,
    ) -> Result<Image, StoreError> {
        let _guard = self.lock(LockMode::Shared)?;
        let image = self.resolve_for(name_or_id, want)?;
        // Without a platform the caller takes the whole image (`save`,
        // `push`): every platform it holds is leased, not only the one
        // `image` shows.
        let members = match want {
            None => self.index_members(std::slice::from_ref(&image))?,
            Some(_) => Vec::new(),
        };
        let mut leased = Vec::new();
        for i in std::iter::once(&image).chain(&members) {
            lease_items(i, &mut leased);
        }
        self.content.lease().add(leased)?;
        Ok(image)
    }

    /// Leases the blobs of a cache hit (its layer) and its snapshot, if they
    /// are still there; false when the layer is gone (then the hit is no
    /// use). One critical section, as in [`Store::resolve_leased`].
    pub fn lease_cache_hit(
        &self,
        layer: Option<&Digest>,
        chain_id: Option<&Digest>,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock(LockMode::Shared)?;
        if layer.is_some_and(|d| !self.content.has(d)) {
            return Ok(false);
        }
        let items = layer
            .map(|d| Leased::Blob(d.clone()))
            .into_iter()
            .chain(chain_id.map(|c| Leased::Snapshot(c.hex().to_string())));
        self.content.lease().add(items)?;
        Ok(true)
    }

    /// Leases snapshot `key` and says whether it exists, in one critical
    /// section: if it does, no concurrent `prune` removes it while this
    /// process stacks on it; if not, the caller unpacks it, already leased.
    pub fn lease_snapshot(
        &self,
        key: &str,
        exists: impl FnOnce() -> bool,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock(LockMode::Shared)?;
        self.content
            .lease()
            .add([Leased::Snapshot(key.to_string())])?;
        Ok(exists())
    }

    /// Writes `config` and a manifest over `layers` (whose blobs must be in
    /// the store) and points `tags` at it. With no tags the image is listed
    /// as dangling until tagged or pruned.
    pub fn commit_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        tags: &[Reference],
    ) -> Result<Image, StoreError> {
        self.commit_annotated_image(config, layers, tags, &BTreeMap::new())
    }

    /// [`Store::commit_image`] with `annotations` on the manifest
    /// (`--annotation`): the same image id, another manifest digest.
    pub fn commit_annotated_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        tags: &[Reference],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Image, StoreError> {
        let config_bytes =
            serde_json::to_vec(config).map_err(|e| StoreError::json("image config", e))?;
        let config_digest = Digest::of(&config_bytes);
        let name = tags
            .first()
            .map_or_else(|| config_digest.to_string(), Reference::familiar);
        check_layer_count(&name, layers.len())?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::LayerCountMismatch {
                image: config_digest,
                diff_ids: config.rootfs.diff_ids.len(),
                layers: layers.len(),
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_string()),
            config: Descriptor::new(
                MEDIA_TYPE_OCI_CONFIG,
                config_digest,
                config_bytes.len() as u64,
            ),
            layers: layers.to_vec(),
            annotations: annotations.clone(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| StoreError::json("manifest", e))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let desc = Descriptor::new(
            MEDIA_TYPE_OCI_MANIFEST,
            manifest_digest.clone(),
            manifest_bytes.len() as u64,
        );
        // The small blobs are written under the lock, so a concurrent prune
        // cannot delete them before the index references them.
        self.add_to_index_after(&[(desc, tags.to_vec())], || {
            self.content.put(&config_bytes)?;
            self.content.put(&manifest_bytes)?;
            Ok(())
        })?;
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        self.image_by_manifest(&manifest_digest, tags)
    }

    /// Lists each manifest (whose blobs must be in the store) in the index
    /// under its tags, moving each tag from whatever image had it. All
    /// entries are added in one update, so either all appear or none.
    pub fn add_to_index(&self, entries: &[(Descriptor, Vec<Reference>)]) -> Result<(), StoreError> {
        self.add_to_index_after(entries, || Ok(()))
    }

    /// Like [`Store::add_to_index`], running `before` (e.g. publishing the
    /// blobs) under the same exclusive lock, so `prune` cannot remove them
    /// in between. Every manifest, config and layer is checked present.
    pub fn add_to_index_after(
        &self,
        entries: &[(Descriptor, Vec<Reference>)],
        before: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for t in entries.iter().flat_map(|(_, tags)| tags) {
            check_taggable(t)?;
        }
        self.update_index(|index| {
            before()?;
            for (desc, tags) in entries {
                self.check_complete(&desc.digest)?;
                add_entry(index, desc, tags);
            }
            Ok(())
        })
    }

    /// Checks that the manifest `digest` names has its config (readable)
    /// and layers in the store; for an index, that each of its images here does, and
    /// that at least one is.
    fn check_complete(&self, digest: &Digest) -> Result<(), StoreError> {
        let bytes = self.content.read(digest)?;
        if Self::is_index_document(&bytes) {
            let index = self.image_index_from(digest, &bytes)?;
            let mut any = false;
            for (_, desc, present) in index.platforms() {
                if present {
                    self.check_complete(&desc.digest)?;
                    any = true;
                }
            }
            if !any {
                let first = index.index.manifests.first().map(|d| d.digest.clone());
                return Err(StoreError::BlobMissing {
                    digest: first.unwrap_or_else(|| digest.clone()),
                });
            }
            return Ok(());
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::json(format!("manifest {digest}"), e))?;
        // A pulled image too deep to run is refused here, before it is
        // tagged or unpacked.
        check_layer_count(&digest.to_string(), manifest.layers.len())?;
        let blobs = manifest.blobs();
        if let Some(missing) = blobs.into_iter().find(|b| !self.content.has(&b.digest)) {
            return Err(StoreError::BlobMissing {
                digest: missing.digest.clone(),
            });
        }
        // A tag on an image whose config cannot be read would break every
        // listing of the store: refuse it here, whoever tags.
        self.read_json::<ImageConfig>(&manifest.config.digest, "config")?;
        Ok(())
    }

    /// The descriptor `index.json` lists `image` by: its index's, when it
    /// was found through one, else its manifest's.
    pub fn entry_descriptor(&self, image: &Image) -> Result<Descriptor, StoreError> {
        if let Some(index) = &image.index {
            let size = self.content.size(&index.digest)?;
            return Ok(Descriptor::new(
                &index.media_type,
                index.digest.clone(),
                size,
            ));
        }
        let size = self.content.size(&image.manifest_digest)?;
        let media_type = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| MEDIA_TYPE_OCI_MANIFEST.to_string());
        Ok(Descriptor::new(
            &media_type,
            image.manifest_digest.clone(),
            size,
        ))
    }

    /// The index entry for `image`: its manifest's descriptor with its
    /// platform.
    fn platform_entry(&self, image: &Image) -> Result<(PlatformSpec, Descriptor), StoreError> {
        let platform = image
            .platform()
            .ok_or_else(|| StoreError::PlatformNotInImage {
                image: image.id.to_string(),
                wanted: "a stated platform".to_string(),
                available: Vec::new(),
            })?;
        let size = self.content.size(&image.manifest_digest)?;
        let media_type = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| MEDIA_TYPE_OCI_MANIFEST.to_string());
        let mut desc = Descriptor::new(&media_type, image.manifest_digest.clone(), size);
        desc.platform = Some(platform.to_platform());
        Ok((platform, desc))
    }

    /// Writes an OCI image index over `images` (one per platform, each
    /// stating its platform) and points `tags` at it: what a
    /// multi-platform build and `rbk manifest create` make.
    pub fn commit_index(
        &self,
        images: &[Image],
        tags: &[Reference],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Image, StoreError> {
        let mut entries: Vec<(PlatformSpec, Descriptor)> = Vec::new();
        for image in images {
            let (platform, desc) = self.platform_entry(image)?;
            if let Some((_, first)) = entries.iter().find(|(p, _)| *p == platform) {
                return Err(StoreError::DuplicatePlatform {
                    platform: platform.to_string(),
                    first: first.digest.to_string(),
                    second: desc.digest.to_string(),
                });
            }
            entries.push((platform, desc));
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
            manifests: entries.into_iter().map(|(_, d)| d).collect(),
            annotations: annotations.clone(),
        };
        self.commit_index_document(&index, tags)
    }

    fn commit_index_document(
        &self,
        index: &Index,
        tags: &[Reference],
    ) -> Result<Image, StoreError> {
        for t in tags {
            check_taggable(t)?;
        }
        let digest = self.update_index(|entries| self.list_index_in(entries, index, tags))?;
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        self.image_by_entry(&digest, tags, None)
    }

    /// Stores `index` and lists it in `entries` (the caller holds the
    /// exclusive lock) under `tags`; its platforms' images are listed
    /// through it from then on, no longer as images without a name.
    fn list_index_in(
        &self,
        entries: &mut Index,
        index: &Index,
        tags: &[Reference],
    ) -> Result<Digest, StoreError> {
        let bytes = serde_json::to_vec(index).map_err(|e| StoreError::json("image index", e))?;
        let digest = self.content.put(&bytes)?;
        self.check_complete(&digest)?;
        let desc = Descriptor::new(MEDIA_TYPE_OCI_INDEX, digest.clone(), bytes.len() as u64);
        add_entry(entries, &desc, tags);
        let members: HashSet<&Digest> = index.manifests.iter().map(|d| &d.digest).collect();
        entries
            .manifests
            .retain(|d| d.ref_name().is_some() || !members.contains(&d.digest));
        Ok(digest)
    }

    /// Puts `image` (of one platform) under `r` beside the platforms `r`
    /// already names (`rbk import --platform`): into `r`'s index, replacing
    /// the entry of the same platform; a single image of another platform
    /// under `r` makes an index of both; one of the same platform (or no
    /// image) is replaced. One update of the index: two processes adding
    /// platforms to one name at once both land.
    pub fn add_platform(&self, r: &Reference, image: &Image) -> Result<Image, StoreError> {
        check_taggable(r)?;
        let (platform, desc) = self.platform_entry(image)?;
        let name = r.to_string();
        let digest = self.update_index(|entries| {
            // Made just before, untagged: a concurrent prune may have
            // collected it.
            self.check_complete(&desc.digest)?;
            let current = entries
                .manifests
                .iter()
                .find(|d| d.ref_name() == Some(name.as_str()))
                .map(|d| d.digest.clone());
            let mut manifests = match &current {
                Some(d) => self.platform_entries(d, &platform)?,
                None => Vec::new(),
            };
            if manifests.is_empty() {
                set_tag(entries, &desc_without_platform(&desc), r);
                return Ok(image.manifest_digest.clone());
            }
            manifests.retain(|d| {
                d.platform
                    .as_ref()
                    .is_none_or(|p| PlatformSpec::of_platform(p) != platform)
            });
            manifests.push(desc.clone());
            let index = Index {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
                manifests,
                annotations: BTreeMap::new(),
            };
            let digest = self.list_index_in(entries, &index, std::slice::from_ref(r))?;
            // The index it amends is not kept as an image without a name.
            if let Some(old) = current.filter(|old| *old != digest) {
                entries
                    .manifests
                    .retain(|d| d.ref_name().is_some() || d.digest != old);
            }
            Ok(digest)
        })?;
        self.image_by_entry(&digest, vec![r.clone()], None)
    }

    /// The index entries of what `digest` (an index.json entry) holds, to
    /// add a `platform` image beside: an index's entries; a single image of
    /// another platform as one entry; nothing for one of the same platform
    /// (or stating none), which the new image replaces.
    fn platform_entries(
        &self,
        digest: &Digest,
        platform: &PlatformSpec,
    ) -> Result<Vec<Descriptor>, StoreError> {
        let bytes = self.content.read(digest)?;
        if Self::is_index_document(&bytes) {
            return Ok(self.image_index_from(digest, &bytes)?.index.manifests);
        }
        let current = self.image_from_manifest(digest, &bytes, Vec::new())?;
        Ok(match self.platform_entry(&current) {
            Ok((p, d)) if &p != platform => vec![d],
            _ => Vec::new(),
        })
    }

    /// Points tag `r` at `image` (moving it from any other image); at its
    /// index when it was found through one.
    pub fn tag(&self, image: &Image, r: &Reference) -> Result<(), StoreError> {
        check_taggable(r)?;
        let desc = self.entry_descriptor(image)?;
        self.update_index(|index| {
            // A concurrent prune may have collected a dangling image.
            if !self.content.has(&desc.digest) {
                return Err(StoreError::BlobMissing {
                    digest: desc.digest.clone(),
                });
            }
            set_tag(index, &desc, r);
            Ok(())
        })
    }

    /// Removes tag `r`. An image that loses its last tag stays, dangling.
    pub fn untag(&self, r: &Reference) -> Result<(), StoreError> {
        let name = r.to_string();
        self.update_index(|index| {
            let pos = index
                .manifests
                .iter()
                .position(|d| d.ref_name() == Some(name.as_str()))
                .ok_or_else(|| StoreError::TagNotFound {
                    reference: r.familiar(),
                })?;
            let removed = index.manifests.remove(pos);
            keep_listed(index, &removed);
            Ok(())
        })
    }

    /// `rmi` semantics. A tag: untag it, and delete the image if it was its
    /// last. An id or digest: delete the image and all its tags, refusing
    /// when several tags point at it unless `force`.
    /// A tag is found from the index alone, so an image whose blobs are
    /// corrupt or missing can still be removed by name.
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<Vec<RemoveEvent>, StoreError> {
        let by_tag = Reference::parse(name_or_id).ok().and_then(|r| {
            let (digest, tags) = self
                .tagged_manifests()
                .ok()?
                .into_iter()
                .find(|(_, tags)| r.digest().is_none() && tags.contains(&r))?;
            Some((r, digest, tags))
        });
        let (by_tag, manifest_digest, tags, id) = match by_tag {
            Some((r, digest, tags)) => {
                // The id is only for the report; a broken manifest must not
                // stop its removal.
                let id = self
                    .read_json::<Manifest>(&digest, "manifest")
                    .map_or_else(|_| digest.clone(), |m| m.config.digest);
                (Some(r), digest, tags, id)
            }
            None => {
                let image = self.resolve(name_or_id)?;
                let entry = image.entry_digest().clone();
                (None, entry, image.tags, image.id)
            }
        };
        let untag: Vec<Reference> = match &by_tag {
            Some(r) if tags.len() > 1 => vec![r.clone()],
            Some(_) => tags.clone(),
            None if tags.len() > 1 && !force => {
                return Err(StoreError::ImageHasTags {
                    id: id.short().to_string(),
                    tags: tags.iter().map(Reference::familiar).collect(),
                })
            }
            None => tags.clone(),
        };
        let delete = untag.len() == tags.len();
        let names: HashSet<String> = untag.iter().map(|r| r.to_string()).collect();
        self.update_index(|index| {
            index.manifests.retain(|d| {
                if d.digest != manifest_digest {
                    return true;
                }
                match d.ref_name() {
                    Some(n) => !names.contains(n),
                    None => !delete,
                }
            });
            Ok(())
        })?;
        let mut events: Vec<RemoveEvent> = untag.into_iter().map(RemoveEvent::Untagged).collect();
        if delete {
            events.push(RemoveEvent::Deleted(id));
        }
        Ok(events)
    }

    /// Deletes what nothing needs: dangling images, blobs no tagged image
    /// or cache record reaches, and snapshots (`snapshots/<chain-id-hex>`)
    /// of no kept image or cache record. Only directories named by a chain
    /// id are considered, so snapshots in progress are left alone. Whatever
    /// a running process holds in its lease (a build's base, its cache hits,
    /// the layers it just made) is spared, and so are the dead processes'
    /// lease files swept. A snapshot is renamed out of the way before it is
    /// deleted, so an interrupted prune never leaves half of one behind.
    pub fn prune(&self, opts: PruneOptions) -> Result<PruneReport, StoreError> {
        let _guard = self.lock(LockMode::Exclusive)?;
        let mut report = PruneReport::default();
        if opts.cache {
            report.cache_records = self.cache.clear()?;
        }
        let mut index = self.read_index()?;
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_chains: HashSet<Digest> = HashSet::new();
        let mut dropped: Vec<Digest> = Vec::new();
        index.manifests.retain(|d| {
            let keep = d.ref_name().is_some();
            if !keep && !dropped.contains(&d.digest) {
                dropped.push(d.digest.clone());
            }
            keep
        });
        for desc in &index.manifests {
            if !keep_blobs.insert(desc.digest.clone()) {
                continue;
            }
            let name = desc.ref_name().unwrap_or(desc.digest.as_str()).to_string();
            let wrap = |e| StoreError::InImage {
                image: name.clone(),
                source: Box::new(e),
            };
            self.keep_image(&desc.digest, &mut keep_blobs, &mut keep_chains)
                .map_err(wrap)?;
        }
        // Cache records name only their own chain (an image's chains hold
        // every ancestor already).
        let mut loose_chains: HashSet<Digest> = HashSet::new();
        for rec in self.cache.list()? {
            keep_blobs.extend(rec.layer.map(|l| l.digest));
            loose_chains.extend(rec.chain_id.filter(|c| !keep_chains.contains(c)));
        }
        report.images = dropped
            .into_iter()
            .filter(|d| !keep_blobs.contains(d))
            .collect();
        self.write_index(&index)?;
        // Candidates first, leases after: anything that appeared before the
        // listing was leased before the leases are read (see crate::lease).
        let blobs = self.content.list()?;
        let snapshots = self.snapshot_chains()?;
        let own = self.content.lease().path();
        let leased = live_leases(&self.root, own.as_deref(), true)?;
        for d in blobs {
            if !keep_blobs.contains(&d) && !leased.blobs.contains(&d) {
                report.reclaimed += self.content.size(&d).unwrap_or(0);
                self.content.delete(&d)?;
                report.blobs.push(d);
            }
        }
        // Records of compressed layer variants whose blobs just went.
        self.sweep_variant_records();
        let keep = self.kept_snapshots(&snapshots, &keep_chains, &loose_chains, &leased.snapshots);
        for (chain, path) in snapshots {
            if keep.contains(chain.hex()) {
                continue;
            }
            report.reclaimed += dir_size(&path);
            self.remove_snapshot_dir(&path)?;
            report.snapshots.push(chain);
        }
        // Records of layers made on demand whose snapshots just went.
        if !report.snapshots.is_empty() {
            crate::lazy::sweep(&self.content);
            self.sweep_layer_sizes();
        }
        Ok(report)
    }

    /// Adds what the manifest or index `digest` needs to the kept blobs and
    /// snapshots: for an index, each of its images present here.
    fn keep_image(
        &self,
        digest: &Digest,
        keep_blobs: &mut HashSet<Digest>,
        keep_chains: &mut HashSet<Digest>,
    ) -> Result<(), StoreError> {
        let bytes = self.content.read(digest)?;
        if Self::is_index_document(&bytes) {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::json(format!("index {digest}"), e))?;
            for d in &index.manifests {
                if self.content.has(&d.digest) && keep_blobs.insert(d.digest.clone()) {
                    self.keep_image(&d.digest, keep_blobs, keep_chains)?;
                }
            }
            return Ok(());
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::json(format!("manifest {digest}"), e))?;
        keep_blobs.insert(manifest.config.digest.clone());
        keep_blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let config: ImageConfig = self.read_json(&manifest.config.digest, "config")?;
        keep_chains.extend(chain_ids(&config.rootfs.diff_ids));
        Ok(())
    }

    /// The snapshots (by key) prune keeps: those of kept chains or leased,
    /// and every parent of those — an overlay snapshot is its parents'
    /// trees plus its own (a cache record names only its own chain, and its
    /// base image's snapshot may have no other keeper). `image_chains` are
    /// closed under parents already (every prefix of an image's layers);
    /// only the `loose` and leased ones are walked up, to the first kept
    /// parent.
    fn kept_snapshots(
        &self,
        snapshots: &[(Digest, PathBuf)],
        image_chains: &HashSet<Digest>,
        loose: &HashSet<Digest>,
        leased: &HashSet<String>,
    ) -> HashSet<String> {
        let mut keep: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        for (chain, _) in snapshots {
            if image_chains.contains(chain) {
                keep.insert(chain.hex().to_string());
            } else if loose.contains(chain) || leased.contains(chain.hex()) {
                keep.insert(chain.hex().to_string());
                todo.push(chain.hex().to_string());
            }
        }
        // A container's kept layer (`run-<id>`, a stopped container's files
        // until `rbk rm`) stands on its image's layers, tagged or not.
        let containers = fs::read_dir(self.root.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with("run-"));
        todo.extend(containers);
        while let Some(key) = todo.pop() {
            if let Some(parent) = self.snapshot_parent(&key) {
                if keep.insert(parent.clone()) {
                    todo.push(parent);
                }
            }
        }
        keep
    }

    /// The parent of snapshot `key` (a chain id's hex), from its metadata.
    fn snapshot_parent(&self, key: &str) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Meta {
            parent: Option<String>,
        }
        let path = self.root.join("snapshots").join(key).join("meta.json");
        let bytes = fs::read(path).ok()?;
        serde_json::from_slice::<Meta>(&bytes).ok()?.parent
    }

    /// The committed-layer snapshot directories (named by a chain id).
    fn snapshot_chains(&self) -> Result<Vec<(Digest, PathBuf)>, StoreError> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at("list", &dir)? {
            let entry = entry.at("list", &dir)?;
            let chain = entry
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
            if let Some(chain) = chain {
                out.push((chain, entry.path()));
            }
        }
        Ok(out)
    }

    /// Deletes a snapshot directory: first renamed into the snapshots'
    /// staging area (one atomic step, after which it no longer exists as a
    /// snapshot), then removed. A prune killed in between leaves only
    /// staging garbage, which the next open sweeps.
    pub(crate) fn remove_snapshot_dir(&self, path: &Path) -> Result<(), StoreError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let staging = self.root.join("snapshots").join(".tmp");
        fs::create_dir_all(&staging).at("create directory", &staging)?;
        let grave = staging.join(format!(
            "{}-gc-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(path, &grave).at("move aside", path)?;
        remove_tree(&grave)
    }
}

/// `desc` as `index.json` lists a single image: without a platform.
fn desc_without_platform(desc: &Descriptor) -> Descriptor {
    let mut d = desc.clone();
    d.platform = None;
    d
}

/// Lists `desc` in `index` under `tags` (or as dangling when untagged).
fn add_entry(index: &mut Index, desc: &Descriptor, tags: &[Reference]) {
    let mut plain = desc.clone();
    plain.annotations.remove(ANNOTATION_REF_NAME);
    for t in tags {
        set_tag(index, &plain, t);
    }
    if !index.manifests.iter().any(|d| d.digest == desc.digest) {
        index.manifests.push(plain);
    }
}

fn check_taggable(r: &Reference) -> Result<(), StoreError> {
    if r.digest().is_some() || r.tag().is_none() {
        return Err(StoreError::TagWithDigest {
            reference: r.familiar(),
        });
    }
    Ok(())
}

/// Moves tag `r` to the manifest `desc` within `index`.
fn set_tag(index: &mut Index, desc: &Descriptor, r: &Reference) {
    let name = r.to_string();
    if let Some(pos) = index
        .manifests
        .iter()
        .position(|d| d.ref_name() == Some(name.as_str()))
    {
        let old = index.manifests.remove(pos);
        if old.digest != desc.digest {
            keep_listed(index, &old);
        }
    }
    // The image now has a tag, so its dangling entry is redundant.
    index
        .manifests
        .retain(|d| !(d.digest == desc.digest && d.ref_name().is_none()));
    let mut entry = desc.clone();
    entry
        .annotations
        .insert(ANNOTATION_REF_NAME.to_string(), name);
    index.manifests.push(entry);
}

/// After an entry left the index, keeps its image listed (as dangling) if no
/// other entry lists it, as Docker keeps a retagged image as `<none>`.
fn keep_listed(index: &mut Index, removed: &Descriptor) {
    if !index.manifests.iter().any(|d| d.digest == removed.digest) {
        let mut dangling = removed.clone();
        dangling.annotations.remove(ANNOTATION_REF_NAME);
        index.manifests.push(dangling);
    }
}

/// Bytes used by the files under `path` (not following symlinks).
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Deletes a tree, first making directories writable if a read-only one
/// (common in unpacked images) stops an unprivileged user.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    fs::remove_dir_all(path).at("delete", path)
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// Whether `media_type` names a single-image manifest rbk can store.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// What leasing `image` keeps: its manifest, config, index, layers and its
/// layers' snapshots.
fn lease_items(image: &Image, out: &mut Vec<Leased>) {
    let blobs = [&image.manifest_digest, &image.manifest.config.digest]
        .into_iter()
        .chain(image.index.as_ref().map(|i| &i.digest))
        .chain(image.manifest.layers.iter().map(|l| &l.digest))
        .map(|d| Leased::Blob(d.clone()));
    out.extend(blobs);
    out.extend(
        image
            .chain_ids()
            .into_iter()
            .map(|c| Leased::Snapshot(c.hex().to_string())),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_tag_moves_and_keeps_old_image_dangling() {
        let a = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, Digest::of(b"a"), 1);
        let b = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, Digest::of(b"b"), 1);
        let r = Reference::parse("x").unwrap();
        let mut idx = Index::default();
        set_tag(&mut idx, &a, &r);
        set_tag(&mut idx, &b, &r);
        assert_eq!(idx.manifests.len(), 2);
        assert_eq!(idx.manifests[0].digest, a.digest);
        assert_eq!(idx.manifests[0].ref_name(), None);
        assert_eq!(
            idx.manifests[1].ref_name(),
            Some("docker.io/library/x:latest")
        );
    }
}
