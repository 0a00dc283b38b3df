//! COPY/ADD and context hashing: Docker's semantics, one test each, and the
//! symlink-safety regressions.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use rbk_scheduler::context::{BuildContext, IgnoreMatcher, StatCache};
use rbk_scheduler::fileop::{copy, source_digest, AddOptions, CopySpec, FileOpError};

/// Writes `files` under `root`; a name ending in `/` is a directory.
fn tree(root: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = root.join(name);
        if name.ends_with('/') {
            fs::create_dir_all(&path).unwrap();
        } else {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
        }
    }
}

fn spec(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.to_string(),
        workdir: "/".to_string(),
        follow_symlinks_in_sources: true,
        ..CopySpec::default()
    }
}

struct Dirs {
    _tmp: tempfile::TempDir,
    ctx: std::path::PathBuf,
    rootfs: std::path::PathBuf,
    outside: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let rootfs = tmp.path().join("rootfs");
    let outside = tmp.path().join("outside");
    for d in [&ctx, &rootfs, &outside] {
        fs::create_dir(d).unwrap();
    }
    Dirs {
        _tmp: tmp,
        ctx,
        rootfs,
        outside,
    }
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: {} needs root to set ownership", module_path!());
            return;
        }
    };
}

/// Lists every path under `root`, to show nothing appeared there.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn directory_source_copies_its_contents() {
    let d = dirs();
    tree(&d.ctx, &[("src/a.txt", "a"), ("src/sub/b.txt", "b")]);
    copy(&d.ctx, &d.rootfs, &spec(&["src"], "/app"), None).unwrap();
    assert_eq!(read(&d.rootfs, "app/a.txt"), "a");
    assert_eq!(read(&d.rootfs, "app/sub/b.txt"), "b");
    assert!(!d.rootfs.join("app/src").exists());
}

#[test]
fn dest_with_trailing_slash_is_a_directory() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt"], "/opt/dir/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "opt/dir/a.txt"), "a");
}

#[test]
fn single_file_to_missing_dest_becomes_that_file() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt"], "/opt/renamed"), None).unwrap();
    assert!(d.rootfs.join("opt/renamed").is_file());
    assert_eq!(read(&d.rootfs, "opt/renamed"), "a");
}

#[test]
fn file_into_existing_directory_without_slash() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    tree(&d.rootfs, &[("opt/", "")]);
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt"], "/opt"), None).unwrap();
    assert_eq!(read(&d.rootfs, "opt/a.txt"), "a");
}

#[test]
fn multiple_sources_need_a_directory_dest() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a"), ("b.txt", "b")]);
    let err = copy(&d.ctx, &d.rootfs, &spec(&["a.txt", "b.txt"], "/x"), None).unwrap_err();
    assert!(matches!(err, FileOpError::DestNotDir { .. }), "{err}");
    assert!(!d.rootfs.join("x").exists());
    // A glob that expands to several files counts the same.
    let err = copy(&d.ctx, &d.rootfs, &spec(&["*.txt"], "/x"), None).unwrap_err();
    assert!(matches!(err, FileOpError::DestNotDir { .. }), "{err}");
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt", "b.txt"], "/x/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "x/b.txt"), "b");
    // An existing directory is fine without the slash.
    copy(&d.ctx, &d.rootfs, &spec(&["*.txt"], "/x"), None).unwrap();
}

#[test]
fn missing_parents_are_created_0755() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt"], "/p/q/r/a.txt"), None).unwrap();
    for dir in ["p", "p/q", "p/q/r"] {
        let m = fs::metadata(d.rootfs.join(dir)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o755, "{dir}");
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (0, 0), "{dir}");
        }
    }
}

#[test]
fn relative_dest_is_taken_from_workdir() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    let mut s = spec(&["a.txt"], "rel/");
    s.workdir = "/work/dir".to_string();
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "work/dir/rel/a.txt"), "a");
    let mut s = spec(&["a.txt"], ".");
    s.workdir = "/w".to_string();
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "w/a.txt"), "a");
}

