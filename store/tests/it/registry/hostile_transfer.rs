//! The hostile registry lying about bytes: wrong digests, sizes that are
//! not the descriptor's, a gzip bomb, trickles and silence, 429s, and
//! connections cut mid-blob (resumed with `Range`).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbk_store::registry::{Client, MinSpeed, Progress, RegistryError, RegistryOptions};
use rbk_store::{Digest, Image, Reference, Store};

use super::faults::routes_for;
use super::hostile::{serve, serve_routes, Hostile, Pace, Reply, Req};
use super::{make_image, options, quiet};

/// A source store holding one image, and its routes as `x:v1`.
fn source(tmp: &std::path::Path, seed: &str, size: usize) -> (Store, Image) {
    let src = Store::open(&tmp.join("src")).unwrap();
    let img = make_image(&src, "x:v1", seed, size, "amd64");
    (src, img)
}

/// Serves `img` from `src`, with `layer` answering the layer's GETs.
fn with_layer(
    src: &Store,
    img: &Image,
    layer: impl Fn(&Req, &[u8]) -> Reply + Send + Sync + 'static,
) -> Hostile {
    let routes = routes_for(src, img, "x", false);
    let path = format!("/v2/x/blobs/{}", img.manifest.layers[0].digest);
    let bytes = src.content.read(&img.manifest.layers[0].digest).unwrap();
    serve(move |req| {
        if req.path == path {
            layer(req, &bytes)
        } else {
            serve_routes(&routes, req)
        }
    })
}

fn pull(
    opts: RegistryOptions,
    dir: &std::path::Path,
    host: &str,
) -> (
    Store,
    Result<rbk_store::registry::PullReport, RegistryError>,
) {
    let store = Store::open(&dir.join(format!("dst-{}", host.replace(':', "_")))).unwrap();
    let r = Reference::parse(&format!("{host}/x:v1")).unwrap();
    let res = Client::new(opts).unwrap().pull(&store, &r, None, &quiet);
    (store, res)
}

/// What is left in the store's staging directory, in bytes.
fn staged_bytes(store: &Store) -> u64 {
    std::fs::read_dir(store.content.tmp_dir())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_manifest_whose_announced_digest_lies_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "claimed", 2_000);
    let routes = routes_for(&src, &img, "x", false);
    let fake = serve(move |req| {
        serve_routes(&routes, req).header(
            "Docker-Content-Digest",
            Digest::of(b"another manifest").as_str(),
        )
    });
    let (store, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn sizes_other_than_the_descriptor_are_refused_with_bounded_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "sizes", 20_000);
    let size = img.manifest.layers[0].size as usize;
    // (what the registry does, what the error must be)
    type Lie = fn(&[u8]) -> Reply;
    let lies: [(&str, Lie); 4] = [
        ("more bytes, honest length", |b| {
            let mut more = b.to_vec();
            more.extend(std::iter::repeat_n(0u8, 1 << 20));
            Reply::new(200, more)
        }),
        ("fewer bytes, honest length", |b| {
            Reply::new(200, b[..b.len() / 2].to_vec())
        }),
        ("a length smaller than the body", |b| {
            Reply::new(200, b.to_vec()).length(b.len() - 10)
        }),
        ("a length bigger than the body", |b| {
            Reply::new(200, b.to_vec()).length(b.len() + 10)
        }),
    ];
    for (what, lie) in lies {
        let fake = with_layer(&src, &img, move |_, b| lie(b));
        let mut opts = options(tmp.path());
        opts.attempts = 2;
        let (store, res) = pull(opts, tmp.path(), &fake.host);
        let err = res.unwrap_err();
        let msg = err.to_string();
        match what {
            "a length bigger than the body" => {
                assert!(
                    matches!(err, RegistryError::Connect { .. }),
                    "{what}: {msg}"
                )
            }
            _ => {
                assert!(
                    matches!(err, RegistryError::SizeMismatch { expected, .. } if expected as usize == size),
                    "{what}: {msg}"
                );
                assert!(msg.contains(&fake.host), "{msg}");
            }
        }
        assert!(store.list().unwrap().is_empty(), "{what}");
        assert!(!store.content.has(&img.manifest.layers[0].digest));
        assert_eq!(staged_bytes(&store), 0, "{what}");
    }
}

