//! The registry client against a real registry (Debian's `docker-registry`,
//! distribution 2.8) — plain, and with htpasswd auth behind TLS — with
//! skopeo as the independent client on the other side; and against a tiny
//! fake registry for faults (5xx, dropped connections, wrong digests).
//! The fault tests are in `faults`; `hostile` is a registry that attacks
//! (credentials lured elsewhere, lies, trickles, disconnects), with its
//! transfer tests in `hostile_transfer`. Tests print SKIPPED and return when a tool is missing (CI installs
//! `docker-registry`, `skopeo`, `apache2-utils` and `openssl`).
#![allow(clippy::unwrap_used)]

mod cache;
mod faults;
mod hostile;
mod hostile_transfer;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbk_store::oci::{
    Descriptor, ImageConfig, RootFs, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER_GZIP,
};
use rbk_store::registry::{
    Client, Credentials, CredentialsFile, PlatformSpec, Progress, RegistryError, RegistryOptions,
};
use rbk_store::{Digest, Image, Reference, Store};

const REGISTRY: &str = "/usr/bin/docker-registry";

fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed; this registry test did not run");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    host: String,
    dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS and htpasswd settings: (CA file to trust, user, password).
struct Secure {
    ca: PathBuf,
    user: &'static str,
    password: &'static str,
}

impl Registry {
    fn start(secure: bool) -> Option<(Registry, Option<Secure>)> {
        if !Path::new(REGISTRY).exists() {
            eprintln!("SKIPPED: {REGISTRY} is not installed (Debian package docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let mut sec = None;
        if secure {
            if !have("openssl", &["version"]) || !have("htpasswd", &["-bnB", "u", "p"]) {
                return None;
            }
            let ca = make_certs(dir.path());
            let htpasswd = run(Command::new("htpasswd").args(["-Bbn", "rbk", "s3cret"]));
            std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\nauth:\n  htpasswd:\n    realm: rbk-test\n    path: {d}/htpasswd\n",
                d = dir.path().display()
            ));
            sec = Some(Secure {
                ca,
                user: "rbk",
                password: "s3cret",
            });
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let reg = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some((reg, sec))
    }
}

/// A CA and a leaf certificate for 127.0.0.1 signed by it (rustls refuses
/// a CA certificate used as the server's own). Returns the CA file.
fn make_certs(dir: &Path) -> PathBuf {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=rbk test CA"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .arg("req")
        .args(ec)
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
    dir.join("ca.pem")
}

/// A one-layer image whose layer holds `size` bytes derived from `seed`.
pub(crate) fn make_image(store: &Store, name: &str, seed: &str, size: usize, arch: &str) -> Image {
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = seed
        .bytes()
        .fold(7, |a, b| a.wrapping_mul(31) ^ u64::from(b));
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, format!("{seed}.bin"), &data[..])
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let layer = store.content.put(&gz).unwrap();
    let config = ImageConfig {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![Digest::of(&tar)],
        },
        ..ImageConfig::default()
    };
    let desc = Descriptor::new(MEDIA_TYPE_OCI_LAYER_GZIP, layer, gz.len() as u64);
    store
        .commit_image(&config, &[desc], &[Reference::parse(name).unwrap()])
        .unwrap()
}

pub(crate) fn options(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        auth_file: Some(dir.join("auth.json")),
        docker_config: None,
        ca_cert: None,
        backoff: Duration::from_millis(10),
        ..RegistryOptions::default()
    }
}

pub(crate) fn quiet(_: &Progress) {}

