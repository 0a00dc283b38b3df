//! `rbk build`'s engine room. The flags become one [`BuildSettings`]
//! first ([`args`] → [`settings`], every value checked before any work);
//! then [`run`] reads the files (a git or HTTP context fetched first by
//! [`remote`]), compiles them ([`compile`], shared with
//! `rbk check`, `rbk graph`, `rbk plan` and `rbk bake`), checks what was
//! asked against what the build makes ([`checks`]), runs the session
//! ([`session`]) and exports and reports the result ([`finish`]). Nothing
//! here reads the clap structs once the settings are made.

pub mod args;
pub mod attest;
pub mod attest_spec;
pub mod cache;
pub mod cache_spec;
pub mod checks;
pub mod compile;
pub mod finish;
pub mod layouts;
pub mod lint;
pub mod remote;
pub mod resolver;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod shard;
pub mod targets;

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use rbk_compiler::targets::ResolvedTarget;
use rbk_compiler::BuildGraph;
use rbk_scheduler::step::from::BaseImages;
use rbk_scheduler::BuildOptions;
use rbk_store::images::Store;

use self::cache::SharedCaches;
use self::cache_spec::CachePlace;
use self::compile::{compile_all, StoreResolver};
use self::finish::Done;
use self::resolver::{LazyClient, PullingResolver};
use self::session::Backend;
use self::settings::BuildSettings;
use self::shard::ShardSetup;
use self::targets::TargetOptions;
use crate::inputs;

/// Runs the build `settings` describe on the store at `root`; returns
/// the exit code.
pub fn run(root: &Path, settings: &BuildSettings) -> Result<i32> {
    let started = Instant::now();
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let input_args = layouts::with_oci_layouts_loaded(&store, &settings.input)?;
    // `rbk build -`: the context (or a Dockerfile) from standard input, in
    // a temporary directory removed when the build ends.
    let (input_args, _stdin_context) = match crate::stdin_context::resolve(&input_args)? {
        Some((a, dir)) => (a, Some(dir)),
        None => (input_args, None),
    };
    // `rbk build URL`: a git repository or a tarball fetched first.
    // Held to the end: the fetched context's directory goes with it.
    let (input_args, fetched) =
        match remote::resolve(&input_args, &store.root().join("tmp"), &settings.secrets)? {
            Some((a, fetched)) => {
                eprintln!("context {} at {}", fetched.uri, fetched.digest);
                (a, Some(fetched))
            }
            None => (input_args, None),
        };
    let (inputs, target_settings) = inputs::load_with_settings(&input_args)?;
    if settings.check {
        // As `rbk check`: the store's bases, nothing pulled, nothing built.
        let bases = BaseImages::new(&store);
        return lint::check_inputs(&inputs, &StoreResolver(&bases));
    }
    let mut options = settings.options.clone();
    let targets = TargetOptions::of(settings, &target_settings, &mut options)?;
    // Staged secrets and agents started for --ssh ID=KEY live until the
    // build ends.
    let (_secret_files, _agents) =
        secrets::secrets_and_agents(&store, &targets.secrets, &targets.ssh, &mut options)?;
    let bases = BaseImages::new(&store);
    // Made on first use: a build that pulls nothing and shares no cache
    // never touches registry settings (a bad CA file cannot fail it).
    let client = LazyClient::new(&settings.registry);
    crate::cmd_registry::fetch_remote_layers_with(settings.registry.clone());
    let resolver = PullingResolver::new(&store, &bases, targets.pull, &client);
    checks::check_names(settings, &targets, &inputs)?;
    let mut graph = compile_all(&inputs, &resolver)?;
    let shard = match &settings.shard {
        Some(s) => Some(shard::setup(s, &mut graph, |graph, n| {
            plan_shards(root, settings, graph, n)
        })?),
        None => None,
    };
    options.fleet = shard.as_ref().map(|s| s.fleet.clone());
    let groups = rbk_scheduler::export::index::hold_tags(&mut graph);
    checks::check_no_cache_filter(settings, &graph)?;
    resolver::check_bases(&resolver, &graph, &inputs, &store)?;
    lint::lint_and_emulate(settings, &inputs, &bases, &graph)?;
    let build = Build {
        root,
        settings,
        store: &store,
        bases: &bases,
        client: &client,
        targets: &targets,
        target_settings: &target_settings,
        remote: fetched.as_ref(),
    };
    build.execute(&graph, groups, options, shard.as_ref(), started)
}

