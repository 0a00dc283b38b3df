//! `rbk build`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use rbk_compiler::lower::{BaseImage, ImageResolver};
use rbk_compiler::platform::Platform;
use rbk_compiler::render::{Mark, MarkState};
use rbk_runtime::sandbox::{CancelToken, NamespaceExecutor, NetworkMode};
use rbk_scheduler::backend::store::StoreBackend;
use rbk_scheduler::session::default_jobs;
use rbk_scheduler::shared_cache::CacheExport;
use rbk_scheduler::step::from::BaseImages;
use rbk_scheduler::{
    BuildOptions, BuildSession, BuildSummary, BuiltImage, Entitlements, Services, VertexPlan,
};
use rbk_store::compress::Compression;
use rbk_store::images::Store;
use rbk_store::registry::cache::RemoteCache;
use rbk_store::registry::{Client, PlatformSpec, RegistryError};
use rbk_store::Reference;
use std::sync::{Arc, Mutex};

use crate::build_cache::{parse_cache_spec, shared_caches};
use crate::cmd_graph::compile_all;
use crate::cmd_registry::RegistryFlags;
use crate::inputs::{self, BuildInputArgs};
use crate::outputs::{self, Output, PushRecord};
use crate::progress::{self, ProgressMode};

/// `rbk build`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  rbk build -t myapp:1.0 .
  rbk build -f docker/Dockerfile.prod --build-arg VERSION=2 -t myapp:2 .
  rbk build examples/debian/rbk.toml            # every image of the file, as one graph
  rbk build examples/debian/rbk.toml nginx      # one target (or group)
  rbk build --explain -t myapp .                # say why each step missed the cache
  rbk build -t reg.example.com/app:1 --push .   # push the -t names
  rbk build -o type=local,dest=out .            # the final filesystem (also: out, type=tar, -)
  rbk build -o type=docker,dest=app.tar .       # an archive for docker load (type=oci too)
  rbk build -q --iidfile id --metadata-file meta.json .
  rbk build --progress rawjson . 2> events.jsonl
  rbk build --label team=core --annotation org.opencontainers.image.source=URL .
  rbk build --secret id=token,env=TOKEN --ssh default .
  rbk build --build-context src=../lib --build-context base=docker-image://debian:bookworm .
  rbk build --cache-to type=local,dest=/ci/cache,mode=max --cache-from type=local,src=/ci/cache .
  rbk build -t reg/app:1 --push --cache-to type=inline --cache-from reg/app:1 .
  rbk build -o type=registry,name=reg/app:1,compression=zstd,compression-level=19 .
  rbk build --no-cache-filter deps .            # rerun one stage
  SOURCE_DATE_EPOCH=1700000000 rbk build .      # reproducible: same inputs, same image id
  rbk build -f - . < Dockerfile.ci")]
pub struct BuildArgs {
    #[command(flatten)]
    pub input: BuildInputArgs,
    #[command(flatten)]
    pub shard: crate::shard_build::ShardArgs,
    /// Secret for RUN --mount=type=secret (repeatable): id=ID,src=FILE,
    /// id=ID,env=VAR, or id=ID alone (the variable ID, else the file ID)
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh (repeatable): default (the
    /// agent of $SSH_AUTH_SOCK), ID=SOCKET, or ID=KEY[,KEY...] (an agent rbk
    /// starts with those keys for the build)
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY,...]")]
    pub ssh: Vec<String>,
    /// Do not use cached results
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use cached results for these stages (by name or index) and
    /// what is built on them (repeatable, or comma-separated)
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Steps to run at once (default: twice the cores, at least 4)
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Network for RUN steps: default, none, or host (needs --allow
    /// network.host)
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Grant an entitlement, as in BuildKit: network.host (RUN on the
    /// host's network) or security.insecure (RUN --security=insecure: all
    /// capabilities, no seccomp); repeatable
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Explain every cache miss
    #[arg(long)]
    pub explain: bool,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Compression of the layers kept in the store: none (the default:
    /// `rbk push` compresses them when it sends them), gzip or zstd
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Export the build cache (repeatable):
    /// type=registry,ref=HOST/NAME:TAG[,mode=min|max],
    /// type=local,dest=DIR[,mode=min|max], or type=inline (in the image);
    /// add cache-mounts=true[,cache-mounts-max=SIZE] to carry the RUN
    /// cache mounts too
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Import a build cache (repeatable): type=registry,ref=HOST/NAME:TAG
    /// or just the reference (a cache artifact, or an image with an inline
    /// cache), or type=local,src=DIR
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// When to pull base images: missing (not in the store), always, never;
    /// a bare --pull means always
    #[arg(
        long,
        value_enum,
        default_value = "missing",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "always"
    )]
    pub pull: PullPolicy,
    /// Where the images go besides the store (repeatable), as buildx:
    /// type=image[,name=N][,push=true], type=registry,name=N,
    /// type=docker|oci,dest=FILE|-[,name=N], type=tar,dest=FILE|-,
    /// type=local,dest=DIR; a bare DIR means type=local, - type=tar.
    /// Image and archive outputs take compression=gzip|zstd|uncompressed,
    /// compression-level=N, force-compression=BOOL, oci-mediatypes=BOOL
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the images to their registries under their -t names (the same
    /// as --output type=registry)
    #[arg(long)]
    pub push: bool,
    /// Accepted for buildx's sake: rbk's images are always in its store
    /// (`rbk save | docker load` moves them to Docker)
    #[arg(long)]
    pub load: bool,
    /// Add an annotation to the image manifest (repeatable): KEY=VALUE or
    /// manifest:KEY=VALUE
    #[arg(long = "annotation", value_name = "[manifest:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// After the build, write the build graph as one HTML page to FILE,
    /// each step coloured cached, run, failed or cancelled, with its
    /// duration and the critical path (written after a failure too)
    #[arg(long = "graph-out", value_name = "FILE.html")]
    pub graph_out: Option<PathBuf>,
    /// Print the targets as resolved (variables, inherits, matrix, --set)
    /// as JSON, as `docker buildx bake --print`, and build nothing
    #[arg(long)]
    pub print: bool,
    /// Check the Dockerfiles with BuildKit's lint rules and build nothing
    /// (as `docker build --check`; also `rbk check`)
    #[arg(long)]
    pub check: bool,
    /// Write the image id (sha256:...) to FILE
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write the build's result as JSON to FILE, as buildx does
    /// (containerimage.digest, containerimage.config.digest,
    /// containerimage.descriptor, image.name; after push-by-digest=true
    /// also rbk.tags for `rbk manifest merge`)
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Print only the image id on standard output, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Targets whose images are pushed by digest only, never by tag: every
    /// push of theirs (`--push`, `-o type=registry`) goes by digest, and
    /// one is added when nothing pushes them (see
    /// [`outputs::push_by_digest`]). Set by a sharded build for the
    /// targets whose platforms are built on several machines; no flag.
    #[arg(skip)]
    pub push_by_digest: Vec<String>,
}

/// `--pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull base images that are not in the store.
    Missing,
    /// Pull every base image, even one the store has.
    Always,
    /// Use only the store.
    Never,
}

/// The registry client, made when first needed.
pub(crate) struct LazyClient<'a> {
    flags: &'a RegistryFlags,
    client: std::sync::OnceLock<Result<Arc<Client>, Arc<RegistryError>>>,
}

