//! One graph over several builders: `rbk plan --shards N` and `rbk build
//! --shard I/N` with a registry cache on loopback as the only shared state.

use std::path::Path;
use std::process::Command;

use crate::build::{busybox_and_context, rbk, succeed, write};
use crate::cache::Registry;
use crate::{fails_with, stderr, stdout};

/// The plan of `file` as JSON.
fn plan_json(store: &Path, file: &Path, shards: &str) -> serde_json::Value {
    let out = succeed(
        rbk(store)
            .args(["plan", "--format", "json", "--shards", shards])
            .arg(file),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The units of a plan as (name, shard, start, finish).
fn units(plan: &serde_json::Value) -> Vec<(String, u64, f64, f64)> {
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                format!(
                    "{}@{}",
                    u["target"].as_str().unwrap(),
                    u["platform"].as_str().unwrap()
                ),
                u["shard"].as_u64().unwrap(),
                u["start"].as_f64().unwrap(),
                u["finish"].as_f64().unwrap(),
            )
        })
        .collect()
}

const TOML: &str = r#"
[target.base]
dockerfile = "base.Dockerfile"
[target.app1]
dockerfile = "app.Dockerfile"
contexts = { base = "target:base" }
args = { N = "1" }
[target.app2]
dockerfile = "app.Dockerfile"
contexts = { base = "target:base" }
args = { N = "2" }
[target.solo1]
dockerfile = "solo.Dockerfile"
args = { N = "1" }
[target.solo2]
dockerfile = "solo.Dockerfile"
args = { N = "2" }
[group.default]
targets = ["app1", "app2", "solo1", "solo2"]
"#;

fn fixture(dir: &Path) {
    write(
        dir,
        &[
            ("rbk.toml", TOML),
            (
                "base.Dockerfile",
                "FROM localhost/busybox:latest\nRUN echo base > /base\nRUN echo more >> /base\n",
            ),
            (
                "app.Dockerfile",
                "FROM base\nARG N\nRUN echo app$N > /app\n",
            ),
            (
                "solo.Dockerfile",
                "FROM localhost/busybox:latest\nARG N\nRUN echo solo$N > /solo\n",
            ),
        ],
    );
}

#[test]
fn a_plan_places_every_target_after_what_it_is_built_on() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let store = dir.path().join("store");
    let file = dir.path().join("rbk.toml");
    for shards in ["1", "2", "3", "8"] {
        let plan = plan_json(&store, &file, shards);
        let us = units(&plan);
        let names: Vec<&str> = us.iter().map(|u| u.0.as_str()).collect();
        // The group's targets and the base they are built on, each once.
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "app1@linux/amd64",
                "app2@linux/amd64",
                "base@linux/amd64",
                "solo1@linux/amd64",
                "solo2@linux/amd64"
            ]
        );
        let n: u64 = shards.parse().unwrap();
        assert!(us.iter().all(|u| (1..=n).contains(&u.1)), "{plan}");
        // Placed after the base, and starting no sooner than it is done.
        let base = us.iter().find(|u| u.0.starts_with("base@")).unwrap();
        let pos = |name: &str| names.iter().position(|n| n.starts_with(name)).unwrap();
        for app in ["app1@", "app2@"] {
            assert!(pos(app) > pos("base@"), "{plan}");
            let u = &us[pos(app)];
            assert!(
                u.2 >= base.3,
                "{app} starts before the base is done: {plan}"
            );
        }
        // No split beats the critical path, and steps count 1 each.
        let (makespan, cp, total) = (
            plan["makespan"].as_f64().unwrap(),
            plan["critical_path"].as_f64().unwrap(),
            plan["total"].as_f64().unwrap(),
        );
        assert_eq!(plan["cost_unit"], "steps");
        assert_eq!(total, 6.0, "{plan}");
        assert_eq!(cp, 3.0, "{plan}");
        assert!(makespan >= cp && makespan >= total / n as f64, "{plan}");
        if n == 1 {
            assert_eq!(makespan, total);
        }
        if n >= 3 {
            // Enough builders: the critical path alone.
            assert_eq!(makespan, cp, "{plan}");
        }
    }
    // The same file gives the same plan, byte for byte.
    let a = succeed(
        rbk(&store)
            .args(["plan", "--format", "json", "--shards", "3"])
            .arg(&file),
    );
    let b = succeed(
        rbk(&store)
            .args(["plan", "--format", "json", "--shards", "3"])
            .arg(&file),
    );
    assert_eq!(a.stdout, b.stdout);
    // For people: each shard, and the critical path.
    let text = succeed(rbk(&store).args(["plan", "--shards", "2"]).arg(&file));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("shard 1/2") && text.contains("shard 2/2"),
        "{text}"
    );
    assert!(
        text.contains("critical path 3 steps: base@linux/amd64 → app"),
        "{text}"
    );
}