#[test]
fn glob_matching_nothing_copies_nothing() {
    // As `docker build` (BuildKit's AllowEmptyWildcard): no error, no files.
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    let stats = copy(&d.ctx, &d.rootfs, &spec(&["*.none"], "/dst/"), None).unwrap();
    assert_eq!(stats.files, 0);
    assert!(!d.rootfs.join("dst").exists());
    // Together with a match, the match is copied.
    copy(
        &d.ctx,
        &d.rootfs,
        &spec(&["*.none", "a.txt"], "/dst/"),
        None,
    )
    .unwrap();
    assert_eq!(read(&d.rootfs, "dst/a.txt"), "a");
}

#[test]
fn missing_sources_are_errors() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    let err = copy(&d.ctx, &d.rootfs, &spec(&["nope.txt"], "/"), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("lstat /nope.txt") && msg.contains("No such file"),
        "{msg}"
    );
    // The literal directory holding a glob must exist.
    let err = copy(&d.ctx, &d.rootfs, &spec(&["nodir/*.txt"], "/"), None).unwrap_err();
    assert!(err.to_string().contains("lstat /nodir"), "{err}");
    let err = copy(&d.ctx, &d.rootfs, &spec(&[], "/"), None).unwrap_err();
    assert_eq!(err.to_string(), "no source files were specified");
}

#[test]
fn globs_match_per_component_and_hidden_files() {
    let d = dirs();
    tree(
        &d.ctx,
        &[
            ("pkg/a/x.json", "ax"),
            ("pkg/b/x.json", "bx"),
            ("pkg/b/y.txt", "by"),
            (".env", "e"),
        ],
    );
    copy(&d.ctx, &d.rootfs, &spec(&["pkg/*/x.json"], "/one/"), None).unwrap();
    // Both match and both are named x.json: the later one wins, as in Docker.
    assert_eq!(read(&d.rootfs, "one/x.json"), "bx");
    copy(&d.ctx, &d.rootfs, &spec(&["*env"], "/two/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "two/.env"), "e");
}

#[test]
fn mode_and_mtime_are_kept() {
    let d = dirs();
    tree(&d.ctx, &[("bin/tool", "#!/bin/sh"), ("bin/data", "d")]);
    fs::set_permissions(d.ctx.join("bin/tool"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(d.ctx.join("bin"), fs::Permissions::from_mode(0o700)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_000_000_000, 123_000_000);
    filetime::set_file_mtime(d.ctx.join("bin/tool"), t).unwrap();
    fs::create_dir(d.ctx.join("bin/sub")).unwrap();
    filetime::set_file_mtime(d.ctx.join("bin/sub"), t).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["bin"], "/usr/bin"), None).unwrap();
    let m = fs::metadata(d.rootfs.join("usr/bin/tool")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4751);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 123_000_000));
    let sub = fs::metadata(d.rootfs.join("usr/bin/sub")).unwrap();
    assert_eq!(
        sub.mtime(),
        1_000_000_000,
        "directory mtimes are set after their children"
    );
}

#[test]
fn chmod_applies_to_copied_files_and_dirs() {
    let d = dirs();
    tree(&d.ctx, &[("dir/f", "f"), ("dir/sub/g", "g")]);
    let mut s = spec(&["dir"], "/out");
    s.chmod = Some(0o640);
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    for p in ["out/f", "out/sub", "out/sub/g"] {
        let mode = fs::symlink_metadata(d.rootfs.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640, "{p}");
    }
}

