//! Multi-platform images: a store holding several platforms under one name
//! (an OCI index), two-platform builds sharing what does not depend on the
//! platform, and the index carried whole by push, pull, save and load.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use crate::build::{arm64_busybox, rbk, store_with_busybox, succeed, write, Unregister};
use crate::cache::Registry;
use crate::fails_with;

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cat FILES` in a container of `image` for `platform`.
fn cat(store: &Path, platform: &str, image: &str, files: &[&str]) -> String {
    let out = succeed(
        rbk(store)
            .args(["run", "--rm", "--platform", platform, image, "cat"])
            .args(files),
    );
    text(&out)
}

/// The platforms (`os/arch`) of the index `skopeo inspect --raw` shows.
fn skopeo_platforms(args: &[&str]) -> Vec<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{doc}"
    );
    let mut platforms: Vec<String> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    platforms
}

/// A store whose localhost/busybox:latest holds linux/amd64 and
/// linux/arm64 (None, loudly, where arm64 cannot be emulated).
fn two_platform_busybox(test: &str) -> Option<(tempfile::TempDir, Unregister)> {
    let dir = store_with_busybox(test)?;
    let tarball = arm64_busybox(test, dir.path())?;
    let guard = Unregister::qemu_aarch64();
    let out = succeed(
        rbk(&dir.path().join("store"))
            .args(["import", "--platform", "linux/arm64"])
            .arg(&tarball)
            .arg("localhost/busybox:latest"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("platforms linux/amd64, linux/arm64"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((dir, guard))
}

const DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM localhost/busybox:latest AS tools
RUN echo tools-ran-on-$(busybox uname -m) > /tool
FROM localhost/busybox:latest
ARG TARGETARCH
ARG TARGETPLATFORM
COPY --from=tools /tool /tool
RUN busybox uname -m > /m && echo $TARGETARCH >> /m && echo $TARGETPLATFORM >> /m
";

#[test]
fn a_two_platform_build_is_one_index_and_travels_whole() {
    let test = "a_two_platform_build_is_one_index_and_travels_whole";
    let Some((dir, _guard)) = two_platform_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(&ctx, &[("Dockerfile", DOCKERFILE)]);
    let out = succeed(
        rbk(&store)
            .args(["build", "--platform", "linux/amd64,linux/arm64"])
            .args(["-t", "localhost/app:1"])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // The BUILDPLATFORM stage's RUN once, COPY and RUN per platform.
    assert!(err.contains("5 steps run"), "{err}");
    // Labels name the platform, then the stage, BuildKit's way.
    assert!(err.contains("[linux/arm64 stage-1 4/4] RUN"), "{err}");
    assert!(
        err.contains("[linux/amd64,linux/arm64 tools 2/2] RUN"),
        "{err}"
    );
    each_platform_has_its_image_under_the_one_name(&store);
    // A rebuild is all cache hits and names the same index.
    let before = manifest_index(&store);
    let out = succeed(
        rbk(&store)
            .args(["build", "--platform", "linux/amd64,linux/arm64"])
            .args(["-t", "localhost/app:1"])
            .arg(&ctx),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 steps run"));
    assert_eq!(manifest_index(&store), before);

    // save: one archive with the index; skopeo reads both platforms, and a
    // fresh store loads both.
    let archive = dir.path().join("app.tar");
    succeed(
        rbk(&store)
            .args(["save", "-o"])
            .arg(&archive)
            .arg("localhost/app:1"),
    );
    let oci = format!("oci-archive:{}:1", archive.display());
    assert_eq!(skopeo_platforms(&[&oci]), ["linux/amd64", "linux/arm64"]);
    let loaded = dir.path().join("loaded");
    succeed(rbk(&loaded).args(["load", "-i"]).arg(&archive));
    assert_eq!(manifest_index(&loaded), before);
    assert_eq!(
        cat(&loaded, "linux/arm64", "localhost/app:1", &["/m"]),
        "aarch64\narm64\nlinux/arm64\n"
    );

    // push: the index and both images; a fresh store pulls one platform,
    // then the other, under the one tag.
    let Some(reg) = Registry::start(test) else {
        return;
    };
    the_pushed_index_is_pulled_one_platform_then_all(&store, &dir.path().join("fresh"), &reg);
}

/// `rbk manifest inspect localhost/app:1` in `store`.
fn manifest_index(store: &Path) -> serde_json::Value {
    let out = succeed(rbk(store).args(["manifest", "inspect", "localhost/app:1"]));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
}

/// localhost/app:1 in `store` runs as each platform's own image (its
/// tools stage ran once, on the build machine), shows as one row with
/// both platforms, and inspects per platform.
fn each_platform_has_its_image_under_the_one_name(store: &Path) {
    for (platform, want) in [
        (
            "linux/amd64",
            "x86_64\namd64\nlinux/amd64\ntools-ran-on-x86_64\n",
        ),
        (
            "linux/arm64",
            "aarch64\narm64\nlinux/arm64\ntools-ran-on-x86_64\n",
        ),
    ] {
        assert_eq!(
            cat(store, platform, "localhost/app:1", &["/m", "/tool"]),
            want
        );
    }
    // One name, one row, both platforms; no nameless per-platform rows.
    let images = text(&succeed(rbk(store).args([
        "images",
        "--format",
        "{{.Repository}} {{.Platform}}",
    ])));
    assert_eq!(
        images
            .lines()
            .filter(|l| l.starts_with("localhost/app "))
            .collect::<Vec<_>>(),
        ["localhost/app linux/amd64,linux/arm64"],
        "{images}"
    );
    assert!(!images.contains("<none>"), "{images}");
    let inspect = |p: &str| -> serde_json::Value {
        let out = succeed(rbk(store).args(["inspect", "--platform", p, "localhost/app:1"]));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
    };
    assert_eq!(inspect("linux/arm64")["Architecture"], "arm64");
    assert_eq!(inspect("linux/amd64")["Architecture"], "amd64");
}

/// push: the index and both images reach `reg`; the `fresh` store pulls
/// one platform, then the other, under the one tag, and is sound.
fn the_pushed_index_is_pulled_one_platform_then_all(store: &Path, fresh: &Path, reg: &Registry) {
    let remote = format!("{}/app:1", reg.host);
    let insecure = ["--insecure-registry", reg.host.as_str()];
    succeed(
        rbk(store)
            .arg("push")
            .args(insecure)
            .args(["localhost/app:1", &remote]),
    );
    let docker = format!("docker://{remote}");
    assert_eq!(
        skopeo_platforms(&["--tls-verify=false", &docker]),
        ["linux/amd64", "linux/arm64"]
    );
    succeed(
        rbk(fresh)
            .arg("pull")
            .args(insecure)
            .args(["--platform", "linux/arm64", &remote]),
    );
    let out = rbk(fresh)
        .args(["run", "--rm", "--platform", "linux/amd64", &remote, "true"])
        .output()
        .unwrap();
    crate::run_fails_with(&out, "has no linux/amd64 variant (it has linux/arm64)");
    succeed(
        rbk(fresh)
            .arg("pull")
            .args(insecure)
            .args(["--all-platforms", &remote]),
    );
    assert_eq!(
        cat(fresh, "linux/amd64", &remote, &["/m"]),
        "x86_64\namd64\nlinux/amd64\n"
    );
    assert_eq!(
        cat(fresh, "linux/arm64", &remote, &["/m"]),
        "aarch64\narm64\nlinux/arm64\n"
    );
    let check = succeed(rbk(fresh).args(["system", "check"]));
    assert!(text(&check).contains("store is sound"), "{}", text(&check));
}

#[test]
fn a_base_without_the_platform_names_the_platforms_it_has() {
    let test = "a_base_without_the_platform_names_the_platforms_it_has";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    // An index holding linux/amd64 only (made from the single image).
    succeed(rbk(&store).args([
        "manifest",
        "create",
        "localhost/only-amd64:1",
        "localhost/busybox:latest",
    ]));
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[("Dockerfile", "FROM localhost/only-amd64:1\nRUN true\n")],
    );
    let out = rbk(&store)
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/s390x",
            "-t",
            "x:1",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    fails_with(
        &out,
        "localhost/only-amd64:1 has no linux/s390x variant (it has linux/amd64)",
    );
    // Nothing was tagged.
    let out = rbk(&store).args(["inspect", "x:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn manifest_create_and_import_gather_platforms_under_one_name() {
    let test = "manifest_create_and_import_gather_platforms_under_one_name";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let tarball = dir.path().join("busybox.tar");
    // The same rootfs stated as two platforms (no RUN needs emulating).
    succeed(
        rbk(&store)
            .args(["import", "--platform", "linux/riscv64"])
            .arg(&tarball)
            .arg("localhost/multi:1"),
    );
    succeed(
        rbk(&store)
            .args(["import", "--platform", "linux/amd64"])
            .arg(&tarball)
            .arg("localhost/multi:1"),
    );
    // Re-importing a platform replaces it, not adds a third entry.
    succeed(
        rbk(&store)
            .args(["import", "--platform", "linux/amd64"])
            .arg(&tarball)
            .arg("localhost/multi:1"),
    );
    // A riscv64 build that runs nothing (COPY only) needs no emulator and
    // registers none.
    let handler = Path::new("/proc/sys/fs/binfmt_misc/qemu-riscv64");
    let registered_before = handler.exists();
    let ctx = dir.path().join("copy-only");
    write(
        &ctx,
        &[
            ("Dockerfile", "FROM localhost/multi:1\nCOPY f /f\n"),
            ("f", "x"),
        ],
    );
    succeed(
        rbk(&store)
            .args(["build", "--platform", "linux/riscv64", "-t", "copy-only:1"])
            .arg(&ctx),
    );
    if registered_before {
        eprintln!("SKIPPED part of {test}: qemu-riscv64 was registered before it ran");
    } else {
        assert!(
            !handler.exists(),
            "a COPY-only build registered qemu-riscv64"
        );
    }
    let out = succeed(rbk(&store).args(["manifest", "inspect", "localhost/multi:1"]));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archs: Vec<&str> = doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["riscv64", "amd64"], "{doc}");
    // Two images of one platform cannot share an index.
    let out = rbk(&store)
        .args([
            "manifest",
            "create",
            "localhost/bad:1",
            "localhost/multi:1",
            "localhost/busybox:latest",
        ])
        .output()
        .unwrap();
    fails_with(&out, "two images for linux/amd64");
    // rmi and prune: the index and what only it held go; the store stays sound.
    succeed(rbk(&store).args(["rmi", "localhost/multi:1"]));
    succeed(rbk(&store).args(["prune"]));
    let out = succeed(rbk(&store).args(["system", "check"]));
    assert!(text(&out).contains("store is sound"), "{}", text(&out));
    // Left: the busybox base and the COPY-only image.
    let out = succeed(rbk(&store).args(["images", "-q"]));
    assert_eq!(text(&out).lines().count(), 2, "{}", text(&out));
}

#[test]
fn rbk_toml_platforms_build_one_index_per_target_and_outputs_lay_out_each() {
    let test = "rbk_toml_platforms_build_one_index_per_target_and_outputs_lay_out_each";
    if let Err(why) = rbk_runtime::sandbox::sandbox_supported() {
        return eprintln!("SKIPPED {test}: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("proj");
    // FROM scratch and COPY: nothing runs, so no platform needs emulating.
    write(
        &base,
        &[
            (
                "app/Dockerfile",
                "FROM scratch\nARG TARGETARCH\nARG TARGETPLATFORM\nCOPY f /f\nLABEL arch=$TARGETARCH platform=$TARGETPLATFORM\n",
            ),
            ("app/f", "data"),
            (
                "rbk.toml",
                "[target.app]\ncontext = \"app\"\ntags = [\"localhost/two:1\"]\nplatforms = [\"linux/amd64\", \"linux/riscv64\"]\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let local = dir.path().join("out");
    let oci = dir.path().join("two.tar");
    let out = succeed(
        rbk(&store)
            .args(["build", "-o"])
            .arg(format!("type=local,dest={}", local.display()))
            .arg("-o")
            .arg(format!("type=oci,dest={}", oci.display()))
            .arg(base.join("rbk.toml")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    // The COPY of the context once per platform (its parent differs), and
    // nothing else.
    assert!(err.contains("built 1 image"), "{err}");
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/riscv64", "riscv64")] {
        let out = succeed(rbk(&store).args(["inspect", "--platform", platform, "localhost/two:1"]));
        let img = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone();
        assert_eq!(img["Architecture"], arch, "{img}");
        assert_eq!(img["Config"]["Labels"]["arch"], arch, "{img}");
        assert_eq!(img["Config"]["Labels"]["platform"], platform, "{img}");
        // type=local: one directory per platform, as buildx lays it out.
        let f = local.join(platform.replace('/', "_")).join("f");
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "data",
            "{}",
            f.display()
        );
    }
    // The OCI archive carries each platform's provenance (on by default
    // for an OCI export, as buildx), listed as BuildKit lists it.
    let archive = format!("oci-archive:{}", oci.display());
    assert_eq!(
        skopeo_platforms(&[&archive]),
        [
            "linux/amd64",
            "linux/riscv64",
            "unknown/unknown",
            "unknown/unknown"
        ]
    );
    // --print shows the list as bake does.
    let out = succeed(
        rbk(&store)
            .args(["build", "--print"])
            .arg(base.join("rbk.toml")),
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["target"]["app"]["platforms"],
        serde_json::json!(["linux/amd64", "linux/riscv64"])
    );
    // A bad platform in the list names itself.
    let out = rbk(&store)
        .args(["build", "--platform", "linux/amd64,linux/"])
        .arg(base.join("rbk.toml"))
        .output()
        .unwrap();
    fails_with(&out, "invalid platform \"linux/\"");
}

#[test]
fn a_target_built_on_another_is_built_on_its_image_of_the_same_platform() {
    let test = "a_target_built_on_another_is_built_on_its_image_of_the_same_platform";
    if let Err(why) = rbk_runtime::sandbox::sandbox_supported() {
        return eprintln!("SKIPPED {test}: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("proj");
    let toml = |base_platforms: &str| {
        format!(
            "[target.base]\ncontext = \"base\"\ntags = [\"localhost/base:1\"]\nplatforms = [{base_platforms}]\n\
             [target.app]\ncontext = \"app\"\ntags = [\"localhost/app:1\"]\nplatforms = [\"linux/amd64\", \"linux/riscv64\"]\n"
        )
    };
    write(
        &base,
        &[
            (
                "base/Dockerfile",
                "FROM scratch\nARG TARGETARCH\nLABEL base-arch=$TARGETARCH\nCOPY f /base\n",
            ),
            ("base/f", "base"),
            ("app/Dockerfile", "FROM localhost/base:1\nCOPY f /app\n"),
            ("app/f", "app"),
            ("rbk.toml", &toml("\"linux/amd64\", \"linux/riscv64\"")),
        ],
    );
    let store = dir.path().join("store");
    succeed(
        rbk(&store)
            .args(["build"])
            .arg(base.join("rbk.toml"))
            .arg("app"),
    );
    for arch in ["amd64", "riscv64"] {
        let p = format!("linux/{arch}");
        let out = succeed(rbk(&store).args(["inspect", "--platform", &p, "localhost/app:1"]));
        let img = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone();
        assert_eq!(img["Architecture"], arch, "{img}");
        assert_eq!(img["Config"]["Labels"]["base-arch"], arch, "{img}");
    }
    // The base built for amd64 only: app's riscv64 image cannot use it,
    // and says so (not the stored base in its place).
    write(&base, &[("rbk.toml", &toml("\"linux/amd64\""))]);
    let out = rbk(&store)
        .args(["build"])
        .arg(base.join("rbk.toml"))
        .arg("app")
        .output()
        .unwrap();
    fails_with(
        &out,
        "localhost/base:1 is built in this build for linux/amd64 only, and this stage is for linux/riscv64",
    );
}
