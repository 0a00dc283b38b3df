//! `rbk sign` / `rbk verify` against a real registry on loopback: a
//! cosign key pair, a signature under `sha256-<digest>.sig`, a second
//! signer kept beside the first, a wrong key and a wrong password refused.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use crate::build::store_with_busybox;
use crate::cache::{ok, Registry};

/// rbk run in the key directory with `$COSIGN_PASSWORD`.
struct Signer<'a> {
    keys: &'a Path,
    root: &'a Path,
    image: String,
    insecure: String,
}

impl Signer<'_> {
    fn run(&self, password: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rbk"))
            .current_dir(self.keys)
            .arg("--root")
            .arg(self.root)
            .env_remove("RBK_ROOT")
            .env("COSIGN_PASSWORD", password)
            .args(args)
            .output()
            .unwrap()
    }

    fn sign(&self, password: &str, key: &str) -> Output {
        self.run(
            password,
            &["sign", "--key", key, &self.image, &self.insecure],
        )
    }

    fn verify(&self, key: &str) -> Output {
        self.run("", &["verify", "--key", key, &self.image, &self.insecure])
    }
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
    let root = store.path().join("store");
    let s = Signer {
        keys: keys.path(),
        root: &root,
        image: format!("{}/signed/app:1", reg.host),
        insecure: format!("--insecure-registry={}", reg.host),
    };
    ok(s.run(
        "",
        &[
            "push",
            "-q",
            "localhost/busybox:latest",
            &s.image,
            &s.insecure,
        ],
    ));
    ok(s.run("pw1", &["sign", "--generate-key"]));
    ok(s.run(
        "pw2",
        &["sign", "--generate-key", "--output-key-prefix", "second"],
    ));
    let again = s.run("pw1", &["sign", "--generate-key"]);
    assert!(
        !again.status.success(),
        "an existing key is not overwritten"
    );
    let mode = std::fs::metadata(keys.path().join("cosign.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    assert_eq!(
        s.verify("cosign.pub").status.code(),
        Some(1),
        "nothing signed yet"
    );
    let wrong_pw = s.sign("nope", "cosign.key");
    assert!(!wrong_pw.status.success());
    assert!(String::from_utf8_lossy(&wrong_pw.stderr).contains("password"));

    ok(s.sign("pw1", "cosign.key"));
    let (payload, _) = ok(s.verify("cosign.pub"));
    let claims: serde_json::Value = serde_json::from_str(payload.lines().next().unwrap()).unwrap();
    let critical = &claims["critical"];
    assert_eq!(
        critical["identity"]["docker-reference"],
        format!("{}/signed/app", reg.host)
    );
    assert!(critical["image"]["docker-manifest-digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        s.verify("second.pub").status.code(),
        Some(1),
        "another key does not verify"
    );

    // A second signer adds a signature; the first still verifies.
    ok(s.sign("pw2", "second.key"));
    ok(s.verify("second.pub"));
    ok(s.verify("cosign.pub"));
}
