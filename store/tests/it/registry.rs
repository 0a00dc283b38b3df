//! The registry client against a real registry (Debian's `docker-registry`,
//! distribution 2.8) — plain, and with htpasswd auth behind TLS — with
//! skopeo as the independent client on the other side; and against a tiny
//! fake registry for faults (5xx, dropped connections, wrong digests).
//! Tests print SKIPPED and return when a tool is missing (CI installs
//! `docker-registry`, `skopeo`, `apache2-utils` and `openssl`).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
fn make_image(store: &Store, name: &str, seed: &str, size: usize, arch: &str) -> Image {
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

fn options(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        auth_file: Some(dir.join("auth.json")),
        docker_config: None,
        ca_cert: None,
        backoff: Duration::from_millis(10),
        ..RegistryOptions::default()
    }
}

fn quiet(_: &Progress) {}

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
    let img = make_image(&s1, &name, "app", 3 << 20, "amd64");
    let client = Client::new(options(tmp.path())).unwrap();
    let dest = Reference::parse(&name).unwrap();
    let digest = client.push(&s1, &name, &dest, &quiet).unwrap();
    assert_eq!(digest, img.manifest_digest);

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
    let amd = make_image(
        &s1,
        &format!("{}/multi:amd64", reg.host),
        "a",
        1000,
        "amd64",
    );
    let arm = make_image(
        &s1,
        &format!("{}/multi:arm64", reg.host),
        "b",
        1000,
        "arm64",
    );
    let client = Client::new(options(tmp.path())).unwrap();
    for tag in ["amd64", "arm64"] {
        let n = format!("{}/multi:{tag}", reg.host);
        client
            .push(&s1, &n, &Reference::parse(&n).unwrap(), &quiet)
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
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_INDEX,
        "manifests": [entry(&amd, "amd64"), entry(&arm, "arm64")]
    }))
    .unwrap();
    let res = ureq::put(&format!("http://{}/v2/multi/manifests/all", reg.host))
        .header("Content-Type", MEDIA_TYPE_OCI_INDEX)
        .send(&index[..])
        .unwrap();
    assert_eq!(res.status(), 201);

    let all = Reference::parse(&format!("{}/multi:all", reg.host)).unwrap();
    let s2 = Store::open(&tmp.path().join("s2")).unwrap();
    let arm64: PlatformSpec = "linux/arm64".parse().unwrap();
    let r = client.pull(&s2, &all, Some(&arm64), &quiet).unwrap();
    assert_eq!(r.image.manifest_digest, arm.manifest_digest);
    assert_eq!(r.index_digest, Some(Digest::of(&index)));
    let amd64: PlatformSpec = "linux/amd64".parse().unwrap();
    let r = client.pull(&s2, &all, Some(&amd64), &quiet).unwrap();
    assert_eq!(r.image.manifest_digest, amd.manifest_digest);
    // The tag moved to the last pulled platform's image.
    assert_eq!(s2.resolve(&all.to_string()).unwrap().id, amd.id);
    let s390: PlatformSpec = "linux/s390x".parse().unwrap();
    let err = client.pull(&s2, &all, Some(&s390), &quiet).unwrap_err();
    assert!(matches!(err, RegistryError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
    // Pulling by digest pins the manifest and adds no tag.
    let pinned = all.with_digest(arm.manifest_digest.clone());
    let s3 = Store::open(&tmp.path().join("s3")).unwrap();
    let r = client.pull(&s3, &pinned, None, &quiet).unwrap();
    assert!(r.image.tags.is_empty());
    assert_eq!(s3.resolve(&pinned.to_string()).unwrap().id, arm.id);
    drop(reg);
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

/// A fake registry serving fixed paths, failing the first `fail` requests
/// of each path with `fault`.
#[derive(Clone, Copy)]
enum Fault {
    Status500,
    Drop,
}

struct Fake {
    host: String,
    hits: Arc<AtomicUsize>,
    /// Query strings the token endpoint received.
    token_queries: Arc<Mutex<Vec<String>>>,
}

/// With `bearer`, the registry wants token auth: `/token` grants token
/// `T` to requests whose `Authorization` is `bearer`, everything else
/// answers 401 with a challenge unless it carries `Bearer T`.
fn fake_registry(
    routes: HashMap<String, (String, Vec<u8>)>,
    fail: usize,
    fault: Fault,
    bearer: Option<String>,
) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let h = hits.clone();
    let token_queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let tq = token_queries.clone();
    let me = host.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            // rbk first tries TLS on a local registry: a ClientHello must
            // not hang this server waiting for a line.
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = v.trim().to_string();
                    }
                }
            }
            if !first.ends_with(" HTTP/1.1\r\n") {
                continue;
            }
            h.fetch_add(1, Ordering::SeqCst);
            let path = first.split(' ').nth(1).unwrap_or("").to_string();
            let n = {
                let mut s = seen.lock().unwrap();
                let c = s.entry(path.clone()).or_insert(0);
                *c += 1;
                *c
            };
            if n <= fail && path != "/v2/" {
                match fault {
                    Fault::Drop => drop(conn),
                    Fault::Status500 => {
                        let _ = conn.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                }
                continue;
            }
            if let Some(expected) = &bearer {
                let reply = if let Some(q) = path.strip_prefix("/token?") {
                    tq.lock().unwrap().push(q.to_string());
                    if &authorization == expected {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"token\":\"T\"}".to_string()
                    } else {
                        let body =
                            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                        format!("HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    }
                } else if authorization != "Bearer T" {
                    format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"fake\",scope=\"repository:x:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                } else {
                    String::new()
                };
                if !reply.is_empty() {
                    let _ = conn.write_all(reply.as_bytes());
                    let _ = reader.read(&mut [0u8; 1]);
                    continue;
                }
            }
            let (ctype, body) = routes
                .get(&path)
                .cloned()
                .unwrap_or_else(|| ("text/plain".into(), Vec::new()));
            let status = if routes.contains_key(&path) || path == "/v2/" {
                "200 OK"
            } else {
                "404 Not Found"
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
            let _ = conn.flush();
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    Fake {
        host,
        hits,
        token_queries,
    }
}

/// Routes serving `img` (from `store`) as `repo:tag`; `corrupt` replaces
/// the layer's bytes.
fn routes_for(
    store: &Store,
    img: &Image,
    repo: &str,
    corrupt: bool,
) -> HashMap<String, (String, Vec<u8>)> {
    let mut routes = HashMap::new();
    let manifest = store.content.read(&img.manifest_digest).unwrap();
    let mt = img.manifest.media_type.clone().unwrap();
    routes.insert(format!("/v2/{repo}/manifests/v1"), (mt, manifest));
    for d in std::iter::once(&img.manifest.config).chain(&img.manifest.layers) {
        let mut data = store.content.read(&d.digest).unwrap();
        if corrupt && d.digest != img.manifest.config.digest {
            let last = data.len() - 1;
            data[last] ^= 0xff;
        }
        routes.insert(
            format!("/v2/{repo}/blobs/{}", d.digest),
            ("application/octet-stream".into(), data),
        );
    }
    routes
}

#[test]
fn server_errors_and_dropped_connections_are_retried_with_a_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&src, "x:v1", "retry", 50_000, "amd64");
    let client = Client::new(options(tmp.path())).unwrap();
    for fault in [Fault::Status500, Fault::Drop] {
        let fake = fake_registry(routes_for(&src, &img, "x", false), 2, fault, None);
        let store = Store::open(&tmp.path().join(format!("ok-{}", fake.host))).unwrap();
        let retries = AtomicUsize::new(0);
        let r = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
        let report = client
            .pull(&store, &r, None, &|p| {
                if matches!(p, Progress::Retrying { .. }) {
                    retries.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        assert_eq!(report.image.manifest_digest, img.manifest_digest);
        // Manifest, config and layer each failed twice.
        assert_eq!(retries.load(Ordering::SeqCst), 6);
    }
    // A registry that keeps failing is given up on after 4 attempts.
    let fake = fake_registry(
        routes_for(&src, &img, "x", false),
        usize::MAX,
        Fault::Status500,
        None,
    );
    let store = Store::open(&tmp.path().join("down")).unwrap();
    let r = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
    let before = fake.hits.load(Ordering::SeqCst);
    let err = client.pull(&store, &r, None, &quiet).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&fake.host) && msg.contains("4 attempts"),
        "{msg}"
    );
    // The /v2/ probe plus 4 manifest attempts.
    assert_eq!(fake.hits.load(Ordering::SeqCst) - before, 5);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&src, "x:v1", "corrupt", 50_000, "amd64");
    let fake = fake_registry(routes_for(&src, &img, "x", true), 0, Fault::Drop, None);
    let store = Store::open(&tmp.path().join("dst")).unwrap();
    let client = Client::new(options(tmp.path())).unwrap();
    let r = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
    let err = client.pull(&store, &r, None, &quiet).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(img.manifest.layers[0].digest.as_str()));
    assert!(store.list().unwrap().is_empty());
    assert!(!store.content.has(&img.manifest.layers[0].digest));
    assert!(!store.content.has(&img.manifest_digest));
    // A manifest pinned by digest that does not match is refused too.
    let pinned = r.with_digest(Digest::of(b"something else"));
    let mut routes = routes_for(&src, &img, "x", false);
    let m = routes.remove("/v2/x/manifests/v1").unwrap();
    routes.insert(
        format!("/v2/x/manifests/{}", Digest::of(b"something else")),
        m,
    );
    let fake = fake_registry(routes, 0, Fault::Drop, None);
    let pinned =
        Reference::parse(&format!("{}/x@{}", fake.host, pinned.digest().unwrap())).unwrap();
    let err = client.pull(&store, &pinned, None, &quiet).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[test]
fn bearer_tokens_come_from_the_challenge_realm_with_stored_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&src, "x:v1", "token", 10_000, "amd64");
    let creds = Credentials {
        username: "alice".to_string(),
        password: "pw".to_string(),
    };
    let fake = fake_registry(
        routes_for(&src, &img, "x", false),
        0,
        Fault::Drop,
        Some(creds.basic_header()),
    );
    let r = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
    // Anonymous: the token service refuses, and the error says so.
    let client = Client::new(options(tmp.path())).unwrap();
    let store = Store::open(&tmp.path().join("anon")).unwrap();
    let err = client.pull(&store, &r, None, &quiet).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
    assert!(
        msg.contains(&fake.host) && msg.contains("bad credentials"),
        "{msg}"
    );
    // With credentials in a Docker config.json, the pull goes through.
    let docker = tmp.path().join("docker.json");
    std::fs::write(
        &docker,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
            fake.host,
            rbk_store::registry::base64_encode(b"alice:pw")
        ),
    )
    .unwrap();
    let mut opts = options(tmp.path());
    opts.docker_config = Some(docker);
    let store = Store::open(&tmp.path().join("authed")).unwrap();
    let report = Client::new(opts)
        .unwrap()
        .pull(&store, &r, None, &quiet)
        .unwrap();
    assert_eq!(report.image.manifest_digest, img.manifest_digest);
    let queries = fake.token_queries.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .all(|q| q == "service=fake&scope=repository%3Ax%3Apull"),
        "{queries:?}"
    );
}

