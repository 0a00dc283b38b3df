//! `rbk build` and `rbk graph` as a user runs them: exit codes, error lines,
//! rbk.toml, and Ctrl-C leaving nothing behind.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "/bin/busybox";
/// How long a headless browser may take over a small page.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

pub(crate) fn rbk(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbk"));
    c.arg("--root").arg(root).env_remove("RBK_ROOT");
    c
}

/// A store with localhost/busybox:latest imported through the CLI, or None
/// (loudly) when this machine cannot run build steps.
pub(crate) fn store_with_busybox(test: &str) -> Option<tempfile::TempDir> {
    if let Err(why) = rbk_runtime::sandbox::sandbox_supported() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("SKIPPED {test}: {BUSYBOX} is missing (apt-get install busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let tarball = dir.path().join("busybox.tar");
    tar_dir(&rootfs, &tarball);
    succeed(
        rbk(&dir.path().join("store"))
            .arg("import")
            .arg(&tarball)
            .arg("localhost/busybox:latest"),
    );
    Some(dir)
}

/// [`store_with_busybox`] and a build context `ctx` holding `files`: the
/// temporary directory, its store and the context.
pub(crate) fn busybox_and_context(
    test: &str,
    files: &[(&str, &str)],
) -> Option<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    let dir = store_with_busybox(test)?;
    let (store, ctx) = (dir.path().join("store"), dir.path().join("ctx"));
    write(&ctx, files);
    Some((dir, store, ctx))
}

/// Runs `cmd`, asserting it succeeded (its stderr shown if not).
pub(crate) fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The content of `file` in image `tag` (`rbk run --rm --network none`).
pub(crate) fn cat(store: &Path, tag: &str, file: &str) -> String {
    let out = succeed(rbk(store).args(["run", "--rm", "--network", "none", tag, "cat", file]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tars the tree at `dir` into `tarball`, owners as numbers.
pub(crate) fn tar_dir(dir: &Path, tarball: &Path) {
    let ok = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("--numeric-owner")
        .arg("-cf")
        .arg(tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
}

pub(crate) fn write(dir: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
}

#[test]
fn a_bad_dockerfile_is_one_clear_error_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("Dockerfile", "FROM scratch\nCOPY --frm=x a b\n")],
    );
    for cmd in ["graph", "build"] {
        let out = rbk(&dir.path().join("store"))
            .arg(cmd)
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Dockerfile:2:6: unknown flag: --frm for COPY"),
            "{cmd}: {err}"
        );
        assert!(err.contains("COPY --frm=x a b"), "{cmd}: {err}");
    }
    let out = rbk(&dir.path().join("store"))
        .arg("parse")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn graph_merges_the_shared_steps_of_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rbk.toml");
    let out = succeed(
        rbk(&dir.path().join("store"))
            .args(["graph", "--format", "json"])
            .arg(&toml),
    );
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["schema"], "rbk.graph/v1");
    assert_eq!(g["images"].as_array().unwrap().len(), 4);
    let vertices = g["vertices"].as_array().unwrap();
    let shared: Vec<&str> = vertices
        .iter()
        .filter(|v| v["shared"] == true)
        .map(|v| v["instruction"].as_str().unwrap())
        .collect();
    assert!(shared.contains(&"FROM centos:7"), "{shared:?}");
    assert!(
        shared
            .iter()
            .any(|i| i.starts_with("RUN yum install -y wget")),
        "{shared:?}"
    );
    // Only one FROM centos:7 vertex for four images.
    let froms = vertices
        .iter()
        .filter(|v| v["instruction"] == "FROM centos:7")
        .count();
    assert_eq!(froms, 1);
    for format in ["text", "dot", "mermaid"] {
        let out = rbk(&dir.path().join("store"))
            .args(["graph", "--format", format])
            .arg(&toml)
            .output()
            .unwrap();
        assert!(out.status.success(), "{format}");
        assert!(!out.stdout.is_empty(), "{format}");
    }
}

