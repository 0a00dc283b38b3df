//! The plan of a sharded build as `rbk plan --format json` prints it and
//! `rbk build FILE --plan PLAN --shard I/N` reads it: which shard builds
//! which target for which platform, what each waits for, and what the
//! split is expected to cost. The emitters (GitHub Actions, GitLab CI,
//! Kubernetes) are written from it.

use rbk_compiler::BuildGraph;
use rbk_scheduler::shard::{self, ShardPlan};
use serde::{Deserialize, Serialize};

use crate::inputs::BuildInputArgs;

/// The version of the document this rbk writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// A sharded build's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDoc {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// The target file as given on the command line (rbk.toml,
    /// docker-bake.json/.hcl, compose.yaml), relative to where rbk ran.
    pub file: String,
    /// The targets or groups named on the command line (empty: the file's
    /// default group).
    #[serde(default)]
    pub targets: Vec<String>,
    /// How many shards.
    pub shards: usize,
    /// The digest of the compiled graph the plan was made for: a shard
    /// whose file compiles otherwise refuses the plan.
    pub graph: String,
    /// The registry cache the shards share (`--cache-ref`), if one was
    /// given: the emitters pass it to every shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What the figures count: `seconds` (durations recorded by earlier
    /// runs) or `steps` (none recorded: each step counts 1).
    pub cost_unit: String,
    /// The expected makespan of the split.
    pub makespan: f64,
    /// The longest chain of dependent steps: no split finishes sooner.
    pub critical_path: f64,
    /// All the work, one builder doing it alone.
    pub total: f64,
    /// The units (`target@platform`) the critical path passes through.
    pub critical: Vec<String>,
    /// Every target × platform, in the order they were placed.
    pub units: Vec<PlanUnit>,
    /// Targets whose platforms are built on several shards: their index is
    /// assembled after the shards (`rbk manifest merge`).
    #[serde(default)]
    pub merges: Vec<PlanMerge>,
}

/// One target for one platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanUnit {
    /// The target's name.
    pub target: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The shard that builds it, 1-based (`--shard 2/4` builds shard 2).
    pub shard: usize,
    /// Steps with a layer that this unit is the first to need.
    pub steps: usize,
    /// The cost of those steps.
    pub cost: f64,
    /// Expected start and finish, from the start of the build.
    pub start: f64,
    /// See `start`.
    pub finish: f64,
    /// The units (`target@platform`) whose images it is built on.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The target's tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A multi-platform target split over shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMerge {
    /// The target's name.
    pub target: String,
    /// The tags its index gets.
    pub tags: Vec<String>,
    /// Its platforms.
    pub platforms: Vec<String>,
    /// The shards (1-based) that build them.
    pub shards: Vec<usize>,
}

/// What one shard did, as it writes it into its metadata file under
/// [`SHARD_REPORT_KEY`] and `rbk plan --summary` reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// The shard, 1-based.
    pub shard: usize,
    /// How many shards.
    pub shards: usize,
    /// Its units (`target@platform`) with a step that ran here.
    pub built: Vec<String>,
    /// Its units whose every step came from a cache.
    pub reused: Vec<String>,
    /// Steps of other shards taken from the shared cache.
    pub waited: usize,
    /// Steps of other shards made here after the wait.
    pub took_over: usize,
}

/// The metadata file's key of a [`ShardReport`].
pub const SHARD_REPORT_KEY: &str = "rbk.shard";

impl PlanUnit {
    /// `target@platform`, as `needs` and `critical` name units.
    pub fn name(&self) -> String {
        format!("{}@{}", self.target, self.platform)
    }
}

impl PlanDoc {
    /// Reads a plan written by `rbk plan --format json`, naming the file in
    /// every error.
    pub fn read(path: &std::path::Path) -> anyhow::Result<PlanDoc> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan {}", path.display()))?;
        let doc: PlanDoc = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: not a plan written by `rbk plan --format json`: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if doc.version != PLAN_VERSION {
            anyhow::bail!(
                "{}: plan version {} (this rbk reads version {PLAN_VERSION})",
                path.display(),
                doc.version
            );
        }
        if doc.shards == 0 {
            anyhow::bail!("{}: a plan of 0 shards", path.display());
        }
        if let Some(u) = doc
            .units
            .iter()
            .find(|u| u.shard == 0 || u.shard > doc.shards)
        {
            anyhow::bail!(
                "{}: unit {} is on shard {} of {}",
                path.display(),
                u.name(),
                u.shard,
                doc.shards
            );
        }
        Ok(doc)
    }

    /// The units shard `shard` (1-based) builds.
    pub fn shard_units(&self, shard: usize) -> impl Iterator<Item = &PlanUnit> {
        self.units.iter().filter(move |u| u.shard == shard)
    }
}

fn unit_name(graph: &BuildGraph, u: usize) -> String {
    let img = &graph.images[u];
    format!("{}@{}", img.name, img.platform)
}

/// The plan as a document.
pub fn document(
    input: &BuildInputArgs,
    graph: &BuildGraph,
    plan: &ShardPlan,
    cache: Option<String>,
) -> PlanDoc {
    let units: Vec<PlanUnit> = plan
        .units
        .iter()
        .map(|p| {
            let img = &graph.images[p.image];
            PlanUnit {
                target: img.name.clone(),
                platform: img.platform.clone(),
                shard: p.shard + 1,
                steps: p.steps,
                cost: round(p.cost),
                start: round(p.start),
                finish: round(p.finish),
                needs: p.needs.iter().map(|&w| unit_name(graph, w)).collect(),
                tags: img.tags.clone(),
            }
        })
        .collect();
    PlanDoc {
        version: PLAN_VERSION,
        file: input.path.display().to_string(),
        targets: input.names.clone(),
        shards: plan.shards,
        graph: shard::graph_digest(graph),
        cache,
        cost_unit: if plan.seconds { "seconds" } else { "steps" }.to_string(),
        makespan: round(plan.makespan),
        critical_path: round(plan.critical_path),
        total: round(plan.total),
        critical: plan.critical.iter().map(|&u| unit_name(graph, u)).collect(),
        merges: merges(&units),
        units,
    }
}

/// Targets with platforms on several shards.
fn merges(units: &[PlanUnit]) -> Vec<PlanMerge> {
    let mut by_target: std::collections::BTreeMap<&str, Vec<&PlanUnit>> = Default::default();
    for u in units {
        by_target.entry(&u.target).or_default().push(u);
    }
    by_target
        .into_iter()
        .filter_map(|(target, us)| {
            let mut shards: Vec<usize> = us.iter().map(|u| u.shard).collect();
            shards.sort_unstable();
            shards.dedup();
            (shards.len() > 1).then(|| {
                let mut platforms: Vec<String> = us.iter().map(|u| u.platform.clone()).collect();
                platforms.sort();
                PlanMerge {
                    target: target.to_string(),
                    tags: us.first().map(|u| u.tags.clone()).unwrap_or_default(),
                    platforms,
                    shards,
                }
            })
        })
        .collect()
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
