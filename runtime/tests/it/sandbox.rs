//! The namespace sandbox (needs root, namespaces and /bin/busybox).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbk_runtime::sandbox::{
    sandbox_supported, BindMount, CancelToken, ExecSpec, Executor, NamespaceExecutor, NetworkMode,
    OutputStream, SandboxError,
};

const BUSYBOX: &str = "/bin/busybox";

/// A busybox rootfs in a temp dir, or `None` (with a loud SKIPPED) when the
/// machine cannot run the sandbox.
fn rootfs(test: &str) -> Option<tempfile::TempDir> {
    // Probe once: each probe forks and creates namespaces.
    static SUPPORTED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    if let Err(why) = SUPPORTED.get_or_init(sandbox_supported) {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("SKIPPED {test}: {BUSYBOX} is missing (apt-get install busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    Some(dir)
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..ExecSpec::default()
    }
}

/// Runs `spec`, returning (exit code, stdout, stderr).
fn run(root: &Path, spec: &ExecSpec) -> Result<(i32, String, String), SandboxError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = NamespaceExecutor.run(
        root,
        spec,
        &mut |stream, data| match stream {
            OutputStream::Stdout => out.extend_from_slice(data),
            OutputStream::Stderr => err.extend_from_slice(data),
        },
        &CancelToken::new(),
    )?;
    Ok((
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Every path under `root`, sorted (to compare trees before and after).
fn tree(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.symlink_metadata().unwrap().is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn echo_output_is_captured() {
    let Some(dir) = rootfs("echo_output_is_captured") else {
        return;
    };
    let (code, out, err) = run(dir.path(), &sh("echo hi; echo oops >&2")).unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hi\n", "oops\n"));
}

#[test]
fn exit_codes_are_returned() {
    let Some(dir) = rootfs("exit_codes_are_returned") else {
        return;
    };
    assert_eq!(run(dir.path(), &sh("exit 3")).unwrap().0, 3);
    assert_eq!(run(dir.path(), &sh("kill -TERM $$")).unwrap().0, 128 + 15);
    assert_eq!(run(dir.path(), &sh("true")).unwrap().0, 0);
}

#[test]
fn env_and_cwd_are_applied_and_cwd_is_created() {
    let Some(dir) = rootfs("env_and_cwd_are_applied_and_cwd_is_created") else {
        return;
    };
    let mut spec = sh("echo \"$FOO|$PATH|$HOME\"; pwd");
    spec.env = vec![("FOO".into(), "bar baz".into())];
    spec.cwd = "/work/deep".into();
    let (code, out, _) = run(dir.path(), &spec).unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "bar baz|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root\n/work/deep\n"
    );
    // WORKDIR creation is part of the step's result, like Docker's.
    assert!(dir.path().join("work/deep").is_dir());
}

#[test]
fn user_is_resolved_by_name_and_by_ids() {
    let Some(dir) = rootfs("user_is_resolved_by_name_and_by_ids") else {
        return;
    };
    let cases = [
        ("", "0 0 0\n"),
        ("app", "1000 1000 1000 10\n"),
        ("1000:10", "1000 10 10\n"),
        ("4242:4343", "4242 4343 4343\n"),
        ("nobody:app", "65534 1000 1000\n"),
    ];
    for (user, want) in cases {
        let mut spec = sh("echo $(id -u) $(id -g) $(id -G)");
        spec.user = user.into();
        let (code, out, err) = run(dir.path(), &spec).unwrap();
        assert_eq!((code, out.as_str()), (0, want), "user {user:?}: {err}");
    }
    let mut spec = sh("true");
    spec.user = "ghost".into();
    let err = run(dir.path(), &spec).unwrap_err();
    assert!(matches!(err, SandboxError::UnknownUser { .. }), "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");
}

#[test]
fn pid_uts_and_files_are_the_containers() {
    let Some(dir) = rootfs("pid_uts_and_files_are_the_containers") else {
        return;
    };
    let mut spec = sh(
        "echo $$; ls /proc | grep -c '^[0-9]'; hostname; grep -c box1 /etc/hosts; \
         test -f /etc/resolv.conf && echo resolv; test -c /dev/null && echo null; \
         echo x > /dev/shm/f && cat /dev/shm/f; test -e /dev/pts/ptmx && echo pts; \
         cat </dev/stdin",
    );
    spec.hostname = "box1".into();
    let (code, out, err) = run(dir.path(), &spec).unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Init is pid 1, the shell pid 2.
    assert_eq!(lines[0], "2", "{out}");
    let pids: u32 = lines[1].parse().unwrap();
    assert!(pids <= 4, "the command sees {pids} processes");
    assert_eq!(&lines[2..], ["box1", "1", "resolv", "null", "x", "pts"]);
}

#[test]
fn network_none_has_only_loopback() {
    let Some(dir) = rootfs("network_none_has_only_loopback") else {
        return;
    };
    let mut spec = sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping");
    spec.network = NetworkMode::None;
    let (code, out, err) = run(dir.path(), &spec).unwrap();
    assert_eq!((code, out.as_str()), (0, "lo\nping\n"), "{err}");
}

#[test]
fn bind_mounts_honour_readonly_and_leave_no_stubs() {
    let Some(dir) = rootfs("bind_mounts_honour_readonly_and_leave_no_stubs") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "data\n").unwrap();
    let before = tree(dir.path());
    let mut spec = sh("cat /ro/in; echo w > /ro/x 2>/dev/null && echo wrote-ro; \
         echo w > /rw/deep/out && echo wrote-rw; cat /file");
    spec.mounts = vec![
        BindMount {
            source: host.path().into(),
            target: "/ro".into(),
            readonly: true,
        },
        BindMount {
            source: host.path().into(),
            target: "/rw/deep".into(),
            readonly: false,
        },
        BindMount {
            source: host.path().join("in"),
            target: "/file".into(),
            readonly: true,
        },
    ];
    let (code, out, err) = run(dir.path(), &spec).unwrap();
    assert_eq!((code, out.as_str()), (0, "data\nwrote-rw\ndata\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "w\n"
    );
    assert!(!host.path().join("x").exists());
    // /proc, /dev, /sys, /etc/hosts, /etc/resolv.conf, /ro, /rw/deep, /file
    // were created for the run only.
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn no_mounts_are_left_behind_even_on_failure() {
    let Some(dir) = rootfs("no_mounts_are_left_behind_even_on_failure") else {
        return;
    };
    let root = dir.path().to_string_lossy().into_owned();
    let ours = || -> Vec<String> {
        mountinfo()
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from)
            .collect()
    };
    assert!(ours().is_empty());
    let before = tree(dir.path());
    assert_eq!(run(dir.path(), &sh("exit 1")).unwrap().0, 1);
    // A setup failure inside the child: the working directory is a file.
    let mut spec = sh("true");
    spec.cwd = "/etc/passwd".into();
    let err = run(dir.path(), &spec).unwrap_err();
    assert!(matches!(err, SandboxError::Setup { .. }), "{err}");
    assert!(err.to_string().contains("/etc/passwd"), "{err}");
    // And a failure at the very end, in exec.
    let spec = ExecSpec {
        args: vec!["nope".into()],
        ..ExecSpec::default()
    };
    assert!(run(dir.path(), &spec).is_err());
    assert!(ours().is_empty(), "{:?}", ours());
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn missing_or_unexecutable_commands_are_clear_errors() {
    let Some(dir) = rootfs("missing_or_unexecutable_commands_are_clear_errors") else {
        return;
    };
    let spec = ExecSpec {
        args: vec!["foo".into()],
        ..ExecSpec::default()
    };
    let err = run(dir.path(), &spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exec: \"foo\": executable file not found in $PATH"
    );
    assert_eq!(err.exit_code(), Some(127));
    let spec = ExecSpec {
        args: vec!["/etc/passwd".into()],
        ..ExecSpec::default()
    };
    let err = run(dir.path(), &spec).unwrap_err();
    assert_eq!(err.exit_code(), Some(126), "{err}");
    // Through a shell it is just exit code 127.
    assert_eq!(run(dir.path(), &sh("foo")).unwrap().0, 127);
}

#[test]
fn cancel_kills_the_process_tree_quickly() {
    let Some(dir) = rootfs("cancel_kills_the_process_tree_quickly") else {
        return;
    };
    let token = CancelToken::new();
    // Cancel as soon as the container says it runs (as the scheduler does
    // when another step fails).
    let mut cancelled_at = None;
    let result = NamespaceExecutor.run(
        dir.path(),
        &sh("sleep 100 & echo running; sleep 100; echo never"),
        &mut |_, data| {
            if data.starts_with(b"running") && cancelled_at.is_none() {
                token.cancel();
                cancelled_at = Some(Instant::now());
            }
        },
        &token,
    );
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    let took = cancelled_at.unwrap().elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    // No process of the container survives (busybox's sleep runs from our rootfs).
    let exe = dir.path().join("bin/busybox");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(link) = std::fs::read_link(entry.path().join("exe")) {
            assert_ne!(link, exe, "pid {:?} survived", entry.file_name());
        }
    }
}

#[test]
fn signals_are_forwarded_to_the_command() {
    let Some(dir) = rootfs("signals_are_forwarded_to_the_command") else {
        return;
    };
    let token = CancelToken::new();
    let mut out = Vec::new();
    // Signal once the trap is set (the command says so).
    let code = NamespaceExecutor
        .run(
            dir.path(),
            &sh("trap 'echo got-term; exit 5' TERM; echo ready; sleep 10 & wait"),
            &mut |_, d| {
                if d.starts_with(b"ready") {
                    token.send_signal(libc::SIGTERM);
                }
                out.extend_from_slice(d)
            },
            &token,
        )
        .unwrap();
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (5, "ready\ngot-term\n")
    );
}

#[test]
fn mount_target_symlink_cannot_escape_rootfs() {
    let Some(dir) = rootfs("mount_target_symlink_cannot_escape_rootfs") else {
        return;
    };
    let outside = tempfile::tempdir().unwrap();
    // The image's /data points at a host path; it must mean <rootfs><path>.
    std::os::unix::fs::symlink(outside.path(), dir.path().join("data")).unwrap();
    std::os::unix::fs::symlink(
        "/../../../../etc/rbk-test-hosts",
        dir.path().join("etc/hosts"),
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let mut spec = sh("ls /data/mnt >/dev/null && echo ok");
    spec.mounts = vec![BindMount {
        source: src.path().into(),
        target: "/data/mnt".into(),
        readonly: true,
    }];
    let (code, out, err) = run(dir.path(), &spec).unwrap();
    assert_eq!((code, out.as_str()), (0, "ok\n"), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!Path::new("/etc/rbk-test-hosts").exists());
    // The stub made through the link was inside the rootfs, and is gone.
    assert!(!dir.path().join("etc/rbk-test-hosts").exists());
    assert!(dir.path().join("etc/hosts").symlink_metadata().is_ok());
}

#[test]
fn parallel_runs_keep_their_own_output() {
    // One rootfs each, as every RUN step has its own overlay (a rootfs must
    // not be shared by concurrent runs: their mount stubs would collide).
    let dirs: Vec<_> = (0..4)
        .map(|_| rootfs("parallel_runs_keep_their_own_output"))
        .collect();
    let Some(dirs) = dirs.into_iter().collect::<Option<Vec<_>>>() else {
        return;
    };
    // Each run announces itself in a shared directory and waits (up to 10 s)
    // until it sees all four: only runs that are alive together finish with
    // "4". No run may wait for another (e.g. for another's pipes to close).
    let sync = tempfile::tempdir().unwrap();
    let script = |i: usize| {
        format!(
            "echo start {i}; touch /sync/{i}; \
             for t in $(seq 100); do [ $(ls /sync | wc -l) -ge 4 ] && break; sleep 0.1; done; \
             echo seen $(ls /sync | wc -l)"
        )
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let mut spec = sh(&script(i));
                spec.mounts = vec![BindMount {
                    source: sync.path().into(),
                    target: "/sync".into(),
                    readonly: false,
                }];
                s.spawn(move || run(dir.path(), &spec))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let (code, out, err) = h.join().unwrap().unwrap();
            assert_eq!((code, out), (0, format!("start {i}\nseen 4\n")), "{err}");
        }
    });
}

#[test]
fn init_reaps_orphans_and_exits_with_the_command() {
    let Some(dir) = rootfs("init_reaps_orphans_and_exits_with_the_command") else {
        return;
    };
    // The orphaned sleeps are reparented to init; once they exit they must
    // not stay zombies. The background `sleep 100` dies with the namespace.
    let script = "(sleep 0.1 &); (sleep 0.1 &); sleep 0.5; \
                  cat /proc/[0-9]*/stat | cut -d' ' -f3 | grep -c Z; \
                  sleep 100 & echo done";
    let start = Instant::now();
    let (code, out, err) = run(dir.path(), &sh(script)).unwrap();
    assert_eq!((code, out.as_str()), (0, "0\ndone\n"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn tty_mode_gives_the_command_a_terminal() {
    let Some(dir) = rootfs("tty_mode_gives_the_command_a_terminal") else {
        return;
    };
    let mut spec =
        sh("test -t 0 && test -t 1 && echo tty; stty size >/dev/null && echo sized; exit 4");
    spec.tty = true;
    let (code, out, _) = run(dir.path(), &spec).unwrap();
    assert_eq!(code, 4);
    assert!(out.starts_with("tty\r\n"), "{out:?}");
}

#[test]
fn command_has_dockers_capabilities_and_a_readonly_proc_sys() {
    let Some(dir) = rootfs("command_has_dockers_capabilities_and_a_readonly_proc_sys") else {
        return;
    };
    let script = "grep -E '^Cap(Bnd|Eff|Inh)' /proc/self/status | tr -d '\\t'; \
                  echo x 2>/dev/null > /proc/sys/kernel/hostname || echo sys-ro; \
                  mount -t tmpfs t /tmp 2>/dev/null || echo no-mount; \
                  for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do \
                  [ -f $f ] && wc -c < $f; done | grep -vcx 0 || true";
    let (code, out, err) = run(dir.path(), &sh(script)).unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CapInh:0000000000000000\nCapEff:00000000a80425fb\nCapBnd:00000000a80425fb\n\
         sys-ro\nno-mount\n0\n"
    );
}

#[test]
fn large_output_arrives_whole_and_sigpipe_is_default() {
    let Some(dir) = rootfs("large_output_arrives_whole_and_sigpipe_is_default") else {
        return;
    };
    // rbk ignores SIGPIPE (Rust does); the command must not inherit that,
    // or `yes | head` would spin on EPIPE instead of dying of SIGPIPE.
    let script = "(yes; echo \"yes:$?\" >&2) | head -c 1; echo; yes abcdefghi | head -c 4000000";
    let (code, out, err) = run(dir.path(), &sh(script)).unwrap();
    assert_eq!(code, 0);
    assert_eq!(err, "yes:141\n");
    assert_eq!(out.len(), 2 + 4_000_000);
    assert!(out.ends_with("abcdefghi\nabcdefghi\n"));
}

/// Set in the child process of `container_dies_with_rbk`.
const HELPER_ENV: &str = "RBK_SANDBOX_KILL_HELPER";
/// Where that child keeps the run's own files (rbk: the store's `tmp/`).
const HELPER_SCRATCH_ENV: &str = "RBK_SANDBOX_KILL_HELPER_SCRATCH";

/// Not a test on its own: `container_dies_with_rbk` runs the test binary with
/// only this test and `HELPER_ENV` set, to play an rbk that gets SIGKILLed.
#[test]
fn kill_helper_runs_a_long_container() {
    let Ok(root) = std::env::var(HELPER_ENV) else {
        return;
    };
    let spec = ExecSpec {
        scratch: std::env::var_os(HELPER_SCRATCH_ENV).map(Into::into),
        ..sh("touch /tmp/started; sleep 100 & sleep 100")
    };
    let _ = NamespaceExecutor.run(Path::new(&root), &spec, &mut |_, _| {}, &CancelToken::new());
}

#[test]
fn container_dies_with_rbk() {
    let Some(dir) = rootfs("container_dies_with_rbk") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sandbox::kill_helper_runs_a_long_container",
            "--nocapture",
        ])
        .env(HELPER_ENV, dir.path())
        .env(HELPER_SCRATCH_ENV, scratch.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = dir.path().join("tmp/started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the helper's container never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    helper.kill().unwrap();
    helper.wait().unwrap();
    // Every process running the rootfs's busybox must be gone soon.
    let exe = dir.path().join("bin/busybox");
    let survivors = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|l| l == exe))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while survivors() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} container processes survived rbk",
            survivors()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let root = dir.path().to_string_lossy().into_owned();
    assert!(!mountinfo().contains(&root));
    // The killed run's own files are where it was told to keep them (for
    // rbk, where the next command sweeps), not in the system's tmp.
    let left = std::fs::read_dir(scratch.path()).unwrap().count();
    assert_eq!(left, 1, "the run's files are not in its scratch directory");
}