#[test]
fn rbk_push_reads_back_identical_with_skopeo_and_rbk_pull() {
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    if !have("skopeo", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Store::open(&tmp.path().join("s1")).unwrap();
    let name = format!("{}/team/app:v1", reg.host);
    let img = make_image(&s1, &name, "app", 5 << 20, "amd64");
    let client = Client::new(options(tmp.path())).unwrap();
    let dest = Reference::parse(&name).unwrap();
    let seen = Mutex::new(Vec::new());
    let digest = client
        .push(&s1, &name, &dest, &|p| seen.lock().unwrap().push(p.clone()))
        .unwrap();
    assert_eq!(digest, img.manifest_digest);
    // The 5 MB layer's upload reported its progress on the way.
    let layer = &img.manifest.layers[0];
    assert!(
        seen.lock().unwrap().iter().any(|p| matches!(p,
            Progress::Bytes { digest, done, total } if digest == &layer.digest && *done >= 4 << 20 && *total == layer.size)),
        "{:?}",
        seen.lock().unwrap()
    );

    // skopeo sees the same manifest bytes and layers.
    let url = format!("docker://{name}");
    let raw = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw", &url]));
    assert_eq!(Digest::of(raw.as_bytes()), img.manifest_digest);
    let oci = tmp.path().join("oci");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &url])
        .arg(format!("oci:{}:x", oci.display())));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        img.manifest_digest.as_str()
    );
    for l in &img.manifest.layers {
        let copied = std::fs::read(oci.join("blobs/sha256").join(l.digest.hex())).unwrap();
        assert_eq!(copied, s1.content.read(&l.digest).unwrap());
    }

    // A second push finds every blob there already.
    let seen = Mutex::new(Vec::new());
    client
        .push(&s1, &name, &dest, &|p| seen.lock().unwrap().push(p.clone()))
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|p| matches!(p, Progress::Exists { .. }))
            .count(),
        2,
        "{seen:?}"
    );

    // Pushing to another repository mounts the blobs from the first.
    let other = Reference::parse(&format!("{}/team/copy:v1", reg.host)).unwrap();
    let seen = Mutex::new(Vec::new());
    client
        .push(&s1, &name, &other, &|p| {
            seen.lock().unwrap().push(p.clone())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|p| matches!(p, Progress::Mounted { .. })),
        "{seen:?}"
    );

    // rbk pull into an empty store gives the same image; again, nothing.
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    let report = client.pull(&s2, &dest, None, &quiet).unwrap();
    assert_eq!(report.image.manifest_digest, img.manifest_digest);
    assert_eq!(report.downloaded.len(), 2);
    assert_eq!(s2.resolve(&name).unwrap().id, img.id);
    let again = client.pull(&s2, &dest, None, &quiet).unwrap();
    assert!(again.downloaded.is_empty());
    drop(reg);
}

#[test]
fn what_skopeo_pushes_rbk_pulls_identical_in_oci_and_docker_formats() {
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    if !have("skopeo", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("src");
    let src = Store::open(&root).unwrap();
    make_image(&src, "src:latest", "src", 1 << 20, "amd64");
    let client = Client::new(options(tmp.path())).unwrap();
    for (format, tag) in [("oci", "oci"), ("v2s2", "docker")] {
        let name = format!("{}/from-skopeo:{tag}", reg.host);
        run(Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--format", format])
            .arg(format!(
                "oci:{}:docker.io/library/src:latest",
                root.display()
            ))
            .arg(format!("docker://{name}")));
        let raw = run(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{name}"),
        ]));
        let store = Store::open(&tmp.path().join(format!("dst-{tag}"))).unwrap();
        let report = client
            .pull(&store, &Reference::parse(&name).unwrap(), None, &quiet)
            .unwrap();
        assert_eq!(report.image.manifest_digest, Digest::of(raw.as_bytes()));
        assert_eq!(
            store.content.read(&report.image.manifest_digest).unwrap(),
            raw.as_bytes()
        );
        for l in &report.image.manifest.layers {
            assert!(store.content.has(&l.digest));
        }
        if tag == "docker" {
            assert_eq!(
                report.image.manifest.media_type.as_deref(),
                Some("application/vnd.docker.distribution.manifest.v2+json")
            );
        }
    }
    drop(reg);
}

#[test]
fn an_index_is_resolved_to_the_requested_platform() {
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Store::open(&tmp.path().join("s1")).unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let (amd, arm, index_bytes) = a_two_platform_index_is_in_the_registry(&reg, &s1, &client);

    let all = Reference::parse(&format!("{}/multi:all", reg.host)).unwrap();
    the_lower_level_calls_read_and_write_the_index(
        &reg,
        tmp.path(),
        &client,
        &all,
        &index_bytes,
        &amd,
    );
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    a_pull_takes_the_requested_platform(&client, &s2, &all, &index_bytes, &amd, &arm);
    // An index listing no platform's image is an error, not a crash.
    let empty = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": []
    }))
    .unwrap();
    let res = ureq::put(&format!("http://{}/v2/multi/manifests/empty", reg.host))
        .header("Content-Type", MEDIA_TYPE_OCI_INDEX)
        .send(&empty[..])
        .unwrap();
    assert_eq!(res.status(), 201);
    let none = Reference::parse(&format!("{}/multi:empty", reg.host)).unwrap();
    let err = client
        .pull_platforms(&s2, &none, &rbk_store::registry::Platforms::All, &quiet)
        .unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    // Pulling by digest pins the manifest and adds no tag.
    let pinned = all.with_digest(arm.manifest_digest.clone());
    let s3 = Store::open(&tmp.path().join("s3")).unwrap();
    let r = client.pull(&s3, &pinned, None, &quiet).unwrap();
    assert!(r.image.tags.is_empty());
    assert_eq!(s3.resolve(&pinned.to_string()).unwrap().id, arm.id);
    drop(reg);
}

