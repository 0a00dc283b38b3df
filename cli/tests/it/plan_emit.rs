//! `rbk plan --format github|gitlab|k8s`: the emitted pipelines validate
//! against the engines' published schemas (offline: check-jsonschema's
//! vendored GitHub and GitLab schemas, the Kubernetes Python client's
//! models through `k8s_check.py`), carry one shard per builder, and quote
//! what reaches a shell.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

use crate::{rbk, repo_root, skip, stderr, stdout};

/// The venv scripts/test.sh installs the validators into.
const VENV: &str = "/opt/rbk-test-venv/bin";
/// A cache ref nothing answers at: `rbk plan` falls back to counting steps
/// at once.
const CACHE: &str = "localhost:9/team/cache:main";

/// `tool` from the test venv, else from PATH.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = Path::new(VENV).join(name);
    if venv.exists() {
        return Some(venv);
    }
    crate::on_path(name)
}

/// A target file: `app` for two platforms (split over shards: a merge),
/// `base` and `tool` for one.
fn fixture(multi_platform: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let platforms = if multi_platform {
        r#"platforms = ["linux/amd64", "linux/arm64"]"#
    } else {
        ""
    };
    let toml = format!(
        "[target.base]\ncontext = \".\"\ntags = [\"localhost:9/team/base:1\"]\n\
         [target.tool]\ncontext = \".\"\ntags = [\"localhost:9/team/tool:1\"]\n\
         [target.app]\ncontext = \".\"\ntags = [\"localhost:9/team/app:1\"]\n{platforms}\n"
    );
    std::fs::write(dir.path().join("rbk.toml"), toml).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY rbk.toml /\n",
    )
    .unwrap();
    dir
}