impl LazyClient<'_> {
    pub(crate) fn get(&self) -> Result<Arc<Client>> {
        self.client
            .get_or_init(|| {
                Client::new(self.flags.options())
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
            .map_err(anyhow::Error::from)
    }
}

/// Base images come from the store, pulled first when `--pull` says so.
struct PullingResolver<'a> {
    store: &'a Store,
    bases: &'a BaseImages<'a>,
    policy: PullPolicy,
    client: &'a LazyClient<'a>,
    /// Images pulled (or tried) in this build, by (name, platform), with
    /// the failure if any.
    tried: Mutex<BTreeMap<(String, String), Option<String>>>,
}

impl PullingResolver<'_> {
    fn pull(&self, image: &str, platform: &Platform) {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        let key = (image.to_string(), platform.to_string());
        if tried.contains_key(&key) {
            return;
        }
        let outcome = self
            .try_pull(image, platform)
            .err()
            .map(|e| format!("{e:#}"));
        tried.insert(key, outcome);
        // Whatever was resolved before the pull is stale now.
        self.bases.forget(image);
    }

    fn try_pull(&self, image: &str, platform: &Platform) -> Result<()> {
        let client = self.client.get()?;
        let reference = Reference::parse(image)?;
        let spec: PlatformSpec = platform.to_string().parse()?;
        eprintln!("pulling {image} ({spec})");
        let report = client.pull(self.store, &reference, Some(&spec), &|_| {})?;
        eprintln!(
            "pulled {image}: {} ({} blob{} downloaded)",
            report.image.manifest_digest,
            report.downloaded.len(),
            if report.downloaded.len() == 1 {
                ""
            } else {
                "s"
            }
        );
        Ok(())
    }

    /// The pulls that failed, as (image, why), for images the store still
    /// lacks (or all failures under `--pull=always`).
    fn failures(&self) -> Vec<(String, String)> {
        let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        tried
            .iter()
            .filter_map(|((image, platform), err)| {
                let err = err.as_ref()?;
                if let Err(missing) = self.bases.resolve(image, platform) {
                    // In the store without this platform, or not at all.
                    let lacks_platform = matches!(&missing,
                        rbk_scheduler::backend::BackendError::Store(e)
                            if matches!(**e, rbk_store::StoreError::PlatformNotInImage { .. }));
                    Some((
                        image.clone(),
                        if lacks_platform {
                            format!("base {missing}, and it cannot be pulled: {err}")
                        } else {
                            format!(
                                "base image {} is not in the store and cannot be pulled: {err}",
                                resolved_name(image)
                            )
                        },
                    ))
                } else if self.policy == PullPolicy::Always {
                    Some((
                        image.clone(),
                        format!("cannot pull base image {image} (--pull=always): {err}"),
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

impl ImageResolver for PullingResolver<'_> {
    fn resolve(&self, image: &str, platform: &Platform) -> Option<BaseImage> {
        match self.policy {
            PullPolicy::Always => self.pull(image, platform),
            PullPolicy::Missing if self.bases.resolve(image, &platform.to_string()).is_err() => {
                self.pull(image, platform)
            }
            _ => {}
        }
        StoreResolver(self.bases).resolve(image, platform)
    }
}

/// Base images come from the store, each resolved once.
pub struct StoreResolver<'a>(pub &'a BaseImages<'a>);

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, image: &str, platform: &Platform) -> Option<BaseImage> {
        let img = self.0.resolve(image, &platform.to_string()).ok()?;
        let config = rbk_scheduler::image::from_oci(img.config.config.as_ref()?).ok()?;
        Some(BaseImage {
            config,
            platform: PlatformSpec::of_config(&img.config).map(|p| p.to_string()),
        })
    }
}

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SecretSource {
    /// A file (`src=`).
    File(PathBuf),
    /// The value of an environment variable (`env=`), taken now.
    Env { var: String, value: String },
}

/// Parses `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as buildx:
/// with neither `src` nor `env`, the environment variable named ID if it
/// is set, else the file named ID.
fn parse_secret(s: &str) -> Result<(String, SecretSource)> {
    const FORMS: &str = "expected id=ID[,src=FILE|,env=VAR]";
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) if !v.is_empty() => id = Some(v.to_string()),
            Some(("src" | "source", v)) if !v.is_empty() => src = Some(PathBuf::from(v)),
            Some(("env", v)) if !v.is_empty() => env = Some(v.to_string()),
            Some(("type", t @ ("file" | "env"))) => kind = Some(t),
            _ => bail!("invalid --secret {s:?}: {FORMS}"),
        }
    }
    let Some(id) = id else {
        bail!("invalid --secret {s:?}: id= is required; {FORMS}");
    };
    let from_env = |var: String| -> Result<SecretSource> {
        match crate::env::text(&var) {
            Some(value) => Ok(SecretSource::Env { var, value }),
            None => bail!("--secret id={id}: the environment variable {var} is not set"),
        }
    };
    let from_file = |path: PathBuf| -> Result<SecretSource> {
        if !path.is_file() {
            bail!(
                "--secret id={id}: {} is not a readable file",
                path.display()
            );
        }
        Ok(SecretSource::File(path))
    };
    let source = match (src, env, kind) {
        (Some(_), Some(_), _) => bail!("--secret id={id}: give src= or env=, not both"),
        (Some(p), None, Some("env")) => from_env(p.display().to_string()),
        (Some(p), None, _) => from_file(p),
        (None, Some(v), Some("file")) => from_file(PathBuf::from(v)),
        (None, Some(v), _) => from_env(v),
        (None, None, Some("file")) => from_file(PathBuf::from(&id)),
        (None, None, Some(_)) => from_env(id.clone()),
        (None, None, None) if crate::env::text(&id).is_some() => from_env(id.clone()),
        (None, None, None) => from_file(PathBuf::from(&id)).with_context(|| {
            format!("--secret id={id}: no src= or env=, no environment variable {id}, no file {id}")
        }),
    }?;
    Ok((id, source))
}

