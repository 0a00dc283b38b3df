//! The registry client against tiny fake registries (std TcpListener) for
//! what a real one will not do on demand: 5xx answers, dropped
//! connections, wrong digests, a bearer-token service.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbk_store::registry::{Client, Credentials, Progress, RegistryError};
use rbk_store::{Digest, Image, Reference, Store};

use super::{make_image, options, quiet};

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
            let Some((first, authorization)) = read_request(&mut reader) else {
                continue;
            };
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
                answer_with_fault(conn, fault);
                continue;
            }
            if let Some(expected) = &bearer {
                if let Some(reply) = bearer_reply(&path, &authorization, expected, &me, &tq) {
                    let _ = conn.write_all(reply.as_bytes());
                    let _ = reader.read(&mut [0u8; 1]);
                    continue;
                }
            }
            answer_from_routes(&mut conn, &routes, &path);
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    Fake {
        host,
        hits,
        token_queries,
    }
}

/// A request's first line and its `Authorization` header (empty when it
/// has none); `None` when not even the first line could be read.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return None;
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
    Some((first, authorization))
}

/// Fails the request on `conn` the way `fault` says.
fn answer_with_fault(mut conn: TcpStream, fault: Fault) {
    match fault {
        Fault::Drop => drop(conn),
        Fault::Status500 => {
            let _ = conn.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

/// What the token service of the registry at `me` answers to `path`
/// (recording the token endpoint's query in `token_queries`), or `None`
/// when the request carries the token and goes on to the routes.
fn bearer_reply(
    path: &str,
    authorization: &str,
    expected: &str,
    me: &str,
    token_queries: &Mutex<Vec<String>>,
) -> Option<String> {
    if let Some(q) = path.strip_prefix("/token?") {
        token_queries.lock().unwrap().push(q.to_string());
        if authorization == expected {
            Some("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"token\":\"T\"}".to_string())
        } else {
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            Some(format!("HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()))
        }
    } else if authorization != "Bearer T" {
        Some(format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"fake\",scope=\"repository:x:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    } else {
        None
    }
}

/// Answers `path` from `routes`: 200 with its body, 404 when it has none
/// (except `/v2/`, always 200).
fn answer_from_routes(
    conn: &mut TcpStream,
    routes: &HashMap<String, (String, Vec<u8>)>,
    path: &str,
) {
    let (ctype, body) = routes
        .get(path)
        .cloned()
        .unwrap_or_else(|| ("text/plain".into(), Vec::new()));
    let status = if routes.contains_key(path) || path == "/v2/" {
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
}

/// Routes serving `img` (from `store`) as `repo:tag`; `corrupt` replaces
/// the layer's bytes.
pub(super) fn routes_for(
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
