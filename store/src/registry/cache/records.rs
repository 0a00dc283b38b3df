//! One cache record, one small artifact: the format a fleet of builders
//! shares a cache ref in without overwriting one another.
//!
//! A record of cache `REPO:TAG` is the manifest tagged `TAG-<sha256 of
//! its key>` in `REPO` (see `record_tag`): an OCI image manifest with
//! `artifactType` `RECORD_ARTIFACT_TYPE`, whose config is the record
//! (a [`CacheEntry`] as JSON, also embedded in the descriptor's `data` so
//! one `GET` of the manifest reads it) and whose one layer is the record's
//! layer as pushed, so the registry's garbage collection keeps it. The
//! `org.opencontainers.image.created` annotation dates it for `prune`.
//!
//! `REPO:TAG` itself holds an index: a manifest whose config lists the
//! records of the last export (`IndexConfig`), for people and tools that
//! list; nothing depends on it being complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CacheEntry;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::oci::{Descriptor, MEDIA_TYPE_OCI_MANIFEST};
use crate::registry::{base64_decode, base64_encode};

/// The artifact type of one record's manifest.
pub(crate) const RECORD_ARTIFACT_TYPE: &str = "application/vnd.rbk.buildcache.record.v1";

/// The media type of a record's config blob (a [`CacheEntry`]).
pub(crate) const RECORD_MEDIA_TYPE: &str = "application/vnd.rbk.buildcache.record.v1+json";

/// The media type of the index config the cache ref itself names.
pub(crate) const INDEX_MEDIA_TYPE: &str = "application/vnd.rbk.buildcache.index.v2+json";

/// The annotation that dates a record.
pub(crate) const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// The longest cache tag kept as it is in its records' tags: with `-` and
/// 64 hex digits a record tag stays within the registry's 128 characters.
const MAX_PLAIN_TAG: usize = 60;

/// The tag of the record of `key` in a cache tagged `cache_tag`:
/// `<cache_tag>-<sha256(key) hex>`. A cache tag longer than 60 characters
/// is shortened to its first 27 and 32 hex digits of its own sha256.
pub(crate) fn record_tag(cache_tag: &str, key: &str) -> String {
    format!(
        "{}-{}",
        record_prefix(cache_tag),
        Digest::of(key.as_bytes()).hex()
    )
}

/// Whether `tag` is the tag of a record of the cache tagged `cache_tag`.
pub(crate) fn is_record_tag(cache_tag: &str, tag: &str) -> bool {
    let prefix = record_prefix(cache_tag);
    tag.strip_prefix(prefix.as_str())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub(super) fn record_prefix(cache_tag: &str) -> String {
    if cache_tag.len() <= MAX_PLAIN_TAG {
        return cache_tag.to_string();
    }
    let head = cache_tag.get(..27).unwrap_or(cache_tag);
    format!("{head}-{}", &Digest::of(cache_tag.as_bytes()).hex()[..32])
}

/// A descriptor with its content embedded (OCI 1.1 `data`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Embedded {
    #[serde(flatten)]
    pub(super) desc: Descriptor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<String>,
}

/// A record's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RecordManifest {
    pub(super) schema_version: u32,
    #[serde(default)]
    pub(super) media_type: Option<String>,
    #[serde(default)]
    pub(super) artifact_type: Option<String>,
    pub(super) config: Embedded,
    #[serde(default)]
    pub(super) layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) annotations: BTreeMap<String, String>,
}

/// A record ready to push or write: its config blob and its manifest.
pub(super) struct RecordArtifact {
    /// The config blob's bytes (the entry as JSON).
    pub(super) config_bytes: Vec<u8>,
    /// Its descriptor.
    pub(super) config: Descriptor,
    /// The manifest's bytes.
    pub(super) manifest: Vec<u8>,
}

/// The artifact of `entry`, whose layer is `layer` (the pushed copy for a
/// registry, the stored blob for a local directory), dated `created`.
pub(super) fn record_artifact(
    entry: &CacheEntry,
    layer: Option<&Descriptor>,
    created: &str,
) -> Result<RecordArtifact, StoreError> {
    let config_bytes = serde_json::to_vec(entry)
        .map_err(|e| StoreError::json(format!("cache record {}", entry.record.key), e))?;
    let config = Descriptor::new(
        RECORD_MEDIA_TYPE,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    let manifest = RecordManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_string()),
        artifact_type: Some(RECORD_ARTIFACT_TYPE.to_string()),
        config: Embedded {
            desc: config.clone(),
            data: Some(base64_encode(&config_bytes)),
        },
        layers: layer.into_iter().cloned().collect(),
        annotations: BTreeMap::from([(ANNOTATION_CREATED.to_string(), created.to_string())]),
    };
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| StoreError::json(format!("cache record {}", entry.record.key), e))?;
    Ok(RecordArtifact {
        config_bytes,
        config,
        manifest,
    })
}

