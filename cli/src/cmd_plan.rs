//! `rbk plan FILE --shards N`: which shard of a fleet builds which target
//! (see `rbk_scheduler::shard`), printed for people, as JSON for
//! `rbk build --plan`, or as the pipeline of the engine that runs the
//! shards.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rbk_scheduler::shard;

use crate::inputs::BuildInputArgs;
use crate::plan_doc::{PlanDoc, PlanUnit, ShardReport, SHARD_REPORT_KEY};
use crate::plan_emit::{self, EmitArgs, Engine};

/// `rbk plan`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk plan rbk.toml --shards 4                        # who builds what, the expected times
  rbk plan rbk.toml --shards 4 --format json > plan.json
  rbk build rbk.toml --plan plan.json --shard 2/4     # on the second machine
  rbk plan rbk.toml --shards 4 --cache-ref reg/cache:main --format github > .github/workflows/images.yml
  rbk plan --from plan.json --format k8s | kubectl apply -f -")]
pub struct PlanArgs {
    /// How many builders (shards) share the work
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: u16,
    /// Output: text (for people), json (for `rbk build --plan`), github (a
    /// GitHub Actions workflow), gitlab (a GitLab CI pipeline) or k8s (a
    /// Kubernetes Indexed Job)
    #[arg(long, default_value = "text")]
    pub format: PlanFormat,
    /// Write the output to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Use the plan FILE (written by `--format json`) instead of computing
    /// one: to print it again in another format
    #[arg(long = "from", value_name = "PLAN.json", conflicts_with = "shards")]
    pub from: Option<PathBuf>,
    /// The registry cache the shards share (HOST/NAME:TAG): the step
    /// durations recorded there balance the split, and the emitted
    /// pipelines import and export it
    #[arg(long = "cache-ref", value_name = "REF")]
    pub cache_ref: Option<String>,
    /// With --from: say what the fleet built, reused and failed, from the
    /// shards' --metadata-file outputs (a shard without one failed); exits
    /// 1 when a target failed
    #[arg(long = "summary", value_name = "METADATA.json", num_args = 1.., requires = "from")]
    pub summary: Vec<PathBuf>,
    #[command(flatten)]
    pub emit: EmitArgs,
    #[command(flatten)]
    pub input: BuildInputArgs,
    #[command(flatten)]
    pub registry: crate::cmd_registry::RegistryFlags,
}

/// How `rbk plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For people.
    Text,
    /// For `rbk build --plan` and other programs.
    Json,
    /// A GitHub Actions workflow.
    Github,
    /// A GitLab CI pipeline.
    Gitlab,
    /// A Kubernetes Indexed Job.
    K8s,
}

/// Prints the plan.
pub fn plan(root: &Path, args: &PlanArgs) -> Result<i32> {
    if !matches!(args.format, PlanFormat::Text | PlanFormat::Json) {
        refuse_uncarried(&args.input)?;
    }
    let doc = match &args.from {
        Some(path) => PlanDoc::read(path)?,
        None => {
            let graph = crate::build::compile::compile(root, &args.input)?;
            let timings =
                crate::timings::load(root, args.cache_ref.as_deref(), &args.registry.options());
            let plan = shard::plan(&graph, usize::from(args.shards), &timings);
            crate::plan_doc::document(&args.input, &graph, &plan, args.cache_ref.clone())
        }
    };
    if !args.summary.is_empty() {
        return summary(&doc, &args.summary);
    }
    let text = match args.format {
        PlanFormat::Text => text(&doc),
        PlanFormat::Json => serde_json::to_string_pretty(&doc)? + "\n",
        PlanFormat::Github => plan_emit::emit(&doc, Engine::Github, &args.emit)?,
        PlanFormat::Gitlab => plan_emit::emit(&doc, Engine::Gitlab, &args.emit)?,
        PlanFormat::K8s => plan_emit::emit(&doc, Engine::K8s, &args.emit)?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            let mut out = crate::pipe::stdout();
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                if !crate::pipe::closed() {
                    return Err(e).context("cannot write the plan");
                }
            }
        }
    }
    Ok(0)
}

