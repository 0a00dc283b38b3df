//! The store's disk as it is in the world: mounted read-only (a shared CI
//! cache), full, or left with what a killed process was writing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use crate::build::{busybox_and_context, rbk, succeed, tar_dir};
use crate::{skip, stderr, stdout};

/// Runs `rbk --root STORE ARGS` in a private mount namespace in which
/// `setup` (a shell snippet, `$S` the store) has changed the store's
/// mounts; the namespace and its mounts go with the process.
fn in_namespace(store: &Path, setup: &str, args: &[&str]) -> Output {
    let script = format!("{setup} || exit 99; exec \"$@\"");
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(crate::rbk_bin())
        .arg("--root")
        .arg(store)
        .args(args)
        .env("S", store)
        .env_remove("RBK_ROOT")
        .output()
        .unwrap()
}

/// Whether this machine can make private mount namespaces (root, unshare).
fn namespaces(test: &str) -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        skip(
            test,
            "needs root and unshare(1) for a private mount namespace",
        );
    }
    ok
}

const READ_ONLY: &str = r#"mount --bind "$S" "$S" && mount -o remount,bind,ro "$S""#;

#[test]
fn a_read_only_store_serves_reads_and_refuses_changes_clearly() {
    let test = "a_read_only_store_serves_reads_and_refuses_changes_clearly";
    if !namespaces(test) {
        return;
    }
    let Some((dir, store, ctx)) = busybox_and_context(
        test,
        &[
            ("Dockerfile", "FROM localhost/busybox\nCOPY f /f\n"),
            ("f", "x"),
        ],
    ) else {
        return;
    };
    succeed(rbk(&store).arg("build").arg("-t").arg("app").arg(&ctx));
    let rw = dir.path().join("rw.tar");
    succeed(rbk(&store).args(["save", "-o"]).arg(&rw).arg("app"));
    let ro = |args: &[&str]| {
        let out = in_namespace(&store, READ_ONLY, args);
        assert_ne!(out.status.code(), Some(99), "cannot mount read-only");
        out
    };
    for args in [
        &["images"][..],
        &["inspect", "app"],
        &["system", "check"],
        &["history", "app"],
    ] {
        let out = ro(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(stdout(&ro(&["images"])).contains("app"));
    // The built layer is kept only as its snapshot: saving it from a
    // read-only store makes it outside the store, byte for byte the same.
    let saved = dir.path().join("ro.tar");
    let out = ro(&["save", "-o", saved.to_str().unwrap(), "app"]);
    assert!(out.status.success(), "save: {}", stderr(&out));
    assert_eq!(std::fs::read(&saved).unwrap(), std::fs::read(&rw).unwrap());
    for args in [
        &["tag", "app", "app2"][..],
        &["rmi", "app"],
        &["image", "prune"],
    ] {
        let out = ro(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} changed a read-only store");
        assert!(
            err.contains(&format!("the store at {} is read-only", store.display())),
            "{args:?}: {err}"
        );
    }
    let out = ro(&["load", "-i", rw.to_str().unwrap()]);
    assert!(stderr(&out).contains("is read-only"), "{}", stderr(&out));
}

#[test]
fn import_onto_a_full_disk_blames_the_disk_not_the_archive() {
    let test = "import_onto_a_full_disk_blames_the_disk_not_the_archive";
    if !namespaces(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    // 8 MiB that no compression shrinks, onto a 4 MiB disk.
    std::fs::write(rootfs.join("big"), noise(8 << 20)).unwrap();
    let tarball = dir.path().join("rootfs.tar");
    tar_dir(&rootfs, &tarball);
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let tmpfs = r#"mount -t tmpfs -o size=4m rbk-full "$S""#;
    // And the same image as an archive to load.
    let source = dir.path().join("source");
    succeed(rbk(&source).arg("import").arg(&tarball).arg("big"));
    let archive = dir.path().join("big-image.tar");
    succeed(rbk(&source).args(["save", "-o"]).arg(&archive).arg("big"));
    let (tarball, archive) = (tarball.to_str().unwrap(), archive.to_str().unwrap());
    let runs: [&[&str]; 3] = [
        &["import", "--compression", "none", tarball, "big"],
        &["import", "--compression", "gzip", tarball, "big"],
        &["load", "-i", archive],
    ];
    for args in runs {
        let compression = args.join(" ");
        let out = in_namespace(&store, tmpfs, args);
        assert_ne!(out.status.code(), Some(99), "cannot mount a tmpfs");
        let err = stderr(&out);
        assert!(!out.status.success(), "{compression}: {err}");
        assert!(
            err.contains(&format!(
                "no space left on the store's disk at {}",
                store.display()
            )),
            "{compression}: {err}"
        );
        assert!(!err.contains("archive"), "{compression}: {err}");
    }
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0, "tmpfs gone");
}

/// `len` bytes that no compression shrinks.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The files in `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn what_a_killed_save_left_is_swept_by_the_next_command() {
    let test = "what_a_killed_save_left_is_swept_by_the_next_command";
    if !nix::unistd::geteuid().is_root() {
        skip(test, "needs root (rbk as another user runs rootless)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("big"), noise(64 << 20)).unwrap();
    let tarball = dir.path().join("rootfs.tar");
    tar_dir(&rootfs, &tarball);
    let store = dir.path().join("store");
    succeed(rbk(&store).arg("import").arg(&tarball).arg("big"));
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("big.tar");
    let partial = "big.tar.rbk-partial-";
    // Killed as soon as its partial file appears: mid-way through 64 MiB.
    let mut left = Vec::new();
    for _ in 0..5 {
        let mut child = rbk(&store)
            .args(["save", "-o"])
            .arg(&dest)
            .arg("big")
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while named(&out, partial).is_empty() && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        left = named(&out, partial);
        if !left.is_empty() && !dest.exists() {
            break;
        }
    }
    assert!(!left.is_empty(), "no save was killed mid-way");
    // Also a dead process's lease, and a partial file of a pid since
    // reused (ours, another start time).
    let leases = store.join("leases");
    std::fs::create_dir_all(&leases).unwrap();
    let blob = format!("blob sha256:{}\n", "0".repeat(64));
    std::fs::write(leases.join("4194305-1"), blob).unwrap();
    let reused = out.join(format!("{partial}{}-1", std::process::id()));
    std::fs::write(&reused, "half").unwrap();
    let check = rbk(&store).args(["system", "check"]).output().unwrap();
    assert!(check.status.success(), "{}", stdout(&check));
    assert!(!leases.join("4194305-1").exists());
    succeed(rbk(&store).args(["save", "-o"]).arg(&dest).arg("big"));
    assert_eq!(named(&out, partial), Vec::<String>::new());
    assert!(dest.exists());
}
