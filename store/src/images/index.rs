//! `index.json`: reading it, changing it under the exclusive lock, and the
//! tag operations (`tag`, `untag`, `rmi`) that are changes of it alone.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::PathBuf;

use super::{Image, Store};
use crate::content::write_atomic;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::lock::LockMode;
use crate::oci::{Descriptor, Index, Manifest, ANNOTATION_REF_NAME};
use crate::reference::Reference;

/// What `remove` did, in order, for `rmi` to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// A tag was removed.
    Untagged(Reference),
    /// The image left the index (its blobs go at the next prune).
    Deleted(Digest),
}

impl Store {
    fn index_path(&self) -> PathBuf {
        self.layout.index()
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
    pub(super) fn update_index<T>(
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
}

/// `desc` as `index.json` lists a single image: without a platform.
pub(super) fn desc_without_platform(desc: &Descriptor) -> Descriptor {
    let mut d = desc.clone();
    d.platform = None;
    d
}

/// Lists `desc` in `index` under `tags` (or as dangling when untagged).
pub(super) fn add_entry(index: &mut Index, desc: &Descriptor, tags: &[Reference]) {
    let mut plain = desc.clone();
    plain.annotations.remove(ANNOTATION_REF_NAME);
    for t in tags {
        set_tag(index, &plain, t);
    }
    if !index.manifests.iter().any(|d| d.digest == desc.digest) {
        index.manifests.push(plain);
    }
}

pub(super) fn check_taggable(r: &Reference) -> Result<(), StoreError> {
    if r.digest().is_some() || r.tag().is_none() {
        return Err(StoreError::TagWithDigest {
            reference: r.familiar(),
        });
    }
    Ok(())
}

/// Moves tag `r` to the manifest `desc` within `index`.
pub(super) fn set_tag(index: &mut Index, desc: &Descriptor, r: &Reference) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::oci::MEDIA_TYPE_OCI_MANIFEST;

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
