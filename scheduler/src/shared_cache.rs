//! The build's side of a cache shared through a registry: which records a
//! `--cache-to` exports (`mode=min`: the steps whose layers are in the
//! images; `mode=max`: every step that led to them, other stages included),
//! and the layers of `--cache-from` hits, fetched only when a build needs
//! their bytes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rbk_compiler::BuildGraph;
use rbk_store::cache::{BuildCache, CacheIndex, CacheRecord};
use rbk_store::compress::Compression;
use rbk_store::registry::cache::{self, CacheEntry, ExportReport, RemoteCache};
use rbk_store::registry::{Client, RegistryError};
use rbk_store::{images::Store, Digest, Reference};

/// Which records a cache export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Only the steps whose layers end up in the exported images.
    #[default]
    Min,
    /// Every step the images depend on, build stages included.
    Max,
}

impl std::str::FromStr for CacheMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "min" => Ok(CacheMode::Min),
            "max" => Ok(CacheMode::Max),
            other => Err(format!("unknown cache mode {other:?}: use min or max")),
        }
    }
}

/// One `--cache-to type=registry,ref=…`.
#[derive(Clone)]
pub struct CacheExport {
    /// The registry client to push with.
    pub client: Arc<Client>,
    /// Where the cache artifact goes.
    pub reference: Reference,
    /// Which records.
    pub mode: CacheMode,
    /// The images (target names) whose steps it carries; `None`: all.
    pub images: Option<Vec<String>>,
}

impl std::fmt::Debug for CacheExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheExport")
            .field("reference", &self.reference.to_string())
            .field("mode", &self.mode)
            .field("images", &self.images)
            .finish()
    }
}

/// The outcome of one export, for the build's summary.
#[derive(Debug, Clone)]
pub struct ExportedCache {
    /// Where it went.
    pub reference: String,
    /// What was pushed.
    pub report: ExportReport,
}

/// The vertices whose records an export of `images` in `mode` carries, in
/// topological order: steps with a layer only (metadata steps have no
/// record; their keys follow from their parents').
pub(crate) fn exported_vertices(
    graph: &BuildGraph,
    images: Option<&[String]>,
    mode: CacheMode,
) -> Vec<usize> {
    let mut wanted = BTreeSet::new();
    for img in &graph.images {
        if images.is_some_and(|names| !names.iter().any(|n| n == &img.name)) {
            continue;
        }
        match mode {
            CacheMode::Min => wanted.extend(graph.chain(img.vertex).iter().map(|v| v.index())),
            CacheMode::Max => {
                let mut todo = vec![img.vertex];
                while let Some(id) = todo.pop() {
                    if wanted.insert(id.index()) {
                        let v = graph.vertex(id);
                        todo.extend(v.parent.iter().chain(&v.inputs).copied());
                    }
                }
            }
        }
    }
    graph
        .topo_order()
        .into_iter()
        .map(|id| id.index())
        .filter(|i| wanted.contains(i))
        .filter(|&i| {
            graph
                .vertex(petgraph::graph::NodeIndex::new(i))
                .op
                .has_layer()
        })
        .collect()
}

/// Hits served by `--cache-from` caches whose layers may not be local yet.
#[derive(Default)]
pub(crate) struct RemoteHits {
    /// Local layer digest → the cache that has it and its entry.
    layers: Mutex<HashMap<Digest, (Arc<RemoteCache>, CacheEntry)>>,
    /// One download at a time per layer.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

impl RemoteHits {
    /// The first of `caches` with a record for `key`, remembered so its
    /// layer can be fetched later.
    pub(crate) fn lookup(&self, caches: &[Arc<RemoteCache>], key: &str) -> Option<CacheRecord> {
        for c in caches {
            if let Some(entry) = c.get(key) {
                if let Some(layer) = &entry.record.layer {
                    self.layers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(layer.digest.clone(), (c.clone(), entry.clone()));
                }
                return Some(entry.record.clone());
            }
        }
        None
    }

    /// Makes sure the blob `digest` is in `store`, downloading it from the
    /// cache that served it. A blob no cache served is left to the caller
    /// (it reports the missing blob when it reads it).
    pub(crate) fn materialize(&self, store: &Store, digest: &Digest) -> Result<(), RegistryError> {
        if store.content.has(digest) {
            return Ok(());
        }
        let Some((cache, entry)) = self
            .layers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
        else {
            return Ok(());
        };
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.clone())
            .or_default()
            .clone();
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        cache.fetch_layer(store, &entry, &|_| {})?;
        Ok(())
    }
}

/// Pushes every export of `exports`: the records of the vertices each one
/// covers (found by their keys, `keys[vertex]`), their layers as gzip.
pub(crate) fn export_all(
    store: &Store,
    index: &CacheIndex,
    hits: &RemoteHits,
    graph: &BuildGraph,
    keys: &[Option<String>],
    exports: &[CacheExport],
) -> Result<Vec<ExportedCache>, RegistryError> {
    let mut done = Vec::with_capacity(exports.len());
    for e in exports {
        let mut records = Vec::new();
        for v in exported_vertices(graph, e.images.as_deref(), e.mode) {
            let Some(rec) = keys[v].as_deref().and_then(|k| index.get(k)) else {
                continue;
            };
            if let Some(l) = &rec.layer {
                hits.materialize(store, &l.digest)?;
                if !store.content.has(&l.digest) {
                    // Pruned since the build used it: nothing to share.
                    continue;
                }
            }
            records.push(rec);
        }
        let report = cache::export(
            &e.client,
            store,
            &e.reference,
            &records,
            &|l| store.compressed_layer(l, Compression::Gzip),
            &|_| {},
        )?;
        done.push(ExportedCache {
            reference: e.reference.to_string(),
            report,
        });
    }
    Ok(done)
}