/// Pushes an amd64 and an arm64 image of `s1` as `multi:amd64` and
/// `multi:arm64`, and an OCI index of the two as `multi:all`; returns
/// the two images and the index's bytes.
fn a_two_platform_index_is_in_the_registry(
    reg: &Registry,
    s1: &Store,
    client: &Client,
) -> (Image, Image, Vec<u8>) {
    let amd = make_image(s1, &format!("{}/multi:amd64", reg.host), "a", 1000, "amd64");
    let arm = make_image(s1, &format!("{}/multi:arm64", reg.host), "b", 1000, "arm64");
    for tag in ["amd64", "arm64"] {
        let n = format!("{}/multi:{tag}", reg.host);
        client
            .push(s1, &n, &Reference::parse(&n).unwrap(), &quiet)
            .unwrap();
    }
    let entry = |img: &Image, arch: &str| {
        serde_json::json!({
            "mediaType": img.manifest.media_type,
            "digest": img.manifest_digest,
            "size": s1.content.size(&img.manifest_digest).unwrap(),
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [entry(&amd, "amd64"), entry(&arm, "arm64")]
    }))
    .unwrap();
    let res = ureq::put(&format!("http://{}/v2/multi/manifests/all", reg.host))
        .header("Content-Type", MEDIA_TYPE_OCI_INDEX)
        .send(&index_bytes[..])
        .unwrap();
    assert_eq!(res.status(), 201);
    (amd, arm, index_bytes)
}

/// `get_manifest`, `put_manifest` and `fetch_blobs_into` see the same
/// index document that was pushed as `all`, and can write one.
fn the_lower_level_calls_read_and_write_the_index(
    reg: &Registry,
    dir: &Path,
    client: &Client,
    all: &Reference,
    index_bytes: &[u8],
    amd: &Image,
) {
    let (bytes, mt, d) = client.get_manifest(all, &quiet).unwrap();
    assert_eq!(
        (bytes.as_slice(), mt.as_str(), &d),
        (index_bytes, MEDIA_TYPE_OCI_INDEX, &Digest::of(index_bytes))
    );
    let copy = Reference::parse(&format!("{}/multi:copy", reg.host)).unwrap();
    assert_eq!(
        client
            .put_manifest(&copy, MEDIA_TYPE_OCI_INDEX, index_bytes, &quiet)
            .unwrap(),
        d
    );
    let blobs_only = Store::open(&dir.join("blobs-only")).unwrap();
    let layer = amd.manifest.layers[0].clone();
    let n = client
        .fetch_blobs_into(&blobs_only, &copy, std::slice::from_ref(&layer), &quiet)
        .unwrap();
    assert_eq!(n, layer.size);
    assert!(blobs_only.content.has(&layer.digest) && blobs_only.list().unwrap().is_empty());
}

/// Pulling `all` into `s2` for arm64 then amd64 gives each platform's
/// image, the tag then names the whole index, and a platform it lacks is
/// refused by name.
fn a_pull_takes_the_requested_platform(
    client: &Client,
    s2: &Store,
    all: &Reference,
    index_bytes: &[u8],
    amd: &Image,
    arm: &Image,
) {
    let arm64: PlatformSpec = "linux/arm64".parse().unwrap();
    let r = client.pull(s2, all, Some(&arm64), &quiet).unwrap();
    assert_eq!(r.image.manifest_digest, arm.manifest_digest);
    assert_eq!(r.index_digest, Some(Digest::of(index_bytes)));
    let amd64: PlatformSpec = "linux/amd64".parse().unwrap();
    let r = client.pull(s2, all, Some(&amd64), &quiet).unwrap();
    assert_eq!(r.image.manifest_digest, amd.manifest_digest);
    // The tag names the registry's index, now with both platforms here.
    let both = s2.resolve(&all.to_string()).unwrap();
    let index = both.index.as_ref().unwrap();
    assert_eq!(index.digest, Digest::of(index_bytes));
    assert_eq!(index.present_platforms(), ["linux/amd64", "linux/arm64"]);
    let arm_spec: PlatformSpec = "linux/arm64".parse().unwrap();
    assert_eq!(
        s2.resolve_for(&all.to_string(), Some(&arm_spec))
            .unwrap()
            .id,
        arm.id
    );
    let s390: PlatformSpec = "linux/s390x".parse().unwrap();
    let err = s2.resolve_for(&all.to_string(), Some(&s390)).unwrap_err();
    assert!(
        err.to_string()
            .contains("has no linux/s390x variant (it has linux/amd64, linux/arm64)"),
        "{err}"
    );
    let err = client.pull(s2, all, Some(&s390), &quiet).unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
}

