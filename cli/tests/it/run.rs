//! `rbk run` on the busybox base: Docker's rules for the command line,
//! environment, user, workdir, volumes, exit codes, signals and clean-up.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{cannot_run_containers, make_base, rbk, rbk_bin, skip, stderr, stdout};

const BUSYBOX: &str = "localhost/busybox:latest";

/// A fresh store holding the busybox base, or `None` (after a SKIPPED
/// notice) where containers cannot run.
fn busybox_store(test: &str) -> Option<TempDir> {
    if let Some(why) = cannot_run_containers() {
        skip(test, &why);
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        skip(test, "no /bin/busybox (apt-get install busybox-static)");
        return None;
    }
    // The first caller makes the cached tarball; the others only import it
    // (two scripts writing the same cache file at once would collide).
    static FIRST: Mutex<bool> = Mutex::new(false);
    let root = TempDir::new().unwrap();
    let out = {
        let mut made = FIRST.lock().unwrap_or_else(|p| p.into_inner());
        let out = make_base(root.path(), "busybox", &[]);
        *made = true;
        out
    };
    assert!(
        out.status.success(),
        "make-bases.sh busybox: {}",
        stderr(&out)
    );
    Some(root)
}

/// The store shared by the read-only tests (they only ever add and remove
/// their own container layers).
fn shared() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<TempDir>> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = busybox_store("rbk run tests")?;
        // Unpack the layer once, before tests race to do it.
        let out = rbk(root.path(), &["run", BUSYBOX, "true"]);
        assert!(out.status.success(), "{}", stderr(&out));
        Some(root)
    })
    .as_ref()
    .map(TempDir::path)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn exit_code_and_output_propagate() {
    let Some(root) = shared() else { return };
    let out = rbk(
        root,
        &[
            "run",
            "--rm",
            BUSYBOX,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 42",
        ],
    );
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // The image's CMD (/bin/sh) runs when no command is given; stdin is empty.
    let out = rbk(root, &["run", BUSYBOX]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn env_workdir_user_and_entrypoint_follow_docker() {
    let Some(root) = shared() else { return };
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(root)
        .args(["run", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_ON_HOST"])
        .args(["-w", "/new/dir", "-u", "nobody", BUSYBOX])
        .args([
            "sh",
            "-c",
            "echo A=$A H=$FROM_HOST U=${UNSET_ON_HOST-unset}; pwd; id -u; id -g",
        ])
        .env("FROM_HOST", "h v")
        .env_remove("UNSET_ON_HOST")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "A=1 H=h v U=unset\n/new/dir\n65534\n65534\n",
        "{}",
        stderr(&out)
    );
    // --entrypoint replaces the image's entrypoint and drops its CMD; the
    // arguments follow it.
    let out = rbk(
        root,
        &["run", "--entrypoint", "echo", BUSYBOX, "a", "-n", "b"],
    );
    assert_eq!(stdout(&out), "a -n b\n", "{}", stderr(&out));
    let out = rbk(root, &["run", "--entrypoint", "/bin/pwd", BUSYBOX]);
    assert_eq!(stdout(&out), "/\n", "{}", stderr(&out));
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    let Some(root) = shared() else { return };
    let rw = TempDir::new().unwrap();
    let ro = TempDir::new().unwrap();
    std::fs::write(ro.path().join("f"), "from host\n").unwrap();
    let rw_arg = format!("{}:/rw", rw.path().display());
    let ro_arg = format!("{}:/ro:ro", ro.path().display());
    let out = rbk(
        root,
        &[
            "run",
            "-v",
            &rw_arg,
            "-v",
            &ro_arg,
            BUSYBOX,
            "sh",
            "-c",
            "cat /ro/f && echo hi > /rw/new",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from host\n");
    assert_eq!(
        std::fs::read_to_string(rw.path().join("new")).unwrap(),
        "hi\n"
    );
    let out = rbk(
        root,
        &["run", "-v", &ro_arg, BUSYBOX, "sh", "-c", "echo x > /ro/f"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(ro.path().join("f")).unwrap(),
        "from host\n"
    );
}

#[test]
fn missing_image_is_one_clear_line() {
    let Some(root) = shared() else { return };
    let out = rbk(root, &["run", "no/such-image:1", "true"]);
    assert_eq!(out.status.code(), Some(125), "as docker run");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("rbk: no such image: no/such-image:1"),
        "{err}"
    );
    // An empty store is not created by asking.
    let empty = TempDir::new().unwrap();
    let fresh = empty.path().join("store");
    let out = rbk(&fresh, &["run", BUSYBOX]);
    assert_eq!(out.status.code(), Some(125), "as docker run");
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
    assert!(!fresh.exists());
}

/// An environment the kernel refuses (one 200 KiB variable; Linux takes
/// at most 128 KiB per string) says so, with exit code 126, instead of a
/// bare `exec: "true"`.
#[test]
fn an_environment_too_large_for_exec_says_e2big() {
    let Some(root) = shared() else { return };
    // Through a file: rbk's own command line could not hold it either.
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("env");
    std::fs::write(&file, format!("BIG={}\n", "x".repeat(200 * 1024))).unwrap();
    let file = file.to_string_lossy();
    let out = rbk(root, &["run", "--rm", "--env-file", &file, BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("exec: \"true\": "), "{err}");
    assert!(err.contains("E2BIG"), "{err}");
    assert!(err.contains("128 KiB per string"), "{err}");
}

#[test]
fn missing_command_exits_127_with_one_line() {
    let Some(root) = shared() else { return };
    let out = rbk(root, &["run", BUSYBOX, "no-such-command", "x"]);
    assert_eq!(out.status.code(), Some(127));
    let err = stderr(&out);
    assert_eq!(
        err,
        "rbk: exec: \"no-such-command\": executable file not found in $PATH\n"
    );
    let out = rbk(root, &["run", "--entrypoint", "", BUSYBOX]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("no command specified"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rm_leaves_no_snapshot_mount_or_volume_behind() {
    let Some(store) = busybox_store("rm_leaves_no_snapshot_mount_or_volume_behind") else {
        return;
    };
    let root = store.path();
    let out = rbk(root, &["run", "--rm", BUSYBOX, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layers = entries(&root.join("snapshots"));
    // A container that writes, fails and has an anonymous volume.
    let out = rbk(
        root,
        &[
            "run",
            "--rm",
            "-v",
            "/scratch",
            BUSYBOX,
            "sh",
            "-c",
            "echo x > /file; echo y > /scratch/f; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(entries(&root.join("snapshots")), layers);
    assert!(entries(&root.join("tmp"))
        .iter()
        .all(|e| !e.starts_with("run-")));
    assert!(entries(&root.join("volumes")).is_empty());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "{mounts}");
    // The next container starts from the image again.
    let out = rbk(root, &["run", BUSYBOX, "sh", "-c", "test ! -e /file"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn image_volumes_are_seeded_anonymous_mounts() {
    let Some(store) = busybox_store("image_volumes_are_seeded_anonymous_mounts") else {
        return;
    };
    let root = store.path();
    let ctx = TempDir::new().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nRUN mkdir /data && echo seed > /data/f && chown 33:33 /data\n\
             VOLUME /data\nWORKDIR /data\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nCMD [\"cat f\"]\n"
        ),
    )
    .unwrap();
    let out = rbk(
        root,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "vol:1",
            ctx.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rbk(root, &["run", "vol:1"]);
    assert_eq!(stdout(&out), "seed\n", "{}", stderr(&out));
    let out = rbk(
        root,
        &[
            "run",
            "vol:1",
            "grep -c ' /data ' /proc/mounts; stat -c %u /data; echo new > f",
        ],
    );
    assert_eq!(stdout(&out), "1\n33\n", "{}", stderr(&out));
    assert!(entries(&root.join("volumes")).is_empty());
}

#[test]
fn stdin_is_passed_with_i() {
    let Some(root) = shared() else { return };
    let mut child = Command::new(rbk_bin())
        .arg("--root")
        .arg(root)
        .args(["run", "-i", BUSYBOX, "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "HELLO\n");
}

#[test]
fn sigterm_reaches_the_container_and_its_code_is_rbks() {
    let Some(root) = shared() else { return };
    let mut child = Command::new(rbk_bin())
        .arg("--root")
        .arg(root)
        .args(["run", BUSYBOX, "sh", "-c"])
        .arg("trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rbk run ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lines.next().unwrap().unwrap(), "got TERM");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn network_none_has_only_loopback_and_default_is_its_own() {
    let Some(root) = shared() else { return };
    let out = rbk(
        root,
        &["run", "--network", "none", BUSYBOX, "ls", "/sys/class/net"],
    );
    assert_eq!(stdout(&out), "lo\n", "{}", stderr(&out));
    // The default (Docker's "bridge") is the container's own, connected.
    for net in ["default", "bridge"] {
        let out = rbk(
            root,
            &["run", "--network", net, BUSYBOX, "ls", "/sys/class/net"],
        );
        assert_eq!(stdout(&out), "lo\ntap0\n", "{}", stderr(&out));
    }
    let out = rbk(root, &["run", "--network", "macvlan", BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("--network"), "{}", stderr(&out));
}

#[test]
fn tty_and_name_reach_the_container() {
    let Some(root) = shared() else { return };
    // -t gives the command a terminal even when rbk's own output is a pipe
    // (a terminal turns "\n" into "\r\n"), and TERM is set for it.
    let out = rbk(
        root,
        &[
            "run",
            "-t",
            BUSYBOX,
            "sh",
            "-c",
            "test -t 1 && echo tty $TERM",
        ],
    );
    assert_eq!(stdout(&out), "tty xterm\r\n", "{}", stderr(&out));
    // The terminal is the container's own, as under Docker: `tty` names
    // it in the container's devpts (it said "not a tty" with the host's).
    let out = rbk(root, &["run", "-t", BUSYBOX, "tty"]);
    assert_eq!(stdout(&out), "/dev/pts/0\r\n", "{}", stderr(&out));
    let out = rbk(
        root,
        &["run", BUSYBOX, "sh", "-c", "test -t 1 || echo no tty"],
    );
    assert_eq!(stdout(&out), "no tty\n");
    let out = rbk(root, &["run", "--name", "web-1", BUSYBOX, "hostname"]);
    assert_eq!(stdout(&out), "web-1\n", "{}", stderr(&out));
    let out = rbk(root, &["run", BUSYBOX, "hostname"]);
    let id = stdout(&out);
    assert_eq!(id.trim().len(), 12, "a container id as host name: {id:?}");
}
