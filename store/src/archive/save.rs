//! `save`: images out of the store as one tar that is both a
//! docker-archive and an OCI image layout.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{blob_path, DockerManifestEntry, ANNOTATION_CONTAINERD_NAME};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::{Image, Store};
use crate::oci::{Index, ANNOTATION_REF_NAME};
use crate::reference::Reference;

/// An image to save and the names to record for it.
#[derive(Debug, Clone)]
pub struct SaveItem {
    /// The image.
    pub image: Image,
    /// The names it gets in the archive (may be empty).
    pub names: Vec<Reference>,
}

/// Resolves `rbk save` arguments: a tag saves the image under that tag;
/// an id saves it under all its tags. Several names of one image share one
/// entry.
pub fn save_items(store: &Store, names: &[String]) -> Result<Vec<SaveItem>, StoreError> {
    let mut items: Vec<SaveItem> = Vec::new();
    for name in names {
        let image = store.resolve_leased(name)?;
        let tag = Reference::parse(name)
            .ok()
            .filter(|r| r.digest().is_none() && image.tags.contains(r));
        let names = match tag {
            Some(r) => vec![r],
            None => image.tags.clone(),
        };
        match items
            .iter_mut()
            .find(|i| i.image.entry_digest() == image.entry_digest())
        {
            Some(item) => {
                for n in names {
                    if !item.names.contains(&n) {
                        item.names.push(n);
                    }
                }
            }
            None => items.push(SaveItem { image, names }),
        }
    }
    Ok(items)
}

fn tar_header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    h.set_uid(0);
    h.set_gid(0);
    // A fixed time keeps two saves of the same images byte-identical.
    h.set_mtime(0);
    h
}

fn write_err(e: io::Error) -> StoreError {
    StoreError::Io {
        op: "write the archive to",
        path: "output".into(),
        source: e,
    }
}

/// Writes `items` as one tar that is both a docker-archive and an OCI
/// layout. Blobs are streamed from the store and verified on the way.
pub fn save(store: &Store, items: &[SaveItem], out: impl Write) -> Result<(), StoreError> {
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar_header(0, 0o755, tar::EntryType::Directory);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(write_err)?;
    }
    let mut written: Vec<Digest> = Vec::new();
    let mut docs = Documents::default();
    for item in items {
        write_blobs(store, &mut tar, item, &mut written)?;
        docs.add(store, item)?;
    }
    docs.write(&mut tar)?;
    let mut w = tar.into_inner().map_err(write_err)?;
    w.flush().map_err(write_err)
}

/// Writes an image's manifest, config and layer blobs, each once per
/// archive (`written` holds those already in it).
fn write_blobs<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    item: &SaveItem,
    written: &mut Vec<Digest>,
) -> Result<(), StoreError> {
    let img = &item.image;
    let mut blobs = Vec::new();
    // A multi-platform image goes whole: its index and every platform's
    // image.
    if let Some(index) = &img.index {
        blobs.push(index.digest.clone());
    }
    for child in store.index_images(img)? {
        blobs.extend([child.manifest_digest.clone(), child.id.clone()]);
        blobs.extend(child.manifest.layers.iter().map(|l| l.digest.clone()));
    }
    // Its attestations, as they are.
    for d in img.index.iter().flat_map(|i| i.attachments()) {
        let m = store.manifest_as_stored(&d.digest)?;
        blobs.push(d.digest.clone());
        blobs.extend(m.blobs.iter().map(|b| b.digest.clone()));
    }
    let name = item
        .names
        .first()
        .map_or_else(|| img.id.short().to_string(), Reference::familiar);
    let in_image = |e| StoreError::InImage {
        image: name.clone(),
        source: Box::new(e),
    };
    for d in blobs {
        if written.contains(&d) {
            continue;
        }
        let size = store.content.size(&d).map_err(in_image)?;
        let reader = store.content.open_blob(&d).map_err(in_image)?;
        let mut h = tar_header(size, 0o644, tar::EntryType::Regular);
        let path = blob_path(&d);
        tar.append_data(&mut h, &path, reader)
            .map_err(|e| StoreError::from_io("write the archive from", &store.content.path(&d), e))
            .map_err(in_image)?;
        written.push(d);
    }
    Ok(())
}

/// The archive's index documents: OCI's `index.json`, Docker's
/// `manifest.json` and its legacy `repositories`.
#[derive(Default)]
struct Documents {
    index: Index,
    docker: Vec<DockerManifestEntry>,
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

impl Documents {
    /// Lists `item` (under each of its names) in all three.
    fn add(&mut self, store: &Store, item: &SaveItem) -> Result<(), StoreError> {
        let img = &item.image;
        // OCI's index.json names the index of a multi-platform image;
        // Docker's manifest.json (one image per entry) this machine's.
        let base = store.entry_descriptor(img)?;
        if item.names.is_empty() {
            self.index.manifests.push(base.clone());
        }
        for name in &item.names {
            // Docker's convention: ref.name holds the tag (what `umoci
            // --image dir:TAG` and `skopeo oci-archive:f:TAG` match), the
            // containerd annotation the full name.
            let mut d = base.clone();
            if let Some(tag) = name.tag() {
                d.annotations
                    .insert(ANNOTATION_REF_NAME.into(), tag.to_string());
            }
            d.annotations
                .insert(ANNOTATION_CONTAINERD_NAME.into(), name.to_string());
            self.index.manifests.push(d);
            if let (Some(tag), Some(top)) = (name.tag(), img.config.rootfs.diff_ids.last()) {
                self.repositories
                    .entry(name.familiar_repository())
                    .or_default()
                    .insert(tag.to_string(), top.hex().to_string());
            }
        }
        let tags: Vec<String> = item
            .names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(Reference::familiar)
            .collect();
        self.docker.push(DockerManifestEntry {
            config: blob_path(&img.id),
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: img
                .manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect(),
        });
        Ok(())
    }

    /// Appends `oci-layout` and the three documents.
    fn write<W: Write>(&self, tar: &mut tar::Builder<W>) -> Result<(), StoreError> {
        let mut put = |path: &str, data: &[u8]| -> Result<(), StoreError> {
            let mut h = tar_header(data.len() as u64, 0o644, tar::EntryType::Regular);
            tar.append_data(&mut h, path, data).map_err(write_err)
        };
        put("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        put("index.json", &to_json("index.json", &self.index)?)?;
        put("manifest.json", &to_json("manifest.json", &self.docker)?)?;
        put(
            "repositories",
            &to_json("repositories", &self.repositories)?,
        )
    }
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::json(what, e))
}