#[test]
fn missing_base_image_is_named() {
    let Some(dir) = store_with_busybox("missing_base_image_is_named") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write(&ctx, &[("Dockerfile", "FROM localhost/nope:1\nRUN true\n")]);
    let out = rbk(&dir.path().join("store"))
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("localhost/nope:1"), "{err}");
}

#[test]
fn toml_builds_targets_and_rebuild_runs_nothing() {
    let Some(dir) = store_with_busybox("toml_builds_targets") else {
        return;
    };
    let base = dir.path().join("proj");
    write(
        &base,
        &[
            ("a/Dockerfile", "FROM localhost/busybox:latest\nRUN echo a > /a\n"),
            ("b/Dockerfile", "FROM localhost/busybox:latest\nCOPY f /f\n"),
            ("b/f", "data"),
            (
                "rbk.toml",
                "[target.a]\ncontext = \"a\"\ntags = [\"t/a:1\"]\n[target.b]\ncontext = \"b\"\ntags = [\"t/b:1\"]\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let run = || {
        let out = succeed(
            rbk(&store)
                .args(["build", "--progress", "plain"])
                .arg(base.join("rbk.toml")),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run();
    assert!(first.contains("2 steps run, 0 cached"), "{first}");
    let again = run();
    assert!(again.contains("0 steps run, 2 cached"), "{again}");
    let out = rbk(&store).args(["images", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

fn mounts_under(path: &Path) -> Vec<String> {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&p))
        .map(String::from)
        .collect()
}

fn processes_with(marker: &str) -> usize {
    matching_processes(marker).len()
}

/// The processes whose command line contains `marker`, each described by
/// its pid and the State and PPid lines of its status, for diagnostics.
fn matching_processes(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(marker)
                })
                .unwrap_or(false)
        })
        .map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            let fields: Vec<&str> = status
                .lines()
                .filter(|l| l.starts_with("State:") || l.starts_with("PPid:"))
                .collect();
            format!(
                "pid {}: {}",
                e.file_name().to_string_lossy(),
                fields.join(", ")
            )
        })
        .collect()
}

/// Spawns `cmd` (an `rbk build --progress plain`) and reads its stderr until
/// the step's own output line `#N 0.0s started` (not its header) appears.
fn start_until_running(
    cmd: &mut Command,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.ends_with(" started") || Instant::now() > deadline {
            break;
        }
    }
    assert!(seen.lines().any(|l| l.ends_with(" started")), "{seen}");
    (child, lines)
}

/// Whether no process with `marker` in its command line is left within 3 s
/// (the kernel tears a pid namespace down as its keeper exits).
/// Waits for every process matching `marker` to be gone. A killed process
/// can sit in an uninterruptible wait (an exec page-faulting its binary in
/// from a busy disk) before the signal takes effect, so the bound is generous;
/// the survivors are named when it is not met.
fn gone_soon(marker: &str) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = matching_processes(marker);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_build_and_leaves_nothing_behind() {
    let Some(dir) = store_with_busybox("ctrl_c_stops_the_build") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    // An unusual duration, unique to this run, marks our process.
    let marker = format!("sleep {}", 100_000 + std::process::id());
    write(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM localhost/busybox:latest\nRUN echo started && {marker}\n"),
        )],
    );
    let store = dir.path().join("store");
    let (mut child, lines) =
        start_until_running(rbk(&store).args(["build", "--progress", "plain"]).arg(&ctx));
    // The step is running: its shell, and the sleep once forked (the count
    // is 1 or 2 depending on the moment; a panic here must not leave the
    // build running).
    if processes_with(&marker) == 0 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the step is not running");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let t = Instant::now();
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stopping took {:?}",
        t.elapsed()
    );
    assert!(!status.success());
    assert!(rest.join("\n").contains("cancelled"), "{rest:?}");
    if let Err(left) = gone_soon(&marker) {
        panic!("processes left after the build stopped: {left:?}");
    }
    assert!(
        mounts_under(&store).is_empty(),
        "{:?}",
        mounts_under(&store)
    );
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
    // Nothing was tagged.
    let out = rbk(&store).args(["images", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn a_killed_build_leaves_nothing_the_next_build_keeps() {
    let Some(dir) = store_with_busybox("a_killed_build_leaves_nothing") else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nARG NAP=0\nRUN echo started && sleep $NAP\n",
        )],
    );
    let store = dir.path().join("store");
    // The run's own files must not be left in the system's temporary
    // directory, which nothing of rbk's sweeps.
    let tmpdir = dir.path().join("system-tmp");
    std::fs::create_dir_all(&tmpdir).unwrap();
    let nap = format!("{}", 200_000 + std::process::id());
    let (mut child, _lines) = start_until_running(
        rbk(&store)
            .env("TMPDIR", &tmpdir)
            .args(["build", "--progress", "plain", "--build-arg"])
            .arg(format!("NAP={nap}"))
            .arg(&ctx),
    );
    child.kill().unwrap(); // SIGKILL: no cleanup code runs.
    child.wait().unwrap();
    if let Err(left) = gone_soon(&format!("sleep {nap}")) {
        panic!("the container did not die with rbk: {left:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmpdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the system's tmp: {left:?}");
    // The next build sweeps the dead build's mount, snapshot and files.
    succeed(rbk(&store).args(["build", "--progress", "plain"]).arg(&ctx));
    let left: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the store's tmp: {left:?}");
    assert!(
        mounts_under(&store).is_empty(),
        "{:?}",
        mounts_under(&store)
    );
    let active: Vec<_> = std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("active-"))
        .map(|e| e.path())
        .collect();
    assert!(active.is_empty(), "{active:?}");
}

