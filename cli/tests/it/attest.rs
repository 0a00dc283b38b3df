//! Attestations attached by `rbk build`: provenance by default on a push,
//! naming the manifest the registry got (not the store's uncompressed
//! one), found where BuildKit puts it (an attestation manifest in the
//! image index); `mode=max` and an SBOM in an OCI archive, byte-identical
//! under `SOURCE_DATE_EPOCH`; statements validated by the in-toto
//! attestation package and the SBOM by spdx-tools.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::build::store_with_busybox;
use crate::cache::{ok, Registry};
use crate::rbk;

const VENV_PYTHON: &str = "/opt/rbk-test-venv/bin/python3";

fn context(dir: &Path, dockerfile: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("f"), "a file\n").unwrap();
    ctx
}

/// GET `path` of the registry `host` with `accept`.
fn get(host: &str, path: &str, accept: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(format!("http://{host}/v2/{path}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path} failed");
    out.stdout
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Checks a statement with the in-toto attestation package (its
/// `Statement.validate`, and the SLSA v1 predicate parsed as its protobuf
/// with each resolved dependency validated as a resource descriptor).
fn validated_by_in_toto(test: &str, statement: &[u8]) {
    if !Path::new(VENV_PYTHON).exists() {
        eprintln!(
            "SKIPPED {test}: the in-toto attestation validator (scripts/test.sh installs it)"
        );
        return;
    }
    let script = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
text = sys.stdin.read()
pb = json_format.Parse(text, statement_pb2.Statement())
Statement.copy_from_pb(pb).validate()
doc = json.loads(text)
if doc["predicateType"] == "https://slsa.dev/provenance/v1":
    p = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance(), ignore_unknown_fields=True)
    assert p.build_definition.build_type, "buildType"
    for d in p.build_definition.resolved_dependencies:
        ResourceDescriptor.copy_from_pb(d).validate()
print("valid")
"#;
    let mut child = Command::new(VENV_PYTHON)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), statement).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.starts_with(b"valid"),
        "in-toto validation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_push_carries_provenance_about_the_manifest_the_registry_got() {
    let test = "attest::a_push_carries_provenance_about_the_manifest_the_registry_got";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = context(
        dir.path(),
        "FROM localhost/busybox:latest\nARG GREETING\nRUN echo $GREETING > /g\nCOPY f /f\n",
    );
    let insecure = format!("--insecure-registry={}", reg.host);
    let name = format!("{}/att/app:1", reg.host);
    let ctx_arg = ctx.to_str().unwrap();
    ok(rbk(
        &store,
        &[
            "build",
            "--push",
            "-t",
            &name,
            "--build-arg",
            "GREETING=hi",
            &insecure,
            ctx_arg,
        ],
    ));
    let index: Value =
        serde_json::from_slice(&get(&reg.host, "att/app/manifests/1", INDEX)).unwrap();
    assert_eq!(index["mediaType"], INDEX, "{index}");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    let image = &entries[0];
    let attestation = &entries[1];
    assert_eq!(image["platform"]["os"], "linux");
    assert_eq!(attestation["platform"]["os"], "unknown");
    let ann = &attestation["annotations"];
    assert_eq!(ann["vnd.docker.reference.type"], "attestation-manifest");
    assert_eq!(ann["vnd.docker.reference.digest"], image["digest"]);
    // The image as pushed has gzip layers: it is not the store's manifest.
    let pushed: Value = serde_json::from_slice(&get(
        &reg.host,
        &format!("att/app/manifests/{}", image["digest"].as_str().unwrap()),
        MANIFEST,
    ))
    .unwrap();
    assert!(pushed["layers"][1]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("gzip"));
    let statement = statement_of(&reg.host, attestation["digest"].as_str().unwrap());
    the_provenance_names_what_was_built(&statement, image, &name);
    validated_by_in_toto(test, &serde_json::to_vec(&statement).unwrap());
    // A store that pulls it runs it; `--provenance=false` pushes the bare
    // manifest.
    let other = tempfile::tempdir().unwrap();
    ok(rbk(other.path(), &["pull", &insecure, &name]));
    let plain = format!("{}/att/plain:1", reg.host);
    ok(rbk(
        &store,
        &[
            "build",
            "--push",
            "--provenance=false",
            "-t",
            &plain,
            &insecure,
            ctx_arg,
        ],
    ));
    let m: Value = serde_json::from_slice(&get(
        &reg.host,
        "att/plain/manifests/1",
        &format!("{INDEX}, {MANIFEST}"),
    ))
    .unwrap();
    assert_eq!(m["mediaType"], MANIFEST, "{m}");
}

