//! One cache ref for a fleet of builders: exports to the same registry ref
//! or directory, even at the same moment, keep each other's records; old
//! records are pruned from the registry.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::build::{rbk, store_with_busybox, write};
use crate::cache::{ok, Registry};

/// A fleet's setup: a registry with the base image, and `n` contexts of
/// different Dockerfiles on that base (the first step shared by all).
struct Fleet {
    reg: Registry,
    dir: tempfile::TempDir,
    contexts: Vec<PathBuf>,
}

fn fleet(test: &str, n: usize, delete: bool) -> Option<Fleet> {
    let reg = Registry::start_with(test, delete)?;
    let dir = store_with_busybox(test)?;
    let base = format!("{}/base/busybox:1", reg.host);
    ok(rbk(&dir.path().join("store"))
        .args(["push", "-q", "localhost/busybox:latest", &base])
        .output()
        .unwrap());
    let contexts = (0..n)
        .map(|i| {
            let ctx = dir.path().join(format!("ctx{i}"));
            let dockerfile = format!(
                "FROM {base}\n\
                 RUN echo shared > /shared\n\
                 RUN echo {i} > /n\n\
                 COPY f /f\n\
                 RUN cat /n /f > /out\n"
            );
            write(
                &ctx,
                &[("Dockerfile", &dockerfile), ("f", &format!("file {i}\n"))],
            );
            ctx
        })
        .collect();
    Some(Fleet { reg, dir, contexts })
}

impl Fleet {
    /// A new empty store's root.
    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `rbk build` of context `i` in `store` with `extra` flags, started.
    fn spawn(&self, store: &Path, i: usize, extra: &[String]) -> Child {
        rbk(store)
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&self.contexts[i])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Builds context `i` in `store`; its standard error.
    fn build(&self, store: &Path, i: usize, extra: &[String]) -> String {
        ok(self.spawn(store, i, extra).wait_with_output().unwrap()).1
    }

    /// Builds contexts `which` in one new store each, all started at the
    /// same moment, each with `extra`; their standard errors.
    fn build_together(&self, name: &str, which: &[usize], extra: &[String]) -> Vec<String> {
        let children: Vec<Child> = which
            .iter()
            .map(|&i| self.spawn(&self.store(&format!("{name}{i}")), i, extra))
            .collect();
        children
            .into_iter()
            .map(|c| ok(c.wait_with_output().unwrap()).1)
            .collect()
    }
}

/// The record tags of the cache tagged `tag` in `repo`.
fn record_tags(host: &str, repo: &str, tag: &str) -> Vec<String> {
    let out = Command::new("curl")
        .arg("-fsS")
        .arg(format!("http://{host}/v2/{repo}/tags/list"))
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    tags.retain(|t| t.len() == tag.len() + 65 && t.starts_with(&format!("{tag}-")));
    tags.sort();
    tags
}

#[test]
fn four_builders_exporting_at_once_to_one_ref_keep_every_record() {
    let test = "four_builders_exporting_at_once_to_one_ref_keep_every_record";
    let Some(f) = fleet(test, 4, false) else {
        return;
    };
    let cache = format!("{}/cache/fleet:buildcache", f.reg.host);
    let to = vec![format!("--cache-to=type=registry,ref={cache},mode=max")];
    let started = std::time::Instant::now();
    let errs = f.build_together("builder", &[0, 1, 2, 3], &to);
    eprintln!("4 builds + exports at once: {:?}", started.elapsed());
    for err in &errs {
        assert!(err.contains("4 steps run, 0 cached"), "{err}");
        assert!(
            // Two a step: its first-pass key and its result key.
            err.contains(&format!("exported cache to {cache}: 8 records")),
            "{err}"
        );
    }
    // A fresh store takes every step of every Dockerfile from the cache.
    let fresh = f.store("fresh");
    let from = vec![format!("--cache-from=type=registry,ref={cache}")];
    for i in 0..4 {
        let err = f.build(&fresh, i, &from);
        assert!(err.contains("0 steps run"), "Dockerfile {i}: {err}");
    }
    // One shared step and three of each builder's own, two records each.
    let tags = record_tags(&f.reg.host, "cache/fleet", "buildcache");
    assert_eq!(tags.len(), 26, "{tags:?}");

    // Exporting again pushes nothing: every record is there.
    let again = f.build(&f.store("builder0"), 0, &to);
    assert!(
        again.contains(&format!(
            "exported cache to {cache}: 4 records (0 pushed, 4 already there)"
        )),
        "{again}"
    );
}

