//! `rbk system info`, and the README's main job (scripts/demo.sh) against
//! what it reports: the demo's package list must provide every piece the
//! demo needs, so it passes on a fresh machine (it once stopped at the
//! first RUN for want of slirp4netns, which only the tests installed).

use crate::{rbk, repo_root, stderr, stdout};

/// The value of `NAME="..."` in a shell script.
fn shell_var(script: &str, name: &str) -> String {
    let prefix = format!("{name}=\"");
    let line = script
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name}=\"...\" in the script"));
    line.trim_end_matches('"').to_string()
}

fn pieces(root: &std::path::Path) -> Vec<serde_json::Value> {
    let out = rbk(root, &["system", "info", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn demo_installs_every_package_the_pieces_it_needs_come_from() {
    let script = std::fs::read_to_string(repo_root().join("scripts/demo.sh")).unwrap();
    let pkgs = shell_var(&script, "PKGS");
    let pkgs: Vec<&str> = pkgs.split_whitespace().collect();
    let needs = shell_var(&script, "NEEDS");
    let needs: Vec<&str> = needs.split(',').collect();
    // The demo builds with RUN steps on the default network and runs
    // containers with published ports: these pieces at least.
    for piece in ["namespaces", "seccomp", "slirp4netns", "tun"] {
        assert!(needs.contains(&piece), "demo.sh's NEEDS lacks {piece}");
    }
    assert!(
        script.contains("system info --require \"$NEEDS\""),
        "demo.sh must check its NEEDS with rbk system info before building"
    );
    let dir = tempfile::tempdir().unwrap();
    let all = pieces(&dir.path().join("store"));
    for id in &needs {
        let piece = all
            .iter()
            .find(|p| p["id"] == *id)
            .unwrap_or_else(|| panic!("rbk system info has no piece {id}"));
        if let Some(pkg) = piece["package"].as_str() {
            assert!(
                pkgs.contains(&pkg),
                "the demo needs {id}, which comes from the Debian package {pkg}, missing from demo.sh's PKGS {pkgs:?}"
            );
        }
    }
}

#[test]
fn info_lists_the_host_and_require_names_the_package_of_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let all = pieces(&root);
    let ids: Vec<&str> = all.iter().filter_map(|p| p["id"].as_str()).collect();
    for id in [
        "kernel",
        "store",
        "overlayfs",
        "namespaces",
        "seccomp",
        "slirp4netns",
        "qemu",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    let store = all.iter().find(|p| p["id"] == "store").unwrap();
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .contains(&*root.to_string_lossy()),
        "{store}"
    );
    // Reading the host makes no store.
    assert!(!root.exists());

    // Whatever this host lacks, --require of it fails naming the package.
    let slirp = all.iter().find(|p| p["id"] == "slirp4netns").unwrap();
    let out = rbk(&root, &["system", "info", "--require", "slirp4netns"]);
    if slirp["status"] == "ok" {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("apt-get install slirp4netns"),
            "{}",
            stderr(&out)
        );
    }
    let out = rbk(&root, &["system", "info", "--require", "warp-drive"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such piece"), "{}", stderr(&out));
}

#[test]
fn version_names_the_build_and_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let out = rbk(&dir.path().join("store"), &["version", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let commit = v["commit"].as_str().unwrap();
    assert!(commit == "unknown" || commit.len() >= 12, "{commit}");
    assert_eq!(v["built"].as_str().unwrap().len(), 10, "{v}");
    let usable = v["host"]["usable"].as_array().unwrap();
    let missing = v["host"]["missing"].as_array().unwrap();
    // Every piece of `system info` that is not a plain fact is in one list.
    assert_eq!(usable.len() + missing.len(), 11, "{v}");
    let text = rbk(&dir.path().join("store"), &["version"]);
    assert!(stdout(&text).starts_with(&format!("rbk {}\ncommit:", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn man_writes_a_page_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = rbk(
        &dir.path().join("store"),
        &["man", &pages.to_string_lossy()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "rbk.1",
        "rbk-build.1",
        "rbk-run.1",
        "rbk-system-info.1",
        "rbk-image-inspect.1",
    ] {
        let page =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(page.contains(".TH"), "{name}: {page}");
    }
    let build = std::fs::read_to_string(pages.join("rbk-build.1")).unwrap();
    assert!(build.contains("cache\\-from"), "{build}");
}