/// A fake registry that reads request bodies and answers with `handler`
/// (method, path, body) → (status, headers, body). Returns its host.
fn serve_with(
    handler: impl Fn(&str, &str, &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() || !first.ends_with(" HTTP/1.1\r\n") {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut parts = first.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (status, headers, out) = handler(&method, &path, &body);
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                out.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&out);
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    host
}

#[test]
fn push_retries_failed_uploads_and_refuses_a_manifest_stored_under_another_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&store, "x:v1", "push-faults", 20_000, "amd64");
    let manifest_bytes = store.content.read(&img.manifest_digest).unwrap();
    for lie_about_digest in [false, true] {
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let manifests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let puts = Arc::new(AtomicUsize::new(0));
        let (b, m, p) = (blobs.clone(), manifests.clone(), puts.clone());
        let host = serve_with(move |method, path, body| {
            let no = |s: u16| (s, Vec::new(), Vec::new());
            match method {
                "GET" if path == "/v2/" => no(200),
                "HEAD" => no(404),
                "POST" => (
                    202,
                    vec![("Location".into(), "/upload/1".into())],
                    Vec::new(),
                ),
                "PUT" if path.starts_with("/upload/") => {
                    // Every blob's first two PUTs fail with 500.
                    if p.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
                        return no(500);
                    }
                    let digest = path.split("digest=").nth(1).unwrap().replace("%3A", ":");
                    b.lock().unwrap().insert(digest, body.to_vec());
                    p.store(0, Ordering::SeqCst);
                    no(201)
                }
                "PUT" => {
                    m.lock().unwrap().push(body.to_vec());
                    let claimed = if lie_about_digest {
                        Digest::of(b"not this")
                    } else {
                        Digest::of(body)
                    };
                    (
                        201,
                        vec![("Docker-Content-Digest".into(), claimed.to_string())],
                        Vec::new(),
                    )
                }
                _ => no(405),
            }
        });
        let mut opts = options(tmp.path());
        opts.parallel = 1;
        let client = Client::new(opts).unwrap();
        let dest = Reference::parse(&format!("{host}/x:v1")).unwrap();
        let res = client.push(&store, "x:v1", &dest, &quiet);
        // Both blobs arrived intact despite the failures.
        let blobs = blobs.lock().unwrap();
        for d in std::iter::once(&img.manifest.config).chain(&img.manifest.layers) {
            assert_eq!(
                blobs[d.digest.as_str()],
                store.content.read(&d.digest).unwrap()
            );
        }
        assert_eq!(
            manifests.lock().unwrap().as_slice(),
            std::slice::from_ref(&manifest_bytes)
        );
        if lie_about_digest {
            let err = res.unwrap_err();
            assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
        } else {
            assert_eq!(res.unwrap(), img.manifest_digest);
        }
    }
}
