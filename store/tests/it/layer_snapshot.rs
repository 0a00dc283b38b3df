//! One test suite for every snapshotter backend (overlay, copy): each test
//! body is a generic function run once per backend.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rbk_store::compress::{self, Compression};
use rbk_store::layer::{self, ApplyMode};
use rbk_store::snapshot::{
    overlay_supported, CopySnapshotter, OverlaySnapshotter, SnapshotError, SnapshotState,
    Snapshotter,
};
use rbk_store::{mount, process};

use super::layer::{describe, entry_names, rich_tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Overlay,
    Copy,
}

pub(crate) fn open(b: Backend, root: &Path) -> Box<dyn Snapshotter> {
    match b {
        Backend::Overlay => Box::new(OverlaySnapshotter::open(root).unwrap()),
        Backend::Copy => Box::new(CopySnapshotter::open(root).unwrap()),
    }
}

/// Runs `body` for each backend this machine can run; overlay needs root and
/// kernel overlay support and says SKIPPED loudly without them.
pub(crate) fn each_backend(test: &str, body: impl Fn(Backend, &Path)) {
    for b in [Backend::Copy, Backend::Overlay] {
        if b == Backend::Overlay && !overlay_supported() {
            eprintln!("SKIPPED: {test} [overlay]: needs root and a kernel with overlayfs");
            continue;
        }
        let t = tempfile::tempdir().unwrap();
        body(b, t.path());
    }
}

/// Mounts `mounts` (as root) or uses the upper dir (copy backend without
/// root) and runs `f` on the resulting tree; always unmounts.
pub(crate) fn edit(snap: &dyn Snapshotter, key: &str, f: impl FnOnce(&Path)) {
    let mounts = snap.mounts(key).unwrap();
    if process::is_root() {
        let mp = tempfile::tempdir().unwrap();
        let guard = mount::mount_all(&mounts, mp.path()).unwrap();
        f(mp.path());
        guard.unmount().unwrap();
    } else {
        f(&snap.upper_dir(key).unwrap());
    }
}

/// The tree a read-only view of `parent` shows.
fn view_tree(
    snap: &dyn Snapshotter,
    key: &str,
    parent: &str,
) -> std::collections::BTreeMap<PathBuf, String> {
    snap.view(key, Some(parent)).unwrap();
    let mut out = None;
    edit(snap, key, |root| {
        if process::is_root() {
            assert!(
                fs::write(root.join("nope"), "x").is_err(),
                "a view must be read-only"
            );
        }
        out = Some(describe(root));
    });
    snap.remove(key).unwrap();
    out.unwrap()
}

fn diff_bytes(snap: &dyn Snapshotter, key: &str, c: Compression) -> (Vec<u8>, layer::LayerInfo) {
    let mut out = Vec::new();
    let info = snap.diff(key, &mut out, c.into()).unwrap();
    (out, info)
}

/// Three layers: a busybox rootfs, then deletions and a replaced
/// directory, then more edits. Returns the layer tars (gzip).
fn build_three(snap: &dyn Snapshotter) -> Vec<(Vec<u8>, layer::LayerInfo)> {
    let mut layers = Vec::new();
    snap.prepare("build-1", None).unwrap();
    edit(snap, "build-1", |r| {
        rich_tree(r);
        fs::create_dir_all(r.join("var/cache/old")).unwrap();
        fs::write(r.join("var/cache/old/x"), "x").unwrap();
        fs::write(r.join("var/cache/keep"), "k").unwrap();
    });
    layers.push(diff_bytes(snap, "build-1", Compression::Gzip));
    snap.commit("l1", "build-1").unwrap();

    snap.prepare("build-2", Some("l1")).unwrap();
    edit(snap, "build-2", |r| {
        fs::remove_file(r.join("etc/hostname")).unwrap();
        fs::remove_dir_all(r.join("var/cache")).unwrap();
        fs::create_dir(r.join("var/cache")).unwrap();
        fs::write(r.join("var/cache/new"), "n").unwrap();
        fs::write(r.join("etc/motd"), "welcome\n").unwrap();
    });
    layers.push(diff_bytes(snap, "build-2", Compression::Gzip));
    snap.commit("l2", "build-2").unwrap();

    snap.prepare("build-3", Some("l2")).unwrap();
    edit(snap, "build-3", |r| {
        fs::write(r.join("etc/motd"), "changed\n").unwrap();
        fs::remove_file(r.join("bin/ls")).unwrap();
        fs::create_dir_all(r.join("home/user")).unwrap();
    });
    layers.push(diff_bytes(snap, "build-3", Compression::Gzip));
    snap.commit("l3", "build-3").unwrap();
    layers
}

