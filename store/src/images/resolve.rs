//! Reading images back: by manifest, by `index.json` entry (an index's
//! platform), by name, id or digest; listing them; and leasing what a
//! found image is made of, in the same critical section.

use super::{is_index_media_type, BrokenImage, Image, ImageIndex, Store};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::lease::Leased;
use crate::lock::LockMode;
use crate::oci::{ImageConfig, Index, Manifest, PlatformSpec, MEDIA_TYPE_OCI_INDEX};
use crate::reference::Reference;

impl Store {
    /// Loads the image whose manifest is `manifest_digest`.
    pub fn image_by_manifest(
        &self,
        manifest_digest: &Digest,
        tags: Vec<Reference>,
    ) -> Result<Image, StoreError> {
        let bytes = self.content.read(manifest_digest)?;
        self.image_from_manifest(manifest_digest, &bytes, tags)
    }

    pub(super) fn image_from_manifest(
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
    pub(super) fn image_index_from(
        &self,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<ImageIndex, StoreError> {
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
    pub(crate) fn lease_snapshot(
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