/// The in-toto statement (the only layer) of attestation manifest `digest`
/// in `att/app`.
fn statement_of(host: &str, digest: &str) -> Value {
    let m: Value =
        serde_json::from_slice(&get(host, &format!("att/app/manifests/{digest}"), MANIFEST))
            .unwrap();
    let layer = &m["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
    assert_eq!(
        layer["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    let blob = get(
        host,
        &format!("att/app/blobs/{}", layer["digest"].as_str().unwrap()),
        "*/*",
    );
    serde_json::from_slice(&blob).unwrap()
}

fn the_provenance_names_what_was_built(s: &Value, image: &Value, name: &str) {
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    let digest = image["digest"].as_str().unwrap();
    assert_eq!(
        s["subject"][0]["digest"]["sha256"],
        digest.strip_prefix("sha256:").unwrap()
    );
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let arch = image["platform"]["architecture"].as_str().unwrap();
    assert_eq!(
        s["subject"][0]["name"],
        format!("pkg:docker/{repo}@{tag}?platform=linux%2F{arch}")
    );
    let p = &s["predicate"];
    let request = &p["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(request["args"]["build-arg:GREETING"], "hi", "{p}");
    assert_eq!(
        p["buildDefinition"]["externalParameters"]["configSource"]["path"],
        "Dockerfile"
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let base = deps
        .iter()
        .find(|d| {
            d["uri"]
                .as_str()
                .unwrap()
                .starts_with("pkg:docker/localhost/busybox@latest?platform=linux%2F")
        })
        .unwrap_or_else(|| panic!("no base image in {deps:?}"));
    assert_eq!(base["digest"]["sha256"].as_str().unwrap().len(), 64);
    // mode=min: no steps, no Dockerfile.
    assert!(p["buildDefinition"]["internalParameters"]["buildConfig"].is_null());
}

/// The blobs of an OCI archive, unpacked into `dir`.
fn unpack(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// The statements of the only image in the OCI layout at `layout`, by
/// predicate type: (predicate type → the statement's bytes), and the
/// image manifest's digest.
fn statements(layout: &Path) -> (Vec<(String, Vec<u8>)>, String) {
    let top: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = &top["manifests"][0];
    assert_eq!(entry["mediaType"], INDEX, "{top}");
    let index: Value =
        serde_json::from_slice(&blob(layout, entry["digest"].as_str().unwrap())).unwrap();
    let image = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let att = &index["manifests"][1];
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image.as_str()
    );
    let m: Value = serde_json::from_slice(&blob(layout, att["digest"].as_str().unwrap())).unwrap();
    let found = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let t = l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
                .to_string();
            (t, blob(layout, l["digest"].as_str().unwrap()))
        })
        .collect();
    (found, image)
}

#[test]
fn max_provenance_and_an_sbom_are_reproducible_in_an_oci_archive() {
    let test = "attest::max_provenance_and_an_sbom_are_reproducible_in_an_oci_archive";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    if !Path::new(crate::sbom::STATUS).is_file() || crate::on_path("dpkg-query").is_none() {
        eprintln!("SKIPPED {test}: no dpkg database on this machine");
        return;
    }
    let store = dir.path().join("store");
    crate::sbom::import_deb_base(dir.path(), &store);
    let ctx = context(
        dir.path(),
        "FROM localhost/busybox:latest\nCOPY --from=localhost/deb:1 / /\n\
         RUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /n\nCOPY f /f\n",
    );
    let epoch = "1700000000";
    let build = |out: &Path, no_cache: bool| {
        let mut args = vec![
            "build".to_string(),
            "--provenance=mode=max".into(),
            "--sbom=true".into(),
            "--secret".into(),
            "id=tok,env=RBK_TEST_TOKEN".into(),
            "-t".into(),
            "localhost/attested:1".into(),
            "-o".into(),
            format!("type=oci,dest={}", out.display()),
        ];
        if no_cache {
            args.push("--no-cache".into());
        }
        args.push(ctx.display().to_string());
        let out = crate::build::rbk(&store)
            .args(&args)
            .env("SOURCE_DATE_EPOCH", epoch)
            .env("RBK_TEST_TOKEN", "supersecretvalue")
            .output()
            .unwrap();
        ok(out);
    };
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    build(&a, false);
    build(&b, true);
    let (la, lb) = (dir.path().join("a"), dir.path().join("b"));
    unpack(&a, &la);
    unpack(&b, &lb);
    let (sa, image_a) = statements(&la);
    let (sb, image_b) = statements(&lb);
    assert_eq!(image_a, image_b, "the same image twice");
    assert_eq!(
        sa, sb,
        "byte-identical attestations under SOURCE_DATE_EPOCH"
    );
    let kinds: BTreeSet<&str> = sa.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ])
    );
    for (kind, bytes) in &sa {
        validated_by_in_toto(test, bytes);
        let s: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(
            s["subject"][0]["digest"]["sha256"],
            image_a.strip_prefix("sha256:").unwrap()
        );
        match kind.as_str() {
            "https://spdx.dev/Document" => the_sbom_lists_dpkgs_packages(test, &s, dir.path()),
            _ => the_max_provenance_has_steps_and_no_secret(&s, bytes),
        }
    }
}

