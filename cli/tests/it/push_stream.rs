//! `rbk push` compresses a layer while it uploads it: the registry gets
//! exactly the bytes the store keeps as the layer's gzip variant, the same
//! whatever the thread count, and a push cut off mid-upload fails naming
//! the registry, leaving a sound store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::{rbk, write};
use crate::cache::{ok, Registry};

/// A `FROM scratch` context of `layers` COPY layers, each `lines` lines
/// of compressible text (different per layer).
fn context(dir: &Path, layers: usize, lines: usize) {
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..layers {
        let text: String = (0..lines)
            .map(|n| format!("layer {i} line {n} {}\n", n * 7919 % 104_729))
            .collect();
        write(dir, &[(&format!("f{i}.txt"), &text)]);
        dockerfile.push_str(&format!("COPY f{i}.txt /f{i}.txt\n"));
    }
    write(dir, &[("Dockerfile", &dockerfile)]);
}

/// The pushed manifest of `repo:tag`, as the registry serves it.
fn remote_manifest(host: &str, repo: &str, tag: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args([
            "-fsS",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl: {}", crate::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The layer digests a manifest lists.
fn layer_digests(m: &serde_json::Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The blob digests of every gzip variant the store recorded.
fn variant_digests(store: &Path) -> Vec<String> {
    let dir = store.join("variants/gzip");
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            rec["digest"].as_str().unwrap().to_string()
        })
        .collect();
    out.sort();
    out
}

fn blob_path(store: &Path, digest: &str) -> PathBuf {
    store
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn curl_missing(test: &str) -> bool {
    if crate::on_path("curl").is_none() {
        crate::skip(test, "curl is not installed");
        return true;
    }
    false
}

#[test]
fn streamed_push_sends_the_stored_variant_byte_for_byte() {
    let test = "streamed_push_sends_the_stored_variant_byte_for_byte";
    let Some(reg) = Registry::start_logged(test) else {
        return;
    };
    if curl_missing(test) {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    // Three layers of several 1 MiB chunks each.
    context(ctx.path(), 3, 150_000);
    ok(rbk(store.path())
        .args(["build", "-q", "-t", "app"])
        .arg(ctx.path())
        .output()
        .unwrap());
    let dest = format!("{}/s/app:1", reg.host);
    ok(rbk(store.path())
        .args(["push", "app", &dest])
        .output()
        .unwrap());

    // The registry has exactly the three layers, and they are the
    // variants the store kept.
    let pushed = layer_digests(&remote_manifest(&reg.host, "s/app", "1"));
    assert_eq!(pushed.len(), 3, "{pushed:?}");
    let mut sorted = pushed.clone();
    sorted.sort();
    assert_eq!(sorted, variant_digests(store.path()));
    for d in &pushed {
        let local = std::fs::read(blob_path(store.path(), d)).unwrap();
        let out = Command::new("curl")
            .arg("-fsS")
            .arg(format!("http://{}/v2/s/app/blobs/{d}", reg.host))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET blob {d}");
        assert!(
            out.stdout == local,
            "the registry's {d} differs from the store's"
        );
    }
    // They went as streamed uploads: a PATCH and a closing PUT each, and
    // no layer was sent twice.
    let requests = reg.requests();
    let patches = requests.iter().filter(|r| r.starts_with("PATCH ")).count();
    assert_eq!(patches, 3, "{requests:#?}");
    let puts = requests
        .iter()
        .filter(|r| r.starts_with("PUT /v2/s/app/blobs/uploads/"))
        .count();
    assert_eq!(puts, 4, "three layers and the config: {requests:#?}");

    // A second push reuses the variants: nothing is compressed again.
    let before = variant_digests(store.path());
    let again = format!("{}/other/app:1", reg.host);
    ok(rbk(store.path())
        .args(["push", "app", &again])
        .output()
        .unwrap());
    assert_eq!(variant_digests(store.path()), before);
    assert_eq!(
        layer_digests(&remote_manifest(&reg.host, "other/app", "1")),
        pushed
    );
}

#[test]
fn streamed_push_is_the_same_on_one_thread_and_on_two() {
    let test = "streamed_push_is_the_same_on_one_thread_and_on_two";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    if curl_missing(test) {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    context(ctx.path(), 2, 200_000);
    let mut seen = Vec::new();
    for threads in ["1", "2"] {
        let store = tempfile::tempdir().unwrap();
        ok(rbk(store.path())
            .args(["build", "-q", "-t", "app"])
            .arg(ctx.path())
            .output()
            .unwrap());
        let dest = format!("{}/t{threads}/app:1", reg.host);
        ok(rbk(store.path())
            .env("RAYON_NUM_THREADS", threads)
            .args(["push", "app", &dest])
            .output()
            .unwrap());
        let repo = format!("t{threads}/app");
        seen.push(layer_digests(&remote_manifest(&reg.host, &repo, "1")));
    }
    assert_eq!(seen[0].len(), 2);
    assert_eq!(seen[0], seen[1], "gzip output depends on the thread count");
}

#[test]
fn push_cut_off_mid_upload_fails_naming_the_registry_and_keeps_the_store_sound() {
    let test = "push_cut_off_mid_upload_fails_naming_the_registry_and_keeps_the_store_sound";
    let Some(mut reg) = Registry::start(test) else {
        return;
    };
    if curl_missing(test) {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    // One big layer (~110 MB of text), so the upload is still going when
    // the registry is killed.
    context(ctx.path(), 1, 3_000_000);
    ok(rbk(store.path())
        .args(["build", "-q", "-t", "big"])
        .arg(ctx.path())
        .output()
        .unwrap());
    let dest = format!("{}/cut/big:1", reg.host);
    let push = rbk(store.path())
        .args(["push", "big", &dest])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the registry once some of the layer has reached it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while reg.upload_bytes() == 0 {
        assert!(Instant::now() < deadline, "no upload reached the registry");
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill();
    let out = push.wait_with_output().unwrap();
    let err = crate::stderr(&out);
    assert!(
        !out.status.success(),
        "the push succeeded without a registry"
    );
    assert!(
        err.contains(&reg.host),
        "the error names the registry: {err}"
    );
    // The layer's variant was finished into the store and is what the
    // failed upload named.
    let variants = variant_digests(store.path());
    assert_eq!(variants.len(), 1);
    assert!(
        err.contains(&variants[0]),
        "the error names the layer: {err}"
    );
    ok(rbk(store.path())
        .args(["system", "check"])
        .output()
        .unwrap());

    // A new registry gets the whole image, from the kept variant.
    let Some(again) = Registry::start(test) else {
        return;
    };
    let dest = format!("{}/cut/big:1", again.host);
    ok(rbk(store.path())
        .args(["push", "big", &dest])
        .output()
        .unwrap());
    assert_eq!(
        layer_digests(&remote_manifest(&again.host, "cut/big", "1")),
        variants
    );
}