#[test]
fn two_exports_to_one_directory_keep_both() {
    let test = "two_exports_to_one_directory_keep_both";
    let Some(f) = fleet(test, 2, false) else {
        return;
    };
    let dir = f.dir.path().join("ci-cache");
    let to = vec![format!(
        "--cache-to=type=local,dest={},mode=max",
        dir.display()
    )];
    for err in f.build_together("job", &[0, 1], &to) {
        assert!(err.contains("exported cache to local:"), "{err}");
    }
    let from = vec![format!("--cache-from=type=local,src={}", dir.display())];
    let third = f.store("third");
    for i in 0..2 {
        let err = f.build(&third, i, &from);
        assert!(err.contains("0 steps run"), "Dockerfile {i}: {err}");
    }
}

#[test]
fn an_inline_cache_and_a_registry_cache_together() {
    let test = "an_inline_cache_and_a_registry_cache_together";
    let Some(f) = fleet(test, 2, false) else {
        return;
    };
    let image = format!("{}/app/inline:1", f.reg.host);
    let cache = format!("{}/cache/app:buildcache", f.reg.host);
    f.build(
        &f.store("a"),
        0,
        &[
            "-t".into(),
            image.clone(),
            "--push".into(),
            "--cache-to=type=inline".into(),
        ],
    );
    f.build(
        &f.store("b"),
        1,
        &[format!("--cache-to=type=registry,ref={cache},mode=max")],
    );
    let from = vec![
        format!("--cache-from={image}"),
        format!("--cache-from=type=registry,ref={cache}"),
    ];
    let c = f.store("c");
    for i in 0..2 {
        let err = f.build(&c, i, &from);
        assert!(err.contains("0 steps run"), "Dockerfile {i}: {err}");
    }
}