#[test]
fn context_files_become_root_owned() {
    require_root!();
    let d = dirs();
    tree(&d.ctx, &[("dir/f", "f")]);
    std::os::unix::fs::chown(d.ctx.join("dir/f"), Some(1234), Some(5678)).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["dir"], "/out"), None).unwrap();
    let m = fs::metadata(d.rootfs.join("out/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[test]
fn from_stage_keeps_ownership_unless_chown() {
    require_root!();
    let d = dirs();
    tree(&d.ctx, &[("dir/f", "f")]);
    std::os::unix::fs::chown(d.ctx.join("dir/f"), Some(1234), Some(5678)).unwrap();
    let mut s = spec(&["dir"], "/kept");
    s.keep_ownership = true;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    let m = fs::metadata(d.rootfs.join("kept/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));

    s.dest = "/chowned/deep/".to_string();
    s.chown = Some((42, 43));
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    let m = fs::metadata(d.rootfs.join("chowned/deep/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 43));
    // Created parents take the --chown owner too.
    let m = fs::metadata(d.rootfs.join("chowned")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 43));
}

#[test]
fn existing_dest_directory_symlink_is_followed_inside_rootfs() {
    let d = dirs();
    tree(&d.ctx, &[("a.txt", "a")]);
    tree(&d.rootfs, &[("real/", "")]);
    symlink("/real", d.rootfs.join("link")).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["a.txt"], "/link/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "real/a.txt"), "a");
    assert!(fs::symlink_metadata(d.rootfs.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn hard_links_stay_hard_links() {
    let d = dirs();
    tree(&d.ctx, &[("dir/a", "shared")]);
    fs::hard_link(d.ctx.join("dir/a"), d.ctx.join("dir/b")).unwrap();
    let stats = copy(&d.ctx, &d.rootfs, &spec(&["dir"], "/out"), None).unwrap();
    let a = fs::metadata(d.rootfs.join("out/a")).unwrap();
    let b = fs::metadata(d.rootfs.join("out/b")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!((stats.files, stats.hardlinks), (1, 1));
}

#[test]
fn inner_symlinks_are_copied_as_links_and_named_ones_followed() {
    let d = dirs();
    tree(&d.ctx, &[("dir/target.txt", "t"), ("real.txt", "r")]);
    symlink("target.txt", d.ctx.join("dir/link")).unwrap();
    symlink("real.txt", d.ctx.join("named")).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["dir", "named"], "/out/"), None).unwrap();
    let link = d.rootfs.join("out/link");
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("target.txt"));
    // Named directly: followed, and the copy takes the link's name.
    let named = fs::symlink_metadata(d.rootfs.join("out/named")).unwrap();
    assert!(named.is_file());
    assert_eq!(read(&d.rootfs, "out/named"), "r");
    // Unless following is turned off.
    let mut s = spec(&["named"], "/nofollow/");
    s.follow_symlinks_in_sources = false;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(
        fs::read_link(d.rootfs.join("nofollow/named")).unwrap(),
        Path::new("real.txt")
    );
}

#[test]
fn copy_symlink_cannot_escape_rootfs() {
    let d = dirs();
    tree(&d.ctx, &[("passwd", "evil"), ("dir/x", "x")]);
    let outside = d.outside.to_str().unwrap().to_string();
    // Absolute symlink to a host path, and a relative one climbing out.
    symlink(&outside, d.rootfs.join("etc")).unwrap();
    symlink(format!("../../../../../..{outside}"), d.rootfs.join("up")).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["passwd"], "/etc/passwd"), None).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["passwd"], "/up/"), None).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["dir"], "/up/sub"), None).unwrap();
    copy(
        &d.ctx,
        &d.rootfs,
        &spec(&["passwd"], "/../../passwd2"),
        None,
    )
    .unwrap();
    assert!(
        listing(&d.outside).is_empty(),
        "wrote outside: {:?}",
        listing(&d.outside)
    );
    // Both links resolve to the same path *inside* the rootfs.
    let inside = d.rootfs.join(outside.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(inside.join("passwd")).unwrap(), "evil");
    assert_eq!(fs::read_to_string(inside.join("sub/x")).unwrap(), "x");
    assert_eq!(read(&d.rootfs, "passwd2"), "evil");
}