#[test]
fn a_gzip_bomb_is_neither_inflated_nor_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "bomb", 2_000);
    // 64 MiB of zeros in about 64 KiB, sent as the layer's encoding: rbk
    // asks for no Content-Encoding and must not inflate one.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 64 << 20]).unwrap();
    let bomb = Arc::new(gz.finish().unwrap());
    let b = bomb.clone();
    let fake = with_layer(&src, &img, move |_, _| {
        Reply::new(200, b.to_vec()).header("Content-Encoding", "gzip")
    });
    let (store, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert_eq!(staged_bytes(&store), 0);
    // A manifest bigger than any manifest (16 MiB) is not read whole.
    let routes = routes_for(&src, &img, "x", false);
    let huge = serve(move |req| {
        if req.path.contains("/manifests/") {
            Reply::new(200, vec![b' '; 17 << 20])
        } else {
            serve_routes(&routes, req)
        }
    });
    let mut opts = options(tmp.path());
    opts.attempts = 1;
    let (store, res) = pull(opts, tmp.path(), &huge.host);
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_trickle_or_silence_is_left_within_the_window_naming_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "trickle", 20_000);
    for pace in [
        Pace::Trickle(Duration::from_millis(300)),
        Pace::Silent(Duration::from_secs(60)),
    ] {
        let fake = with_layer(&src, &img, move |_, b| {
            Reply::new(200, b.to_vec()).pace(pace)
        });
        let mut opts = options(tmp.path());
        opts.attempts = 2;
        opts.min_speed = "1000/1".parse::<MinSpeed>().unwrap();
        let started = Instant::now();
        let (store, res) = pull(opts, tmp.path(), &fake.host);
        let took = started.elapsed();
        let err = res.unwrap_err();
        let chain = rbk_scheduler_free_chain(&err);
        assert!(
            chain.contains(&format!("{} is too slow", fake.host)),
            "{pace:?}: {chain}"
        );
        // Two attempts of a 1 s window each, with generous room.
        assert!(took < Duration::from_secs(20), "{pace:?}: {took:?}");
        assert!(store.list().unwrap().is_empty());
    }
}

/// An error and its causes, one after the other.
fn rbk_scheduler_free_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

#[test]
fn retry_after_is_honoured_within_a_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "429", 2_000);
    let waits: [(u16, fn() -> String); 2] = [
        (429, || "1".to_string()),
        (503, || {
            let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
            let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
            at.format(fmt).unwrap()
        }),
    ];
    for (status, after) in waits {
        let routes = routes_for(&src, &img, "x", false);
        let n = Arc::new(AtomicUsize::new(0));
        let count = n.clone();
        let fake = serve(move |req| {
            if req.path.contains("/manifests/") && count.fetch_add(1, Ordering::SeqCst) < 2 {
                return Reply::new(status, Vec::new()).header("Retry-After", &after());
            }
            serve_routes(&routes, req)
        });
        let started = Instant::now();
        let (_, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
        res.unwrap();
        // Two waits of about 1 s (the date has whole seconds), where the
        // backoff alone is 10 + 20 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(1_500),
            "{status}"
        );
    }
    // A wait longer than the cap is not waited: the error says so at once.
    let fake = serve(|req| match req.path.as_str() {
        "/v2/" => Reply::new(200, Vec::new()),
        _ => Reply::new(429, Vec::new()).header("Retry-After", "3600"),
    });
    let started = Instant::now();
    let (_, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
    let chain = rbk_scheduler_free_chain(&res.unwrap_err());
    assert!(chain.contains("retry after 3600 s"), "{chain}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// What the layer's server does on its second request: resume honestly,
/// ignore the range, answer another range, or resume with wrong bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Second {
    Resume,
    Whole,
    WrongRange,
    Corrupt,
}

#[test]
fn a_cut_blob_resumes_with_a_range_and_is_verified_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "resume", 300_000);
    for second in [
        Second::Resume,
        Second::Whole,
        Second::WrongRange,
        Second::Corrupt,
    ] {
        let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let seen = ranges.clone();
        let fake = with_layer(&src, &img, move |req, b| {
            let range = req.header("range").map(str::to_string);
            let first = {
                let mut s = seen.lock().unwrap();
                s.push(range.clone());
                s.len() == 1
            };
            let half = b.len() / 2;
            if first {
                return Reply::new(200, b.to_vec()).pace(Pace::CutAfter(half));
            }
            let from: usize = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let span = |start: usize| format!("bytes {start}-{}/{}", b.len() - 1, b.len());
            match second {
                Second::Resume => {
                    Reply::new(206, b[from..].to_vec()).header("Content-Range", &span(from))
                }
                Second::Corrupt => {
                    let mut rest = b[from..].to_vec();
                    rest[0] ^= 0xff;
                    Reply::new(206, rest).header("Content-Range", &span(from))
                }
                Second::WrongRange if range.is_some() => {
                    Reply::new(206, b[1..].to_vec()).header("Content-Range", &span(1))
                }
                Second::WrongRange | Second::Whole => Reply::new(200, b.to_vec()),
            }
        });
        let (store, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
        let ranges = ranges.lock().unwrap().clone();
        // The retry asked for what was missing, whatever the answer.
        assert_eq!(ranges[0], None, "{second:?}");
        let asked = ranges[1].as_deref().unwrap_or("");
        let from: u64 = asked
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        assert!(from > 0, "{second:?}: {ranges:?}");
        if second == Second::Corrupt {
            let err = res.unwrap_err();
            assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
            assert!(store.list().unwrap().is_empty());
            continue;
        }
        let report = res.unwrap_or_else(|e| panic!("{second:?}: {e}"));
        assert_eq!(report.image.manifest_digest, img.manifest_digest);
        assert_eq!(
            store.content.read(&img.manifest.layers[0].digest).unwrap(),
            src.content.read(&img.manifest.layers[0].digest).unwrap()
        );
        if second == Second::WrongRange {
            assert_eq!(ranges.len(), 3, "started over: {ranges:?}");
            assert_eq!(ranges[2], None);
        }
    }
}