/// Secrets from environment variables, written to private files in the
/// store's staging area for the build (removed when it ends, however it
/// ends), then handed to the build like file secrets.
fn env_secret_files(
    store: &Store,
    secrets: &[(String, SecretSource)],
    options: &mut BuildOptions,
) -> Result<Vec<tempfile::TempPath>> {
    let mut held = Vec::new();
    for (id, source) in secrets {
        let SecretSource::Env { value, .. } = source else {
            continue;
        };
        let dir = store.layout().tmp();
        let mut f = tempfile::Builder::new()
            .prefix("secret-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot stage secret {id} in {}", dir.display()))?;
        std::io::Write::write_all(&mut f, value.as_bytes())
            .with_context(|| format!("cannot stage secret {id}"))?;
        let path = f.into_temp_path();
        options.secrets.insert(id.clone(), path.to_path_buf());
        held.push(path);
    }
    Ok(held)
}

/// Runs a build; returns the exit code.
pub fn build(root: &Path, args: &BuildArgs) -> Result<i32> {
    let started = Instant::now();
    if args.print {
        let doc = inputs::print_targets(&args.input)?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    // Every flag is checked before any work (compile, pull, cache import).
    let (mut options, compression) = options(args)?;
    let outputs = outputs_of(args)?;
    let cli_secrets = args.secrets.iter().map(|s| parse_secret(s));
    let cli_secrets = cli_secrets.collect::<Result<Vec<_>>>()?;
    let cli_ssh = crate::ssh::parse(&args.ssh)?;
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let input_args = with_oci_layouts_loaded(&store, &args.input)?;
    // `rbk build -`: the context (or a Dockerfile) from standard input, in
    // a temporary directory removed when the build ends.
    let (input_args, _stdin_context) = match crate::stdin_context::resolve(&input_args)? {
        Some((a, dir)) => (a, Some(dir)),
        None => (input_args, None),
    };
    let (inputs, target_settings) = inputs::load_with_settings(&input_args)?;
    if args.check {
        // As `rbk check`: the store's bases, nothing pulled, nothing built.
        let bases = BaseImages::new(&store);
        return crate::cmd_check::check_inputs(&inputs, &StoreResolver(&bases));
    }
    let targets = TargetOptions::of(args, cli_secrets, cli_ssh, &target_settings, &mut options)?;
    // Staged secrets and agents started for --ssh ID=KEY live until the
    // build ends.
    let (_secret_files, _agents) = secrets_and_agents(&store, &targets, &mut options)?;
    let bases = BaseImages::new(&store);
    // Made on first use: a build that pulls nothing and shares no cache
    // never touches registry settings (a bad CA file cannot fail it).
    let client = LazyClient {
        flags: &args.registry,
        client: std::sync::OnceLock::new(),
    };
    let resolver = PullingResolver {
        store: &store,
        bases: &bases,
        policy: targets.pull,
        client: &client,
        tried: Mutex::new(BTreeMap::new()),
    };
    check_names(args, &outputs, &targets, &inputs)?;
    let mut graph = compile_all(&inputs, &resolver)?;
    let shard = crate::shard_build::setup(&args.shard, &mut graph, |graph, n| {
        plan_shards(root, args, graph, n)
    })?;
    options.fleet = shard.as_ref().map(|s| s.fleet.clone());
    let groups = crate::platforms::hold_tags(&mut graph);
    check_no_cache_filter(args, &graph)?;
    check_bases(&resolver, &graph, &inputs, &store)?;
    if let Some(code) = lint_and_emulate(args, &inputs, &bases, &graph)? {
        return Ok(code);
    }
    let caches = caches_of(&store, &client, args, &target_settings, &graph)?;
    options.inline_cache = caches.inline.clone();
    if let Some(s) = &shard {
        crate::shard_build::check_caches(s, &caches)?;
    }
    for w in &graph.warnings {
        eprintln!("warning: {w}");
    }
    let backend = Backend {
        compression,
        from: caches.from,
        to: caches.to.clone(),
    };
    let mut summary = run_session(root, &store, &bases, &graph, options, backend, args)?;
    crate::timings::save_local(root, &graph, &summary);
    let shard_report = shard
        .as_ref()
        .map(|s| crate::shard_build::after(s, &store, &caches.to, &graph, &summary));
    crate::platforms::commit_indexes(&store, &groups, &mut summary)?;
    let client = || client.get();
    let done = Done {
        store: &store,
        client: &client,
        outputs: &outputs,
        targets: &targets,
        graph: &graph,
        shard: shard_report,
    };
    done.finish(&finish_args(args, shard.as_ref()), &summary, started)
}

/// The flags the end of the build goes by: a shard's platforms of a
/// target other shards build too are pushed by digest.
fn finish_args<'a>(
    args: &'a BuildArgs,
    shard: Option<&crate::shard_build::ShardSetup>,
) -> std::borrow::Cow<'a, BuildArgs> {
    match shard.filter(|s| !s.split.is_empty()) {
        Some(s) => std::borrow::Cow::Owned(BuildArgs {
            push_by_digest: s.split.clone(),
            ..args.clone()
        }),
        None => std::borrow::Cow::Borrowed(args),
    }
}

/// The outputs and the tags, before any base is pulled: one image per
/// input (several platforms of one name make one image, an index).
fn check_names(
    args: &BuildArgs,
    outputs: &[Output],
    targets: &TargetOptions,
    inputs: &[rbk_compiler::Input],
) -> Result<()> {
    let mut names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    names.dedup();
    check_outputs(args, outputs, targets, names.len())?;
    check_tags(inputs)
}