#[test]
fn copy_into_dir_with_symlinked_child_does_not_follow_it() {
    let d = dirs();
    tree(&d.ctx, &[("dir/sub/x", "x"), ("dir/file", "f")]);
    tree(&d.rootfs, &[("out/", "")]);
    symlink(&d.outside, d.rootfs.join("out/sub")).unwrap();
    symlink(d.outside.join("file"), d.rootfs.join("out/file")).unwrap();
    let err = copy(&d.ctx, &d.rootfs, &spec(&["dir"], "/out"), None).unwrap_err();
    assert!(matches!(err, FileOpError::NotADirectory { .. }), "{err}");
    assert!(
        listing(&d.outside).is_empty(),
        "wrote outside: {:?}",
        listing(&d.outside)
    );
    // Inside a copied directory, a symlink where a file goes is replaced,
    // not written through.
    tree(&d.ctx, &[("flat/file", "f")]);
    tree(&d.rootfs, &[("out2/", "")]);
    symlink(d.outside.join("file"), d.rootfs.join("out2/file")).unwrap();
    copy(&d.ctx, &d.rootfs, &spec(&["flat"], "/out2"), None).unwrap();
    assert!(fs::symlink_metadata(d.rootfs.join("out2/file"))
        .unwrap()
        .is_file());
    // Named as the destination, the link is followed as chroot would: to
    // the same path inside the rootfs.
    copy(&d.ctx, &d.rootfs, &spec(&["dir/file"], "/out/file"), None).unwrap();
    let inside = d
        .rootfs
        .join(d.outside.strip_prefix("/").unwrap())
        .join("file");
    assert_eq!(fs::read_to_string(inside).unwrap(), "f");
    assert!(
        listing(&d.outside).is_empty(),
        "wrote outside: {:?}",
        listing(&d.outside)
    );
}

#[test]
fn copy_source_symlink_cannot_read_outside_context() {
    let d = dirs();
    fs::write(d.outside.join("secret"), "secret").unwrap();
    let secret = d.outside.join("secret");
    symlink(&secret, d.ctx.join("abs")).unwrap();
    symlink(
        format!("../../../../../..{}", secret.display()),
        d.ctx.join("rel"),
    )
    .unwrap();
    tree(&d.ctx, &[("dir/", "")]);
    symlink(&secret, d.ctx.join("dir/inner")).unwrap();
    // Named links resolve inside the context, where there is no such file.
    for name in ["abs", "rel", "../outside/secret"] {
        let err = copy(&d.ctx, &d.rootfs, &spec(&[name], "/got"), None).unwrap_err();
        assert!(matches!(err, FileOpError::Context(_)), "{name}: {err}");
    }
    // Inside a directory the link is copied as a link, never read.
    copy(&d.ctx, &d.rootfs, &spec(&["dir"], "/d"), None).unwrap();
    assert!(fs::symlink_metadata(d.rootfs.join("d/inner"))
        .unwrap()
        .file_type()
        .is_symlink());
    let all = listing(&d.rootfs);
    for p in &all {
        let path = d.rootfs.join(p);
        if path.is_file()
            && !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        {
            assert_ne!(fs::read_to_string(&path).unwrap(), "secret", "{p}");
        }
    }
    // And the digest does not read it either.
    let ctx = BuildContext::open(&d.ctx).unwrap();
    let sel = ctx.select(&["dir".to_string()], &[]).unwrap();
    ctx.digest(&sel).unwrap();
    assert_eq!(ctx.stat_cache().misses(), 0, "no file content was read");
}

fn tar_bytes(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_mtime(1_500_000_000);
        h.set_uid(1000);
        h.set_gid(1000);
        // Write raw names, so `..` entries can be built at all.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let raw = &mut h.as_old_mut().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn add_spec(sources: &[&str], dest: &str) -> CopySpec {
    let mut s = spec(sources, dest);
    s.add = Some(AddOptions {
        unpack: true,
        checksum: None,
    });
    s
}

