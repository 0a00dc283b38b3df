//! Kubernetes: a ConfigMap with the plan and an Indexed Job of N pods,
//! pod I building shard I+1. The pods run in their own user namespace
//! (`hostUsers: false`), unprivileged; docs/fleet.md says why each
//! setting is there.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use super::{build_command, sh, EmitArgs};
use crate::plan_doc::PlanDoc;

/// Where the pods mount things.
const SRC: &str = "/src";
const PLAN_DIR: &str = "/etc/rbk/plan";
const AUTH_DIR: &str = "/etc/rbk/auth";

/// The ConfigMap and the Job.
pub fn manifests(plan: &PlanDoc, cache: &str, args: &EmitArgs) -> Result<Vec<Value>> {
    let name = &args.name;
    dns_label(name, 52, "--name")?;
    dns_subdomain(&args.registry_secret, "--registry-secret")?;
    let Some(git_url) = &args.git_url else {
        bail!("the pods need the source: give --git-url (and --git-ref, a commit for a plan that stays valid)");
    };
    let plan_json = serde_json::to_string_pretty(plan).context("cannot write the plan")? + "\n";
    let labels = json!({"app.kubernetes.io/name": "rbk", "app.kubernetes.io/instance": name});
    let plan_map = format!("{name}-plan");
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": plan_map, "labels": labels},
        "data": {"plan.json": plan_json},
    });
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": plan.shards,
            "parallelism": plan.shards,
            // A failed shard is retried on its own, and never stops the
            // others (a target another shard waits for is built there).
            "backoffLimitPerIndex": args.retries,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(plan, cache, &plan_map, git_url, args),
            },
        },
    });
    Ok(vec![config_map, job])
}

/// The pods: `cache` the shared cache ref, `plan_map` the ConfigMap with
/// the plan.
fn pod_spec(plan: &PlanDoc, cache: &str, plan_map: &str, git_url: &str, args: &EmitArgs) -> Value {
    let checkout = format!(
        "set -eu\ncd {SRC}\ngit init -q\ngit fetch -q --depth 1 {} {}\ngit checkout -q FETCH_HEAD\n",
        sh(git_url),
        sh(&args.git_ref)
    );
    // The shard's metadata goes to the log too: a Job has no later job to
    // hand files to (docs/fleet.md shows how the merge collects them).
    let build = format!(
        "set -eu\nshard=$((JOB_COMPLETION_INDEX + 1))\n{}\n\
         echo \"rbk-metadata $shard $(tr -d '\\n' < \"metadata-$shard.json\")\"\n",
        build_command(
            "rbk",
            plan,
            cache,
            &format!("{PLAN_DIR}/plan.json"),
            &format!("\"$shard/{}\"", plan.shards),
            "\"metadata-$shard.json\"",
        )
    );
    json!({
        "restartPolicy": "Never",
        "hostUsers": false,
        "initContainers": [{
            "name": "checkout",
            "image": args.image,
            "command": ["/bin/sh", "-c", kubelet_escape(&checkout)],
            "securityContext": {"allowPrivilegeEscalation": false},
            "volumeMounts": [{"name": "src", "mountPath": SRC}],
        }],
        "containers": [{
            "name": "rbk",
            "image": args.image,
            "workingDir": SRC,
            "command": ["/bin/sh", "-c", kubelet_escape(&build)],
            "env": [
                {"name": "RBK_AUTH_FILE", "value": format!("{AUTH_DIR}/.dockerconfigjson")},
                {"name": "RBK_ROOT", "value": "/var/lib/rbk"},
            ],
            "securityContext": security_context(),
            "volumeMounts": [
                {"name": "src", "mountPath": SRC},
                {"name": "plan", "mountPath": PLAN_DIR, "readOnly": true},
                {"name": "auth", "mountPath": AUTH_DIR, "readOnly": true},
                {"name": "store", "mountPath": "/var/lib/rbk"},
            ],
        }],
        "volumes": [
            {"name": "src", "emptyDir": {}},
            {"name": "plan", "configMap": {"name": plan_map}},
            {"name": "auth", "secret": {"secretName": args.registry_secret}},
            {"name": "store", "emptyDir": {}},
        ],
    })
}

/// rbk runs as root of the pod's own user namespace (`hostUsers: false`)
/// and makes the RUN steps' namespaces and mounts from there: SYS_ADMIN
/// over that namespace only, AppArmor's default profile (which denies
/// mount) left off, /proc unmasked so a RUN step can mount its own. Not
/// privileged; seccomp stays the runtime's default.
fn security_context() -> Value {
    json!({
        "privileged": false,
        // Kubernetes refuses allowPrivilegeEscalation: false with SYS_ADMIN.
        "allowPrivilegeEscalation": true,
        // The runtime's default set stays: RUN steps inherit it.
        "capabilities": {"add": ["SYS_ADMIN"]},
        "appArmorProfile": {"type": "Unconfined"},
        "seccompProfile": {"type": "RuntimeDefault"},
        "procMount": "Unmasked",
    })
}

/// The kubelet expands `$(VAR)` in a container's command and reads `$$`
/// as `$`; a `$` before `(` or `$` is doubled so the shell gets the
/// script as written (`$name` alone the kubelet leaves as it is).
fn kubelet_escape(script: &str) -> String {
    let mut out = String::with_capacity(script.len());
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && matches!(chars.peek(), Some('$' | '(')) {
            out.push('$');
        }
    }
    out
}

/// Whether `name` is a DNS-1123 label of at most `max` characters.
fn is_label(name: &str, max: usize) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    name.len() <= max
        && name.chars().all(ok_char)
        && ends_ok(name.chars().next())
        && ends_ok(name.chars().last())
}

/// Checks `name` is a DNS-1123 label Kubernetes takes for an object name
/// (the Job's, whose pods' names it starts).
fn dns_label(name: &str, max: usize, flag: &str) -> Result<()> {
    if !is_label(name, max) {
        bail!("{flag} {name:?} is not a Kubernetes name: lowercase letters, digits and '-', at most {max}");
    }
    Ok(())
}

/// Checks `name` is a DNS-1123 subdomain, as a Secret's name may be:
/// labels joined by '.', at most 253 characters.
fn dns_subdomain(name: &str, flag: &str) -> Result<()> {
    if name.len() > 253 || !name.split('.').all(|l| is_label(l, 63)) {
        bail!(
            "{flag} {name:?} is not a Kubernetes name: lowercase letters, digits, '-' and '.', \
             at most 253"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_escape_keeps_shell_expansions() {
        for (script, want) in [
            ("$((I + 1)) $(cat f) $HOME", "$$((I + 1)) $$(cat f) $HOME"),
            ("echo $$", "echo $$$"),
            ("$$(", "$$$$("),
        ] {
            assert_eq!(kubelet_escape(script), want, "{script}");
        }
    }

    #[test]
    fn dns_label_takes_only_kubernetes_names() {
        for (name, ok) in [
            ("rbk-fleet", true),
            ("a", true),
            ("Rbk", false),
            ("-a", false),
            ("a-", false),
            ("a.b", false),
        ] {
            assert_eq!(dns_label(name, 52, "--name").is_ok(), ok, "{name}");
        }
        for (name, ok) in [
            ("rbk-registry", true),
            ("registry.example.com", true),
            ("a..b", false),
            (".a", false),
            ("A.b", false),
        ] {
            let got = dns_subdomain(name, "--registry-secret").is_ok();
            assert_eq!(got, ok, "{name}");
        }
    }
}