#[test]
fn a_target_built_on_another_is_rebuilt_when_the_base_changes() {
    let test = "a_target_built_on_another_is_rebuilt_when_the_base_changes";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let d = dir.path();
    for sub in ["base", "app"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    std::fs::write(
        d.join("rbk.toml"),
        "[target.app]\ncontext = \"app\"\ntags = [\"example/app:1\"]\n\n\
         [target.base]\ncontext = \"base\"\ntags = [\"example/base:1\"]\n",
    )
    .unwrap();
    let base_df = |v: &str| format!("FROM localhost/busybox:latest\nRUN echo {v} > /base\n");
    std::fs::write(d.join("base/Dockerfile"), base_df("v1")).unwrap();
    std::fs::write(
        d.join("app/Dockerfile"),
        "FROM example/base:1\nRUN cat /base > /app\n",
    )
    .unwrap();
    let toml = d.join("rbk.toml").display().to_string();
    let run = |args: &[&str]| {
        let out = rbk(&store).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let app_file = || {
        let out = run(&["run", "--rm", "example/app:1", "cat", "/app"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Asking for app alone builds base first, in the same run.
    let out = run(&["build", &toml, "app"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built 2 images"), "{err}");
    assert_eq!(app_file(), "v1\n");
    let graph = run(&["graph", &toml, "app"]);
    let text = String::from_utf8_lossy(&graph.stdout);
    assert!(text.contains("built on base"), "{text}");
    // The base's input changes: app is rebuilt on the new base, not the
    // stored one.
    std::fs::write(d.join("base/Dockerfile"), base_df("v2")).unwrap();
    run(&["build", &toml, "app"]);
    assert_eq!(app_file(), "v2\n");

    // Targets built on each other: refused, the cycle named.
    std::fs::write(d.join("base/Dockerfile"), "FROM example/app:1\nRUN true\n").unwrap();
    let out = rbk(&store).args(["build", &toml]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("targets are built on each other"), "{err}");
    assert!(err.contains("Dockerfile:1:"), "{err}");
}

#[test]
fn check_lints_every_dockerfile_and_fails_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        &[
            (
                "Dockerfile",
                "FROM scratch AS Build\nMAINTAINER me\nCMD echo hi\n",
            ),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    let root = d.join("store");
    let ctx = d.display().to_string();
    let out = rbk(&root).args(["check", &ctx]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = d.join("Dockerfile").display().to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            format!("{file}:1:1 StageNameCasing: Stage name 'Build' should be lowercase"),
            format!("{file}:2:1 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label"),
            format!("{file}:3:1 JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals"),
        ]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 findings in 1 Dockerfile"));
    // `rbk build --check` says the same and builds nothing.
    let out = rbk(&root)
        .args(["build", "--check", &ctx])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout);
    // error=true: exit 1, for check and for a build (before any step).
    std::fs::write(
        d.join("Dockerfile"),
        "# check=error=true;skip=StageNameCasing\nFROM scratch AS Build\nMAINTAINER me\n",
    )
    .unwrap();
    let out = rbk(&root).args(["check", &ctx]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let out = rbk(&root).args(["build", &ctx]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 lint finding and `# check=error=true`"),
        "{err}"
    );
    assert!(!err.contains("built "), "{err}");
}

#[test]
fn a_build_warns_of_lint_findings_once() {
    let test = "a_build_warns_of_lint_findings_once";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nMAINTAINER me\nRUN true\n",
        )],
    );
    let out = rbk(&dir.path().join("store"))
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("MaintainerDeprecated").count(), 1, "{err}");
    assert!(err.contains("warning: "), "{err}");
}

#[test]
fn bake_files_variables_inherits_matrix_set_and_print() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_a_bake_file_and_an_rbk_toml(d);
    let root = d.join("store");
    let bake = d.join("docker-bake.json").display().to_string();
    // --print: bake's shape, the environment over the variable's default,
    // --set over the file.
    let out = succeed(
        rbk(&root)
            .args([
                "build",
                "--print",
                &bake,
                "--set",
                "app-slim.args.FLAVOR=tiny",
            ])
            .env("TAG", "2.0"),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["group"]["default"]["targets"],
        serde_json::json!(["app-slim", "app-full"])
    );
    let slim = &doc["target"]["app-slim"];
    assert_eq!(slim["tags"], serde_json::json!(["example/app:2.0-slim"]));
    assert_eq!(slim["args"]["FLAVOR"], "tiny");
    assert_eq!(slim["labels"]["team"], "core");
    assert_eq!(doc["target"]["app-full"]["args"]["FLAVOR"], "full");
    // The same for rbk.toml.
    let toml = d.join("rbk.toml").display().to_string();
    let out = rbk(&root)
        .args(["build", "--print", &toml])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["target"]["app"]["tags"],
        serde_json::json!(["example/app:1.0"])
    );
    a_bake_hcl_file_has_variables_functions_and_conditionals(d, &root);
    // -t with several targets is refused; an unknown variable is named.
    let out = rbk(&root)
        .args(["build", "-t", "x", &bake])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-t names one image"));
    std::fs::write(d.join("rbk.toml"), "[target.app]\ntags = [\"a:${TAGG}\"]\n").unwrap();
    let out = rbk(&root).args(["graph", &toml]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("${TAGG} is not a variable"), "{err}");
    // A Dockerfile path graphs with its directory as the context.
    let df = d.join("app/Dockerfile").display().to_string();
    let out = succeed(rbk(&root).args(["graph", &df]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RUN echo $FLAVOR"));
}

/// In `d`: `app/Dockerfile`, a `docker-bake.json` with a variable, a
/// group, inheritance and a matrix over it, and an `rbk.toml` with the
/// same variable.
fn write_a_bake_file_and_an_rbk_toml(d: &Path) {
    write(
        d,
        &[
            (
                "app/Dockerfile",
                "FROM localhost/busybox:latest\nARG FLAVOR=none\nRUN echo $FLAVOR > /flavor\n",
            ),
            (
                "docker-bake.json",
                r#"{
  "variable": {"TAG": {"default": "1.0"}},
  "group": {"default": {"targets": ["app"]}},
  "target": {
    "common": {"context": "app", "labels": {"team": "core"}},
    "app": {
      "inherits": ["common"],
      "matrix": {"flavor": ["slim", "full"]},
      "name": "app-${flavor}",
      "args": {"FLAVOR": "${flavor}"},
      "tags": ["example/app:${TAG}-${flavor}"]
    }
  }
}"#,
            ),
            (
                "rbk.toml",
                "[variable.TAG]\ndefault = \"1.0\"\n\n[target.app]\ncontext = \"app\"\ntags = [\"example/app:${TAG}\"]\n",
            ),
        ],
    );
}

/// docker-bake.hcl in `d`: variables, functions, a conditional, as
/// `--print` shows them.
fn a_bake_hcl_file_has_variables_functions_and_conditionals(d: &Path, root: &Path) {
    std::fs::write(
        d.join("docker-bake.hcl"),
        "variable \"TAG\" { default = \"1.0\" }\ntarget \"app\" {\n  context = \"app\"\n  tags = [\"example/app:${lower(TAG)}\"]\n  args = { FLAVOR = notequal(TAG, \"1.0\") ? \"new\" : \"old\" }\n}\n",
    )
    .unwrap();
    let hcl = d.join("docker-bake.hcl").display().to_string();
    let out = succeed(rbk(root).args(["build", "--print", &hcl]).env("TAG", "RC1"));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["target"]["app"]["tags"],
        serde_json::json!(["example/app:rc1"])
    );
    assert_eq!(doc["target"]["app"]["args"]["FLAVOR"], "new");
}

#[test]
fn a_bake_matrix_builds_each_combination() {
    let test = "a_bake_matrix_builds_each_combination";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let d = dir.path();
    write(
        d,
        &[
            (
                "app/Dockerfile",
                "FROM localhost/busybox:latest\nARG FLAVOR=none\nRUN echo $FLAVOR > /flavor\n",
            ),
            (
                "docker-bake.json",
                r#"{"target": {"app": {"context": "app", "matrix": {"flavor": ["slim", "full"]},
                    "name": "app-${flavor}", "args": {"FLAVOR": "${flavor}"},
                    "tags": ["example/app:${flavor}"], "no-cache": true}}}"#,
            ),
        ],
    );
    let store = d.join("store");
    let bake = d.join("docker-bake.json").display().to_string();
    let out = rbk(&store).args(["build", &bake]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("built 2 images"), "{err}");
    for flavor in ["slim", "full"] {
        let out = rbk(&store)
            .args([
                "run",
                "--rm",
                &format!("example/app:{flavor}"),
                "cat",
                "/flavor",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{flavor}\n"));
    }
    // no-cache = true: a second build runs the steps again.
    let out = rbk(&store).args(["build", &bake]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 steps run, 0 cached"), "{err}");
}

#[test]
fn a_compose_file_builds_its_services_with_builds() {
    let test = "a_compose_file_builds_its_services_with_builds";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let d = dir.path();
    write(
        d,
        &[
            (
                "web/Dockerfile",
                "FROM localhost/busybox:latest\nARG VERSION\nRUN echo web-$VERSION > /v\n",
            ),
            (
                "worker/Dockerfile",
                "FROM example/web:1\nRUN cat /v > /w\n",
            ),
            (
                "compose.yaml",
                "services:\n  web:\n    image: example/web:${TAG:-1}\n    build:\n      context: ./web\n      args: [\"VERSION=2\"]\n  worker:\n    image: example/worker\n    build: worker\n  db:\n    image: mariadb:10\n",
            ),
        ],
    );
    let store = d.join("store");
    let compose = d.join("compose.yaml").display().to_string();
    let out = rbk(&store).args(["build", &compose]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("built 2 images"), "{err}");
    // worker is built on web (FROM its image:) in the same run.
    let out = rbk(&store)
        .args(["run", "--rm", "example/worker:latest", "cat", "/w"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web-2\n");
    let out = rbk(&store).args(["graph", &compose]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("built on web"));
}

#[test]
fn graph_out_colours_a_build_and_graph_marks_the_next_one() {
    let test = "graph_out_colours_a_build_and_graph_marks_the_next_one";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN echo one > /one\nENV A=1\nRUN echo two > /two\n",
        )],
    );
    let page = dir.path().join("build.html");
    succeed(
        rbk(&store)
            .arg("build")
            .arg("--graph-out")
            .arg(&page)
            .arg(&ctx),
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("class=\"vertex run\"").count(),
        3,
        "two RUNs and the ENV"
    );
    assert!(html.contains("runs in "), "durations shown");
    // The next build would find both RUNs cached; after an edit, the
    // second runs, and why.
    let ctx_s = ctx.display().to_string();
    let graph = |args: &[&str]| {
        let out = succeed(rbk(&store).arg("graph").args(args).arg(&ctx_s));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = graph(&[]);
    assert_eq!(text.matches("[cached]").count(), 3, "{text}");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN echo one > /one\nENV A=1\nRUN echo 2 > /two\n",
        )],
    );
    let text = graph(&[]);
    assert!(text.contains("[to run: instruction changed"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&graph(&["--format", "json"])).unwrap();
    let states: Vec<&str> = json["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["state"].as_str())
        .collect();
    assert_eq!(states, ["base", "cached", "cached", "run"]);
    if let Some(bin) = crate::graph_page::chromium(test) {
        let (dom, png) = crate::graph_page::in_browser(bin, &page, BROWSER_LIMIT);
        assert!(dom.contains("data-rendered=\"4\""), "{dom}");
        // Durations, so a critical path: the source, both RUNs, the ENV.
        assert_eq!(dom.matches("data-critical=\"1\"").count(), 4 + 3, "{dom}");
        crate::graph_page::keep_screenshot("after-a-build", &png);
    }
}

#[test]
fn a_base_of_another_platform_is_an_error_not_a_fallback() {
    let test = "a_base_of_another_platform_is_an_error_not_a_fallback";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN uname -m > /arch\n",
        )],
    );
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let other = if host == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    // Asking for arm64 registers its emulator: not left behind.
    let _unregister = Unregister::qemu_aarch64();
    let out = rbk(&dir.path().join("store"))
        .args(["build", "--platform", other])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "base image localhost/busybox:latest is linux/{host}, and this build asks for {other}"
        )),
        "{err}"
    );
    assert!(!err.contains("built "), "{err}");
    // The host's own platform, named, builds.
    succeed(
        rbk(&dir.path().join("store"))
            .args(["build", "--platform", &format!("linux/{host}")])
            .arg(&ctx),
    );
}

