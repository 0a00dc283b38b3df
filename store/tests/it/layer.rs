//! Layer diff/apply: round trips, whiteouts, determinism, and tars that try
//! to write outside their target.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbk_store::compress::{self, Compression};
use rbk_store::layer::{self, ApplyMode, DiffOptions, LayerError};
use rbk_store::{fs_ext, process};

/// Whether we may chown/mknod/set trusted xattrs; prints SKIPPED otherwise.
pub fn need_root(test: &str) -> bool {
    if process::is_root() {
        return true;
    }
    eprintln!("SKIPPED: {test} needs root (chown, mknod, trusted.* xattrs)");
    false
}

/// A tree that exercises every entry kind: busybox and applet symlinks,
/// hard links, a fifo, a device, xattrs, odd modes and owners, long names.
pub fn rich_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let p = root.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    fs::create_dir_all(root.join("bin")).unwrap();
    if Path::new("/bin/busybox").exists() {
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    } else {
        eprintln!("note: /bin/busybox missing; using a stand-in binary");
        w("bin/busybox", &vec![0x7f; 300_000]);
    }
    for applet in ["sh", "ls", "cat", "echo", "mkdir"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    w("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
    w("etc/hostname", b"rbk\n");
    w("usr/share/doc/readme", b"hello\n");
    fs::hard_link(
        root.join("usr/share/doc/readme"),
        root.join("usr/share/doc/readme.hard"),
    )
    .unwrap();
    fs::hard_link(
        root.join("usr/share/doc/readme"),
        root.join("etc/readme.hard2"),
    )
    .unwrap();
    w("usr/bin/suid", b"#!/bin/sh\n");
    fs::set_permissions(
        root.join("usr/bin/suid"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::create_dir_all(root.join("empty/dir")).unwrap();
    fs::create_dir_all(root.join("private")).unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("/etc/does-not-exist", root.join("dangling")).unwrap();
    let long = "d".repeat(90) + "/" + &"e".repeat(90) + "/" + &"f".repeat(120);
    w(
        &(long.clone() + "/file-with-a-rather-long-name.txt"),
        b"deep\n",
    );
    symlink(&long, root.join("long-link")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    fs_ext::set_xattr(
        &root.join("etc/hostname"),
        OsStr::new("user.rbk.test"),
        b"value",
    )
    .unwrap();
    if process::is_root() {
        fs_ext::make_node(&root.join("null"), fs_ext::NodeKind::Char, 0o666, 1, 3).unwrap();
        std::os::unix::fs::lchown(root.join("etc/hostname"), Some(1000), Some(1001)).unwrap();
        std::os::unix::fs::lchown(root.join("dangling"), Some(7), Some(8)).unwrap();
        fs_ext::set_xattr(&root.join("bin/busybox"), OsStr::new("trusted.rbk"), b"t").unwrap();
    }
    filetime::set_file_mtime(
        root.join("etc/passwd"),
        filetime::FileTime::from_unix_time(1_000_000_000, 0),
    )
    .unwrap();
}

/// Everything a layer must preserve about a tree, keyed by relative path.
pub fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let mut xs: Vec<String> = fs_ext::list_xattrs(&p)
                .unwrap()
                .into_iter()
                .filter(|x| x.as_bytes() != b"security.selinux")
                .map(|x| {
                    let v = fs_ext::get_xattr(&p, &x).unwrap().unwrap_or_default();
                    format!("{}={}", x.to_string_lossy(), String::from_utf8_lossy(&v))
                })
                .collect();
            xs.sort();
            let kind = if ft.is_dir() {
                stack.push(r.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("symlink->{}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let first = inodes
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| r.clone())
                    .clone();
                let data = fs::read(&p).unwrap();
                let link = if m.nlink() > 1 {
                    format!(" links-with={}", first.display())
                } else {
                    String::new()
                };
                format!(
                    "file {} bytes {}{link}",
                    data.len(),
                    rbk_store::Digest::of(&data).short()
                )
            } else {
                format!("special {:o} rdev={}", m.mode() & 0o170000, m.rdev())
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            let mtime = if ft.is_dir() { 0 } else { m.mtime() };
            out.insert(
                r,
                format!(
                    "{kind} mode={mode:o} uid={} gid={} mtime={mtime} xattrs={xs:?}",
                    m.uid(),
                    m.gid()
                ),
            );
        }
    }
    out
}

/// Names (and type flags) of a layer's entries in archive order.
pub fn entry_names(tar_bytes: &[u8]) -> Vec<String> {
    let mut r = compress::decompress(tar_bytes).unwrap();
    let mut plain = Vec::new();
    r.read_to_end(&mut plain).unwrap();
    let mut ar = tar::Archive::new(&plain[..]);
    ar.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

fn tar_of(dir: &Path, c: Compression) -> (Vec<u8>, layer::LayerInfo) {
    let mut out = Vec::new();
    let info = layer::tar_dir(dir, &mut out, c).unwrap();
    (out, info)
}

#[test]
fn diff_apply_round_trip_gives_identical_tree() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    rich_tree(&src);
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let (bytes, info) = tar_of(&src, c);
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(info.digest, rbk_store::Digest::of(&bytes));
        assert_eq!(info.media_type, c.layer_media_type());
        let _ = fs::remove_dir_all(&dst);
        fs::create_dir(&dst).unwrap();
        let stats = layer::apply(
            compress::decompress(&bytes[..]).unwrap(),
            &dst,
            ApplyMode::Merge,
        )
        .unwrap();
        assert_eq!(stats.diff_id, info.diff_id, "{c}");
        assert_eq!(stats.size, info.uncompressed_size);
        let (a, b) = (describe(&src), describe(&dst));
        assert_eq!(a, b, "{c}: tree differs after round trip");
        // Re-tarring the unpacked tree is byte-identical: nothing depends on
        // inode order, atime/ctime or the host's user names.
        assert_eq!(tar_of(&dst, c).1.diff_id, info.diff_id, "{c}");
    }
}

#[test]
fn same_tree_twice_gives_same_digests() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    for d in [&a, &b] {
        fs::create_dir(d).unwrap();
        rich_tree(d);
        // Different creation order must not matter either.
        fs::write(d.join("zz"), b"z").unwrap();
        filetime::set_file_mtime(d.join("zz"), filetime::FileTime::from_unix_time(5, 0)).unwrap();
    }
    let opts = DiffOptions {
        clamp_mtime: Some(1_500_000_000),
        ..Compression::Gzip.into()
    };
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    let ia = layer::tar_dir(&a, &mut oa, opts).unwrap();
    let ib = layer::tar_dir(&b, &mut ob, opts).unwrap();
    assert_eq!(ia, ib);
    assert_eq!(oa, ob);
    let names = entry_names(&oa);
    let mut sorted_dirs = names.clone();
    sorted_dirs.dedup();
    assert_eq!(names.len(), sorted_dirs.len(), "no duplicates");
    assert!(
        names.iter().position(|n| n == "bin/").unwrap()
            < names.iter().position(|n| n == "bin/busybox").unwrap()
    );
}

#[test]
fn diff_trees_emits_changes_and_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let (base, new) = (t.path().join("base"), t.path().join("new"));
    fs::create_dir(&base).unwrap();
    for (p, d) in [
        ("keep", "k"),
        ("mod", "old"),
        ("gone", "g"),
        ("dir/a", "a"),
        ("dir/b", "b"),
        ("tree/x/y", "y"),
    ] {
        let p = base.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, d).unwrap();
    }
    // A plain copy keeps mtimes (with their nanoseconds), so unchanged files
    // compare equal without reading them.
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&base)
        .arg(&new)
        .status()
        .unwrap();
    assert!(cp.success());
    fs::write(new.join("mod"), "new content").unwrap();
    fs::remove_file(new.join("gone")).unwrap();
    fs::remove_file(new.join("dir/b")).unwrap();
    fs::remove_dir_all(new.join("tree")).unwrap();
    fs::write(new.join("added"), "+").unwrap();
    let mut out = Vec::new();
    layer::diff_trees(Some(&base), &new, &mut out, Compression::None).unwrap();
    let names = entry_names(&out);
    assert_eq!(
        names,
        [".wh.gone", ".wh.tree", "added", "dir/", "dir/.wh.b", "mod"]
    );
}

