//! `rbk` against a registry that misbehaves (the store's own tests,
//! `store/tests/it/registry/hostile*.rs`, have the full catalogue): a pull
//! the registry spoils tags nothing, a broken image in the store (however it
//! got there) hides no other — `rbk images` lists them all and marks it,
//! `rbk inspect` says what is wrong — and `$RBK_REGISTRY_MIN_SPEED` sets
//! the progress floor.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rbk_store::oci::ImageConfig;
use rbk_store::{Digest, Image, Reference, Store};

use crate::{fails_with, rbk, stderr, stdout};

/// A loopback registry serving `routes` (path → body) to GETs until it is
/// dropped (or a minute passes); a path in `trickle` gets its body one
/// byte every 200 ms.
pub(crate) struct Registry {
    pub(crate) host: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub(crate) fn serve(routes: HashMap<String, Vec<u8>>) -> Registry {
    serve_trickling(routes, None)
}

fn serve_trickling(routes: HashMap<String, Vec<u8>>, trickle: Option<String>) -> Registry {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            // rbk's TLS probe is not a request line.
            if reader.read_line(&mut first).is_err() || !first.ends_with(" HTTP/1.1\r\n") {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let path = first.split(' ').nth(1).unwrap_or("");
            let (status, body) = match routes.get(path) {
                Some(b) => ("200 OK", b.clone()),
                None if path == "/v2/" => ("200 OK", Vec::new()),
                None => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            if trickle.as_deref() == Some(path) {
                let mut conn = conn;
                let st = st.clone();
                // On its own thread: the client's retry must be answered.
                std::thread::spawn(move || {
                    for b in body {
                        if st.load(Ordering::SeqCst) || conn.write_all(&[b]).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                });
                continue;
            }
            let _ = conn.write_all(&body);
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    Registry { host, stop }
}

/// An image `name` with no layer, told apart by `created`.
fn image(store: &Store, name: &str, created: &str) -> Image {
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: Some(created.into()),
        ..ImageConfig::default()
    };
    store
        .commit_image(&config, &[], &[Reference::parse(name).unwrap()])
        .unwrap()
}

/// Routes of `repo:1` whose config blob is `config` (its digest right).
fn routes_with_config(repo: &str, config: &[u8]) -> HashMap<String, Vec<u8>> {
    let digest = Digest::of(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest.to_string(),
            "size": config.len(),
        },
        "layers": [],
    });
    HashMap::from([
        (
            format!("/v2/{repo}/manifests/1"),
            serde_json::to_vec(&manifest).unwrap(),
        ),
        (format!("/v2/{repo}/blobs/{digest}"), config.to_vec()),
    ])
}

/// `rbk system check` of `root` finds nothing wrong.
pub(crate) fn check_is_clean(root: &Path) {
    let out = rbk(root, &["system", "check"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_pull_with_a_config_that_is_not_json_tags_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    image(&store, "localhost/good:1", "2024-01-01T00:00:00Z");
    let registry = serve(routes_with_config("bad", b"this is not JSON"));
    let name = format!("{}/bad:1", registry.host);
    let out = rbk(&root, &["pull", &name]);
    fails_with(&out, &registry.host);
    assert!(stderr(&out).contains("image config"), "{}", stderr(&out));
    // Nothing was tagged: the listing, the name and the check are as before.
    let out = rbk(&root, &["images"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("localhost/good"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("bad"), "{}", stdout(&out));
    fails_with(&rbk(&root, &["inspect", &name]), "no such image");
    check_is_clean(&root);
}

#[test]
fn a_broken_image_is_listed_marked_and_hides_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let good = image(&store, "localhost/good:1", "2024-01-01T00:00:00Z");
    let victim = image(&store, "localhost/victim:1", "2024-02-01T00:00:00Z");
    // Its config blob is overwritten behind the store's back.
    std::fs::write(store.content.path(&victim.id), b"garbage").unwrap();
    let out = rbk(&root, &["images"]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{err}");
    let row = |repo: &str| {
        text.lines()
            .find(|l| l.starts_with(repo))
            .map(str::to_string)
    };
    assert!(
        row("localhost/good").is_some_and(|r| r.contains(good.id.short())),
        "{text}"
    );
    assert!(
        row("localhost/victim").is_some_and(|r| r.contains("<broken>")),
        "{text}"
    );
    assert!(
        err.contains("image localhost/victim:1 is broken") && err.contains(victim.id.as_str()),
        "{err}"
    );
    // Ids only: the readable ones.
    let out = rbk(&root, &["images", "-q"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), format!("{}\n", good.id.short()));
    // JSON rows say why.
    let out = rbk(&root, &["images", "--format", "json"]);
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows[1]["Broken"]
        .as_str()
        .unwrap()
        .contains(victim.id.as_str()));
    // Inspect says what is broken; the good one is still inspected.
    let out = rbk(&root, &["inspect", "localhost/victim:1"]);
    fails_with(&out, "image localhost/victim:1 is broken");
    assert!(
        stderr(&out).contains(victim.id.as_str()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        rbk(&root, &["inspect", "localhost/good:1"]).status.code(),
        Some(0)
    );
    // And it can be removed by name.
    assert_eq!(
        rbk(&root, &["rmi", "localhost/victim:1"]).status.code(),
        Some(0)
    );
    let out = rbk(&root, &["images"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn the_progress_floor_comes_from_the_environment_and_names_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let config = br#"{"architecture":"amd64","os":"linux"}"#.repeat(50);
    let routes = routes_with_config("slow", &config);
    let slow = routes.keys().find(|p| p.contains("/blobs/")).cloned();
    let registry = serve_trickling(routes, slow);
    let name = format!("{}/slow:1", registry.host);
    let started = Instant::now();
    let out = std::process::Command::new(crate::rbk_bin())
        .arg("--root")
        .arg(&root)
        .args(["pull", &name])
        .env("RBK_REGISTRY_MIN_SPEED", "1000/1")
        .output()
        .unwrap();
    fails_with(&out, &format!("registry {} is too slow", registry.host));
    // Four attempts of a 1 s window, with room; the trickle alone would
    // take 20 s an attempt.
    assert!(started.elapsed() < Duration::from_secs(30));
    // A usage error, like any bad flag.
    let out = rbk(&root, &["pull", "--min-speed", "fast", &name]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("expected BYTES/SECONDS"),
        "{}",
        stderr(&out)
    );
}
