//! `rbk sign` / `rbk verify` against a real registry on loopback: a
//! cosign key pair, a signature under `sha256-<digest>.sig`, a second
//! signer kept beside the first, a wrong key and a wrong password refused.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use crate::build::store_with_busybox;
use crate::cache::{ok, Registry};

fn rbk_in(cwd: &Path, root: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(cwd)
        .arg("--root")
        .arg(root)
        .env_remove("RBK_ROOT")
        .env("COSIGN_PASSWORD", password)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn signatures_round_trip_through_the_registry() {
    let test = "sign::signatures_round_trip_through_the_registry";
    let Some(store) = store_with_busybox(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let root = &store.path().join("store");
    let image = format!("{}/signed/app:1", reg.host);
    let insecure = format!("--insecure-registry={}", reg.host);
    ok(rbk_in(
        keys.path(),
        root,
        "",
        &["push", "-q", "localhost/busybox:latest", &image, &insecure],
    ));

    ok(rbk_in(
        keys.path(),
        root,
        "pw1",
        &["sign", "--generate-key"],
    ));
    ok(rbk_in(
        keys.path(),
        root,
        "pw2",
        &["sign", "--generate-key", "--output-key-prefix", "second"],
    ));
    let again = rbk_in(keys.path(), root, "pw1", &["sign", "--generate-key"]);
    assert!(
        !again.status.success(),
        "an existing key is not overwritten"
    );
    let mode = std::fs::metadata(keys.path().join("cosign.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let unsigned = rbk_in(
        keys.path(),
        root,
        "",
        &["verify", "--key", "cosign.pub", &image, &insecure],
    );
    assert_eq!(unsigned.status.code(), Some(1), "nothing signed yet");

    let wrong_pw = rbk_in(
        keys.path(),
        root,
        "nope",
        &["sign", "--key", "cosign.key", &image, &insecure],
    );
    assert!(!wrong_pw.status.success());
    assert!(String::from_utf8_lossy(&wrong_pw.stderr).contains("password"));

    ok(rbk_in(
        keys.path(),
        root,
        "pw1",
        &["sign", "--key", "cosign.key", &image, &insecure],
    ));
    let (payload, _) = ok(rbk_in(
        keys.path(),
        root,
        "",
        &["verify", "--key", "cosign.pub", &image, &insecure],
    ));
    let claims: serde_json::Value = serde_json::from_str(payload.lines().next().unwrap()).unwrap();
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        format!("{}/signed/app", reg.host)
    );
    assert!(claims["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    let other = rbk_in(
        keys.path(),
        root,
        "",
        &["verify", "--key", "second.pub", &image, &insecure],
    );
    assert_eq!(other.status.code(), Some(1), "another key does not verify");

    // A second signer adds a signature; the first still verifies.
    ok(rbk_in(
        keys.path(),
        root,
        "pw2",
        &["sign", "--key", "second.key", &image, &insecure],
    ));
    ok(rbk_in(
        keys.path(),
        root,
        "",
        &["verify", "--key", "second.pub", &image, &insecure],
    ));
    ok(rbk_in(
        keys.path(),
        root,
        "",
        &["verify", "--key", "cosign.pub", &image, &insecure],
    ));
}
