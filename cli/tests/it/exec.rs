//! `rbk exec` into a running detached container, as `docker exec`: its
//! namespaces, its environment, the command's exit code, clear errors.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::build::rbk;
use crate::containers::{ok, text, BusyboxStore};

/// `rbk exec ARGS…`: exit code and all output.
fn exec(store: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = rbk(store).arg("exec").args(args).output().unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn exec_joins_a_running_container() {
    let Some(b) = BusyboxStore::new("exec_joins_a_running_container") else {
        return;
    };
    let store = &b.store;
    b.run_detached("sleeper", &["-e", "FROM_RUN=yes"], &["sleep", "60"]);
    // Its UTS namespace: the host name is the container's name.
    assert_eq!(
        exec(store, &["sleeper", "cat", "/etc/hostname"]),
        (Some(0), "sleeper\n".to_string())
    );
    assert_eq!(
        exec(store, &["sleeper", "busybox", "hostname"]),
        (Some(0), "sleeper\n".to_string())
    );
    // Its PID namespace: the container's sleep is there, as pid 2 under
    // rbk-init, and so is nothing of the host.
    let (code, ps) = exec(store, &["sleeper", "busybox", "ps", "-o", "pid,args"]);
    assert_eq!(code, Some(0), "{ps}");
    assert!(ps.contains("    2 sleep 60"), "{ps}");
    assert!(ps.contains("    1 rbk-init"), "{ps}");
    assert!(!ps.contains("cargo") && !ps.contains("rbk exec"), "{ps}");
    // Its environment, with -e on top.
    let (code, env) = exec(store, &["-e", "EXTRA=1", "sleeper", "busybox", "env"]);
    assert_eq!(code, Some(0), "{env}");
    assert!(
        env.contains("FROM_RUN=yes\n") && env.contains("EXTRA=1\n"),
        "{env}"
    );
    // User and working directory.
    assert_eq!(
        exec(
            store,
            &[
                "-u",
                "65534:65534",
                "-w",
                "/tmp",
                "sleeper",
                "sh",
                "-c",
                "busybox id -u; pwd"
            ]
        ),
        (Some(0), "65534\n/tmp\n".to_string())
    );
    // Docker's capabilities: root in the container cannot mount.
    let (code, out) = exec(
        store,
        &["sleeper", "busybox", "mount", "-t", "tmpfs", "x", "/tmp"],
    );
    assert_ne!(code, Some(0), "{out}");
    // The command's exit code; 127 for a missing command.
    assert_eq!(exec(store, &["sleeper", "sh", "-c", "exit 3"]).0, Some(3));
    let (code, out) = exec(store, &["sleeper", "no-such-command"]);
    assert_eq!(code, Some(127), "{out}");
    assert!(out.contains("not found"), "{out}");
    // A file written by exec is the container's.
    exec(store, &["sleeper", "sh", "-c", "echo shared > /tmp/f"]);
    assert_eq!(
        exec(store, &["sleeper", "cat", "/tmp/f"]),
        (Some(0), "shared\n".to_string())
    );
}

#[test]
fn exec_into_a_missing_or_stopped_container_fails_clearly() {
    let Some(b) = BusyboxStore::new("exec_into_a_missing_or_stopped_container") else {
        return;
    };
    let store = &b.store;
    let (code, out) = exec(store, &["nothing-here", "true"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no such container: nothing-here"), "{out}");
    b.run_detached("done", &[], &["true"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(std::time::Instant::now() < deadline, "it never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, out) = exec(store, &["done", "true"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("container done") && out.contains("is not running"),
        "{out}"
    );
}

/// `-it` gives the command a terminal of the container's own devpts, so
/// `tty` names it as in Docker (`script` gives rbk a terminal to pass on).
#[test]
fn exec_it_gives_a_terminal_of_the_container() {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("SKIPPED exec_it_gives_a_terminal_of_the_container: no script (apt-get install bsdutils)");
        return;
    }
    let Some(b) = BusyboxStore::new("exec_it_gives_a_terminal_of_the_container") else {
        return;
    };
    let store = &b.store;
    b.run_detached("term", &[], &["sleep", "60"]);
    let line = format!(
        "{} --root {} exec -it term sh -c 'busybox tty; test -t 0 && echo stdin-is-a-tty; echo $TERM'",
        crate::rbk_bin(),
        store.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("/dev/pts/0"), "{said}");
    assert!(said.contains("stdin-is-a-tty"), "{said}");
    assert!(said.contains("xterm"), "{said}");
}
