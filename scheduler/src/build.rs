//! Building a compiled [`BuildGraph`] into the store: cache keys, lookups,
//! RUN in the sandbox, COPY/ADD as file operations, one layer per step, and
//! the final images. The parallel walk itself is [`crate::solve`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rbk_compiler::graph::{Op, Source};
use rbk_compiler::BuildGraph;
use rbk_store::cache::{BuildCache, CacheIndex, CacheRecord};
use rbk_store::compress::Compression;
use rbk_store::lock::KeyLock;
use rbk_store::oci::{self, Descriptor, History, ImageConfig as OciConfig, RootFs};
use rbk_store::reference::Reference;
use rbk_store::registry::cache::RemoteCache;
use rbk_store::snapshot::Snapshotter;
use rbk_store::unpack::{unpack_layers, LayerRef};
use rbk_store::{images::Store, Digest};

use crate::explain;
use crate::plan::{self, Plan, Planner};
use crate::progress::{Finish, Reporter, Step};
use crate::sandbox::{CancelToken, Executor, NetworkMode};
use crate::shared_cache::{CacheExport, ExportedCache, RemoteHits};
use crate::solve::{self, Dag, Ops, SolveError};
use crate::steps::{self, StepError};

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Ignore cache hits (results are still recorded).
    pub no_cache: bool,
    /// Steps running at once (RUN mostly waits, so more than the cores).
    pub jobs: usize,
    /// Network for RUN steps that do not choose one.
    pub network: NetworkMode,
    /// `--secret id=…,src=…`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Explain cache misses.
    pub explain: bool,
    /// Layer compression.
    pub compression: Compression,
    /// Caches imported with `--cache-from`, consulted after the store's.
    pub cache_from: Vec<Arc<RemoteCache>>,
    /// Where to export the cache after the build (`--cache-to`).
    pub cache_to: Vec<CacheExport>,
    /// `SOURCE_DATE_EPOCH`: the time new layers and images are dated, for
    /// reproducible builds (as in BuildKit); `None` dates them now.
    pub source_date_epoch: Option<i64>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            no_cache: false,
            jobs: default_jobs(),
            network: NetworkMode::Host,
            secrets: BTreeMap::new(),
            explain: false,
            compression: Compression::None,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            source_date_epoch: None,
        }
    }
}

/// Twice the cores, at least four: RUN steps mostly wait on processes.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4)
        .max(4)
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Target name.
    pub name: String,
    /// Image id (config digest).
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
    /// Tags applied.
    pub tags: Vec<String>,
    /// Layers in the image.
    pub layers: usize,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default)]
pub struct BuildSummary {
    /// Steps executed.
    pub ran: usize,
    /// Steps served from the cache.
    pub cached: usize,
    /// The images.
    pub images: Vec<BuiltImage>,
    /// The caches exported to registries.
    pub exported: Vec<ExportedCache>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed.
    #[error("{label} {text}\n  ({file}:{line}, stage {stage})\n{error}")]
    Step {
        /// `image n/m`.
        label: String,
        /// The instruction.
        text: String,
        /// Dockerfile.
        file: String,
        /// Line.
        line: u32,
        /// Stage.
        stage: String,
        /// What went wrong.
        error: Box<StepError>,
    },
    /// Interrupted.
    #[error("build cancelled")]
    Cancelled,
    /// Committing an image failed.
    #[error("cannot commit image {name}: {source}")]
    Commit {
        /// Target.
        name: String,
        /// Cause.
        #[source]
        source: rbk_store::error::StoreError,
    },
    /// A tag is not a valid reference.
    #[error("invalid tag {tag:?}: {message}")]
    Tag {
        /// The tag.
        tag: String,
        /// Why.
        message: String,
    },
    /// Importing or exporting a registry cache, or fetching one of its
    /// layers, failed.
    #[error("shared build cache: {0}")]
    SharedCache(#[source] rbk_store::registry::RegistryError),
    /// The graph itself is wrong (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// One layer of a filesystem state.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The compressed blob.
    pub blob: Descriptor,
    /// Its uncompressed digest.
    pub diff_id: Digest,
}

/// The result of a vertex: a filesystem state and its cache key.
#[derive(Debug, Clone)]
pub struct State {
    /// The cache key (hex blake3).
    pub key: String,
    /// Layers bottom to top.
    pub layers: Arc<Vec<Layer>>,
    /// The base image this state grew from (config and history).
    pub base: Option<Arc<OciConfig>>,
    /// When the newest layer of this state was made (RFC 3339): reused from
    /// the cache record on a hit, so a no-op rebuild gives the same image id.
    pub created: String,
}

impl State {
    /// The chain id of the top layer, naming its snapshot.
    pub fn chain_id(&self) -> Option<Digest> {
        let ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        oci::chain_ids(&ids).pop()
    }
}

/// The services a build uses. Only the CLI picks the implementations.
pub struct Builder<'a> {
    /// The image store.
    pub store: &'a Store,
    /// Snapshots (overlay or copy).
    pub snapshotter: &'a dyn Snapshotter,
    /// Runs RUN steps.
    pub executor: &'a dyn Executor,
    /// Receives progress.
    pub reporter: &'a dyn Reporter,
    /// Options.
    pub options: BuildOptions,
}