#[test]
fn prune_deletes_old_records_then_the_oldest_over_the_size() {
    let test = "prune_deletes_old_records_then_the_oldest_over_the_size";
    let Some(f) = fleet(test, 3, true) else {
        return;
    };
    let host = f.reg.host.clone();
    let cache = format!("{host}/cache/p:bc");
    let to = vec![format!("--cache-to=type=registry,ref={cache},mode=max")];
    let prune = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rbk"))
            .args(["cache", "prune", "--ref", &cache])
            .args(args)
            .output()
            .unwrap()
    };
    // Nothing to go by: refused.
    let out = prune(&[]);
    assert_eq!(out.status.code(), Some(1));

    f.build(&f.store("s0"), 0, &to);
    // Two records a step: its first-pass key and its result key.
    let first = record_tags(&host, "cache/p", "bc");
    assert_eq!(first.len(), 8);
    // Well apart, so a slow machine still tells the two exports apart.
    std::thread::sleep(std::time::Duration::from_secs(6));
    // Dockerfile 1 shares the first step: that record is not pushed again
    // (and so stays as old as Dockerfile 0's).
    f.build(&f.store("s1"), 1, &to);
    let both = record_tags(&host, "cache/p", "bc");
    assert_eq!(both.len(), 14);

    let (out, err) = ok(prune(&["--keep-duration", "4s"]));
    assert!(err.contains("deleted 8 records"), "{err}\n{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("deleted ")).count(), 8);
    assert_eq!(out.lines().filter(|l| l.starts_with("kept ")).count(), 6);
    let left = record_tags(&host, "cache/p", "bc");
    assert_eq!(left.len(), 6);
    assert!(left.iter().all(|t| !first.contains(t)), "{left:?}");

    // Dockerfile 1's own steps still come from the cache, its shared first
    // step is run again.
    let err = f.build(
        &f.store("fresh1"),
        1,
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert!(err.contains("1 step run, 3 cached"), "{err}");

    // By size: a big record, then a newer small set; under 1MB only the
    // newest fit.
    let big = f.dir.path().join("ctx2/Dockerfile");
    let text = std::fs::read_to_string(&big).unwrap();
    std::fs::write(
        &big,
        text.replace(
            "RUN echo 2 > /n",
            "RUN echo 2 > /n && head -c 3000000 /dev/urandom > /big",
        ),
    )
    .unwrap();
    f.build(&f.store("s2"), 2, &to);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.build(&f.store("s0b"), 0, &to);
    let (out, err) = ok(prune(&["--keep-storage", "1MB"]));
    assert!(err.contains("kept"), "{err}");
    let kept: Vec<&str> = out.lines().filter(|l| l.starts_with("kept ")).collect();
    let deleted: Vec<&str> = out.lines().filter(|l| l.starts_with("deleted ")).collect();
    assert!(!kept.is_empty() && !deleted.is_empty(), "{out}");
    // Gone: Dockerfile 1's (the oldest), then the big one (the largest of
    // its export), and then all fit: Dockerfile 2's other records (its
    // shared first step, which its export dated anew) and Dockerfile 0's.
    // (Two records a step, both naming its layer: the big layer goes
    // once both are deleted.)
    assert_eq!((deleted.len(), kept.len()), (8, 12), "{out}");
    assert!(
        deleted[6].ends_with("MB") && deleted[7].ends_with("MB"),
        "{out}"
    );
    let err = f.build(
        &f.store("fresh0"),
        0,
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert!(err.contains("0 steps run, 4 cached"), "{err}");
    let err = f.build(
        &f.store("fresh2"),
        2,
        &[format!("--cache-from=type=registry,ref={cache}")],
    );
    assert!(
        !err.contains("0 steps run"),
        "the big record is gone: {err}"
    );
}

#[test]
fn prune_names_a_registry_that_does_not_delete() {
    let test = "prune_names_a_registry_that_does_not_delete";
    let Some(f) = fleet(test, 1, false) else {
        return;
    };
    let cache = format!("{}/cache/nd:bc", f.reg.host);
    f.build(
        &f.store("s"),
        0,
        &[format!("--cache-to=type=registry,ref={cache}")],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .args(["cache", "prune", "--ref", &cache, "--keep-duration", "0s"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not allow deleting"), "{err}");
    assert!(err.contains(&cache), "{err}");
}

#[test]
fn cache_mounts_travel_with_the_cache_when_asked() {
    let test = "cache_mounts_travel_with_the_cache_when_asked";
    let Some(f) = fleet(test, 0, false) else {
        return;
    };
    let base = format!("{}/base/busybox:1", f.reg.host);
    let cache = format!("{}/cache/mounts:bc", f.reg.host);
    let write_ctx = |name: &str, run: &str| {
        let ctx = f.dir.path().join(name);
        write(
            &ctx,
            &[(
                "Dockerfile",
                &format!("FROM {base}\nRUN --mount=type=cache,target=/var/cache/app {run}\n"),
            )],
        );
        ctx
    };
    let build = |store: &str, ctx: &Path, extra: &[&str]| {
        let out = rbk(&f.store(store))
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(ctx)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fill = write_ctx(
        "fill",
        "echo downloaded > /var/cache/app/pkg && echo filled",
    );
    let to = format!("--cache-to=type=registry,ref={cache},cache-mounts=true");
    let (ok1, err) = build("one", &fill, &[&to]);
    assert!(ok1, "{err}");
    assert!(err.contains("exported 1 cache mount"), "{err}");

    // Another command (no cache hit) in a fresh store sees the files.
    let read = write_ctx("read", "cat /var/cache/app/pkg > /seen");
    let (ok2, err) = build("two", &read, &[&format!("--cache-from={cache}")]);
    assert!(ok2, "{err}");
    assert!(
        err.contains("restored cache mount \"/var/cache/app\""),
        "{err}"
    );
    let out = rbk(&f.store("two"))
        .args(["run", "--rm"])
        .arg(
            String::from_utf8_lossy(
                &rbk(&f.store("two"))
                    .args(["images", "-q"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .lines()
            .next()
            .unwrap()
            .trim(),
        )
        .args(["cat", "/seen"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "downloaded\n");

    // Without cache-mounts=true nothing travels; over the cap, a warning.
    let plain = format!("{}/cache/plain:bc", f.reg.host);
    build(
        "three",
        &fill,
        &[&format!("--cache-to=type=registry,ref={plain}")],
    );
    let (ok4, err) = build("four", &read, &[&format!("--cache-from={plain}")]);
    assert!(!ok4, "{err}");
    let (_, err) = build("one", &fill, &[&format!("{to},cache-mounts-max=1")]);
    assert!(err.contains("more than cache-mounts-max"), "{err}");
}
