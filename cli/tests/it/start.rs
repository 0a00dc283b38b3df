//! `rbk start` runs an exited container again, as `docker start`: its
//! command, flags, name and files (its layer is kept until `rbk rm`), its
//! log going on; `-a` waits and passes the exit code on.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::build::rbk;
use crate::containers::{ok, text, BusyboxStore};

fn wait_exited(store: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(Instant::now() < deadline, "it never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn start_runs_an_exited_container_again() {
    let Some(b) = BusyboxStore::new("start_runs_an_exited_container_again") else {
        return;
    };
    let store = &b.store;
    let id = b.run_detached("job", &["-e", "X=5", "-v", "/vol"], &["sh", "-c", "echo ran $X; echo x >> /runs; echo y >> /vol/n; busybox cat /runs /vol/n | busybox wc -l; exit 4"]);
    wait_exited(store);
    assert_eq!(ok(store, &["start", "job"]), "job\n");
    wait_exited(store);
    // Its files are the ones it left, in its layer and its anonymous
    // volume: /runs and /vol/n grow.
    assert_eq!(ok(store, &["logs", "job"]), "ran 5\n2\nran 5\n4\n");
    // -a: its output, then its exit code.
    let out = rbk(store).args(["start", "-a", "job"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran 5\n6\n");
    let all = ok(store, &["ps", "-a"]);
    assert!(
        all.contains(id.trim()) && all.contains("Exited (4)"),
        "{all}"
    );
    // The kept layer is no leftover for `system check`; rm takes it.
    let check = rbk(store).args(["system", "check"]).output().unwrap();
    assert!(check.status.success(), "{}", text(&check));
    let layers = || {
        std::fs::read_dir(store.join("snapshots"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
            .count()
    };
    assert_eq!(layers(), 1);
    let volumes = || std::fs::read_dir(store.join("volumes")).unwrap().count();
    assert_eq!(volumes(), 1);
    ok(store, &["rm", "job"]);
    assert_eq!(layers(), 0, "rm removes the container's layer");
    assert_eq!(volumes(), 0, "rm removes the container's anonymous volumes");
    // A missing container.
    let missing = rbk(store).args(["start", "nothing"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("no such container: nothing"));
}

#[test]
fn start_of_a_running_container_changes_nothing() {
    let Some(b) = BusyboxStore::new("start_of_a_running_container_changes_nothing") else {
        return;
    };
    let store = &b.store;
    b.run_detached("up", &[], &["sleep", "60"]);
    let before = ok(store, &["ps", "-q"]);
    assert_eq!(ok(store, &["start", "up"]), "up\n");
    assert_eq!(ok(store, &["ps", "-q"]), before);
    ok(store, &["stop", "-t", "1", "up"]);
    ok(store, &["start", "up"]);
    assert_eq!(ok(store, &["ps", "-q"]), before, "running again, same id");
}

/// As Docker, `start` runs the container's own image even after its name
/// moved to another, and `ps` still shows the name it was started with.
#[test]
fn start_runs_the_image_the_container_was_made_from() {
    let Some(b) = BusyboxStore::new("start_runs_the_image_the_container_was_made_from") else {
        return;
    };
    let store = &b.store;
    ok(
        store,
        &["tag", "localhost/busybox:latest", "localhost/app:1"],
    );
    ok(
        store,
        &[
            "run",
            "-d",
            "--name",
            "pinned",
            "localhost/app:1",
            "sh",
            "-c",
            "echo \"[$NEW]\"",
        ],
    );
    wait_exited(store);
    let tar = b.dir.path().join("busybox.tar");
    ok(
        store,
        &[
            "import",
            tar.to_str().unwrap(),
            "localhost/app:1",
            "--change",
            "ENV NEW=2",
        ],
    );
    let out = rbk(store).args(["start", "-a", "pinned"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[]\n",
        "{}",
        text(&out)
    );
    let all = ok(store, &["ps", "-a"]);
    assert!(all.contains("localhost/app:1"), "{all}");
}
