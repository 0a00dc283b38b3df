//! `--cache-from`: a cache read lazily, record by record, as the build asks
//! for keys; older single-manifest caches and inline caches are read whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::records::{self, record_tag, INDEX_MEDIA_TYPE};
use super::{inline_entries, local, CacheConfig, CacheEntry, CACHE_CONFIG_MEDIA_TYPE};
use crate::error::StoreError;
use crate::images::Store;
use crate::oci::{
    Manifest, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;
use crate::registry::{Client, Progress, RegistryError};

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

/// How the build's lookups went, for its summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Keys asked of the cache one by one (each once).
    pub asked: usize,
    /// Of those, found.
    pub found: usize,
    /// The first lookup that failed for another reason than a miss (it
    /// counts as a miss).
    pub error: Option<String>,
}

/// Why a lookup by key failed.
struct LookupError {
    message: String,
    /// The registry did not answer (as opposed to one bad record): the
    /// cache is not asked again.
    broken: bool,
}

/// A cache imported with `--cache-from`: from a registry or a local
/// directory.
pub struct RemoteCache {
    origin: Origin,
    /// Records read whole at import (an older single-manifest cache, an
    /// inline cache).
    entries: HashMap<String, CacheEntry>,
    /// Whether keys not in `entries` are asked record by record.
    per_key: bool,
    /// Records the cache ref's index lists (for the import message).
    listed: usize,
    /// Keys asked one by one: what came back (`None`: a miss).
    asked: Mutex<HashMap<String, Option<CacheEntry>>>,
    error: Mutex<Option<String>>,
    /// The registry failed to answer a lookup.
    broken: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCache")
            .field("source", &self.source())
            .field("records", &self.entries.len())
            .field("per_key", &self.per_key)
            .finish()
    }
}

/// How the manifest a cache ref names is read.
enum Head {
    /// Records read whole: a cache as older rbk wrote it (other builders'
    /// records may be there too, so keys are still asked for) or an
    /// image's inline cache (nothing else to ask for: `false`).
    Whole(Vec<CacheEntry>, bool),
    /// An index of per-record artifacts listing this many records.
    Index(usize),
}