#[test]
fn a_saved_plan_is_checked_against_the_file_and_the_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let store = dir.path().join("store");
    let file = dir.path().join("rbk.toml");
    let plan = dir.path().join("plan.json");
    succeed(
        rbk(&store)
            .args(["plan", "--format", "json", "--shards", "2", "-o"])
            .arg(&plan)
            .arg(&file),
    );
    // Read back: the same document.
    let again = succeed(
        rbk(&store)
            .args(["plan", "--format", "json", "--from"])
            .arg(&plan),
    );
    assert_eq!(again.stdout, std::fs::read(&plan).unwrap());
    // Bad shard values are refused before any work.
    for bad in ["0/2", "3/2", "2", "a/b"] {
        let out = rbk(&store)
            .args(["build", "--shard", bad])
            .arg(&file)
            .output()
            .unwrap();
        fails_with(&out, "invalid --shard");
    }
    let out = rbk(&store)
        .args(["build", "--shard", "1/3", "--plan"])
        .arg(&plan)
        .arg(&file)
        .output()
        .unwrap();
    fails_with(&out, "--shard asks for 3 shards and the plan");
    // The file changed since the plan was made.
    std::fs::write(
        dir.path().join("solo.Dockerfile"),
        "FROM localhost/busybox:latest\nARG N\nRUN echo other$N > /solo\n",
    )
    .unwrap();
    let out = rbk(&store)
        .args(["build", "--shard", "1/2", "--plan"])
        .arg(&plan)
        .arg(&file)
        .output()
        .unwrap();
    fails_with(&out, "was made for another version of");
    // A flag the emitted jobs would not pass on is refused, not lost.
    let out = rbk(&store)
        .args([
            "plan",
            "--format",
            "github",
            "--cache-ref",
            "r.example/c:1",
            "--set",
            "*.args.N=3",
        ])
        .arg(&file)
        .output()
        .unwrap();
    fails_with(&out, "--set is not carried into the emitted pipeline");
    // Not a plan: file, line and column.
    std::fs::write(&plan, "{\n  \"version\": 1,\n  \"oops\": true\n}\n").unwrap();
    let out = rbk(&store)
        .args(["plan", "--from"])
        .arg(&plan)
        .output()
        .unwrap();
    fails_with(&out, &format!("{}:3:", plan.display()));
}

