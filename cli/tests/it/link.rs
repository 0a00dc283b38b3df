//! `COPY --link`: a layer made on an empty filesystem, keyed without its
//! parent, so a changed base reuses it (as BuildKit's merge of a scratch
//! copy), and stacked by linking its snapshot's files.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::build::{busybox_and_context, rbk, succeed, write};

const DOCKERFILE: &str = "FROM localhost/busybox:latest\n\
ARG V=1\n\
RUN mkdir -m 700 /app /keep && echo old > /app/old && echo $V > /base\n\
COPY --link f.txt /app/\n\
COPY --link --chown=1000:1000 g.txt /owned/\n\
COPY --link --chmod=644 f.txt /keep/\n";

/// Builds with `--build-arg V=v`; returns the summary line.
fn build(store: &Path, ctx: &Path, v: &str, tag: &str) -> String {
    let out = succeed(
        rbk(store)
            .args(["build", "--progress", "plain", "-t", tag, "--build-arg"])
            .arg(format!("V={v}"))
            .arg(ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no summary in {err}"))
        .to_string()
}

fn layers(store: &Path, tag: &str) -> Vec<String> {
    let out = succeed(rbk(store).args(["inspect", tag]));
    let img = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone();
    img["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn sh(store: &Path, tag: &str, script: &str) -> String {
    let out = succeed(rbk(store).args(["run", "--rm", tag, "sh", "-c", script]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_linked_copy_is_reused_over_a_changed_base_and_made_on_nothing() {
    let test = "a_linked_copy_is_reused_over_a_changed_base_and_made_on_nothing";
    let files = [
        ("Dockerfile", DOCKERFILE),
        ("f.txt", "linked\n"),
        ("g.txt", "owned\n"),
    ];
    let Some((dir, store, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    let first = build(&store, &ctx, "1", "link:1");
    assert!(first.contains("4 steps run, 0 cached"), "{first}");
    // The base changes: the RUN runs again, and so does the COPY --chmod
    // (an ordinary copy, as in BuildKit); the two linked layers are stacked
    // on the new base as they are.
    let second = build(&store, &ctx, "2", "link:2");
    assert!(second.contains("2 steps run, 2 cached"), "{second}");
    let (one, two) = (layers(&store, "link:1"), layers(&store, "link:2"));
    assert_eq!(one.len(), two.len());
    let n = one.len();
    assert_ne!(one[n - 4], two[n - 4], "the RUN's layer changed");
    assert_eq!(one[n - 3..n - 1], two[n - 3..n - 1], "linked layers reused");
    let third = build(&store, &ctx, "2", "link:2");
    assert!(third.contains("0 steps run, 4 cached"), "{third}");

    // Made on nothing: the directory the layer creates is its own (0755,
    // root), merged with what the base has there; the ordinary copy keeps
    // the base's directory as it was.
    let seen = sh(
        &store,
        "link:2",
        "cat /base /app/f.txt /app/old /keep/f.txt; stat -c '%a %u:%g' /app /keep /owned/g.txt",
    );
    assert_eq!(
        seen, "2\nlinked\nold\nlinked\n755 0:0\n700 0:0\n644 1000:1000\n",
        "{seen}"
    );

    // The store holds it soundly, and it travels: a fresh store loads the
    // saved image, also after the first image and the cache are pruned.
    succeed(rbk(&store).args(["rmi", "link:1"]));
    succeed(rbk(&store).args(["prune", "-a"]));
    let check = succeed(rbk(&store).args(["system", "check"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("store is sound"));
    let archive = dir.path().join("link.tar");
    succeed(rbk(&store).args(["save", "-o"]).arg(&archive).arg("link:2"));
    let fresh = dir.path().join("fresh");
    succeed(rbk(&fresh).args(["load", "-i"]).arg(&archive));
    assert_eq!(
        sh(&fresh, "link:2", "cat /app/f.txt /app/old"),
        "linked\nold\n"
    );
}

#[test]
fn a_linked_copy_refuses_a_chown_by_name_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY --link --chown=1000:1000 a /x/\nCOPY --link --chown=app:1000 a /y/\n",
        )],
    );
    let out = rbk(&dir.path().join("store"))
        .arg("graph")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Dockerfile:3:13: --chown=app:1000 names a user or group"),
        "{err}"
    );
    // Without --link (or with --chmod, which makes it an ordinary copy) the
    // name is looked up in the image as usual.
    write(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY --chown=app a /x/\nCOPY --link --chmod=600 --chown=app a /y/\nCOPY --link --chown=root:root a /z/\n",
        )],
    );
    succeed(rbk(&dir.path().join("store")).arg("graph").arg(dir.path()));
}

#[test]
fn a_linked_copy_is_made_while_the_steps_before_it_run() {
    let test = "a_linked_copy_is_made_while_the_steps_before_it_run";
    let files = [
        (
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN sleep 1\nCOPY --link f.txt /x/\n",
        ),
        ("f.txt", "linked\n"),
    ];
    let Some((_dir, store, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    let out = succeed(
        rbk(&store)
            .args(["build", "--progress", "plain", "--jobs", "2", "-t", "par:1"])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {err}"))
    };
    // The layer needs nothing from the RUN: its step starts while the RUN
    // sleeps, not after.
    let run_done = err[at("RUN sleep 1")..].find("DONE").unwrap() + at("RUN sleep 1");
    assert!(at("COPY --link f.txt /x/") < run_done, "{err}");
    assert_eq!(sh(&store, "par:1", "cat /x/f.txt"), "linked\n");
}

#[test]
fn a_linked_layer_travels_in_a_cache_export_and_serves_another_base() {
    let test = "a_linked_layer_travels_in_a_cache_export_and_serves_another_base";
    let files = [
        (
            "Dockerfile",
            "FROM localhost/busybox:latest\nARG V=1\nRUN echo $V > /base\nCOPY --link f.txt /app/\n",
        ),
        ("f.txt", "linked\n"),
    ];
    let Some((dir, a, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    let b = dir.path().join("store-b");
    let cache = dir.path().join("cache");
    let to = format!("type=local,dest={},mode=max", cache.display());
    let from = format!("type=local,src={}", cache.display());
    succeed(
        rbk(&a)
            .args([
                "build",
                "-q",
                "-t",
                "ci:1",
                "--build-arg",
                "V=1",
                "--cache-to",
                &to,
            ])
            .arg(&ctx),
    );
    // Another machine (a fresh store with the same base) builds over
    // another base: the RUN runs, the linked layer comes from the cache.
    let archive = dir.path().join("busybox.tar");
    succeed(
        rbk(&a)
            .args(["save", "-o"])
            .arg(&archive)
            .arg("localhost/busybox:latest"),
    );
    succeed(rbk(&b).args(["load", "-i"]).arg(&archive));
    let out = succeed(
        rbk(&b)
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "ci:2",
                "--build-arg",
                "V=2",
            ])
            .args(["--cache-from", &from])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 step run, 1 cached"), "{err}");
    let (one, two) = (layers(&a, "ci:1"), layers(&b, "ci:2"));
    assert_ne!(one[one.len() - 2], two[two.len() - 2]);
    assert_eq!(one.last(), two.last(), "the linked layer, reused");
    assert_eq!(sh(&b, "ci:2", "cat /base /app/f.txt"), "2\nlinked\n");
}