#[test]
fn snapshot_stack_three_layers() {
    each_backend("snapshot_stack_three_layers", |b, root| {
        let snap = open(b, &root.join("snaps"));
        let layers = build_three(&*snap);
        let top = view_tree(&*snap, "v", "l3");
        let has = |p: &str| top.contains_key(Path::new(p));
        assert!(
            has("bin/busybox") && has("bin/sh") && has("etc/motd") && has("home/user"),
            "{b:?}"
        );
        assert!(
            !has("etc/hostname")
                && !has("bin/ls")
                && !has("var/cache/old")
                && !has("var/cache/keep"),
            "{b:?}"
        );
        assert!(has("var/cache/new"), "{b:?}");
        // Applying the three diffs onto an empty dir gives the same tree.
        let plain = root.join("plain");
        fs::create_dir(&plain).unwrap();
        for (bytes, info) in &layers {
            let st = layer::apply(
                compress::decompress(&bytes[..]).unwrap(),
                &plain,
                ApplyMode::Merge,
            )
            .unwrap();
            assert_eq!(st.diff_id, info.diff_id);
        }
        assert_eq!(
            describe(&plain),
            top,
            "{b:?}: applied layers differ from the stacked snapshot"
        );
        let infos = snap.list().unwrap();
        let keys: Vec<_> = infos
            .iter()
            .map(|i| (i.key.as_str(), i.state, i.parent.as_deref()))
            .collect();
        assert_eq!(
            keys,
            [
                ("l1", SnapshotState::Committed, None),
                ("l2", SnapshotState::Committed, Some("l1")),
                ("l3", SnapshotState::Committed, Some("l2"))
            ]
        );
        assert!(
            snap.stat("l1").unwrap().size > 100_000,
            "busybox counted in l1's size"
        );
    });
}

#[test]
fn snapshot_deletes_and_opaque_dirs_become_whiteouts() {
    each_backend(
        "snapshot_deletes_and_opaque_dirs_become_whiteouts",
        |b, root| {
            let snap = open(b, &root.join("snaps"));
            let layers = build_three(&*snap);
            let names = entry_names(&layers[1].0);
            assert!(
                names.contains(&"etc/.wh.hostname".to_string()),
                "{b:?}: {names:?}"
            );
            match b {
                // overlay records `rm -rf d; mkdir d` as an opaque directory...
                Backend::Overlay => assert!(
                    names.contains(&"var/cache/.wh..wh..opq".to_string()),
                    "{names:?}"
                ),
                // ...a tree comparison sees the old children go one by one.
                Backend::Copy => {
                    assert!(
                        names.contains(&"var/cache/.wh.old".to_string()),
                        "{names:?}"
                    );
                    assert!(
                        names.contains(&"var/cache/.wh.keep".to_string()),
                        "{names:?}"
                    );
                }
            }
            assert!(names.contains(&"var/cache/new".to_string()));
            assert!(
                !names.iter().any(|n| n.starts_with("bin/busybox")),
                "unchanged files are not in layer 2: {names:?}"
            );
            let l3 = entry_names(&layers[2].0);
            assert!(
                l3.contains(&"bin/.wh.ls".to_string()) && l3.contains(&"etc/motd".to_string()),
                "{l3:?}"
            );
        },
    );
}