/// Unregisters a binfmt_misc handler the test registered, however it ends.
/// Tests holding one run one at a time, so none removes the handler while
/// another's step needs it.
pub(crate) struct Unregister(
    Option<std::path::PathBuf>,
    #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
);

static QEMU_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Unregister {
    /// A guard for the qemu-aarch64 handler: it removes the handler at the
    /// end if it was not registered at the start (a build for arm64
    /// registers it).
    pub(crate) fn qemu_aarch64() -> Self {
        let turn = QEMU_TESTS.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
        Unregister((!entry.exists()).then(|| entry.to_path_buf()), turn)
    }
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(entry) = &self.0 {
            let _ = std::fs::write(entry, "-1");
        }
    }
}

/// A busybox rootfs tarball for linux/arm64 made from Debian's
/// `busybox-static:arm64` package (scripts/test.sh fetches it into the
/// bases cache), in `dir`; None (loudly) when the host is not x86_64, the
/// package is not there or QEMU's binfmt configuration is not installed.
pub(crate) fn arm64_busybox(test: &str, dir: &Path) -> Option<std::path::PathBuf> {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED {test}: the host is not x86_64");
        return None;
    }
    let cache = crate::bases_cache();
    let deb = std::fs::read_dir(&cache).ok().and_then(|rd| {
        rd.flatten().map(|e| e.path()).find(|p| {
            p.to_string_lossy().ends_with("_arm64.deb")
                && p.to_string_lossy().contains("busybox-static")
        })
    });
    let Some(deb) = deb else {
        eprintln!(
            "SKIPPED {test}: no busybox-static arm64 package in {} (scripts/test.sh fetches it)",
            cache.display()
        );
        return None;
    };
    if !Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf").exists() {
        eprintln!("SKIPPED {test}: qemu-user-static is not installed");
        return None;
    }
    let x = dir.join("deb");
    let ok = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap();
    assert!(ok.success());
    let rootfs = dir.join("arm64");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(x.join("bin/busybox"), rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "uname", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tarball = dir.join("arm64.tar");
    tar_dir(&rootfs, &tarball);
    Some(tarball)
}

