//! `rbk cp` between a running container and the host, as `docker cp`; and
//! symlinks of the container that point out of it never reach the host.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::build::rbk;
use crate::containers::{ok, text, BusyboxStore};

fn cp(store: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = rbk(store).arg("cp").args(args).output().unwrap();
    (out.status.code(), text(&out))
}

/// Starts `script` in a detached container named `name`, then `sleep 60`.
fn start(b: &BusyboxStore, name: &str, script: &str) {
    let line = format!("{script} && echo ready && exec sleep 60");
    b.run_detached(name, &[], &["sh", "-c", &line]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ok(&b.store, &["logs", name]) != "ready\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not get ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn cp_copies_files_and_directories_both_ways() {
    let Some(b) = BusyboxStore::new("cp_copies_files_and_directories_both_ways") else {
        return;
    };
    let store = &b.store;
    start(
        &b,
        "box",
        "busybox mkdir -p /data/sub && echo one > /data/sub/f && busybox chown 123:45 /data/sub/f \
         && busybox ln -s sub/f /data/link",
    );
    let out = b.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let out_s = out.to_str().unwrap();
    // A file into an existing directory keeps its name.
    let (code, said) = cp(store, &["box:/data/sub/f", out_s]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Successfully copied"), "{said}");
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "one\n");
    // A directory into an existing one, -a keeping owners; links stay links.
    assert_eq!(cp(store, &["-a", "box:/data", out_s]).0, Some(0));
    let f = out.join("data/sub/f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "one\n");
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (123, 45));
    assert_eq!(
        std::fs::read_link(out.join("data/link")).unwrap(),
        Path::new("sub/f")
    );
    // DIR/. copies the content; a new destination becomes the directory.
    let content = out.join("content");
    assert_eq!(
        cp(store, &["box:/data/.", content.to_str().unwrap()]).0,
        Some(0)
    );
    assert!(content.join("sub/f").is_file());
    // Into the container: a file, a tree, root-owned without -a.
    let host = b.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/deep")).unwrap();
    std::fs::write(host.join("tree/deep/g"), "two\n").unwrap();
    std::fs::write(host.join("h"), "three\n").unwrap();
    assert_eq!(
        cp(store, &[host.join("h").to_str().unwrap(), "box:/data/"]).0,
        Some(0)
    );
    assert_eq!(
        cp(store, &[host.join("tree").to_str().unwrap(), "box:/new"]).0,
        Some(0)
    );
    let seen = ok(
        store,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "cat /data/h /new/deep/g; busybox stat -c %u /new/deep/g",
        ],
    );
    assert_eq!(seen, "three\ntwo\n0\n");
    // Errors: a missing source, a directory onto a file.
    let (code, said) = cp(store, &["box:/nothing", out_s]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("No such file"), "{said}");
    let (code, said) = cp(store, &["box:/data", out.join("f").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("cannot copy a directory to a file"), "{said}");
}

/// `ln -s / /evil` in the container: `cp c:/evil/etc/shadow` is the
/// container's own file, and a copy into `c:/evil/<host dir>` or onto a
/// planted link writes inside the container, never on the host.
#[test]
fn cp_symlink_cannot_escape_the_container() {
    let Some(b) = BusyboxStore::new("cp_symlink_cannot_escape_the_container") else {
        return;
    };
    let store = &b.store;
    // A host directory the container will aim at by its host path.
    let victim = b.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host\n").unwrap();
    let v = victim.to_str().unwrap();
    start(
        &b,
        "evil",
        &format!(
            "echo container-shadow > /etc/shadow && busybox ln -s / /evil \
             && busybox ln -s ../../../../../../../.. /up && busybox ln -s {v}/keep /tmp/trap \
             && busybox ln -s {v} /victim"
        ),
    );
    let out = b.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for src in [
        "evil:/evil/etc/shadow",
        "evil:/up/etc/shadow",
        "evil:/up/../etc/shadow",
    ] {
        let got = out.join("shadow");
        let _ = std::fs::remove_file(&got);
        let (code, said) = cp(store, &[src, got.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{src}: {said}");
        assert_eq!(
            std::fs::read_to_string(&got).unwrap(),
            "container-shadow\n",
            "{src}"
        );
    }
    // The victim's path does not exist in the container: nothing to read.
    let (code, said) = cp(store, &["evil:/victim/keep", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{said}");
    let (code, said) = cp(
        store,
        &["evil:/tmp/trap", out.join("trap").to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(out.join("trap").is_symlink(), "a link is copied as a link");
    let (code, said) = cp(
        store,
        &["-L", "evil:/tmp/trap", out.join("t2").to_str().unwrap()],
    );
    assert_eq!(
        code,
        Some(1),
        "-L follows inside the container only: {said}"
    );
    // Writing through the links.
    let payload = b.dir.path().join("payload");
    std::fs::write(&payload, "pwned\n").unwrap();
    let p = payload.to_str().unwrap();
    let _ = cp(store, &[p, &format!("evil:/evil{v}/")]);
    let _ = cp(store, &[p, "evil:/victim/"]);
    let _ = cp(store, &[p, &format!("evil:/up{v}/keep")]);
    assert_eq!(cp(store, &[p, "evil:/tmp/trap"]).0, Some(0));
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "host\n"
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        1,
        "nothing new on the host"
    );
    assert_eq!(ok(store, &["exec", "evil", "cat", "/tmp/trap"]), "pwned\n");
}

/// A stopped container keeps its layer (as with Docker): cp reads and
/// writes it, and `start` finds what cp put there.
#[test]
fn cp_works_on_a_stopped_container() {
    let Some(b) = BusyboxStore::new("cp_works_on_a_stopped_container") else {
        return;
    };
    let store = &b.store;
    let (code, said) = cp(store, &["ghost:/etc/passwd", "."]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no such container: ghost"), "{said}");
    b.run_detached(
        "gone",
        &[],
        &[
            "sh",
            "-c",
            "cat /in 2>/dev/null || { echo made > /made; busybox ln -s / /evil; }",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(std::time::Instant::now() < deadline, "it never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = b.dir.path().join("made");
    let (code, said) = cp(store, &["gone:/evil/made", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "made\n");
    let host = b.dir.path().join("in");
    std::fs::write(&host, "copied in\n").unwrap();
    let (code, said) = cp(store, &[host.to_str().unwrap(), "gone:/in"]);
    assert_eq!(code, Some(0), "{said}");
    let started = rbk(store).args(["start", "-a", "gone"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&started.stdout),
        "copied in\n",
        "{}",
        text(&started)
    );
    // Nothing of the copy stays mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(store.to_str().unwrap()), "{mounts}");
}

/// The image a stopped container stands on may be removed and the store
/// pruned and repaired: the container's kept layer keeps its parents.
#[test]
fn a_kept_layer_survives_rmi_prune_and_repair() {
    let Some(b) = BusyboxStore::new("a_kept_layer_survives_rmi_prune_and_repair") else {
        return;
    };
    let store = &b.store;
    b.run_detached("kept", &[], &["sh", "-c", "echo data > /d"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(std::time::Instant::now() < deadline, "it never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // As Docker: the image of a container on record is not removed unforced.
    let refused = rbk(store)
        .args(["rmi", "localhost/busybox:latest"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("is using its referenced image"),
        "{}",
        text(&refused)
    );
    ok(store, &["rmi", "-f", "localhost/busybox:latest"]);
    ok(store, &["image", "prune"]);
    let repair = rbk(store)
        .args(["system", "check", "--repair"])
        .output()
        .unwrap();
    assert!(repair.status.success(), "{}", text(&repair));
    let out = b.dir.path().join("d");
    assert_eq!(cp(store, &["kept:/d", out.to_str().unwrap()]).0, Some(0));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "data\n");
    // The image's own files, from the layers under the container's.
    let bin = b.dir.path().join("busybox");
    let (code, said) = cp(store, &["kept:/bin/busybox", bin.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}");
    assert!(std::fs::metadata(&bin).unwrap().len() > 100_000);
}