#[test]
fn snapshot_diff_apply_round_trip_and_determinism() {
    each_backend(
        "snapshot_diff_apply_round_trip_and_determinism",
        |b, root| {
            let src = open(b, &root.join("src"));
            let layers = build_three(&*src);
            // Same snapshot diffed twice: same bytes.
            src.prepare("again", Some("l3")).unwrap();
            assert_eq!(
                diff_bytes(&*src, "l2", Compression::Zstd).1,
                diff_bytes(&*src, "l2", Compression::Zstd).1
            );
            // Unpack the layers into another store, verifying diffIDs.
            let dst = open(b, &root.join("dst"));
            let mut parent: Option<String> = None;
            for (i, (bytes, info)) in layers.iter().enumerate() {
                let name = format!("u{i}");
                let mut r = compress::decompress(&bytes[..]).unwrap();
                let st = dst
                    .apply_layer(&name, parent.as_deref(), &mut r, Some(&info.diff_id))
                    .unwrap();
                assert_eq!(st.diff_id, info.diff_id);
                // Re-diffing an unpacked layer reproduces its diffID.
                assert_eq!(
                    diff_bytes(&*dst, &name, Compression::None).1.diff_id,
                    info.diff_id,
                    "{b:?} layer {i}"
                );
                parent = Some(name);
            }
            assert_eq!(
                view_tree(&*dst, "v", "u2"),
                view_tree(&*src, "v", "l3"),
                "{b:?}"
            );
        },
    );
}

#[test]
fn snapshot_rejected_layer_is_never_committed() {
    each_backend("snapshot_rejected_layer_is_never_committed", |b, root| {
        let dir = root.join("snaps");
        let snap = open(b, &dir);
        let mut tar = Vec::new();
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), "data").unwrap();
        let info = layer::tar_dir(t.path(), &mut tar, Compression::None).unwrap();
        let wrong = rbk_store::Digest::of(b"something else");
        let err = snap
            .apply_layer("l", None, &mut &tar[..], Some(&wrong))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::DiffIdMismatch { .. }), "{err}");
        assert!(!snap.exists("l"));
        assert_eq!(
            fs::read_dir(dir.join(".tmp")).unwrap().count(),
            0,
            "staging cleaned up"
        );
        // A hostile layer is refused the same way.
        let mut evil = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"../escape");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        evil.append(&h, &b""[..]).unwrap();
        let evil = evil.into_inner().unwrap();
        let err = snap
            .apply_layer("l", None, &mut &evil[..], None)
            .unwrap_err();
        assert!(err.to_string().contains("../escape"), "{err}");
        assert!(!snap.exists("l") && !root.join("escape").exists());
        // The right one goes through, and only once.
        snap.apply_layer("l", None, &mut &tar[..], Some(&info.diff_id))
            .unwrap();
        assert!(snap.exists("l"));
        let again = snap
            .apply_layer("l", None, &mut &tar[..], None)
            .unwrap_err();
        assert!(
            matches!(again, SnapshotError::AlreadyExists { .. }),
            "{again}"
        );
    });
}

#[test]
fn snapshot_half_made_is_not_seen_as_committed() {
    each_backend("snapshot_half_made_is_not_seen_as_committed", |b, root| {
        let dir = root.join("snaps");
        {
            let snap = open(b, &dir);
            snap.prepare("active", None).unwrap();
        }
        // What a process killed mid-commit leaves: the dir renamed to the
        // committed name, its meta still naming the active key.
        fs::rename(dir.join("active"), dir.join("l1")).unwrap();
        // And one killed mid-unpack: a staging dir (pid that cannot exist).
        fs::create_dir_all(dir.join(".tmp/999999999-0-0/fs")).unwrap();
        let snap = open(b, &dir);
        assert!(!snap.exists("l1") && !snap.exists("active"), "{b:?}");
        assert!(snap.list().unwrap().is_empty());
        assert!(
            !dir.join(".tmp/999999999-0-0").exists(),
            "dead staging swept"
        );
        snap.prepare("b1", None).unwrap();
        snap.commit("l1", "b1").unwrap();
        assert_eq!(snap.stat("l1").unwrap().state, SnapshotState::Committed);
    });
}