#[test]
fn tls_and_basic_auth_with_login_and_clear_failures() {
    let Some((reg, Some(sec))) = Registry::start(true) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Store::open(&tmp.path().join("s1")).unwrap();
    let name = format!("{}/private/app:v1", reg.host);
    let img = make_image(&s1, &name, "private", 100_000, "amd64");
    let dest = Reference::parse(&name).unwrap();

    // Without the CA the certificate is refused (no silent fallback).
    let err = Client::new(options(tmp.path()))
        .unwrap()
        .push(&s1, &name, &dest, &quiet)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&reg.host), "{err}");

    let mut opts = options(tmp.path());
    opts.ca_cert = Some(sec.ca.clone());
    let client = Client::new(opts.clone()).unwrap();
    // No credentials: the error names the registry and says what to do.
    let err = client.push(&s1, &name, &dest, &quiet).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&reg.host) && msg.contains("rbk login"),
        "{msg}"
    );
    // Wrong password: refused, naming the user.
    let bad = Credentials {
        username: sec.user.to_string(),
        password: "wrong".to_string(),
    };
    let err = client.login(&reg.host, &bad).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("\"rbk\" was refused"), "{err}");
    // The right one, stored as `rbk login` does; then push and pull work.
    let good = Credentials {
        username: sec.user.to_string(),
        password: sec.password.to_string(),
    };
    client.login(&reg.host, &good).unwrap();
    let auth = opts.auth_file.clone().unwrap();
    let mut file = CredentialsFile::load(&auth).unwrap();
    file.set(&reg.host, &good);
    file.save(&auth).unwrap();
    let client = Client::new(opts.clone()).unwrap();
    assert_eq!(
        client.push(&s1, &name, &dest, &quiet).unwrap(),
        img.manifest_digest
    );
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    let r = client.pull(&s2, &dest, None, &quiet).unwrap();
    assert_eq!(r.image.manifest_digest, img.manifest_digest);
    // --tls-verify=false works without the CA.
    let mut loose = options(tmp.path());
    loose.tls_verify = false;
    let s3 = Store::open(&tmp.path().join("s3")).unwrap();
    Client::new(loose)
        .unwrap()
        .pull(&s3, &dest, None, &quiet)
        .unwrap();

    if have("skopeo", &["--version"]) {
        let raw = run(Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                "rbk:s3cret",
            ])
            .arg(format!("docker://{name}")));
        assert_eq!(Digest::of(raw.as_bytes()), img.manifest_digest);
    }
    let _ = &reg.dir;
}

#[test]
fn an_uncompressed_store_pushes_gzip_layers_once_and_pulls_back_the_same_image() {
    use rbk_store::compress::Compression;
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    if !have("skopeo", &["--version"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Store::open(&tmp.path().join("s1")).unwrap();
    let name = format!("{}/team/plain:v1", reg.host);
    let tars = [
        crate::variant::layer_tar("base", 2 << 20),
        crate::variant::layer_tar("top", 300_000),
    ];
    let img =
        crate::variant::uncompressed_image(&s1, &name, &tars, rbk_store::oci::MEDIA_TYPE_OCI_LAYER);
    let client = Client::new(options(tmp.path())).unwrap();
    let dest = Reference::parse(&name).unwrap();
    let pushed = client
        .push_with(&s1, &name, &dest, Compression::Gzip, &quiet)
        .unwrap();
    // New manifest (gzip layers), same config: same image id.
    assert_ne!(pushed.digest, img.manifest_digest);
    assert_eq!(pushed.local_digest, img.manifest_digest);
    assert_eq!(pushed.id, img.id);

    skopeo_reads_gzip_layers_of_the_local_diff_ids(tmp.path(), &name, &pushed, &img);
    a_second_push_compresses_nothing_again(&s1, &client, &name, &dest, &pushed, &img);

    // Another repository of the registry mounts the gzip variants.
    let other = Reference::parse(&format!("{}/team/plain-copy:v1", reg.host)).unwrap();
    let seen = Mutex::new(Vec::new());
    let copy = client
        .push_with(&s1, &name, &other, Compression::Gzip, &|p| {
            seen.lock().unwrap().push(p.clone())
        })
        .unwrap();
    assert_eq!(copy.digest, pushed.digest);
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|p| matches!(p, Progress::Mounted { .. })),
        "{seen:?}"
    );

    // rbk pull into an empty store: the same image id.
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    let report = client.pull(&s2, &dest, None, &quiet).unwrap();
    assert_eq!(report.image.manifest_digest, pushed.digest);
    assert_eq!(report.image.id, img.id);
    assert_eq!(s2.resolve(&name).unwrap().id, img.id);

    // --compression none sends the stored manifest and layers as they are.
    let raw_dest = Reference::parse(&format!("{}/team/plain:raw", reg.host)).unwrap();
    let as_is = client
        .push_with(&s1, &name, &raw_dest, Compression::None, &quiet)
        .unwrap();
    assert_eq!(as_is.digest, img.manifest_digest);
    drop(reg);
}

