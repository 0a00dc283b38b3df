//! `rbk build FILE --shard I/N [--plan PLAN.json]`: this builder's part of
//! a fleet build. The split is the plan's (read from the file, or made
//! here exactly as every other shard makes it); the graph keeps only this
//! shard's images, and the steps other shards own are waited for in the
//! shared registry cache (`rbk_scheduler::fleet`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rbk_compiler::BuildGraph;
use rbk_scheduler::fleet::Fleet;
use rbk_scheduler::shard;
use rbk_scheduler::BuildSummary;

use super::args::ShardArgs;
use crate::plan_doc::{PlanDoc, ShardReport};

/// `--shard`, `--plan` and `--shard-wait`, parsed.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// This shard (1-based).
    pub me: usize,
    /// How many shards share the build.
    pub n: usize,
    /// `--plan`: the plan to follow, else made here.
    pub plan: Option<PathBuf>,
    /// `--shard-wait`: `None` for auto.
    pub wait: Option<Duration>,
}

impl ShardSettings {
    /// The shard settings of the flags; `None` without `--shard`.
    pub fn resolve(args: &ShardArgs) -> Result<Option<ShardSettings>> {
        let Some(text) = &args.shard else {
            return Ok(None);
        };
        let (me, n) = parse_shard(text)?;
        let wait = match args.wait.as_str() {
            "auto" => None,
            text => Some(
                rbk_store::registry::cache::parse_duration(text)
                    .map_err(anyhow::Error::msg)
                    .context("--shard-wait")?,
            ),
        };
        Ok(Some(ShardSettings {
            me,
            n,
            plan: args.plan.clone(),
            wait,
        }))
    }
}

/// This shard as set up.
#[derive(Debug)]
pub struct ShardSetup {
    /// The scheduler's part.
    pub fleet: Fleet,
    /// This shard's targets whose other platforms other shards build:
    /// pushed by digest only, their index made by `rbk manifest merge`.
    pub split: Vec<String>,
}

/// `I/N`, 1 ≤ I ≤ N.
fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("invalid --shard {text:?}: expected I/N with 1 ≤ I ≤ N, as 2/4");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Sets up shard `args` over `graph`: checks the plan against it, keeps
/// only this shard's images in it and says which steps others own.
pub fn setup(
    args: &ShardSettings,
    graph: &mut BuildGraph,
    plan_now: impl FnOnce(&BuildGraph, usize) -> PlanDoc,
) -> Result<ShardSetup> {
    let (me, n) = (args.me, args.n);
    let doc = match &args.plan {
        Some(path) => {
            let doc = PlanDoc::read(path)?;
            check_plan(&doc, path, graph, n)?;
            doc
        }
        None => plan_now(graph, n),
    };
    let mut placed = Vec::with_capacity(doc.units.len());
    for u in &doc.units {
        let Some(i) = graph
            .images
            .iter()
            .position(|img| img.name == u.target && img.platform == u.platform)
        else {
            bail!(
                "the plan names {}, which this build does not have",
                u.name()
            );
        };
        placed.push((i, u.shard - 1));
    }
    if let Some(img) = (0..graph.images.len())
        .find(|i| !placed.iter().any(|(p, _)| p == i))
        .map(|i| &graph.images[i])
    {
        bail!(
            "the plan does not place {}@{}: make the plan again for this file",
            img.name,
            img.platform
        );
    }
    // Shards are 1-based on the command line and in the plan, 0-based here.
    let own = me - 1;
    let others = shard::owners(graph, &placed)
        .into_iter()
        .map(|o| o.filter(|&s| s != own).map(|s| s + 1))
        .collect();
    let mut mine = vec![false; graph.images.len()];
    // This shard's steps go in the order the plan expects its units to
    // start: what other shards wait on is made when the plan says.
    let mut priority = vec![u64::MAX; graph.len()];
    for (u, &(i, s)) in doc.units.iter().zip(&placed) {
        if s != own {
            continue;
        }
        mine[i] = true;
        let at = (u.start.max(0.0) * 1000.0) as u64;
        let needed = graph.needed_by(graph.images[i].vertex);
        for (v, p) in priority.iter_mut().enumerate() {
            if needed[v] {
                *p = (*p).min(at);
            }
        }
    }
    let mut keep = mine.into_iter();
    graph.images.retain(|_| keep.next().unwrap_or(false));
    let wait = wait_of(args.wait, &doc);
    let split = doc
        .merges
        .iter()
        .filter(|m| m.shards.contains(&me))
        .map(|m| m.target.clone())
        .collect();
    Ok(ShardSetup {
        fleet: Fleet {
            shard: me,
            shards: n,
            others,
            wait,
            priority,
        },
        split,
    })
}