#[test]
fn add_extracts_tar_gzip_bzip2_xz_and_zstd() {
    let d = dirs();
    let plain = tar_bytes(&[
        ("top/", tar::EntryType::Directory, b"", None),
        ("top/f.txt", tar::EntryType::Regular, b"hello", None),
        ("top/l", tar::EntryType::Symlink, b"", Some("f.txt")),
        ("top/h", tar::EntryType::Link, b"", Some("top/f.txt")),
    ]);
    fs::write(d.ctx.join("a.tar"), &plain).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    fs::write(d.ctx.join("a.tgz"), gz.finish().unwrap()).unwrap();
    fs::write(
        d.ctx.join("a.tar.zst"),
        zstd::encode_all(plain.as_slice(), 3).unwrap(),
    )
    .unwrap();
    fs::write(d.ctx.join("not-a-tar.gz"), b"plain text").unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&plain).unwrap();
    fs::write(d.ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).unwrap();
    fs::write(d.ctx.join("a.tar.xz"), xz).unwrap();

    for (name, dest) in [
        ("a.tar", "/x"),
        ("a.tgz", "/y/"),
        ("a.tar.zst", "/z"),
        ("a.tar.bz2", "/b"),
        ("a.tar.xz", "/xz/"),
    ] {
        copy(&d.ctx, &d.rootfs, &add_spec(&[name], dest), None).unwrap();
        let dir = dest.trim_matches('/');
        assert_eq!(
            read(&d.rootfs, &format!("{dir}/top/f.txt")),
            "hello",
            "{name}"
        );
        let l = d.rootfs.join(format!("{dir}/top/l"));
        assert_eq!(fs::read_link(l).unwrap(), Path::new("f.txt"));
        let f = fs::metadata(d.rootfs.join(format!("{dir}/top/f.txt"))).unwrap();
        let h = fs::metadata(d.rootfs.join(format!("{dir}/top/h"))).unwrap();
        assert_eq!(f.ino(), h.ino(), "{name}: hard link kept");
        assert_eq!(f.mtime(), 1_500_000_000);
        if is_root() {
            assert_eq!((f.uid(), f.gid()), (1000, 1000), "archive ownership kept");
        }
    }
    // Not an archive: copied as a file.
    copy(&d.ctx, &d.rootfs, &add_spec(&["not-a-tar.gz"], "/p/"), None).unwrap();
    assert_eq!(read(&d.rootfs, "p/not-a-tar.gz"), "plain text");
    // COPY never extracts.
    copy(&d.ctx, &d.rootfs, &spec(&["a.tar"], "/c/"), None).unwrap();
    assert!(d.rootfs.join("c/a.tar").is_file());
}

#[test]
fn add_tar_cannot_escape() {
    let d = dirs();
    let outside = d.outside.to_str().unwrap();
    let evil = tar_bytes(&[("../../../escaped", tar::EntryType::Regular, b"x", None)]);
    fs::write(d.ctx.join("dotdot.tar"), &evil).unwrap();
    let err = copy(&d.ctx, &d.rootfs, &add_spec(&["dotdot.tar"], "/x/"), None).unwrap_err();
    assert!(
        matches!(err, FileOpError::UnsafeArchiveEntry { .. }),
        "{err}"
    );

    // A symlink to the host, then a file written "through" it.
    let through = tar_bytes(&[
        ("link", tar::EntryType::Symlink, b"", Some(outside)),
        ("link/pwned", tar::EntryType::Regular, b"x", None),
        ("abs", tar::EntryType::Symlink, b"", Some("/")),
        ("abs/rootfile", tar::EntryType::Regular, b"r", None),
    ]);
    fs::write(d.ctx.join("through.tar"), &through).unwrap();
    copy(&d.ctx, &d.rootfs, &add_spec(&["through.tar"], "/y/"), None).unwrap();
    assert!(
        listing(&d.outside).is_empty(),
        "wrote outside: {:?}",
        listing(&d.outside)
    );
    // The write landed where chroot would put it: inside the rootfs.
    let inside = d.rootfs.join(outside.trim_start_matches('/')).join("pwned");
    assert!(inside.is_file());
    assert_eq!(read(&d.rootfs, "rootfile"), "r");
}