#[test]
fn run_for_arm64_runs_under_qemu() {
    let test = "run_for_arm64_runs_under_qemu";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let Some(tarball) = arm64_busybox(test, dir.path()) else {
        return;
    };
    let _unregister = Unregister::qemu_aarch64();
    let store = dir.path().join("store");
    succeed(
        rbk(&store)
            .args(["import", "--platform", "linux/arm64"])
            .arg(&tarball)
            .arg("localhost/busybox-arm64:latest"),
    );
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox-arm64:latest\nARG TARGETARCH\nRUN uname -m > /m && echo $TARGETARCH >> /m\n",
        )],
    );
    succeed(
        rbk(&store)
            .args(["build", "--platform", "linux/arm64", "-t", "arm:1"])
            .arg(&ctx),
    );
    // `rbk run` registers the emulator itself too (dropped here if this
    // test registered it).
    if let Some(e) = &_unregister.0 {
        let _ = std::fs::write(e, "-1");
    }
    let out = rbk(&store)
        .args([
            "run",
            "--rm",
            "--platform",
            "linux/arm64",
            "arm:1",
            "cat",
            "/m",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "aarch64\narm64\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rbk(&store)
        .args(["run", "--rm", "--platform", "linux/amd64", "arm:1", "true"])
        .output()
        .unwrap();
    crate::run_fails_with(
        &out,
        "arm:1 is linux/arm64, and --platform asks for linux/amd64",
    );
    let out = rbk(&store).args(["inspect", "arm:1"]).output().unwrap();
    let img: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = if img.is_array() { img[0].clone() } else { img };
    assert_eq!(img["Architecture"], "arm64", "{img}");
}

/// An invalid `-t` is refused before any work (it once failed only after
/// the whole build ran), and an ARG without a value in FROM names the ARG
/// and the line; `rbk check` and `rbk build --check` say the same, with
/// the same exit code.
#[test]
fn bad_tags_and_valueless_from_args_fail_before_any_step() {
    let test = "bad_tags_and_valueless_from_args_fail_before_any_step";
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN echo ran > /f\n",
        )],
    ) else {
        return;
    };
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "-t", "Bad/Name:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("invalid tag \"Bad/Name:1\""), "{err}");
    assert!(err.contains("must be lower-case"), "{err}");
    assert!(!err.contains("RUN echo ran"), "a step started: {err}");

    write(
        &ctx,
        &[("Dockerfile", "ARG V\nFROM localhost/busybox:$V\nRUN true\n")],
    );
    let build = rbk(&store).arg("build").arg(&ctx).output().unwrap();
    let err = String::from_utf8_lossy(&build.stderr);
    assert_eq!(build.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2:6: FROM localhost/busybox:$V: the ARG V has no value"),
        "{err}"
    );
    assert!(err.contains("--build-arg V=VALUE"), "{err}");
    assert!(!err.contains("invalid reference"), "{err}");
    let check = rbk(&store).arg("check").arg(&ctx).output().unwrap();
    let build_check = rbk(&store)
        .args(["build", "--check"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), build_check.status.code());
    assert_eq!(check.stdout, build_check.stdout);
    assert_eq!(check.stderr, build_check.stderr);
    assert!(String::from_utf8_lossy(&check.stderr).contains("the ARG V has no value"));
    // With a value it builds.
    let ok = rbk(&store)
        .args(["build", "--build-arg", "V=latest"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A base image that is neither stored nor reachable fails at once (a
/// host name that does not resolve is not asked four times), at the FROM
/// that names it with a caret, and names the stored images it may mean.
#[test]
fn a_missing_base_is_said_at_its_from_with_stored_names_like_it() {
    let test = "a_missing_base_is_said_at_its_from_with_stored_names_like_it";
    // `.invalid` never resolves (RFC 2606): no network is asked.
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[(
            "Dockerfile",
            "# base\nFROM --platform=linux/amd64 registry.invalid/busybox AS base\nRUN true\n",
        )],
    ) else {
        return;
    };
    let out = rbk(&store).arg("build").arg(&ctx).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:2:29: base image registry.invalid/busybox:latest"),
        "{err}"
    );
    assert!(
        err.contains("2 | FROM --platform=linux/amd64 registry.invalid/busybox AS base"),
        "{err}"
    );
    assert!(!err.contains("gave up after"), "retried: {err}");
    assert!(
        err.contains("the store has images of a similar name: localhost/busybox:latest"),
        "{err}"
    );
}

/// A COPY source missing from the context names the context directory
/// and the path inside it (not a bare `lstat /file`).
#[test]
fn a_missing_copy_source_names_the_context_and_the_path_in_it() {
    let test = "a_missing_copy_source_names_the_context_and_the_path_in_it";
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nCOPY nginx-1.22.1.tar.gz /src/\n",
        )],
    ) else {
        return;
    };
    let out = rbk(&store).arg("build").arg(&ctx).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!(
        "source \"nginx-1.22.1.tar.gz\": /nginx-1.22.1.tar.gz is not in the build context {}",
        std::fs::canonicalize(&ctx).unwrap().display()
    );
    assert!(err.contains(&want), "{err}");
}

