//! Docker's scripting formats through the CLI: `--format` templates on
//! `images`, `ps`, `history`, `inspect`; `images -q -f`; `logs --tail -t
//! -f`. A bad template is an error (exit 1) naming it.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::build::store_with_busybox;
use crate::{fails_with, rbk, stderr, stdout};

fn ok(store: &Path, args: &[&str]) -> String {
    let out = rbk(store, args);
    assert!(out.status.success(), "rbk {args:?}:\n{}", stderr(&out));
    stdout(&out)
}

#[test]
fn templates_on_images_history_and_inspect() {
    let Some(dir) = store_with_busybox("templates_on_images_history_and_inspect") else {
        return;
    };
    let store = dir.path().join("store");
    let row: serde_json::Value =
        serde_json::from_str(ok(&store, &["images", "--format", "{{json .}}"]).trim()).unwrap();
    assert_eq!(row["Repository"], "localhost/busybox");
    assert_eq!(row["Tag"], "latest");
    assert_eq!(
        ok(
            &store,
            &["images", "--format", r"table {{.Repository}}\t{{.Tag}}"]
        ),
        "REPOSITORY          TAG\nlocalhost/busybox   latest\n"
    );
    let id = ok(&store, &["inspect", "-f", "{{.Id}}", "localhost/busybox"]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        ok(
            &store,
            &[
                "image",
                "inspect",
                "--format",
                "{{index .RepoTags 0}}",
                "localhost/busybox"
            ]
        ),
        "localhost/busybox:latest\n"
    );
    let short = ok(&store, &["images", "-q", "-f", "reference=localhost/*"]);
    assert!(id.contains(short.trim()), "{short} {id}");
    assert_eq!(ok(&store, &["images", "-q", "-f", "dangling=true"]), "");
    fails_with(
        &rbk(&store, &["images", "-f", "since=x"]),
        "invalid filter \"since\"",
    );
    let history = ok(
        &store,
        &[
            "history",
            "--format",
            "{{.ID}}|{{.Size}}",
            "localhost/busybox",
        ],
    );
    assert!(id.contains(history.split('|').next().unwrap()), "{history}");
    for args in [
        &["images", "--format", "{{.Foo}}"][..],
        &["inspect", "-f", "{{.Foo}}", "localhost/busybox"],
        &["history", "--format", "{{.Foo}}", "localhost/busybox"],
        &["ps", "--format", "{{.Foo}}"],
    ] {
        let out = rbk(&store, args);
        fails_with(
            &out,
            r#"template: :1:2: executing "" at <.Foo>: can't evaluate field Foo"#,
        );
        fails_with(&out, r#"--format "{{.Foo}}""#);
        assert_eq!(stdout(&out), "", "{args:?}");
    }
    assert_eq!(ok(&store, &["images", "--format", "as is"]), "as is\n");
}

#[test]
fn logs_tail_timestamps_and_follow() {
    let Some(dir) = store_with_busybox("logs_tail_timestamps_and_follow") else {
        return;
    };
    let store = dir.path().join("store");
    let script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done";
    let id = ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "counter",
            "localhost/busybox:latest",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(ok(&store, &["ps", "-q"]), id);
    let dir = store.join("containers").join(id.trim());
    assert_eq!(relays_for(&dir), 1, "the log relay runs with the container");
    // -f follows the running container until it stops.
    assert_eq!(
        ok(&store, &["logs", "-f", "counter"]),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    assert_eq!(
        ok(&store, &["logs", "--tail", "2", "counter"]),
        "line 4\nline 5\n"
    );
    let stamped = ok(&store, &["logs", "-t", "-n", "2", "counter"]);
    let lines: Vec<(&str, &str)> = stamped
        .lines()
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    assert_eq!((lines[0].1, lines[1].1), ("line 4", "line 5"), "{stamped}");
    for (t, _) in &lines {
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
    assert!(lines[0].0 < lines[1].0, "{stamped}");
    // The log relay ended with the container.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while relays_for(&dir) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a log relay outlived its container"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ok(&store, &["rm", "counter"]);
}

/// How many `rbk __log-relay DIR` processes run.
fn relays_for(dir: &Path) -> usize {
    let want = format!("__log-relay\0{}", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&want))
        .count()
}

/// Asks rbk for completions as the script of `rbk completions fish` does.
fn complete(store: &Path, cwd: &Path, words: &[&str]) -> String {
    let out = std::process::Command::new(crate::rbk_bin())
        .current_dir(cwd)
        .env("RBK_ROOT", store)
        .env("COMPLETE", "fish")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn completion_offers_images_containers_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // An image from an empty rootfs: no sandbox needed.
    let tar = dir.path().join("empty.tar");
    std::fs::write(&tar, vec![0u8; 1024]).unwrap();
    ok(
        &store,
        &["import", tar.to_str().unwrap(), "example/tools:2"],
    );
    std::fs::write(
        dir.path().join("rbk.toml"),
        "[target.api]\ncontext = \".\"\n[target.web]\ncontext = \".\"\n[group.all]\ntargets = [\"api\", \"web\"]\n",
    )
    .unwrap();
    let images = complete(&store, dir.path(), &["rbk", "rmi", ""]);
    assert!(images.contains("example/tools:2\t"), "{images}");
    let images = complete(&store, dir.path(), &["rbk", "run", "exa"]);
    assert!(images.starts_with("example/tools:2"), "{images}");
    let targets = complete(&store, dir.path(), &["rbk", "build", "rbk.toml", ""]);
    for t in ["api", "web", "all"] {
        assert!(
            targets.lines().any(|l| l.split('\t').next() == Some(t)),
            "{targets}"
        );
    }
    // The script the shells source calls rbk back.
    let script = stdout(&rbk(&store, &["completions", "bash"]));
    assert!(script.contains("COMPLETE=\"bash\""), "{script}");
}
