//! A GitHub Actions workflow: `plan` → `build` (a matrix of the shards,
//! not failing fast) → `merge` (only when targets are split over shards)
//! → `summary` (what was built, reused, failed).

use anyhow::Result;
use serde_json::{json, Value};

use super::{
    build_command, login_command, merge_command, merge_targets, plan_command, registry_host,
    summary_command, EmitArgs,
};
use crate::plan_doc::PlanDoc;

/// How the steps call rbk: `$RBK_BIN` is set by the setup step, because
/// sudo's secure_path would not find rbk under ~/.cargo/bin.
fn rbk(args: &EmitArgs) -> &'static str {
    if args.rootless {
        "\"$RBK_BIN\""
    } else {
        "sudo -E \"$RBK_BIN\""
    }
}

/// The workflow.
pub fn workflow(plan: &PlanDoc, cache: &str, args: &EmitArgs) -> Result<Value> {
    let host = registry_host(cache)?;
    let ghcr = host == "ghcr.io";
    let mut jobs = serde_json::Map::new();
    jobs.insert("plan".into(), plan_job(plan, cache, &host, args));
    jobs.insert("build".into(), build_job(plan, cache, &host, args));
    if !plan.merges.is_empty() {
        jobs.insert("merge".into(), merge_job(plan, &host, args));
    }
    jobs.insert("summary".into(), summary_job(plan, args));
    let permissions = if ghcr {
        json!({"contents": "read", "packages": "write"})
    } else {
        json!({"contents": "read"})
    };
    Ok(json!({
        "name": args.name,
        "on": {
            "workflow_dispatch": {},
            "push": {"branches": [args.branch]},
        },
        "permissions": permissions,
        "jobs": jobs,
    }))
}

/// The steps every job starts with: the checkout, rbk, the registry login.
fn common_steps(host: &str, args: &EmitArgs) -> Vec<Value> {
    let install = args.setup.clone().unwrap_or_else(|| {
        "command -v rbk >/dev/null || {\n  echo \"::error::rbk is not on this runner: regenerate \
         the workflow with rbk plan --setup 'COMMAND THAT INSTALLS RBK'\"\n  exit 1\n}"
            .to_string()
    });
    let setup = format!(
        "{install}\necho \"RBK_BIN=$(command -v rbk)\" >> \"$GITHUB_ENV\"\n\
         echo \"RBK_AUTH_FILE=$RUNNER_TEMP/rbk-auth.json\" >> \"$GITHUB_ENV\"\n"
    );
    // ghcr.io takes the job's own token; other registries the repository
    // secrets RBK_REGISTRY_USER and RBK_REGISTRY_PASSWORD.
    let (user, password) = if host == "ghcr.io" {
        ("${{ github.actor }}", "${{ secrets.GITHUB_TOKEN }}")
    } else {
        (
            "${{ secrets.RBK_REGISTRY_USER }}",
            "${{ secrets.RBK_REGISTRY_PASSWORD }}",
        )
    };
    vec![
        json!({"uses": "actions/checkout@v4"}),
        json!({"name": "Set up rbk", "run": setup}),
        json!({
            "name": format!("Log in to {host}"),
            "env": {"RBK_REGISTRY_USER": user, "RBK_REGISTRY_PASSWORD": password},
            "run": login_command(rbk(args), host) + "\n",
        }),
    ]
}

fn plan_job(plan: &PlanDoc, cache: &str, host: &str, args: &EmitArgs) -> Value {
    let mut steps = common_steps(host, args);
    steps.push(json!({
        "name": "Plan the shards",
        "run": plan_command(rbk(args), plan, cache) + "\n",
    }));
    steps.push(json!({
        "uses": "actions/upload-artifact@v4",
        "with": {"name": "rbk-plan", "path": "plan.json", "if-no-files-found": "error"},
    }));
    json!({"runs-on": args.runs_on, "steps": steps})
}

fn build_job(plan: &PlanDoc, cache: &str, host: &str, args: &EmitArgs) -> Value {
    let mut steps = common_steps(host, args);
    steps.insert(
        1,
        json!({"uses": "actions/download-artifact@v4", "with": {"name": "rbk-plan"}}),
    );
    let shard = format!("\"$SHARD/{}\"", plan.shards);
    steps.push(json!({
        "name": "Build the shard",
        "env": {"SHARD": "${{ matrix.shard }}"},
        "run": build_command(rbk(args), plan, cache, "plan.json", &shard, "\"metadata-$SHARD.json\"") + "\n",
    }));
    // Uploaded even when the build failed: what the shard pushed before
    // failing still goes into the merge.
    steps.push(json!({
        "if": "${{ always() }}",
        "uses": "actions/upload-artifact@v4",
        "with": {
            "name": "rbk-metadata-${{ matrix.shard }}",
            "path": "metadata-${{ matrix.shard }}.json",
            "if-no-files-found": "ignore",
        },
    }));
    let shards: Vec<usize> = (1..=plan.shards).collect();
    json!({
        "name": format!("shard ${{{{ matrix.shard }}}}/{}", plan.shards),
        "needs": "plan",
        "runs-on": args.runs_on,
        "strategy": {"fail-fast": false, "matrix": {"shard": shards}},
        "steps": steps,
    })
}

fn merge_job(plan: &PlanDoc, host: &str, args: &EmitArgs) -> Value {
    let mut steps = common_steps(host, args);
    steps.insert(
        1,
        json!({
            "uses": "actions/download-artifact@v4",
            "with": {"pattern": "rbk-metadata-*", "merge-multiple": true},
        }),
    );
    steps.push(json!({
        "name": format!("Assemble the multi-platform images ({})", merge_targets(plan)),
        "run": merge_command(rbk(args)) + "\n",
    }));
    steps.push(json!({
        "name": "Fail if a shard failed",
        "if": "${{ needs.build.result != 'success' }}",
        "run": "echo \"::error::a shard failed (build: ${{ needs.build.result }}): the indexes hold only what was built\"\nexit 1\n",
    }));
    json!({
        "needs": ["plan", "build"],
        // Runs when a shard failed too, so what was built is assembled;
        // not when the plan itself failed (there is nothing then).
        "if": "${{ always() && needs.plan.result == 'success' }}",
        "runs-on": args.runs_on,
        "steps": steps,
    })
}

/// The fleet's summary, unit by unit, after everything else; it fails
/// when a unit failed.
fn summary_job(plan: &PlanDoc, args: &EmitArgs) -> Value {
    let mut needs = vec!["plan", "build"];
    if !plan.merges.is_empty() {
        needs.push("merge");
    }
    let install = args
        .setup
        .clone()
        .unwrap_or_else(|| "command -v rbk >/dev/null".to_string());
    json!({
        "needs": needs,
        "if": "${{ always() && needs.plan.result == 'success' }}",
        "runs-on": args.runs_on,
        "steps": [
            {"uses": "actions/download-artifact@v4", "with": {"name": "rbk-plan"}},
            {
                "uses": "actions/download-artifact@v4",
                "with": {"pattern": "rbk-metadata-*", "merge-multiple": true},
            },
            {"name": "Install rbk", "run": install + "\n"},
            {"name": "What was built, reused, failed", "run": summary_command("rbk") + "\n"},
        ],
    })
}
