//! Integration tests of the `rbk` binary: each runs the real executable
//! against a temporary store (`--root`). Tests that need root, namespaces or
//! network print `SKIPPED: <why>` to stderr and return.
#![allow(clippy::unwrap_used)]

mod attest;
mod bake;
mod build;
mod cache;
mod containers;
mod cp;
mod debian;
mod exec;
mod fleet;
mod fleet_netns;
mod formats;
mod graph_page;
mod hostile_registry;
mod hostinfo;
mod kill_points;
mod layers;
mod lazy_cache;
mod link;
mod manifest_merge;
mod netpool;
mod outputs;
mod pipes;
mod plan_emit;
mod platforms;
mod pull_layers;
mod push_stream;
mod racing;
mod remote_context;
mod rootless;
mod run;
mod sbom;
mod security;
mod shards;
mod shared_store;
mod sign;
mod snapshots;
mod start;
mod stdin_context;
mod store_disk;
mod system_usage;
mod travel;
mod volume;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `rbk` binary under test.
pub fn rbk_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rbk")
}

/// The repository's root (examples/ and scripts/ live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `rbk --root ROOT ARGS...`, run to completion.
pub fn rbk(root: &Path, args: &[&str]) -> Output {
    Command::new(rbk_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `out` is a failure (exit 1) whose standard error says `want`.
pub fn fails_with(out: &Output, want: &str) {
    fails_with_code(out, 1, want);
}

/// Asserts `out` is a failure of `rbk run` (exit 125, as `docker run`
/// when it fails itself) whose standard error says `want`.
pub fn run_fails_with(out: &Output, want: &str) {
    fails_with_code(out, 125, want);
}

fn fails_with_code(out: &Output, code: i32, want: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(want), "{err}");
}

/// Why containers cannot run here, if they cannot (not root, no namespaces).
pub fn cannot_run_containers() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| rbk_runtime::sandbox::sandbox_supported().err())
        .clone()
}

/// `name` as found on PATH, if it is there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Prints a loud skip notice.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED: {test}: {why}");
}

/// Where base-image tarballs are cached between test runs: $RBK_TEST_CACHE,
/// else `target/rbk-test-cache` next to the test binary's target dir.
pub fn bases_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("RBK_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    // CARGO_BIN_EXE_rbk is <target>/<profile>/rbk.
    let bin = Path::new(rbk_bin());
    bin.parent()
        .and_then(Path::parent)
        .map(|t| t.join("rbk-test-cache"))
        .unwrap_or_else(|| std::env::temp_dir().join("rbk-test-cache"))
}

/// Runs `examples/bases/make-bases.sh BASE` into the store at `root`.
pub fn make_base(root: &Path, base: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join("examples/bases/make-bases.sh"))
        .arg(base)
        .env("RBK", rbk_bin())
        .env("RBK_ROOT", root)
        .env("RBK_BASES_CACHE", bases_cache());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `rbk system check --format json` of `store`: (exit code, report).
pub fn shared_store_check(store: &Path) -> (i32, serde_json::Value) {
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(store)
        .args(["system", "check", "--format", "json"])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}