/// A one-shot HTTP server on 127.0.0.1; returns its base URL.
fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let found = routes.iter().find(|(p, _)| path.starts_with(p));
            let (status, body) = match found {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"nope".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_url_downloads_with_name_mode_and_mtime() {
    let d = dirs();
    let base = serve(vec![("/files/tool.sh", b"#!/bin/sh\necho hi\n".to_vec())]);
    let url = format!("{base}/files/tool.sh?token=1");
    copy(&d.ctx, &d.rootfs, &add_spec(&[&url], "/dl/"), None).unwrap();
    let path = d.rootfs.join("dl/tool.sh");
    assert_eq!(fs::read_to_string(&path).unwrap(), "#!/bin/sh\necho hi\n");
    let m = fs::metadata(&path).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.mtime(), 784_111_777, "mtime from Last-Modified");
    // Without a trailing slash the URL's content becomes the destination.
    copy(&d.ctx, &d.rootfs, &add_spec(&[&url], "/bin/renamed"), None).unwrap();
    assert!(d.rootfs.join("bin/renamed").is_file());
    // A 404 is an error naming the URL.
    let err = copy(
        &d.ctx,
        &d.rootfs,
        &add_spec(&[&format!("{base}/missing")], "/x/"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/missing"), "{err}");
}

#[test]
fn add_url_checksum_is_verified() {
    let d = dirs();
    let body = b"payload".to_vec();
    let base = serve(vec![("/p", body.clone())]);
    let url = format!("{base}/p");
    let good = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)))
    };
    let mut s = add_spec(&[&url], "/ok/");
    s.add.as_mut().unwrap().checksum = Some(good.clone());
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "ok/p"), "payload");

    let wrong = format!("sha256:{}", "0".repeat(64));
    s.dest = "/bad/".to_string();
    s.add.as_mut().unwrap().checksum = Some(wrong.clone());
    let err = copy(&d.ctx, &d.rootfs, &s, None).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&good), "{msg}");
    assert!(
        !d.rootfs.join("bad/p").exists(),
        "nothing written on mismatch"
    );

    // As in Docker, a checksum only makes sense for URLs.
    tree(&d.ctx, &[("local.txt", "l")]);
    let mut s = add_spec(&["local.txt"], "/l/");
    s.add.as_mut().unwrap().checksum = Some(good);
    let err = copy(&d.ctx, &d.rootfs, &s, None).unwrap_err();
    assert!(matches!(err, FileOpError::ChecksumNeedsUrl { .. }), "{err}");
}

#[test]
fn heredocs_become_files() {
    let d = dirs();
    let mut s = spec(&[], "/etc/conf/");
    s.heredocs = vec![("app.conf".to_string(), b"key=1\n".to_vec())];
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "etc/conf/app.conf"), "key=1\n");
    let mode = fs::metadata(d.rootfs.join("etc/conf/app.conf"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn exclude_and_parents() {
    let d = dirs();
    tree(
        &d.ctx,
        &[
            ("src/a.rs", "a"),
            ("src/a.md", "m"),
            ("src/deep/b.md", "m"),
            ("x/y/z.txt", "z"),
        ],
    );
    let mut s = spec(&["src"], "/out");
    s.excludes = vec!["**/*.md".to_string()];
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert!(d.rootfs.join("out/a.rs").exists());
    assert!(!d.rootfs.join("out/a.md").exists());
    assert!(!d.rootfs.join("out/deep/b.md").exists());

    // Docker's own example: `COPY --exclude=*.txt hom* /mydir/`.
    tree(
        &d.ctx,
        &[("homer.txt", "t"), ("homer.rs", "r"), ("home/a.txt", "a")],
    );
    let mut s = spec(&["hom*"], "/mydir/");
    s.excludes = vec!["*.txt".to_string()];
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(listing(&d.rootfs.join("mydir")), ["homer.rs"]);

    let mut s = spec(&["x/y/z.txt"], "/par/");
    s.parents = true;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "par/x/y/z.txt"), "z");
    let mut s = spec(&["x/./y/z.txt"], "/piv/");
    s.parents = true;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "piv/y/z.txt"), "z");
}

