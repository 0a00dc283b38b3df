//! A multi-platform image assembled across machines: each store builds one
//! platform and pushes it by digest (`push-by-digest=true`), and
//! `rbk manifest merge` joins their metadata files into one index from a
//! third store, reading only manifests.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use crate::build::{rbk, succeed, write};
use crate::cache::Registry;

/// Whether this machine can build (root, namespaces); says so loudly if not.
fn can_build(test: &str) -> bool {
    match crate::cannot_run_containers() {
        Some(why) => {
            crate::skip(test, &why);
            false
        }
        None => true,
    }
}

/// A registry from `start` where this machine can build; None (loudly)
/// where it cannot, or has no registry to run.
fn ready(test: &str, start: fn(&str) -> Option<Registry>) -> Option<Registry> {
    if !can_build(test) {
        return None;
    }
    start(test)
}

/// Builds `FROM scratch` + a file saying `content` for `platform` in
/// `store`, with the `extra` flags, writing its metadata to `dir/<meta>`.
fn build(
    dir: &Path,
    store: &str,
    platform: &str,
    content: &str,
    extra: &[&str],
    meta: &str,
) -> PathBuf {
    let ctx = dir.join(format!("ctx-{store}-{content}"));
    write(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY hello /hello\n"),
            ("hello", content),
        ],
    );
    let meta = dir.join(meta);
    let mut cmd = rbk(&dir.join(store));
    cmd.args(["build", "--platform", platform, "--metadata-file"])
        .arg(&meta);
    succeed(cmd.args(extra).arg(&ctx));
    meta
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `rbk manifest merge ARGS` from `store`: its output.
fn merge(store: &Path, args: &[&str], files: &[&Path]) -> std::process::Output {
    rbk(store)
        .args(["manifest", "merge"])
        .args(args)
        .args(files)
        .output()
        .unwrap()
}

/// The digest `rbk manifest merge` printed for `name`.
fn merged_digest(out: &std::process::Output, name: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no digest for {name} in {text:?}"))
        .to_string()
}

