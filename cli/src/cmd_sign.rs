//! `rbk sign` and `rbk verify`: cosign-compatible signatures of images in a
//! registry (a `sha256-<digest>.sig` tag holding simple-signing payloads),
//! and `rbk sign --generate-key` for a cosign key pair.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rbk_attest::cosign::{self, PrivateKey, PublicKey};
use rbk_attest::manifest::Blob;
use rbk_store::digest::Digest;
use rbk_store::oci::Descriptor;
use rbk_store::registry::Client;
use rbk_store::{Reference, Store};

use crate::cmd_registry::RegistryFlags;

/// `rbk sign`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  COSIGN_PASSWORD=… rbk sign --generate-key          # writes cosign.key and cosign.pub
  COSIGN_PASSWORD=… rbk sign --key cosign.key registry.example.com/app:1
  cosign verify --key cosign.pub registry.example.com/app:1   # cosign accepts it")]
pub struct SignArgs {
    /// The image in a registry (HOST/REPO:TAG or @sha256:…)
    #[arg(value_name = "IMAGE", required_unless_present = "generate_key")]
    image: Option<String>,
    /// The private key: cosign's encrypted PEM (password in $COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE", required_unless_present = "generate_key")]
    key: Option<PathBuf>,
    /// Write a new key pair, PREFIX.key (mode 0600) and PREFIX.pub, and exit
    #[arg(long = "generate-key", conflicts_with_all = ["image", "key"])]
    generate_key: bool,
    /// File name prefix of the generated pair
    #[arg(
        long = "output-key-prefix",
        value_name = "PREFIX",
        default_value = "cosign"
    )]
    prefix: String,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// `rbk verify`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  rbk verify --key cosign.pub registry.example.com/app:1")]
pub struct VerifyArgs {
    /// The image in a registry
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The public key (PEM)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    registry: RegistryFlags,
}

fn password() -> anyhow::Result<Vec<u8>> {
    match crate::env::text("COSIGN_PASSWORD") {
        Some(p) => Ok(p.into_bytes()),
        None => bail!("set COSIGN_PASSWORD to the key's password (empty for none), as for cosign"),
    }
}

/// Runs `rbk sign`.
pub fn sign(root: &Path, a: &SignArgs) -> anyhow::Result<i32> {
    if a.generate_key {
        return generate(&a.prefix);
    }
    let (Some(image), Some(key_file)) = (&a.image, &a.key) else {
        bail!("rbk sign needs IMAGE and --key (or --generate-key)");
    };
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read {}", key_file.display()))?;
    let key = PrivateKey::from_encrypted_pem(&text, &password()?)
        .with_context(|| format!("{}", key_file.display()))?;
    let store = open(root)?;
    let client = Client::new(a.registry.options())?;
    let reference = Reference::parse(image)?;
    let (_, _, digest) = client
        .get_manifest(&reference, &|_| {})
        .with_context(|| format!("cannot find {} in its registry", reference.familiar()))?;
    let payload = cosign::payload(&reference.repository(), digest.as_str());
    let signature = key.sign(&payload);
    let sig_ref = reference.with_tag(&cosign::signature_tag(digest.as_str()))?;
    // Keep the signatures already there (another key, another signer).
    let mut layers = existing(&client, &store, &sig_ref)?;
    layers.push((cosign::payload_blob(payload), signature));
    let (config, manifest) = cosign::signature_manifest(&layers);
    let mut descs = Vec::new();
    for b in layers.iter().map(|(b, _)| b).chain([&config]) {
        descs.push(put(&store, b)?);
    }
    client.push_blobs(&store, &sig_ref, &descs, &|_| {})?;
    client.put_manifest(&sig_ref, manifest.media_type, &manifest.bytes, &|_| {})?;
    println!(
        "Pushed signature of {}@{} to {}",
        reference.familiar_repository(),
        digest,
        sig_ref.familiar()
    );
    Ok(0)
}