/// A plan read from `path` must be for `n` shards and this graph.
fn check_plan(doc: &PlanDoc, path: &std::path::Path, graph: &BuildGraph, n: usize) -> Result<()> {
    if doc.shards != n {
        bail!(
            "--shard asks for {n} shards and the plan {} has {}",
            path.display(),
            doc.shards
        );
    }
    let digest = shard::graph_digest(graph);
    if doc.graph != digest {
        bail!(
            "the plan {} was made for another version of {} (its targets or Dockerfiles changed \
             since): make it again with `rbk plan {} --shards {n} --format json`",
            path.display(),
            doc.file,
            doc.file
        );
    }
    Ok(())
}

/// `--shard-wait`: the duration given, or for `auto` (`None`) 10 minutes,
/// or three times the plan's makespan when that is longer.
fn wait_of(given: Option<Duration>, doc: &PlanDoc) -> Duration {
    if let Some(d) = given {
        return d;
    }
    let floor = Duration::from_secs(600);
    if doc.cost_unit != "seconds" {
        return floor;
    }
    floor.max(Duration::from_secs_f64((doc.makespan * 3.0).min(86_400.0)))
}

/// What this shard did, on one line, and for the metadata file.
pub fn report(setup: &ShardSetup, graph: &BuildGraph, summary: &BuildSummary) -> ShardReport {
    let ran: std::collections::BTreeSet<usize> = summary
        .steps
        .iter()
        .filter(|s| !s.cached)
        .map(|s| s.vertex)
        .collect();
    let mut built = Vec::new();
    let mut reused = Vec::new();
    for img in &graph.images {
        let name = format!("{}@{}", img.name, img.platform);
        let any = graph
            .needed_by(img.vertex)
            .iter()
            .enumerate()
            .any(|(v, &needed)| needed && ran.contains(&v));
        if any {
            built.push(name);
        } else {
            reused.push(name);
        }
    }
    let f = &setup.fleet;
    eprintln!(
        "shard {}/{}: {} built{}, {} reused; {} steps taken from other shards, {} made here after waiting",
        f.shard,
        f.shards,
        built.len(),
        if built.is_empty() {
            String::new()
        } else {
            format!(" ({})", built.join(", "))
        },
        reused.len(),
        summary.waited,
        summary.took_over
    );
    ShardReport {
        shard: f.shard,
        shards: f.shards,
        built,
        reused,
        waited: summary.waited,
        took_over: summary.took_over,
    }
}

/// A shard needs the shared registry cache both ways: to find the other
/// shards' results and to give its own.
pub fn check_caches(
    setup: &ShardSetup,
    from: &[std::sync::Arc<rbk_store::registry::cache::RemoteCache>],
    to: &[rbk_scheduler::shared_cache::CacheExport],
) -> Result<()> {
    let f = &setup.fleet;
    if !from.iter().any(|c| c.by_key() && c.in_registry()) {
        bail!(
            "shard {}/{} needs the shared registry cache to read the other shards' results: \
             --cache-from type=registry,ref=REGISTRY/NAME:TAG (when one was given, it could not \
             be read: see the warning above)",
            f.shard,
            f.shards
        );
    }
    if !to.iter().any(|c| {
        matches!(
            c.dest,
            rbk_scheduler::shared_cache::CacheDest::Registry { .. }
        )
    }) {
        bail!(
            "shard {}/{} needs the shared registry cache to give its results to the others: \
             --cache-to type=registry,ref=REGISTRY/NAME:TAG,mode=max",
            f.shard,
            f.shards
        );
    }
    Ok(())
}

/// After the shard's build: its durations recorded beside the cache, and
/// its report (said, and returned for the metadata file).
pub fn after(
    setup: &ShardSetup,
    store: &rbk_store::images::Store,
    caches: &[rbk_scheduler::shared_cache::CacheExport],
    graph: &BuildGraph,
    summary: &BuildSummary,
) -> ShardReport {
    record_timings(setup, store, caches, graph, summary);
    report(setup, graph, summary)
}

/// After the build: what the steps took, beside each registry cache it
/// exports to (slot `shard-I`), for the next plan. Best effort: a failure
/// is a warning.
fn record_timings(
    setup: &ShardSetup,
    store: &rbk_store::images::Store,
    caches: &[rbk_scheduler::shared_cache::CacheExport],
    graph: &BuildGraph,
    summary: &BuildSummary,
) {
    for c in caches {
        if let rbk_scheduler::shared_cache::CacheDest::Registry { client, reference } = &c.dest {
            let slot = format!("shard-{}", setup.fleet.shard);
            if let Err(e) = crate::timings::publish(client, store, reference, &slot, graph, summary)
            {
                eprintln!("rbk: warning: step durations not recorded in {reference}: {e:#}");
            }
        }
    }
}
