//! A build cache shared by two stores through a real registry (Debian's
//! `docker-registry`), and `FROM` pulling the base image it lacks.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::build::{rbk, store_with_busybox, write};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A plain `docker-registry` on 127.0.0.1 with its storage in a temporary
/// folder, killed on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) host: String,
    /// Where it logs each request (`start_logged`).
    log: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub(crate) fn start(test: &str) -> Option<Registry> {
        Registry::start_with(test, false)
    }

    /// A registry that logs every request it answers (see `log`).
    pub(crate) fn start_logged(test: &str) -> Option<Registry> {
        Registry::start_full(test, false, true)
    }

    /// A registry that allows deleting manifests when `delete` is set.
    pub(crate) fn start_with(test: &str, delete: bool) -> Option<Registry> {
        Registry::start_full(test, delete, false)
    }

    /// Stops the registry (as a crash would: SIGKILL).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Bytes the registry holds in unfinished uploads.
    pub(crate) fn upload_bytes(&self) -> u64 {
        fn walk(dir: &Path, in_uploads: bool) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            let mut n = 0;
            for e in entries.flatten() {
                let path = e.path();
                let uploads = in_uploads || e.file_name() == "_uploads";
                match e.file_type() {
                    Ok(t) if t.is_dir() => n += walk(&path, uploads),
                    Ok(_) if uploads && e.file_name() == "data" => {
                        n += e.metadata().map_or(0, |m| m.len());
                    }
                    _ => {}
                }
            }
            n
        }
        walk(&self._dir.path().join("data"), false)
    }

    /// The requests answered so far, one `METHOD URI` a line (only for a
    /// registry made by `start_logged`).
    pub(crate) fn requests(&self) -> Vec<String> {
        let Some(log) = &self.log else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
        let field = |line: &str, key: &str| -> Option<String> {
            let rest = line.split_once(key)?.1;
            let rest = rest.trim_start_matches('"');
            Some(rest.split([' ', '"']).next()?.to_string())
        };
        text.lines()
            .filter_map(|l| {
                let method = field(l, "http.request.method=")?;
                let uri = field(l, "http.request.uri=")?;
                Some(format!("{method} {uri}"))
            })
            .collect()
    }

    fn start_full(test: &str, delete: bool, logged: bool) -> Option<Registry> {
        if !Path::new(REGISTRY).exists() {
            eprintln!("SKIPPED {test}: {REGISTRY} is missing (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {delete}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                if logged { "info" } else { "error" },
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = logged.then(|| dir.path().join("requests.log"));
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let reg = Registry {
            child,
            host: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&reg.host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(reg)
    }
}

pub(crate) fn ok(out: Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}\n{stdout}");
    (stdout, stderr)
}

/// `rbk inspect NAME`: (image id, manifest digest).
fn ids(store: &Path, name: &str) -> (String, String) {
    let (out, _) = ok(rbk(store).args(["inspect", name]).output().unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v[0]["Id"].as_str().unwrap().to_string();
    let digest = v[0]["RepoDigests"][0]
        .as_str()
        .unwrap()
        .rsplit_once('@')
        .unwrap()
        .1
        .to_string();
    (id, digest)
}

fn blob(store: &Path, digest: &str) -> PathBuf {
    store
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The layer digest of the cache record whose step text contains `step`.
fn record_layer(store: &Path, step: &str) -> String {
    for e in std::fs::read_dir(store.join("cache/records")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
        if rec["inputs"]["step"].as_str().unwrap_or("").contains(step) {
            return rec["layer"]["digest"].as_str().unwrap().to_string();
        }
    }
    panic!("no cache record for {step:?} in {}", store.display());
}

#[test]
fn two_stores_share_the_cache_through_a_registry() {
    let test = "two_stores_share_the_cache_through_a_registry";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let Some(a) = store_with_busybox(test) else {
        return;
    };
    let Some(b) = store_with_busybox(test) else {
        return;
    };
    let store_a = a.path().join("store");
    let store_b = b.path().join("store");
    let host = &reg.host;
    let base = format!("{host}/base/busybox:1");
    ok(rbk(&store_a)
        .args(["push", "-q", "localhost/busybox:latest", &base])
        .output()
        .unwrap());

    // A build stage whose layer no final image holds, a COPY from it, a
    // context file and a RUN over both.
    let ctx = a.path().join("ctx");
    let dockerfile = format!(
        "FROM {base} AS build\n\
         RUN echo built > /artifact && echo scratch-only > /stage-only\n\
         FROM {base}\n\
         COPY --from=build /artifact /artifact\n\
         COPY f /f\n\
         RUN cat /artifact /f > /both\n"
    );
    write(&ctx, &[("Dockerfile", &dockerfile), ("f", "data\n")]);
    let cache = format!("{host}/cache/app:buildcache");
    let min_cache = format!("{host}/cache/app:min");

    store_a_pulls_the_base_builds_and_exports_every_step(&store_a, &ctx, &base, &cache, &min_cache);
    let (id_a, digest_a) = ids(&store_a, "app:1");
    the_cache_ref_is_an_index_of_record_artifacts(host);

    store_b_takes_every_step_from_the_registry(b.path(), &ctx, &cache);
    let (id_b, digest_b) = ids(&store_b, "app:1");
    assert_eq!(id_a, id_b, "the same image id");
    assert_eq!(digest_a, digest_b, "the same manifest digest");
    // Served, not downloaded: the final layer stays in the registry
    // until something reads it.
    let final_layer = record_layer(&store_a, "cat /artifact");
    assert!(!blob(&store_b, &final_layer).exists());

    // And the image works (its run fetches the layers).
    let (out, _) = ok(rbk(&store_b)
        .args(["run", "--rm", "app:1", "cat", "/both"])
        .output()
        .unwrap());
    assert_eq!(out, "built\ndata\n");
    only_the_final_images_layers_came_over(&store_a, b.path());

    // A second build in B needs no registry cache any more.
    let (_, err) = ok(rbk(&store_b)
        .args([
            "build",
            "--progress",
            "plain",
            "--pull=never",
            "-t",
            "app:1",
        ])
        .arg(&ctx)
        .output()
        .unwrap());
    assert!(err.contains("0 steps run, 4 cached"), "{err}");

    // A third store with only the min cache: the final steps are served,
    // so the build stage, which that cache lacks, is not run at all.
    let Some(c) = store_with_busybox(test) else {
        return;
    };
    let store_c = c.path().join("store");
    let (_, err) = ok(rbk(&store_c)
        .args(["build", "--progress", "plain", "-t", "app:1"])
        .arg(format!("--cache-from=type=registry,ref={min_cache}"))
        .arg(&ctx)
        .output()
        .unwrap());
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    assert!(
        !err.contains("echo built"),
        "the build stage was run: {err}"
    );
    assert_eq!(ids(&store_c, "app:1"), (id_a, digest_a));
}

/// Store A pulls the base (FROM), builds `ctx` as app:1, and exports
/// every step to `cache` (mode=max) and the final stage's to `min_cache`.
fn store_a_pulls_the_base_builds_and_exports_every_step(
    store_a: &Path,
    ctx: &Path,
    base: &str,
    cache: &str,
    min_cache: &str,
) {
    let (_, err) = ok(rbk(store_a)
        .args(["build", "--progress", "plain", "-t", "app:1"])
        .arg(format!("--cache-to=type=registry,ref={cache},mode=max"))
        .arg(format!("--cache-to=type=registry,ref={min_cache}"))
        .arg(ctx)
        .output()
        .unwrap());
    assert!(err.contains(&format!("pulling {base}")), "{err}");
    assert!(err.contains("4 steps run, 0 cached"), "{err}");
    // Two records a step: its first-pass key and its result key (early
    // cutoff on another machine).
    assert!(
        err.contains(&format!("exported cache to {cache}: 8 records")),
        "{err}"
    );
    // mode=min (the default) leaves out the build stage.
    assert!(
        err.contains(&format!("exported cache to {min_cache}: 6 records")),
        "{err}"
    );
}

/// The cache ref names an index of this export's records; each record
/// is its own artifact tagged next to it: the record as config, its
/// layer gzip-compressed (the store keeps it uncompressed).
fn the_cache_ref_is_an_index_of_record_artifacts(host: &str) {
    let get_manifest = |tag: &str| {
        let out = Command::new("curl")
            .args([
                "-fsS",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!("http://{host}/v2/cache/app/manifests/{tag}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl failed");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let index = get_manifest("buildcache");
    assert_eq!(index["artifactType"], "application/vnd.rbk.buildcache.v1");
    assert_eq!(
        index["config"]["mediaType"],
        "application/vnd.rbk.buildcache.index.v2+json"
    );
    let tags = Command::new("curl")
        .arg("-fsS")
        .arg(format!("http://{host}/v2/cache/app/tags/list"))
        .output()
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let records: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with("buildcache-"))
        .collect();
    // Two records a step: its first-pass key and its result key.
    assert_eq!(records.len(), 8, "{tags}");
    for tag in records {
        let m = get_manifest(tag);
        assert_eq!(
            m["artifactType"],
            "application/vnd.rbk.buildcache.record.v1"
        );
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.rbk.buildcache.record.v1+json"
        );
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(
            layers[0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

/// Store B (under `b`) has never seen the base or the build: it pulls the
/// base and takes every step from the registry's `cache`, through an
/// rbk.toml this time.
fn store_b_takes_every_step_from_the_registry(b: &Path, ctx: &Path, cache: &str) {
    let proj = b.join("proj");
    write(
        &proj,
        &[(
            "rbk.toml",
            &format!(
                "[target.app]\ncontext = {:?}\ntags = [\"app:1\"]\ncache-from = [\"type=registry,ref={cache}\"]\n",
                ctx.display().to_string()
            ),
        )],
    );
    let (_, err) = ok(rbk(&b.join("store"))
        .args(["build", "--progress", "plain"])
        .arg(proj.join("rbk.toml"))
        .output()
        .unwrap());
    assert!(
        err.contains(&format!("importing cache from {cache}: 8 records")),
        "{err}"
    );
    assert!(err.contains("0 steps run, 4 cached"), "{err}");
}

/// Only the final image's layers came over to the store under `b` (once
/// its run read them): not the build stage's; and the gzip blob each came
/// as is kept as its gzip copy.
fn only_the_final_images_layers_came_over(store_a: &Path, b: &Path) {
    let store_b = b.join("store");
    let stage_layer = record_layer(store_a, "echo built");
    assert!(blob(store_a, &stage_layer).exists());
    assert!(
        !blob(&store_b, &stage_layer).exists(),
        "the build stage's layer was fetched"
    );
    let final_layer = record_layer(store_a, "cat /artifact");
    assert!(blob(&store_b, &final_layer).exists());
    // The gzip blob it came as is kept as that layer's gzip copy, so a
    // push or export from B does not compress it again.
    let variant = b
        .join("store/variants/gzip")
        .join(final_layer.trim_start_matches("sha256:"));
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&variant).unwrap()).unwrap();
    assert!(blob(&store_b, rec["digest"].as_str().unwrap()).exists());
}

#[test]
fn pull_policy_and_unreachable_caches() {
    let test = "pull_policy_and_unreachable_caches";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let Some(a) = store_with_busybox(test) else {
        return;
    };
    let store = a.path().join("store");
    let base = format!("{}/base/busybox:1", reg.host);
    let ctx = a.path().join("ctx");
    write(
        &ctx,
        &[("Dockerfile", &format!("FROM {base}\nRUN echo hi > /hi\n"))],
    );
    a_base_not_in_the_store_nor_the_registry_fails_by_name(&store, &ctx, &base);

    // Pushed: the default (missing) pulls it once, then uses the store.
    ok(rbk(&store)
        .args(["push", "-q", "localhost/busybox:latest", &base])
        .output()
        .unwrap());
    let (_, err) = ok(rbk(&store)
        .args(["build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap());
    assert!(err.contains(&format!("pulling {base}")), "{err}");
    // A cache that does not exist yet is empty, not an error; a registry
    // that cannot be reached is a warning.
    let (_, err) = ok(rbk(&store)
        .args(["build", "--progress", "plain"])
        .arg(format!("--cache-from={}/cache/none:1", reg.host))
        .arg("--cache-from=type=registry,ref=127.0.0.1:9/cache/x:1")
        .arg(&ctx)
        .output()
        .unwrap());
    assert!(!err.contains("pulling"), "{err}");
    assert!(err.contains("0 records"), "{err}");
    assert!(
        err.contains("warning: cannot import cache from 127.0.0.1:9/cache/x:1"),
        "{err}"
    );
    assert!(err.contains("0 steps run, 1 cached"), "{err}");
    // --pull (always) fetches the manifest again even though the store has it.
    let (_, err) = ok(rbk(&store)
        .args(["build", "--progress", "plain", "--pull"])
        .arg(&ctx)
        .output()
        .unwrap());
    assert!(err.contains(&format!("pulling {base}")), "{err}");
    assert!(err.contains("0 steps run, 1 cached"), "{err}");
    registry_settings_are_read_only_when_a_registry_is_used(&store, &ctx, &base);
    // A bad --cache-to is refused before anything runs.
    let out = rbk(&store)
        .args(["build", "--cache-to=type=gha"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache type \"gha\" is not supported"), "{err}");
    assert!(!err.contains("#1 "), "a step ran: {err}");
}

/// With `base` in neither `store` nor its registry, a build of `ctx`
/// fails naming it: --pull=never fetches nothing, and the default names
/// the failed pull.
fn a_base_not_in_the_store_nor_the_registry_fails_by_name(store: &Path, ctx: &Path, base: &str) {
    // --pull=never: the store lacks the base, and nothing is fetched.
    let out = rbk(store)
        .args(["build", "--progress", "plain", "--pull=never"])
        .arg(ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(base), "{err}");

    // Missing from the registry too: the pull failure is named.
    let out = rbk(store)
        .args(["build", "--progress", "plain"])
        .arg(ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "base image {base} is not in the store and cannot be pulled"
        )),
        "{err}"
    );
}

/// Registry settings are read only when a registry is used: a bad CA
/// file fails a build that pulls, not one that needs no registry.
fn registry_settings_are_read_only_when_a_registry_is_used(store: &Path, ctx: &Path, base: &str) {
    ok(rbk(store)
        .args(["build", "--progress", "plain"])
        .env("RBK_REGISTRY_CA", "/nonexistent/ca.pem")
        .arg(ctx)
        .output()
        .unwrap());
    let out = rbk(store)
        .args(["build", "--progress", "plain", "--pull"])
        .env("RBK_REGISTRY_CA", "/nonexistent/ca.pem")
        .arg(ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot pull base image {base} (--pull=always)")),
        "{err}"
    );
    assert!(
        err.contains("/nonexistent/ca.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
