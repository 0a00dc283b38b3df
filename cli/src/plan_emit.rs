//! Emitters: a plan ([`crate::plan_doc::PlanDoc`]) written as the
//! pipeline of the engine that runs the shards: a GitHub Actions workflow,
//! a GitLab CI pipeline, a Kubernetes Indexed Job.
//!
//! Each emitter builds a `serde_json::Value` (whose maps keep insertion
//! order, so the same plan gives the same bytes) and writes it as YAML with
//! `serde_yaml_ng`, which quotes every string that YAML would otherwise
//! read as something else. Values that reach a shell (the file, targets,
//! refs) are shell-quoted here, once, by [`sh`].

mod github;
mod gitlab;
mod k8s;

use anyhow::{bail, Context as _, Result};

use crate::plan_doc::PlanDoc;

/// What the emitted pipelines need beyond the plan.
#[derive(Debug, Clone, clap::Args)]
pub struct EmitArgs {
    /// The name of the workflow, pipeline jobs' prefix, or the Kubernetes
    /// Job (and its ConfigMap NAME-plan)
    #[arg(help_heading = HEADING, long = "name", value_name = "NAME", default_value = DEFAULT_NAME)]
    pub name: String,
    /// A shell command that puts rbk on the runner's PATH (github, gitlab),
    /// e.g. 'cargo install --locked --git URL rbk'. Default: github checks
    /// that rbk is there and says so if not; gitlab relies on --image
    #[arg(help_heading = HEADING, long = "setup", value_name = "CMD")]
    pub setup: Option<String>,
    /// The image with rbk (and git, sh) that GitLab jobs and the Kubernetes
    /// pods run
    #[arg(help_heading = HEADING, long = "image", value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// The GitHub runner label the jobs run on
    #[arg(
        help_heading = HEADING,
        long = "runs-on",
        value_name = "LABEL",
        default_value = DEFAULT_RUNS_ON
    )]
    pub runs_on: String,
    /// Run rbk as the runner's user instead of `sudo -E` (github: for
    /// self-hosted runners that allow unprivileged user namespaces)
    #[arg(help_heading = HEADING, long = "rootless")]
    pub rootless: bool,
    /// The branch whose pushes run the pipeline (github, gitlab); it also
    /// runs when started by hand
    #[arg(help_heading = HEADING, long = "branch", value_name = "BRANCH", default_value = DEFAULT_BRANCH)]
    pub branch: String,
    /// The git repository the pods clone for the build context (k8s)
    #[arg(help_heading = HEADING, long = "git-url", value_name = "URL")]
    pub git_url: Option<String>,
    /// The commit, tag or branch the pods check out (k8s); a commit keeps
    /// every pod on the source the plan was made for
    #[arg(help_heading = HEADING, long = "git-ref", value_name = "REF", default_value = DEFAULT_GIT_REF)]
    pub git_ref: String,
    /// The Secret (type kubernetes.io/dockerconfigjson) with the registry
    /// credentials (k8s)
    #[arg(
        help_heading = HEADING,
        long = "registry-secret",
        value_name = "NAME",
        default_value = DEFAULT_REGISTRY_SECRET
    )]
    pub registry_secret: String,
    /// How many times a failed shard is retried (k8s backoffLimitPerIndex)
    #[arg(help_heading = HEADING, long = "retries", value_name = "N", default_value_t = DEFAULT_RETRIES)]
    pub retries: u16,
}

/// Where `rbk plan --help` lists [`EmitArgs`] (a heading of their own,
/// set on each: a struct-wide one would carry over to the flags after).
const HEADING: &str = "Pipeline (--format github, gitlab, k8s)";

// The flags' defaults: the header repeats only the flags that differ.
const DEFAULT_NAME: &str = "rbk-fleet";
const DEFAULT_RUNS_ON: &str = "ubuntu-latest";
const DEFAULT_BRANCH: &str = "main";
const DEFAULT_GIT_REF: &str = "HEAD";
const DEFAULT_REGISTRY_SECRET: &str = "rbk-registry";
const DEFAULT_RETRIES: u16 = 1;

/// The image the emitted GitLab jobs and Kubernetes pods run by default:
/// this rbk's version, which docs/fleet.md shows how to build and push.
pub const DEFAULT_IMAGE: &str = concat!("rbk:", env!("CARGO_PKG_VERSION"));

/// An engine to emit for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A GitHub Actions workflow.
    Github,
    /// A GitLab CI pipeline.
    Gitlab,
    /// A Kubernetes Indexed Job.
    K8s,
}

impl Engine {
    fn format(self) -> &'static str {
        match self {
            Engine::Github => "github",
            Engine::Gitlab => "gitlab",
            Engine::K8s => "k8s",
        }
    }
}

