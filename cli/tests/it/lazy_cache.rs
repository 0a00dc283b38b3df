//! Layers served by a registry cache stay in the registry until something
//! reads them: a fully cached CI build downloads no layer, a build whose
//! last step changed downloads only the layers under it, and `save` and
//! `run` of such an image fetch what they lack. Bytes are counted in the
//! registry's own request log (loopback `docker-registry`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use crate::build::{rbk, store_with_busybox, write};
use crate::cache::{ok, Registry};

/// Writes `Dockerfile` and 4 MiB that gzip cannot shrink (an xorshift
/// stream) as `big` into `ctx`, so a download of it shows in the count.
fn context(ctx: &Path, dockerfile: &str) {
    write(ctx, &[("Dockerfile", dockerfile)]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(4 << 20);
    while big.len() < 4 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(ctx.join("big"), big).unwrap();
}

/// The layers (digest, size) of manifest `repo:tag` in the registry (the
/// image's, under the index a push with provenance makes).
fn layers_of(host: &str, repo: &str, tag: &str) -> Vec<(String, u64)> {
    let get = |reference: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.oci.image.index.v1+json",
            ])
            .arg(format!("http://{host}/v2/{repo}/manifests/{reference}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl failed");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut m = get(tag);
    if let Some(image) = m["manifests"][0]["digest"].as_str() {
        m = get(image);
    }
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The blob digests the registry served (GET) from request `from` on.
fn blob_gets(reg: &Registry, from: usize) -> Vec<String> {
    reg.requests()[from..]
        .iter()
        .filter_map(|r| r.strip_prefix("GET "))
        .filter_map(|uri| uri.split_once("/blobs/").map(|(_, d)| d.to_string()))
        .collect()
}

/// Bytes of `layers` among `gets`.
fn layer_bytes(gets: &[String], layers: &[(String, u64)]) -> u64 {
    gets.iter()
        .filter_map(|g| layers.iter().find(|(d, _)| d == g).map(|(_, n)| n))
        .sum()
}

/// A fresh store holding the same busybox image as `from` (saved there,
/// loaded here): the base both CI stores have locally.
fn store_with_the_same_base(from: &Path, dir: &Path) -> std::path::PathBuf {
    let tar = dir.join("busybox.tar");
    if !tar.exists() {
        ok(rbk(from)
            .args(["image", "save", "-o"])
            .arg(&tar)
            .arg("localhost/busybox:latest")
            .output()
            .unwrap());
    }
    let store = dir.join(format!("store-{}", std::fs::read_dir(dir).unwrap().count()));
    ok(rbk(&store)
        .args(["image", "load", "-q", "-i"])
        .arg(&tar)
        .output()
        .unwrap());
    store
}

/// `rbk build --progress plain --pull=never ARGS CTX` in `store`, which
/// must succeed: its standard error (the step summary is there).
fn build(store: &Path, args: &[&str], ctx: &Path) -> String {
    let (_, err) = ok(rbk(store)
        .args(["build", "--progress", "plain", "--pull=never"])
        .args(args)
        .arg(ctx)
        .output()
        .unwrap());
    err
}

const DOCKERFILE: &str = "FROM localhost/busybox:latest\n\
                          COPY big /big\n\
                          RUN cat /big > /dev/null && echo ok > /done\n";

/// Store A builds the context, exports every step to `cache` and pushes
/// `app`: what the first CI job leaves in the registry.
fn first_job(a: &Path, ctx: &Path, cache: &str, app: &str) {
    let cache_to = format!("--cache-to=type=registry,ref={cache},mode=max");
    let err = build(a, &["--push", "-t", app, &cache_to], ctx);
    assert!(err.contains("2 steps run, 0 cached"), "{err}");
}

/// The first CI job done: store A built the context with its cache
/// exported to the registry and pushed `app:1`, whose layers are listed.
struct JobA {
    reg: Registry,
    a: tempfile::TempDir,
    store_a: std::path::PathBuf,
    host: String,
    ctx: std::path::PathBuf,
    cache: String,
    layers: Vec<(String, u64)>,
}

/// [`JobA`], or None (said) when the registry or the sandbox is missing.
fn job_a(test: &str) -> Option<JobA> {
    let reg = Registry::start_logged(test)?;
    let a = store_with_busybox(test)?;
    let store_a = a.path().join("store");
    let host = reg.host.clone();
    let ctx = a.path().join("ctx");
    context(&ctx, DOCKERFILE);
    let cache = format!("{host}/cache/app:ci");
    first_job(&store_a, &ctx, &cache, &format!("{host}/app:1"));
    let layers = layers_of(&host, "app", "1");
    Some(JobA {
        reg,
        a,
        store_a,
        host,
        ctx,
        cache,
        layers,
    })
}

#[test]
fn a_fully_cached_ci_build_downloads_no_layer() {
    let test = "a_fully_cached_ci_build_downloads_no_layer";
    let Some(JobA {
        reg,
        a: _a,
        store_a,
        host,
        ctx,
        cache,
        layers,
    }) = job_a(test)
    else {
        return;
    };
    let big = layers.iter().map(|(_, n)| *n).max().unwrap();
    assert!(big > 4_000_000, "{layers:?}");

    // The second job: a fresh store with the same base, every step cached.
    let jobs = tempfile::tempdir().unwrap();
    let b = store_with_the_same_base(&store_a, jobs.path());
    let before = reg.requests().len();
    let app2 = format!("{host}/app:2");
    let cache_from = format!("--cache-from=type=registry,ref={cache}");
    let err = build(&b, &["--push", "-t", &app2, &cache_from], &ctx);
    assert!(err.contains("0 steps run, 2 cached"), "{err}");
    let gets = blob_gets(&reg, before);
    assert_eq!(
        layer_bytes(&gets, &layers),
        0,
        "layers downloaded: {gets:?}"
    );
    // Nor was any layer uploaded: the registry had every one. (What is
    // uploaded is the build's provenance, on by default for a push: its
    // statement and the attestation manifest's config.)
    let uploads: Vec<String> = reg.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
        .cloned()
        .collect();
    assert!(uploads.len() <= 2, "uploaded: {uploads:?}");
    for (layer, _) in &layers {
        assert!(
            !uploads.iter().any(|u| u.contains(layer.as_str())),
            "layer {layer} uploaded: {uploads:?}"
        );
    }
    assert_eq!(layers_of(&host, "app", "2"), layers);

    the_lazy_image_is_sound_and_says_what_is_remote(&b, &app2);
    a_push_to_another_repository_mounts_from_the_cache(&reg, &b, &app2, &layers);
    a_gone_registry_is_named(&reg, &store_a, jobs.path(), &ctx, &cache, &app2);

    save_fetches_what_it_lacks_and_run_works(&reg, &b, jobs.path(), &app2, &layers);
}

/// `save` of the lazy image fetches what it lacks and writes it whole;
/// `run` works, and everything is local after.
fn save_fetches_what_it_lacks_and_run_works(
    reg: &Registry,
    b: &Path,
    jobs: &Path,
    app2: &str,
    layers: &[(String, u64)],
) {
    let big = layers.iter().map(|(_, n)| *n).max().unwrap();
    let before = reg.requests().len();
    let archive = jobs.join("app.tar");
    ok(rbk(b)
        .args(["image", "save", "-o"])
        .arg(&archive)
        .arg(app2)
        .output()
        .unwrap());
    let gets = blob_gets(reg, before);
    let fetched = layer_bytes(&gets, layers);
    assert!(fetched >= big, "save fetched {fetched} bytes: {gets:?}");
    let listing = Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let (out, _) = ok(rbk(b)
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            app2,
        ])
        .output()
        .unwrap());
    let diff_ids: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    for d in &diff_ids {
        let hex = d.trim_start_matches("sha256:");
        assert!(listing.contains(hex), "{d} not in the archive:\n{listing}");
    }
    let (out, _) = ok(rbk(b)
        .args(["run", "--rm", app2, "cat", "/done"])
        .output()
        .unwrap());
    assert_eq!(out, "ok\n");
    // Read once, kept: the run fetched nothing more.
    let (out, _) = ok(rbk(b).args(["system", "check"]).output().unwrap());
    assert!(!out.contains("remote:"), "{out}");
}

