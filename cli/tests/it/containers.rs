//! Detached containers, in Docker's words: `run -d` with `-p`, `ps`,
//! `logs`, `stop` (nothing of the container outlives it), `rm`, names,
//! `--restart on-failure`.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::build::{rbk, store_with_busybox};

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn ok(store: &Path, args: &[&str]) -> String {
    let out = rbk(store).args(args).output().unwrap();
    assert!(out.status.success(), "rbk {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A store holding `localhost/busybox:latest` (`store_with_busybox`) whose
/// containers are all removed when it is dropped, so a failing test leaves
/// no detached container running.
pub(crate) struct BusyboxStore {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: PathBuf,
}

impl BusyboxStore {
    /// None, the reason printed, when this host cannot run `test`.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let dir = store_with_busybox(test)?;
        let store = dir.path().join("store");
        Some(Self { dir, store })
    }

    /// `rbk run -d --name NAME OPTIONS… localhost/busybox:latest COMMAND…`;
    /// its output, the container's id.
    pub(crate) fn run_detached(&self, name: &str, options: &[&str], command: &[&str]) -> String {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(options);
        args.push("localhost/busybox:latest");
        args.extend_from_slice(command);
        ok(&self.store, &args)
    }
}

impl Drop for BusyboxStore {
    fn drop(&mut self) {
        let Ok(out) = rbk(&self.store).args(["ps", "-a", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = rbk(&self.store).args(["rm", "-f", id]).output();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on the host's port, retried until `deadline`.
fn get(port: u16, deadline: Instant) -> Option<String> {
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            if body.contains("200") {
                return Some(body);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker) && !c.contains("cargo") && !c.contains("/it-"))
        .collect()
}

/// `rbk rm` of the stopped container `id`, named web, forgets it and frees
/// its name; a running one needs -f; the store holds nothing left over.
fn rm_frees_the_name_and_leaves_nothing(b: &BusyboxStore, id: &str) {
    let store = &b.store;
    ok(store, &["rm", "web"]);
    assert!(!ok(store, &["ps", "-a"]).contains(id));
    let again = b.run_detached("web", &[], &["sleep", "60"]);
    let running = rbk(store).args(["rm", "web"]).output().unwrap();
    assert_eq!(
        running.status.code(),
        Some(1),
        "rm of a running container needs -f"
    );
    ok(store, &["rm", "-f", "web"]);
    assert!(!ok(store, &["ps", "-a"]).contains(again.trim()));
    let (_, report) = crate::shared_store_check(store);
    assert_eq!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "unreachable")
            .count(),
        0,
        "{report:#}"
    );
}

#[test]
fn a_detached_container_serves_logs_and_stops_without_leftovers() {
    let Some(b) = BusyboxStore::new("a_detached_container_serves_logs_and_stops") else {
        return;
    };
    let store = &b.store;
    let port = free_port();
    let marker = format!("rbk-test-marker-{port}");
    let script = format!(
        "echo serving; mkdir -p /www && echo hi > /www/index.html && exec /bin/busybox httpd -f -p 8000 -h /www # {marker}"
    );
    let publish = format!("127.0.0.1:{port}:8000");
    let id = b.run_detached("web", &["-p", &publish], &["sh", "-c", &script]);
    let id = id.trim();
    assert_eq!(id.len(), 12, "{id}");
    let Some(body) = get(port, Instant::now() + Duration::from_secs(20)) else {
        let logs = rbk(store).args(["logs", "web"]).output().unwrap();
        let ps = rbk(store).args(["ps", "-a"]).output().unwrap();
        panic!(
            "nothing answered on port {port}:\n{}\n{}",
            text(&logs),
            text(&ps)
        );
    };
    assert!(body.ends_with("hi\n"), "{body}");
    let ps = ok(store, &["ps"]);
    assert!(
        ps.contains(id) && ps.contains("web") && ps.contains("Up"),
        "{ps}"
    );
    assert!(ps.contains(&format!("127.0.0.1:{port}->8000/tcp")), "{ps}");
    assert_eq!(ok(store, &["logs", "web"]), "serving\n");
    // A second container cannot take the name.
    let dup = rbk(store)
        .args([
            "run",
            "-d",
            "--name",
            "web",
            "localhost/busybox:latest",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(125), "{}", text(&dup));
    assert!(text(&dup).contains("is in use"), "{}", text(&dup));
    assert!(
        !processes_with(&marker).is_empty(),
        "the server is not running"
    );
    ok(store, &["stop", "-t", "5", "web"]);
    assert!(
        processes_with(&marker).is_empty(),
        "{:?}",
        processes_with(&marker)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port is still open"
    );
    assert!(!ok(store, &["ps"]).contains(id));
    let all = ok(store, &["ps", "-a"]);
    assert!(all.contains(id) && all.contains("Exited"), "{all}");
    rm_frees_the_name_and_leaves_nothing(&b, id);
}

#[test]
fn on_failure_restarts_up_to_its_limit() {
    let Some(b) = BusyboxStore::new("on_failure_restarts_up_to_its_limit") else {
        return;
    };
    let store = &b.store;
    b.run_detached(
        "flaky",
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo ran; exit 3"],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(Instant::now() < deadline, "it never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = ok(store, &["logs", "flaky"]);
    assert_eq!(logs.matches("ran\n").count(), 3, "{logs}");
    assert!(ok(store, &["ps", "-a"]).contains("Exited (3)"));
    let bad = rbk(store)
        .args([
            "run",
            "--restart",
            "always",
            "localhost/busybox:latest",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(125));
    assert!(text(&bad).contains("on-failure"), "{}", text(&bad));
}

#[test]
fn a_portless_publish_gets_a_free_host_port() {
    let Some(b) = BusyboxStore::new("a_portless_publish_gets_a_free_host_port") else {
        return;
    };
    let store = &b.store;
    let script =
        "mkdir -p /www && echo hi > /www/index.html && exec /bin/busybox httpd -f -p 8000 -h /www";
    let run =
        |publish: &str, name: &str| b.run_detached(name, &["-p", publish], &["sh", "-c", script]);
    run("8000", "all");
    run("127.0.0.1::8000", "lo");
    // `rbk port` in Docker's words: `8000/tcp -> 0.0.0.0:49153`.
    let all = ok(store, &["port", "all"]);
    let host: u16 = all
        .trim()
        .strip_prefix("8000/tcp -> 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_ne!(host, 8000, "a port-less -p took the container's port");
    assert_eq!(
        ok(store, &["port", "all", "8000"]),
        format!("0.0.0.0:{host}\n")
    );
    let lo = ok(store, &["port", "lo", "8000/tcp"]);
    let lo_port: u16 = lo
        .trim()
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{lo:?}"));
    assert_ne!(lo_port, host);
    let ps = ok(store, &["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{host}->8000/tcp")), "{ps}");
    assert!(
        ps.contains(&format!("127.0.0.1:{lo_port}->8000/tcp")),
        "{ps}"
    );
    for port in [host, lo_port] {
        let body = get(port, Instant::now() + Duration::from_secs(20));
        assert!(
            body.is_some_and(|b| b.ends_with("hi\n")),
            "nothing on {port}"
        );
    }
    let none = rbk(store).args(["port", "all", "81"]).output().unwrap();
    assert!(!none.status.success());
    assert!(text(&none).contains("81/tcp"), "{}", text(&none));
}

#[test]
fn a_taken_port_fails_run_and_leaves_no_container() {
    let Some(b) = BusyboxStore::new("a_taken_port_fails_run_and_leaves_no_container") else {
        return;
    };
    let store = &b.store;
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for detach in [true, false] {
        let mut args = vec!["run"];
        if detach {
            args.push("-d");
        }
        let publish = format!("127.0.0.1:{port}:80");
        args.extend(["-p", &publish, "localhost/busybox:latest", "sleep", "60"]);
        let out = rbk(store).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("127.0.0.1:{port}"))
                && text(&out).contains("address already in use"),
            "{}",
            text(&out)
        );
        assert_eq!(ok(store, &["ps", "-a", "-q"]), "", "a container was left");
    }
}