#[test]
fn retries_are_reported_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "report", 2_000);
    let routes = routes_for(&src, &img, "x", false);
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    let fake = serve(move |req| {
        if req.path.contains("/manifests/") && count.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::new(429, Vec::new()).header("Retry-After", "0");
        }
        serve_routes(&routes, req)
    });
    let store = Store::open(&tmp.path().join("dst")).unwrap();
    let r = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
    let reasons: Mutex<Vec<String>> = Mutex::default();
    Client::new(options(tmp.path()))
        .unwrap()
        .pull(&store, &r, None, &|p| {
            if let Progress::Retrying { reason, .. } = p {
                reasons.lock().unwrap().push(reason.clone());
            }
        })
        .unwrap();
    let reasons = reasons.into_inner().unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("HTTP 429"), "{reasons:?}");
}

#[test]
fn a_config_that_is_not_json_is_never_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = source(tmp.path(), "config", 2_000);
    // The registry's config blob is not JSON, with its digest right.
    let config = b"not JSON at all".to_vec();
    let mut manifest = img.manifest.clone();
    manifest.config = rbk_store::oci::Descriptor::new(
        &manifest.config.media_type,
        Digest::of(&config),
        config.len() as u64,
    );
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut routes = routes_for(&src, &img, "x", false);
    let mt = img.manifest.media_type.clone().unwrap();
    routes.insert("/v2/x/manifests/v1".into(), (mt, manifest.clone()));
    routes.insert(
        format!("/v2/x/blobs/{}", Digest::of(&config)),
        ("application/octet-stream".into(), config),
    );
    let fake = serve(move |req| serve_routes(&routes, req));
    let (store, res) = pull(options(tmp.path()), tmp.path(), &fake.host);
    let err = res.unwrap_err();
    assert!(matches!(err, RegistryError::Json { .. }), "{err}");
    assert!(err.to_string().contains(&fake.host), "{err}");
    assert!(store.read_index().unwrap().manifests.is_empty());
    // Whoever tags: the store refuses such an image too.
    let digest = store.content.put(&manifest).unwrap();
    let desc = rbk_store::oci::Descriptor::new(
        rbk_store::oci::MEDIA_TYPE_OCI_MANIFEST,
        digest,
        manifest.len() as u64,
    );
    let tag = Reference::parse("x:v1").unwrap();
    assert!(store.add_to_index(&[(desc, vec![tag])]).is_err());
    assert!(store.read_index().unwrap().manifests.is_empty());
    assert!(store.list_all().unwrap().1.is_empty());
}

#[test]
fn a_registry_that_never_answers_an_upload_is_left_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, _) = source(tmp.path(), "mute", 5_000);
    let fake = serve(|req| match req.method.as_str() {
        "GET" => Reply::new(200, Vec::new()),
        "HEAD" => Reply::new(404, Vec::new()),
        "POST" => Reply::new(202, Vec::new()).header("Location", "/upload/1"),
        _ => Reply::new(201, Vec::new()).pace(Pace::Mute(Duration::from_secs(60))),
    });
    let mut opts = options(tmp.path());
    opts.attempts = 2;
    opts.parallel = 1;
    opts.min_speed = "1000/1".parse::<MinSpeed>().unwrap();
    let dest = Reference::parse(&format!("{}/x:v1", fake.host)).unwrap();
    let started = Instant::now();
    let err = Client::new(opts)
        .unwrap()
        .push(&src, "x:v1", &dest, &quiet)
        .unwrap_err();
    let chain = rbk_scheduler_free_chain(&err);
    assert!(
        chain.contains(&format!("{} is too slow", fake.host)),
        "{chain}"
    );
    // Two attempts, started over once, of a 1 s window: with room.
    assert!(started.elapsed() < Duration::from_secs(20));
}