pub(crate) struct GraphOps<'a, 'g> {
    b: &'a Builder<'a>,
    graph: &'g BuildGraph,
    cache: CacheIndex,
    labels: Vec<String>,
    families: Vec<String>,
    remote: RemoteHits,
    contexts: steps::Contexts,
    ran: std::sync::atomic::AtomicUsize,
    cached: std::sync::atomic::AtomicUsize,
}

impl Builder<'_> {
    /// Builds every image of `graph`, in parallel, tagging the results.
    pub fn build(
        &self,
        graph: &BuildGraph,
        cancel: &CancelToken,
    ) -> Result<BuildSummary, BuildError> {
        sweep_dead_steps(self.store.root(), self.snapshotter);
        let n = graph.len();
        let dag = Dag {
            deps: graph
                .topo_order()
                .into_iter()
                .map(|id| {
                    let v = graph.vertex(id);
                    v.parent
                        .iter()
                        .chain(&v.inputs)
                        .map(|d| d.index())
                        .collect()
                })
                .collect(),
        };
        let (labels, families) = step_labels(graph);
        let ops = GraphOps {
            b: self,
            graph,
            cache: CacheIndex::open(self.store.root())
                .map_err(|e| BuildError::Internal(e.to_string()))?,
            labels,
            families,
            remote: RemoteHits::default(),
            contexts: steps::Contexts::new(self.store.root()),
            ran: Default::default(),
            cached: Default::default(),
        };
        debug_assert_eq!(dag.deps.len(), n);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.options.jobs.max(1))
            .thread_name(|i| format!("rbk-step-{i}"))
            .build()
            .map_err(|e| BuildError::Internal(e.to_string()))?;
        let roots: Vec<usize> = graph.images.iter().map(|i| i.vertex.index()).collect();
        let fail = |e: SolveError<StepError>| match e {
            SolveError::Cancelled => BuildError::Cancelled,
            SolveError::Invalid(m) => BuildError::Internal(m),
            SolveError::Failed { vertex, error } => {
                let v = graph.vertex(petgraph::graph::NodeIndex::new(vertex));
                let o = v.origins.first();
                BuildError::Step {
                    label: ops.labels[vertex].clone(),
                    text: o.map(|o| o.text.clone()).unwrap_or_default(),
                    file: o.map(|o| o.file.clone()).unwrap_or_default(),
                    line: o.map(|o| o.line).unwrap_or(0),
                    stage: o.map(|o| o.stage.clone()).unwrap_or_default(),
                    error: Box::new(error),
                }
            }
        };
        // Pass 1: every key and lookup (context hashing in parallel).
        let plans = solve::solve(&dag, &roots, &Planner(&ops), &pool, cancel).map_err(fail)?;
        let needed = plan::needed(graph, &plans, &roots);
        // Steps no image needs, whose results the cache has anyway.
        for (v, p) in plans.iter().enumerate() {
            let is_step = graph
                .vertex(petgraph::graph::NodeIndex::new(v))
                .op
                .has_layer();
            if !needed[v] && is_step && p.as_ref().is_some_and(|p| p.recorded) {
                let step = ops.step(v);
                self.reporter.on_start(&step);
                ops.cached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ops.finish(&step, Instant::now(), true, None, false);
            }
        }
        // Pass 2: what the images need, served or run.
        let run_dag = Dag {
            deps: plan::run_deps(graph, &plans),
        };
        let runner = Runner {
            ops: &ops,
            plans: &plans,
        };
        let results = solve::solve(&run_dag, &roots, &runner, &pool, cancel).map_err(fail)?;
        ops.contexts.save();
        let mut images = Vec::new();
        for img in &graph.images {
            let state = results[img.vertex.index()]
                .clone()
                .ok_or_else(|| BuildError::Internal(format!("image {} was not built", img.name)))?;
            // Layers served by a registry cache come in now, and only
            // those the image holds.
            for l in state.layers.iter() {
                ops.remote
                    .materialize(self.store, &l.blob.digest)
                    .map_err(BuildError::SharedCache)?;
            }
            images.push(self.commit(graph, img, &state, &results)?);
        }
        let keys: Vec<Option<String>> = plans
            .iter()
            .map(|p| p.as_ref().map(|p| p.key.clone()))
            .collect();
        let exported = crate::shared_cache::export_all(
            self.store,
            &ops.cache,
            &ops.remote,
            graph,
            &keys,
            &self.options.cache_to,
        )
        .map_err(BuildError::SharedCache)?;
        Ok(BuildSummary {
            ran: ops.ran.load(std::sync::atomic::Ordering::SeqCst),
            cached: ops.cached.load(std::sync::atomic::Ordering::SeqCst),
            images,
            exported,
        })
    }

    fn commit(
        &self,
        graph: &BuildGraph,
        img: &rbk_compiler::graph::ImageOutput,
        state: &State,
        results: &[Option<State>],
    ) -> Result<BuiltImage, BuildError> {
        let mut history: Vec<History> = state
            .base
            .as_ref()
            .map(|b| b.history.clone())
            .unwrap_or_default();
        for id in graph.chain(img.vertex) {
            let v = graph.vertex(id);
            if matches!(v.op, Op::Source { .. }) {
                continue;
            }
            let created = results[id.index()]
                .as_ref()
                .map(|s| s.created.clone())
                .unwrap_or_else(epoch);
            history.push(History {
                created: Some(created),
                created_by: Some(v.created_by.clone()),
                empty_layer: !v.op.has_layer(),
                ..Default::default()
            });
        }
        let container: oci::ContainerConfig = serde_json::from_value(
            serde_json::to_value(&img.config).map_err(|e| BuildError::Internal(e.to_string()))?,
        )
        .map_err(|e| BuildError::Internal(e.to_string()))?;
        let (os, rest) = img.platform.split_once('/').unwrap_or(("linux", "amd64"));
        let (arch, variant) = match rest.split_once('/') {
            Some((a, v)) => (a, Some(v.to_string())),
            None => (rest, None),
        };
        let config = OciConfig {
            created: Some(state.created.clone()),
            author: img.author.clone(),
            architecture: arch.to_string(),
            os: os.to_string(),
            variant,
            config: Some(container),
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids: state.layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history,
            ..Default::default()
        };
        let mut tags = Vec::new();
        for t in &img.tags {
            tags.push(t.parse::<Reference>().map_err(|e| BuildError::Tag {
                tag: t.clone(),
                message: e.to_string(),
            })?);
        }
        let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.blob.clone()).collect();
        let image = self
            .store
            .commit_image(&config, &layers, &tags)
            .map_err(|source| BuildError::Commit {
                name: img.name.clone(),
                source,
            })?;
        Ok(BuiltImage {
            name: img.name.clone(),
            id: image.id.clone(),
            manifest: image.manifest_digest.clone(),
            tags: img.tags.clone(),
            layers: layers.len(),
        })
    }
}

