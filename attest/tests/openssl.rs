//! rbk's cosign-style signatures checked by an independent implementation:
//! OpenSSL verifies the ECDSA P-256 signature over the payload with the
//! PEM public key rbk wrote (what `cosign verify --key` does with them).

use std::process::Command;

use base64::Engine as _;
use rbk_attest::cosign::{payload, PrivateKey};

#[test]
fn openssl_verifies_rbk_signatures() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED openssl_verifies_rbk_signatures: no openssl here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    std::fs::write(dir.path().join("pub.pem"), key.public_pem().unwrap()).unwrap();
    let p = payload("localhost:5000/app", "sha256:0123");
    std::fs::write(dir.path().join("payload"), &p).unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(key.sign(&p))
        .unwrap();
    std::fs::write(dir.path().join("sig.der"), sig).unwrap();
    let verify = |file: &str| {
        Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "pub.pem",
                "-signature",
                "sig.der",
                file,
            ])
            .output()
            .unwrap()
    };
    let ok = verify("payload");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(dir.path().join("other"), b"something else").unwrap();
    assert!(
        !verify("other").status.success(),
        "a different payload must not verify"
    );
}
