//! `rbk` SIGKILLed at several points of build, save, load, push, pull and
//! prune: after each kill the store is sound for `rbk system check`
//! *without* `--repair` (the next command swept what the dead one left),
//! and doing it again gives the same digest.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::build::{busybox_and_context, rbk, succeed, write};
use crate::cache::Registry;

/// How long after its start each victim is killed: before it opens the
/// store, while it works, near its end.
const KILL_AFTER_MS: [u64; 4] = [0, 25, 80, 250];

/// Runs `cmd` and SIGKILLs it after `ms` (if still running).
fn kill_after(cmd: &mut Command, ms: u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    child.wait().unwrap();
}

/// `rbk system check` (no `--repair`) finds nothing damaged or left over
/// (or no store at all: the victim died before it made one).
fn sound(store: &Path, what: &str) {
    let out = rbk(store)
        .args(["system", "check", "--format", "json"])
        .output()
        .unwrap();
    if crate::stderr(&out).contains("no store at") {
        return;
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: no JSON ({e}): {}", crate::stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{what}: {report:#}");
}

/// The image id of `name` in `store`.
fn id(store: &Path, name: &str) -> String {
    let out = succeed(rbk(store).args(["images", "-q", "--no-trunc", name]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sha256(path: &Path) -> String {
    rbk_store::Digest::of(&std::fs::read(path).unwrap()).to_string()
}

#[test]
fn rbk_killed_at_any_point_leaves_a_sound_store_and_redoes_the_same() {
    let test = "rbk_killed_at_any_point_leaves_a_sound_store_and_redoes_the_same";
    let Some((dir, store, ctx)) = busybox_and_context(
        test,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest\nRUN dd if=/dev/zero of=/big bs=1M count=24 2>/dev/null && echo done > /done\n",
        )],
    ) else {
        return;
    };
    let build = |store: &Path| {
        let mut c = rbk(store);
        c.args(["build", "--no-cache", "--progress", "plain", "-t", "app"])
            .arg(&ctx)
            .env("SOURCE_DATE_EPOCH", "0");
        c
    };
    succeed(&mut build(&store));
    let app = id(&store, "app");
    for ms in KILL_AFTER_MS {
        kill_after(&mut build(&store), ms);
        sound(&store, &format!("build killed after {ms} ms"));
        succeed(&mut build(&store));
        assert_eq!(id(&store, "app"), app, "build redone after {ms} ms");
    }

    let saved = dir.path().join("app.tar");
    succeed(rbk(&store).args(["save", "-o"]).arg(&saved).arg("app"));
    let archive = sha256(&saved);
    let out = dir.path().join("out.tar");
    for ms in KILL_AFTER_MS {
        kill_after(rbk(&store).args(["save", "-o"]).arg(&out).arg("app"), ms);
        sound(&store, &format!("save killed after {ms} ms"));
        succeed(rbk(&store).args(["save", "-o"]).arg(&out).arg("app"));
        assert_eq!(sha256(&out), archive, "save redone after {ms} ms");
    }

    for ms in KILL_AFTER_MS {
        let other = dir.path().join(format!("load-{ms}"));
        kill_after(rbk(&other).args(["load", "-i"]).arg(&saved), ms);
        sound(&other, &format!("load killed after {ms} ms"));
        succeed(rbk(&other).args(["load", "-q", "-i"]).arg(&saved));
        assert_eq!(id(&other, "app"), app, "load redone after {ms} ms");
    }

    match Registry::start(test) {
        Some(reg) => push_and_pull(&store, dir.path(), &reg.host, &app),
        None => eprintln!("SKIPPED: {test} [push, pull]: no registry"),
    }

    // Something to collect: an image whose layers nothing else holds.
    for ms in KILL_AFTER_MS {
        let garbage = dir.path().join(format!("garbage-{ms}"));
        write(
            &garbage,
            &[
                ("Dockerfile", "FROM localhost/busybox:latest\nCOPY g /g\n"),
                ("g", &"g".repeat(1 << 20)),
            ],
        );
        succeed(
            rbk(&store)
                .args(["build", "-q", "-t", "garbage"])
                .arg(&garbage),
        );
        succeed(rbk(&store).args(["rmi", "garbage"]));
        kill_after(rbk(&store).args(["image", "prune", "--all"]), ms);
        sound(&store, &format!("prune killed after {ms} ms"));
        succeed(rbk(&store).args(["image", "prune", "--all"]));
        sound(&store, &format!("prune redone after {ms} ms"));
        assert_eq!(id(&store, "app"), app);
    }
}

fn push_and_pull(store: &Path, dir: &Path, host: &str, app: &str) {
    for ms in KILL_AFTER_MS {
        let name = format!("{host}/kill/app:{ms}");
        kill_after(rbk(store).args(["push", "-q", "app", &name]), ms);
        sound(store, &format!("push killed after {ms} ms"));
        succeed(rbk(store).args(["push", "-q", "app", &name]));
        let other = dir.join(format!("pull-{ms}"));
        kill_after(rbk(&other).args(["pull", "-q", &name]), ms);
        sound(&other, &format!("pull killed after {ms} ms"));
        succeed(rbk(&other).args(["pull", "-q", &name]));
        assert_eq!(id(&other, &name), app, "push and pull redone after {ms} ms");
    }
}
