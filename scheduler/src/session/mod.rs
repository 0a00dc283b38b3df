//! A build session: made once per build from the graph, the services it
//! uses and its options — everything validated and every base image
//! resolved before any work starts — then [`BuildSession::build`] runs the
//! two passes: every cache key and lookup first ([`crate::plan`]), then
//! only what the images need ([`crate::runner`]), then the images are
//! committed ([`crate::image`]) and the caches exported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use petgraph::graph::NodeIndex;
use rbk_compiler::{BuildGraph, Vertex};

use crate::backend::{BackendError, Images, Layers, Lookup, StepCache, WorkDirs};
use crate::progress::{Finish, Outcome, Reporter, Step};
use crate::shared_cache::{exported_vertices, ExportedCache};
use crate::solve::{self, SolveError};
use crate::step::from::BaseImages;
use crate::step::{
    self, Contexts, Entitlement, LayerPolicy, Resolve, StepEnv, StepError, StepKind,
};
use plan::Planner;
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::{Executor, NetworkMode};
use runner::Runner;

mod commit;
mod dag;
mod link;
mod plan;
mod runner;
mod wait;

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Ignore cache hits (results are still recorded).
    pub no_cache: bool,
    /// Steps running at once (RUN mostly waits, so more than the cores).
    pub jobs: usize,
    /// Network for RUN steps that do not choose one.
    pub network: NetworkMode,
    /// `--no-cache-filter`: stages whose steps run whatever the cache has.
    pub no_cache_stages: Vec<String>,
    /// rbk.toml `no-cache = true`: images (target names) whose own steps
    /// run whatever the cache has.
    pub no_cache_images: BTreeSet<String>,
    /// `--annotation`: annotations of the images' manifests.
    pub annotations: BTreeMap<String, String>,
    /// `--cache-to type=inline`: the images (target names) whose configs
    /// carry the cache records of their own steps.
    pub inline_cache: BTreeSet<String>,
    /// `--secret id=…,src=…`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--ssh id=…`: SSH agent sockets by id, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Explain cache misses.
    pub explain: bool,
    /// `SOURCE_DATE_EPOCH`: the time new layers and images are dated, for
    /// reproducible builds (as in BuildKit); `None` dates them now.
    pub source_date_epoch: Option<i64>,
    /// Entitlements granted with `--allow`, as in BuildKit.
    pub allow: Entitlements,
    /// This builder's part in a fleet build (`--shard`), if any.
    pub fleet: Option<crate::fleet::Fleet>,
}

/// What a build may do beyond the sandbox's defaults (`--allow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: RUN on the host's network.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure` (all capabilities,
    /// no seccomp).
    pub security_insecure: bool,
}

