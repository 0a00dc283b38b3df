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
use rbk_store::process;

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
    if !process::is_root() {
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
    // A store as an older rbk left it: everything 0755.
    drop(rbk_store::Store::open(&root).unwrap());
    for d in [&root, &root.join("snapshots")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    rbk_store::Store::open(&root).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o710);
    assert_eq!(mode(&root.join("snapshots")), 0o700);
    // A directory of other things given as --root by mistake keeps its
    // mode; the trees under its snapshots/ are still out of reach.
    let home = t.path().join("home");
    fs::create_dir_all(home.join("notes")).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    rbk_store::Store::open(&home).unwrap();
    assert_eq!(mode(&home), 0o755);
    assert_eq!(mode(&home.join("snapshots")), 0o700);
    assert_eq!(mode(&home.join("tmp")), 0o700);
}

/// A layer tar of `entries`: (path, kind) in order, kind one of
/// `Dir`, `File(data)`, `Symlink(target)`, `Link(target)`.
fn raw_tar(entries: &[(&str, Kind)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        let data: &[u8] = match kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b""
            }
            Kind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                d.as_bytes()
            }
            Kind::Symlink(t) | Kind::Link(t) => {
                h.set_entry_type(if matches!(kind, Kind::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                h.set_link_name(t).unwrap();
                b""
            }
        };
        h.set_size(data.len() as u64);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

enum Kind {
    Dir,
    File(&'static str),
    Symlink(&'static str),
    Link(&'static str),
}

#[test]
fn a_symlinked_parent_from_a_lower_layer_is_refused_by_both() {
    let test = "a_symlinked_parent_from_a_lower_layer_is_refused_by_both";
    let escape = format!("rbk-escape-{}", std::process::id());
    for target in ["/etc", "..", "/", "sub/../.."] {
        each_backend(test, |b, dir| {
            let snap = open(b, dir);
            let base = raw_tar(&[("sub", Kind::Dir), ("a", Kind::Symlink(target))]);
            snap.apply_layer("base", None, &mut &base[..], None)
                .unwrap();
            let path = format!("a/{escape}");
            let hostile = raw_tar(&[(path.as_str(), Kind::File("pwned"))]);
            let err = snap
                .apply_layer("top", Some("base"), &mut &hostile[..], None)
                .unwrap_err();
            assert!(
                err.to_string().contains("is a symlink")
                    || format!("{:?}", err).contains("is a symlink"),
                "{b:?} {target}: {err:?}"
            );
            assert!(!snap.exists("top"), "{b:?}: a refused layer is committed");
            assert!(!Path::new("/etc").join(&escape).exists());
            assert!(!Path::new("/").join(&escape).exists());
        });
    }
}

#[test]
fn a_hard_link_to_a_lower_layers_file_is_refused_by_both() {
    let test = "a_hard_link_to_a_lower_layers_file_is_refused_by_both";
    each_backend(test, |b, dir| {
        let snap = open(b, dir);
        let base = raw_tar(&[("f", Kind::File("lower"))]);
        snap.apply_layer("base", None, &mut &base[..], None)
            .unwrap();
        let hostile = raw_tar(&[("g", Kind::Link("f"))]);
        let err = snap
            .apply_layer("top", Some("base"), &mut &hostile[..], None)
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("is not in this layer"),
            "{b:?}: {err:?}"
        );
        assert!(!snap.exists("top"));
    });
}

#[test]
fn what_real_layers_do_over_links_and_dirs_both_agree_on() {
    let test = "what_real_layers_do_over_links_and_dirs_both_agree_on";
    each_backend(test, |b, dir| {
        let snap = open(b, dir);
        let base = raw_tar(&[
            ("a", Kind::Symlink("/etc")),
            ("d", Kind::Dir),
            ("d/old", Kind::File("old")),
        ]);
        snap.apply_layer("base", None, &mut &base[..], None)
            .unwrap();
        fs::set_permissions(
            snap.upper_dir("base").unwrap().join("d"),
            fs::Permissions::from_mode(0o710),
        )
        .unwrap();
        // The symlink replaced by a directory first; a file into a lower
        // directory; a hard link to a file of the same layer.
        let top = raw_tar(&[
            ("a", Kind::Dir),
            ("a/b", Kind::File("b")),
            ("d/new", Kind::File("new")),
            ("d/link", Kind::Link("d/new")),
        ]);
        snap.apply_layer("top", Some("base"), &mut &top[..], None)
            .unwrap();
        if b == super::layer_snapshot::Backend::Overlay && !process::is_root() {
            return;
        }
        snap.view("v", Some("top")).unwrap();
        super::layer_snapshot::edit(&*snap, "v", |root| {
            assert!(root.join("a").symlink_metadata().unwrap().is_dir(), "{b:?}");
            assert_eq!(fs::read_to_string(root.join("a/b")).unwrap(), "b");
            assert_eq!(fs::read_to_string(root.join("d/old")).unwrap(), "old");
            assert_eq!(fs::read_to_string(root.join("d/link")).unwrap(), "new");
            let mode = fs::metadata(root.join("d")).unwrap().permissions().mode();
            assert_eq!(mode & 0o7777, 0o710, "{b:?}: the lower dir's mode");
        });
    });
}