/// `rbk plan rbk.toml --shards N --cache-ref CACHE ARGS` in `dir`: its output.
fn plan(dir: &Path, shards: usize, args: &[&str]) -> String {
    let out = Command::new(crate::rbk_bin())
        .current_dir(dir)
        .arg("--root")
        .arg(dir.join("store"))
        .args([
            "plan",
            "rbk.toml",
            "--shards",
            &shards.to_string(),
            "--cache-ref",
            CACHE,
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

const K8S: &[&str] = &[
    "--format",
    "k8s",
    "--git-url",
    "https://git.example.com/team/app.git",
];

/// A python3 that imports the Kubernetes client (and its PyYAML).
fn python_with_kubernetes() -> Option<PathBuf> {
    let python = tool("python3")?;
    let ok = Command::new(&python)
        .args(["-c", "import kubernetes, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Runs `validator` on `text` written to a file, failing the test when it
/// rejects it; says SKIPPED when the validator is not installed.
fn validates(test: &str, text: &str, validator: &str, args: &[&str]) {
    let found = match validator {
        "python3" => python_with_kubernetes(),
        _ => tool(validator),
    };
    let Some(bin) = found else {
        skip(
            test,
            &format!(
                "{} is not installed (scripts/test.sh installs it into {VENV})",
                match validator {
                    "python3" => "python3 with the kubernetes client",
                    other => other,
                }
            ),
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emitted.yml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin).args(args).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{validator} rejects the output:\n{}{}\n--- output ---\n{text}",
        stdout(&out),
        stderr(&out)
    );
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Always a summary of what was built, reused, failed, last: `always`
/// says the pipeline runs it whatever the shards did.
fn check_summary(text: &str, always: bool) {
    assert!(always, "the summary does not always run: {text}");
    assert!(
        text.contains("plan --from plan.json --summary metadata-*.json"),
        "{text}"
    );
}

/// `rbk plan --from plan.json --format FORMAT` in `dir`, the plan (of two
/// shards, no units) naming `file` and `targets`.
fn from_saved_plan(dir: &Path, file: &str, targets: &[&str], format: &str) -> Output {
    let doc = serde_json::json!({
        "version": 1, "file": file, "targets": targets, "shards": 2,
        "graph": "blake3:00", "cache": CACHE, "cost_unit": "steps", "makespan": 1.0,
        "critical_path": 1.0, "total": 1.0, "critical": [], "units": [], "merges": [],
    });
    let path = dir.join("plan.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    rbk(
        &dir.join("store"),
        &["plan", "--from", path.to_str().unwrap(), "--format", format],
    )
}

#[test]
fn plan_emit_github_workflow_validates_and_has_a_shard_per_builder() {
    let test = "plan_emit_github_workflow_validates_and_has_a_shard_per_builder";
    for (multi, shards) in [(true, 3), (false, 2)] {
        let dir = fixture(multi);
        let text = plan(dir.path(), shards, &["--format", "github"]);
        assert!(text.starts_with("# Generated by rbk "), "{text}");
        validates(
            test,
            &text,
            "check-jsonschema",
            &["--builtin-schema", "vendor.github-workflows"],
        );
        let doc = yaml(&text);
        let build = &doc["jobs"]["build"];
        let want: Vec<u64> = (1..=shards as u64).collect();
        let got: Vec<u64> = build["strategy"]["matrix"]["shard"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(build["strategy"]["fail-fast"], Value::Bool(false));
        let run = build["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|st| st.get("run").map(s).filter(|r| r.contains(" build ")))
            .unwrap();
        assert!(
            run.contains(&format!("--shard \"$SHARD/{shards}\"")),
            "{run}"
        );
        assert!(run.contains("mode=max"), "{run}");
        let merge = doc["jobs"].get("merge");
        assert_eq!(
            merge.is_some(),
            multi,
            "a merge job iff a target is split: {text}"
        );
        if let Some(merge) = merge {
            assert!(s(&merge["if"]).contains("always()"), "{text}");
        }
        let summary = &doc["jobs"]["summary"];
        check_summary(&text, s(&summary["if"]).contains("always()"));
    }
}

#[test]
fn plan_emit_gitlab_pipeline_validates_and_has_a_shard_per_builder() {
    let test = "plan_emit_gitlab_pipeline_validates_and_has_a_shard_per_builder";
    for (multi, shards) in [(true, 3), (false, 2), (false, 1)] {
        let dir = fixture(multi);
        let text = plan(dir.path(), shards, &["--format", "gitlab"]);
        assert!(text.starts_with("# Generated by rbk "), "{text}");
        validates(
            test,
            &text,
            "check-jsonschema",
            &["--builtin-schema", "vendor.gitlab-ci"],
        );
        let doc = yaml(&text);
        let build = &doc["rbk-fleet-build"];
        let script = s(&build["script"][0]);
        if shards > 1 {
            assert_eq!(build["parallel"].as_u64(), Some(shards as u64), "{text}");
            assert!(
                script.contains(&format!("--shard \"$CI_NODE_INDEX/{shards}\"")),
                "{script}"
            );
        } else {
            assert!(build.get("parallel").is_none(), "{text}");
            assert!(script.contains("--shard 1/1"), "{script}");
        }
        assert_eq!(doc.get("rbk-fleet-merge").is_some(), multi, "{text}");
        check_summary(&text, doc["rbk-fleet-summary"]["when"] == "always");
    }
}

#[test]
fn plan_emit_k8s_indexed_job_validates_and_runs_rootless() {
    let test = "plan_emit_k8s_indexed_job_validates_and_runs_rootless";
    let dir = fixture(true);
    let text = plan(dir.path(), 3, K8S);
    let check = repo_root().join("cli/tests/it/k8s_check.py");
    validates(test, &text, "python3", &[check.to_str().unwrap()]);
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    let (config_map, job) = (&docs[0], &docs[1]);
    let emitted: serde_json::Value =
        serde_json::from_str(s(&config_map["data"]["plan.json"])).unwrap();
    let json = plan(dir.path(), 3, &["--format", "json"]);
    assert_eq!(
        emitted,
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    );
    let spec = &job["spec"];
    assert_eq!(s(&spec["completionMode"]), "Indexed");
    assert_eq!(spec["completions"].as_u64(), Some(3));
    assert_eq!(spec["parallelism"].as_u64(), Some(3));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["hostUsers"], Value::Bool(false));
    assert!(!text.contains("privileged: true"), "{text}");
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["privileged"],
        Value::Bool(false)
    );
    let script = s(&container["command"][2]);
    assert!(
        script.contains("shard=$$((JOB_COMPLETION_INDEX + 1))"),
        "{script}"
    );
    assert!(script.contains("--shard \"$shard/3\""), "{script}");
}

/// `--from plan.json` and the same plan computed again give the same
/// bytes in every format: a pipeline regenerated is the pipeline committed.
#[test]
fn plan_emit_from_a_saved_plan_gives_the_same_bytes() {
    let dir = fixture(true);
    std::fs::write(
        dir.path().join("plan.json"),
        plan(dir.path(), 3, &["--format", "json"]),
    )
    .unwrap();
    for format in [&["--format", "github"][..], &["--format", "gitlab"], K8S] {
        let direct = plan(dir.path(), 3, format);
        assert_eq!(direct, plan(dir.path(), 3, format), "{format:?}");
        let out = rbk(
            &dir.path().join("store"),
            &[
                &[
                    "plan",
                    "--from",
                    dir.path().join("plan.json").to_str().unwrap(),
                ][..],
                format,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), direct, "{format:?}");
    }
}

#[test]
fn plan_emit_without_a_cache_ref_asks_for_one() {
    let dir = fixture(false);
    for format in ["github", "gitlab", "k8s"] {
        let out = Command::new(crate::rbk_bin())
            .current_dir(dir.path())
            .args(["--root", "store", "plan", "rbk.toml", "--format", format])
            .output()
            .unwrap();
        crate::fails_with(&out, "--cache-ref");
    }
}

/// A plan whose file and targets are shell syntax: the commands the
/// pipelines run pass them to rbk as plain words.
#[test]
fn plan_emit_shell_quotes_the_file_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = ["it's $(touch pwned) `x` \"q\" * ~ ;", "a b", "-n"];
    let out = from_saved_plan(dir.path(), hostile[0], &hostile[1..], "gitlab");
    assert!(out.status.success(), "{}", stderr(&out));
    let pipeline = yaml(&stdout(&out));
    // The build command with rbk replaced by printf: the words it gets.
    let script =
        s(&pipeline["rbk-fleet-build"]["script"][0]).replacen("rbk ", "printf '%s\\n' ", 1);
    let out = Command::new("sh")
        .current_dir(dir.path())
        .args(["-c", &script])
        .env("CI_NODE_INDEX", "2")
        .output()
        .unwrap();
    let words: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        &words[..4],
        ["build", hostile[0], hostile[1], hostile[2]],
        "{script}"
    );
    assert!(words.contains(&"2/2".to_string()), "{words:?}");
    assert!(!dir.path().join("pwned").exists());
}

/// GitHub evaluates `${{ }}` even inside shell quotes: a plan that holds
/// one is refused rather than emitted.
#[test]
fn plan_emit_github_refuses_expressions_in_plan_values() {
    let dir = tempfile::tempdir().unwrap();
    let targets = ["${{ secrets.TOKEN }}"];
    let out = from_saved_plan(dir.path(), "rbk.toml", &targets, "github");
    crate::fails_with(&out, "GitHub would evaluate");
}
