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
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(rootfs.join("big"), noise).unwrap();
    let tarball = dir.path().join("rootfs.tar");
    tar_dir(&rootfs, &tarball);
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let tmpfs = r#"mount -t tmpfs -o size=4m rbk-full "$S""#;
    for compression in ["none", "gzip"] {
        let args = [
            "import",
            "--compression",
            compression,
            tarball.to_str().unwrap(),
            "big",
        ];
        let out = in_namespace(&store, tmpfs, &args);
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
