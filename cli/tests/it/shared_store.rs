//! Many `rbk` processes on one store: concurrent builds of one Dockerfile
//! run each step once; a mix of every command, round after round, leaves
//! every command successful and the store sound; a SIGKILLed process
//! blocks nobody and corrupts nothing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::build::{rbk, store_with_busybox, write};
use crate::cache::Registry;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `steps run` from a build's summary line.
fn steps_run(o: &Output) -> usize {
    let t = text(o);
    let line = t
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no summary line in:\n{t}"));
    // "built 1 image in 0.06s: 2 steps run, 0 cached"
    line.split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the step count of {line:?}"))
}

fn image_id(store: &Path, name: &str) -> String {
    let out = rbk(store)
        .args(["images", "-q", "--no-trunc", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `rbk system check --format json` of `store`: (exit code, report).
fn check(store: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = rbk(store)
        .args(["system", "check", "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{}", text(&out)));
    (out.status.code().unwrap_or(-1), report)
}

fn findings(report: &serde_json::Value, severity: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == severity)
        .map(|f| format!("{}: {}", f["subject"], f["problem"]))
        .collect()
}

/// The running (not zombie) slirp4netns processes whose parent is
/// `parent`.
fn slirps_of(parent: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent = parent.to_string();
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            let mut f = rest.split(' ');
            let (state, ppid) = (f.next(), f.next());
            comm.ends_with("(slirp4netns") && state != Some("Z") && ppid == Some(&parent)
        })
        .collect()
}

/// Asserts that `slirps` (a killed build's user-mode networks) are gone
/// within 3 s: slirp4netns' exit fd closes with rbk.
fn no_slirp_left(slirps: &[u32]) {
    let running = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|s| s.split_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')))
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let left = loop {
        let left: Vec<u32> = slirps.iter().copied().filter(running).collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(left.is_empty(), "slirp4netns left running: {left:?}");
}

fn spawn_build(store: &Path, ctx: &Path, tag: &str) -> Child {
    rbk(store)
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_builds_of_one_dockerfile_run_each_step_once() {
    let Some(dir) = store_with_busybox("concurrent_builds_of_one_dockerfile_run_each_step_once")
    else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM localhost/busybox:latest\nRUN sleep 1 && echo built > /r.txt\nCOPY f.txt /f.txt\n",
            ),
            ("f.txt", "hello\n"),
        ],
    );
    let children: Vec<Child> = (0..4)
        .map(|i| spawn_build(&store, &ctx, &format!("t{i}")))
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", text(o));
    }
    let ran: usize = outs.iter().map(steps_run).sum();
    assert_eq!(ran, 2, "RUN and COPY must each run once in all:\n{outs:#?}");
    assert!(
        outs.iter()
            .any(|o| text(o).contains("waiting for another rbk process")),
        "nobody waited: the builds did not overlap"
    );
    let ids: Vec<String> = (0..4).map(|i| image_id(&store, &format!("t{i}"))).collect();
    assert!(
        ids.iter().all(|id| id == &ids[0] && !id.is_empty()),
        "{ids:?}"
    );
    let (code, report) = check(&store, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// Runs `rbk ARGS` in `store` and fails the test, naming the process and
/// round, unless it succeeds.
fn must(store: &Path, who: &str, args: &[&str]) -> Output {
    let out = rbk(store).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{who}: rbk {args:?} failed:\n{}",
        text(&out)
    );
    out
}

/// One worker's rounds: builds of a shared and an own Dockerfile, import,
/// save, load, tag, inspect, images, push, pull, rmi and prune.
fn worker(
    store: PathBuf,
    base: PathBuf,
    shared: PathBuf,
    own: PathBuf,
    reg: Option<String>,
    w: usize,
    rounds: usize,
) {
    let s = store.as_path();
    for r in 0..rounds {
        let who = format!("worker {w} round {r}");
        let tag = |what: &str| format!("w{w}/{what}:r{r}");
        // The own context changes every round: new steps to run.
        write(&own, &[("stamp.txt", &format!("{w}-{r}\n"))]);
        must(
            s,
            &who,
            &[
                "build",
                "--progress",
                "plain",
                "-t",
                &tag("shared"),
                shared.to_str().unwrap(),
            ],
        );
        must(
            s,
            &who,
            &[
                "build",
                "--progress",
                "plain",
                "-t",
                &tag("own"),
                own.to_str().unwrap(),
            ],
        );
        must(
            s,
            &who,
            &["import", base.to_str().unwrap(), &tag("imported")],
        );
        let archive = own.join(format!("save-{r}.tar"));
        must(
            s,
            &who,
            &["save", "-o", archive.to_str().unwrap(), &tag("own")],
        );
        must(s, &who, &["rmi", &tag("own")]);
        must(s, &who, &["load", "-q", "-i", archive.to_str().unwrap()]);
        std::fs::remove_file(&archive).unwrap();
        must(s, &who, &["tag", &tag("own"), &tag("again")]);
        must(s, &who, &["inspect", &tag("again")]);
        must(s, &who, &["images"]);
        if let Some(host) = &reg {
            let remote = format!("{host}/w{w}/app:r{r}");
            must(s, &who, &["push", "-q", &tag("shared"), &remote]);
            must(s, &who, &["pull", "-q", &remote]);
            must(s, &who, &["rmi", &remote]);
        }
        must(
            s,
            &who,
            &["rmi", &tag("imported"), &tag("again"), &tag("own")],
        );
        must(s, &who, &["prune"]);
        if r == rounds / 2 {
            must(s, &who, &["prune", "--all"]);
        }
    }
}