#[test]
fn diff_trees_notices_same_size_same_second_rewrite() {
    let t = tempfile::tempdir().unwrap();
    let (base, new) = (t.path().join("base"), t.path().join("new"));
    for (d, data) in [(&base, "aaaa"), (&new, "bbbb")] {
        fs::create_dir(d).unwrap();
        fs::write(d.join("f"), data).unwrap();
        // Whole-second mtimes, as after a tar round trip.
        filetime::set_file_mtime(d.join("f"), filetime::FileTime::from_unix_time(1000, 0)).unwrap();
        filetime::set_file_mtime(d, filetime::FileTime::from_unix_time(1000, 0)).unwrap();
    }
    let mut out = Vec::new();
    layer::diff_trees(Some(&base), &new, &mut out, Compression::None).unwrap();
    assert_eq!(entry_names(&out), ["f"]);
}

#[test]
fn diff_upper_translates_overlay_whiteouts() {
    if !need_root("diff_upper_translates_overlay_whiteouts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let up = t.path();
    fs::create_dir_all(up.join("opq/sub")).unwrap();
    fs::write(up.join("opq/sub/new"), "n").unwrap();
    fs_ext::set_xattr(&up.join("opq"), OsStr::new("trusted.overlay.opaque"), b"y").unwrap();
    fs_ext::make_node(&up.join("gone"), fs_ext::NodeKind::Char, 0, 0, 0).unwrap();
    fs::create_dir(up.join("etc")).unwrap();
    fs_ext::make_node(&up.join("etc/old"), fs_ext::NodeKind::Char, 0, 0, 0).unwrap();
    fs::write(up.join("etc/new"), "x").unwrap();
    fs_ext::make_node(&up.join("realdev"), fs_ext::NodeKind::Char, 0o600, 1, 3).unwrap();
    let mut out = Vec::new();
    layer::diff_upper(up, &mut out, Compression::Gzip).unwrap();
    assert_eq!(
        entry_names(&out),
        [
            ".wh.gone",
            "etc/",
            "etc/.wh.old",
            "etc/new",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/sub/",
            "opq/sub/new",
            "realdev"
        ]
    );
    // The overlay xattr itself is bookkeeping, not content.
    let mut plain = Vec::new();
    compress::decompress(&out[..])
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert!(!plain.windows(15).any(|w| w == b"trusted.overlay"));
}

#[test]
fn apply_overlay_mode_writes_overlay_whiteouts() {
    if !need_root("apply_overlay_mode_writes_overlay_whiteouts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = build(&[
        E::file(".wh.gone", b""),
        E::dir("opq/"),
        E::file("opq/.wh..wh..opq", b""),
        E::file("opq/kept", b"k"),
    ]);
    let dst = t.path();
    let st = layer::apply(&tar[..], dst, ApplyMode::Overlay).unwrap();
    assert_eq!((st.entries, st.whiteouts), (2, 2));
    let m = fs::symlink_metadata(dst.join("gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) && m.rdev() == 0);
    assert_eq!(
        fs_ext::get_xattr(&dst.join("opq"), OsStr::new("trusted.overlay.opaque"))
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(dst.join("opq/kept")).unwrap(), b"k");
}

#[test]
fn apply_overlay_mode_whiteout_then_same_dir_becomes_opaque() {
    if !need_root("apply_overlay_mode_whiteout_then_same_dir_becomes_opaque") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = build(&[E::file(".wh.d", b""), E::dir("d/"), E::file("d/x", b"x")]);
    layer::apply(&tar[..], t.path(), ApplyMode::Overlay).unwrap();
    let d = t.path().join("d");
    assert!(fs::symlink_metadata(&d).unwrap().is_dir());
    assert_eq!(
        fs_ext::get_xattr(&d, OsStr::new("trusted.overlay.opaque"))
            .unwrap()
            .as_deref(),
        Some(&b"y"[..]),
        "the lower d must stay hidden"
    );
    assert_eq!(fs::read(d.join("x")).unwrap(), b"x");
    assert!(
        rbk_store::snapshot::overlay_works_in(&t.path().join("probe"))
            || !rbk_store::snapshot::overlay_supported()
    );
}

#[test]
fn apply_merge_mode_deletes_and_hides_lower_content() {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path();
    for p in ["gone/deep/file", "opq/lower1", "opq/sub/lower2", "keep"] {
        fs::create_dir_all(dst.join(p).parent().unwrap()).unwrap();
        fs::write(dst.join(p), "lower").unwrap();
    }
    let tar = build(&[
        E::file(".wh.gone", b""),
        E::dir("opq/"),
        E::file("opq/new", b"n"),
        E::file("opq/.wh..wh..opq", b""),
        E::file(".wh.keep-not-there", b""),
        E::file("same", b"s"),
        E::file(".wh.same", b""),
    ]);
    layer::apply(&tar[..], dst, ApplyMode::Merge).unwrap();
    let mut left: Vec<_> = describe(dst).into_keys().collect();
    left.sort();
    assert_eq!(
        left,
        ["keep", "opq", "opq/new", "same"].map(PathBuf::from),
        "whiteouts never hide the same layer's files"
    );
}

// ---- tars that try to escape -------------------------------------------

/// A raw tar entry, written byte for byte (the tar crate refuses to *write*
/// the hostile names these tests need).
struct E {
    name: Vec<u8>,
    kind: tar::EntryType,
    link: Vec<u8>,
    data: Vec<u8>,
}

impl E {
    fn file(name: &str, data: &[u8]) -> E {
        E {
            name: name.into(),
            kind: tar::EntryType::Regular,
            link: vec![],
            data: data.to_vec(),
        }
    }
    fn dir(name: &str) -> E {
        E {
            name: name.into(),
            kind: tar::EntryType::Directory,
            link: vec![],
            data: vec![],
        }
    }
    fn symlink(name: &str, target: &str) -> E {
        E {
            name: name.into(),
            kind: tar::EntryType::Symlink,
            link: target.into(),
            data: vec![],
        }
    }
    fn hardlink(name: &str, target: &str) -> E {
        E {
            name: name.into(),
            kind: tar::EntryType::Link,
            link: target.into(),
            data: vec![],
        }
    }
}

fn build(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let u = h.as_ustar_mut().unwrap();
        u.name[..e.name.len()].copy_from_slice(&e.name);
        u.linkname[..e.link.len()].copy_from_slice(&e.link);
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(e.data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

struct Escape {
    _t: tempfile::TempDir,
    target: PathBuf,
    outside: PathBuf,
}

/// A target dir next to an `outside` dir holding a `secret` file.
fn escape_setup() -> Escape {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    let outside = t.path().join("outside");
    fs::create_dir(&target).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    Escape {
        _t: t,
        target,
        outside,
    }
}

impl Escape {
    /// Applies `entries` in both modes and checks the refusal names
    /// `bad_entry` and nothing outside changed.
    fn assert_refused(&self, entries: &[E], bad_entry: &str) {
        for mode in [ApplyMode::Merge, ApplyMode::Overlay] {
            let _ = fs::remove_dir_all(&self.target);
            fs::create_dir(&self.target).unwrap();
            let before = describe(&self.outside);
            let err = layer::apply(&build(entries)[..], &self.target, mode).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, LayerError::Unsafe { .. }),
                "{mode:?}: wrong error kind: {msg}"
            );
            assert!(
                msg.contains(&format!("{bad_entry:?}")),
                "{mode:?}: error does not name {bad_entry}: {msg}"
            );
            assert_eq!(
                describe(&self.outside),
                before,
                "{mode:?}: something changed outside the target"
            );
            assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"secret");
            assert_eq!(
                fs::metadata(self.outside.join("secret")).unwrap().nlink(),
                1
            );
        }
    }
}

#[test]
fn apply_refuses_dotdot_entry() {
    let s = escape_setup();
    s.assert_refused(&[E::file("../outside/pwned", b"x")], "../outside/pwned");
    s.assert_refused(
        &[E::dir("a/"), E::file("a/../../outside/pwned", b"x")],
        "a/../../outside/pwned",
    );
    s.assert_refused(&[E::file(".wh...", b"")], ".wh...");
}

#[test]
fn apply_refuses_absolute_escape() {
    let s = escape_setup();
    // An absolute name is taken relative to the target (as GNU tar and
    // Docker do): it lands inside, never at the absolute path.
    let abs = s.outside.join("pwned");
    let tar = build(&[E::file(abs.to_str().unwrap(), b"x")]);
    layer::apply(&tar[..], &s.target, ApplyMode::Merge).unwrap();
    assert!(!abs.exists(), "absolute entry written outside");
    assert!(s.target.join(abs.strip_prefix("/").unwrap()).exists());
    // Climbing above the root from an absolute name is refused outright.
    s.assert_refused(&[E::file("/../outside/pwned", b"x")], "/../outside/pwned");
}

#[test]
fn apply_refuses_write_through_symlink() {
    let s = escape_setup();
    let out = s.outside.to_str().unwrap().to_string();
    s.assert_refused(
        &[E::symlink("link", &out), E::file("link/pwned", b"x")],
        "link/pwned",
    );
    s.assert_refused(
        &[E::symlink("rel", "../outside"), E::file("rel/secret", b"x")],
        "rel/secret",
    );
    s.assert_refused(
        &[E::symlink("link", &out), E::dir("link/sub/")],
        "link/sub/",
    );
    s.assert_refused(
        &[E::symlink("link", &out), E::file("link/.wh.secret", b"")],
        "link/.wh.secret",
    );
    s.assert_refused(
        &[E::symlink("link", &out), E::file("link/.wh..wh..opq", b"")],
        "link/.wh..wh..opq",
    );
    // A symlink already in the tree (a lower layer's) is no better.
    fs::create_dir_all(&s.target).unwrap();
    symlink(&s.outside, s.target.join("lower-link")).unwrap();
    let err = layer::apply(
        &build(&[E::file("lower-link/secret", b"x")])[..],
        &s.target,
        ApplyMode::Merge,
    )
    .unwrap_err();
    assert!(err.to_string().contains("\"lower-link/secret\""), "{err}");
    assert_eq!(fs::read(s.outside.join("secret")).unwrap(), b"secret");
}

#[test]
fn apply_refuses_hardlink_outside() {
    let s = escape_setup();
    let out = s.outside.to_str().unwrap().to_string();
    s.assert_refused(&[E::hardlink("h", "../outside/secret")], "h");
    s.assert_refused(
        &[E::symlink("sl", &out), E::hardlink("h", "sl/secret")],
        "h",
    );
    s.assert_refused(&[E::hardlink("h", "/../outside/secret")], "h");
    // An absolute link target means the target's own file, which is missing.
    let err = layer::apply(
        &build(&[E::hardlink("h", &(out.clone() + "/secret"))])[..],
        &s.target,
        ApplyMode::Merge,
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(fs::metadata(s.outside.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn apply_refuses_symlink_dir_then_file() {
    let s = escape_setup();
    // The classic: `a -> /etc` then `a/passwd`. Pointed at a scratch dir so a
    // regression cannot damage the machine running the test.
    let out = s.outside.to_str().unwrap().to_string();
    s.assert_refused(
        &[
            E::symlink("a", &out),
            E::file("a/secret", b"root::0:0::/:/bin/sh\n"),
        ],
        "a/secret",
    );
    s.assert_refused(
        &[
            E::symlink("a", "/etc"),
            E::file("a/rbk-must-not-exist", b"x"),
        ],
        "a/rbk-must-not-exist",
    );
    assert!(!Path::new("/etc/rbk-must-not-exist").exists());
}

#[test]
fn apply_replaces_symlink_instead_of_writing_through_it() {
    let s = escape_setup();
    let out = s.outside.join("secret");
    let tar = build(&[
        E::symlink("f", out.to_str().unwrap()),
        E::file("f", b"replaced"),
    ]);
    layer::apply(&tar[..], &s.target, ApplyMode::Merge).unwrap();
    assert_eq!(fs::read(&out).unwrap(), b"secret");
    assert_eq!(fs::read(s.target.join("f")).unwrap(), b"replaced");
    assert!(!fs::symlink_metadata(s.target.join("f"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn apply_reports_truncated_tar() {
    let t = tempfile::tempdir().unwrap();
    let tar = build(&[E::file("a", &[7u8; 5000]), E::file("b", b"b")]);
    let err = layer::apply(&tar[..1500], t.path(), ApplyMode::Merge).unwrap_err();
    assert!(matches!(err, LayerError::Read { .. }), "{err}");
}

/// Throughput of diff and apply on a ~200 MB tree. Ignored by default; run
/// once with `cargo test --release -p rbk-store --test it
/// layer_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn layer_throughput() {
    use std::time::Instant;
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let bb = fs::read("/bin/busybox").unwrap_or_else(|_| vec![0x5a; 2 << 20]);
    let mut total = 0u64;
    let mut i = 0;
    while total < 180 << 20 {
        let d = src.join(format!("big/{}", i % 10));
        fs::create_dir_all(&d).unwrap();
        let mut data = bb.clone();
        data[0] = i as u8; // not byte-identical files
        fs::write(d.join(format!("bin{i}")), &data).unwrap();
        total += data.len() as u64;
        i += 1;
    }
    for j in 0..5000 {
        let d = src.join(format!("small/{}", j % 50));
        fs::create_dir_all(&d).unwrap();
        let data = format!("file {j}\n").repeat(400);
        fs::write(d.join(format!("f{j}.txt")), &data).unwrap();
        total += data.len() as u64;
    }
    let mb = total as f64 / (1 << 20) as f64;
    eprintln!("tree: {mb:.0} MiB in {} big + 5000 small files", i);
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let path = t.path().join(format!("layer.{c}"));
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        let info = layer::tar_dir(&src, fs::File::create(&path).unwrap(), c).unwrap();
        let (d, dcpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let dst = t.path().join(format!("dst-{c}"));
        fs::create_dir(&dst).unwrap();
        let (start, cpu0) = (Instant::now(), cpu_seconds());
        let st = layer::apply(
            compress::decompress(fs::File::open(&path).unwrap()).unwrap(),
            &dst,
            ApplyMode::Merge,
        )
        .unwrap();
        let (a, acpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        assert_eq!(st.diff_id, info.diff_id);
        eprintln!(
            "{c:>5}: diff {d:.2}s wall ({:.0} MiB/s), {dcpu:.2}s cpu ({:.0} MiB per cpu-s), blob {:.0} MiB; \
             apply {a:.2}s wall ({:.0} MiB/s), {acpu:.2}s cpu",
            mb / d,
            mb / dcpu.max(0.01),
            info.size as f64 / (1 << 20) as f64,
            mb / a
        );
        fs::remove_dir_all(&dst).unwrap();
        fs::remove_file(&path).unwrap();
    }
}

/// User + system CPU time of this process (all threads), from /proc.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}