#[test]
fn snapshot_lifecycle_rules() {
    each_backend("snapshot_lifecycle_rules", |b, root| {
        let snap = open(b, &root.join("snaps"));
        assert!(matches!(
            snap.prepare("../x", None),
            Err(SnapshotError::InvalidKey { .. })
        ));
        assert!(matches!(
            snap.prepare("a", Some("missing")),
            Err(SnapshotError::NotFound { .. })
        ));
        snap.prepare("a", None).unwrap();
        assert!(
            matches!(
                snap.prepare("a", None),
                Err(SnapshotError::AlreadyExists { .. })
            ),
            "{b:?}"
        );
        assert!(
            matches!(
                snap.prepare("c", Some("a")),
                Err(SnapshotError::WrongState { .. })
            ),
            "parent must be committed"
        );
        snap.commit("base", "a").unwrap();
        assert!(!snap.exists("a"));
        assert!(matches!(
            snap.commit("x", "base"),
            Err(SnapshotError::WrongState { .. })
        ));
        snap.prepare("b", Some("base")).unwrap();
        snap.prepare("b2", Some("base")).unwrap();
        snap.commit("top", "b").unwrap();
        // Two builds committing the same layer: the second learns it lost.
        assert!(
            matches!(
                snap.commit("top", "b2"),
                Err(SnapshotError::AlreadyExists { .. })
            ),
            "{b:?}"
        );
        snap.remove("b2").unwrap();
        assert!(matches!(
            snap.remove("base"),
            Err(SnapshotError::HasChildren { .. })
        ));
        snap.remove("top").unwrap();
        snap.remove("base").unwrap();
        assert!(snap.list().unwrap().is_empty());
        assert!(matches!(
            snap.stat("base"),
            Err(SnapshotError::NotFound { .. })
        ));
    });
}

#[test]
fn overlay_mounts_stack_nearest_parent_first_and_refuse_deep_chains() {
    // Pure data: no root needed.
    let t = tempfile::tempdir().unwrap();
    let snap = OverlaySnapshotter::open(t.path()).unwrap();
    let empty = layer_tar();
    let mut parent: Option<String> = None;
    for i in 0..3 {
        let name = format!("l{i}");
        snap.apply_layer(&name, parent.as_deref(), &mut &empty[..], None)
            .unwrap();
        parent = Some(name);
    }
    let m = snap.prepare("act", Some("l2")).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "overlay");
    let lower = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    let resolved: Vec<PathBuf> = lower
        .split(':')
        .map(|p| fs::canonicalize(p).unwrap())
        .collect();
    let want: Vec<PathBuf> = ["l2", "l1", "l0"]
        .iter()
        .map(|k| fs::canonicalize(t.path().join(k).join("fs")).unwrap())
        .collect();
    assert_eq!(resolved, want, "lowerdirs must be nearest parent first");
    assert!(m[0].options.iter().any(|o| o.starts_with("upperdir=")));
    // Views: a single parent is a read-only bind; no parent binds empty.
    let v = snap.view("v1", Some("l0")).unwrap();
    assert_eq!(
        (v[0].kind.as_str(), v[0].options.contains(&"ro".to_string())),
        ("bind", true)
    );
    // Short links keep chains of long keys mountable...
    let long = |i: usize| format!("{i:04}{}", "k".repeat(120));
    let mut parent = String::from("l2");
    for i in 0..40 {
        snap.apply_layer(&long(i), Some(&parent), &mut &empty[..], None)
            .unwrap();
        parent = long(i);
    }
    snap.prepare("deep", Some(&parent)).unwrap();
    // ...but a chain whose lowerdir list cannot fit one page is a clear error.
    for i in 40..400 {
        snap.apply_layer(&long(i), Some(&parent), &mut &empty[..], None)
            .unwrap();
        parent = long(i);
    }
    let err = snap.prepare("deeper", Some(&parent)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::ChainTooDeep { depth: 403, .. }),
        "{err}"
    );
    assert!(
        !snap.exists("deeper"),
        "a snapshot that cannot be mounted is not left behind"
    );
}

pub(crate) fn layer_tar() -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    layer::tar_dir(t.path(), &mut out, Compression::None).unwrap();
    out
}

