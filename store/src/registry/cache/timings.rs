//! Step durations kept beside a registry cache, so a fleet's next plan
//! (`rbk plan`, `rbk build --shard`) can balance its shards by what steps
//! really cost. Each writer (a shard, or a whole build) keeps its own small
//! artifact, tagged `<cache tag>-timings-<slot>`, whose config is the JSON
//! `{"version":1,"created":…,"steps":{op digest: seconds}}`: writers never
//! overwrite each other's figures, and a reader merges every slot, the
//! most recent figure of a step winning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::images::Store;
use crate::oci::{Descriptor, MEDIA_TYPE_OCI_MANIFEST};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};

/// The media type of a timings artifact's config.
pub(crate) const TIMINGS_MEDIA_TYPE: &str = "application/vnd.rbk.buildtimings.v1+json";

/// The artifact type announced in its manifest.
pub(crate) const TIMINGS_ARTIFACT_TYPE: &str = "application/vnd.rbk.buildtimings.v1";

/// What one slot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingsDoc {
    /// Format version (1).
    pub version: u32,
    /// When it was written, RFC 3339.
    pub created: String,
    /// Op digest → seconds.
    pub steps: BTreeMap<String, f64>,
}

/// The tag of slot `slot` of the cache tagged `cache_tag`.
pub(crate) fn timings_tag(cache_tag: &str, slot: &str) -> String {
    format!(
        "{}-timings-{slot}",
        super::records::record_prefix(cache_tag)
    )
}

/// Every slot's figures beside the cache `cache`, merged (a later slot's
/// figure of a step wins). A cache without any has none.
pub fn read_timings(
    client: &Client,
    store: &Store,
    cache: &Reference,
) -> Result<BTreeMap<String, f64>, RegistryError> {
    let cache_tag = cache.tag().unwrap_or(crate::reference::DEFAULT_TAG);
    let prefix = timings_tag(cache_tag, "");
    let mut docs = Vec::new();
    for tag in client.list_tags(cache, &|_| {})? {
        if !tag.starts_with(&prefix) {
            continue;
        }
        if let Some(doc) = read_slot(client, store, &cache.with_tag(&tag)?)? {
            docs.push(doc);
        }
    }
    docs.sort_by(|a, b| a.created.cmp(&b.created));
    let mut steps = BTreeMap::new();
    for d in docs {
        steps.extend(
            d.steps
                .into_iter()
                .filter(|(_, s)| s.is_finite() && *s >= 0.0),
        );
    }
    Ok(steps)
}

/// Writes `steps` as slot `slot` beside the cache `cache`, with the
/// figures that slot held for other steps kept (so a shard that built
/// other targets this time does not lose what it knew).
pub fn write_timings(
    client: &Client,
    store: &Store,
    cache: &Reference,
    slot: &str,
    steps: &BTreeMap<String, f64>,
) -> Result<Digest, RegistryError> {
    let cache_tag = cache.tag().unwrap_or(crate::reference::DEFAULT_TAG);
    let at = cache.with_tag(&timings_tag(cache_tag, slot))?;
    let mut merged = read_slot(client, store, &at)?
        .map(|d| d.steps)
        .unwrap_or_default();
    merged.extend(steps.iter().map(|(k, v)| (k.clone(), *v)));
    let doc = TimingsDoc {
        version: 1,
        created: crate::oci::now_rfc3339(),
        steps: merged,
    };
    let bytes =
        serde_json::to_vec(&doc).map_err(|e| crate::error::StoreError::json("build timings", e))?;
    let config = Descriptor::new(
        TIMINGS_MEDIA_TYPE,
        store.content.put(&bytes)?,
        bytes.len() as u64,
    );
    let manifest = serde_json::to_vec(&super::ArtifactManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_OCI_MANIFEST,
        artifact_type: TIMINGS_ARTIFACT_TYPE,
        config: &config,
        layers: &[],
    })
    .map_err(|e| crate::error::StoreError::json("build timings manifest", e))?;
    client.push_blobs(store, &at, std::slice::from_ref(&config), &|_| {})?;
    client.put_manifest(&at, MEDIA_TYPE_OCI_MANIFEST, &manifest, &|_| {})
}

/// What slot `at` holds (`None` when it does not exist, or holds
/// something else than figures: no error, nothing to merge).
fn read_slot(
    client: &Client,
    store: &Store,
    at: &Reference,
) -> Result<Option<TimingsDoc>, RegistryError> {
    let bytes = match client.get_manifest(at, &|_| {}) {
        Ok((bytes, _, _)) => bytes,
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(m) = serde_json::from_slice::<crate::oci::Manifest>(&bytes) else {
        return Ok(None);
    };
    let desc = m.config;
    if desc.media_type != TIMINGS_MEDIA_TYPE || desc.size > 1 << 24 {
        return Ok(None);
    }
    client.fetch_blobs_into(store, at, std::slice::from_ref(&desc), &|_| {})?;
    let config = store.content.read(&desc.digest)?;
    Ok(serde_json::from_slice::<TimingsDoc>(&config).ok())
}
