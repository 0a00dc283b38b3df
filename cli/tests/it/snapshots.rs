//! Snapshots (insta) of what users read: `rbk graph` in every format, and
//! the main error messages. Vertex digests are redacted: the snapshots pin
//! the shape and the wording, the compiler's own tests pin the digests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use crate::{rbk_bin, repo_root};

fn fixture(rel: &str) -> PathBuf {
    repo_root().join("cli/tests/fixtures").join(rel)
}

/// `rbk ARGS` run from the repository root (so paths print relative);
/// stdout, stderr and the exit code in one text.
fn run(args: &[&str]) -> String {
    let store = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(rbk_bin())
        .current_dir(repo_root())
        .arg("--root")
        .arg(store.path())
        .args(args)
        .env_remove("RBK_ROOT")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.is_empty() {
        text.push_str("--- stderr\n");
        text.push_str(&err);
    }
    text.push_str(&format!("--- exit {}\n", out.status.code().unwrap_or(-1)));
    text
}

fn redacted(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        filters => vec![
            (r"\b[0-9a-f]{64}\b", "[digest]"),
            (r"\b[0-9a-f]{12}\b", "[digest12]"),
            (r"/tmp/\.tmp[A-Za-z0-9]+", "[tmp]"),
        ],
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn graph_renders() {
    let toml = Path::new("cli/tests/fixtures/graph/rbk.toml");
    assert!(repo_root().join(toml).is_file());
    let toml = toml.to_str().unwrap();
    for format in ["text", "json", "dot", "mermaid"] {
        redacted(
            &format!("graph_{format}"),
            &run(&["graph", "--format", format, toml]),
        );
    }
    // One target of the file.
    redacted("graph_text_one_target", &run(&["graph", toml, "worker"]));
}

#[test]
fn dockerfile_errors_point_at_the_line() {
    for name in ["bad-flag", "unknown-instruction", "bad-expansion"] {
        let file = format!("cli/tests/fixtures/errors/{name}.Dockerfile");
        assert!(fixture(&format!("errors/{name}.Dockerfile")).is_file());
        redacted(
            &format!("error_{}", name.replace('-', "_")),
            &run(&["graph", "-f", &file, "cli/tests/fixtures/errors"]),
        );
    }
}

#[test]
fn command_line_errors_name_what_is_wrong() {
    let toml = "cli/tests/fixtures/graph/rbk.toml";
    redacted("error_unknown_target", &run(&["graph", toml, "nosuch"]));
    redacted(
        "error_missing_context",
        &run(&["graph", "cli/tests/fixtures/nosuch"]),
    );
    redacted(
        "error_bad_network",
        &run(&[
            "build",
            "--network",
            "bridge",
            "cli/tests/fixtures/graph/rbk.toml",
        ]),
    );
    redacted("error_no_such_image", &run(&["inspect", "nosuch:1"]));
    redacted("error_rmi_no_such_image", &run(&["rmi", "nosuch:1"]));
}

#[test]
fn explain_says_why_each_step_missed() {
    let Some(dir) = crate::build::store_with_busybox("explain_says_why_each_step_missed") else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    crate::build::write(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM localhost/busybox:latest\nARG V=1\nCOPY a.txt /a.txt\nRUN echo $V > /v\nENV X=1\nCOPY b.txt /b.txt\nRUN cat /a.txt\n",
            ),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let build = |extra: &[&str]| {
        let out = crate::build::rbk(&store)
            .args(["build", "--progress", "plain", "-t", "ex"])
            .args(extra)
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    build(&[]);
    crate::build::write(&ctx, &[("a.txt", "changed\n")]);
    let text = build(&["--explain", "--build-arg", "V=2"]);
    insta::with_settings!({
        snapshot_path => "snapshots",
        prepend_module_to_snapshot => false,
        filters => vec![(r"\d+\.\d+s", "[time]")],
    }, {
        insta::assert_snapshot!("explain", text);
    });
}
