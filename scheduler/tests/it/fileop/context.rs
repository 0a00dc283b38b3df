//! `.dockerignore`, context digests, the stat cache and `COPY --from`
//! source digests.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rbk_scheduler::context::{BuildContext, IgnoreMatcher, StatCache};
use rbk_scheduler::fileop::{copy, copy_selection, source_digest};

use super::{dirs, listing, spec, tree};

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
        rbk_scheduler::error_chain(&err).contains("excluded by .dockerignore"),
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
    let ctx = BuildContext::open(&d.ctx).unwrap();
    let sel = ctx.select(&pats, &[]).unwrap();
    let digest = || ctx.digest(&ctx.select(&pats, &[]).unwrap()).unwrap();
    let first = digest();
    let named: Vec<String> = first.files(&sel).map(|(name, _)| name).collect();
    assert_eq!(named, ["app", "app/a", "app/b"]);

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
        changed.records[1], first.records[1],
        "the changed file is named"
    );
    assert_eq!(changed.records[2], first.records[2]);
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

    // The entry of a file no build uses any more (deleted) is dropped on
    // the 16th save without it; the others stay.
    assert_eq!(StatCache::load(&cache_file).unwrap().len(), 50);
    fs::remove_file(d.ctx.join("f/3.txt")).unwrap();
    for save in 1..=16 {
        let ctx = BuildContext::open(&d.ctx)
            .unwrap()
            .with_stat_cache(StatCache::load(&cache_file).unwrap());
        let sel = ctx.select(&pats, &[]).unwrap();
        ctx.digest(&sel).unwrap();
        ctx.stat_cache().save(&cache_file).unwrap();
        let want = if save < 16 { 50 } else { 49 };
        let len = StatCache::load(&cache_file).unwrap().len();
        assert_eq!(len, want, "entries after save {save}");
    }

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
    assert_eq!(one.records.len(), 2);
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

#[test]
fn copy_selection_reuses_the_digested_selection() {
    let d = dirs();
    tree(
        &d.ctx,
        &[("app/a", "1"), ("app/b.md", "2"), ("skip.log", "3")],
    );
    fs::write(d.ctx.join(".dockerignore"), "*.log\n").unwrap();
    let ctx = BuildContext::open(&d.ctx).unwrap();
    let pats = ["app".to_string(), "*.log".to_string()];
    let excludes = ["*.md".to_string()];
    let sel = ctx.select(&pats, &excludes).unwrap();
    let digest = ctx.digest(&sel).unwrap();
    let mut s = spec(&["app", "*.log"], "/out/");
    s.excludes = excludes.to_vec();
    let stats = copy_selection(ctx.root(), &d.rootfs, &s, &sel, &digest).unwrap();
    assert_eq!(stats.files, 1);
    assert_eq!(listing(&d.rootfs.join("out")), ["a"]);
}