/// skopeo reads the pushed `name` as gzip layers that decompress to the
/// local image's diff ids.
fn skopeo_reads_gzip_layers_of_the_local_diff_ids(
    dir: &Path,
    name: &str,
    pushed: &rbk_store::registry::Pushed,
    img: &Image,
) {
    let url = format!("docker://{name}");
    let raw = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw", &url]));
    assert_eq!(Digest::of(raw.as_bytes()), pushed.digest);
    assert_eq!(raw.len() as u64, pushed.size);
    let oci = dir.join("oci");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", &url])
        .arg(format!("oci:{}:x", oci.display())));
    let manifest: rbk_store::oci::Manifest = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest.config.digest, img.id);
    assert_eq!(manifest.layers.len(), 2);
    for (l, diff_id) in manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
        assert_eq!(l.media_type, MEDIA_TYPE_OCI_LAYER_GZIP);
        let blob = std::fs::read(oci.join("blobs/sha256").join(l.digest.hex())).unwrap();
        assert!(blob.starts_with(&[0x1f, 0x8b]), "{} is not gzip", l.digest);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&blob[..]),
            &mut plain,
        )
        .unwrap();
        assert_eq!(&Digest::of(&plain), diff_id);
    }
}

/// A second push of `name` to `dest` compresses nothing again: the
/// variant records are not rewritten, and the registry has every blob.
fn a_second_push_compresses_nothing_again(
    s1: &Store,
    client: &Client,
    name: &str,
    dest: &Reference,
    pushed: &rbk_store::registry::Pushed,
    img: &Image,
) {
    use rbk_store::compress::Compression;
    use std::os::unix::fs::MetadataExt;
    let records: Vec<PathBuf> = img
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| s1.root().join("variants/gzip").join(d.hex()))
        .collect();
    let stamp = |p: &PathBuf| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let before: Vec<_> = records.iter().map(stamp).collect();
    let seen = Mutex::new(Vec::new());
    let again = client
        .push_with(s1, name, dest, Compression::Gzip, &|p| {
            seen.lock().unwrap().push(p.clone())
        })
        .unwrap();
    assert_eq!(&again, pushed);
    assert_eq!(records.iter().map(stamp).collect::<Vec<_>>(), before);
    let seen = seen.into_inner().unwrap();
    assert_eq!(
        seen.iter()
            .filter(|p| matches!(p, Progress::Exists { .. }))
            .count(),
        3,
        "{seen:?}"
    );
}