/// `image n/m` labels and cache families (image/stage/position) per vertex.
fn step_labels(graph: &BuildGraph) -> (Vec<String>, Vec<String>) {
    let n = graph.len();
    let mut labels = vec![String::new(); n];
    let mut families = vec![String::new(); n];
    for img in &graph.images {
        let chain = graph.chain(img.vertex);
        let total = chain.len();
        for (pos, id) in chain.iter().enumerate() {
            let i = id.index();
            if labels[i].is_empty() {
                labels[i] = format!("{} {}/{}", img.name, pos + 1, total);
                let stage = graph
                    .vertex(*id)
                    .origins
                    .iter()
                    .find(|o| o.image == img.name)
                    .map(|o| o.stage.as_str())
                    .unwrap_or("");
                families[i] = format!("{}/{}/{}", img.name, stage, pos);
            }
        }
    }
    // Vertices only reached through --from (other stages).
    for id in graph.topo_order() {
        let i = id.index();
        if labels[i].is_empty() {
            let o = graph.vertex(id).origins.first();
            let img = o.map(|o| o.image.as_str()).unwrap_or("");
            let stage = o.map(|o| o.stage.as_str()).unwrap_or("");
            let pos = graph.chain(id).len();
            labels[i] = format!("{img} [{stage}] {pos}");
            families[i] = format!("{img}/{stage}/{pos}");
        }
    }
    (labels, families)
}

