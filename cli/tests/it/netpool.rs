//! RUN steps on the default network, whose namespaces a build makes ahead
//! (`runtime/src/sandbox/net/pool.rs`): each step still gets a namespace
//! of its own, nothing one step does to its network reaches the next, and
//! no slirp4netns or namespace outlives rbk, even when rbk is killed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::build::{busybox_and_context, cat, rbk, succeed};

/// How long a slirp4netns may take to notice rbk has gone.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// Whether the default network can be had here (the reason when not).
fn cannot_use_the_default_network() -> Option<String> {
    rbk_runtime::sandbox::net::available()
        .err()
        .map(|e| e.to_string())
}

/// Pids of the slirp4netns processes whose environment holds `marker`
/// (rbk's, which they inherit): the ones of the rbk under test, not the
/// other tests' that may run at the same time.
fn marked_slirps(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if comm.trim() == "slirp4netns" && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// Pids of processes that hold network namespace `ns` (`net:[N]`), as
/// their own or through an open fd.
fn holders_of(ns: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let own = std::fs::read_link(e.path().join("ns/net")).ok();
        let fds = std::fs::read_dir(e.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok());
        if own.into_iter().chain(fds).any(|l| l.as_os_str() == ns) {
            out.push(pid);
        }
    }
    out
}

/// Pid of the process whose command line is exactly `argv`.
fn process_running(argv: &[&str]) -> Option<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
        (std::fs::read(e.path().join("cmdline")).ok()? == want).then_some(pid)
    })
}

/// Waits until `done` holds, failing with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn default_network_run_steps_each_get_a_fresh_namespace() {
    let test = "default_network_run_steps_each_get_a_fresh_namespace";
    if let Some(why) = cannot_use_the_default_network() {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    // Step 1 (with every capability) changes its network as far as it can:
    // an address, a route, a listening socket (seen by itself, so the
    // later check can fail). Steps 2 and 3 record what they see.
    let dockerfile = "FROM localhost/busybox:latest\n\
        RUN --security=insecure busybox readlink /proc/self/ns/net > /ns1 \
         && busybox ip addr add 10.9.9.9/32 dev lo \
         && busybox ip route add 10.8.0.0/16 dev tap0 \
         && (busybox nc -l -p 7777 >/dev/null 2>&1 &) && busybox sleep 0.3 \
         && busybox cat /proc/net/tcp /proc/net/tcp6 > /tcp1\n\
        RUN busybox readlink /proc/self/ns/net > /ns2 && busybox ip addr > /addr2 \
         && busybox ip route > /route2 && busybox cat /proc/net/tcp /proc/net/tcp6 > /tcp2\n\
        RUN busybox readlink /proc/self/ns/net > /ns3\n";
    let Some((_dir, store, ctx)) = busybox_and_context(test, &[("Dockerfile", dockerfile)]) else {
        return;
    };
    succeed(
        rbk(&store)
            .args([
                "build",
                "-q",
                "--allow",
                "security.insecure",
                "-t",
                "pool:1",
            ])
            .arg(&ctx),
    );
    let f = |name: &str| cat(&store, "pool:1", name);
    let (ns1, ns2, ns3) = (f("/ns1"), f("/ns2"), f("/ns3"));
    assert!(ns1.starts_with("net:["), "{ns1}");
    // A namespace's number may come back once it is gone; each step's was
    // made while the step before it still ran, so neighbours differ.
    assert_ne!(ns1, ns2, "steps 1 and 2 shared a network namespace");
    assert_ne!(ns2, ns3, "steps 2 and 3 shared a network namespace");
    let listening = |tcp: &str| {
        tcp.lines().any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(":1E61"))
        })
    };
    assert!(
        listening(&f("/tcp1")),
        "step 1 did not see its own listener"
    );
    assert!(
        !listening(&f("/tcp2")),
        "step 2 saw step 1's listening socket"
    );
    let (addr2, route2) = (f("/addr2"), f("/route2"));
    assert!(
        !addr2.contains("10.9.9.9"),
        "step 2 saw step 1's address: {addr2}"
    );
    assert!(
        !route2.contains("10.8.0.0"),
        "step 2 saw step 1's route: {route2}"
    );
    // Step 2 is connected all the same, by a slirp4netns of its own.
    assert!(addr2.contains("10.0.2.100"), "{addr2}");
    assert!(route2.contains("default via 10.0.2.2"), "{route2}");
}

/// Starts `rbk build` of `ctx` into `store` with `marker` in its
/// environment.
fn spawn_build(store: &Path, ctx: &Path, marker: &str) -> std::process::Child {
    let (k, v) = marker.split_once('=').unwrap();
    rbk(store)
        .args(["build", "-q", "--no-cache"])
        .arg(ctx)
        .env(k, v)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_network_pool_leaves_nothing_behind_after_a_build_or_a_kill() {
    let test = "the_network_pool_leaves_nothing_behind_after_a_build_or_a_kill";
    if let Some(why) = cannot_use_the_default_network() {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let long = "61.2345";
    let Some((dir, store, ctx)) = busybox_and_context(
        test,
        &[
            (
                "done/Dockerfile",
                "FROM localhost/busybox:latest\nRUN echo 1 > /a\nRUN sleep 1\nRUN echo 3 > /c\n",
            ),
            (
                "killed/Dockerfile",
                &format!("FROM localhost/busybox:latest\nRUN echo 1 > /a\nRUN sleep {long}\n"),
            ),
        ],
    ) else {
        return;
    };
    let marker = format!("RBK_TEST_NETPOOL={}", dir.path().display());

    // A build that ends: its slirp4netns (the steps' and the spare one made
    // ahead) are seen while it runs, and all gone once rbk has exited.
    let child = spawn_build(&store, &ctx.join("done"), &marker);
    wait_until(GONE_WITHIN, "a slirp4netns of the build", || {
        !marked_slirps(&marker).is_empty()
    });
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(GONE_WITHIN, "no slirp4netns left after the build", || {
        marked_slirps(&marker).is_empty()
    });

    // rbk killed while a step runs: the step's slirp4netns and the spare's
    // go, the step's processes go, and nothing holds its namespace.
    let mut child = spawn_build(&store, &ctx.join("killed"), &marker);
    let argv = ["sleep", long];
    wait_until(Duration::from_secs(30), "the step running", || {
        process_running(&argv).is_some() || child.try_wait().unwrap().is_some()
    });
    let sleeper = process_running(&argv).expect("the step ran");
    let ns = std::fs::read_link(format!("/proc/{sleeper}/ns/net")).unwrap();
    let ns = ns.to_string_lossy().into_owned();
    assert_ne!(
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .to_string_lossy(),
        ns,
        "the step ran in the host's network namespace"
    );
    wait_until(
        GONE_WITHIN,
        "the step's and the spare's slirp4netns",
        || marked_slirps(&marker).len() >= 2,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    wait_until(
        GONE_WITHIN,
        "no slirp4netns left after rbk was killed",
        || marked_slirps(&marker).is_empty(),
    );
    wait_until(GONE_WITHIN, "the step's processes gone", || {
        process_running(&argv).is_none()
    });
    wait_until(GONE_WITHIN, "nothing holding the step's namespace", || {
        holders_of(&ns).is_empty()
    });
    // The store is usable afterwards: nothing of the kill in the way.
    let out = spawn_build(&store, &ctx.join("done"), &marker)
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