/// A step stopped because another target failed says CANCELED, not
/// ERROR; only the failing one is an error.
#[test]
fn steps_stopped_by_a_failing_sibling_show_as_canceled() {
    let test = "steps_stopped_by_a_failing_sibling_show_as_canceled";
    let toml = "[group.default]\ntargets = [\"a\", \"b\"]\n\
        [target.a]\ndockerfile = \"Dockerfile.a\"\ntags = [\"t/a:1\"]\n\
        [target.b]\ndockerfile = \"Dockerfile.b\"\ntags = [\"t/b:1\"]\n";
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[
            (
                "Dockerfile.a",
                "FROM localhost/busybox:latest\nRUN sleep 1 && false\n",
            ),
            (
                "Dockerfile.b",
                "FROM localhost/busybox:latest\nRUN sleep 60\n",
            ),
            ("rbk.toml", toml),
        ],
    ) else {
        return;
    };
    let started = std::time::Instant::now();
    let out = rbk(&store)
        .args(["build", "--progress", "plain", "--network", "none"])
        .arg(ctx.join("rbk.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(50),
        "{err}"
    );
    let line_of = |text: &str| {
        err.lines()
            .find(|l| l.contains(text))
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    };
    let (a, b) = (line_of("RUN sleep 1 && false"), line_of("RUN sleep 60"));
    assert!(err.contains(&format!("{a} ERROR after")), "{err}");
    assert!(err.contains(&format!("{b} CANCELED after")), "{err}");
    assert!(!err.contains(&format!("{b} ERROR")), "{err}");
}