/// Now, or `SOURCE_DATE_EPOCH` when given, as RFC 3339.
fn now_rfc3339(source_date_epoch: Option<i64>) -> String {
    let t = source_date_epoch
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

fn epoch() -> String {
    "1970-01-01T00:00:00Z".to_string()
}

pub(crate) fn key_of(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex().to_string()
}

impl<'a, 'g> GraphOps<'a, 'g> {
    pub(crate) fn step(&self, v: usize) -> Step {
        let vx = self.graph.vertex(petgraph::graph::NodeIndex::new(v));
        Step {
            vertex: v,
            label: self.labels[v].clone(),
            text: vx
                .origins
                .first()
                .map(|o| o.text.lines().next().unwrap_or("").to_string())
                .unwrap_or_default(),
            kind: vx.op.kind(),
        }
    }

    /// Makes sure the snapshot of `layers` exists, unpacking missing ones
    /// bottom-up (once, even when several steps or processes ask at the
    /// same time), leased to this process.
    fn ensure_unpacked(
        &self,
        layers: &[Layer],
        cancel: &CancelToken,
    ) -> Result<Option<String>, StepError> {
        let refs: Vec<LayerRef<'_>> = layers
            .iter()
            .map(|l| LayerRef {
                blob: &l.blob,
                diff_id: &l.diff_id,
            })
            .collect();
        let fetch = |blob: &Descriptor| {
            self.remote
                .materialize(self.b.store, &blob.digest)
                .map_err(|e| StepError::Store(format!("layer {}: {e}", blob.digest)))
        };
        unpack_layers(self.b.store, self.b.snapshotter, &refs, fetch, || {
            cancel.is_cancelled()
        })
    }

    /// The record for `key` the build can use (its layer is local, or a
    /// `--cache-from` cache has it), and whether any record exists at all
    /// (a local one whose layer was pruned since exists but is no use).
    pub(crate) fn lookup(&self, key: &str) -> (Option<CacheRecord>, bool) {
        if self.b.options.no_cache {
            return (None, false);
        }
        let local = self.cache.get(key);
        let recorded = local.is_some();
        // The hit's layer and snapshot are leased, so no `prune` in another
        // process removes them before this build uses them.
        if let Some(rec) = local.filter(|rec| {
            self.b
                .store
                .lease_cache_hit(rec.layer.as_ref().map(|l| &l.digest), rec.chain_id.as_ref())
                .unwrap_or(false)
        }) {
            return (Some(rec), true);
        }
        match self.remote.lookup(&self.b.options.cache_from, key) {
            Some(rec) => {
                // Kept locally, so `--explain`, a later `--cache-to` and a
                // build without `--cache-from` see it (its layer counts
                // once fetched).
                let _ = self.cache.put(&rec);
                (Some(rec), true)
            }
            None => (None, recorded),
        }
    }
}

/// Ops of the second pass: serve hits, run misses, following the plans.
struct Runner<'x, 'a, 'g> {
    ops: &'x GraphOps<'a, 'g>,
    plans: &'x [Option<Plan>],
}