/// `rbk build FILE --shard I/N` with the registry cache `cache` and
/// flags.
fn shard(store: &Path, file: &Path, which: &str, reg: &Registry, extra: &[&str]) -> Command {
    let cache = format!("{}/fleet/cache:main", reg.host);
    let mut c = rbk(store);
    c.args([
        "build",
        "--progress",
        "plain",
        "--network",
        "none",
        "--shard",
        which,
    ])
    .arg(file)
    .args(["--insecure-registry", &reg.host])
    .args(["--cache-from", &format!("type=registry,ref={cache}")])
    .args(["--cache-to", &format!("type=registry,ref={cache},mode=max")])
    .args(extra)
    .env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

/// The image ids of a build's summary lines (`NAME  ID  TAGS`).
fn ids(out: &std::process::Output) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = stdout(out)
        .lines()
        .chain(stderr(out).lines())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, id) = (w.next()?, w.next()?);
            (id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (name.to_string(), id.to_string()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn two_shards_share_one_graph_through_the_registry() {
    let test = "two_shards_share_one_graph_through_the_registry";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let Some((dir, store1, ctx)) = busybox_and_context(test, &[]) else {
        return;
    };
    fixture(&ctx);
    let [store2, store3] = same_base(&store1, dir.path());
    let file = ctx.join("rbk.toml");
    let plan = dir.path().join("plan.json");
    succeed(
        rbk(&store1)
            .args(["plan", "--format", "json", "--shards", "2", "-o"])
            .arg(&plan)
            .arg(&file),
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    let on = |target: &str| {
        units(&doc)
            .into_iter()
            .find(|u| u.0.starts_with(&format!("{target}@")))
            .unwrap()
            .1
    };
    // The shards run at once; the one whose targets are built on the
    // other's base waits for it instead of building it.
    let meta = |i: usize| dir.path().join(format!("m{i}.json"));
    let plan_arg = plan.to_str().unwrap();
    let [a, b] = run_two_shards(
        [&store1, &store2],
        &file,
        &reg,
        plan_arg,
        [meta(1), meta(2)],
    );
    // Each RUN ran once over both shards: 2 base steps + 2 apps + 2 solos.
    let runs =
        |o: &std::process::Output| stderr(o).lines().filter(|l| l.contains(" DONE ")).count();
    assert_eq!(
        runs(&a) + runs(&b),
        6,
        "{}\n----\n{}",
        stderr(&a),
        stderr(&b)
    );
    let base_shard = on("base");
    let other = if base_shard == 1 { &b } else { &a };
    let other_meta = meta(if base_shard == 1 { 2 } else { 1 });
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other_meta).unwrap()).unwrap();
    let report = &m["rbk.shard"];
    // The split puts an app on the other shard than the base (two shards,
    // three units built on one base): that shard waits for the base.
    assert!(
        on("app1") != base_shard || on("app2") != base_shard,
        "every app on the base's shard: {doc}"
    );
    // The base's last step at least was waited for (the first may be in
    // the registry before the other shard asks for it).
    assert!(
        report["waited"].as_u64().unwrap() >= 1,
        "{m}\n{}",
        stderr(other)
    );
    assert_eq!(report["took_over"], 0, "{m}");
    check_summary(&store1, plan_arg, &meta(1), &meta(2));
    same_as_one_machine(&store3, &file, &[&a, &b]);
    durations_beside_the_cache(&dir.path().join("planner"), &reg, &file);
    drop(dir);
}

/// Two more stores, each with `store`'s busybox loaded (the same base
/// image id, as pulled from one registry).
fn same_base(store: &Path, dir: &Path) -> [std::path::PathBuf; 2] {
    let saved = dir.join("busybox.tar");
    succeed(
        rbk(store)
            .args(["save", "localhost/busybox:latest", "-o"])
            .arg(&saved),
    );
    let stores = ["store2", "store3"].map(|s| dir.join(s));
    for s in &stores {
        succeed(rbk(s).arg("load").arg("-i").arg(&saved));
    }
    stores
}

/// The shards' durations went beside the cache: a plan made from it (in
/// a store of its own) counts seconds.
fn durations_beside_the_cache(planner: &Path, reg: &Registry, file: &Path) {
    let cache = format!("{}/fleet/cache:main", reg.host);
    let out = succeed(
        rbk(planner)
            .args([
                "plan",
                "--format",
                "json",
                "--shards",
                "2",
                "--insecure-registry",
                &reg.host,
                "--cache-ref",
                &cache,
            ])
            .arg(file),
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["cost_unit"], "seconds", "{p}\n{}", stderr(&out));
}

/// Shards 1/2 and 2/2 of `file` following `plan`, at once, each on its
/// store and writing its metadata file; both must succeed.
fn run_two_shards(
    stores: [&Path; 2],
    file: &Path,
    reg: &Registry,
    plan: &str,
    meta: [std::path::PathBuf; 2],
) -> [std::process::Output; 2] {
    let flags = ["--plan", plan, "--shard-wait", "60s", "--metadata-file"];
    let mut first = shard(stores[0], file, "1/2", reg, &flags);
    first.arg(&meta[0]);
    let mut second = shard(stores[1], file, "2/2", reg, &flags);
    second.arg(&meta[1]);
    let a = first.spawn_output();
    let b = second.output().unwrap();
    let a = a.join().unwrap().unwrap();
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", stderr(o));
    }
    [a, b]
}