/// `plan` written for `engine`.
pub fn emit(plan: &PlanDoc, engine: Engine, args: &EmitArgs) -> Result<String> {
    let cache = check(plan, engine, args)?;
    let docs = match engine {
        Engine::Github => vec![github::workflow(plan, cache, args)?],
        Engine::Gitlab => vec![gitlab::pipeline(plan, cache, args)?],
        Engine::K8s => k8s::manifests(plan, cache, args)?,
    };
    let mut out = header(plan, engine, args);
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml_ng::to_string(doc).context("cannot write the pipeline as YAML")?);
    }
    Ok(out)
}

/// What every engine needs of the plan: the shared cache (returned) and
/// values a pipeline can carry safely.
fn check<'a>(plan: &'a PlanDoc, engine: Engine, args: &EmitArgs) -> Result<&'a str> {
    let Some(cache) = plan.cache.as_deref() else {
        bail!(
            "a fleet build needs a registry cache the shards share: give `--cache-ref \
             HOST/NAME:TAG` to `rbk plan` (the {} pipeline imports and exports it)",
            engine.format()
        );
    };
    let mut values: Vec<(&str, &str)> = vec![("file", &plan.file), ("cache ref", cache)];
    values.extend(plan.targets.iter().map(|t| ("target", t.as_str())));
    values.extend([
        ("--name", args.name.as_str()),
        ("--image", &args.image),
        ("--runs-on", &args.runs_on),
        ("--branch", &args.branch),
        ("--git-ref", &args.git_ref),
        ("--registry-secret", &args.registry_secret),
    ]);
    values.extend(args.git_url.as_deref().map(|u| ("--git-url", u)));
    for (what, v) in values {
        if v.is_empty() || v.chars().any(char::is_control) {
            bail!(
                "the {what} {v:?} is empty or has control characters: it cannot go into a pipeline"
            );
        }
        // GitHub evaluates `${{ … }}` anywhere in a workflow, even inside
        // shell quotes: a value carrying one would run as an expression.
        if engine == Engine::Github && v.contains("${{") {
            bail!("the {what} {v:?} holds `${{{{`, which GitHub would evaluate as an expression");
        }
    }
    // The setup command is the user's own pipeline code (an expression in
    // it is theirs to write), but it is repeated in the header comment,
    // which one line break would end.
    if let Some(setup) = &args.setup {
        if setup.contains(['\n', '\r']) {
            bail!("--setup {setup:?} spans several lines: join them with `&&` or `;`");
        }
    }
    Ok(cache)
}

/// The comment at the top: who wrote the file and how to write it again.
fn header(plan: &PlanDoc, engine: Engine, args: &EmitArgs) -> String {
    let mut cmd = vec![format!("rbk plan {}", file_and_targets(plan))];
    cmd.push(format!("--shards {}", plan.shards));
    if let Some(cache) = &plan.cache {
        cmd.push(format!("--cache-ref {}", sh(cache)));
    }
    cmd.push(format!("--format {}", engine.format()));
    let mut flag = |name: &str, v: &str, default: &str| {
        if v != default {
            cmd.push(format!("--{name} {}", sh(v)));
        }
    };
    flag("name", &args.name, DEFAULT_NAME);
    match engine {
        Engine::Github => {
            flag("runs-on", &args.runs_on, DEFAULT_RUNS_ON);
            flag("branch", &args.branch, DEFAULT_BRANCH);
            flag("setup", args.setup.as_deref().unwrap_or(""), "");
            if args.rootless {
                cmd.push("--rootless".to_string());
            }
        }
        Engine::Gitlab => {
            flag("image", &args.image, DEFAULT_IMAGE);
            flag("branch", &args.branch, DEFAULT_BRANCH);
            flag("setup", args.setup.as_deref().unwrap_or(""), "");
        }
        Engine::K8s => {
            flag("image", &args.image, DEFAULT_IMAGE);
            flag("git-url", args.git_url.as_deref().unwrap_or(""), "");
            flag("git-ref", &args.git_ref, DEFAULT_GIT_REF);
            flag(
                "registry-secret",
                &args.registry_secret,
                DEFAULT_REGISTRY_SECRET,
            );
            if args.retries != DEFAULT_RETRIES {
                cmd.push(format!("--retries {}", args.retries));
            }
        }
    }
    format!(
        "# Generated by rbk {} from a plan of {} ({} shards, graph {}).\n\
         # Edits are lost when it is regenerated with:\n#   {}\n",
        env!("CARGO_PKG_VERSION"),
        plan.file,
        plan.shards,
        plan.graph,
        cmd.join(" ")
    )
}

