//! Writing images: a config and manifest over layers already stored, an
//! index over images of several platforms, a platform added beside those a
//! name has; each listed in `index.json` in one update.

use std::collections::{BTreeMap, HashSet};

use super::index::{add_entry, check_taggable, desc_without_platform, set_tag};
use super::{check_layer_count, Image, Store};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::oci::{
    Descriptor, ImageConfig, Index, Manifest, PlatformSpec, MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

impl Store {
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
    pub(crate) fn platform_entry(
        &self,
        image: &Image,
    ) -> Result<(PlatformSpec, Descriptor), StoreError> {
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
        self.commit_attested_index(images, &[], tags, annotations)
    }

    /// The index entries of `images`, one per platform: two of the same
    /// platform are an error naming both.
    pub(crate) fn index_entries(&self, images: &[Image]) -> Result<Vec<Descriptor>, StoreError> {
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
        Ok(entries.into_iter().map(|(_, d)| d).collect())
    }

    pub(crate) fn commit_index_document(
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
}