impl Ops for Runner<'_, '_, '_> {
    type Out = State;
    type Err = StepError;

    fn run(&self, v: usize, inputs: &[&State], cancel: &CancelToken) -> Result<State, StepError> {
        let ops = self.ops;
        let id = petgraph::graph::NodeIndex::new(v);
        let vx = ops.graph.vertex(id);
        let plan = self.plans[v]
            .as_ref()
            .ok_or_else(|| StepError::Internal(format!("vertex {v} has no plan")))?;
        let parent = if vx.parent.is_some() {
            inputs.first().copied()
        } else {
            None
        };
        let extra: Vec<&State> = if vx.parent.is_some() {
            inputs.get(1..).unwrap_or_default().to_vec()
        } else {
            inputs.to_vec()
        };
        match &vx.op {
            Op::Source { .. } => plan
                .source
                .clone()
                .ok_or_else(|| StepError::Internal("base image without a state".into())),
            Op::Config { .. } => {
                let p = parent
                    .ok_or_else(|| StepError::Internal("config step without parent".into()))?;
                Ok(State {
                    key: plan.key.clone(),
                    layers: p.layers.clone(),
                    base: p.base.clone(),
                    created: p.created.clone(),
                })
            }
            Op::Exec(_) | Op::File(_) => {
                let p = parent.ok_or_else(|| StepError::Internal("step without parent".into()))?;
                let step = ops.step(v);
                let started = Instant::now();
                ops.b.reporter.on_start(&step);
                let key = plan.key.clone();
                if let Some(state) = plan
                    .hit
                    .as_ref()
                    .and_then(|rec| ops.serve(rec, p, &step, started))
                {
                    return Ok(state);
                }
                // A miss. One process at a time runs a given step: others
                // wait, then take its result from the cache, so identical
                // steps of concurrent builds run once and give one image id.
                let _running = ops.step_lock(&key, &step, cancel)?;
                if let (Some(rec), _) = ops.lookup(&key) {
                    if let Some(state) = ops.serve(&rec, p, &step, started) {
                        return Ok(state);
                    }
                }
                let family = &ops.families[v];
                let why = if ops.b.options.explain {
                    Some(explain::explain(
                        ops.cache.nearest(family, &key).as_ref().map(|r| &r.inputs),
                        &plan.inputs,
                        ops.b.options.no_cache,
                    ))
                } else {
                    None
                };
                let selection = plan.selection.as_deref().cloned();
                let result = ops.execute(vx, &step, p, &extra, selection, cancel);
                let (blob, diff_id) = match result {
                    Ok(x) => x,
                    Err(e) => {
                        ops.finish(&step, started, false, why, true);
                        return Err(e);
                    }
                };
                let mut layers = (*p.layers).clone();
                layers.push(Layer {
                    blob: blob.clone(),
                    diff_id: diff_id.clone(),
                });
                let state = State {
                    key: key.clone(),
                    layers: Arc::new(layers),
                    base: p.base.clone(),
                    created: now_rfc3339(ops.b.options.source_date_epoch),
                };
                let record = CacheRecord {
                    key,
                    family: family.clone(),
                    layer: Some(blob),
                    diff_id: Some(diff_id),
                    chain_id: state.chain_id(),
                    config: None,
                    inputs: (*plan.inputs).clone(),
                    created: state.created.clone(),
                };
                ops.cache
                    .put(&record)
                    .map_err(|e| StepError::Store(e.to_string()))?;
                ops.ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ops.finish(&step, started, false, why, false);
                Ok(state)
            }
        }
    }
}

