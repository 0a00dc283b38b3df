//! Attestations as BuildKit attaches them to an image: one OCI manifest
//! per platform image whose layers are the in-toto statements
//! (`application/vnd.in-toto+json`, annotated with their predicate type),
//! listed in the image index with platform `unknown/unknown` and the
//! annotations `vnd.docker.reference.type: attestation-manifest` and
//! `vnd.docker.reference.digest: <the image manifest's digest>`.
//!
//! This module only makes the bytes; the store writes them as blobs and
//! adds the descriptor to the index.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::statement::{Statement, MEDIA_TYPE, PREDICATE_TYPE_ANNOTATION};

/// The annotation marking an index entry as attestations.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Its value.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// The annotation naming the image manifest the attestations are about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// A blob to store, with its digest and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// Its media type.
    pub media_type: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// A blob of `bytes`, its digest computed.
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256(&bytes),
            media_type,
            bytes,
        }
    }

    /// Its OCI descriptor (without annotations).
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The attestation manifest of `statements` about the image manifest
/// `image_digest`.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The manifest itself.
    pub manifest: Blob,
    /// Its config and the statement blobs, to store before the manifest.
    pub blobs: Vec<Blob>,
    /// The descriptor to add to the image index.
    pub index_entry: Value,
}

/// Builds the attestation manifest for one platform image.
pub fn attach(image_digest: &str, statements: &[Statement]) -> Attachment {
    let layers: Vec<(Blob, String)> = statements
        .iter()
        .map(|s| {
            (
                Blob::new(MEDIA_TYPE, s.to_bytes()),
                s.predicate_type.clone(),
            )
        })
        .collect();
    // The config is there for registries that want one; readers ignore it.
    let diff_ids: Vec<&str> = layers.iter().map(|(b, _)| b.digest.as_str()).collect();
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap_or_default(),
    );
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|(b, predicate)| {
            let mut d = b.descriptor();
            d["annotations"] = json!({ PREDICATE_TYPE_ANNOTATION: predicate });
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": layer_descs,
    });
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap_or_default(),
    );
    let mut index_entry = manifest.descriptor();
    index_entry["annotations"] = json!({
        REFERENCE_DIGEST: image_digest,
        REFERENCE_TYPE: ATTESTATION_MANIFEST,
    });
    index_entry["platform"] = json!({ "architecture": "unknown", "os": "unknown" });
    let mut blobs = vec![config];
    blobs.extend(layers.into_iter().map(|(b, _)| b));
    Attachment {
        manifest,
        blobs,
        index_entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::Subject;

    #[test]
    fn the_index_entry_points_at_the_image_and_the_layers_at_statements() {
        let s = Statement::new(
            vec![Subject::sha256("pkg:docker/app@1", "sha256:aa")],
            "https://slsa.dev/provenance/v1",
            json!({}),
        );
        let a = attach("sha256:aa", std::slice::from_ref(&s));
        assert_eq!(
            a.index_entry["annotations"][REFERENCE_TYPE],
            ATTESTATION_MANIFEST
        );
        assert_eq!(a.index_entry["annotations"][REFERENCE_DIGEST], "sha256:aa");
        assert_eq!(a.index_entry["platform"]["os"], "unknown");
        assert_eq!(a.index_entry["digest"], a.manifest.digest.as_str());
        let m: Value = serde_json::from_slice(&a.manifest.bytes).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_TYPE);
        assert_eq!(
            m["layers"][0]["annotations"][PREDICATE_TYPE_ANNOTATION],
            "https://slsa.dev/provenance/v1"
        );
        assert_eq!(a.blobs[1].bytes, s.to_bytes());
        assert_eq!(m["config"]["digest"], a.blobs[0].digest.as_str());
        assert_eq!(a.blobs[1].digest, sha256(&a.blobs[1].bytes));
    }
}
