//! A fleet on one machine, end to end (issue 26, item 4): four builders,
//! each in its own network namespace with its own store and HOME, reach
//! only a registry in a namespace of its own, over a bridge the test makes
//! (10.203.0.0/24, nothing else). Each runs the very script `rbk plan
//! --format k8s` emits for its pod, with its index in
//! `JOB_COMPLETION_INDEX` as the Job controller gives it. The registry
//! speaks plain HTTP, so `RBK_INSECURE_REGISTRIES` names it (where a pod
//! would have TLS); a shard killed and run again keeps its store, as a
//! rerun on a self-hosted runner would (a Kubernetes retry starting cold
//! is the easier case: it has nothing to recover).
//!
//! RUN executions are counted from `--progress rawjson`: each RUN of the
//! graph prints `RAN <target>` itself, so a step that really ran leaves
//! that line in a `log` event whatever rbk believes it did, and its `done`
//! event is counted beside it. Plain progress would need the `#N` numbers
//! of each builder's own graph matched to step texts; the JSON events name
//! the step and are read without guessing at line shapes.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::build::{rbk, store_with_busybox, succeed};

const REGISTRY: &str = "/usr/bin/docker-registry";
/// The registry's address, in its own namespace; builders are .2 to .5.
const REG: &str = "10.203.0.1:5000";
const EPOCH: &str = "1700000000";
const SHARDS: usize = 4;
/// Longest a builder may take before the test calls it hung.
const LIMIT: Duration = Duration::from_secs(60);

/// The graph: a base, three targets on it, two on those, two on their own.
/// `(target, FROM, seconds the RUN sleeps)`; a FROM that is a target is
/// given as a `target:` context.
const GRAPH: [(&str, &str, u32); 8] = [
    ("base", "", 1),
    ("mid1", "base", 1),
    ("mid2", "base", 1),
    ("mid3", "base", 1),
    ("top1", "mid1", 1),
    ("top2", "mid2", 1),
    ("solo1", "", 1),
    ("solo2", "", 1),
];

/// The namespaces, links and processes a test made, all removed on drop
/// (also when an assertion failed half way).
struct Lab {
    tag: String,
    /// Holds `store` (busybox imported), `bb.tar` (it saved) and one
    /// directory a builder.
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    registry: RefCell<Option<Child>>,
    /// Process groups of builders still running.
    groups: RefCell<Vec<u32>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pgid in self.groups.borrow().iter() {
            kill_group(*pgid);
        }
        if let Some(mut reg) = self.registry.borrow_mut().take() {
            let _ = reg.kill();
            let _ = reg.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    succeed(Command::new("ip").args(args));
}

/// Why namespaces cannot be made here, if they cannot.
fn cannot_make_netns(probe: &str) -> Option<String> {
    let made = Command::new("ip")
        .args(["netns", "add", probe])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        return Some("`ip netns add` failed (needs root and iproute2)".into());
    }
    let _ = Command::new("ip").args(["netns", "del", probe]).status();
    None
}