/// Every base image resolved (pulled when asked), or one error saying,
/// for each that is not, where it is used and what the store has like it.
fn check_bases(
    resolver: &PullingResolver<'_>,
    graph: &rbk_compiler::BuildGraph,
    inputs: &[rbk_compiler::Input],
    store: &Store,
) -> Result<()> {
    let failures = resolver.failures();
    if failures.is_empty() {
        return Ok(());
    }
    let said: Vec<String> = failures
        .iter()
        .map(|(image, why)| base_failure(graph, inputs, store, image, why))
        .collect();
    bail!("{}", said.join("\n"))
}

/// The shared caches of the build (imported, the cache mounts they carry
/// restored) and its exports.
fn caches_of(
    store: &Store,
    client: &LazyClient<'_>,
    args: &BuildArgs,
    target_settings: &[rbk_compiler::targets::ResolvedTarget],
    graph: &rbk_compiler::BuildGraph,
) -> Result<crate::build_cache::SharedCaches> {
    let names: Vec<String> = graph.images.iter().map(|i| i.name.clone()).collect();
    let mount_ids = rbk_scheduler::shared_cache::cache_mount_ids(graph);
    let caches = shared_caches(store, client, args, target_settings, &names, &mount_ids)?;
    crate::build_cache::restore_mounts(
        store,
        &store.layout().cache_mounts(),
        &caches.from,
        &mount_ids,
    );
    Ok(caches)
}

/// The plan of `n` shards a shard without `--plan` follows: made as `rbk
/// plan` makes it, with the durations of the first registry cache it
/// reads, so every shard of the fleet makes the same one.
fn plan_shards(
    root: &Path,
    args: &BuildArgs,
    graph: &rbk_compiler::BuildGraph,
    n: usize,
) -> crate::plan_doc::PlanDoc {
    let cache_ref = args.cache_from.iter().find_map(|s| {
        match parse_cache_spec("--cache-from", s).ok()?.place {
            crate::build_cache::CachePlace::Registry(r) => Some(r.to_string()),
            _ => None,
        }
    });
    let timings = crate::timings::load(root, cache_ref.as_deref(), &args.registry);
    let plan = rbk_scheduler::shard::plan(graph, n, &timings);
    crate::cmd_plan::document(&args.input, graph, &plan, cache_ref)
}

/// How the store backend is set up for a build.
struct Backend {
    compression: Compression,
    from: Vec<Arc<RemoteCache>>,
    to: Vec<CacheExport>,
}

/// Wires the real services into a session and runs the build (Ctrl-C
/// cancels it).
fn run_session(
    root: &Path,
    store: &Store,
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
    options: BuildOptions,
    setup: Backend,
    args: &BuildArgs,
) -> Result<BuildSummary> {
    let snapshotter = crate::snapshotter(root)?;
    let imported = setup.from.clone();
    let backend = StoreBackend::new(store, snapshotter.as_ref())
        .with_compression(setup.compression)
        .with_clamped_mtimes(options.source_date_epoch)
        .with_cache_from(setup.from)
        .with_cache_to(setup.to);
    let reporter = progress::reporter(if args.quiet {
        ProgressMode::Quiet
    } else {
        args.progress
    });
    let recorder = crate::graph_out::Recorder::new(reporter.as_ref());
    let services = store_services(store, bases, &backend, &recorder);
    let session = BuildSession::new(graph, services, options)?;
    let cancel = CancelToken::new();
    crate::sys::cancel_on_interrupt(&cancel);
    let summary = match session.build(&cancel) {
        Ok(summary) => summary,
        Err(e) => {
            // The page shows what failed, what stopped with it and what
            // never ran; the build's error stays the one reported.
            if let Some(path) = &args.graph_out {
                let marks = crate::graph_out::after_failure(graph, &recorder, &format!("{e:#}"));
                if let Err(w) = crate::graph_out::write(path, graph, &marks) {
                    eprintln!("warning: {w:#}");
                }
            }
            return Err(e.into());
        }
    };
    if !args.quiet && args.progress != ProgressMode::Rawjson {
        crate::build_cache::print_lookups(&imported);
    }
    Ok(summary)
}

/// A build session's services on the store: its images and bases, the
/// store backend's layers and cache, the namespace executor.
fn store_services<'a>(
    store: &'a Store,
    bases: &'a BaseImages<'a>,
    backend: &'a StoreBackend<'a>,
    reporter: &'a dyn rbk_scheduler::progress::Reporter,
) -> Services<'a> {
    Services {
        bases,
        images: store,
        layers: backend,
        cache: backend,
        executor: &NamespaceExecutor,
        reporter,
        dirs: backend.work_dirs(),
    }
}

/// Stages the secrets (the command line's and the targets') and starts
/// the SSH agents asked for; both must live until the build ends.
fn secrets_and_agents(
    store: &Store,
    targets: &TargetOptions,
    options: &mut BuildOptions,
) -> Result<(Vec<tempfile::TempPath>, crate::ssh::Agents)> {
    for (id, source) in &targets.secrets {
        if let SecretSource::File(path) = source {
            options.secrets.insert(id.clone(), path.clone());
        }
    }
    let held = env_secret_files(store, &targets.secrets, options)?;
    let agents = crate::ssh::start(&targets.ssh, &store.layout().tmp())?;
    options.ssh = agents.sockets.clone();
    Ok((held, agents))
}

/// The outputs against what the build makes, before any base is pulled.
fn check_outputs(
    args: &BuildArgs,
    outputs: &[Output],
    targets: &TargetOptions,
    images: usize,
) -> Result<()> {
    outputs::check(outputs, images)?;
    for (_, outs) in &targets.outputs {
        outputs::check(outs, 1)?;
    }
    if !args.annotations.is_empty() && outputs.iter().any(Output::docker_media_types) {
        bail!("--annotation needs OCI media types: Docker's schema 2 manifest has no annotations (drop oci-mediatypes=false)");
    }
    if images != 1 && args.iidfile.is_some() {
        bail!(
            "--iidfile needs exactly one image, and this build makes {images}; use --metadata-file"
        );
    }
    Ok(())
}

