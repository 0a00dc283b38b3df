//! A build cache shared through a registry (`--cache-to` / `--cache-from`).
//!
//! The cache is an OCI artifact: an image manifest whose config blob (media
//! type [`CACHE_CONFIG_MEDIA_TYPE`]) lists cache records — key, the layer
//! the step produced as the exporting store holds it, its diff id, the
//! plaintext `--explain` uses — each with the descriptor of that layer as
//! pushed (compressed). The manifest's layers are those pushed blobs, so the
//! registry keeps them alive and garbage collection sees them.
//!
//! The same artifact can live in a local OCI layout directory instead
//! (`type=local`, for CI cache directories): `index.json` names the
//! manifest, `blobs/sha256/` holds it, the config and the layers as the
//! exporting store kept them.
//!
//! An importer reads only the manifest and the config; a layer is fetched
//! when a build actually needs its bytes (to run a step over it or to put it
//! in a final image), then stored the way the exporter stored it (an
//! uncompressed layer is decompressed and checked against its digest), so
//! the image a second builder commits is the very image the first one did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Client, Progress, RegistryError};
use crate::cache::CacheRecord;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::Store;
use crate::oci::{
    Descriptor, Index, Manifest, ANNOTATION_REF_NAME, MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

/// Media type of the config blob that holds the records.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbk.buildcache.config.v1+json";

/// The artifact type announced in the manifest (OCI 1.1 `artifactType`).
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbk.buildcache.v1";

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

/// Where an imported cache's blobs come from.
enum Origin {
    Registry {
        client: Arc<Client>,
        reference: Reference,
    },
    Local {
        dir: PathBuf,
    },
}

/// A cache imported with `--cache-from`: from a registry or a local OCI
/// layout directory.
pub struct RemoteCache {
    origin: Origin,
    entries: HashMap<String, CacheEntry>,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("source", &self.source())
            .field("records", &self.entries.len())
            .finish()
    }
}

/// The annotation naming the cache manifest in a local layout's index.
const LOCAL_REF_NAME: &str = "rbk-buildcache";