/// `images` and `system check` take the image as whole, and the check
/// says which of its layers are still in the registry.
fn the_lazy_image_is_sound_and_says_what_is_remote(b: &Path, app: &str) {
    let (out, _) = ok(rbk(b).args(["images"]).output().unwrap());
    assert!(out.contains("/app"), "{out}");
    let (out, _) = ok(rbk(b).args(["system", "check"]).output().unwrap());
    assert!(out.contains("store is sound"), "{out}");
    assert!(
        out.contains(&format!(
            "image {app}: remote: 2 layers in registry repository"
        )),
        "{out}"
    );
    assert!(!out.contains("missing"), "{out}");
    // A prune keeps what the image needs.
    ok(rbk(b).args(["image", "prune"]).output().unwrap());
    let (out, _) = ok(rbk(b).args(["system", "check"]).output().unwrap());
    assert!(out.contains("remote: 2 layers"), "{out}");
}

/// A push of the lazy image to a repository that lacks its layers asks
/// the registry to mount them from the cache's repository: no layer byte
/// comes down or goes up.
fn a_push_to_another_repository_mounts_from_the_cache(
    reg: &Registry,
    b: &Path,
    app: &str,
    layers: &[(String, u64)],
) {
    let before = reg.requests().len();
    let other = format!("{}/other/app:1", reg.host);
    ok(rbk(b).args(["push", "-q", app, &other]).output().unwrap());
    let requests = reg.requests()[before..].to_vec();
    let gets = blob_gets(reg, before);
    assert_eq!(layer_bytes(&gets, layers), 0, "{requests:?}");
    let (big, _) = layers.iter().max_by_key(|(_, n)| *n).unwrap();
    assert!(
        requests.iter().any(
            |r| r.starts_with("POST /v2/other/app/blobs/uploads/?mount=")
                && r.contains(big)
                && r.contains("from=cache")
        ),
        "{requests:?}"
    );
    let uploads: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
        .collect();
    // The base's layers were never in that registry: only they go up.
    assert!(uploads.iter().all(|u| !u.contains(big)), "{uploads:?}");
}

