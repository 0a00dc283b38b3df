//! A build cache shared through a registry or a directory (`--cache-to` /
//! `--cache-from`), shared by a whole fleet of builders.
//!
//! Each record (key, the layer the step produced as the exporting store
//! holds it, its diff id) is its own small artifact ([`records`]): in a
//! registry, a manifest tagged by its key next to the cache ref, whose one
//! layer is the record's layer as pushed (compressed), so the registry
//! keeps it; in a directory (`type=local`), one file per key. An export
//! adds records and never removes another builder's; an import asks for
//! the keys the build needs, one by one ([`RemoteCache::get`]), and reads
//! a layer only when the build needs its bytes (to run a step over it or
//! to put it in a final image), then stores it the way the exporter stored
//! it (an uncompressed layer is decompressed and checked against its
//! digest), so the image a second builder commits is the very image the
//! first one did. [`prune`] deletes old records from a registry.
//!
//! Older rbk kept the whole cache as one manifest whose config listed
//! every record ([`CACHE_CONFIG_MEDIA_TYPE`]); such caches are still read.
//! An image built with `--cache-to type=inline` carries the records of its
//! own steps in its config ([`INLINE_CACHE_FIELD`]).

mod export;
mod import;
mod local;
pub mod mounts;
mod prune;
pub mod records;
pub mod timings;

pub use export::{export, export_mounts, publish, ExportReport};
pub use import::{LookupStats, RemoteCache};
pub use local::{export_local, export_local_mounts};
pub use prune::{parse_duration, parse_size, prune, PruneOptions, PruneReport, PrunedRecord};

use serde::{Deserialize, Serialize};

use crate::cache::CacheRecord;
use crate::oci::{Descriptor, Manifest};

/// Media type of the config blob that holds every record (older rbk).
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbk.buildcache.config.v1+json";

/// The artifact type announced in the manifest (OCI 1.1 `artifactType`).
pub(crate) const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbk.buildcache.v1";

/// The image config field that carries an inline cache (`--cache-to
/// type=inline`): the records of the image's own steps, each layer being
/// one of the image's (BuildKit keeps its own under `moby.buildkit.cache.v0`).
pub const INLINE_CACHE_FIELD: &str = "rbk.buildcache.v1";

/// One record of an exported cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The record as the exporting store had it; its `layer` is the blob as
    /// stored there (often uncompressed).
    pub record: CacheRecord,
    /// The same layer as pushed to the registry (compressed), when the
    /// record has a layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Descriptor>,
}

/// `records` as entries whose layers are the stored ones, sorted by key,
/// each key once.
fn local_entries(records: &[CacheRecord]) -> Vec<CacheEntry> {
    let mut entries: Vec<CacheEntry> = records
        .iter()
        .map(|r| CacheEntry {
            record: r.clone(),
            remote: None,
        })
        .collect();
    entries.sort_by(|a, b| a.record.key.cmp(&b.record.key));
    entries.dedup_by(|a, b| a.record.key == b.record.key);
    entries
}

/// The value of [`INLINE_CACHE_FIELD`] for an image whose steps made
/// `records`, sorted by key. Each record is dated as its step's result is
/// (with `SOURCE_DATE_EPOCH`, that time), so the image stays reproducible.
pub fn inline_cache(records: &[CacheRecord]) -> serde_json::Value {
    let entries = local_entries(records);
    serde_json::to_value(CacheConfig {
        version: 1,
        records: entries,
    })
    .unwrap_or(serde_json::Value::Null)
}

/// The records an image config carries inline, each pointing at the
/// image's layer of the same diff id as the registry holds it; records
/// whose layer is not one of the image's are dropped.
fn inline_entries(config: &serde_json::Value, manifest: &Manifest) -> Vec<CacheEntry> {
    let Some(inline) = config.get(INLINE_CACHE_FIELD) else {
        return Vec::new();
    };
    let Ok(cache) = serde_json::from_value::<CacheConfig>(inline.clone()) else {
        return Vec::new();
    };
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()).collect())
        .unwrap_or_default();
    cache
        .records
        .into_iter()
        .filter_map(|mut e| {
            if e.record.layer.is_none() {
                return Some(e);
            }
            let diff_id = e.record.diff_id.as_ref()?;
            let i = diff_ids.iter().position(|d| *d == diff_id.as_str())?;
            e.remote = Some(manifest.layers.get(i)?.clone());
            Some(e)
        })
        .collect()
}

/// The config blob of a cache artifact.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CacheConfig {
    /// Format version (1).
    version: u32,
    /// The records, sorted by key.
    records: Vec<CacheEntry>,
}

/// The manifest as pushed: an image manifest with an `artifactType`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    artifact_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}