/// Every `--no-cache-filter` names a stage of the build.
fn check_no_cache_filter(args: &BuildArgs, graph: &rbk_compiler::BuildGraph) -> Result<()> {
    for stage in &args.no_cache_filter {
        let known = graph.graph.node_weights().any(|v| {
            v.origins
                .iter()
                .any(|o| o.stage.eq_ignore_ascii_case(stage))
        });
        if !known {
            bail!("--no-cache-filter {stage}: no stage of that name or index in the build");
        }
    }
    Ok(())
}

/// The lint (its findings printed, and with `--check` the exit code) and
/// QEMU for stages of another architecture (registered now if Debian's
/// qemu-user-static is there and the handler is missing).
fn lint_and_emulate(
    args: &BuildArgs,
    inputs: &[rbk_compiler::Input],
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
) -> Result<Option<i32>> {
    // The bases the build needs were pulled while compiling: the lint only
    // reads the store (another platform of a base is not pulled for it).
    let lint = crate::cmd_check::lint(inputs, &StoreResolver(bases))?;
    let chatty =
        !args.quiet && !matches!(args.progress, ProgressMode::Rawjson | ProgressMode::Quiet);
    crate::cmd_check::warn(&lint, chatty)?;
    // Only RUN executes the image's binaries: the platforms of the stages
    // that have one may need an emulator.
    let platforms: BTreeSet<&str> = graph
        .graph
        .node_indices()
        .filter(|&id| matches!(graph.vertex(id).op, rbk_compiler::graph::Op::Exec(_)))
        .filter_map(|id| {
            let root = *graph.chain(id).first()?;
            match &graph.vertex(root).op {
                rbk_compiler::graph::Op::Source { platform, .. } => Some(platform.as_str()),
                _ => None,
            }
        })
        .collect();
    for p in platforms {
        if let Some(done) = crate::emulation::ensure(p)? {
            if chatty {
                eprintln!("{done}");
            }
        }
    }
    Ok(None)
}

/// What is left once the images are built.
struct Done<'a> {
    store: &'a Store,
    client: &'a dyn Fn() -> Result<Arc<Client>>,
    outputs: &'a [Output],
    targets: &'a TargetOptions,
    graph: &'a rbk_compiler::BuildGraph,
    /// A fleet build's report on its shard, for the metadata file.
    shard: Option<crate::plan_doc::ShardReport>,
}

impl Done<'_> {
    /// Exports the outputs (the build's and each target's), writes the
    /// result files and the graph page, and reports.
    fn finish(&self, args: &BuildArgs, summary: &BuildSummary, started: Instant) -> Result<i32> {
        let mut pushed = self.export_all(args, summary)?;
        for (name, outs) in &self.targets.outputs {
            let image: Vec<_> = summary
                .images
                .iter()
                .filter(|i| &i.name == name)
                .cloned()
                .collect();
            // Converted only: the build's outputs add the push if none.
            let outs: Vec<Output> = match args.push_by_digest.contains(name) {
                true => outs.iter().cloned().map(Output::by_digest).collect(),
                false => outs.clone(),
            };
            pushed.extend(
                outputs::export(self.store, self.client, &outs, &image)
                    .with_context(|| format!("target {name:?}: output"))?,
            );
        }
        write_result_files(self.store, args, summary, &pushed, self.shard.as_ref())?;
        if let Some(path) = &args.graph_out {
            let marks = crate::graph_out::after_build(self.graph, summary);
            crate::graph_out::write(path, self.graph, &marks)?;
        }
        if args.quiet || args.progress == ProgressMode::Quiet {
            // Nothing but the ids (as `docker build -q`), each after its
            // target's name when there are several.
            let named = summary.images.len() > 1;
            for img in &summary.images {
                match named {
                    true => println!("{} {}", img.name, img.id),
                    false => println!("{}", img.id),
                }
            }
        } else {
            // Standard output may carry an exported tarball; rawjson keeps
            // stderr to JSON lines.
            let to_stdout = self.outputs.iter().any(Output::writes_stdout);
            print_summary(summary, started, args.progress, to_stdout);
        }
        Ok(0)
    }
}

impl Done<'_> {
    /// Exports the build's outputs: those of the targets pushed by digest
    /// only (`BuildArgs::push_by_digest`) as such, the others as given.
    fn export_all(&self, args: &BuildArgs, summary: &BuildSummary) -> Result<Vec<PushRecord>> {
        let all = &summary.images;
        if !all.iter().any(|i| args.push_by_digest.contains(&i.name)) {
            return outputs::export(self.store, self.client, self.outputs, all);
        }
        // Archives and the like get every image at once; pushes are split.
        let (pushes, others): (Vec<Output>, Vec<Output>) =
            self.outputs.iter().cloned().partition(Output::pushes);
        let (digest_images, images): (Vec<BuiltImage>, Vec<BuiltImage>) = all
            .iter()
            .cloned()
            .partition(|i| args.push_by_digest.contains(&i.name));
        let mut pushed = outputs::export(self.store, self.client, &others, all)?;
        pushed.extend(outputs::export(self.store, self.client, &pushes, &images)?);
        let pushes = digest_only(&pushes, true);
        pushed.extend(outputs::export(
            self.store,
            self.client,
            &pushes,
            &digest_images,
        )?);
        Ok(pushed)
    }
}

/// `outputs` with every push by digest when `only` (and one push by digest
/// added when none pushes); as they are otherwise.
fn digest_only(outputs: &[Output], only: bool) -> Vec<Output> {
    if !only {
        return outputs.to_vec();
    }
    let mut outs: Vec<Output> = outputs.iter().cloned().map(Output::by_digest).collect();
    if !outs.iter().any(Output::pushes) {
        outs.push(outputs::push_by_digest());
    }
    outs
}

