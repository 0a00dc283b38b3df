//! The build's side of a cache shared through a registry: which records a
//! `--cache-to` exports (`mode=min`: the steps whose layers are in the
//! images; `mode=max`: every step that led to them, other stages included).
//! The export itself, and the layers of `--cache-from` hits (fetched only
//! when a build needs their bytes), are the backend's
//! ([`crate::backend::store`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use rbk_compiler::BuildGraph;
use rbk_store::registry::cache::ExportReport;
use rbk_store::registry::Client;
use rbk_store::Reference;

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

/// Where a `--cache-to` goes.
#[derive(Clone)]
pub enum CacheDest {
    /// `type=registry,ref=…`: pushed with `client`.
    Registry {
        /// The registry client to push with.
        client: Arc<Client>,
        /// The cache artifact's name.
        reference: Reference,
    },
    /// `type=local,dest=DIR`: an OCI layout directory.
    Local(std::path::PathBuf),
}

impl std::fmt::Display for CacheDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheDest::Registry { reference, .. } => write!(f, "{reference}"),
            CacheDest::Local(dir) => write!(f, "local:{}", dir.display()),
        }
    }
}

/// One `--cache-to`.
#[derive(Clone)]
pub struct CacheExport {
    /// Where the cache goes.
    pub dest: CacheDest,
    /// Which records.
    pub mode: CacheMode,
    /// The images (target names) whose steps it carries; `None`: all.
    pub images: Option<Vec<String>>,
    /// The cache mounts it carries too (`cache-mounts=true`).
    pub mounts: Option<MountExport>,
}

/// Cache mounts exported with a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountExport {
    /// The ids of the cache mounts (those the build's RUN steps use).
    pub ids: Vec<String>,
    /// A cache mount whose files take more bytes than this stays behind.
    pub max: u64,
}

impl std::fmt::Debug for CacheExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheExport")
            .field("dest", &self.dest.to_string())
            .field("mode", &self.mode)
            .field("images", &self.images)
            .field("mounts", &self.mounts)
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
    /// Cache mounts exported.
    pub mounts: usize,
    /// Cache mounts left behind, with why.
    pub mounts_left: Vec<String>,
}

/// The ids of the cache mounts (`RUN --mount=type=cache`) of `graph`'s
/// steps, sorted, each once.
pub fn cache_mount_ids(graph: &BuildGraph) -> Vec<String> {
    let mut ids = BTreeSet::new();
    for id in graph.topo_order() {
        if let rbk_compiler::graph::Op::Exec(e) = &graph.vertex(id).op {
            for m in &e.mounts {
                if let rbk_compiler::graph::MountKind::Cache { id, .. } = &m.kind {
                    ids.insert(id.clone());
                }
            }
        }
    }
    ids.into_iter().collect()
}

/// The directory of cache mount `id` under the store's `cache-mounts`
/// directory: the name `step/run.rs` gives it (the first 32 hex digits of
/// the blake3 of the id).
pub fn cache_mount_dir(cache_mounts: &std::path::Path, id: &str) -> std::path::PathBuf {
    let name = blake3::hash(id.as_bytes()).to_hex();
    cache_mounts.join(&name[..32])
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