/// The emitted pipelines run the plan's file and targets only: a build
/// flag given here would be silently lost in them.
fn refuse_uncarried(input: &BuildInputArgs) -> Result<()> {
    let given = [
        ("--build-arg", !input.build_args.is_empty()),
        ("--set", !input.set.is_empty()),
        ("--platform", input.platform.is_some()),
        ("--label", !input.labels.is_empty()),
        ("--build-context", !input.build_contexts.is_empty()),
        ("--tag", !input.tags.is_empty()),
        ("--file", input.file.is_some()),
        ("--target", input.target.is_some()),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
        anyhow::bail!(
            "{flag} is not carried into the emitted pipeline (its jobs build the plan's file and \
             targets as they are): put it in {} instead",
            input.path.display()
        );
    }
    Ok(())
}

/// The plan for people: each shard's targets, then the expectations.
fn text(doc: &PlanDoc) -> String {
    use std::fmt::Write as _;
    let unit = |x: f64| match doc.cost_unit.as_str() {
        "seconds" => format!("{x:.1}s"),
        _ if x == 1.0 => "1 step".to_string(),
        _ => format!("{x:.0} steps"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} targets × platforms over {} shards (costs in {}{})",
        doc.file,
        doc.units.len(),
        doc.shards,
        doc.cost_unit,
        if doc.cost_unit == "steps" {
            ": no durations recorded yet"
        } else {
            ", from earlier runs"
        }
    );
    for s in 1..=doc.shards {
        let mine: Vec<&PlanUnit> = doc.shard_units(s).collect();
        let work: f64 = mine.iter().map(|u| u.cost).sum();
        let end = mine.iter().map(|u| u.finish).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "shard {s}/{}: {} of work, done at ~{}",
            doc.shards,
            unit(work),
            unit(end)
        );
        if mine.is_empty() {
            let _ = writeln!(out, "  (nothing: fewer units than shards)");
        }
        for u in mine {
            let waits = if u.needs.is_empty() {
                String::new()
            } else {
                format!("  on {}", u.needs.join(", "))
            };
            let span = match doc.cost_unit.as_str() {
                "seconds" => format!("{:.1}s–{:.1}s", u.start, u.finish),
                _ => format!("{:.0}–{:.0}", u.start, u.finish),
            };
            let _ = writeln!(
                out,
                "  {:<32} {:>3} new {:<5}  {span:<13}{waits}",
                u.name(),
                u.steps,
                if u.steps == 1 { "step" } else { "steps" },
            );
        }
    }
    for m in &doc.merges {
        let _ = writeln!(
            out,
            "merge: {} ({}) from shards {:?}: `rbk manifest merge`",
            m.target,
            m.platforms.join(", "),
            m.shards
        );
    }
    let ideal = (doc.total / doc.shards as f64).max(doc.critical_path);
    let _ = writeln!(
        out,
        "expected makespan {} (one builder: {}; bound for {} shards: {}); critical path {}: {}",
        unit(doc.makespan),
        unit(doc.total),
        doc.shards,
        unit(ideal),
        unit(doc.critical_path),
        doc.critical.join(" → ")
    );
    out
}

/// What each unit of `doc` became, from the shards' metadata files.
fn summary(doc: &PlanDoc, files: &[PathBuf]) -> Result<i32> {
    use std::collections::BTreeMap;
    // Each shard's report, by shard.
    let mut reports: BTreeMap<usize, ShardReport> = BTreeMap::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", f.display(), e.line(), e.column()))?;
        let report = v
            .get(SHARD_REPORT_KEY)
            .map(|r| serde_json::from_value::<ShardReport>(r.clone()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: {SHARD_REPORT_KEY}: {e}", f.display()))?;
        let Some(report) = report else {
            anyhow::bail!(
                "{}: not the metadata of a shard (no {SHARD_REPORT_KEY})",
                f.display()
            );
        };
        reports.insert(report.shard, report);
    }
    let (mut built, mut reused, mut failed) = (0, 0, 0);
    let mut out = String::new();
    for u in &doc.units {
        let name = u.name();
        let said = match reports.get(&u.shard) {
            Some(r) if r.built.contains(&name) => {
                built += 1;
                "built "
            }
            Some(r) if r.reused.contains(&name) => {
                reused += 1;
                "reused"
            }
            _ => {
                failed += 1;
                "FAILED"
            }
        };
        let why = match reports.contains_key(&u.shard) {
            false if said == "FAILED" => " (no metadata from this shard: it failed or did not run)",
            _ => "",
        };
        out.push_str(&format!(
            "{said}  {name:<32} shard {}/{}{why}\n",
            u.shard, doc.shards
        ));
    }
    out.push_str(&format!(
        "{built} built, {reused} reused, {failed} failed\n"
    ));
    print!("{out}");
    Ok(if failed > 0 { 1 } else { 0 })
}
