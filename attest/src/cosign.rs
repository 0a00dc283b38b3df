//! Image signatures as cosign writes them, so `cosign verify --key` accepts
//! rbk's and `rbk verify` accepts cosign's:
//!
//! - keys: ECDSA P-256. The public key is a PEM `PUBLIC KEY` (PKIX); the
//!   private key is cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` PEM — a JSON
//!   document holding the PKCS #8 key sealed with NaCl secretbox under a
//!   key derived from the password with scrypt.
//! - a signature: the *simple signing* payload naming the repository and
//!   the image manifest's digest, signed (ECDSA, SHA-256, ASN.1 DER,
//!   base64) and stored as a layer of an OCI manifest tagged
//!   `sha256-<hex>.sig` in the image's repository, the signature in the
//!   layer's `dev.cosignproject.cosign/signature` annotation.
//!
//! Keyless signing (Fulcio certificates, Rekor transparency log) needs
//! those services and is not done here.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::manifest::Blob;

/// The media type of a simple-signing payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const PEM_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
const PEM_LABEL_OLD: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const SCRYPT_N: u64 = 32768;

/// Why a key or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key file is not a key of the form expected.
    #[error("not a cosign key: {0}")]
    Key(String),
    /// The password does not open the private key.
    #[error("the password does not decrypt this private key")]
    Password,
    /// The signature does not verify.
    #[error("signature does not verify: {0}")]
    Invalid(String),
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Random(String),
}

/// A P-256 signing key.
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(…)")
    }
}

fn random(n: usize) -> Result<Vec<u8>, SignError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| SignError::Random(e.to_string()))?;
    Ok(b)
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> Result<PrivateKey, SignError> {
        loop {
            // a 32-byte scalar is valid unless zero or ≥ the group order
            if let Ok(k) = SigningKey::from_slice(&random(32)?) {
                return Ok(PrivateKey(k));
            }
        }
    }

    /// Its public key as a PEM `PUBLIC KEY`.
    pub fn public_pem(&self) -> Result<String, SignError> {
        self.0
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SignError::Key(e.to_string()))
    }

    /// The key sealed under `password`, as cosign's encrypted PEM.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, SignError> {
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| SignError::Key(e.to_string()))?;
        let salt = random(32)?;
        let nonce = random(24)?;
        let key = derive(password, &salt, SCRYPT_N, 8, 1)?;
        let sealed = seal(&key, &nonce, der.as_bytes())?;
        let doc = Sealed {
            kdf: Kdf {
                name: "scrypt".into(),
                params: KdfParams {
                    n: SCRYPT_N,
                    r: 8,
                    p: 1,
                },
                salt: B64.encode(salt),
            },
            cipher: Cipher {
                name: "nacl/secretbox".into(),
                nonce: B64.encode(nonce),
            },
            ciphertext: B64.encode(sealed),
        };
        let json = serde_json::to_vec(&doc).map_err(|e| SignError::Key(e.to_string()))?;
        Ok(pem(PEM_LABEL, &json))
    }

    /// Opens cosign's encrypted PEM with `password`.
    pub fn from_encrypted_pem(text: &str, password: &[u8]) -> Result<PrivateKey, SignError> {
        let body = unpem(text, &[PEM_LABEL, PEM_LABEL_OLD])?;
        let doc: Sealed =
            serde_json::from_slice(&body).map_err(|e| SignError::Key(e.to_string()))?;
        if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
            return Err(SignError::Key(format!(
                "unknown kdf {} or cipher {}",
                doc.kdf.name, doc.cipher.name
            )));
        }
        let p = &doc.kdf.params;
        // bounded: a hostile file must not ask for gigabytes of scrypt
        if !p.n.is_power_of_two() || p.n > 1 << 20 || p.r > 16 || p.p > 4 {
            return Err(SignError::Key("scrypt parameters out of range".into()));
        }
        let b64 = |s: &str| B64.decode(s).map_err(|e| SignError::Key(e.to_string()));
        let key = derive(password, &b64(&doc.kdf.salt)?, p.n, p.r, p.p)?;
        let der = open(&key, &b64(&doc.cipher.nonce)?, &b64(&doc.ciphertext)?)?;
        SigningKey::from_pkcs8_der(&der)
            .map(PrivateKey)
            .map_err(|e| SignError::Key(format!("not a P-256 PKCS #8 key: {e}")))
    }

    /// The base64 DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: Signature = self.0.sign(payload);
        B64.encode(sig.to_der().as_bytes())
    }
}

/// A P-256 verifying key.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY`.
    pub fn from_pem(text: &str) -> Result<PublicKey, SignError> {
        VerifyingKey::from_public_key_pem(text.trim())
            .map(PublicKey)
            .map_err(|e| SignError::Key(format!("not a P-256 public key: {e}")))
    }

    /// Checks `signature` (base64 DER) over `payload`.
    pub fn verify(&self, payload: &[u8], signature: &str) -> Result<(), SignError> {
        let der = B64
            .decode(signature.trim())
            .map_err(|e| SignError::Invalid(format!("not base64: {e}")))?;
        let sig = Signature::from_der(&der).map_err(|e| SignError::Invalid(e.to_string()))?;
        self.0
            .verify(payload, &sig)
            .map_err(|_| SignError::Invalid("the signature does not match the payload".into()))
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn derive(password: &[u8], salt: &[u8], n: u64, r: u32, p: u32) -> Result<[u8; 32], SignError> {
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p).map_err(|e| SignError::Key(e.to_string()))?;
    let mut out = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut out).map_err(|e| SignError::Key(e.to_string()))?;
    Ok(out)
}