#[test]
fn dockerignore_rules_apply_to_copy_and_select() {
    let d = dirs();
    tree(
        &d.ctx,
        &[
            ("keep.txt", "k"),
            ("drop.txt", "d"),
            ("logs/a.log", "a"),
            ("logs/keep.log", "k"),
            ("deep/x/y/z.tmp", "t"),
            ("deep/x/y/ok.rs", "o"),
            ("Dockerfile", "FROM scratch"),
        ],
    );
    let ignore = "# comment\n*.txt\n!keep.txt\nlogs\n!logs/keep.log\n**/*.tmp\n/Dockerfile\n";
    fs::write(d.ctx.join(".dockerignore"), ignore).unwrap();
    let ctx = BuildContext::open(&d.ctx).unwrap();
    let sel = ctx.select(&[".".to_string()], &[]).unwrap();
    let mut names: Vec<&str> = sel.sources[0]
        .entries
        .iter()
        .map(|e| e.sub.as_str())
        .collect();
    names.retain(|n| !n.is_empty());
    assert_eq!(
        names,
        [
            ".dockerignore",
            "deep",
            "deep/x",
            "deep/x/y",
            "deep/x/y/ok.rs",
            "keep.txt",
            "logs",
            "logs/keep.log"
        ]
    );
    // An ignored file named directly does not exist for COPY.
    let m = IgnoreMatcher::parse(ignore).unwrap();
    let err = copy(&d.ctx, &d.rootfs, &spec(&["drop.txt"], "/"), Some(&m)).unwrap_err();
    assert!(
        err.to_string().contains("excluded by .dockerignore"),
        "{err}"
    );
    assert!(copy(&d.ctx, &d.rootfs, &spec(&["Dockerfile"], "/"), Some(&m)).is_err());
    // A glob skips it silently.
    copy(&d.ctx, &d.rootfs, &spec(&["*.txt"], "/t/"), Some(&m)).unwrap();
    assert_eq!(listing(&d.rootfs.join("t")), ["keep.txt"]);
    // An ignored directory with an exception copies only the exception.
    copy(&d.ctx, &d.rootfs, &spec(&["logs"], "/l/"), Some(&m)).unwrap();
    assert_eq!(listing(&d.rootfs.join("l")), ["keep.log"]);
}

#[test]
fn digest_ignores_mtime_but_sees_content_mode_and_new_files() {
    let d = dirs();
    tree(&d.ctx, &[("app/a", "1"), ("app/b", "2")]);
    let pats = ["app".to_string()];
    let digest = || {
        let ctx = BuildContext::open(&d.ctx).unwrap();
        let sel = ctx.select(&pats, &[]).unwrap();
        ctx.digest(&sel).unwrap()
    };
    let first = digest();
    assert_eq!(first.files.len(), 3);
    assert_eq!(first.files[1].0, "app/a");

    filetime::set_file_mtime(
        d.ctx.join("app/a"),
        filetime::FileTime::from_unix_time(5, 0),
    )
    .unwrap();
    assert_eq!(digest().hex, first.hex, "mtime is not part of the digest");

    fs::write(d.ctx.join("app/a"), "changed").unwrap();
    let changed = digest();
    assert_ne!(changed.hex, first.hex);
    assert_ne!(
        changed.files[1].1, first.files[1].1,
        "the changed file is named"
    );
    assert_eq!(changed.files[2].1, first.files[2].1);
    fs::write(d.ctx.join("app/a"), "1").unwrap();
    assert_eq!(digest().hex, first.hex);

    fs::set_permissions(d.ctx.join("app/b"), fs::Permissions::from_mode(0o755)).unwrap();
    let moded = digest();
    assert_ne!(moded.hex, first.hex);
    fs::set_permissions(d.ctx.join("app/b"), fs::Permissions::from_mode(0o644)).unwrap();

    fs::write(d.ctx.join("app/c"), "3").unwrap();
    assert_ne!(digest().hex, first.hex, "a new file changes the digest");
    fs::remove_file(d.ctx.join("app/c")).unwrap();
    let mode_back = digest();
    // Equal again only if app/b went back to the mode it was created with.
    let b_mode = fs::metadata(d.ctx.join("app/b")).unwrap().mode() & 0o777;
    if b_mode == 0o644 {
        assert_eq!(mode_back.hex, first.hex);
    }
}