/// `s` as one shell word: as it is when every character is one the shell
/// leaves alone, else in single quotes (a `'` inside written `'\''`).
pub fn sh(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The registry host of the cache ref, for `rbk login`.
fn registry_host(cache: &str) -> Result<String> {
    let r = rbk_store::Reference::parse(cache)
        .with_context(|| format!("the cache ref {cache:?} is not an image reference"))?;
    Ok(r.domain().to_string())
}

/// `rbk login` to `host` with the password and user of the job's
/// RBK_REGISTRY_PASSWORD and RBK_REGISTRY_USER.
fn login_command(rbk: &str, host: &str) -> String {
    format!(
        "printf '%s' \"$RBK_REGISTRY_PASSWORD\" | {rbk} login {} -u \"$RBK_REGISTRY_USER\" \
         --password-stdin",
        sh(host)
    )
}

/// The file and targets, quoted: the words after `rbk plan` / `rbk build`.
fn file_and_targets(plan: &PlanDoc) -> String {
    std::iter::once(&plan.file)
        .chain(&plan.targets)
        .map(|s| sh(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `rbk plan … --format json -o plan.json` as the plan job runs it, with
/// `rbk` standing for how the engine calls rbk.
fn plan_command(rbk: &str, plan: &PlanDoc, cache: &str) -> String {
    format!(
        "{rbk} plan {} --shards {} --cache-ref {} --format json -o plan.json",
        file_and_targets(plan),
        plan.shards,
        sh(cache)
    )
}

/// `rbk build … --shard SHARD …` for one shard; `shard` and `metadata`
/// are shell words the engine fills in (already quoted).
fn build_command(
    rbk: &str,
    plan: &PlanDoc,
    cache: &str,
    plan_path: &str,
    shard: &str,
    metadata: &str,
) -> String {
    format!(
        "{rbk} build {} --plan {plan_path} --shard {shard} \\\n  --cache-from {} \\\n  \
         --cache-to {} \\\n  --push --metadata-file {metadata}",
        file_and_targets(plan),
        sh(&format!("type=registry,ref={cache}")),
        sh(&format!("type=registry,ref={cache},mode=max")),
    )
}

/// `rbk manifest merge`, assembling the indexes of targets split over
/// shards.
fn merge_command(rbk: &str) -> String {
    format!("{rbk} manifest merge --push metadata-*.json")
}

/// What the fleet built, reused and failed, unit by unit (fails when a
/// unit failed): the last step of every pipeline.
fn summary_command(rbk: &str) -> String {
    format!("{rbk} plan --from plan.json --summary metadata-*.json")
}

/// The targets split over shards, for the merge step's name.
fn merge_targets(plan: &PlanDoc) -> String {
    plan.merges
        .iter()
        .map(|m| m.target.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        emit: EmitArgs,
    }

    fn args(flags: &[&str]) -> EmitArgs {
        Cli::parse_from(std::iter::once("rbk").chain(flags.iter().copied())).emit
    }

    fn plan() -> PlanDoc {
        PlanDoc {
            version: crate::plan_doc::PLAN_VERSION,
            file: "rbk.toml".into(),
            targets: vec![],
            shards: 2,
            graph: "blake3:00".into(),
            cache: Some("registry.example.com/team/cache:main".into()),
            cost_unit: "steps".into(),
            makespan: 1.0,
            critical_path: 1.0,
            total: 2.0,
            critical: vec![],
            units: vec![],
            merges: vec![],
        }
    }

    #[test]
    fn header_is_three_comment_lines_for_every_engine() {
        let flags = [
            "--setup",
            "curl -fsSL 'https://x/rbk' -o /usr/local/bin/rbk",
            "--git-url",
            "https://x/a b.git",
        ];
        for engine in [Engine::Github, Engine::Gitlab, Engine::K8s] {
            let out = emit(&plan(), engine, &args(&flags)).unwrap();
            let lines: Vec<&str> = out.lines().take_while(|l| l.starts_with('#')).collect();
            assert_eq!(lines.len(), 3, "{out}");
            assert!(
                lines[2].contains(&format!("--format {}", engine.format())),
                "{out}"
            );
        }
    }

    #[test]
    fn setup_on_several_lines_is_refused() {
        let err = emit(&plan(), Engine::Github, &args(&["--setup", "a\nb"])).unwrap_err();
        assert!(err.to_string().contains("several lines"), "{err}");
    }

    #[test]
    fn sh_quotes_what_the_shell_would_read() {
        for (input, want) in [
            ("rbk.toml", "rbk.toml"),
            ("reg.example:5000/app:cache", "reg.example:5000/app:cache"),
            ("", "''"),
            ("a b", "'a b'"),
            ("$(rm -rf /)", "'$(rm -rf /)'"),
            ("it's", r"'it'\''s'"),
            ("*", "'*'"),
            ("~x", "'~x'"),
        ] {
            assert_eq!(sh(input), want, "{input}");
        }
    }
}
