//! A context that changes between the walk that keys a COPY and the copy:
//! the copy fails naming the file, rather than hold content its key does
//! not name. Each test selects and digests (as the planner does), changes
//! the context, then copies that selection (as the runner does).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use rbk_scheduler::context::{BuildContext, ContentDigest, Selection};
use rbk_scheduler::fileop::{copy_selection, AddOptions, CopySpec, FileOpError};

use super::{dirs, listing, read, spec, tree};

/// What the planner makes of `ctx` for `sources`.
fn keyed(ctx: &Path, sources: &[&str]) -> (BuildContext, Selection, ContentDigest) {
    let c = BuildContext::open(ctx).unwrap();
    let pats: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    let sel = c.select(&pats, &[]).unwrap();
    let digest = c.digest(&sel).unwrap();
    (c, sel, digest)
}

fn changed_name(err: &FileOpError) -> String {
    match err {
        FileOpError::SourceChanged { name } => name.clone(),
        e => panic!("not a changed source: {}", rbk_scheduler::error_chain(e)),
    }
}

fn copy_keyed(
    c: &BuildContext,
    rootfs: &Path,
    s: &CopySpec,
    (sel, digest): (&Selection, &ContentDigest),
) -> Result<rbk_scheduler::fileop::CopyStats, FileOpError> {
    copy_selection(c.root(), rootfs, s, sel, digest)
}

#[test]
fn a_file_renamed_over_after_hashing_fails_the_copy_and_names_it() {
    let d = dirs();
    tree(&d.ctx, &[("src/x", "one"), ("keep", "k")]);
    let (c, sel, digest) = keyed(&d.ctx, &["."]);
    fs::write(d.ctx.join("src/x.new"), "two").unwrap();
    fs::rename(d.ctx.join("src/x.new"), d.ctx.join("src/x")).unwrap();
    let err = copy_keyed(&c, &d.rootfs, &spec(&["."], "/ctx/"), (&sel, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "src/x");
    let text = err.to_string();
    assert!(text.contains("context file src/x changed while it was being copied"));
    assert!(text.contains("run the build again"), "{text}");
}

#[test]
fn a_file_rewritten_in_place_after_hashing_fails_the_copy() {
    let d = dirs();
    tree(&d.ctx, &[("f", "one")]);
    let (c, sel, digest) = keyed(&d.ctx, &["f"]);
    // Same inode, same size: only the times and content differ.
    fs::write(d.ctx.join("f"), "two").unwrap();
    let err = copy_keyed(&c, &d.rootfs, &spec(&["f"], "/f"), (&sel, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "f");
}

#[test]
fn a_change_its_stat_does_not_show_is_caught_by_the_content() {
    // A write in the clock tick of the walk leaves the stat as walked: made
    // here by copying a fresh selection (the stat now) under the old digest.
    let d = dirs();
    tree(&d.ctx, &[("dir/f", "one"), ("dir/g", "same")]);
    let (c, _, old) = keyed(&d.ctx, &["dir"]);
    fs::write(d.ctx.join("dir/f"), "two").unwrap();
    let (_, now, fresh) = keyed(&d.ctx, &["dir"]);
    let s = spec(&["dir"], "/out/");
    let err = copy_keyed(&c, &d.rootfs, &s, (&now, &old)).unwrap_err();
    assert_eq!(changed_name(&err), "dir/f");
    // The same selection under its own digest copies.
    let d2 = dirs();
    copy_keyed(&c, &d2.rootfs, &s, (&now, &fresh)).unwrap();
    assert_eq!(read(&d2.rootfs, "out/f"), "two");
}

#[test]
fn a_file_deleted_or_made_a_symlink_after_hashing_fails_the_copy() {
    let d = dirs();
    tree(&d.ctx, &[("dir/a", "a"), ("dir/b", "b"), ("other", "o")]);
    let (c, sel, digest) = keyed(&d.ctx, &["dir"]);
    fs::remove_file(d.ctx.join("dir/a")).unwrap();
    let s = spec(&["dir"], "/out/");
    let err = copy_keyed(&c, &d.rootfs, &s, (&sel, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "dir/a");

    let (c, sel, digest) = keyed(&d.ctx, &["dir"]);
    fs::remove_file(d.ctx.join("dir/b")).unwrap();
    symlink("../other", d.ctx.join("dir/b")).unwrap();
    let d2 = dirs();
    let err = copy_keyed(&c, &d2.rootfs, &s, (&sel, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "dir/b");
}

#[test]
fn a_file_appearing_after_hashing_is_not_copied() {
    let d = dirs();
    tree(&d.ctx, &[("dir/a", "a")]);
    let (c, sel, digest) = keyed(&d.ctx, &["dir"]);
    fs::write(d.ctx.join("dir/new"), "n").unwrap();
    copy_keyed(&c, &d.rootfs, &spec(&["dir"], "/out/"), (&sel, &digest)).unwrap();
    assert_eq!(listing(&d.rootfs.join("out")), ["a"]);
}

#[test]
fn a_symlink_retargeted_after_hashing_is_copied_as_hashed() {
    let d = dirs();
    tree(&d.ctx, &[("dir/a", "a"), ("dir/b", "b")]);
    symlink("a", d.ctx.join("dir/l")).unwrap();
    let (c, sel, digest) = keyed(&d.ctx, &["dir"]);
    fs::remove_file(d.ctx.join("dir/l")).unwrap();
    symlink("b", d.ctx.join("dir/l")).unwrap();
    copy_keyed(&c, &d.rootfs, &spec(&["dir"], "/out/"), (&sel, &digest)).unwrap();
    let target = fs::read_link(d.rootfs.join("out/l")).unwrap();
    assert_eq!(target, Path::new("a"));
}

fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_000);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn add(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        add: Some(AddOptions {
            unpack: true,
            checksum: None,
            keep_git_dir: false,
        }),
        ..spec(sources, dest)
    }
}

#[test]
fn an_archive_changed_after_hashing_fails_the_add() {
    let d = dirs();
    fs::write(d.ctx.join("a.tar"), tar_of("x", b"one")).unwrap();
    let (c, sel, digest) = keyed(&d.ctx, &["a.tar"]);
    // Rewritten in place, and (below) under a stat its walk saw.
    fs::write(d.ctx.join("a.tar"), tar_of("x", b"two")).unwrap();
    let s = add(&["a.tar"], "/out/");
    let err = copy_keyed(&c, &d.rootfs, &s, (&sel, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "a.tar");

    let (_, now, fresh) = keyed(&d.ctx, &["a.tar"]);
    let d2 = dirs();
    let err = copy_keyed(&c, &d2.rootfs, &s, (&now, &digest)).unwrap_err();
    assert_eq!(changed_name(&err), "a.tar");
    copy_keyed(&c, &d2.rootfs, &s, (&now, &fresh)).unwrap();
    assert_eq!(read(&d2.rootfs, "out/x"), "two");
}

#[test]
fn a_file_changed_between_walk_and_hash_fails_the_key() {
    let d = dirs();
    tree(&d.ctx, &[("dir/f", "one")]);
    let c = BuildContext::open(&d.ctx).unwrap();
    let sel = c.select(&["dir".to_string()], &[]).unwrap();
    fs::write(d.ctx.join("dir/f.new"), "two").unwrap();
    fs::rename(d.ctx.join("dir/f.new"), d.ctx.join("dir/f")).unwrap();
    let err = c.digest(&sel).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("context file dir/f changed while it was being read"),
        "{text}"
    );
    // Nothing was remembered for the file walked or the one read.
    assert!(c.stat_cache().is_empty());
}