/// Parses a record's manifest.
pub(super) fn parse_manifest(bytes: &[u8]) -> Result<RecordManifest, String> {
    let m: RecordManifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if m.config.desc.media_type != RECORD_MEDIA_TYPE {
        return Err(format!(
            "its config is {}, not a cache record",
            m.config.desc.media_type
        ));
    }
    Ok(m)
}

/// The entry a record's manifest carries for `key`: read from the
/// embedded config, checked against the config's digest and the key.
pub(super) fn entry_of(manifest: &RecordManifest, key: &str) -> Result<CacheEntry, String> {
    let data = manifest
        .config
        .data
        .as_deref()
        .and_then(base64_decode)
        .ok_or("its config is not embedded")?;
    let actual = Digest::of(&data);
    if actual != manifest.config.desc.digest {
        return Err(format!(
            "its embedded config has digest {actual}, its descriptor says {}",
            manifest.config.desc.digest
        ));
    }
    let entry: CacheEntry = serde_json::from_slice(&data).map_err(|e| e.to_string())?;
    if entry.record.key != key {
        return Err(format!("it holds the record of key {:?}", entry.record.key));
    }
    Ok(entry)
}

/// The config of the manifest the cache ref names: the records of the
/// export that wrote it last, for listing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct IndexConfig {
    /// Format version (2: one artifact per record).
    pub(super) version: u32,
    /// The records of the last export: key and tag.
    pub(super) records: Vec<IndexEntry>,
}

/// One record in an [`IndexConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IndexEntry {
    /// The record's key.
    pub(super) key: String,
    /// Its tag (registry) or file name (local directory).
    pub(super) tag: String,
}

/// The index artifact of an export's records: its config blob, stored
/// with `put` (the store, or a local cache directory), and the manifest
/// naming it.
pub(super) fn index_artifact(
    listed: Vec<IndexEntry>,
    put: impl FnOnce(&[u8]) -> Result<Digest, StoreError>,
) -> Result<(Descriptor, Vec<u8>), StoreError> {
    let config_bytes = serde_json::to_vec(&IndexConfig {
        version: 2,
        records: listed,
    })
    .map_err(|e| StoreError::json("cache index", e))?;
    let config = Descriptor::new(
        INDEX_MEDIA_TYPE,
        put(&config_bytes)?,
        config_bytes.len() as u64,
    );
    let manifest = serde_json::to_vec(&super::ArtifactManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_OCI_MANIFEST,
        artifact_type: super::CACHE_ARTIFACT_TYPE,
        config: &config,
        layers: &[],
    })
    .map_err(|e| StoreError::json("cache manifest", e))?;
    Ok((config, manifest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cache::CacheRecord;

    #[test]
    fn record_tags_fit_and_are_recognised() {
        let t = record_tag("buildcache", "some key");
        assert!(t.starts_with("buildcache-") && t.len() == 75, "{t}");
        assert!(is_record_tag("buildcache", &t));
        assert!(!is_record_tag("buildcache", "buildcache"));
        assert!(!is_record_tag("build", &t));
        assert!(!is_record_tag("buildcache-x", &t));
        let long = "x".repeat(128);
        let t = record_tag(&long, "k");
        assert!(t.len() <= 128, "{}", t.len());
        assert!(is_record_tag(&long, &t));
        assert!(!is_record_tag(&"x".repeat(127), &t));
    }

    #[test]
    fn a_record_reads_back_only_under_its_key() {
        let entry = CacheEntry {
            record: CacheRecord {
                key: "k1".into(),
                family: "f".into(),
                layer: None,
                diff_id: None,
                chain_id: None,
                config: None,
                inputs: serde_json::Value::Null,
                created: "2026-01-01T00:00:00Z".into(),
            },
            remote: None,
        };
        let a = record_artifact(&entry, None, "2026-01-02T00:00:00Z").unwrap();
        let m = parse_manifest(&a.manifest).unwrap();
        assert_eq!(m.annotations[ANNOTATION_CREATED], "2026-01-02T00:00:00Z");
        assert_eq!(entry_of(&m, "k1").unwrap(), entry);
        assert!(entry_of(&m, "k2").unwrap_err().contains("key \"k1\""));
        let mut bad = m.clone();
        bad.config.data = Some(base64_encode(b"{}"));
        assert!(entry_of(&bad, "k1").unwrap_err().contains("digest"));
    }
}