#[test]
fn rbk_signals_reach_the_container_through_the_forwarder() {
    let Some(dir) = rootfs("rbk_signals_reach_the_container_through_the_forwarder") else {
        return;
    };
    let token = CancelToken::new();
    let forwarder = rbk_runtime::sandbox::forward_signals(&token).unwrap();
    let mut out = Vec::new();
    // Once the trap is set, someone sends rbk a SIGINT.
    let code = NamespaceExecutor
        .run(
            dir.path(),
            &sh("trap 'echo got-int; exit 6' INT; echo ready; sleep 10 & wait"),
            &mut |_, d| {
                if d.starts_with(b"ready") {
                    let status = std::process::Command::new("kill")
                        .args(["-INT", &std::process::id().to_string()])
                        .status()
                        .unwrap();
                    assert!(status.success());
                }
                out.extend_from_slice(d)
            },
            &token,
        )
        .unwrap();
    drop(forwarder);
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (6, "ready\ngot-int\n")
    );
    assert!(!token.is_cancelled());
}

/// Set in the child process of `stdin_is_passed_through`: `pipe` or `tty`.
const STDIN_HELPER_ENV: &str = "RBK_SANDBOX_STDIN_HELPER";

/// Not a test on its own: `stdin_is_passed_through` runs the test binary
/// with only this test, `STDIN_HELPER_ENV` and a piped stdin, to play `rbk
/// run -i` / `-it`. Prints the container's output between markers.
#[test]
fn stdin_helper_runs_a_reader() {
    let Ok(mode) = std::env::var(STDIN_HELPER_ENV) else {
        return;
    };
    let Some(dir) = rootfs("stdin_helper_runs_a_reader") else {
        return;
    };
    let script = match mode.as_str() {
        // Writes a lot without reading its (flooded) input.
        "flood" => {
            "stty raw -echo; sleep 0.3; head -c 300000 /dev/zero | tr '\\0' x; echo; echo done"
        }
        _ => "read a; read b; echo \"got $a $b\"; cat >/dev/null; echo eof",
    };
    let mut spec = sh(script);
    spec.stdin = rbk_runtime::sandbox::StdinMode::Inherit;
    spec.tty = mode != "pipe";
    let (code, out, err) = run(dir.path(), &spec).unwrap();
    println!("<<<{code}|{out}|{err}>>>");
}