#[test]
fn stat_cache_avoids_rereading_unchanged_files() {
    let d = dirs();
    let files: Vec<(String, String)> = (0..50)
        .map(|i| (format!("f/{i}.txt"), format!("{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    tree(&d.ctx, &refs);
    // Files changed within the racy window are not remembered; wait it out.
    std::thread::sleep(std::time::Duration::from_millis(120));
    let pats = [".".to_string()];
    let cache_file = d.outside.join("stat.bin");

    let ctx = BuildContext::open(&d.ctx).unwrap();
    let sel = ctx.select(&pats, &[]).unwrap();
    let cold = ctx.digest(&sel).unwrap();
    assert_eq!(
        (ctx.stat_cache().hits(), ctx.stat_cache().misses()),
        (0, 50)
    );
    let warm = ctx.digest(&sel).unwrap();
    assert_eq!(warm, cold);
    assert_eq!(ctx.stat_cache().hits(), 50);
    ctx.stat_cache().save(&cache_file).unwrap();

    // A new process: load the cache, nothing is read.
    let ctx = BuildContext::open(&d.ctx)
        .unwrap()
        .with_stat_cache(StatCache::load(&cache_file).unwrap());
    let sel = ctx.select(&pats, &[]).unwrap();
    assert_eq!(ctx.digest(&sel).unwrap(), cold);
    assert_eq!(
        (ctx.stat_cache().hits(), ctx.stat_cache().misses()),
        (50, 0)
    );

    // A changed file (new size, new ctime) is read again, only it.
    fs::write(d.ctx.join("f/7.txt"), "seven").unwrap();
    let sel = ctx.select(&pats, &[]).unwrap();
    assert_ne!(ctx.digest(&sel).unwrap(), cold);
    assert_eq!(ctx.stat_cache().misses(), 1);

    // A corrupt cache file is an empty cache, not an error.
    fs::write(&cache_file, b"garbage").unwrap();
    assert!(StatCache::load(&cache_file).unwrap().is_empty());
}

#[test]
fn source_digest_for_copy_from() {
    let d = dirs();
    tree(&d.rootfs, &[("usr/lib/a.so", "a"), ("usr/lib/b.so", "b")]);
    let pats = ["/usr/lib/*.so".to_string()];
    let one = source_digest(&d.rootfs, &pats, &[], None).unwrap();
    assert_eq!(one.files.len(), 2);
    assert_eq!(one, source_digest(&d.rootfs, &pats, &[], None).unwrap());
    fs::write(d.rootfs.join("usr/lib/b.so"), "B").unwrap();
    assert_ne!(
        one.hex,
        source_digest(&d.rootfs, &pats, &[], None).unwrap().hex
    );
}

/// Manual timing of context hashing and COPY on a large context (the bench
/// `wide` case). Run with
/// `RBK_BENCH_CONTEXT=DIR cargo test --release -p rbk-scheduler --test it -- --ignored --nocapture context_hashing_timing`.
#[test]
#[ignore]
fn context_hashing_timing() {
    let Some(dir) = std::env::var_os("RBK_BENCH_CONTEXT") else {
        eprintln!("SKIPPED: set RBK_BENCH_CONTEXT to a build context");
        return;
    };
    let dir = Path::new(&dir);
    let copies = [
        vec!["files/".to_string()],
        vec!["big.bin".to_string()],
        vec!["last/".to_string()],
    ];
    let tmp = tempfile::tempdir().unwrap();
    // RBK_BENCH_CACHE keeps the stat cache between runs (all rounds warm).
    let cache_file = std::env::var_os("RBK_BENCH_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("stat.bin"));
    for round in ["cold", "warm", "warm"] {
        let t = std::time::Instant::now();
        let ctx = BuildContext::open(dir)
            .unwrap()
            .with_stat_cache(StatCache::load(&cache_file).unwrap());
        let loaded = t.elapsed();
        let mut entries = 0;
        let mut selecting = std::time::Duration::ZERO;
        for pats in &copies {
            let s = std::time::Instant::now();
            let sel = ctx.select(pats, &[]).unwrap();
            selecting += s.elapsed();
            entries += sel.len();
            ctx.digest(&sel).unwrap();
        }
        let hashed = t.elapsed();
        eprintln!("{round}: selecting took {selecting:?}");
        ctx.stat_cache().save(&cache_file).unwrap();
        eprintln!(
            "{round}: {entries} entries, load {loaded:?}, select+digest {hashed:?}, with save {:?} (hits {}, misses {})",
            t.elapsed(),
            ctx.stat_cache().hits(),
            ctx.stat_cache().misses()
        );
    }
    if std::env::var_os("RBK_BENCH_NO_COPY").is_some() {
        return;
    }
    let t = std::time::Instant::now();
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    let stats = copy(dir, &rootfs, &spec(&["files/"], "/data/files/"), None).unwrap();
    eprintln!("copy files/: {stats:?} in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let stats = copy(dir, &rootfs, &spec(&["big.bin"], "/data/big.bin"), None).unwrap();
    eprintln!("copy big.bin: {stats:?} in {:?}", t.elapsed());
}