impl RemoteCache {
    fn new(origin: Origin, head: Option<Head>) -> Self {
        let (entries, per_key, listed) = match head {
            // Nothing there yet, or an index: records are asked by key.
            None => (Vec::new(), true, 0),
            Some(Head::Index(n)) => (Vec::new(), true, n),
            Some(Head::Whole(e, per_key)) => {
                let n = e.len();
                (e, per_key, n)
            }
        };
        RemoteCache {
            origin,
            entries: entries
                .into_iter()
                .map(|e| (e.record.key.clone(), e))
                .collect(),
            per_key,
            listed,
            asked: Mutex::new(HashMap::new()),
            error: Mutex::new(None),
            broken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Opens the cache `reference` names. Its records are fetched one by
    /// one as the build asks for keys ([`RemoteCache::get`]); the manifest
    /// `reference` names is read now: an index (rbk's own format), a
    /// whole cache as older rbk wrote it, or an image built with
    /// `--cache-to type=inline` (its config carries the records and its
    /// layers are theirs). A reference that does not exist yet (the first
    /// build of a pipeline) holds no index, but other builders' records
    /// may still be there: they are asked for.
    pub fn import(
        client: Arc<Client>,
        store: &Store,
        reference: Reference,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Self, RegistryError> {
        let head = match client.get_manifest(&reference, progress) {
            Ok((bytes, _, digest)) => {
                let (bytes, digest) =
                    platform_manifest(&client, &reference, bytes, digest, progress)?;
                let head = read_head(&client, store, &reference, &bytes, &digest, progress)?;
                Some(head)
            }
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(RemoteCache::new(
            Origin::Registry { client, reference },
            head,
        ))
    }

    /// Opens the cache of a local directory (written by
    /// [`super::export_local`]); a directory without one is an empty cache.
    pub fn import_local(dir: &Path) -> Result<Self, StoreError> {
        let head = match local::read_head(dir)? {
            local::Head::Nothing => None,
            local::Head::Whole(records) => Some(Head::Whole(records, true)),
            local::Head::Index(n) => Some(Head::Index(n)),
        };
        Ok(RemoteCache::new(
            Origin::Local {
                dir: dir.to_path_buf(),
            },
            head,
        ))
    }

    /// Where the cache comes from, as the user gave it.
    pub fn source(&self) -> String {
        match &self.origin {
            Origin::Registry { reference, .. } => reference.to_string(),
            Origin::Local { dir } => format!("local:{}", dir.display()),
        }
    }

    /// How many records the cache lists (read whole, or named by its
    /// index); others may be found by key.
    pub fn len(&self) -> usize {
        self.listed
    }

    /// Whether it lists no record.
    pub fn is_empty(&self) -> bool {
        self.listed == 0
    }

    /// Whether it lives in a registry (else in a local directory).
    pub fn in_registry(&self) -> bool {
        matches!(self.origin, Origin::Registry { .. })
    }

    /// Whether records are asked for one key at a time.
    pub fn by_key(&self) -> bool {
        self.per_key
    }

    /// The record for `key`, if the cache has it: from what was read at
    /// import, else asked for (one `GET` of its manifest, or one file
    /// read), once per key. A failed lookup is a miss; the first failure
    /// is kept for [`RemoteCache::stats`]; after a registry fails to
    /// answer, the cache is not asked again.
    pub fn get(&self, key: &str) -> Option<CacheEntry> {
        if let Some(e) = self.entries.get(key) {
            return Some(e.clone());
        }
        if !self.per_key {
            return None;
        }
        if let Some(known) = self.lock_asked().get(key) {
            return known.clone();
        }
        // A cache that failed once (unreachable, refusing) is not asked
        // again: each key would wait through the client's retries.
        if self.failed() {
            return None;
        }
        let found = match self.fetch_record(key) {
            Ok(found) => found,
            Err(e) => {
                let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
                error.get_or_insert(format!("record of key {key:?}: {}", e.message));
                if e.broken {
                    self.broken
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                None
            }
        };
        self.lock_asked().insert(key.to_string(), found.clone());
        found
    }

    /// The record for `key` asked of the cache again, even after a miss
    /// (another builder may have pushed it since): for a build waiting on
    /// another builder of its fleet. An error when the registry (or
    /// directory) does not answer; a record that cannot be read is a miss.
    pub fn ask_again(&self, key: &str) -> Result<Option<CacheEntry>, String> {
        if let Some(e) = self.entries.get(key) {
            return Ok(Some(e.clone()));
        }
        if !self.per_key {
            return Ok(None);
        }
        if let Some(Some(known)) = self.lock_asked().get(key) {
            return Ok(Some(known.clone()));
        }
        match self.fetch_record(key) {
            Ok(found) => {
                self.lock_asked().insert(key.to_string(), found.clone());
                Ok(found)
            }
            Err(e) if e.broken => Err(e.message),
            Err(_) => Ok(None),
        }
    }

    fn failed(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock_asked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<CacheEntry>>> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the lookups by key went.
    pub fn stats(&self) -> LookupStats {
        let asked = self.lock_asked();
        LookupStats {
            asked: asked.len(),
            found: asked.values().filter(|v| v.is_some()).count(),
            error: self.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Reads the record of `key` from where the cache lives.
    fn fetch_record(&self, key: &str) -> Result<Option<CacheEntry>, LookupError> {
        let bad = |message: String| LookupError {
            message,
            broken: false,
        };
        match &self.origin {
            Origin::Registry { client, reference } => {
                let tag = record_tag(reference.tag().unwrap_or("latest"), key);
                let at = reference.with_tag(&tag).map_err(|e| bad(e.to_string()))?;
                let bytes = match client.get_manifest(&at, &|_| {}) {
                    Ok((bytes, _, _)) => bytes,
                    Err(RegistryError::NotFound { .. }) => return Ok(None),
                    Err(e) => {
                        return Err(LookupError {
                            message: crate::error::error_chain(&e),
                            broken: true,
                        })
                    }
                };
                let m = records::parse_manifest(&bytes).map_err(|e| bad(format!("{at}: {e}")))?;
                records::entry_of(&m, key)
                    .map(Some)
                    .map_err(|e| bad(format!("{at}: {e}")))
            }
            Origin::Local { dir } => local::read_record(dir, key).map_err(bad),
        }
    }

    /// Makes the layer of `entry` present in `store` without downloading
    /// it: recorded as kept in this cache (see [`crate::content::remote`]),
    /// fetched when something first reads it. A layer the exporter stored
    /// uncompressed is recorded as the compressed blob that was pushed
    /// (itself remote) to decompress, and that blob as the layer's
    /// compressed copy, so a push to where it already is moves no byte.
    pub fn reference_layer(&self, store: &Store, entry: &CacheEntry) -> Result<(), StoreError> {
        use crate::content::remote::{self, Place, Source};
        let Some(local) = &entry.record.layer else {
            return Ok(());
        };
        if store.content.has_local(&local.digest) {
            return Ok(());
        }
        let remote = entry.remote.as_ref().unwrap_or(local);
        let place = match &self.origin {
            Origin::Registry { reference, .. } => Place::Registry {
                repository: reference.repository(),
            },
            Origin::Local { dir } => Place::File {
                path: local::layout_blob(dir, &remote.digest),
            },
        };
        let source = Source {
            place,
            blob: remote.clone(),
        };
        remote::record(&store.content, &local.digest, local.size, source.clone())?;
        if remote.digest == local.digest {
            return Ok(());
        }
        remote::record(&store.content, &remote.digest, remote.size, source)?;
        if let Some(to) = crate::oci::LayerCompression::of_media_type(&remote.media_type)
            .map(crate::compress::Compression::from)
            .filter(|c| *c != crate::compress::Compression::None)
        {
            store.record_compressed_layer(local, remote, to)?;
        }
        Ok(())
    }

    /// Makes the layer of `entry` present in `store` now: referenced as
    /// [`RemoteCache::reference_layer`] does, then read (downloaded,
    /// decompressed when the exporter stored it uncompressed, verified).
    pub fn fetch_layer(&self, store: &Store, entry: &CacheEntry) -> Result<(), StoreError> {
        let Some(local) = &entry.record.layer else {
            return Ok(());
        };
        self.reference_layer(store, entry)?;
        store.content.ensure(&local.digest)
    }
}

/// The manifest to read a cache from when `reference` names an image
/// index (an image pushed with its attestations, or for several
/// platforms, whose inline cache is in each platform's config): this
/// machine's platform's, or the index's only image. Anything else is
/// returned as it is.
fn platform_manifest(
    client: &Client,
    reference: &Reference,
    bytes: Vec<u8>,
    digest: crate::digest::Digest,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<(Vec<u8>, crate::digest::Digest), RegistryError> {
    let Ok(index) = serde_json::from_slice::<crate::oci::Index>(&bytes) else {
        return Ok((bytes, digest));
    };
    let images: Vec<&crate::oci::Descriptor> = index.images().collect();
    let picked = index
        .image_for(&crate::oci::PlatformSpec::host())
        .or(match images.as_slice() {
            [one] => Some(*one),
            _ => None,
        });
    let Some(picked) = picked else {
        return Ok((bytes, digest));
    };
    let (bytes, _, digest) =
        client.get_manifest(&reference.with_digest(picked.digest.clone()), progress)?;
    Ok((bytes, digest))
}

/// What the manifest `reference` names holds: an index of per-record
/// artifacts, a whole cache (older rbk), or an image's inline cache.
fn read_head(
    client: &Client,
    store: &Store,
    reference: &Reference,
    bytes: &[u8],
    digest: &crate::digest::Digest,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Head, RegistryError> {
    let json_error = |what: String, source| RegistryError::Json {
        registry: reference.domain().to_string(),
        what,
        source,
    };
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| json_error(format!("cache manifest {digest}"), e))?;
    let kind = manifest.config.media_type.as_str();
    let image_config = [MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG].contains(&kind);
    if ![CACHE_CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE].contains(&kind) && !image_config {
        return Err(RegistryError::UnsupportedManifest {
            reference: reference.to_string(),
            media_type: format!(
                "{} (not an rbk build cache: its config is {kind})",
                manifest
                    .media_type
                    .as_deref()
                    .unwrap_or(MEDIA_TYPE_OCI_MANIFEST),
            ),
        });
    }
    client.fetch_blobs_into(
        store,
        reference,
        std::slice::from_ref(&manifest.config),
        progress,
    )?;
    let config_bytes = store.content.read(&manifest.config.digest)?;
    let what = format!("cache records {}", manifest.config.digest);
    if image_config {
        // An image: the cache it carries inline, if any (`type=inline`).
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|e| json_error(what, e))?;
        return Ok(Head::Whole(inline_entries(&config, &manifest), false));
    }
    if kind == INDEX_MEDIA_TYPE {
        let index: records::IndexConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| json_error(what, e))?;
        return Ok(Head::Index(index.records.len()));
    }
    let config: CacheConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| json_error(what, e))?;
    Ok(Head::Whole(config.records, true))
}