/// A third job's image whose registry is gone: its `save` fails naming the
/// image, the layer and where it was to come from.
fn a_gone_registry_is_named(
    reg: &Registry,
    store_a: &Path,
    jobs: &Path,
    ctx: &Path,
    cache: &str,
    app: &str,
) {
    let c = store_with_the_same_base(store_a, jobs);
    build(
        &c,
        &[
            "-t",
            app,
            &format!("--cache-from=type=registry,ref={cache}"),
        ],
        ctx,
    );
    let (cache_repo, _) = cache.rsplit_once(':').unwrap();
    // Another port on the same host: the cache as if its registry were
    // gone (the records say where each layer comes from).
    let moved = c.join("remote");
    let mut moved_any = false;
    for e in std::fs::read_dir(&moved).unwrap() {
        let path = e.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(cache_repo), "{text}");
        std::fs::write(&path, text.replace(&reg.host, "127.0.0.1:9")).unwrap();
        moved_any = true;
    }
    assert!(moved_any, "no layer is remote");
    let out = rbk(&c)
        .args(["image", "save", "-o", "/dev/null", app])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let app_name = app.rsplit_once('/').unwrap().1;
    assert!(err.contains(app_name), "no image named: {err}");
    assert!(err.contains("cannot fetch layer sha256:"), "{err}");
    assert!(err.contains("127.0.0.1:9/cache/app"), "{err}");
}

#[test]
fn only_the_layers_under_a_changed_step_are_fetched() {
    let test = "only_the_layers_under_a_changed_step_are_fetched";
    let Some(JobA {
        reg,
        a: _a,
        store_a,
        host: _host,
        ctx,
        cache,
        layers,
    }) = job_a(test)
    else {
        return;
    };
    let (copy_layer, run_layer) = (&layers[layers.len() - 2], &layers[layers.len() - 1]);

    // The last step changed: it runs on the COPY's result, whose layer
    // must come in; the old RUN's layer must not.
    let changed = ctx.join("changed");
    context(&changed, &DOCKERFILE.replace("echo ok", "echo changed"));
    let jobs = tempfile::tempdir().unwrap();
    let b = store_with_the_same_base(&store_a, jobs.path());
    let before = reg.requests().len();
    let cache_from = format!("--cache-from=type=registry,ref={cache}");
    let err = build(&b, &["-t", "app:2", &cache_from], &changed);
    assert!(err.contains("1 step run, 1 cached"), "{err}");
    let gets = blob_gets(&reg, before);
    let fetched: Vec<&String> = gets
        .iter()
        .filter(|g| layers.iter().any(|(d, _)| d == *g))
        .collect();
    assert_eq!(fetched, vec![&copy_layer.0], "{gets:?}");
    assert!(!gets.contains(&run_layer.0));
    let (out, _) = ok(rbk(&b)
        .args(["run", "--rm", "app:2", "cat", "/done"])
        .output()
        .unwrap());
    assert_eq!(out, "changed\n");
}

#[test]
fn a_local_cache_directory_serves_layers_when_read() {
    let test = "a_local_cache_directory_serves_layers_when_read";
    let Some(a) = store_with_busybox(test) else {
        return;
    };
    let store_a = a.path().join("store");
    let ctx = a.path().join("ctx");
    context(&ctx, DOCKERFILE);
    let dir = a.path().join("ci-cache");
    let cache_to = format!("--cache-to=type=local,dest={},mode=max", dir.display());
    let err = build(&store_a, &["-t", "app:1", &cache_to], &ctx);
    assert!(err.contains("2 steps run, 0 cached"), "{err}");
    let jobs = tempfile::tempdir().unwrap();
    let b = store_with_the_same_base(&store_a, jobs.path());
    let cache_from = format!("--cache-from=type=local,src={}", dir.display());
    let err = build(&b, &["-t", "app:1", &cache_from], &ctx);
    assert!(err.contains("0 steps run, 2 cached"), "{err}");
    let (out, _) = ok(rbk(&b).args(["system", "check"]).output().unwrap());
    assert!(out.contains("store is sound"), "{out}");
    let remote = format!("remote: 2 layers in {}/blobs/sha256/", dir.display());
    assert!(out.contains(&remote), "{out}");
    let (out, _) = ok(rbk(&b)
        .args(["run", "--rm", "app:1", "cat", "/done"])
        .output()
        .unwrap());
    assert_eq!(out, "ok\n");
    // What the run read is in the store now: the directory can go.
    std::fs::remove_dir_all(&dir).unwrap();
    let (out, _) = ok(rbk(&b)
        .args(["run", "--rm", "app:1", "cat", "/done"])
        .output()
        .unwrap());
    assert_eq!(out, "ok\n");
}