/// A blob of the layout at `dir`.
fn layout_blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Reads a blob of the layout at `dir`, checked against its digest.
fn read_layout_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    let path = layout_blob(dir, digest);
    let bytes = std::fs::read(&path).map_err(|e| StoreError::from_io("read", &path, e))?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(StoreError::Corrupt {
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

impl RemoteCache {
    /// Reads the cache artifact `reference` names: its manifest and its
    /// records (kept in `store`), not its layers. `reference` may also name
    /// an image built with `--cache-to type=inline`: its config carries the
    /// records and its layers are theirs (an image without is an empty
    /// cache). A reference that does not exist yet (the first build of a
    /// pipeline) is an empty cache, like BuildKit's.
    pub fn import(
        client: Arc<Client>,
        store: &Store,
        reference: Reference,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Self, RegistryError> {
        let (bytes, _media_type, digest) = match client.get_manifest(&reference, progress) {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => {
                return Ok(RemoteCache {
                    origin: Origin::Registry { client, reference },
                    entries: HashMap::new(),
                })
            }
            Err(e) => return Err(e),
        };
        let json_error = |what: String, source| RegistryError::Json {
            registry: reference.domain().to_string(),
            what,
            source,
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| json_error(format!("cache manifest {digest}"), e))?;
        let image_config = [MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG]
            .contains(&manifest.config.media_type.as_str());
        if manifest.config.media_type != CACHE_CONFIG_MEDIA_TYPE && !image_config {
            return Err(RegistryError::UnsupportedManifest {
                reference: reference.to_string(),
                media_type: format!(
                    "{} (not an rbk build cache: its config is {})",
                    manifest
                        .media_type
                        .as_deref()
                        .unwrap_or(MEDIA_TYPE_OCI_MANIFEST),
                    manifest.config.media_type
                ),
            });
        }
        client.fetch_blobs_into(
            store,
            &reference,
            std::slice::from_ref(&manifest.config),
            progress,
        )?;
        let config_bytes = store.content.read(&manifest.config.digest)?;
        // An image: the cache it carries inline, if any (`type=inline`).
        let records = if image_config {
            let config: serde_json::Value = serde_json::from_slice(&config_bytes)
                .map_err(|e| json_error(format!("image config {}", manifest.config.digest), e))?;
            inline_entries(&config, &manifest)
        } else {
            let config: CacheConfig = serde_json::from_slice(&config_bytes)
                .map_err(|e| json_error(format!("cache records {}", manifest.config.digest), e))?;
            config.records
        };
        let entries = records
            .into_iter()
            .map(|e| (e.record.key.clone(), e))
            .collect();
        Ok(RemoteCache {
            origin: Origin::Registry { client, reference },
            entries,
        })
    }

    /// Reads the cache a local OCI layout directory holds (written by
    /// [`export_local`]); a directory without one is an empty cache.
    pub fn import_local(dir: &Path) -> Result<Self, StoreError> {
        let empty = || RemoteCache {
            origin: Origin::Local {
                dir: dir.to_path_buf(),
            },
            entries: HashMap::new(),
        };
        let index_path = dir.join("index.json");
        let index_bytes = match std::fs::read(&index_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty()),
            Err(e) => return Err(StoreError::from_io("read", &index_path, e)),
        };
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| StoreError::json("the cache's index.json", e))?;
        let Some(desc) = index.manifests.iter().find(|d| {
            d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(LOCAL_REF_NAME)
        }) else {
            return Ok(empty());
        };
        let manifest: Manifest = serde_json::from_slice(&read_layout_blob(dir, &desc.digest)?)
            .map_err(|e| StoreError::json("the cache manifest", e))?;
        let config_bytes = read_layout_blob(dir, &manifest.config.digest)?;
        let config: CacheConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| StoreError::json("the cache records", e))?;
        let entries = config
            .records
            .into_iter()
            .map(|e| (e.record.key.clone(), e))
            .collect();
        Ok(RemoteCache {
            origin: Origin::Local {
                dir: dir.to_path_buf(),
            },
            entries,
        })
    }

    /// Where the cache comes from, as the user gave it.
    pub fn source(&self) -> String {
        match &self.origin {
            Origin::Registry { reference, .. } => reference.to_string(),
            Origin::Local { dir } => format!("local:{}", dir.display()),
        }
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record for `key`, if the cache has it.
    pub fn get(&self, key: &str) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Makes the layer of `entry` present in `store` in the form the
    /// record names (`entry.record.layer`): downloaded (verified against
    /// the pushed digest) and, when the exporter stored it uncompressed,
    /// decompressed and verified against that digest too. Returns the bytes
    /// downloaded (0 when the store had it).
    pub fn fetch_layer(
        &self,
        store: &Store,
        entry: &CacheEntry,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<u64, RegistryError> {
        let Some(local) = &entry.record.layer else {
            return Ok(0);
        };
        if store.content.has(&local.digest) {
            return Ok(0);
        }
        let remote = entry.remote.as_ref().unwrap_or(local);
        let bytes = match &self.origin {
            Origin::Registry { client, reference } => {
                client.fetch_blobs_into(store, reference, std::slice::from_ref(remote), progress)?
            }
            Origin::Local { dir } => {
                let path = layout_blob(dir, &remote.digest);
                let mut f = std::fs::File::open(&path)
                    .map_err(|e| StoreError::from_io("open", &path, e))?;
                store.content.ingest(&mut f, Some(&remote.digest))?;
                remote.size
            }
        };
        if remote.digest == local.digest {
            return Ok(bytes);
        }
        // Stored uncompressed by the exporter: decompress what was pushed.
        let reader = store.content.open_blob(&remote.digest)?;
        let mut plain = crate::compress::decompress(reader).map_err(|e| {
            crate::error::StoreError::from_io(
                "decompress cache layer",
                std::path::Path::new(remote.digest.as_str()),
                e,
            )
        })?;
        store.content.ingest(&mut plain, Some(&local.digest))?;
        // What was pushed is a valid compressed copy of the layer (it just
        // decompressed to it): a later push or export reuses it.
        if let Some(to) = crate::oci::LayerCompression::of_media_type(&remote.media_type)
            .map(crate::compress::Compression::from)
            .filter(|c| *c != crate::compress::Compression::None)
        {
            store.record_compressed_layer(local, remote, to)?;
        }
        Ok(bytes)
    }
}

/// What [`export`] pushed.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The artifact's manifest digest.
    pub digest: Digest,
    /// Records exported.
    pub records: usize,
    /// Layers the artifact references.
    pub layers: usize,
}

/// Pushes `records` (whose layers must be in `store`) and their layers as
/// the cache artifact `dest`, replacing what the tag named before.
/// `remote_layer` maps a stored layer to the blob to push (e.g. a gzip
/// variant of an uncompressed layer); that blob must be in `store` too.
pub fn export(
    client: &Client,
    store: &Store,
    dest: &Reference,
    records: &[CacheRecord],
    remote_layer: &(dyn Fn(&Descriptor) -> Result<Descriptor, crate::error::StoreError> + Sync),
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<ExportReport, RegistryError> {
    let mut entries: Vec<CacheEntry> = Vec::with_capacity(records.len());
    let mut layers: Vec<Descriptor> = Vec::new();
    for r in records {
        let remote = match &r.layer {
            Some(l) => {
                let d = remote_layer(l)?;
                if !layers.iter().any(|x| x.digest == d.digest) {
                    layers.push(d.clone());
                }
                Some(d)
            }
            None => None,
        };
        entries.push(CacheEntry {
            record: r.clone(),
            remote,
        });
    }
    entries.sort_by(|a, b| a.record.key.cmp(&b.record.key));
    entries.dedup_by(|a, b| a.record.key == b.record.key);
    let n = entries.len();
    let config_bytes = serde_json::to_vec(&CacheConfig {
        version: 1,
        records: entries,
    })
    .map_err(|e| crate::error::StoreError::json("cache records", e))?;
    let config_digest = store.content.put(&config_bytes)?;
    let config = Descriptor::new(
        CACHE_CONFIG_MEDIA_TYPE,
        config_digest,
        config_bytes.len() as u64,
    );
    let mut blobs = layers.clone();
    blobs.push(config.clone());
    client.push_blobs(store, dest, &blobs, progress)?;
    let manifest = serde_json::to_vec(&ArtifactManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_OCI_MANIFEST,
        artifact_type: CACHE_ARTIFACT_TYPE,
        config: &config,
        layers: &layers,
    })
    .map_err(|e| crate::error::StoreError::json("cache manifest", e))?;
    let digest = client.put_manifest(dest, MEDIA_TYPE_OCI_MANIFEST, &manifest, progress)?;
    Ok(ExportReport {
        digest,
        records: n,
        layers: layers.len(),
    })
}

/// Writes `records` and their layers (as `store` keeps them) as the cache
/// in the OCI layout directory `dir`, replacing the cache it held. Blobs
/// are content-addressed and written before the index is swapped in one
/// rename, so a job reading the directory meanwhile sees the old cache or
/// the new one, never half of either. Blobs of older caches stay.
pub fn export_local(
    store: &Store,
    dir: &Path,
    records: &[CacheRecord],
) -> Result<ExportReport, StoreError> {
    let blobs_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir)
        .map_err(|e| StoreError::from_io("create", &blobs_dir, e))?;
    let entries = local_entries(records);
    let mut layers: Vec<Descriptor> = Vec::new();
    for e in &entries {
        if let Some(l) = &e.record.layer {
            if !layers.iter().any(|x| x.digest == l.digest) {
                copy_blob(store, dir, &l.digest)?;
                layers.push(l.clone());
            }
        }
    }
    let n = entries.len();
    let config_bytes = serde_json::to_vec(&CacheConfig {
        version: 1,
        records: entries,
    })
    .map_err(|e| StoreError::json("cache records", e))?;
    let config = Descriptor::new(
        CACHE_CONFIG_MEDIA_TYPE,
        write_blob(dir, &config_bytes)?,
        config_bytes.len() as u64,
    );
    let manifest_bytes = serde_json::to_vec(&ArtifactManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_OCI_MANIFEST,
        artifact_type: CACHE_ARTIFACT_TYPE,
        config: &config,
        layers: &layers,
    })
    .map_err(|e| StoreError::json("cache manifest", e))?;
    let digest = write_blob(dir, &manifest_bytes)?;
    let mut desc = Descriptor::new(
        MEDIA_TYPE_OCI_MANIFEST,
        digest.clone(),
        manifest_bytes.len() as u64,
    );
    desc.annotations
        .insert(ANNOTATION_REF_NAME.into(), LOCAL_REF_NAME.into());
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.to_string()),
        manifests: vec![desc],
        ..Default::default()
    };
    let index_bytes =
        serde_json::to_vec_pretty(&index).map_err(|e| StoreError::json("index.json", e))?;
    replace_file(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    replace_file(dir, "index.json", &index_bytes)?;
    Ok(ExportReport {
        digest,
        records: n,
        layers: layers.len(),
    })
}

/// Copies a blob of `store` into the layout at `dir` (unless there).
fn copy_blob(store: &Store, dir: &Path, digest: &Digest) -> Result<(), StoreError> {
    let to = layout_blob(dir, digest);
    if to.exists() {
        return Ok(());
    }
    let mut from = store.content.open_blob(digest)?;
    write_atomically(&to, |f| std::io::copy(&mut from, f).map(drop))
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its digest.
fn write_blob(dir: &Path, bytes: &[u8]) -> Result<Digest, StoreError> {
    let digest = Digest::of(bytes);
    let to = layout_blob(dir, &digest);
    if !to.exists() {
        write_atomically(&to, |f| std::io::Write::write_all(f, bytes))?;
    }
    Ok(digest)
}

/// Writes `dir/name` through a temporary file and a rename.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically(&dir.join(name), |f| std::io::Write::write_all(f, bytes))
}

/// Writes `to` through a file beside it, synced and renamed into place, so
/// readers of the layout never see half a file.
fn write_atomically(
    to: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.part-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::from_io("write", to, e));
    }
    Ok(())
}