/// Runs `rbk verify`: 0 when at least one signature verifies with the key
/// and claims this image's digest, 1 otherwise.
pub fn verify(root: &Path, a: &VerifyArgs) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(&a.key)
        .with_context(|| format!("cannot read {}", a.key.display()))?;
    let public = PublicKey::from_pem(&text).with_context(|| format!("{}", a.key.display()))?;
    let store = open(root)?;
    let client = Client::new(a.registry.options())?;
    let reference = Reference::parse(&a.image)?;
    let (_, _, digest) = client
        .get_manifest(&reference, &|_| {})
        .with_context(|| format!("cannot find {} in its registry", reference.familiar()))?;
    let sig_ref = reference.with_tag(&cosign::signature_tag(digest.as_str()))?;
    let layers = existing(&client, &store, &sig_ref)?;
    if layers.is_empty() {
        eprintln!(
            "Error: no signatures found for {}@{}",
            reference.familiar_repository(),
            digest
        );
        return Ok(1);
    }
    let mut good = Vec::new();
    let mut why = Vec::new();
    for (blob, sig) in &layers {
        let checked = public
            .verify(&blob.bytes, sig)
            .and_then(|()| cosign::payload_claims(&blob.bytes));
        match checked {
            Ok((_, claimed)) if claimed == digest.as_str() => good.push(blob),
            Ok((_, claimed)) => why.push(format!("a signature is of {claimed}, not {digest}")),
            Err(e) => why.push(e.to_string()),
        }
    }
    if good.is_empty() {
        eprintln!(
            "Error: no signature of {}@{} verifies with {}",
            reference.familiar_repository(),
            digest,
            a.key.display()
        );
        for w in why {
            eprintln!("  {w}");
        }
        return Ok(1);
    }
    eprintln!(
        "Verification for {}@{} --",
        reference.familiar_repository(),
        digest
    );
    eprintln!("The following checks were performed on each of these signatures:");
    eprintln!("  - The cosign claims were validated");
    eprintln!("  - The signatures were verified against the specified public key");
    let mut out = std::io::stdout().lock();
    for b in good {
        out.write_all(&b.bytes)?;
        out.write_all(b"\n")?;
    }
    Ok(0)
}

fn open(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// The (payload, signature) layers of the signature manifest at `sig_ref`;
/// empty when there is none.
fn existing(
    client: &Client,
    store: &Store,
    sig_ref: &Reference,
) -> anyhow::Result<Vec<(Blob, String)>> {
    let bytes = match client.get_manifest(sig_ref, &|_| {}) {
        Ok((bytes, _, _)) => bytes,
        Err(rbk_store::registry::RegistryError::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e).context(format!("cannot read {}", sig_ref.familiar())),
    };
    let m: rbk_store::oci::Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not an image manifest", sig_ref.familiar()))?;
    let wanted: Vec<Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.media_type == cosign::PAYLOAD_MEDIA_TYPE)
        .cloned()
        .collect();
    client.fetch_blobs_into(store, sig_ref, &wanted, &|_| {})?;
    let mut out = Vec::new();
    for l in wanted {
        let Some(sig) = l.annotations.get(cosign::SIGNATURE_ANNOTATION) else {
            continue;
        };
        let bytes = store.content.read(&l.digest)?;
        out.push((cosign::payload_blob(bytes), sig.clone()));
    }
    Ok(out)
}

fn put(store: &Store, b: &Blob) -> anyhow::Result<Descriptor> {
    let digest: Digest = store.content.put(&b.bytes)?;
    Ok(Descriptor::new(b.media_type, digest, b.bytes.len() as u64))
}

fn generate(prefix: &str) -> anyhow::Result<i32> {
    let (key_path, pub_path) = (format!("{prefix}.key"), format!("{prefix}.pub"));
    for p in [&key_path, &pub_path] {
        if Path::new(p).exists() {
            bail!("{p} exists: not overwriting a key (remove it or pick --output-key-prefix)");
        }
    }
    let key = PrivateKey::generate()?;
    let sealed = key.to_encrypted_pem(&password()?)?;
    write_new(&key_path, sealed.as_bytes(), 0o600)?;
    write_new(&pub_path, key.public_pem()?.as_bytes(), 0o644)?;
    eprintln!("Private key written to {key_path}");
    eprintln!("Public key written to {pub_path}");
    Ok(0)
}

fn write_new(path: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {path}"))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {path}"))?;
    Ok(())
}