/// What the cache holds for each vertex of `graph`, as the next build
/// would find it: the first pass of a build, nothing run or fetched.
pub fn plan_marks(
    root: &Path,
    store: &Store,
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
) -> Result<Vec<Option<Mark>>> {
    let snapshotter = crate::snapshotter(root)?;
    let backend = StoreBackend::new(store, snapshotter.as_ref());
    let reporter = progress::reporter(ProgressMode::Quiet);
    let services = store_services(store, bases, &backend, reporter.as_ref());
    let session = BuildSession::new(graph, services, BuildOptions::default())?;
    let plans = session.plan(&CancelToken::new())?;
    Ok(plans
        .into_iter()
        .map(|p| {
            p.map(|p| match p {
                VertexPlan::Base => Mark {
                    state: MarkState::Base,
                    reason: None,
                    seconds: None,
                },
                VertexPlan::Cached => Mark {
                    state: MarkState::Cached,
                    reason: None,
                    seconds: None,
                },
                VertexPlan::Run(why) => Mark {
                    state: MarkState::Run,
                    reason: Some(why),
                    seconds: None,
                },
            })
        })
        .collect())
}

/// What the targets of a target file add to the command line's options:
/// their secrets and SSH agents (with the command line's), outputs of their
/// own, `no-cache` and `pull`.
struct TargetOptions {
    /// The command line's secrets, then the targets' (parsed once).
    secrets: Vec<(String, SecretSource)>,
    /// The SSH agents by id (a target's value for an id over the command
    /// line's).
    ssh: BTreeMap<String, crate::ssh::SshSpec>,
    outputs: Vec<(String, Vec<Output>)>,
    pull: PullPolicy,
}

impl TargetOptions {
    fn of(
        args: &BuildArgs,
        secrets: Vec<(String, SecretSource)>,
        ssh: BTreeMap<String, crate::ssh::SshSpec>,
        settings: &[rbk_compiler::targets::ResolvedTarget],
        options: &mut BuildOptions,
    ) -> Result<Self> {
        let mut out = TargetOptions {
            secrets,
            ssh,
            outputs: Vec::new(),
            pull: args.pull,
        };
        let mut seen: Vec<&String> = args.secrets.iter().collect();
        for t in settings {
            let named = |what: &str| format!("target {:?}: {what}", t.name);
            for s in &t.secret {
                if !seen.contains(&s) {
                    seen.push(s);
                    out.secrets
                        .push(parse_secret(s).with_context(|| named("secret"))?);
                }
            }
            out.ssh
                .extend(crate::ssh::parse(&t.ssh).with_context(|| named("ssh"))?);
            if !t.output.is_empty() {
                let outs = t
                    .output
                    .iter()
                    .map(|o| outputs::parse(o).with_context(|| named("output")))
                    .collect::<Result<Vec<_>>>()?;
                out.outputs.push((t.name.clone(), outs));
            }
            if t.no_cache {
                options.no_cache_images.insert(t.name.clone());
            }
            if t.pull {
                out.pull = PullPolicy::Always;
            }
        }
        Ok(out)
    }
}

/// The `--output`s, and `--push` as one more.
fn outputs_of(args: &BuildArgs) -> Result<Vec<Output>> {
    let mut outs = args
        .outputs
        .iter()
        .map(|s| outputs::parse(s))
        .collect::<Result<Vec<_>>>()?;
    if args.push {
        outs.push(Output::Image {
            names: Vec::new(),
            push: true,
            by_digest: false,
            format: Compression::Gzip.into(),
        });
    }
    Ok(outs)
}