/// A one-machine build of `file` in a fresh `store` makes the images the
/// shards made (`outs`), the base target aside (a shard's own).
fn same_as_one_machine(store: &Path, file: &Path, outs: &[&std::process::Output]) {
    let one = succeed(
        rbk(store)
            .args(["build", "--progress", "plain", "--network", "none"])
            .arg(file)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let mut fleet: Vec<(String, String)> = outs.iter().flat_map(|o| ids(o)).collect();
    fleet.sort();
    fleet.retain(|(n, _)| n != "base");
    let mut single = ids(&one);
    single.retain(|(n, _)| n != "base");
    assert_eq!(fleet.len(), 4, "{fleet:?}");
    assert_eq!(fleet, single);
}

/// `rbk plan --summary` of two shards' metadata files: every unit built;
/// with the second shard's file missing, its units failed.
fn check_summary(store: &Path, plan: &str, m1: &Path, m2: &Path) {
    let sum = succeed(
        rbk(store)
            .args(["plan", "--from", plan, "--summary"])
            .arg(m1)
            .arg(m2),
    );
    assert!(
        stdout(&sum).ends_with("5 built, 0 reused, 0 failed\n"),
        "{}",
        stdout(&sum)
    );
    let half = rbk(store)
        .args(["plan", "--from", plan, "--summary"])
        .arg(m1)
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(1), "{}", stdout(&half));
    assert!(
        stdout(&half).contains("FAILED  solo1@linux/amd64"),
        "{}",
        stdout(&half)
    );
}

#[test]
fn a_shard_whose_registry_does_not_answer_fails_at_once() {
    let test = "a_shard_whose_registry_does_not_answer_fails_at_once";
    let Some((dir, store, ctx)) = busybox_and_context(test, &[]) else {
        return;
    };
    fixture(&ctx);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let cache = format!("{host}/fleet/cache:main");
    let started = std::time::Instant::now();
    let out = rbk(&store)
        .args([
            "build",
            "--network",
            "none",
            "--shard",
            "1/2",
            "--insecure-registry",
            &host,
        ])
        .args(["--cache-from", &format!("type=registry,ref={cache}")])
        .args(["--cache-to", &format!("type=registry,ref={cache},mode=max")])
        .arg(ctx.join("rbk.toml"))
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    fails_with(&out, "needs the shared registry cache");
    assert!(stderr(&out).contains(&host), "{}", stderr(&out));
    // Without a registry cache at all, the shard says what it needs.
    let out = rbk(&store)
        .args(["build", "--network", "none", "--shard", "1/2"])
        .arg(ctx.join("rbk.toml"))
        .output()
        .unwrap();
    fails_with(&out, "--cache-from type=registry");
    drop(dir);
}

/// Runs a command on another thread, giving its output when joined.
trait SpawnOutput {
    fn spawn_output(self) -> std::thread::JoinHandle<std::io::Result<std::process::Output>>;
}

impl SpawnOutput for Command {
    fn spawn_output(mut self) -> std::thread::JoinHandle<std::io::Result<std::process::Output>> {
        std::thread::spawn(move || self.output())
    }
}