/// `-q` and `--progress quiet` print nothing but the ids, each after its
/// target's name when a build makes several.
#[test]
fn quiet_builds_print_only_ids_named_by_target() {
    let test = "quiet_builds_print_only_ids_named_by_target";
    let toml = "[group.default]\ntargets = [\"a\", \"b\"]\n\
        [target.a]\ndockerfile = \"Dockerfile.a\"\n\
        [target.b]\ndockerfile = \"Dockerfile.b\"\n";
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[
            (
                "Dockerfile.a",
                "FROM localhost/busybox:latest\nRUN echo a > /a\n",
            ),
            (
                "Dockerfile.b",
                "FROM localhost/busybox:latest\nRUN echo b > /b\n",
            ),
            ("rbk.toml", toml),
        ],
    ) else {
        return;
    };
    for quiet in [&["-q"][..], &["--progress", "quiet"][..]] {
        let out = rbk(&store)
            .arg("build")
            .args(quiet)
            .args(["--network", "none"])
            .arg(ctx.join("rbk.toml"))
            .output()
            .unwrap();
        let (so, se) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{se}");
        assert_eq!(se, "", "{quiet:?}");
        let lines: Vec<&str> = so.lines().collect();
        assert_eq!(lines.len(), 2, "{so}");
        for (line, name) in lines.iter().zip(["a ", "b "]) {
            assert!(line.starts_with(name) && line.contains(" sha256:"), "{so}");
        }
    }
}