fn seal(key: &[u8; 32], nonce: &[u8], plain: &[u8]) -> Result<Vec<u8>, SignError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.into());
    let nonce = crypto_secretbox::Nonce::from_slice(nonce);
    cipher
        .encrypt(nonce, plain)
        .map_err(|e| SignError::Key(e.to_string()))
}

fn open(key: &[u8; 32], nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SignError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    if nonce.len() != 24 {
        return Err(SignError::Key("the nonce is not 24 bytes".into()));
    }
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.into());
    let nonce = crypto_secretbox::Nonce::from_slice(nonce);
    cipher
        .decrypt(nonce, sealed)
        .map_err(|_| SignError::Password)
}

fn pem(label: &str, body: &[u8]) -> String {
    let b = B64.encode(body);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn unpem(text: &str, labels: &[&str]) -> Result<Vec<u8>, SignError> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        if let Some(start) = text.find(&begin) {
            let rest = &text[start + begin.len()..];
            let stop = rest
                .find(&end)
                .ok_or_else(|| SignError::Key(format!("no {end}")))?;
            let b64: String = rest[..stop].split_whitespace().collect();
            return B64.decode(b64).map_err(|e| SignError::Key(e.to_string()));
        }
    }
    Err(SignError::Key(format!(
        "no -----BEGIN {}----- block",
        labels.first().copied().unwrap_or_default()
    )))
}

/// The simple-signing payload cosign signs for `repository` (the
/// reference without tag or digest) at `manifest_digest`.
pub fn payload(repository: &str, manifest_digest: &str) -> Vec<u8> {
    let v = json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": manifest_digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// What a payload claims: (repository, manifest digest).
pub fn payload_claims(payload: &[u8]) -> Result<(String, String), SignError> {
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| SignError::Invalid(format!("payload is not JSON: {e}")))?;
    let c = &v["critical"];
    if c["type"] != "cosign container image signature" {
        return Err(SignError::Invalid(
            "not a cosign image signature payload".into(),
        ));
    }
    let s = |p: &Value| p.as_str().map(str::to_string);
    match (
        s(&c["identity"]["docker-reference"]),
        s(&c["image"]["docker-manifest-digest"]),
    ) {
        (Some(r), Some(d)) => Ok((r, d)),
        _ => Err(SignError::Invalid(
            "payload lacks its reference or digest".into(),
        )),
    }
}

/// The tag cosign keeps the signatures of `manifest_digest` under.
pub fn signature_tag(manifest_digest: &str) -> String {
    manifest_digest.replacen(':', "-", 1) + ".sig"
}

/// The signature manifest holding `layers` (each a payload blob and its
/// base64 signature): its config blob, the payload blobs and the manifest.
pub fn signature_manifest(layers: &[(Blob, String)]) -> (Blob, Blob) {
    let diff_ids: Vec<&str> = layers.iter().map(|(b, _)| b.digest.as_str()).collect();
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = Blob::new(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap_or_default(),
    );
    let descs: Vec<Value> = layers
        .iter()
        .map(|(b, sig)| {
            let mut d = b.descriptor();
            d["annotations"] = json!({ SIGNATURE_ANNOTATION: sig });
            d
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": descs,
    });
    let manifest = Blob::new(
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&manifest).unwrap_or_default(),
    );
    (config, manifest)
}

/// A payload blob.
pub fn payload_blob(payload: Vec<u8>) -> Blob {
    Blob::new(PAYLOAD_MEDIA_TYPE, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_encrypted_pem_and_signs_verifiably() {
        let k = PrivateKey::generate().unwrap();
        let pem = k.to_encrypted_pem(b"pw").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&pem, b"wrong"),
            Err(SignError::Password)
        ));
        let k2 = PrivateKey::from_encrypted_pem(&pem, b"pw").unwrap();
        let public = PublicKey::from_pem(&k.public_pem().unwrap()).unwrap();
        let p = payload("localhost:5000/app", "sha256:ab");
        let sig = k2.sign(&p);
        public.verify(&p, &sig).unwrap();
        let mut other = p.clone();
        other[10] ^= 1;
        assert!(public.verify(&other, &sig).is_err());
        assert_eq!(
            payload_claims(&p).unwrap(),
            ("localhost:5000/app".to_string(), "sha256:ab".to_string())
        );
    }

    #[test]
    fn hostile_key_files_are_refused_cheaply() {
        let huge = r#"{"kdf":{"name":"scrypt","params":{"N":1099511627776,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
        let pem = pem(PEM_LABEL, huge.as_bytes());
        assert!(matches!(
            PrivateKey::from_encrypted_pem(&pem, b""),
            Err(SignError::Key(_))
        ));
        assert!(PrivateKey::from_encrypted_pem("garbage", b"").is_err());
    }

    #[test]
    fn the_signature_tag_and_manifest_are_cosigns() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
        let b = payload_blob(payload("r/app", "sha256:abc"));
        let (config, manifest) = signature_manifest(&[(b.clone(), "c2ln".into())]);
        let m: Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], PAYLOAD_MEDIA_TYPE);
        assert_eq!(m["layers"][0]["digest"], b.digest.as_str());
        assert_eq!(m["layers"][0]["annotations"][SIGNATURE_ANNOTATION], "c2ln");
        assert_eq!(m["config"]["digest"], config.digest.as_str());
    }
}