#[test]
fn stdin_is_passed_through() {
    if rootfs("stdin_is_passed_through").is_none() {
        return;
    }
    for mode in ["pipe", "tty"] {
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sandbox::stdin_helper_runs_a_reader",
                "--nocapture",
            ])
            .env(STDIN_HELPER_ENV, mode)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = helper.stdin.take().unwrap();
            stdin.write_all(b"one\ntwo\nrest\n").unwrap();
        } // Closing stdin must end `cat` in the container (EOF, or ^D on a tty).
        let out = wait_with_timeout(helper, Duration::from_secs(20));
        let text = String::from_utf8_lossy(&out.stdout);
        let start = text.find("<<<").unwrap_or_else(|| panic!("{mode}: {text}"));
        let report = &text[start..];
        let want = match mode {
            "pipe" => "<<<0|got one two\neof\n|>>>",
            // The terminal echoes the input and translates \n to \r\n.
            _ => "got one two\r\neof\r\n",
        };
        assert!(report.contains(want), "{mode}: {report:?}");
        assert!(report.starts_with("<<<0|"), "{mode}: {report:?}");
    }
}

/// Unmounts an overlay made by a test, even when the test fails.
struct OverlayGuard(PathBuf);

impl Drop for OverlayGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn mount_stubs_never_reach_an_overlay_upper_dir() {
    let Some(lower) = rootfs("mount_stubs_never_reach_an_overlay_upper_dir") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (upper, work, merged) = (
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.path().display(),
        upper.display(),
        work.display()
    );
    let mounted = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED mount_stubs_never_reach_an_overlay_upper_dir: no overlayfs");
        return;
    }
    let guard = OverlayGuard(merged.clone());
    let host = tempfile::tempdir().unwrap();
    let mut spec = sh("echo x > /tmp/new && ls /proc/self /data/in /dev/null >/dev/null");
    spec.mounts = vec![BindMount {
        source: host.path().into(),
        target: "/data/in".into(),
        readonly: false,
    }];
    let (code, _, err) = run(&merged, &spec).unwrap();
    assert_eq!(code, 0, "{err}");
    drop(guard);
    // Only what the command wrote (and the directories it had to copy up
    // for that) is in the layer: no /proc, /dev, /sys, /data, hosts or
    // resolv.conf stubs, and no whiteouts for them.
    let got: Vec<String> = tree(&upper)
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p != "etc") // copied up to hold the (removed) stubs
        .collect();
    assert_eq!(got, ["tmp", "tmp/new"]);
}

/// Waits for a helper process (reading its stdout meanwhile), killing it
/// (and failing) after `limit`.
fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("helper process hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: Vec::new(),
    }
}

#[test]
fn tty_output_flows_while_input_is_not_read() {
    if rootfs("tty_output_flows_while_input_is_not_read").is_none() {
        return;
    }
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sandbox::stdin_helper_runs_a_reader",
            "--nocapture",
        ])
        .env(STDIN_HELPER_ENV, "flood")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = helper.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // Fails with EPIPE once the helper is done; that is fine.
        let _ = stdin.write_all(&vec![b'y'; 300_000]);
    });
    let out = wait_with_timeout(helper, Duration::from_secs(20));
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Before the master was non-blocking, rbk blocked writing input the
    // command never read while the command blocked writing output: a hang.
    let report = &text[text.find("<<<").unwrap()..text.find(">>>").unwrap()];
    assert!(
        report.starts_with("<<<0|"),
        "{}",
        &report[..20.min(report.len())]
    );
    // (raw mode: no \r added)
    assert!(
        report.contains("x\ndone\n"),
        "{}",
        &report[report.len().saturating_sub(80)..]
    );
    assert_eq!(report.bytes().filter(|b| *b == b'x').count(), 300_000);
}
