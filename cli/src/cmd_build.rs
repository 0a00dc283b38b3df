//! `rbk build`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use rbk_compiler::config::ImageConfig;
use rbk_compiler::lower::{BaseImage, ImageResolver};
use rbk_compiler::platform::Platform;
use rbk_scheduler::build::{default_jobs, BuildOptions, Builder};
use rbk_scheduler::sandbox::{CancelToken, NamespaceExecutor, NetworkMode};
use rbk_store::compress::Compression;
use rbk_store::images::Store;

use crate::cmd_graph::compile_all;
use crate::inputs::{self, BuildInputArgs};
use crate::progress::{self, ProgressMode};

/// `rbk build`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk build -t myapp:1.0 .
  rbk build -f docker/Dockerfile.prod --build-arg VERSION=2 -t myapp:2 .
  rbk build examples/debian/rbk.toml            # every image of the file, as one graph
  rbk build examples/debian/rbk.toml nginx      # one target (or group)
  rbk build --explain -t myapp .                # say why each step missed the cache")]
pub struct BuildArgs {
    #[command(flatten)]
    pub input: BuildInputArgs,
    /// Secret for RUN --mount=type=secret: id=ID,src=PATH (repeatable)
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    pub secrets: Vec<String>,
    /// Do not use cached results
    #[arg(long)]
    pub no_cache: bool,
    /// Steps to run at once (default: twice the cores, at least 4)
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Network for RUN steps: host or none
    #[arg(long, default_value = "host")]
    pub network: String,
    /// Explain every cache miss
    #[arg(long)]
    pub explain: bool,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Layer compression: gzip or zstd
    #[arg(long, default_value = "gzip")]
    pub compression: String,
}

/// Base images come from the store.
pub struct StoreResolver<'a>(pub &'a Store);

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, image: &str, _: &Platform) -> Option<BaseImage> {
        let img = self.0.resolve(image).ok()?;
        let value = serde_json::to_value(img.config.config.as_ref()?).ok()?;
        let config: ImageConfig = serde_json::from_value(value).ok()?;
        Some(BaseImage { config })
    }
}

fn parse_secret(s: &str) -> Result<(String, PathBuf)> {
    let mut id = None;
    let mut src = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("type", "file")) => {}
            _ => bail!("invalid --secret {s:?}: expected id=ID,src=PATH"),
        }
    }
    match (id, src) {
        (Some(id), Some(src)) => {
            if !src.is_file() {
                bail!("--secret {id}: {} is not a readable file", src.display());
            }
            Ok((id, src))
        }
        (Some(id), None) => {
            // Like docker: without src, the environment variable of that name.
            bail!("--secret id={id}: src=PATH is required")
        }
        _ => bail!("invalid --secret {s:?}: expected id=ID,src=PATH"),
    }
}

/// Runs a build; returns the exit code.
pub fn build(root: &Path, args: &BuildArgs) -> Result<i32> {
    let started = Instant::now();
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let inputs = inputs::load(&args.input)?;
    let graph = compile_all(&inputs, &StoreResolver(&store))?;
    for w in &graph.warnings {
        eprintln!("warning: {w}");
    }
    let mut secrets = BTreeMap::new();
    for s in &args.secrets {
        let (id, src) = parse_secret(s)?;
        secrets.insert(id, src);
    }
    let network = match args.network.as_str() {
        "host" | "default" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => bail!("--network {other:?}: use host or none"),
    };
    let compression: Compression = args
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression: {e}"))?;
    if let Err(why) = rbk_scheduler::sandbox::sandbox_supported() {
        bail!("cannot run build steps here: {why}");
    }
    let snapshotter = crate::snapshotter(root)?;
    let reporter = progress::reporter(args.progress);
    let builder = Builder {
        store: &store,
        snapshotter: snapshotter.as_ref(),
        executor: &NamespaceExecutor,
        reporter: reporter.as_ref(),
        options: BuildOptions {
            no_cache: args.no_cache,
            jobs: args.jobs.unwrap_or_else(default_jobs),
            network,
            secrets,
            explain: args.explain,
            compression,
        },
    };
    let cancel = CancelToken::new();
    crate::signals::cancel_on_interrupt(&cancel);
    let summary = builder.build(&graph, &cancel)?;
    drop(reporter);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "built {} image{} in {secs:.2}s: {} step{} run, {} cached",
        summary.images.len(),
        if summary.images.len() == 1 { "" } else { "s" },
        summary.ran,
        if summary.ran == 1 { "" } else { "s" },
        summary.cached
    );
    for img in &summary.images {
        let tags = if img.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            img.tags.join(", ")
        };
        println!("{}  {}  {}", img.name, &img.id.hex()[..12], tags);
    }
    Ok(0)
}