impl Lab {
    /// The namespaces (see [`Lab::ns`]), the registry running, and busybox
    /// saved; None (loudly) where this machine cannot.
    fn new(test: &str) -> Option<Lab> {
        let bb = store_with_busybox(test)?;
        if !Path::new(REGISTRY).exists() {
            eprintln!("SKIPPED {test}: {REGISTRY} is missing (apt-get install docker-registry)");
            return None;
        }
        let tag = format!("rbkfl{}", std::process::id());
        if let Some(why) = cannot_make_netns(&format!("{tag}probe")) {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let mut lab = Lab {
            tag,
            dir: bb,
            namespaces: Vec::new(),
            registry: RefCell::new(None),
            groups: RefCell::new(Vec::new()),
        };
        lab.make_network();
        lab.start_registry();
        succeed(
            rbk(&lab.dir.path().join("store"))
                .args(["save", "-o"])
                .arg(lab.path("bb.tar"))
                .arg("localhost/busybox:latest"),
        );
        Some(lab)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The namespace `name` of this run: `reg`, `b1` to `b4`, `x` (no
    /// route) or `y` (the registry's address does not answer).
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.tag)
    }

    /// Builder `i`'s namespace (1-based).
    fn builder(&self, i: usize) -> String {
        self.ns(&format!("b{i}"))
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A bridge at 10.203.0.1 in the registry's namespace and one veth
    /// pair a builder, its outer end on the bridge. Every link is made
    /// inside a namespace of the test's: the host's own gets none.
    fn make_network(&mut self) {
        let reg = self.add_ns("reg");
        ip(&["-n", &reg, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &reg, "addr", "add", "10.203.0.1/24", "dev", "br0"]);
        ip(&["-n", &reg, "link", "set", "br0", "up"]);
        for i in 1..=SHARDS {
            let b = self.add_ns(&format!("b{i}"));
            let outer = format!("v{i}");
            ip(&[
                "-n", &reg, "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns",
                &b,
            ]);
            ip(&["-n", &reg, "link", "set", &outer, "master", "br0", "up"]);
            let addr = format!("10.203.0.{}/24", i + 1);
            ip(&["-n", &b, "addr", "add", &addr, "dev", "eth0"]);
            ip(&["-n", &b, "link", "set", "eth0", "up"]);
        }
        self.add_ns("x");
        // On the registry's segment, but its link is not on the bridge:
        // the registry's namespace answers ARP for 10.203.0.1 on it, takes
        // the SYN, and routes the SYN-ACK to the bridge, where nobody gets
        // it. Connections hang as behind a firewall dropping packets.
        let y = self.add_ns("y");
        ip(&[
            "-n", &reg, "link", "add", "vy", "type", "veth", "peer", "name", "eth0", "netns", &y,
        ]);
        ip(&["-n", &reg, "link", "set", "vy", "up"]);
        ip(&["-n", &y, "addr", "add", "10.203.0.6/24", "dev", "eth0"]);
        ip(&["-n", &y, "link", "set", "eth0", "up"]);
    }

    /// `docker-registry` on 10.203.0.1:5000 inside its namespace.
    fn start_registry(&mut self) {
        let cfg = self.path("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {REG}\n",
                self.path("registry").display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("reg"), REGISTRY, "serve"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        *self.registry.borrow_mut() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.manifest("v2", "").is_none() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_registry(&self) {
        if let Some(mut reg) = self.registry.borrow_mut().take() {
            reg.kill().unwrap();
            reg.wait().unwrap();
        }
    }

    /// The digest the registry gives for `repo:tag`, asked from builder 1's
    /// namespace (`v2`, "" asks whether it answers at all).
    fn manifest(&self, repo: &str, tag: &str) -> Option<String> {
        let url = if repo == "v2" {
            format!("http://{REG}/v2/")
        } else {
            format!("http://{REG}/v2/{repo}/manifests/{tag}")
        };
        let out = Command::new("ip")
            .args(["netns", "exec", &self.builder(1), "curl", "-fsSI", "-m", "5"])
            .args([
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            ])
            .arg(url)
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        Some(
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("docker-content-digest")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default(),
        )
    }

    /// The image manifest `repo:tag` names: itself, or the first entry
    /// of the index it names (an image pushed with its provenance).
    fn image_manifest(&self, repo: &str, tag: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.builder(1), "curl", "-fs", "-m", "5"])
            .args([
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            ])
            .arg(format!("http://{REG}/v2/{repo}/manifests/{tag}"))
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
        match doc["manifests"][0]["digest"].as_str() {
            Some(d) => Some(d.to_string()),
            None => self.manifest(repo, tag),
        }
    }

    /// A new store (with the one saved busybox loaded, so every store has
    /// the same base image id) and HOME, under `name`.
    fn store(&self, name: &str) -> (PathBuf, PathBuf) {
        let (store, home) = (
            self.path(&format!("{name}/store")),
            self.path(&format!("{name}/home")),
        );
        std::fs::create_dir_all(&home).unwrap();
        succeed(
            rbk(&store)
                .args(["load", "-q", "-i"])
                .arg(self.path("bb.tar")),
        );
        (store, home)
    }
}

/// Writes the graph into `ctx`: an `rbk.toml` whose images are tagged
/// `REG/PREFIX/TARGET:1`, and one Dockerfile a target. The base's RUN
/// sleeps `base_sleep` seconds.
fn write_graph(ctx: &Path, prefix: &str, base_sleep: u32) {
    std::fs::create_dir_all(ctx).unwrap();
    let mut toml = String::from("[group.default]\ntargets = [");
    let names: Vec<String> = GRAPH.iter().map(|(t, _, _)| format!("\"{t}\"")).collect();
    toml.push_str(&names.join(", "));
    toml.push_str("]\n");
    for (target, from, sleep) in GRAPH {
        let sleep = if target == "base" { base_sleep } else { sleep };
        let image = if from.is_empty() {
            "localhost/busybox:latest"
        } else {
            from
        };
        std::fs::write(
            ctx.join(format!("{target}.Dockerfile")),
            format!(
                "FROM {image}\nRUN echo RAN {target} && sleep {sleep} && echo {target} > /{target}\n"
            ),
        )
        .unwrap();
        toml.push_str(&format!(
            "\n[target.{target}]\ndockerfile = \"{target}.Dockerfile\"\ntags = [\"{REG}/{prefix}/{target}:1\"]\n"
        ));
        if !from.is_empty() {
            toml.push_str(&format!("contexts = {{ {from} = \"target:{from}\" }}\n"));
        }
    }
    std::fs::write(ctx.join("rbk.toml"), toml).unwrap();
}

/// A builder started: its process (group leader) and log name.
struct Pod {
    child: Child,
    log: String,
    started: Instant,
}

/// What a builder ran with and left.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// The pod's script of `rbk plan --format k8s` for `ctx` (made in builder
/// 1's namespace: it reads the durations recorded in the cache) and the
/// plan of its ConfigMap, written to `ctx/plan.json`. The script is run as
/// the kubelet would (`$$` is `$`), with the plan's mount point replaced by
/// that file and two flags added to its `rbk build`: `--network none` (the
/// RUN steps need no network, and the builders have no slirp4netns set
/// up) and rawjson progress, which the test reads.
fn emitted_script(lab: &Lab, ctx: &Path, cache: &str) -> (String, Value) {
    let out = succeed(
        Command::new("ip")
            .args(["netns", "exec", &lab.builder(1), crate::rbk_bin(), "plan"])
            .args(["rbk.toml", "--shards", &SHARDS.to_string()])
            .args(["--cache-ref", cache, "--format", "k8s"])
            // The init container's clone: the test's pods have the source.
            .args(["--git-url", "https://git.invalid/app.git"])
            .env("RBK_INSECURE_REGISTRIES", REG)
            .env_remove("RBK_ROOT")
            .current_dir(ctx),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let plan = docs[0]["data"]["plan.json"].as_str().unwrap();
    std::fs::write(ctx.join("plan.json"), plan).unwrap();
    let script = docs[1]["spec"]["template"]["spec"]["containers"][0]["command"][2]
        .as_str()
        .unwrap()
        .replace("$$", "$");
    for shape in [
        "/etc/rbk/plan/plan.json",
        "rbk build ",
        "JOB_COMPLETION_INDEX",
    ] {
        assert!(
            script.contains(shape),
            "the k8s script changed shape: {script}"
        );
    }
    let script = script
        .replace("/etc/rbk/plan/plan.json", "plan.json")
        .replace("rbk build ", "rbk build --network none --progress rawjson ");
    (script, serde_json::from_str(plan).unwrap())
}

/// Which shard the plan gives `target`.
fn shard_of(plan: &Value, target: &str) -> usize {
    plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["target"] == target)
        .and_then(|u| u["shard"].as_u64())
        .unwrap() as usize
}

impl Lab {
    /// Starts pod `index` (0-based, so shard index+1) of the script in
    /// namespace `ns`, in `ctx`, on the store and HOME of `who`; its output
    /// goes to `ctx/LOG.out` and `.err`.
    fn start(&self, ns: &str, ctx: &Path, script: &str, index: usize, who: &str, log: &str) -> Pod {
        let (store, home) = (
            self.path(&format!("{who}/store")),
            self.path(&format!("{who}/home")),
        );
        let bin_dir = Path::new(crate::rbk_bin()).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::fs::File::create(ctx.join(format!("{log}.out"))).unwrap();
        let err = std::fs::File::create(ctx.join(format!("{log}.err"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/bin/sh", "-c", script])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("RBK_ROOT", &store)
            .env("HOME", &home)
            .env("PATH", path)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("RBK_INSECURE_REGISTRIES", REG)
            .env_remove("RBK_AUTH_FILE")
            .current_dir(ctx)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap();
        self.groups.borrow_mut().push(child.id());
        Pod {
            child,
            log: log.to_string(),
            started: Instant::now(),
        }
    }

    /// Waits for `pod` (started in `ctx`) to end, at most `LIMIT` after it
    /// started.
    fn finish(&self, pod: Pod, ctx: &Path) -> Run {
        let Pod {
            mut child,
            log,
            started,
        } = pod;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > LIMIT {
                kill_group(child.id());
                let _ = child.wait();
                panic!(
                    "{log} hung for {LIMIT:?}: {}",
                    std::fs::read_to_string(ctx.join(format!("{log}.err"))).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.groups.borrow_mut().retain(|&g| g != child.id());
        let read = |ext: &str| std::fs::read_to_string(ctx.join(format!("{log}.{ext}"))).unwrap();
        Run {
            code: status.code(),
            stdout: read("out"),
            stderr: read("err"),
            took: started.elapsed(),
        }
    }

    /// Starts all four shards of `script` at once, shard I in builder I's
    /// namespace on a new store `NAMEI`.
    fn start_fleet(&self, ctx: &Path, script: &str, name: &str) -> Vec<Pod> {
        let stores: Vec<String> = (1..=SHARDS).map(|i| format!("{name}{i}")).collect();
        for who in &stores {
            self.store(who);
        }
        stores
            .iter()
            .enumerate()
            .map(|(i, who)| self.start(&self.builder(i + 1), ctx, script, i, who, who))
            .collect()
    }

    /// Runs all four shards of `script` ([`Lab::start_fleet`]); their runs,
    /// by shard.
    fn fleet(&self, ctx: &Path, script: &str, name: &str) -> Vec<Run> {
        let pods = self.start_fleet(ctx, script, name);
        pods.into_iter().map(|p| self.finish(p, ctx)).collect()
    }
}

/// A builder's rawjson progress: for each `RAN <target>` RUN, how many
/// times it said so itself (its output) and how many `done` events rbk
/// gave it.
fn runs_of(stderr: &str, said: &mut BTreeMap<String, usize>, done: &mut BTreeMap<String, usize>) {
    for line in stderr.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = ev["name"].as_str().unwrap_or_default();
        match ev["status"].as_str() {
            Some("log") => {
                for l in ev["data"].as_str().unwrap_or_default().lines() {
                    if let Some(t) = l.strip_prefix("RAN ") {
                        *said.entry(t.to_string()).or_default() += 1;
                    }
                }
            }
            Some("done") => {
                if let Some((_, rest)) = name.split_once("echo RAN ") {
                    let t = rest.split_whitespace().next().unwrap_or_default();
                    *done.entry(t.to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// The `rbk-metadata I {…}` line the k8s script prints last.
fn metadata(run: &Run) -> Value {
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("rbk-metadata "))
        .unwrap_or_else(|| panic!("no metadata line: {}\n{}", run.stdout, run.stderr));
    serde_json::from_str(line.split_once(' ').unwrap().1).unwrap()
}

/// A one-machine build of the graph in a fresh store (the same busybox,
/// the same SOURCE_DATE_EPOCH), each image then pushed as
/// `REG/one/TARGET:1`: each target's manifest digest in the store.
fn one_machine(lab: &Lab, ctx: &Path) -> BTreeMap<String, String> {
    let (store, home) = lab.store("one");
    let meta = lab.path("one.json");
    succeed(
        rbk(&store)
            .args([
                "build",
                "rbk.toml",
                "--network",
                "none",
                "--progress",
                "plain",
            ])
            .arg("--metadata-file")
            .arg(&meta)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("HOME", home)
            .current_dir(ctx),
    );
    for (target, _, _) in GRAPH {
        succeed(
            Command::new("ip")
                .args(["netns", "exec", &lab.builder(1), crate::rbk_bin()])
                .arg("--root")
                .arg(&store)
                .args(["push", "-q", &format!("{REG}/fleet/{target}:1")])
                .arg(format!("{REG}/one/{target}:1"))
                .env("RBK_INSECURE_REGISTRIES", REG),
        );
    }
    // The metadata names the manifest the registry got (as buildx): one
    // machine's images, pushed the same way, are what it is compared with.
    GRAPH
        .iter()
        .map(|(t, _, _)| {
            let d = lab.manifest(&format!("one/{t}"), "1").unwrap_or_default();
            (t.to_string(), d)
        })
        .collect()
}

/// Every RUN of the graph, once.
fn once_each() -> BTreeMap<String, usize> {
    GRAPH.iter().map(|(t, _, _)| (t.to_string(), 1)).collect()
}

/// Phases 1 and 2: the four shards build every step once between them,
/// and push the very images one machine builds.
fn every_step_once(lab: &Lab, ctx: &Path, script: &str) {
    let want = one_machine(lab, ctx);
    let started = Instant::now();
    let runs = lab.fleet(ctx, script, "f");
    eprintln!("the fleet took {:?}", started.elapsed());
    let (mut said, mut done) = (BTreeMap::new(), BTreeMap::new());
    let mut digests = BTreeMap::new();
    let mut waited = 0;
    for (i, run) in runs.iter().enumerate() {
        let shard = i + 1;
        assert_eq!(run.code, Some(0), "shard {shard}: {}", run.stderr);
        eprintln!("shard {shard} took {:?}", run.took);
        runs_of(&run.stderr, &mut said, &mut done);
        let meta = metadata(run);
        let fleet = &meta["rbk.shard"];
        assert_eq!(fleet["shard"].as_u64(), Some(shard as u64), "{meta}");
        assert_eq!(fleet["took_over"].as_u64(), Some(0), "{meta}");
        waited += fleet["waited"].as_u64().unwrap();
        for (target, image) in meta.as_object().unwrap() {
            if target == "rbk.shard" {
                continue;
            }
            // The image as pushed (its index, with its provenance, has a
            // build's times in it).
            let digest = image["containerimage.descriptors"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            let again = digests.insert(target.clone(), digest);
            assert!(again.is_none(), "{target} is on two shards");
        }
    }
    let all: String = runs.iter().map(|r| r.stderr.as_str()).collect();
    assert_eq!(said, once_each(), "RUNs that printed RAN:\n{all}");
    assert_eq!(done, once_each(), "RUNs done:\n{all}");
    assert!(waited > 0, "no shard took a step from another: {all}");
    assert_eq!(
        digests, want,
        "the fleet's images differ from one machine's"
    );
    // And the registry's tags name them.
    for (target, _, _) in GRAPH {
        let pushed = lab.image_manifest(&format!("fleet/{target}"), "1");
        let one = lab.image_manifest(&format!("one/{target}"), "1");
        assert!(pushed.as_ref().is_some_and(|d| d.starts_with("sha256:")));
        assert_eq!(pushed, one, "{target} in the registry");
    }
}

/// Phase 3: the shard that makes the base is SIGKILLed during the base's
/// RUN and started again on its store; the others, waiting on the base
/// (the default `--shard-wait` of the emitted script), go on when the
/// rerun pushes it, and every image is in the registry.
fn killed_shard_rerun(lab: &Lab) {
    let ctx = lab.path("kill");
    write_graph(&ctx, "kill", 4);
    let (script, plan) = emitted_script(lab, &ctx, &format!("{REG}/kill/cache:main"));
    let victim = shard_of(&plan, "base");
    let mut pods = lab.start_fleet(&ctx, &script, "k");
    let pod = pods.remove(victim - 1);
    let who = pod.log.clone();
    let deadline = Instant::now() + LIMIT;
    loop {
        let err = std::fs::read_to_string(ctx.join(format!("{who}.err"))).unwrap();
        let mut said = BTreeMap::new();
        runs_of(&err, &mut said, &mut BTreeMap::new());
        if said.contains_key("base") {
            break;
        }
        assert!(Instant::now() < deadline, "the base never started: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_group(pod.child.id());
    let killed = lab.finish(pod, &ctx);
    assert_eq!(killed.code, None, "not killed: {}", killed.stderr);
    let rerun = lab.start(
        &lab.builder(victim),
        &ctx,
        &script,
        victim - 1,
        &who,
        "rerun",
    );
    let rerun = lab.finish(rerun, &ctx);
    assert_eq!(rerun.code, Some(0), "the rerun: {}", rerun.stderr);
    let (mut said, mut done) = (BTreeMap::new(), BTreeMap::new());
    for run in [&killed, &rerun] {
        runs_of(&run.stderr, &mut said, &mut done);
    }
    let mut waited = 0;
    for pod in pods {
        let who = pod.log.clone();
        let run = lab.finish(pod, &ctx);
        assert_eq!(run.code, Some(0), "{who}: {}", run.stderr);
        let fleet = &metadata(&run)["rbk.shard"];
        assert_eq!(
            fleet["took_over"].as_u64(),
            Some(0),
            "{who}: {}",
            run.stderr
        );
        waited += fleet["waited"].as_u64().unwrap();
        runs_of(&run.stderr, &mut said, &mut done);
    }
    eprintln!(
        "shard {victim} killed after {:?}, rerun in {:?}; {waited} steps waited for",
        killed.took, rerun.took
    );
    assert!(waited > 0, "no shard waited on another");
    assert_eq!(
        said.get("base"),
        Some(&2),
        "the base ran once killed, once again"
    );
    assert_eq!(done.get("base"), Some(&1), "the base finished once");
    for (target, _, _) in GRAPH {
        if shard_of(&plan, target) != victim {
            assert_eq!(said.get(target), Some(&1), "{target} ran once");
        }
        let pushed = lab.manifest(&format!("kill/{target}"), "1");
        assert!(pushed.is_some_and(|d| d.starts_with("sha256:")), "{target}");
    }
}

/// Phase 3, the other way: the shard that makes the base is late, the
/// others do not wait long (`--shard-wait 2s`) and make it themselves; it
/// then comes and takes what they pushed. The images are the fleet's of
/// phase 1 (the same graph): the same digests in the registry.
fn late_shard_taken_over(lab: &Lab) {
    let ctx = lab.path("over");
    write_graph(&ctx, "over", 1);
    let (script, plan) = emitted_script(lab, &ctx, &format!("{REG}/over/cache:main"));
    let script = script.replace("rbk build ", "rbk build --shard-wait 2s ");
    let late = shard_of(&plan, "base");
    let (mut said, mut took_over) = (BTreeMap::new(), 0);
    let mut pods = Vec::new();
    for i in (1..=SHARDS).filter(|&i| i != late) {
        let who = format!("o{i}");
        lab.store(&who);
        pods.push(lab.start(&lab.builder(i), &ctx, &script, i - 1, &who, &who));
    }
    let mut runs: Vec<Run> = pods.into_iter().map(|p| lab.finish(p, &ctx)).collect();
    let who = format!("o{late}");
    lab.store(&who);
    let pod = lab.start(&lab.builder(late), &ctx, &script, late - 1, &who, &who);
    runs.push(lab.finish(pod, &ctx));
    for run in &runs {
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        took_over += metadata(run)["rbk.shard"]["took_over"].as_u64().unwrap();
        runs_of(&run.stderr, &mut said, &mut BTreeMap::new());
    }
    let last = runs.last().unwrap();
    eprintln!(
        "{took_over} steps taken over; the late shard took {:?}",
        last.took
    );
    assert!(took_over > 0, "no shard took over");
    assert!(said.contains_key("base"), "nobody made the base");
    let mut late_said = BTreeMap::new();
    runs_of(&last.stderr, &mut late_said, &mut BTreeMap::new());
    assert!(
        !late_said.contains_key("base"),
        "made again: {}",
        last.stderr
    );
    for (target, _, _) in GRAPH {
        let pushed = lab.image_manifest(&format!("over/{target}"), "1");
        let fleet = lab.image_manifest(&format!("fleet/{target}"), "1");
        assert!(pushed.is_some(), "{target} is not in the registry");
        assert_eq!(pushed, fleet, "{target} made with a take-over");
    }
}

/// Waits until the log `log` in `ctx` has `text`.
fn wait_for_log(ctx: &Path, log: &str, text: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let err = std::fs::read_to_string(ctx.join(format!("{log}.err"))).unwrap();
        if err.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "no {text:?} in {log}: {err}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts `run` failed (not hung: [`Lab::finish`] gives up after
/// `LIMIT`) with an error naming the cache ref `cache` and the flag.
fn failed_naming(run: &Run, who: &str, cache: &str) {
    eprintln!("{who}: failed in {:?}:\n{}", run.took, run.stderr);
    assert!(
        matches!(run.code, Some(c) if c != 0),
        "{who}: {}",
        run.stderr
    );
    assert!(run.stderr.contains(cache), "{who}: {}", run.stderr);
}

/// Phase 4: a shard that cannot reach its registry cache fails at once,
/// naming it: from a namespace with no route to it; from one where the
/// registry's address does not answer (`noanswer`, started with phase 1:
/// its connection attempts time out while the others build); while it
/// waits on
/// another shard's step and the registry stops; started when the
/// registry is stopped.
fn unreachable_cache(lab: &Lab, ctx: &Path, script: &str, noanswer: Pod) {
    let cache = format!("{REG}/fleet/cache:main");
    lab.store("noroute");
    let noroute = lab.start(&lab.ns("x"), ctx, script, 0, "noroute", "noroute");
    // `took` is read when a pod is waited for: the quick one first.
    for pod in [noroute, noanswer] {
        let who = pod.log.clone();
        let run = lab.finish(pod, ctx);
        failed_naming(&run, &who, &cache);
        assert!(run.stderr.contains("--cache-from"), "{}", run.stderr);
    }

    // A shard whose targets need the base, alone: it waits on the base's
    // shard, which never comes, until the registry goes away.
    let gone = lab.path("gone");
    write_graph(&gone, "gone", 1);
    let gone_cache = format!("{REG}/gone/cache:main");
    let (gone_script, plan) = emitted_script(lab, &gone, &gone_cache);
    let base = shard_of(&plan, "base");
    let waiter = GRAPH
        .iter()
        .map(|(t, _, _)| shard_of(&plan, t))
        .find(|&s| s != base)
        .unwrap();
    lab.store("waiter");
    let pod = lab.start(
        &lab.builder(waiter),
        &gone,
        &gone_script,
        waiter - 1,
        "waiter",
        "waiter",
    );
    wait_for_log(&gone, "waiter", "waiting for shard");
    lab.stop_registry();
    failed_naming(&lab.finish(pod, &gone), "waiter", &gone_cache);

    lab.store("stopped");
    let pod = lab.start(&lab.builder(1), ctx, script, 0, "stopped", "stopped");
    let run = lab.finish(pod, ctx);
    failed_naming(&run, "stopped", &cache);
    assert!(run.stderr.contains("--cache-from"), "{}", run.stderr);
}

#[test]
fn fleet_netns_four_builders_one_registry_end_to_end() {
    let test = "fleet_netns_four_builders_one_registry_end_to_end";
    let Some(lab) = Lab::new(test) else {
        return;
    };
    let started = Instant::now();
    let ctx = lab.path("fleet");
    write_graph(&ctx, "fleet", 1);
    let (script, _) = emitted_script(&lab, &ctx, &format!("{REG}/fleet/cache:main"));
    lab.store("noanswer");
    let noanswer = lab.start(&lab.ns("y"), &ctx, &script, 0, "noanswer", "noanswer");
    every_step_once(&lab, &ctx, &script);
    killed_shard_rerun(&lab);
    late_shard_taken_over(&lab);
    unreachable_cache(&lab, &ctx, &script, noanswer);
    eprintln!("{test}: {:?}", started.elapsed());
}
