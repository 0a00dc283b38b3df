//! Hostile images against both snapshotters: what an image's layers hold
//! (setuid binaries, symlinked parents, hard links into lower layers) must
//! never reach outside the snapshot or other local users.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rbk_store::compress::Compression;
use rbk_store::layer;
use rbk_store::sys;

use super::layer_snapshot::{each_backend, open};

/// A layer tar of the directory `build` fills.
fn tar_of(build: impl FnOnce(&Path)) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    build(src.path());
    let mut out = Vec::new();
    layer::tar_dir(src.path(), &mut out, Compression::None).unwrap();
    out
}

/// What `stat PATH` says when run as uid/gid 65534 without groups.
fn stat_as_nobody(path: &Path) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let out = Command::new("stat")
        .arg(path)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn setuid_binaries_of_an_image_are_out_of_other_users_reach() {
    let test = "setuid_binaries_of_an_image_are_out_of_other_users_reach";
    if !sys::is_root() {
        eprintln!("SKIPPED: {test}: needs root (to become uid 65534)");
        return;
    }
    each_backend(test, |b, dir| {
        // A parent other users may pass through, as /var/lib is.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.join("rbk");
        rbk_store::Store::open(&root).unwrap();
        let snap = open(b, &root.join("snapshots"));
        let tar = tar_of(|src| {
            let bin = src.join("suid-id");
            fs::copy("/usr/bin/id", &bin).unwrap();
            fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
        });
        snap.apply_layer("suid", None, &mut &tar[..], None).unwrap();
        let bin = snap.upper_dir("suid").unwrap().join("suid-id");
        assert_eq!(
            std::os::unix::fs::MetadataExt::mode(&fs::metadata(&bin).unwrap()),
            0o104755
        );
        let (ok, err) = stat_as_nobody(&bin);
        assert!(!ok, "{b:?}: uid 65534 reaches {}", bin.display());
        assert!(err.contains("Permission denied"), "{b:?}: {err}");
        let (ok, _) = stat_as_nobody(&root.join("snapshots"));
        assert!(!ok, "{b:?}: uid 65534 reaches the snapshots");
    });
}

#[test]
fn an_existing_open_store_is_tightened_when_its_owner_opens_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rbk");
    fs::create_dir_all(root.join("snapshots")).unwrap();
    for d in [&root, &root.join("snapshots")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    rbk_store::Store::open(&root).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o710);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
}