/// The (architecture, digest) of each entry of the index `name` in its
/// registry, checking it is an OCI index.
fn remote_index(store: &Path, name: &str) -> Vec<(String, String)> {
    let out = succeed(rbk(store).args(["manifest", "inspect", "--remote", name]));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    // Each image's provenance, listed after the images.
    let images: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|m| m["platform"]["os"] != "unknown")
        .collect();
    let attestations: Vec<&serde_json::Value> = entries[images.len()..].iter().collect();
    assert_eq!(attestations.len(), images.len(), "{index}");
    for (a, i) in attestations.iter().zip(&images) {
        assert_eq!(a["annotations"]["vnd.docker.reference.digest"], i["digest"]);
    }
    images
        .into_iter()
        .map(|m| {
            let arch = m["platform"]["architecture"].as_str().unwrap();
            (arch.to_string(), m["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The metadata of a one-platform image pushed by digest as `name`.
fn check_metadata(meta: &Path, name: &str, repository: &str, arch: &str) -> (String, String) {
    let m = json(meta);
    assert_eq!(m["rbk.push-by-digest"], true);
    assert_eq!(m["image.name"], repository);
    assert_eq!(m["rbk.tags"], serde_json::json!([name]));
    // Pushed with its provenance (on by default for a push, as buildx):
    // the digest is the index's, which lists the platform's image.
    let top = &m["containerimage.descriptor"];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(m["containerimage.digest"], top["digest"]);
    let desc = &m["containerimage.descriptors"][0];
    assert_eq!(desc["platform"]["architecture"], arch);
    let digest = desc["digest"].as_str().unwrap();
    (arch.to_string(), digest.to_string())
}

#[test]
fn merge_joins_platforms_pushed_by_digest_without_pulling_a_layer() {
    let test = "merge_joins_platforms_pushed_by_digest_without_pulling_a_layer";
    let Some(reg) = ready(test, Registry::start_logged) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (repo, name) = (format!("{}/app", reg.host), format!("{}/app:1", reg.host));
    let out = [
        "-o",
        &format!("type=registry,name={name},push-by-digest=true"),
    ];
    let a = build(dir.path(), "a", "linux/arm64", "arm", &out, "a.json");
    let b = build(dir.path(), "b", "linux/amd64", "amd", &out, "b.json");
    let arm = check_metadata(&a, &name, &repo, "arm64");
    let amd = check_metadata(&b, &name, &repo, "amd64");
    // By digest only: the tag is not there yet.
    let c = dir.path().join("c");
    let tagged = rbk(&c)
        .args(["manifest", "inspect", "--remote", &name])
        .output();
    assert!(
        !tagged.unwrap().status.success(),
        "a by-digest push set the tag"
    );

    let before = reg.requests().len();
    let merged = merge(&c, &["--push"], &[&a, &b]);
    let err = String::from_utf8_lossy(&merged.stderr);
    assert!(merged.status.success(), "{err}");
    let digest = merged_digest(&merged, &name);
    let during = reg.requests()[before..].to_vec();
    let put = during
        .iter()
        .any(|r| r.starts_with("PUT /v2/app/manifests/1"));
    assert!(put, "{during:?}");
    let blobs = during.iter().any(|r| r.contains("/blobs/"));
    assert!(!blobs, "merge touched blobs: {during:?}");
    assert_eq!(remote_index(&c, &name), [amd, arm]);

    // Idempotent, in any order of the files; a dry run says the same.
    let again = merge(&c, &["--push"], &[&b, &a]);
    assert_eq!(merged_digest(&again, &name), digest);
    let dry = merge(&c, &["--push", "--dry-run"], &[&a, &b]);
    assert_eq!(merged_digest(&dry, &name), digest);
}

#[test]
fn merge_refuses_a_missing_digest_and_a_platform_given_twice() {
    let test = "merge_refuses_a_missing_digest_and_a_platform_given_twice";
    let Some(reg) = ready(test, Registry::start) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/app:2", reg.host);
    let out = format!("type=image,name={name},push=true,push-by-digest=true");
    let a = build(
        dir.path(),
        "a",
        "linux/arm64",
        "one",
        &["-o", &out],
        "a.json",
    );
    let b = build(
        dir.path(),
        "b",
        "linux/arm64",
        "two",
        &["-o", &out],
        "b.json",
    );
    let c = dir.path().join("c");

    let twice = merge(&c, &["--push"], &[&a, &b]);
    let err = String::from_utf8_lossy(&twice.stderr);
    assert!(!twice.status.success());
    for want in ["linux/arm64", "a.json", "b.json"] {
        assert!(err.contains(want), "{err}");
    }

    // A digest the registry lacks is named, with the file naming it.
    let absent = format!("sha256:{}", "0".repeat(64));
    let mut doc = json(&a);
    doc["containerimage.descriptor"]["digest"] = absent.clone().into();
    let lost = dir.path().join("lost.json");
    std::fs::write(&lost, serde_json::to_vec(&doc).unwrap()).unwrap();
    let missing = merge(&c, &["--push"], &[&lost]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(err.contains(&absent) && err.contains("lost.json"), "{err}");
}

#[test]
fn merge_without_push_makes_the_index_in_the_store() {
    let test = "merge_without_push_makes_the_index_in_the_store";
    if !can_build(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = build(
        dir.path(),
        "s",
        "linux/arm64",
        "arm",
        &["-t", "localhost/app:3"],
        "a.json",
    );
    let b = build(
        dir.path(),
        "s",
        "linux/amd64",
        "amd",
        &["-t", "localhost/app:3"],
        "b.json",
    );
    let store = dir.path().join("s");
    let merged = merge(&store, &[], &[&a, &b]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let digest = merged_digest(&merged, "localhost/app:3");
    let index: serde_json::Value = serde_json::from_slice(
        &succeed(rbk(&store).args(["manifest", "inspect", "localhost/app:3"])).stdout,
    )
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let again = merge(&store, &[], &[&b, &a]);
    assert_eq!(merged_digest(&again, "localhost/app:3"), digest);
}

#[test]
fn merge_takes_a_shard_that_built_two_platforms_of_the_target() {
    let test = "merge_takes_a_shard_that_built_two_platforms_of_the_target";
    let Some(reg) = ready(test, Registry::start) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/app:4", reg.host);
    let out = [
        "-o",
        &format!("type=registry,name={name},push-by-digest=true"),
    ];
    let two = "linux/amd64,linux/arm64";
    let a = build(dir.path(), "a", two, "two", &out, "a.json");
    let b = build(dir.path(), "b", "linux/riscv64", "three", &out, "b.json");
    // One entry: the pushed index, and each platform's manifest.
    let m = json(&a);
    let index = &m["containerimage.descriptor"];
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(index.get("platform").is_none(), "{m}");
    let each: Vec<&str> = m["containerimage.descriptors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(each, ["amd64", "arm64"]);

    let c = dir.path().join("c");
    let merged = merge(&c, &["--push"], &[&a, &b]);
    let err = String::from_utf8_lossy(&merged.stderr);
    assert!(merged.status.success(), "{err}");
    let archs: Vec<String> = remote_index(&c, &name).into_iter().map(|e| e.0).collect();
    assert_eq!(archs, ["amd64", "arm64", "riscv64"]);
}

#[test]
fn merge_reads_an_image_once_for_two_tags_in_its_repository() {
    let test = "merge_reads_an_image_once_for_two_tags_in_its_repository";
    let Some(reg) = ready(test, Registry::start_logged) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/app:5", reg.host);
    let out = [
        "-o",
        &format!("type=registry,name={name},push-by-digest=true"),
    ];
    let a = build(dir.path(), "a", "linux/arm64", "five", &out, "a.json");
    let latest = format!("{}/app:latest", reg.host);
    let mut doc = json(&a);
    doc["rbk.tags"] = serde_json::json!([name, latest]);
    std::fs::write(&a, serde_json::to_vec(&doc).unwrap()).unwrap();

    let c = dir.path().join("c");
    let before = reg.requests().len();
    let merged = merge(&c, &["--push"], &[&a]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let during = reg.requests()[before..].to_vec();
    let reads = during
        .iter()
        .filter(|r| r.contains("/manifests/sha256:"))
        .count();
    assert_eq!(reads, 1, "{during:?}");
    assert_eq!(
        merged_digest(&merged, &name),
        merged_digest(&merged, &latest)
    );
}