#[test]
fn mount_guard_unmounts_on_panic() {
    if !overlay_supported() {
        eprintln!("SKIPPED: mount_guard_unmounts_on_panic needs root and overlayfs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let snap = OverlaySnapshotter::open(&t.path().join("s")).unwrap();
    snap.apply_layer("base", None, &mut &layer_tar()[..], None)
        .unwrap();
    let mounts = snap.prepare("a", Some("base")).unwrap();
    let mp = t.path().join("mnt");
    fs::create_dir(&mp).unwrap();
    let mp2 = mp.clone();
    let r = std::panic::catch_unwind(move || {
        let _g = mount::mount_all(&mounts, &mp2).unwrap();
        assert!(is_mountpoint(&mp2));
        panic!("step failed while mounted");
    });
    assert!(r.is_err());
    assert!(
        !is_mountpoint(&mp),
        "guard must unmount when the step panics"
    );
    // A failing mount leaves nothing mounted either.
    let bad = vec![rbk_store::mount::Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: vec!["lowerdir=/nonexistent-rbk".into()],
    }];
    assert!(mount::mount_all(&bad, &mp).is_err());
    assert!(!is_mountpoint(&mp));
}

fn is_mountpoint(p: &Path) -> bool {
    let mut s = String::new();
    fs::File::open("/proc/self/mountinfo")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    let p = p.canonicalize().unwrap();
    s.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

#[test]
fn overlay_mounts_a_deep_chain_of_chain_id_keys() {
    if !overlay_supported() {
        eprintln!("SKIPPED: overlay_mounts_a_deep_chain_of_chain_id_keys needs root and overlayfs");
        return;
    }
    // 70 layers named like chain ids: their full paths alone would exceed
    // the one-page option limit; the short links keep it mountable.
    let t = tempfile::tempdir().unwrap();
    let snap = OverlaySnapshotter::open(&t.path().join("snapshots")).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..70 {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join(format!("f{i}")), i.to_string()).unwrap();
        let mut tar = Vec::new();
        layer::tar_dir(src.path(), &mut tar, Compression::None).unwrap();
        let name = rbk_store::Digest::of(i.to_string().as_bytes())
            .hex()
            .to_string();
        snap.apply_layer(&name, parent.as_deref(), &mut &tar[..], None)
            .unwrap();
        parent = Some(name);
    }
    let full: usize = snap
        .list()
        .unwrap()
        .iter()
        .map(|i| snap.upper_dir(&i.key).unwrap().as_os_str().len() + 1)
        .sum();
    assert!(
        full > mount::page_size(),
        "test must exceed the limit without links ({full})"
    );
    snap.view("v", parent.as_deref()).unwrap();
    edit(&snap, "v", |root| {
        for i in 0..70 {
            assert_eq!(
                fs::read_to_string(root.join(format!("f{i}"))).unwrap(),
                i.to_string()
            );
        }
    });
}

#[test]
fn snapshot_busybox_rootfs_runs_and_its_changes_diff() {
    let chroot = ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let (Some(chroot), true, true) = (
        chroot,
        process::is_root(),
        Path::new("/bin/busybox").exists(),
    ) else {
        eprintln!("SKIPPED: snapshot_busybox_rootfs_runs_and_its_changes_diff needs root, chroot and /bin/busybox");
        return;
    };
    each_backend(
        "snapshot_busybox_rootfs_runs_and_its_changes_diff",
        |b, root| {
            let snap = open(b, &root.join("snaps"));
            snap.prepare("base", None).unwrap();
            edit(&*snap, "base", rich_tree);
            snap.commit("l1", "base").unwrap();
            snap.prepare("run", Some("l1")).unwrap();
            edit(&*snap, "run", |r| {
                let st = std::process::Command::new(chroot)
                    .arg(r)
                    .args([
                        "/bin/sh",
                        "-c",
                        "echo hi > /etc/from-sh && rm /etc/passwd && mkdir -p /opt/app",
                    ])
                    .status()
                    .unwrap();
                assert!(st.success(), "{b:?}: busybox sh failed in the snapshot");
            });
            let mut out = Vec::new();
            snap.diff("run", &mut out, Compression::Zstd.into())
                .unwrap();
            let names = entry_names(&out);
            for want in ["etc/", "etc/.wh.passwd", "etc/from-sh", "opt/", "opt/app/"] {
                assert!(
                    names.contains(&want.to_string()),
                    "{b:?}: {want} missing from {names:?}"
                );
            }
            assert!(
                !names.iter().any(|n| n.starts_with("bin/")),
                "{b:?}: {names:?}"
            );
        },
    );
}

#[test]
fn concurrent_commits_of_one_key_leave_one_committed_snapshot() {
    // Two steps making the same change at once (the same COPY for two
    // platforms of one build did): the loser learns it lost, and the
    // winner's half-renamed directory is never cleared away as stale.
    each_backend("concurrent_commits_of_one_key", |b, root| {
        let snap = std::sync::Arc::new(open(b, &root.join("snaps")));
        for round in 0..40 {
            let key = format!("same-{round}");
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let snap = snap.clone();
                    let key = key.clone();
                    std::thread::spawn(move || {
                        let active = format!("a-{round}-{t}");
                        snap.prepare(&active, None).unwrap();
                        match snap.commit(&key, &active) {
                            Ok(()) => true,
                            Err(SnapshotError::AlreadyExists { .. }) => {
                                snap.remove(&active).unwrap();
                                false
                            }
                            Err(e) => panic!("commit {key}: {e}"),
                        }
                    })
                })
                .collect();
            let won = threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .filter(|&w| w)
                .count();
            assert_eq!(won, 1, "{b:?} round {round}");
            assert_eq!(snap.stat(&key).unwrap().state, SnapshotState::Committed);
        }
    });
}