/// `--iidfile` and `--metadata-file`.
fn write_result_files(
    store: &Store,
    args: &BuildArgs,
    summary: &BuildSummary,
    pushed: &[PushRecord],
    shard: Option<&crate::plan_doc::ShardReport>,
) -> Result<()> {
    if let (Some(path), [img]) = (&args.iidfile, summary.images.as_slice()) {
        std::fs::write(path, img.id.to_string())
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    let Some(path) = &args.metadata_file else {
        return Ok(());
    };
    let entry = |img: &BuiltImage| {
        let pushed = pushed.iter().rev().find(|p| p.target == img.name);
        metadata_entry(store, img, pushed)
    };
    // One image: its fields at the top, as `docker buildx build`; several
    // (an rbk.toml): one object per target, as `docker buildx bake`.
    let mut doc = match summary.images.as_slice() {
        [one] if shard.is_none() => entry(one)?,
        many => {
            let mut map = serde_json::Map::new();
            for img in many {
                map.insert(img.name.clone(), entry(img)?);
            }
            serde_json::Value::Object(map)
        }
    };
    // A shard's report, beside its targets (as bake's own `buildx.build.*`
    // keys sit beside them).
    if let (Some(report), Some(map)) = (shard, doc.as_object_mut()) {
        map.insert(
            crate::plan_doc::SHARD_REPORT_KEY.to_string(),
            serde_json::to_value(report)?,
        );
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write --metadata-file {}", path.display()))
}

/// One image's `--metadata-file` entry: buildx's keys, the descriptor with
/// its platform when the image is one platform's. Pushed, the manifest (or
/// index) the registry got is described (a push compresses the layers:
/// its digest is not the store's), as buildx does. Pushed by digest,
/// `image.name` is the repositories it went to, and `rbk.push-by-digest`, `rbk.tags` (the
/// names it was meant for) and `containerimage.descriptors` (each
/// platform's pushed manifest) tell `rbk manifest merge` how to join it.
fn metadata_entry(
    store: &Store,
    img: &BuiltImage,
    pushed: Option<&PushRecord>,
) -> Result<serde_json::Value> {
    let image = store.image_by_entry(&img.manifest, Vec::new(), None)?;
    let desc = store.entry_descriptor(&image)?;
    let platform = image
        .platform()
        .filter(|_| image.index.is_none())
        .map(|p| p.to_platform());
    let (digest, media_type, size) = match pushed {
        Some(p) => (&p.pushed.digest, &p.pushed.media_type, p.pushed.size),
        None => (&img.manifest, &desc.media_type, desc.size),
    };
    let mut descriptor = rbk_store::oci::Descriptor::new(media_type, digest.clone(), size);
    descriptor.platform = platform;
    let mut v = serde_json::json!({
        "containerimage.digest": digest.to_string(),
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.descriptor": descriptor,
    });
    match pushed {
        Some(p) if p.by_digest => {
            v["image.name"] = p.repositories.join(",").into();
            v["rbk.push-by-digest"] = true.into();
            v["rbk.tags"] = serde_json::json!(p.tags);
            v["containerimage.descriptors"] = serde_json::to_value(&p.pushed.platforms)?;
        }
        _ if !img.tags.is_empty() => v["image.name"] = img.tags.join(",").into(),
        _ => {}
    }
    Ok(v)
}

/// The build's options from its flags, and the layer compression; a bad
/// value is an error naming the flag.
fn options(args: &BuildArgs) -> Result<(BuildOptions, Compression)> {
    let mut allow = Entitlements::default();
    for a in &args.allow {
        match a.as_str() {
            "network.host" => allow.network_host = true,
            "security.insecure" => allow.security_insecure = true,
            other => bail!("--allow {other:?}: use network.host or security.insecure"),
        }
    }
    let network = match args.network.as_str() {
        "default" => default_network("RUN steps", "--network host --allow network.host")?,
        "host" if allow.network_host => NetworkMode::Host,
        "host" => bail!("--network host needs `--allow network.host`"),
        "none" => NetworkMode::None,
        other => bail!("--network {other:?}: use default, none or host"),
    };
    let compression: Compression = args
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression: {e}"))?;
    for s in &args.cache_to {
        parse_cache_spec("--cache-to", s)?;
    }
    for s in &args.cache_from {
        parse_cache_spec("--cache-from", s)?;
    }
    let options = BuildOptions {
        no_cache: args.no_cache,
        jobs: args.jobs.unwrap_or_else(default_jobs),
        network,
        // Filled by `secrets_and_agents`.
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
        no_cache_stages: args.no_cache_filter.clone(),
        no_cache_images: BTreeSet::new(),
        annotations: parse_annotations(&args.annotations)?,
        inline_cache: BTreeSet::new(),
        explain: args.explain,
        source_date_epoch: source_date_epoch(args)?,
        allow,
        fleet: None,
    };
    Ok((options, compression))
}

/// The input flags with each `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`
/// loaded into the store and given as the image it names
/// (`docker-image://localhost/rbk-build-context/NAME:…`).
fn with_oci_layouts_loaded(store: &Store, args: &BuildInputArgs) -> Result<BuildInputArgs> {
    let mut out = args.clone();
    for value in &mut out.build_contexts {
        let Some((name, spec)) = value.split_once('=') else {
            continue;
        };
        let Some(rest) = spec.strip_prefix("oci-layout://") else {
            continue;
        };
        let what = || format!("--build-context {name}={spec}");
        let (rest, digest) = match rest.rsplit_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<rbk_store::Digest>()
                        .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?,
                ),
            ),
            None => (rest, None),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !t.is_empty() => (p, Some(t)),
            _ => (rest, None),
        };
        let dir = Path::new(path);
        if !dir.join("index.json").is_file() {
            bail!(
                "{}: {} is not an OCI layout (no index.json)",
                what(),
                dir.display()
            );
        }
        let images = load_layout(store, dir).with_context(what)?;
        let chosen = images.iter().find(|i| match (&digest, tag) {
            (Some(d), _) => &i.manifest_digest == d,
            (None, Some(t)) => i.tags.iter().any(|r| r.tag() == Some(t)),
            (None, None) => images.len() == 1,
        });
        let Some(image) = chosen else {
            bail!(
                "{}: the layout holds {} image(s); name one with :TAG or @DIGEST",
                what(),
                images.len()
            );
        };
        let local = Reference::parse(&format!(
            "localhost/rbk-build-context/{}:{}",
            name.to_ascii_lowercase(),
            &image.manifest_digest.hex()[..12]
        ))
        .with_context(what)?;
        store.tag(image, &local)?;
        *value = format!("{name}=docker-image://{local}");
    }
    Ok(out)
}