fn the_max_provenance_has_steps_and_no_secret(s: &Value, bytes: &[u8]) {
    let p = &s["predicate"];
    let config = &p["buildDefinition"]["internalParameters"]["buildConfig"];
    let steps = config["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|st| st["op"].as_str().unwrap().contains("RUN")),
        "{config}"
    );
    assert!(config["dockerfile"].as_str().unwrap().contains("COPY f /f"));
    let request = &p["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(request["secrets"][0]["id"], "tok", "{request}");
    assert!(
        !String::from_utf8_lossy(bytes).contains("supersecretvalue"),
        "a secret's value in the provenance"
    );
    assert_eq!(p["runDetails"]["metadata"]["buildkit_reproducible"], true);
    assert_eq!(
        p["runDetails"]["metadata"]["startedOn"],
        "2023-11-14T22:13:20Z"
    );
}

fn the_sbom_lists_dpkgs_packages(test: &str, s: &Value, dir: &Path) {
    let doc = &s["predicate"];
    let want = crate::sbom::dpkg_query(Path::new("/var/lib/dpkg"));
    let got: BTreeSet<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(want.len() > 50);
    assert_eq!(got, want);
    let file = dir.join("sbom-from-attestation.json");
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    crate::sbom::validated_by_spdx_tools(test, &file);
}

#[test]
fn bad_attestation_flags_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "FROM scratch\nCOPY f /f\n");
    for flag in [
        "--attest=type=slsa",
        "--provenance=mode=medium",
        "--sbom=maybe",
    ] {
        let out = rbk(dir.path(), &["build", flag, ctx.to_str().unwrap()]);
        assert!(!out.status.success(), "{flag} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let name = flag.split('=').next().unwrap();
        assert!(err.contains(name), "{flag}: {err}");
    }
}