/// A build set up: its settings, the store, and what its files added.
struct Build<'a> {
    root: &'a Path,
    settings: &'a BuildSettings,
    store: &'a Store,
    bases: &'a BaseImages<'a>,
    client: &'a LazyClient<'a>,
    targets: &'a TargetOptions,
    target_settings: &'a [ResolvedTarget],
    /// A context fetched from a URL.
    remote: Option<&'a remote::Fetched>,
}

impl Build<'_> {
    /// Imports the shared caches, runs the session, commits the
    /// multi-platform indexes, then exports and reports.
    fn execute(
        &self,
        graph: &BuildGraph,
        groups: rbk_scheduler::export::index::Groups,
        mut options: BuildOptions,
        shard: Option<&ShardSetup>,
        started: Instant,
    ) -> Result<i32> {
        let store = self.store;
        let caches = self.caches_of(graph)?;
        options.inline_cache = caches.inline.clone();
        if let Some(s) = shard {
            shard::check_caches(s, &caches.from, &caches.to)?;
        }
        for w in &graph.warnings {
            eprintln!("warning: {w}");
        }
        let backend = Backend {
            compression: self.settings.compression,
            from: caches.from,
            to: caches.to.clone(),
        };
        let mut summary = session::run_session(
            self.root,
            store,
            self.bases,
            graph,
            options,
            backend,
            self.settings,
        )?;
        crate::timings::save_local(self.root, graph, &summary);
        let shard_report = shard.map(|s| shard::after(s, store, &caches.to, graph, &summary));
        rbk_scheduler::export::index::commit_indexes(store, &groups, &mut summary)?;
        let settings = finish_settings(self.settings, shard);
        let attester = attest::Attester {
            root: self.root,
            store,
            graph,
            settings: &settings,
            targets: self.targets,
            remote: self.remote,
            started: unix_seconds(started),
        };
        attester.attach_all(&mut summary)?;
        let client = || self.client.get();
        let done = Done {
            store,
            client: &client,
            targets: self.targets,
            graph,
            shard: shard_report,
        };
        done.finish(&settings, &summary, started)
    }

    /// The shared caches of the build (imported, the cache mounts they
    /// carry restored) and its exports.
    fn caches_of(&self, graph: &BuildGraph) -> Result<SharedCaches> {
        let store = self.store;
        let names: Vec<String> = graph.images.iter().map(|i| i.name.clone()).collect();
        let mount_ids = rbk_scheduler::shared_cache::cache_mount_ids(graph);
        let caches = cache::shared_caches(
            store,
            self.client,
            self.settings,
            self.target_settings,
            &names,
            &mount_ids,
        )?;
        cache::restore_mounts(
            store,
            &store.layout().cache_mounts(),
            &caches.from,
            &mount_ids,
        );
        Ok(caches)
    }
}

/// The wall-clock time (unix seconds) of `at`.
fn unix_seconds(at: Instant) -> i64 {
    crate::cmd_sbom::now() - at.elapsed().as_secs() as i64
}

/// The settings the end of the build goes by: a shard's platforms of a
/// target other shards build too are pushed by digest.
fn finish_settings<'a>(
    settings: &'a BuildSettings,
    shard: Option<&ShardSetup>,
) -> std::borrow::Cow<'a, BuildSettings> {
    match shard.filter(|s| !s.split.is_empty()) {
        Some(s) => std::borrow::Cow::Owned(BuildSettings {
            push_by_digest: s.split.clone(),
            ..settings.clone()
        }),
        None => std::borrow::Cow::Borrowed(settings),
    }
}

/// The plan of `n` shards a shard without `--plan` follows: made as `rbk
/// plan` makes it, with the durations of the first registry cache it
/// reads, so every shard of the fleet makes the same one.
fn plan_shards(
    root: &Path,
    settings: &BuildSettings,
    graph: &BuildGraph,
    n: usize,
) -> crate::plan_doc::PlanDoc {
    let cache_ref = settings.cache_from.iter().find_map(|s| match &s.place {
        CachePlace::Registry(r) => Some(r.to_string()),
        _ => None,
    });
    let timings = crate::timings::load(root, cache_ref.as_deref(), &settings.registry);
    let plan = rbk_scheduler::shard::plan(graph, n, &timings);
    crate::plan_doc::document(&settings.input, graph, &plan, cache_ref)
}