impl<'a, 'g> GraphOps<'a, 'g> {
    /// The state of a base image: `scratch`, or the image in the store,
    /// keyed by its id (its config digest, which covers the layers'
    /// uncompressed digests), as BuildKit does: the same image pulled with
    /// other compression hits the same cache.
    pub(crate) fn base_state(&self, image: &str, def: &str) -> Result<State, StepError> {
        if image == "scratch" {
            return Ok(State {
                key: key_of(&[def.as_bytes()]),
                layers: Arc::new(Vec::new()),
                base: None,
                created: epoch(),
            });
        }
        let img = self
            .b
            .store
            .resolve_leased(image)
            .map_err(|e| StepError::BaseImage {
                image: image.to_string(),
                message: e.to_string(),
            })?;
        let layers: Vec<Layer> = img
            .manifest
            .layers
            .iter()
            .zip(&img.config.rootfs.diff_ids)
            .map(|(d, id)| Layer {
                blob: d.clone(),
                diff_id: id.clone(),
            })
            .collect();
        Ok(State {
            key: key_of(&[def.as_bytes(), img.id.as_str().as_bytes()]),
            layers: Arc::new(layers),
            created: img.config.created.clone().unwrap_or_else(epoch),
            base: Some(Arc::new(img.config.clone())),
        })
    }

    pub(crate) fn graph(&self) -> &'g BuildGraph {
        self.graph
    }
}

impl GraphOps<'_, '_> {
    /// The state a cache record gives on top of `parent`, reported as
    /// cached; `None` for a record without a layer (not a layer step's).
    fn serve(
        &self,
        rec: &CacheRecord,
        parent: &State,
        step: &Step,
        started: Instant,
    ) -> Option<State> {
        let (blob, diff_id) = (rec.layer.clone()?, rec.diff_id.clone()?);
        let mut layers = (*parent.layers).clone();
        layers.push(Layer { blob, diff_id });
        self.cached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.finish(step, started, true, None, false);
        Some(State {
            key: rec.key.clone(),
            layers: Arc::new(layers),
            base: parent.base.clone(),
            created: rec.created.clone(),
        })
    }

    /// Takes the store-wide lock on running step `key` (none with
    /// `--no-cache`, which asks to run every step regardless). A step
    /// another process is running is waited for, and said so.
    fn step_lock(
        &self,
        key: &str,
        step: &Step,
        cancel: &CancelToken,
    ) -> Result<Option<KeyLock>, StepError> {
        if self.b.options.no_cache {
            return Ok(None);
        }
        let dir = self.b.store.root().join("locks");
        let on_wait = || {
            self.b.reporter.on_log(
                step,
                crate::sandbox::OutputStream::Stderr,
                b"waiting for another rbk process running the same step\n",
            )
        };
        KeyLock::acquire(&dir, &format!("step-{key}"), on_wait, || {
            cancel.is_cancelled()
        })
        .map_err(|e| StepError::Store(e.to_string()))?
        .map(Some)
        .ok_or(StepError::Cancelled)
    }

    fn finish(
        &self,
        step: &Step,
        started: Instant,
        cached: bool,
        explain: Option<String>,
        failed: bool,
    ) {
        let f = Finish {
            cached,
            duration: started.elapsed(),
            explain,
            failed,
        };
        self.b.reporter.on_finish(step, &f);
    }

