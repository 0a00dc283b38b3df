//! Images with attestations: an index over each platform's image and, for
//! each, the attestation manifest BuildKit lists beside it (platform
//! `unknown/unknown`, annotated `vnd.docker.reference.type:
//! attestation-manifest` and `vnd.docker.reference.digest: <image>`), whose
//! layers are in-toto statements about that image's manifest.
//!
//! The store keeps layers uncompressed; a push or an archive compresses
//! them, so the manifest that leaves has another digest than the one the
//! statements name. [`Store::rebind_attachment`] makes the attestation
//! manifest for the manifest that leaves: the same statements with their
//! subject's digest replaced (the image's config, and so what was built,
//! is the same; only the layers' encoding differs). An attachment it cannot
//! read that way (a signed envelope, another media type, a subject that is
//! not the image) is left out, as before.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::{Image, Store};
use crate::oci::{Descriptor, Index, Manifest, MEDIA_TYPE_OCI_INDEX};
use crate::reference::Reference;

/// The media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub use crate::oci::REFERENCE_DIGEST;

/// An attestation manifest to list beside an image: its index entry (with
/// the annotations naming the image's manifest) and its bytes.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The index entry.
    pub descriptor: Descriptor,
    /// The manifest's bytes (their digest is `descriptor.digest`).
    pub manifest: Vec<u8>,
    /// The config's and layers' bytes.
    pub blobs: Vec<Vec<u8>>,
}

/// An attestation manifest made for an exported image: its entry and the
/// manifest (its blobs are in the content store).
#[derive(Debug, Clone)]
pub struct Rebound {
    /// The index entry, naming the exported manifest.
    pub descriptor: Descriptor,
    /// The manifest's bytes.
    pub bytes: Vec<u8>,
    /// The manifest.
    pub manifest: Manifest,
}

impl Store {
    /// Writes an index over `images` (one per platform) followed by
    /// `attachments` and points `tags` at it, as BuildKit lays out an
    /// image it attested. Each attachment's blobs and manifest are stored
    /// first and checked against its descriptor.
    pub fn commit_attested_index(
        &self,
        images: &[Image],
        attachments: &[Attachment],
        tags: &[Reference],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Image, StoreError> {
        let mut manifests = self.index_entries(images)?;
        for a in attachments {
            for b in &a.blobs {
                self.content.put(b)?;
            }
            let digest = self.content.put(&a.manifest)?;
            if digest != a.descriptor.digest {
                return Err(StoreError::Corrupt {
                    expected: a.descriptor.digest.clone(),
                    actual: digest,
                });
            }
            manifests.push(a.descriptor.clone());
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
            manifests,
            annotations: annotations.clone(),
        };
        self.commit_index_document(&index, tags)
    }

    /// The attestation manifest `entry` (listed in an index beside the
    /// image manifest `from`) made for the same image leaving the store as
    /// manifest `to` (`to_size` bytes): its in-toto statements' subjects
    /// naming `from` name `to`. `None` when the attachment is not plain
    /// in-toto statements about `from`.
    pub fn rebind_attachment(
        &self,
        entry: &Descriptor,
        from: &Digest,
        to: &Digest,
    ) -> Result<Option<Rebound>, StoreError> {
        let bytes = self.content.read(&entry.digest)?;
        let Ok(mut manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
            return Ok(None);
        };
        let mut renamed: Vec<(String, String)> = Vec::new();
        for layer in &mut manifest.layers {
            if layer.media_type != IN_TOTO_MEDIA_TYPE {
                return Ok(None);
            }
            let statement = self.content.read(&layer.digest)?;
            let Some(rebound) = rebind_statement(&statement, from, to) else {
                return Ok(None);
            };
            let digest = self.content.put(&rebound)?;
            renamed.push((layer.digest.to_string(), digest.to_string()));
            layer.digest = digest;
            layer.size = rebound.len() as u64;
        }
        // The config lists the statements as its diff ids.
        let config = self.content.read(&manifest.config.digest)?;
        if let Ok(mut config) = serde_json::from_slice::<Value>(&config) {
            if let Some(ids) = config
                .pointer_mut("/rootfs/diff_ids")
                .and_then(Value::as_array_mut)
            {
                for id in ids.iter_mut() {
                    if let Some((_, new)) = renamed.iter().find(|(old, _)| id == old) {
                        *id = Value::String(new.clone());
                    }
                }
            }
            let bytes = serde_json::to_vec(&config)
                .map_err(|e| StoreError::json("attestation config", e))?;
            manifest.config.digest = self.content.put(&bytes)?;
            manifest.config.size = bytes.len() as u64;
        }
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| StoreError::json(format!("attestation manifest {}", entry.digest), e))?;
        let mut descriptor = entry.clone();
        descriptor.digest = self.content.put(&bytes)?;
        descriptor.size = bytes.len() as u64;
        descriptor
            .annotations
            .insert(REFERENCE_DIGEST.to_string(), to.to_string());
        Ok(Some(Rebound {
            descriptor,
            bytes,
            manifest,
        }))
    }
}

/// `statement` (an in-toto statement's JSON) with every subject whose
/// sha256 is `from`'s naming `to` instead; `None` if it is no statement
/// or no subject names `from`.
fn rebind_statement(statement: &[u8], from: &Digest, to: &Digest) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(statement).ok()?;
    let subjects = v.get_mut("subject")?.as_array_mut()?;
    let mut any = false;
    for s in subjects.iter_mut() {
        let Some(d) = s.pointer_mut("/digest/sha256") else {
            continue;
        };
        if d.as_str() == Some(from.hex()) {
            *d = Value::String(to.hex().to_string());
            any = true;
        }
    }
    if !any {
        return None;
    }
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subjects_naming_the_image_are_rebound() {
        let from = Digest::of(b"from");
        let to = Digest::of(b"to");
        let other = Digest::of(b"other");
        let s = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                { "name": "pkg:docker/app@1", "digest": { "sha256": from.hex() } },
                { "name": "pkg:docker/x@1", "digest": { "sha256": other.hex() } },
            ],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        });
        let out = rebind_statement(&serde_json::to_vec(&s).unwrap(), &from, &to).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["subject"][0]["digest"]["sha256"], to.hex());
        assert_eq!(v["subject"][1]["digest"]["sha256"], other.hex());
        assert_eq!(v["predicateType"], "https://slsa.dev/provenance/v1");
        // About another image only: not rebound.
        assert!(rebind_statement(&serde_json::to_vec(&s).unwrap(), &to, &from).is_none());
        assert!(rebind_statement(b"not json", &from, &to).is_none());
    }
}
