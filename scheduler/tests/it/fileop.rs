//! COPY/ADD and context hashing: Docker's semantics, one test each, and the
//! symlink-safety regressions. ADD-only tests are in `add`, `.dockerignore`
//! and digests in `context`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use rbk_scheduler::context::BuildContext;
use rbk_scheduler::fileop::{copy, CopySpec, FileOpError};

/// Writes `files` under `root`; a name ending in `/` is a directory.
pub(super) fn tree(root: &Path, files: &[(&str, &str)]) {
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

pub(super) fn spec(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.to_string(),
        workdir: "/".to_string(),
        follow_symlinks_in_sources: true,
        ..CopySpec::default()
    }
}

pub(super) struct Dirs {
    _tmp: tempfile::TempDir,
    pub ctx: std::path::PathBuf,
    pub rootfs: std::path::PathBuf,
    pub outside: std::path::PathBuf,
}

pub(super) fn dirs() -> Dirs {
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

pub(super) fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(super) fn is_root() -> bool {
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
pub(super) fn listing(root: &Path) -> Vec<String> {
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
    let msg = rbk_scheduler::error_chain(&err);
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
    s.chmod = Some(rbk_compiler::chmod::Chmod::Octal(0o640));
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    for p in ["out/f", "out/sub", "out/sub/g"] {
        let mode = fs::symlink_metadata(d.rootfs.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640, "{p}");
    }
}

#[test]
fn symbolic_chmod_applies_to_each_files_own_mode() {
    let d = dirs();
    tree(
        &d.ctx,
        &[
            ("dir/f", "f"),
            ("dir/run.sh", "#!/bin/sh"),
            ("dir/sub/g", "g"),
        ],
    );
    fs::set_permissions(d.ctx.join("dir/f"), fs::Permissions::from_mode(0o664)).unwrap();
    fs::set_permissions(d.ctx.join("dir/run.sh"), fs::Permissions::from_mode(0o744)).unwrap();
    fs::set_permissions(d.ctx.join("dir/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut s = spec(&["dir"], "/out");
    s.chmod = Some(rbk_compiler::chmod::Chmod::parse("go-w,a+X").unwrap());
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    for (p, want) in [("out/f", 0o644), ("out/run.sh", 0o755), ("out/sub", 0o711)] {
        let mode = fs::symlink_metadata(d.rootfs.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode, want, "{p}: {mode:o}");
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

    fs::set_permissions(d.ctx.join("x/y"), fs::Permissions::from_mode(0o701)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_234_567_890, 0);
    filetime::set_file_mtime(d.ctx.join("x/y"), t).unwrap();
    let mut s = spec(&["x/y/z.txt"], "/par/");
    s.parents = true;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "par/x/y/z.txt"), "z");
    // Directories on the kept path come with their source metadata.
    let m = fs::metadata(d.rootfs.join("par/x/y")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o701);
    assert_eq!(m.mtime(), 1_234_567_890);
    let mut s = spec(&["x/./y/z.txt"], "/piv/");
    s.parents = true;
    copy(&d.ctx, &d.rootfs, &s, None).unwrap();
    assert_eq!(read(&d.rootfs, "piv/y/z.txt"), "z");
}

mod add;
mod changed;
mod context;
