//! `rbk build -`, as `docker build -`: a Dockerfile with no context, or a
//! tar archive (plain or gzip) that is the context, on standard input.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::build::{busybox_and_context, cat, rbk};

/// `rbk build -t TAG [extra] -` with `input` on standard input and its
/// temporary files under `tmp`.
fn build_stdin(store: &Path, tmp: &Path, tag: &str, extra: &[&str], input: &[u8]) -> Output {
    let mut child = rbk(store)
        .args(["build", "--progress", "plain", "-t", tag])
        .args(extra)
        .arg("-")
        .env("TMPDIR", tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn tar_of(ctx: &Path, gzip: bool) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(ctx)
        .arg(if gzip { "-cz" } else { "-c" })
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn assert_empty(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_dockerfile_on_stdin_builds_without_a_context() {
    let test = "a_dockerfile_on_stdin_builds_without_a_context";
    let Some((dir, store, _ctx)) = busybox_and_context(test, &[]) else {
        return;
    };
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let df = "FROM localhost/busybox:latest\nRUN echo from-stdin > /x\n";
    let out = build_stdin(&store, &tmp, "stdin-df", &[], df.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cat(&store, "stdin-df", "/x"), "from-stdin\n");
    assert_empty(&tmp);
    // No context: COPY finds nothing, and says so.
    let df = "FROM localhost/busybox:latest\nCOPY app.txt /\n";
    let out = build_stdin(&store, &tmp, "stdin-copy", &[], df.as_bytes());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("app.txt") && err.contains("not in the build context"),
        "{err}"
    );
    assert_empty(&tmp);
}

#[test]
fn a_tar_on_stdin_is_the_context() {
    let test = "a_tar_on_stdin_is_the_context";
    let files = [
        (
            "Dockerfile",
            "FROM localhost/busybox:latest\nCOPY app.txt /\n",
        ),
        (
            "other.Dockerfile",
            "FROM localhost/busybox:latest\nCOPY sub/b.txt /\n",
        ),
        ("app.txt", "from-tar\n"),
        ("sub/b.txt", "other\n"),
    ];
    let Some((dir, store, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    for gzip in [false, true] {
        let out = build_stdin(&store, &tmp, "stdin-tar", &[], &tar_of(&ctx, gzip));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(cat(&store, "stdin-tar", "/app.txt"), "from-tar\n");
        assert_empty(&tmp);
    }
    // -f names a Dockerfile of the archive.
    let extra = ["-f", "other.Dockerfile"];
    let out = build_stdin(&store, &tmp, "stdin-f", &extra, &tar_of(&ctx, false));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cat(&store, "stdin-f", "/b.txt"), "other\n");
    assert_empty(&tmp);
}