#[test]
fn recorded_durations_balance_the_split() {
    let test = "recorded_durations_balance_the_split";
    let Some((dir, store, ctx)) = busybox_and_context(test, &[]) else {
        return;
    };
    let mut toml = String::from("[target.heavy]\ndockerfile = \"heavy.Dockerfile\"\n");
    for i in 1..=3 {
        toml.push_str(&format!(
            "[target.light{i}]\ndockerfile = \"light.Dockerfile\"\nargs = {{ N = \"{i}\" }}\n"
        ));
    }
    write(
        &ctx,
        &[
            ("rbk.toml", toml.as_str()),
            (
                "heavy.Dockerfile",
                "FROM localhost/busybox:latest\nRUN sleep 2 && echo heavy > /h\n",
            ),
            (
                "light.Dockerfile",
                "FROM localhost/busybox:latest\nARG N\nRUN echo light$N > /l\n",
            ),
        ],
    );
    let file = ctx.join("rbk.toml");
    // Without figures every step counts 1: two and two.
    let plan = plan_json(&store, &file, "2");
    assert_eq!(plan["cost_unit"], "steps");
    let count =
        |plan: &serde_json::Value, shard: u64| units(plan).iter().filter(|u| u.1 == shard).count();
    assert_eq!((count(&plan, 1), count(&plan, 2)), (2, 2), "{plan}");
    // A build records what each step took: the heavy target gets a shard
    // of its own, the three light ones share the other.
    succeed(rbk(&store).args(["build", "--network", "none"]).arg(&file));
    let plan = plan_json(&store, &file, "2");
    assert_eq!(plan["cost_unit"], "seconds", "{plan}");
    let heavy = units(&plan)
        .into_iter()
        .find(|u| u.0.starts_with("heavy@"))
        .unwrap();
    assert_eq!(count(&plan, heavy.1), 1, "{plan}");
    assert!(plan["makespan"].as_f64().unwrap() >= 2.0, "{plan}");
    assert_eq!(plan["critical"][0], "heavy@linux/amd64", "{plan}");
    drop(dir);
}

#[test]
fn an_image_pushed_after_its_cache_mounts_the_layers_it_shares() {
    let test = "an_image_pushed_after_its_cache_mounts_the_layers_it_shares";
    let Some(reg) = Registry::start_logged(test) else {
        return;
    };
    let Some((dir, store, ctx)) = busybox_and_context(
        test,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN head -c 300000 /dev/urandom > /r\n",
        )],
    ) else {
        return;
    };
    let cache = format!("{}/fleet/cache:main", reg.host);
    let tag = format!("{}/fleet/app:1", reg.host);
    succeed(
        rbk(&store)
            .args([
                "build",
                "--network",
                "none",
                "--insecure-registry",
                &reg.host,
                "--push",
                "-t",
                &tag,
            ])
            .args(["--cache-to", &format!("type=registry,ref={cache},mode=max")])
            .arg(&ctx),
    );
    // The RUN's layer went up once, with the cache; the image's push
    // mounted it from the cache's repository instead of sending it again.
    let requests = reg.requests();
    let uploads_to_app: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("PUT /v2/fleet/app/blobs/uploads/"))
        .collect();
    let mounts: Vec<&String> = requests
        .iter()
        .filter(|r| {
            r.starts_with("POST /v2/fleet/app/blobs/uploads/?mount=")
                && r.contains("from=fleet%2Fcache")
        })
        .collect();
    assert!(!mounts.is_empty(), "{requests:#?}");
    // What was mounted was not sent as well (the base's layer and the
    // config, which the cache does not hold, are).
    for m in &mounts {
        let digest = m.split("mount=").nth(1).unwrap().split('&').next().unwrap();
        assert!(
            !uploads_to_app
                .iter()
                .any(|u| u.ends_with(&format!("digest={digest}"))),
            "{digest} mounted and uploaded: {requests:#?}"
        );
    }
    drop(dir);
}