    /// Runs a RUN/COPY/ADD on a fresh snapshot over the parent, and commits
    /// the change as a layer blob and a snapshot.
    fn execute(
        &self,
        vx: &rbk_compiler::Vertex,
        step: &Step,
        parent: &State,
        extra: &[&State],
        selection: Option<crate::context::Selection>,
        cancel: &CancelToken,
    ) -> Result<(Descriptor, Digest), StepError> {
        let parent_key = self.ensure_unpacked(&parent.layers, cancel)?;
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let active = format!("active-{}-{}", std::process::id(), unique());
        let snap = self.b.snapshotter;
        let mounts = snap
            .prepare(&active, parent_key.as_deref())
            .map_err(|e| StepError::Store(e.to_string()))?;
        // Removes the active snapshot on every early return.
        let mut cleanup = ActiveGuard {
            snapshotter: snap,
            key: Some(active.clone()),
        };
        let rootfs = self
            .b
            .store
            .root()
            .join("tmp")
            .join(format!("{active}-rootfs"));
        std::fs::create_dir_all(&rootfs).map_err(|e| StepError::io("create", &rootfs, e))?;
        let _rootfs_dir = DirGuard(rootfs.clone());
        {
            let mounted = rbk_store::sys::mount_all(&mounts, &rootfs)
                .map_err(|e| StepError::Store(e.to_string()))?;
            match &vx.op {
                Op::Exec(exec) => steps::run_exec(self, exec, step, &rootfs, extra, cancel)?,
                Op::File(file) => {
                    let src = match &file.from {
                        Source::Context(ctx) => {
                            steps::SourceRoot::Context(PathBuf::from(ctx), selection)
                        }
                        Source::Vertex(_) => {
                            let from = extra.first().ok_or_else(|| {
                                StepError::Internal("COPY --from without its input".into())
                            })?;
                            steps::SourceRoot::State((*from).clone())
                        }
                    };
                    steps::run_file(self, file, &src, &rootfs, cancel)?;
                }
                _ => return Err(StepError::Internal("not a layer step".into())),
            }
            mounted
                .unmount()
                .map_err(|e| StepError::Store(e.to_string()))?;
        }
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        // The diff hashes its stream (diff id, and the blob digest when
        // compressed); the blob need not be hashed a third time.
        let mut writer = self
            .b
            .store
            .content
            .writer_prehashed()
            .map_err(|e| StepError::Store(e.to_string()))?;
        let info = snap
            .diff(&active, &mut writer, self.b.options.compression)
            .map_err(|e| StepError::Store(e.to_string()))?;
        let (digest, size) = writer
            .commit(Some(&info.digest))
            .map_err(|e| StepError::Store(e.to_string()))?;
        let mut ids: Vec<Digest> = parent.layers.iter().map(|l| l.diff_id.clone()).collect();
        ids.push(info.diff_id.clone());
        let chain = oci::chain_ids(&ids)
            .pop()
            .ok_or_else(|| StepError::Internal("empty chain".into()))?;
        let name = chain.hex().to_string();
        // Leased before it appears, so a concurrent prune spares it.
        self.b
            .store
            .content
            .lease()
            .add([rbk_store::lease::Leased::Snapshot(name.clone())])
            .map_err(|e| StepError::Store(e.to_string()))?;
        match snap.commit(&name, &active) {
            Ok(()) => cleanup.key = None,
            // Another build committed the same change meanwhile: keep theirs.
            Err(rbk_store::snapshot::SnapshotError::AlreadyExists { .. }) => drop(cleanup),
            Err(e) => return Err(StepError::Store(e.to_string())),
        }
        let media_type = self.b.options.compression.layer_media_type();
        Ok((Descriptor::new(media_type, digest, size), info.diff_id))
    }

    pub(crate) fn builder(&self) -> &Builder<'_> {
        self.b
    }

    pub(crate) fn contexts(&self) -> &steps::Contexts {
        &self.contexts
    }

    pub(crate) fn unpack(
        &self,
        state: &State,
        cancel: &CancelToken,
    ) -> Result<Option<String>, StepError> {
        self.ensure_unpacked(&state.layers, cancel)
    }
}

/// Undoes what a killed rbk left of its running steps: the rootfs and view
/// mounts under `tmp/` (named after the dead process's pid) and their
/// snapshots, so they cannot pile up or trip a later sweep of `tmp/`.
fn sweep_dead_steps(root: &std::path::Path, snapshotter: &dyn Snapshotter) {
    let tmp = root.join("tmp");
    let Ok(points) = rbk_store::sys::mounts_under(&tmp) else {
        return;
    };
    for point in points {
        if point.parent() != Some(tmp.as_path()) {
            continue;
        }
        let Some(key) = point
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(rbk_store::check::dead_step_mount)
        else {
            continue;
        };
        if rbk_store::sys::unmount(&point).is_ok() {
            let _ = std::fs::remove_dir(&point);
            let _ = snapshotter.remove(&key);
        }
    }
}

/// A process-unique number for temporary snapshot and directory names.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::SeqCst) << 48)
}

struct ActiveGuard<'a> {
    snapshotter: &'a dyn Snapshotter,
    key: Option<String>,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let _ = self.snapshotter.remove(&k);
        }
    }
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