#[test]
fn a_layer_made_on_nothing_stacks_onto_any_parent_by_links() {
    each_backend(
        "a_layer_made_on_nothing_stacks_onto_any_parent_by_links",
        |b, root| {
            let snap = open(b, &root.join("snaps"));
            let _ = build_three(&*snap);
            // A layer made on nothing, as `COPY --link` makes one: a
            // directory the parent has (with other files and mode), a
            // hard-linked pair, a symlink.
            snap.prepare("link-build", None).unwrap();
            edit(&*snap, "link-build", |r| {
                fs::create_dir_all(r.join("var/cache")).unwrap();
                fs::write(r.join("var/cache/linked"), "linked\n").unwrap();
                fs::hard_link(r.join("var/cache/linked"), r.join("var/cache/also")).unwrap();
                std::os::unix::fs::symlink("linked", r.join("var/cache/sym")).unwrap();
                fs::set_permissions(
                    r.join("var/cache"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o750),
                )
                .unwrap();
            });
            let (layer, info) = diff_bytes(&*snap, "link-build", Compression::None);
            snap.commit("lk", "link-build").unwrap();

            let stacked = snap.stack("s", Some("l3"), "lk").unwrap();
            if b == Backend::Copy {
                assert!(!stacked, "a copy snapshotter merges trees: it must decline");
                assert!(!snap.exists("s"));
                return;
            }
            assert!(stacked);
            // The same tree as applying the layer's tar over the parent.
            snap.apply_layer("applied", Some("l3"), &mut &layer[..], Some(&info.diff_id))
                .unwrap();
            assert_eq!(
                view_tree(&*snap, "v1", "s"),
                view_tree(&*snap, "v2", "applied")
            );
            // The same layer, diffed again.
            assert_eq!(
                diff_bytes(&*snap, "s", Compression::None).1.diff_id,
                info.diff_id
            );
            // Its files are the layer's own (linked, not copied).
            use std::os::unix::fs::MetadataExt;
            let ino = |k: &str| {
                fs::metadata(snap.upper_dir(k).unwrap().join("var/cache/linked"))
                    .unwrap()
                    .ino()
            };
            assert_eq!(ino("s"), ino("lk"));
            assert_eq!(snap.stat("s").unwrap().parent.as_deref(), Some("l3"));
            // Only a layer made on nothing stacks this way; a name taken is
            // refused.
            assert!(!snap.stack("s2", Some("l1"), "l2").unwrap());
            assert!(matches!(
                snap.stack("s", Some("l3"), "lk"),
                Err(SnapshotError::AlreadyExists { .. })
            ));
        },
    );
}

#[test]
fn a_store_remembers_until_reboot_that_overlay_works_there() {
    if !overlay_supported() {
        eprintln!("SKIPPED a_store_remembers_until_reboot_that_overlay_works_there: needs root and overlayfs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("snapshots");
    fs::create_dir_all(&dir).unwrap();
    assert!(rbk_store::snapshot::overlay_works_in(&dir));
    let marker = dir.join(".overlay-works");
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(fs::read_to_string(&marker).unwrap(), boot);
    // With the probe made impossible (its staging area is a file), only
    // the marker of this boot can say yes.
    fs::remove_dir_all(dir.join(".tmp")).unwrap();
    fs::write(dir.join(".tmp"), "not a directory").unwrap();
    assert!(rbk_store::snapshot::overlay_works_in(&dir));
    fs::write(&marker, "another boot\n").unwrap();
    assert!(!rbk_store::snapshot::overlay_works_in(&dir));
}