/// Uploads `bytes` as a blob of `repo`: an upload started, then finished
/// with the whole body.
fn put_blob(host: &str, repo: &str, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let res = ureq::post(&format!("http://{host}/v2/{repo}/blobs/uploads/"))
        .send_empty()
        .unwrap();
    assert_eq!(res.status(), 202);
    let location = res
        .headers()
        .get("Location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let url = match location.starts_with('/') {
        true => format!("http://{host}{location}"),
        false => location,
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let res = ureq::put(&format!("{url}{sep}digest={d}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap();
    assert_eq!(res.status(), 201);
    d
}

#[test]
fn an_index_with_attestations_keeps_them_through_pull_save_load_and_push() {
    let Some((reg, _)) = Registry::start(false) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s1 = Store::open(&tmp.path().join("s1")).unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let Attested {
        index_digest,
        att_digest,
        layer,
    } = an_index_with_an_attestation_is_in_the_registry(&reg, &s1, &client);

    // Pulled whole, then pushed elsewhere: the same index, the
    // attestation with it.
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    let all = Reference::parse(&format!("{}/att:all", reg.host)).unwrap();
    client
        .pull_platforms(&s2, &all, &rbk_store::registry::Platforms::All, &quiet)
        .unwrap();
    assert!(s2.content.has(&att_digest) && s2.content.has(&layer));
    let copy = Reference::parse(&format!("{}/copy:all", reg.host)).unwrap();
    let pushed = client.push(&s2, &all.to_string(), &copy, &quiet).unwrap();
    assert_eq!(pushed, index_digest);
    let res = ureq::get(&format!(
        "http://{}/v2/copy/manifests/{att_digest}",
        reg.host
    ))
    .header("Accept", "application/vnd.oci.image.manifest.v1+json")
    .call()
    .unwrap();
    assert_eq!(res.status(), 200);
    // Saved and loaded into a fresh store, and pushed from there: the same.
    let items = rbk_store::archive::save_items(&s2, &[all.to_string()]).unwrap();
    let mut archive = Vec::new();
    rbk_store::archive::save(&s2, &items, &mut archive).unwrap();
    let s3 = Store::open(&tmp.path().join("s3")).unwrap();
    rbk_store::archive::load(&s3, &archive[..]).unwrap();
    assert!(s3.content.has(&att_digest) && s3.content.has(&layer));
    let again = Reference::parse(&format!("{}/again:all", reg.host)).unwrap();
    let pushed = client.push(&s3, &all.to_string(), &again, &quiet).unwrap();
    assert_eq!(pushed, index_digest);
    // And prune keeps it while the index is there.
    s3.prune(rbk_store::images::PruneOptions::default())
        .unwrap();
    assert!(s3.content.has(&att_digest) && s3.content.has(&layer));
    let check = rbk_store::check::check(&s3, rbk_store::check::CheckOptions::default()).unwrap();
    assert!(check.findings.is_empty(), "{check:?}");
}

/// The digests of an index pushed with an attestation manifest: the
/// index's, the attestation manifest's, and its statement layer's.
struct Attested {
    index_digest: Digest,
    att_digest: Digest,
    layer: Digest,
}

/// Pushes an amd64 and an arm64 image as `att:amd64` and `att:arm64`, a
/// provenance attestation of the amd64 one as BuildKit writes one, and
/// the index of the three as `att:all`.
fn an_index_with_an_attestation_is_in_the_registry(
    reg: &Registry,
    s1: &Store,
    client: &Client,
) -> Attested {
    let mut entries = Vec::new();
    for (arch, seed) in [("amd64", "a"), ("arm64", "b")] {
        let n = format!("{}/att:{arch}", reg.host);
        let img = make_image(s1, &n, seed, 1000, arch);
        client
            .push(s1, &n, &Reference::parse(&n).unwrap(), &quiet)
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": img.manifest.media_type,
            "digest": img.manifest_digest,
            "size": s1.content.size(&img.manifest_digest).unwrap(),
            "platform": {"architecture": arch, "os": "linux"}
        }));
    }
    // A provenance attestation of the amd64 image, as BuildKit writes one.
    let statement = br#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2"}"#;
    let layer = put_blob(&reg.host, "att", statement);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]}
    }))
    .unwrap();
    let config_digest = put_blob(&reg.host, "att", &config);
    let att = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.in-toto+json", "digest": layer, "size": statement.len(),
                    "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}]
    }))
    .unwrap();
    let att_digest = Digest::of(&att);
    let res = ureq::put(&format!(
        "http://{}/v2/att/manifests/{att_digest}",
        reg.host
    ))
    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .send(&att[..])
    .unwrap();
    assert_eq!(res.status(), 201);
    entries.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": att_digest,
        "size": att.len(),
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.digest": entries[0]["digest"],
            "vnd.docker.reference.type": "attestation-manifest"
        }
    }));
    let index_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": entries
    }))
    .unwrap();
    let res = ureq::put(&format!("http://{}/v2/att/manifests/all", reg.host))
        .header("Content-Type", MEDIA_TYPE_OCI_INDEX)
        .send(&index_bytes[..])
        .unwrap();
    assert_eq!(res.status(), 201);
    Attested {
        index_digest: Digest::of(&index_bytes),
        att_digest,
        layer,
    }
}