impl Entitlements {
    /// Whether `e` was granted.
    pub fn grants(&self, e: Entitlement) -> bool {
        match e {
            Entitlement::NetworkHost => self.network_host,
            Entitlement::SecurityInsecure => self.security_insecure,
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            no_cache: false,
            no_cache_stages: Vec::new(),
            no_cache_images: BTreeSet::new(),
            annotations: BTreeMap::new(),
            inline_cache: BTreeSet::new(),
            jobs: default_jobs(),
            network: NetworkMode::Private,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            explain: false,
            source_date_epoch: None,
            allow: Entitlements::default(),
            fleet: None,
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

/// The services a build uses. Only the CLI (or a test) picks them.
pub struct Services<'a> {
    /// Base images, resolved once (shared with the compiler's resolver).
    pub bases: &'a BaseImages<'a>,
    /// Where images are committed.
    pub images: &'a dyn Images,
    /// Filesystem layers.
    pub layers: &'a dyn Layers,
    /// The step cache.
    pub cache: &'a dyn StepCache,
    /// Runs RUN steps.
    pub executor: &'a dyn Executor,
    /// Receives progress.
    pub reporter: &'a dyn Reporter,
    /// Directories the build may use.
    pub dirs: WorkDirs,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Target name.
    pub name: String,
    /// Image id (config digest).
    pub id: rbk_store::Digest,
    /// Manifest digest.
    pub manifest: rbk_store::Digest,
    /// Tags applied.
    pub tags: Vec<String>,
    /// Layers in the image.
    pub layers: usize,
    /// Its platform (`os/arch[/variant]`; several, comma-separated, for an
    /// index).
    pub platform: String,
}

/// How one step of a build ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// The vertex.
    pub vertex: usize,
    /// Served from the cache.
    pub cached: bool,
    /// How long it took.
    pub seconds: f64,
}

/// What the cache holds for one vertex, before anything runs
/// ([`BuildSession::plan`], for `rbk graph`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VertexPlan {
    /// A base image.
    Base,
    /// The cache has the step's result (a metadata step: its parent's is).
    Cached,
    /// The step would run; why, as `--explain` says it.
    Run(String),
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
    /// Every step that finished, in the order they did.
    pub steps: Vec<StepOutcome>,
    /// Fleet builds: steps of other shards taken from the shared cache.
    pub waited: usize,
    /// Fleet builds: steps of other shards made here after the wait.
    pub took_over: usize,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step failed; `error` says why.
    #[error("{label} {text}")]
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
        #[source]
        error: Box<StepError>,
    },
    /// A step needs an entitlement the command line did not grant.
    #[error("{file}:{line}: {what} needs `--allow {entitlement}`")]
    Entitlement {
        /// Dockerfile.
        file: String,
        /// Line.
        line: u32,
        /// The instruction's option, e.g. `RUN --security=insecure`.
        what: &'static str,
        /// The entitlement it needs.
        entitlement: &'static str,
    },
    /// An `--ssh` agent socket is not usable.
    #[error("--ssh {id}: {} is not an SSH agent socket", .path.display())]
    Ssh {
        /// The agent's id.
        id: String,
        /// Its socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `--secret` file cannot be read.
    #[error("--secret id={id}: cannot read {}", .path.display())]
    Secret {
        /// The secret's id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A RUN must run and the sandbox cannot here.
    #[error("cannot run build steps here: {0}")]
    Sandbox(String),
    /// Interrupted.
    #[error("build cancelled")]
    Cancelled,
    /// Committing an image failed.
    #[error("cannot commit image {name}")]
    Commit {
        /// Target.
        name: String,
        /// Cause.
        #[source]
        source: BackendError,
    },
    /// A tag is not a valid reference.
    #[error("invalid tag {tag:?}")]
    Tag {
        /// The tag.
        tag: String,
        /// Why.
        #[source]
        source: rbk_store::StoreError,
    },
    /// An image config does not convert (a bug).
    #[error(transparent)]
    Config(#[from] crate::image::ConfigError),
    /// Exporting a registry cache failed (after the images were tagged).
    #[error("cannot export the build cache")]
    SharedCache(#[source] BackendError),
    /// The graph itself is wrong (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// One build: see the module documentation.
pub struct BuildSession<'a> {
    pub(crate) graph: &'a BuildGraph,
    pub(crate) bases: &'a BaseImages<'a>,
    pub(crate) images: &'a dyn Images,
    pub(crate) cache: &'a dyn StepCache,
    pub(crate) reporter: &'a dyn Reporter,
    pub(crate) env: StepEnv<'a>,
    /// Picks each vertex's kind of step (asked each time: a kind is a
    /// view of its op, and a session holding boxed kinds could not be
    /// dropped after the graph it borrows).
    steps: &'a dyn Resolve,
    pub(crate) options: BuildOptions,
    labels: Vec<String>,
    pub(crate) families: Vec<String>,
    /// Each finished step: (vertex, served from the cache, seconds).
    outcomes: std::sync::Mutex<Vec<StepOutcome>>,
    /// Vertices `--no-cache-filter` reruns: its stages' steps and every
    /// step that reads one of them.
    filtered: Vec<bool>,
    /// Each step's result key, once it was asked before running (early
    /// cutoff): exported with the plan's keys.
    pub(crate) result_keys: Vec<std::sync::OnceLock<String>>,
    pool: rayon::ThreadPool,
    pub(crate) ran: AtomicUsize,
    pub(crate) cached: AtomicUsize,
    /// Steps of other shards taken from the shared cache after waiting.
    pub(crate) waited: AtomicUsize,
    /// Steps of other shards made here: they did not come in time.
    pub(crate) took_over: AtomicUsize,
    /// A fleet build's places for working steps (see [`crate::fleet`]).
    pub(crate) permits: Option<crate::fleet::Permits>,
}

impl<'a> BuildSession<'a> {
    /// Validates `options` and resolves every base image of `graph`, so a
    /// bad input fails before anything runs.
    pub fn new(
        graph: &'a BuildGraph,
        svc: Services<'a>,
        options: BuildOptions,
    ) -> Result<Self, BuildError> {
        Self::with_steps(graph, svc, options, &step::Builtin)
    }

    /// [`BuildSession::new`] with the kinds of step `steps` resolves the
    /// graph's ops to (rbk's own are [`step::Builtin`]).
    pub fn with_steps(
        graph: &'a BuildGraph,
        svc: Services<'a>,
        options: BuildOptions,
        steps: &'a dyn Resolve,
    ) -> Result<Self, BuildError> {
        check_files(&options)?;
        // A shard's steps waiting on other shards hold a thread each, not a
        // place (`permits`): threads for them beyond `jobs`.
        let waiting = options.fleet.as_ref().map_or(0, |f| {
            f.others.iter().filter(|o| o.is_some()).count().min(64)
        });
        let permits = options
            .fleet
            .as_ref()
            .map(|_| crate::fleet::Permits::new(options.jobs));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.jobs.max(1) + waiting)
            .thread_name(|i| format!("rbk-step-{i}"))
            .build()
            .map_err(|e| BuildError::Internal(format!("cannot start the step threads: {e}")))?;
        let (labels, families) = (crate::labels::labels(graph), crate::labels::families(graph));
        let filtered = no_cache_filtered(
            graph,
            steps,
            &options.no_cache_stages,
            &options.no_cache_images,
        );
        let session = BuildSession {
            graph,
            bases: svc.bases,
            images: svc.images,
            cache: svc.cache,
            reporter: svc.reporter,
            env: StepEnv {
                layers: svc.layers,
                executor: svc.executor,
                reporter: svc.reporter,
                contexts: Contexts::new(svc.dirs.stat_caches.clone()),
                dirs: svc.dirs,
                network: options.network,
                secrets: options.secrets.clone(),
                ssh: options.ssh.clone(),
            },
            steps,
            options,
            labels,
            families,
            outcomes: std::sync::Mutex::new(Vec::new()),
            filtered,
            result_keys: (0..graph.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            pool,
            ran: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
            waited: AtomicUsize::new(0),
            took_over: AtomicUsize::new(0),
            permits,
        };
        session.check_entitlements()?;
        session.resolve_bases()?;
        Ok(session)
    }

    /// Every RUN that asks for the host's network or for no sandbox must
    /// have been allowed on the command line, as BuildKit's entitlements.
    fn check_entitlements(&self) -> Result<(), BuildError> {
        let allow = self.options.allow;
        for id in self.graph.topo_order() {
            let v = self.graph.vertex(id);
            let needs = self.kind(id.index()).entitlements();
            let need = needs.into_iter().find(|(_, e)| !allow.grants(*e));
            if let Some((what, entitlement)) = need {
                let o = v.origins.first();
                return Err(BuildError::Entitlement {
                    file: o.map(|o| o.file.clone()).unwrap_or_default(),
                    line: o.map_or(0, |o| o.line),
                    what,
                    entitlement: entitlement.name(),
                });
            }
        }
        Ok(())
    }

    /// Resolves every base image once, before any work.
    fn resolve_bases(&self) -> Result<(), BuildError> {
        for id in self.graph.topo_order() {
            if let Some((image, platform)) = self.kind(id.index()).base_image() {
                self.bases.resolve(image, platform).map_err(|source| {
                    self.fail(SolveError::Failed {
                        vertex: id.index(),
                        error: StepError::BaseImage {
                            image: image.to_string(),
                            source,
                        },
                    })
                })?;
            }
        }
        Ok(())
    }

    /// Builds every image of the graph, in parallel, tagging the results.
    pub fn build(&self, cancel: &CancelToken) -> Result<BuildSummary, BuildError> {
        let graph = self.graph;
        let (roots, plans) = self.first_pass(cancel)?;
        // Pass 2: what the images need, served or run.
        let run = plan::run_deps(graph, &plans);
        let needed = solve::reachable(&run.dag, &roots).map_err(BuildError::Internal)?;
        // Before anything runs, once: a RUN to run needs the sandbox.
        let runs = (0..plans.len()).any(|v| {
            needed[v]
                && self.kind(v).needs_sandbox()
                && plans[v].as_ref().is_none_or(|p| p.hit.is_none())
        });
        if runs {
            self.env.executor.preflight().map_err(BuildError::Sandbox)?;
            self.env.executor.expect_network(self.env.network);
        }
        self.report_unneeded(&plans, &needed);
        let runner = Runner {
            session: self,
            plans: &plans,
            run: &run,
            started: (0..graph.len()).map(|_| OnceLock::new()).collect(),
            finished: (0..graph.len()).map(|_| AtomicBool::new(false)).collect(),
        };
        let solved = solve::solve_needed(&run.dag, &needed, &roots, &runner, &self.pool, cancel);
        if solved.is_err() {
            runner.finish_unstacked();
        }
        let results = solved.map_err(|e| self.fail_in(&run.links, e))?;
        self.env.contexts.save();
        let images = commit::commit_all(self, &plans, &results)?;
        let exported = self.export(&plans)?;
        Ok(BuildSummary {
            ran: self.ran.load(Ordering::SeqCst),
            cached: self.cached.load(Ordering::SeqCst),
            images,
            exported,
            steps: self.outcomes.lock().map(|o| o.clone()).unwrap_or_default(),
            waited: self.waited.load(Ordering::SeqCst),
            took_over: self.took_over.load(Ordering::SeqCst),
        })
    }

    /// Pass 1: every key and lookup (context hashing in parallel); the
    /// images' vertices too.
    fn first_pass(
        &self,
        cancel: &CancelToken,
    ) -> Result<(Vec<usize>, Vec<Option<plan::Plan>>), BuildError> {
        let graph = self.graph;
        let (planner, dag) = Planner::new(self);
        let roots: Vec<usize> = graph.images.iter().map(|i| i.vertex.index()).collect();
        let mut plans = solve::solve(&dag, &roots, &planner, &self.pool, cancel)
            .map_err(|e| self.fail_in(&planner.early, e))?;
        // The early vertices' plans are placeholders.
        plans.truncate(planner.early.graph_len());
        Ok((roots, plans))
    }

    /// The first pass alone: every vertex's key and what the cache has
    /// for it, nothing run or fetched (`rbk graph` against the store).
    pub fn plan(&self, cancel: &CancelToken) -> Result<Vec<Option<VertexPlan>>, BuildError> {
        let graph = self.graph;
        let (_, plans) = self.first_pass(cancel)?;
        let mut out: Vec<Option<VertexPlan>> = vec![None; plans.len()];
        for id in graph.topo_order() {
            let v = id.index();
            let Some(p) = &plans[v] else { continue };
            let vx = graph.vertex(id);
            let policy = self.kind(v).policy();
            out[v] = Some(match policy {
                LayerPolicy::Base => VertexPlan::Base,
                _ if policy.runs() => {
                    if p.hit.is_some() && !self.uncached(v) {
                        VertexPlan::Cached
                    } else {
                        let nearest = self.cache.nearest(&self.families[v], &p.key);
                        VertexPlan::Run(crate::explain::explain(
                            nearest.as_ref().map(|r| &r.inputs),
                            &self.plaintext(v, p),
                            self.uncached(v),
                        ))
                    }
                }
                // A metadata step is as its parent.
                _ => match vx.parent.and_then(|q| out[q.index()].clone()) {
                    Some(VertexPlan::Run(_)) => {
                        VertexPlan::Run("made again: the step before it runs".into())
                    }
                    _ => VertexPlan::Cached,
                },
            });
        }
        Ok(out)
    }

    /// Steps no image needs whose results the cache has anyway: shown as
    /// cached, so every step of the Dockerfile is accounted for.
    fn report_unneeded(&self, plans: &[Option<plan::Plan>], needed: &[bool]) {
        for (v, p) in plans.iter().enumerate() {
            let is_step = self.kind(v).policy().runs();
            if !needed[v] && is_step && p.as_ref().is_some_and(|p| p.recorded) {
                let step = self.step(v);
                self.reporter.on_start(&step);
                self.cached.fetch_add(1, Ordering::SeqCst);
                self.finish(&step, Instant::now(), Outcome::Cached, None);
            }
        }
    }

    /// Exports the `--cache-to` caches: each carries the records of the
    /// steps its images (and mode) cover.
    fn export(&self, plans: &[Option<plan::Plan>]) -> Result<Vec<ExportedCache>, BuildError> {
        let keys = |images: Option<&[String]>, mode| {
            exported_vertices(self.graph, images, mode)
                .into_iter()
                .filter_map(|v| Some((v, plans[v].as_ref()?)))
                .flat_map(|(v, p)| p.exported_keys().chain(self.result_keys[v].get()).cloned())
                .collect()
        };
        self.cache.export(&keys).map_err(BuildError::SharedCache)
    }

    /// The cache's answer for vertex `v`'s `key`, unless `--no-cache` (or
    /// `--no-cache-filter` names its stage).
    pub(crate) fn lookup(&self, v: usize, key: &str) -> Lookup {
        if self.uncached(v) {
            return Lookup::default();
        }
        self.cache.lookup(key)
    }

    /// Whether vertex `v` must run whatever the cache has: `--no-cache`, or
    /// a stage `--no-cache-filter` names (by name or index, for any image
    /// using the vertex), or a step reading such a stage's results (their
    /// keys do not change when a rerun makes other files).
    pub(crate) fn uncached(&self, v: usize) -> bool {
        self.options.no_cache || self.filtered.get(v).copied().unwrap_or(false)
    }

    /// The kind of step vertex `v` is.
    pub(crate) fn kind(&self, v: usize) -> Box<dyn StepKind + 'a> {
        self.steps.resolve(&self.vertex(v).op)
    }

    /// The whole plaintext of step `v`'s key ([`plan::Plan::plaintext`]),
    /// with the context files it was made of, as the context module keeps
    /// them for the build.
    pub(crate) fn plaintext(&self, v: usize, plan: &plan::Plan) -> serde_json::Value {
        // The files were selected when the key was made: asking again
        // reads them from the build's contexts and cannot fail.
        let files = self.kind(v).context_files(&self.env).ok().flatten();
        plan.plaintext(files.as_deref())
    }

    /// Vertex `v` of the graph.
    pub(crate) fn vertex(&self, v: usize) -> &'a Vertex {
        self.graph.vertex(NodeIndex::new(v))
    }

    /// Vertex `v` as the user sees it.
    pub(crate) fn step(&self, v: usize) -> Step {
        let vx = self.vertex(v);
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

    /// Reports that `step` ended.
    pub(crate) fn finish(
        &self,
        step: &Step,
        started: Instant,
        outcome: Outcome,
        explain: Option<String>,
    ) {
        let cached = outcome == Outcome::Cached;
        let f = Finish {
            outcome,
            duration: started.elapsed(),
            explain,
        };
        if let Ok(mut o) = self.outcomes.lock() {
            o.push(StepOutcome {
                vertex: step.vertex,
                cached,
                seconds: f.duration.as_secs_f64(),
            });
        }
        self.reporter.on_finish(step, &f);
    }

    /// A solver failure as the user reads it: the step, its Dockerfile and
    /// line, and why.
    /// [`BuildSession::fail`] for a dag with `added` vertices: a failure
    /// there is the failure of the step it works for.
    fn fail_in(&self, added: &dag::Added, e: SolveError<StepError>) -> BuildError {
        match e {
            SolveError::Failed { vertex, error } => self.fail(SolveError::Failed {
                vertex: added.step(vertex),
                error,
            }),
            e => self.fail(e),
        }
    }

    pub(crate) fn fail(&self, e: SolveError<StepError>) -> BuildError {
        match e {
            SolveError::Cancelled => BuildError::Cancelled,
            SolveError::Failed {
                error: StepError::Cancelled,
                ..
            } => BuildError::Cancelled,
            SolveError::Invalid(m) => BuildError::Internal(m),
            SolveError::Failed { vertex, error } => {
                let o = self.vertex(vertex).origins.first();
                BuildError::Step {
                    label: self.labels[vertex].clone(),
                    text: o.map(|o| o.text.clone()).unwrap_or_default(),
                    file: o.map(|o| o.file.clone()).unwrap_or_default(),
                    line: o.map(|o| o.line).unwrap_or(0),
                    stage: o.map(|o| o.stage.clone()).unwrap_or_default(),
                    error: Box::new(error),
                }
            }
        }
    }
}

/// Every `--secret` file readable and every `--ssh` agent a socket, so a
/// bad input fails before anything runs.
fn check_files(options: &BuildOptions) -> Result<(), BuildError> {
    for (id, path) in &options.secrets {
        std::fs::File::open(path).map_err(|source| BuildError::Secret {
            id: id.clone(),
            path: path.clone(),
            source,
        })?;
    }
    for (id, path) in &options.ssh {
        let is_socket = std::fs::metadata(path).map(|m| {
            use std::os::unix::fs::FileTypeExt as _;
            m.file_type().is_socket()
        });
        match is_socket {
            Ok(true) => {}
            Ok(false) => {
                return Err(BuildError::Ssh {
                    id: id.clone(),
                    path: path.clone(),
                    source: std::io::Error::other("not a socket"),
                })
            }
            Err(source) => {
                return Err(BuildError::Ssh {
                    id: id.clone(),
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Which vertices `--no-cache-filter stages` reruns: those of the stages
/// (by name or index) and of the `images` (rbk.toml `no-cache`), and, in
/// graph order, every vertex built on or reading one of them.
fn no_cache_filtered(
    graph: &BuildGraph,
    steps: &dyn Resolve,
    stages: &[String],
    images: &BTreeSet<String>,
) -> Vec<bool> {
    let mut out = vec![false; graph.len()];
    if stages.is_empty() && images.is_empty() {
        return out;
    }
    for id in graph.topo_order() {
        let v = graph.vertex(id);
        // A base image is never rerun (and is shared between stages).
        let base = steps.resolve(&v.op).policy() == LayerPolicy::Base;
        let named = !base
            && v.origins.iter().any(|o| {
                images.contains(&o.image) || stages.iter().any(|s| s.eq_ignore_ascii_case(&o.stage))
            });
        let downstream = v.parent.iter().chain(&v.inputs).any(|p| out[p.index()]);
        out[id.index()] = named || downstream;
    }
    out
}