/// Loads the OCI layout directory `dir` into `store` (through a tarball of
/// it in the store's staging area).
fn load_layout(store: &Store, dir: &Path) -> Result<Vec<rbk_store::images::Image>> {
    let mut tmp = tempfile::Builder::new()
        .prefix("layout-")
        .tempfile_in(store.layout().tmp())
        .context("cannot stage the layout")?;
    {
        let mut tar = tar::Builder::new(tmp.as_file_mut());
        tar.follow_symlinks(false);
        tar.append_dir_all(".", dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        tar.finish().context("cannot stage the layout")?;
    }
    let f = std::fs::File::open(tmp.path()).context("cannot stage the layout")?;
    Ok(rbk_store::archive::load(store, f)?)
}

/// `--annotation`s: `KEY=VALUE` or `manifest:KEY=VALUE` (rbk's images are
/// single manifests: there is no index or descriptor to annotate).
fn parse_annotations(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (kv, level) = match v.split_once(':') {
            Some((level, rest))
                if !level.contains('=')
                    && level.chars().all(|c| {
                        c.is_ascii_alphanumeric() || c == '-' || c == '[' || c == ']' || c == '/'
                    }) =>
            {
                (rest, Some(level))
            }
            _ => (v.as_str(), None),
        };
        match level {
            None | Some("manifest") => {}
            Some(other) => bail!(
                "--annotation {v:?}: {other}: annotations are not supported (an rbk image is one manifest; use KEY=VALUE or manifest:KEY=VALUE)"
            ),
        }
        match kv.split_once('=') {
            Some((k, val)) if !k.is_empty() => {
                out.insert(k.to_string(), val.to_string());
            }
            _ => bail!("invalid --annotation {v:?}: expected [manifest:]KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `busybox:latest` as the registry sees it: `busybox:latest
/// (docker.io/library/busybox:latest)`; other names as they are.
fn resolved_name(image: &str) -> String {
    match Reference::parse(image) {
        Ok(r) if r.familiar_repository() != r.repository() => {
            let tag = r.tag().map(|t| format!(":{t}")).unwrap_or_default();
            format!("{image} ({}{tag})", r.repository())
        }
        _ => image.to_string(),
    }
}

/// A base image that could not be had, said at the FROM that names it
/// (file, line, column, caret), with the stored images of a similar name.
fn base_failure(
    graph: &rbk_compiler::BuildGraph,
    inputs: &[rbk_compiler::Input],
    store: &Store,
    image: &str,
    why: &str,
) -> String {
    let mut said = why.to_string();
    let origin = graph.graph.node_indices().find_map(|id| {
        let v = graph.vertex(id);
        match &v.op {
            rbk_compiler::graph::Op::Source { image: i, .. } if i == image => v.origins.first(),
            _ => None,
        }
    });
    if let Some(o) = origin.filter(|o| o.line > 0) {
        if let Some(input) = inputs.iter().find(|i| i.file == o.file) {
            let line = input.source.lines().nth(o.line as usize - 1).unwrap_or("");
            // The image word: the first after FROM that is not a flag.
            let col = line
                .split_whitespace()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .and_then(|w| line.find(w))
                .map_or(1, |b| line[..b].chars().count() as u32 + 1);
            let e = rbk_compiler::ParseError::new(rbk_compiler::Span::new(o.line, col), why);
            said = e.render(&o.file, &input.source);
        }
    }
    let similar = similar_images(store, image);
    if !similar.is_empty() {
        said.push_str(&format!(
            "\nthe store has images of a similar name: {} (write that name in FROM, or `rbk tag {} {image}`)",
            similar.join(", "),
            similar[0]
        ));
    }
    said
}

/// Stored image names whose last path component is `image`'s, or close to
/// it (a typo).
fn similar_images(store: &Store, image: &str) -> Vec<String> {
    let Ok(want) = Reference::parse(image) else {
        return Vec::new();
    };
    let last = |r: &Reference| r.path().rsplit('/').next().unwrap_or("").to_string();
    let want_last = last(&want);
    let mut names: Vec<String> = Vec::new();
    for img in store.list().unwrap_or_default() {
        for t in &img.tags {
            let l = last(t);
            let close = l == want_last
                || rbk_compiler::suggest::did_you_mean(&want_last, [l.as_str()]).is_some();
            if close && t.to_string() != image {
                names.push(t.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names.truncate(5);
    names
}

/// Every tag is a valid reference, checked before any work (a bad `-t`
/// once failed only after the whole build had run).
fn check_tags(inputs: &[rbk_compiler::Input]) -> Result<()> {
    for input in inputs {
        for t in &input.tags {
            let of = match input.name == *t {
                true => String::new(),
                false => format!(" of {}", input.name),
            };
            Reference::parse(t).with_context(|| format!("invalid tag {t:?}{of}"))?;
        }
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH`: the build arg if given (as BuildKit takes it),
/// else the environment variable.
fn source_date_epoch(args: &BuildArgs) -> Result<Option<i64>> {
    let from_arg = args
        .input
        .build_args
        .iter()
        .find_map(|a| a.strip_prefix("SOURCE_DATE_EPOCH="));
    match from_arg {
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            anyhow::anyhow!("--build-arg SOURCE_DATE_EPOCH={v}: expected Unix seconds")
        }),
        None => Ok(crate::env::source_date_epoch()),
    }
}

/// The default network: the container's own, through user-mode
/// networking. Where that cannot be had (slirp4netns missing, or a
/// rootless user who may not open /dev/net/tun) the build stops before
/// any step and names the two ways on: no network, or the host's when the
/// user allows it. Never a silent fall back to the host's network.
/// `what` names who gets the network, `host` the flags that give the
/// host's network.
pub(crate) fn default_network(what: &str, host: &str) -> Result<NetworkMode> {
    rbk_runtime::sandbox::net::available().map_err(|e| {
        anyhow::anyhow!(
            "the default network of {what} cannot be set up here: {}; \
             use --network none (no network), or {host} (the host's network); \
             `rbk system info` shows what this host has",
            rbk_scheduler::error_chain(&e)
        )
    })?;
    Ok(NetworkMode::Private)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The summary on stderr, then one line per image on stdout (on stderr
/// when an output took stdout; as one JSON line under rawjson).
fn print_summary(summary: &BuildSummary, started: Instant, mode: ProgressMode, stdout_taken: bool) {
    let secs = started.elapsed().as_secs_f64();
    if mode == ProgressMode::Rawjson {
        let images: Vec<serde_json::Value> = summary
            .images
            .iter()
            .map(|i| serde_json::json!({ "name": i.name, "id": i.id.to_string(), "tags": i.tags }))
            .collect();
        eprintln!(
            "{}",
            serde_json::json!({
                "status": "built",
                "seconds": secs,
                "ran": summary.ran,
                "cached": summary.cached,
                "images": images,
            })
        );
        return;
    }
    eprintln!(
        "built {} in {secs:.2}s: {} run, {} cached",
        plural(summary.images.len(), "image"),
        plural(summary.ran, "step"),
        summary.cached
    );
    for e in &summary.exported {
        eprintln!(
            "exported cache to {}: {} ({} pushed, {} already there), {} ({})",
            e.reference,
            plural(e.report.records, "record"),
            e.report.pushed,
            e.report.skipped,
            plural(e.report.layers, "layer"),
            e.report.digest
        );
        if e.mounts > 0 {
            eprintln!(
                "exported {} to {}",
                plural(e.mounts, "cache mount"),
                e.reference
            );
        }
        for why in &e.mounts_left {
            eprintln!("warning: not exported to {}: {why}", e.reference);
        }
    }
    for img in &summary.images {
        let tags = if img.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            img.tags.join(", ")
        };
        let line = format!("{}  {}  {}", img.name, &img.id.hex()[..12], tags);
        if stdout_taken {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::outputs::{self, Output};

    #[test]
    fn targets_pushed_by_digest_push_by_digest_only() {
        let parse = |s: &str| outputs::parse(s).unwrap();
        let given = [
            parse("type=registry,name=r.io/a:1"),
            parse("type=oci,dest=x"),
        ];
        let outs = super::digest_only(&given, true);
        assert_eq!(outs.len(), 2);
        assert!(matches!(
            outs[0],
            Output::Image {
                by_digest: true,
                ..
            }
        ));
        assert_eq!(outs[1], given[1]);
        // Nothing pushed: a push by digest is added.
        let outs = super::digest_only(&given[1..], true);
        assert_eq!(outs[1], outputs::push_by_digest());
        assert_eq!(super::digest_only(&given, false), given);
    }

    #[test]
    fn docker_hub_names_are_shown_as_the_registry_sees_them() {
        assert_eq!(
            super::resolved_name("busybox:latest"),
            "busybox:latest (docker.io/library/busybox:latest)"
        );
        assert_eq!(
            super::resolved_name("localhost/busybox:latest"),
            "localhost/busybox:latest"
        );
    }
}
