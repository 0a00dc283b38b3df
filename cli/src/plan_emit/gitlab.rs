//! A GitLab CI pipeline: stages plan, build (`parallel: N`, the shard
//! from `CI_NODE_INDEX`, which GitLab numbers from 1), merge and summary.

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{
    build_command, login_command, merge_command, plan_command, registry_host, summary_command,
    EmitArgs,
};
use crate::plan_doc::PlanDoc;

/// GitLab's bounds on `parallel: N`.
const MAX_PARALLEL: usize = 200;

/// The pipeline.
pub fn pipeline(plan: &PlanDoc, cache: &str, args: &EmitArgs) -> Result<Value> {
    if plan.shards > MAX_PARALLEL {
        bail!(
            "GitLab runs at most {MAX_PARALLEL} parallel jobs of one name; the plan has {} shards",
            plan.shards
        );
    }
    let host = registry_host(cache)?;
    let mut before = Vec::new();
    before.extend(args.setup.clone());
    before.push(login_command("rbk", &host));
    let name = &args.name;
    let mut doc = serde_json::Map::new();
    doc.insert(
        "workflow".into(),
        json!({"rules": [
            {"if": "$CI_PIPELINE_SOURCE == \"web\""},
            {"if": format!("$CI_COMMIT_BRANCH == {}", gitlab_string(&args.branch))},
        ]}),
    );
    doc.insert(
        "stages".into(),
        json!(["plan", "build", "merge", "summary"]),
    );
    // Pipeline variables give way to project CI/CD variables of the same
    // name: GitLab's own registry works as is, another is set there.
    doc.insert(
        "variables".into(),
        json!({
            "RBK_REGISTRY_USER": "$CI_REGISTRY_USER",
            "RBK_REGISTRY_PASSWORD": "$CI_REGISTRY_PASSWORD",
            "RBK_AUTH_FILE": "/tmp/rbk-auth.json",
        }),
    );
    doc.insert(
        "default".into(),
        json!({"image": args.image, "before_script": before}),
    );
    doc.insert(
        format!("{name}-plan"),
        json!({
            "stage": "plan",
            "script": [plan_command("rbk", plan, cache)],
            "artifacts": {"paths": ["plan.json"]},
        }),
    );
    doc.insert(format!("{name}-build"), build_job(plan, cache, name));
    if !plan.merges.is_empty() {
        doc.insert(format!("{name}-merge"), merge_job(plan, name));
    }
    // What was built, reused, failed: after everything, whatever failed.
    doc.insert(
        format!("{name}-summary"),
        json!({
            "stage": "summary",
            "needs": [
                {"job": format!("{name}-plan"), "artifacts": true},
                {"job": format!("{name}-build"), "artifacts": true},
            ],
            "when": "always",
            "script": [summary_command("rbk")],
        }),
    );
    Ok(Value::Object(doc))
}

fn build_job(plan: &PlanDoc, cache: &str, name: &str) -> Value {
    let n = plan.shards;
    // `parallel` takes 2 to 200; one shard is one plain job.
    let (shard, index) = if n > 1 {
        (format!("\"$CI_NODE_INDEX/{n}\""), "$CI_NODE_INDEX")
    } else {
        ("1/1".to_string(), "1")
    };
    let build = build_command(
        "rbk",
        plan,
        cache,
        "plan.json",
        &shard,
        &format!("\"metadata-{index}.json\""),
    );
    let mut job = json!({
        "stage": "build",
        "needs": [format!("{name}-plan")],
        "script": [build, format!("touch \"shard-{index}.ok\"")],
        "artifacts": {"when": "always", "paths": ["metadata-*.json", "shard-*.ok"]},
    });
    if n > 1 {
        job["parallel"] = json!(n);
    }
    job
}

fn merge_job(plan: &PlanDoc, name: &str) -> Value {
    // GitLab tells a later job nothing of how earlier ones ended: each
    // shard leaves shard-I.ok when it succeeded, and the merge counts them
    // after assembling what was built.
    let check = format!(
        "ok=$(ls shard-*.ok 2>/dev/null | wc -l)\n\
         if [ \"$ok\" -ne {n} ]; then echo \"only $ok of {n} shards succeeded\" >&2; exit 1; fi",
        n = plan.shards
    );
    json!({
        "stage": "merge",
        "needs": [{"job": format!("{name}-build"), "artifacts": true}],
        "when": "always",
        "script": [merge_command("rbk"), check],
    })
}

/// `s` as a string literal in a GitLab `rules: if:` expression.
fn gitlab_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