#[test]
fn a_mix_of_every_command_in_many_processes_keeps_the_store_sound() {
    let test = "a_mix_of_every_command_in_many_processes_keeps_the_store_sound";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let reg = Registry::start(test);
    let store = dir.path().join("store");
    let base = dir.path().join("busybox.tar");
    let shared = dir.path().join("shared");
    write(
        &shared,
        &[
            (
                "Dockerfile",
                "FROM localhost/busybox:latest\nRUN echo shared > /s.txt\nCOPY a.txt /a.txt\nRUN cat /a.txt /s.txt > /both.txt\n",
            ),
            ("a.txt", "a\n"),
        ],
    );
    const WORKERS: usize = 6;
    const ROUNDS: usize = 5;
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let own = dir.path().join(format!("own{w}"));
            write(
                &own,
                &[(
                    "Dockerfile",
                    &format!(
                        "FROM localhost/busybox:latest\nRUN echo {w} > /w.txt\nCOPY stamp.txt /stamp.txt\nRUN cat /stamp.txt /w.txt > /out.txt\n"
                    ),
                )],
            );
            let args = (store.clone(), base.clone(), shared.clone(), own, reg.as_ref().map(|r| r.host.clone()));
            std::thread::spawn(move || worker(args.0, args.1, args.2, args.3, args.4, w, ROUNDS))
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        if let Err(e) = h.join() {
            failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a worker panicked".into()),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let (code, report) = check(&store, &[]);
    assert_eq!(code, 0, "the store is not sound after the mix: {report:#}");
    assert!(report["blobs_verified"].as_u64().unwrap() > 0);
    eprintln!(
        "stress: {WORKERS} processes x {ROUNDS} rounds, {} commands each round{}",
        if reg.is_some() { 13 } else { 10 },
        if reg.is_some() {
            " (with push/pull)"
        } else {
            " (no registry: push/pull skipped)"
        }
    );
}

#[test]
fn a_sigkilled_build_blocks_nobody_and_corrupts_nothing() {
    let Some(dir) = store_with_busybox("a_sigkilled_build_blocks_nobody_and_corrupts_nothing")
    else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN sleep 3 && echo slow > /slow.txt\nRUN echo after > /after.txt\n",
        )],
    );
    // The victim takes the step's lock and is killed while it runs it.
    let mut victim = spawn_build(&store, &ctx, "victim");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store
        .join("locks")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
    {
        assert!(
            Instant::now() < deadline,
            "the victim never took a step lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its RUN's network (the default one) is up by now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let slirps = loop {
        let s = slirps_of(victim.id());
        if !s.is_empty() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !slirps.is_empty(),
        "the victim's RUN started no slirp4netns"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    no_slirp_left(&slirps);
    // Its lock dies with it: the next build runs the step itself.
    let started = Instant::now();
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "survivor"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(steps_run(&out), 2, "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Nothing is damaged; what the victim left is leftover, and a repair
    // (or the sweeps of later commands) removes it.
    let (_, report) = check(&store, &[]);
    assert!(findings(&report, "damaged").is_empty(), "{report:#}");
    let (_, repaired) = check(&store, &["--repair"]);
    assert!(findings(&repaired, "damaged").is_empty(), "{repaired:#}");
    let (code, after) = check(&store, &[]);
    assert_eq!(code, 0, "{after:#}");
    assert!(findings(&after, "leftover").is_empty(), "{after:#}");
    let run = rbk(&store)
        .args(["run", "--rm", "survivor", "cat", "/slow.txt", "/after.txt"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "slow\nafter\n",
        "{}",
        text(&run)
    );
}

#[test]
fn builds_killed_at_any_point_leave_no_damage_and_block_no_bystander() {
    let test = "builds_killed_at_any_point_leave_no_damage_and_block_no_bystander";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    for (i, delay_ms) in [0u64, 15, 40, 80, 150, 300, 600].into_iter().enumerate() {
        // New steps every time: a fresh stamp misses the cache.
        write(
            &ctx,
            &[
                (
                    "Dockerfile",
                    "FROM localhost/busybox:latest\nCOPY stamp.txt /stamp.txt\nRUN dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null\nRUN cat /stamp.txt > /copy.txt\n",
                ),
                ("stamp.txt", &format!("{i}\n")),
            ],
        );
        let mut victim = spawn_build(&store, &ctx, "victim");
        let bystander = spawn_build(&store, &ctx, &format!("bystander{i}"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = victim.kill();
        victim.wait().unwrap();
        let out = bystander.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "bystander {i} (victim killed after {delay_ms} ms):\n{}",
            text(&out)
        );
        let (_, report) = check(&store, &["--quick"]);
        assert!(
            findings(&report, "damaged").is_empty(),
            "after a kill at {delay_ms} ms: {report:#}"
        );
    }
    let (_, report) = check(&store, &["--repair"]);
    assert!(findings(&report, "damaged").is_empty(), "{report:#}");
    let (code, after) = check(&store, &[]);
    assert_eq!(code, 0, "{after:#}");
}

#[test]
fn check_names_damage_and_repair_removes_it() {
    let Some(dir) = store_with_busybox("check_names_damage_and_repair_removes_it") else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN echo x > /x\n",
        )],
    );
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "app"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (code, report) = check(&store, &[]);
    assert_eq!(code, 0, "{report:#}");

    // Damage: a layer blob with other bytes, a snapshot without its
    // metadata, a cache record that does not parse; leftovers: a staging
    // file of a dead process and a lock file nobody holds.
    let inspect = rbk(&store).args(["inspect", "app"]).output().unwrap();
    let img: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let layer_ids = img[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layer_ids.len(), 2);
    let manifest_layers = manifest_layers(&store, "app");
    let top = store
        .join("blobs/sha256")
        .join(manifest_layers[1].trim_start_matches("sha256:"));
    std::fs::write(&top, b"not the layer").unwrap();
    let snaps: Vec<PathBuf> = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(!snaps.is_empty());
    let half = store.join("snapshots").join("0".repeat(64));
    std::fs::create_dir_all(half.join("fs")).unwrap();
    let record = std::fs::read_dir(store.join("cache/records"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&record, b"{ not json").unwrap();
    std::fs::create_dir_all(store.join("snapshots/.tmp/999999999-1-1")).unwrap();
    std::fs::create_dir_all(store.join("locks")).unwrap();
    std::fs::write(store.join("locks/step-dead.lock"), b"").unwrap();

    let out = rbk(&store).args(["system", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    for needle in [
        "damaged: sha256:",
        "damaged: image docker.io/library/app:latest",
        &format!("snapshots/{}", "0".repeat(64)),
        "cache record:",
    ] {
        assert!(t.contains(needle), "check did not name {needle:?}:\n{t}");
    }
    dead_leftovers_swept(&store, &t);
    let (code, repaired) = check(&store, &["--repair"]);
    assert_eq!(code, 0, "{repaired:#}");
    let (code, after) = check(&store, &[]);
    assert_eq!(code, 0, "{after:#}");
    assert!(!top.exists(), "the corrupt blob must go");
    assert!(!half.exists());
    // The broken image is gone; the base it was built on is intact and a
    // rebuild makes the image again.
    let images = rbk(&store).args(["images", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&images.stdout).lines().count(), 1);
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "app"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (code, report) = check(&store, &[]);
    assert_eq!(code, 0, "{report:#}");
}

/// What dead processes left (as planted above) was swept by the next
/// command to open the store, the check included, without `--repair`.
fn dead_leftovers_swept(store: &Path, t: &str) {
    for gone in ["snapshots/.tmp/999999999-1-1", "locks/step-dead.lock"] {
        assert!(!store.join(gone).exists(), "{gone} is left:\n{t}");
    }
}

/// The layer digests of NAME's manifest, from `rbk save`'s index: read
/// through the store's index.json instead, which is simpler.
fn manifest_layers(store: &Path, name: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.contains(&format!("/{name}:")))
        })
        .unwrap();
    let digest = desc["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("blobs/sha256").join(digest)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// A cache record keeps its snapshot, and so that snapshot's parents: the
/// base image's snapshot outlives the image when a record is built on it
/// (the stress test above caught a prune taking it when no build held it).
#[test]
fn prune_keeps_the_parents_of_the_snapshots_it_keeps() {
    let Some(dir) = store_with_busybox("prune_keeps_the_parents_of_the_snapshots_it_keeps") else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN echo one > /one\n",
        )],
    );
    let ctx_s = ctx.display().to_string();
    must(&store, "build", &["build", "-t", "p:1", &ctx_s]);
    // Neither the base nor the built image is kept; the step's record is.
    must(&store, "rmi", &["rmi", "p:1", "localhost/busybox:latest"]);
    must(&store, "prune", &["prune"]);
    let (code, report) = check(&store, &[]);
    assert_eq!(code, 0, "a kept snapshot lost its parent: {report:#}");
}
