//! `rbk build`'s CI options: `-o/--output` (image, registry, docker, oci,
//! tar, local), `--push`, `--iidfile`, `--metadata-file`, `-q`,
//! `--progress rawjson|quiet`, `--label`, `-f -` and `--build-arg NAME`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::cache::Registry;
use crate::{cannot_run_containers, fails_with, make_base, rbk, rbk_bin, skip, stderr, stdout};

const DOCKERFILE: &str = "FROM localhost/busybox:latest\n\
ARG GREETING=default\n\
RUN mkdir /app && echo \"$GREETING\" > /app/hello && ln -s hello /app/link && chmod 4755 /app/hello\n\
LABEL from=dockerfile\n\
CMD [\"cat\", \"/app/hello\"]\n";

/// A store with the busybox base and a context holding [`DOCKERFILE`].
fn setup(test: &str) -> Option<(tempfile::TempDir, tempfile::TempDir)> {
    if let Some(why) = cannot_run_containers() {
        skip(test, &why);
        return None;
    }
    let store = tempfile::tempdir().unwrap();
    let out = make_base(store.path(), "busybox", &[]);
    assert!(out.status.success(), "make-bases: {}", stderr(&out));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), DOCKERFILE).unwrap();
    Some((store, ctx))
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

/// A second, fresh store holding the same busybox base as `store`
/// (saved and loaded, so both have the same image id).
fn second_store_with_base(store: &Path) -> tempfile::TempDir {
    let base = tempfile::NamedTempFile::new().unwrap();
    let base_s = base.path().display().to_string();
    ok(rbk(
        store,
        &["save", "-o", &base_s, "localhost/busybox:latest"],
    ));
    let other = tempfile::tempdir().unwrap();
    ok(rbk(other.path(), &["load", "-i", &base_s]));
    other
}

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    let out = ok(rbk(store, &["inspect", name]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.get(0).cloned().unwrap_or(v)
}

fn have(tool: &str) -> bool {
    crate::on_path(tool).is_some()
}

#[test]
fn outputs_write_the_filesystem_and_archives_and_result_files() {
    let test = "outputs_write_the_filesystem_and_archives_and_result_files";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let s = store.path();
    let out = tempfile::tempdir().unwrap();
    let o = |name: &str| out.path().join(name).display().to_string();
    let local = format!("type=local,dest={}", o("fs"));
    let tar = format!("type=tar,dest={}", o("fs.tar"));
    let docker = format!("type=docker,dest={},name=o/renamed:2", o("docker.tar"));
    let oci = format!("type=oci,dest={}", o("oci.tar"));
    let iid = o("iid");
    let meta = o("meta.json");
    let ctx_s = ctx.path().display().to_string();
    ok(rbk(
        s,
        &[
            "build",
            "-t",
            "o/app:1",
            "--label",
            "team=core",
            "-o",
            &local,
            "-o",
            &tar,
            "-o",
            &docker,
            "--output",
            &oci,
            "--iidfile",
            &iid,
            "--metadata-file",
            &meta,
            &ctx_s,
        ],
    ));
    let img = inspect(s, "o/app:1");
    let id = img["Id"].as_str().unwrap().to_string();

    the_local_and_tar_outputs_hold_the_final_tree(out.path());
    the_iidfile_and_metadata_file_name_the_image(&iid, &meta, &id, &img);

    // type=docker under its name=: loads into another store as that name.
    let other = tempfile::tempdir().unwrap();
    let loaded = ok(rbk(other.path(), &["load", "-i", &o("docker.tar")]));
    assert!(
        stdout(&loaded).contains("o/renamed:2"),
        "{}",
        stdout(&loaded)
    );
    assert_eq!(inspect(other.path(), "o/renamed:2")["Id"], id.as_str());
    // Both archives read by an independent tool.
    if have("skopeo") {
        for (kind, file) in [("docker-archive", "docker.tar"), ("oci-archive", "oci.tar")] {
            let out = Command::new("skopeo")
                .args(["inspect", "--config", &format!("{kind}:{}", o(file))])
                .output()
                .unwrap();
            assert!(out.status.success(), "skopeo {kind}: {}", stderr(&out));
            assert!(stdout(&out).contains("team"), "{}", stdout(&out));
        }
    } else {
        skip(
            test,
            "skopeo is missing: the archives were not read by skopeo",
        );
    }
}

/// type=local (`fs` in `out`): the final tree, modes and links as in the
/// image; type=tar (`fs.tar`): the same tree as one tarball.
fn the_local_and_tar_outputs_hold_the_final_tree(out: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let hello = out.join("fs/app/hello");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "default\n");
    assert_eq!(std::fs::metadata(&hello).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(
        std::fs::read_link(out.join("fs/app/link")).unwrap(),
        Path::new("hello")
    );
    assert!(out.join("fs/bin/busybox").is_file());

    // type=tar: the same tree as one tarball.
    let mut names = Vec::new();
    let mut a = tar::Archive::new(std::fs::File::open(out.join("fs.tar")).unwrap());
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p == "app/hello" {
            assert_eq!(e.header().mode().unwrap() & 0o7777, 0o4755);
            assert_eq!(e.header().uid().unwrap(), 0);
        }
        names.push(p);
    }
    for want in ["app", "app/hello", "app/link", "bin/busybox"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}

/// --iidfile and --metadata-file name the image `id` (`img` inspected),
/// which has the --label.
fn the_iidfile_and_metadata_file_name_the_image(
    iid: &str,
    meta: &str,
    id: &str,
    img: &serde_json::Value,
) {
    assert_eq!(std::fs::read_to_string(iid).unwrap(), id);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.config.digest"], id);
    assert_eq!(
        m["containerimage.digest"],
        m["containerimage.descriptor"]["digest"]
    );
    assert!(m["containerimage.digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(m["image.name"], "o/app:1");
    assert_eq!(img["Config"]["Labels"]["team"], "core");
    assert_eq!(img["Config"]["Labels"]["from"], "dockerfile");
}

#[test]
fn quiet_rawjson_stdin_dockerfile_and_build_arg_from_the_environment() {
    let test = "quiet_rawjson_stdin_dockerfile_and_build_arg_from_the_environment";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let ctx_s = ctx.path().display().to_string();
    // -q: the image id alone on stdout, nothing on stderr.
    let out = ok(rbk(store.path(), &["build", "-q", &ctx_s]));
    let id = stdout(&out);
    assert!(
        id.starts_with("sha256:") && id.trim_end().len() == 71 && id.lines().count() == 1,
        "{id:?}"
    );
    assert_eq!(stderr(&out), "");

    // -f - with --build-arg GREETING from the environment, the filesystem
    // to stdout (-o -), progress as JSON lines.
    let mut child = Command::new(rbk_bin())
        .arg("--root")
        .arg(store.path())
        .args(["build", "--progress", "rawjson", "-f", "-"])
        .args(["--build-arg", "GREETING", "-o", "-", &ctx_s])
        .env("GREETING", "from-env")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(DOCKERFILE.as_bytes())
        .unwrap();
    let out = ok(child.wait_with_output().unwrap());
    let mut a = tar::Archive::new(out.stdout.as_slice());
    let mut hello = None;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("app/hello") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            hello = Some(s);
        }
    }
    assert_eq!(hello.as_deref(), Some("from-env\n"));
    let err = stderr(&out);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.iter().any(|e| e["status"] == "started"), "{err}");
    assert!(events.iter().any(|e| e["status"] == "done"), "{err}");
    assert!(
        events.iter().any(|e| e["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("[2/4] RUN mkdir")),
        "{err}"
    );
    assert_eq!(events.last().unwrap()["status"], "built");

    // Unset in the environment, --build-arg NAME passes nothing: the default.
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(store.path())
        .args(["build", "--build-arg", "GREETING", "-o", "-", &ctx_s])
        .env_remove("GREETING")
        .output()
        .unwrap();
    let out = ok(out);
    let mut a = tar::Archive::new(out.stdout.as_slice());
    let found = a.entries().unwrap().any(|e| {
        let mut e = e.unwrap();
        let mut s = String::new();
        e.path().unwrap() == Path::new("app/hello")
            && std::io::Read::read_to_string(&mut e, &mut s).is_ok()
            && s == "default\n"
    });
    assert!(found);
}

#[test]
fn bad_outputs_fail_before_any_work() {
    let test = "bad_outputs_fail_before_any_work";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let ctx_s = ctx.path().display().to_string();
    let before = stdout(&ok(rbk(store.path(), &["images", "-q"])));
    for (args, want) in [
        (vec!["-o", "type=zip,dest=x"], "unknown type \"zip\""),
        (vec!["-o", "type=docker"], "needs dest="),
        (vec!["-o", "type=tar,dest=x,name=a:1"], "takes no name="),
        (vec!["-o", "-", "-o", "type=oci,dest=-"], "only one output"),
        (vec!["--label", "novalue"], "--label"),
        (vec!["--build-arg", "=x"], "--build-arg"),
    ] {
        let mut all = vec!["build"];
        all.extend(args.iter().copied());
        all.push(&ctx_s);
        let out = rbk(store.path(), &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("#1 "),
            "a step ran: {}",
            stderr(&out)
        );
    }
    assert_eq!(stdout(&ok(rbk(store.path(), &["images", "-q"]))), before);
}

#[test]
fn push_and_registry_outputs_reach_the_registry() {
    let test = "push_and_registry_outputs_reach_the_registry";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let ctx_s = ctx.path().display().to_string();
    let tagged = format!("{}/o/pushed:1", reg.host);
    let named = format!("{}/o/other:2", reg.host);
    let insecure = format!("--insecure-registry={}", reg.host);
    let registry_out = format!("type=registry,name={named},compression=zstd");
    let docker_named = format!("{}/o/docker:3", reg.host);
    let docker_out =
        format!("type=registry,name={docker_named},oci-mediatypes=false,compression-level=1");
    ok(rbk(
        store.path(),
        &[
            "build",
            "-t",
            &tagged,
            "--push",
            "-o",
            &registry_out,
            "-o",
            &docker_out,
            &insecure,
            &ctx_s,
        ],
    ));
    let id = inspect(store.path(), &tagged)["Id"].clone();
    // All names are in the registry: a fresh store pulls them.
    let other = tempfile::tempdir().unwrap();
    for name in [&tagged, &named, &docker_named] {
        ok(rbk(other.path(), &["pull", &insecure, name]));
        assert_eq!(inspect(other.path(), name)["Id"], id, "{name}");
    }
    let manifest = |repo_tag: &str| image_manifest(&reg.host, repo_tag);
    let zstd = manifest("o/other:2");
    assert_eq!(
        zstd["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        zstd["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let docker = manifest("o/docker:3");
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        docker["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(docker["config"]["digest"], id);
    for l in docker["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    // Level 1 is not the default level: the RUN layer's bytes differ from
    // the gzip push of the same layer under the first name.
    let gzip = manifest("o/pushed:1");
    assert_ne!(gzip["layers"][1]["digest"], docker["layers"][1]["digest"]);
    assert_ne!(gzip["layers"][1]["digest"], zstd["layers"][1]["digest"]);
}

/// What the image manifest `repo_tag` says of itself, as the registry at
/// `host` serves it (the image's, under the index a push with provenance
/// makes).
fn image_manifest(host: &str, repo_tag: &str) -> serde_json::Value {
    let get = |repo: &str, tag: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sf", "-H"])
            .arg(
                "Accept: application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, \
                 application/vnd.oci.image.index.v1+json",
            )
            .arg(format!("http://{host}/v2/{repo}/manifests/{tag}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let m = get(repo, tag);
    match m["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        true => get(repo, m["manifests"][0]["digest"].as_str().unwrap()),
        false => m,
    }
}

#[test]
fn metadata_names_the_digest_the_registry_got() {
    let test = "metadata_names_the_digest_the_registry_got";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let tagged = format!("{}/o/meta:1", reg.host);
    let meta = store.path().join("meta.json");
    let insecure = format!("--insecure-registry={}", reg.host);
    ok(rbk(
        store.path(),
        &[
            "build",
            "-t",
            &tagged,
            "--push",
            &insecure,
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.path().to_str().unwrap(),
        ],
    ));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    // The push compressed the layers: the registry's manifest is not the
    // store's, and the metadata names the registry's (as buildx does).
    let out = Command::new("curl")
        .args([
            "-sfI",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, \
             application/vnd.oci.image.index.v1+json",
        ])
        .arg(format!("http://{}/v2/o/meta/manifests/1", reg.host))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let served = head
        .lines()
        .find_map(|l| l.strip_prefix("docker-content-digest:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert!(served.starts_with("sha256:"), "{head}");
    assert_eq!(m["containerimage.digest"], served, "{m}");
    assert_eq!(m["containerimage.descriptor"]["digest"], served, "{m}");
    assert_eq!(m["image.name"], tagged.as_str());
}

/// The manifest and the blobs of the only image in an archive `rbk save`
/// or `-o type=docker|oci` wrote: (manifest, blob digest → bytes).
fn archive_image(
    file: &str,
) -> (
    serde_json::Value,
    std::collections::HashMap<String, Vec<u8>>,
) {
    let mut blobs = std::collections::HashMap::new();
    let mut index = None;
    let mut a = tar::Archive::new(std::fs::File::open(file).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
        if path == "index.json" {
            index = Some(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            blobs.insert(format!("sha256:{hex}"), bytes);
        }
    }
    let index = index.expect("index.json");
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = serde_json::from_slice(&blobs[digest]).unwrap();
    (manifest, blobs)
}

#[test]
fn archives_take_compression_levels_and_docker_media_types() {
    let test = "archives_take_compression_levels_and_docker_media_types";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let o = |name: &str| out.path().join(name).display().to_string();
    let ctx_s = ctx.path().display().to_string();
    let gz = format!("type=docker,dest={},compression=gzip", o("gz.tar"));
    let gz9 = format!(
        "type=docker,dest={},compression=gzip,compression-level=9",
        o("gz9.tar")
    );
    let zst = format!("type=oci,dest={},compression=zstd", o("zst.tar"));
    let forced = format!(
        "type=oci,dest={},compression=zstd,force-compression=true",
        o("forced.tar")
    );
    let plain = format!("type=oci,dest={}", o("plain.tar"));
    let docker = format!(
        "type=docker,dest={},compression=gzip,oci-mediatypes=false",
        o("docker.tar")
    );
    let mut args = vec!["build", "-t", "o/app:1"];
    for x in [&gz, &gz9, &zst, &forced, &plain, &docker] {
        args.extend(["-o", x]);
    }
    args.push(&ctx_s);
    ok(rbk(store.path(), &args));
    let id = inspect(store.path(), "o/app:1")["Id"].clone();

    every_archive_has_the_codec_and_media_types_asked_for(store.path(), out.path(), &id);

    // Each loads back as the same image, in rbk and in skopeo.
    for file in ["gz.tar", "gz9.tar", "zst.tar", "forced.tar", "docker.tar"] {
        let other = tempfile::tempdir().unwrap();
        ok(rbk(other.path(), &["load", "-i", &o(file)]));
        assert_eq!(inspect(other.path(), "o/app:1")["Id"], id, "{file}");
    }
    if have("skopeo") {
        for (kind, file) in [
            ("docker-archive", "gz.tar"),
            ("oci-archive", "zst.tar"),
            ("docker-archive", "docker.tar"),
        ] {
            let out = Command::new("skopeo")
                .args(["inspect", "--config", &format!("{kind}:{}", o(file))])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "skopeo {kind}:{file}: {}",
                stderr(&out)
            );
        }
    } else {
        skip(
            test,
            "skopeo is missing: the archives were not read by skopeo",
        );
    }
    // Annotations cannot ride on Docker's manifests: refused up front.
    let out = rbk(
        store.path(),
        &["build", "--annotation", "a=b", "-o", &docker, &ctx_s],
    );
    fails_with(&out, "needs OCI media types");
}

/// The image `id` in the archive `file`, its layers after the base (all
/// of them when forced) compressed as `want` (magic bytes) with
/// `media_type`: its manifest.
fn layers_are_compressed_as_asked(
    file: &str,
    id: &serde_json::Value,
    want: &[u8],
    media_type: &str,
) -> serde_json::Value {
    let (m, blobs) = archive_image(file);
    assert_eq!(m["config"]["digest"], *id, "{file}");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{file}");
    let base = &blobs[layers[0]["digest"].as_str().unwrap()];
    assert!(base.starts_with(&[0x1f, 0x8b]) || file.ends_with("forced.tar"));
    let checked = if file.ends_with("forced.tar") { 0 } else { 1 };
    for l in &layers[checked..] {
        assert_eq!(l["mediaType"], media_type, "{file}");
        let bytes = &blobs[l["digest"].as_str().unwrap()];
        assert!(bytes.starts_with(want), "{file}: {:?}", &bytes[..4]);
    }
    m
}

/// The base layer is stored gzip-compressed: it stays so unless
/// force-compression asks otherwise; the RUN layer, stored plain, takes
/// the codec asked for, in each archive the build wrote under `out`.
fn every_archive_has_the_codec_and_media_types_asked_for(
    store: &Path,
    out: &Path,
    id: &serde_json::Value,
) {
    let o = |name: &str| out.join(name).display().to_string();
    let magic = |file: &str, want: &[u8], media_type: &str| {
        layers_are_compressed_as_asked(file, id, want, media_type)
    };
    let gzip_magic: &[u8] = &[0x1f, 0x8b];
    let a = magic(
        &o("gz.tar"),
        gzip_magic,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let b = magic(
        &o("gz9.tar"),
        gzip_magic,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    assert_ne!(a["layers"][1]["digest"], b["layers"][1]["digest"]);
    let zstd_magic: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
    magic(
        &o("zst.tar"),
        zstd_magic,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
    magic(
        &o("forced.tar"),
        zstd_magic,
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
    // Uncompressed unless asked: the layers' digests are their diff ids.
    let (p, _) = archive_image(&o("plain.tar"));
    let img = inspect(store, "o/app:1");
    assert_eq!(p["layers"][1]["digest"], img["RootFS"]["Layers"][1]);
    let d = magic(
        &o("docker.tar"),
        gzip_magic,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    assert_eq!(
        d["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        d["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                todo.push(p);
            } else if ft.is_file() {
                let data = std::fs::read(&p).unwrap_or_default();
                if data.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn secrets_from_env_and_files_reach_run_and_nothing_else() {
    let test = "secrets_from_env_and_files_reach_run_and_nothing_else";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let s = store.path();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:latest\n\
         RUN --mount=type=secret,id=tok,env=TOK --mount=type=secret,id=FILETOK,target=/run/ft \
         sh -c 'test \"$(echo $TOK | rev)\" = eulav-t3rc3s-vne && test \"$(rev /run/ft)\" = eulav-t3rc3s-elif && echo checked > /ok'\n\
         RUN --mount=type=secret,id=BARE,env=B sh -c 'test \"$(echo $B | rev)\" = eulav-t3rc3s-erab && echo checked > /ok2'\n",
    )
    .unwrap();
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), "file-s3cr3t-value\n").unwrap();
    let file_arg = format!("id=FILETOK,src={}", secret_file.path().display());
    let fs = tempfile::tempdir().unwrap();
    let fs_arg = fs.path().display().to_string();
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(s)
        .args(["build", "--progress", "plain", "-t", "sec:1", "-o", &fs_arg])
        .args(["--secret", "id=tok,env=MY_TOK", "--secret", &file_arg])
        .args(["--secret", "id=BARE"])
        .arg(ctx.path())
        .env("MY_TOK", "env-s3cr3t-value")
        .env("BARE", "bare-s3cr3t-value")
        .output()
        .unwrap();
    let out = ok(out);
    assert_eq!(
        std::fs::read_to_string(fs.path().join("ok")).unwrap(),
        "checked\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.path().join("ok2")).unwrap(),
        "checked\n"
    );
    // Not in any layer, config, history, cache record or log (the
    // Dockerfile compares them reversed, so it does not hold them either).
    for secret in ["env-s3cr3t-value", "file-s3cr3t-value", "bare-s3cr3t-value"] {
        let hits = files_containing(s, secret.as_bytes());
        assert!(hits.is_empty(), "{secret} in {hits:?}");
        assert!(!stderr(&out).contains(secret) && !stdout(&out).contains(secret));
    }
    let leftovers: Vec<_> = std::fs::read_dir(s.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("secret-")),
        "{leftovers:?}"
    );

    // A variable that is not set: refused before anything runs.
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(s)
        .args(["build", "--secret", "id=tok,env=RBK_SURELY_UNSET_VAR"])
        .arg(ctx.path())
        .env_remove("RBK_SURELY_UNSET_VAR")
        .output()
        .unwrap();
    fails_with(&out, "RBK_SURELY_UNSET_VAR is not set");
}

#[test]
fn source_date_epoch_gives_the_same_image_on_two_stores_at_two_times() {
    let test = "source_date_epoch_gives_the_same_image_on_two_stores_at_two_times";
    let Some((store_a, ctx)) = setup(test) else {
        return;
    };
    // The same base in both stores (an import stamps its own time).
    let store_b = second_store_with_base(store_a.path());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:latest\nCOPY . /app/\nRUN echo built > /stamp && mkdir /made\nWORKDIR /srv\n",
    )
    .unwrap();
    std::fs::create_dir(ctx.path().join("sub")).unwrap();
    std::fs::write(ctx.path().join("sub/file.txt"), "same bytes\n").unwrap();
    // A second copy of the context with other mtimes.
    let ctx_b = tempfile::tempdir().unwrap();
    for rel in ["Dockerfile", "sub/file.txt"] {
        let to = ctx_b.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(ctx.path().join(rel), &to).unwrap();
    }
    // Both later than the epoch (as a checkout's are): clamped alike. (A
    // time before the epoch is kept, as BuildKit keeps it.)
    let later = filetime::FileTime::from_unix_time(1_800_000_000, 0);
    filetime::set_file_mtime(ctx_b.path().join("sub/file.txt"), later).unwrap();
    let meta = tempfile::NamedTempFile::new().unwrap();
    let build = |store: &Path, ctx: &Path, epoch: &str| {
        let out = Command::new(rbk_bin())
            .arg("--root")
            .arg(store)
            .args(["build", "-q", "--metadata-file"])
            .arg(meta.path())
            .arg(ctx)
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        ok(out);
        let text = std::fs::read_to_string(meta.path()).unwrap();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        (
            m["containerimage.config.digest"]
                .as_str()
                .unwrap()
                .to_string(),
            m["containerimage.digest"].as_str().unwrap().to_string(),
        )
    };
    let a = build(store_a.path(), ctx.path(), "1700000000");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(store_b.path(), ctx_b.path(), "1700000000");
    assert_eq!(a, b, "image id and manifest digest");
    // The epoch is part of the result: another gives another image.
    let c = build(store_b.path(), ctx_b.path(), "1700000001");
    assert_ne!(a.0, c.0);
    // Every file of the new layers is at most the epoch; the config's
    // times are the epoch.
    let fs = tempfile::tempdir().unwrap();
    let fs_arg = format!("type=tar,dest={}/fs.tar", fs.path().display());
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(store_a.path())
        .args(["build", "-o", &fs_arg, "-t", "repro:1"])
        .arg(ctx.path())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    ok(out);
    let img = inspect(store_a.path(), "repro:1");
    assert_eq!(img["Created"], "2023-11-14T22:13:20Z");
    let mut ar = tar::Archive::new(std::fs::File::open(fs.path().join("fs.tar")).unwrap());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p.starts_with("app") || p == "stamp" || p == "made" || p == "srv" {
            assert!(e.header().mtime().unwrap() <= 1_700_000_000, "{p}");
        }
    }
}

#[test]
fn a_dockerfiles_own_dockerignore_replaces_the_contexts() {
    let test = "a_dockerfiles_own_dockerignore_replaces_the_contexts";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let c = ctx.path();
    let df = "FROM localhost/busybox:latest\nCOPY . /ctx/\n";
    std::fs::write(c.join("Dockerfile"), df).unwrap();
    std::fs::write(c.join("app.Dockerfile"), df).unwrap();
    std::fs::write(c.join(".dockerignore"), "a.txt\n").unwrap();
    std::fs::write(c.join("app.Dockerfile.dockerignore"), "b.txt\n").unwrap();
    std::fs::write(c.join("a.txt"), "a\n").unwrap();
    std::fs::write(c.join("b.txt"), "b\n").unwrap();
    let listing = |file: &str| {
        let out = tempfile::tempdir().unwrap();
        let o = out.path().display().to_string();
        let f = c.join(file).display().to_string();
        let ctx_s = c.display().to_string();
        ok(rbk(store.path(), &["build", "-f", &f, "-o", &o, &ctx_s]));
        let mut names: Vec<String> = std::fs::read_dir(out.path().join("ctx"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let plain = listing("Dockerfile");
    assert!(
        plain.contains(&"b.txt".to_string()) && !plain.contains(&"a.txt".to_string()),
        "{plain:?}"
    );
    let own = listing("app.Dockerfile");
    assert!(
        own.contains(&"a.txt".to_string()) && !own.contains(&"b.txt".to_string()),
        "{own:?}"
    );
}

#[test]
fn ssh_agents_reach_run_mounts_and_nothing_else() {
    let test = "ssh_agents_reach_run_mounts_and_nothing_else";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    for tool in ["gcc", "ssh-agent", "ssh-add", "ssh-keygen"] {
        if !have(tool) {
            return skip(test, &format!("{tool} is missing (gcc, openssh-client)"));
        }
    }
    let c = ctx.path();
    let keys = tempfile::tempdir().unwrap();
    let key = compile_the_agent_probe_and_make_a_key(c, keys.path());
    std::fs::write(
        c.join("Dockerfile"),
        "FROM localhost/busybox:latest\nCOPY agent-probe /probe\n\
         RUN --mount=type=ssh /probe > /default.txt\n\
         RUN --mount=type=ssh,id=git,target=/run/git.sock,required=true /probe > /git.txt\n",
    )
    .unwrap();
    // An agent of the user's, forwarded as `default`; a key file as `git`
    // (rbk starts that agent).
    let sock = keys.path().join("user-agent.sock");
    let mut agent = start_an_ssh_agent(&sock);
    let fs = tempfile::tempdir().unwrap();
    let git = format!("git={}", key.display());
    let out = Command::new(rbk_bin())
        .arg("--root")
        .arg(store.path())
        .args([
            "build",
            "--progress",
            "plain",
            "--ssh",
            "default",
            "--ssh",
            &git,
            "-o",
        ])
        .arg(fs.path())
        .arg(c)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    ok(out);
    // The user's agent holds no key; rbk's holds the one given.
    assert_eq!(
        std::fs::read_to_string(fs.path().join("default.txt")).unwrap(),
        "identities=0\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.path().join("git.txt")).unwrap(),
        "identities=1\n"
    );
    nothing_of_the_agent_or_the_key_is_left_in_the_store(store.path(), &key);

    // A required agent not given: the step says what to pass.
    std::fs::write(
        c.join("Dockerfile"),
        "FROM localhost/busybox:latest\nRUN --mount=type=ssh,id=git,required=true true\n",
    )
    .unwrap();
    let out = rbk(store.path(), &["build", &c.display().to_string()]);
    fails_with(&out, "--ssh git");
}

/// Compiles the agent probe into the context `c` and makes an ed25519
/// key in `keys`: the key's path.
fn compile_the_agent_probe_and_make_a_key(c: &Path, keys: &Path) -> std::path::PathBuf {
    let probe_src = crate::repo_root().join("cli/tests/fixtures/ssh/agent-probe.c");
    let built = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(c.join("agent-probe"))
        .arg(&probe_src)
        .output()
        .unwrap();
    assert!(built.status.success(), "gcc: {}", stderr(&built));
    let key = keys.join("id_ed25519");
    let gen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(gen.status.success(), "ssh-keygen: {}", stderr(&gen));
    key
}

/// An `ssh-agent` of the user's, listening on `sock` once this returns.
fn start_an_ssh_agent(sock: &Path) -> std::process::Child {
    let agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    agent
}

/// rbk's agent is gone with the build; nothing of the `key` is stored.
fn nothing_of_the_agent_or_the_key_is_left_in_the_store(store: &Path, key: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().starts_with("ssh-")),
        "{leftovers:?}"
    );
    let private = std::fs::read(key).unwrap();
    let marker = &private[40..72];
    assert!(files_containing(store, marker).is_empty());
}

#[test]
fn build_contexts_stand_in_for_stages_images_and_directories() {
    let test = "build_contexts_stand_in_for_stages_images_and_directories";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let c = ctx.path();
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("f"), "from the extra context\n").unwrap();
    std::fs::create_dir(extra.path().join("d")).unwrap();
    std::fs::write(extra.path().join("d/g"), "mounted\n").unwrap();
    std::fs::write(
        c.join("Dockerfile"),
        "FROM localhost/busybox:latest AS deps\nRUN echo from the stage > /f\n\
         FROM base\n\
         COPY --from=deps /f /deps-f\n\
         COPY --from=extra f /extra-f\n\
         RUN --mount=from=extra,source=d,target=/m cat /m/g > /mounted\n",
    )
    .unwrap();
    let fs = tempfile::tempdir().unwrap();
    let extra_arg = format!("extra={}", extra.path().display());
    let deps_arg = format!("deps={}", extra.path().display());
    let build = |more: &[&str]| {
        let mut args = vec![
            "build",
            "--build-context",
            "base=docker-image://localhost/busybox:latest",
            "--build-context",
            &extra_arg,
        ];
        args.extend_from_slice(more);
        rbk(store.path(), &args)
    };
    let read = |p: &str| std::fs::read_to_string(fs.path().join(p)).unwrap();
    let fs_s = fs.path().display().to_string();
    let ctx_s = c.display().to_string();
    ok(build(&["-o", &fs_s, &ctx_s]));
    // `base` is the image, `extra` the directory, `deps` still the stage.
    assert!(fs.path().join("bin/busybox").is_file());
    assert_eq!(read("extra-f"), "from the extra context\n");
    assert_eq!(read("mounted"), "mounted\n");
    assert_eq!(read("deps-f"), "from the stage\n");
    // A context named like a stage replaces it.
    let fs2 = tempfile::tempdir().unwrap();
    let fs2_s = fs2.path().display().to_string();
    ok(build(&["--build-context", &deps_arg, "-o", &fs2_s, &ctx_s]));
    assert_eq!(
        std::fs::read_to_string(fs2.path().join("deps-f")).unwrap(),
        "from the extra context\n"
    );
    // A directory cannot be a stage's base; bad values are named.
    let bad_base = format!("base={}", extra.path().display());
    let out = rbk(
        store.path(),
        &[
            "build",
            "--build-context",
            &bad_base,
            "--build-context",
            &extra_arg,
            &ctx_s,
        ],
    );
    fails_with(&out, "is a local directory");
    an_oci_layout_directory_can_be_the_base(store.path(), &extra_arg, &ctx_s);
    for bad in [
        "noequals",
        "x=/does/not/exist",
        "x=oci-layout:///l",
        "x=https://e.x/c.tar",
    ] {
        let out = rbk(store.path(), &["build", "--build-context", bad, &ctx_s]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&out).contains("--build-context"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

/// An OCI layout directory (here: an `rbk save` tarball unpacked) as the
/// base of the build of `ctx_s`, with `extra_arg`'s context too.
fn an_oci_layout_directory_can_be_the_base(store: &Path, extra_arg: &str, ctx_s: &str) {
    let layout = tempfile::tempdir().unwrap();
    let saved = layout.path().join("saved.tar");
    ok(rbk(
        store,
        &[
            "save",
            "-o",
            &saved.display().to_string(),
            "localhost/busybox:latest",
        ],
    ));
    let dir = layout.path().join("layout");
    std::fs::create_dir(&dir).unwrap();
    tar::Archive::new(std::fs::File::open(&saved).unwrap())
        .unpack(&dir)
        .unwrap();
    let oci = format!("base=oci-layout://{}", dir.display());
    let fs3 = tempfile::tempdir().unwrap();
    let fs3_s = fs3.path().display().to_string();
    ok(rbk(
        store,
        &[
            "build",
            "--build-context",
            &oci,
            "--build-context",
            extra_arg,
            "-o",
            &fs3_s,
            ctx_s,
        ],
    ));
    assert!(fs3.path().join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(fs3.path().join("extra-f")).unwrap(),
        "from the extra context\n"
    );
}

#[test]
fn no_cache_filter_reruns_its_stages_and_what_reads_them() {
    let test = "no_cache_filter_reruns_its_stages_and_what_reads_them";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let c = ctx.path();
    std::fs::write(
        c.join("Dockerfile"),
        "FROM localhost/busybox:latest AS a\nRUN echo a > /a\n\
         FROM localhost/busybox:latest AS b\nRUN echo b > /b\n\
         FROM localhost/busybox:latest\nCOPY --from=a /a /a\nRUN cat /a > /final\nCOPY --from=b /b /b\n",
    )
    .unwrap();
    let ctx_s = c.display().to_string();
    let first = ok(rbk(store.path(), &["build", "--progress", "plain", &ctx_s]));
    assert!(
        stderr(&first).contains(": 5 steps run, 0 cached"),
        "{}",
        stderr(&first)
    );
    let again = ok(rbk(
        store.path(),
        &[
            "build",
            "--progress",
            "plain",
            "--no-cache-filter",
            "a",
            &ctx_s,
        ],
    ));
    let err = stderr(&again);
    // a's RUN, the COPY from a and everything after it in the last stage
    // run; b's RUN comes from the cache.
    assert!(err.contains(": 4 steps run, 1 cached"), "{err}");
    // Steps run in parallel: find b's step by its number, not its place.
    let step = err
        .lines()
        .find(|l| l.contains("RUN echo b > /b"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default();
    assert!(step.starts_with('#'), "{err}");
    assert!(err.lines().any(|l| l == format!("{step} CACHED")), "{err}");
    let out = rbk(
        store.path(),
        &["build", "--no-cache-filter", "nosuch", &ctx_s],
    );
    fails_with(&out, "--no-cache-filter nosuch");
}

#[test]
fn a_local_cache_directory_carries_the_cache_to_another_store() {
    let test = "a_local_cache_directory_carries_the_cache_to_another_store";
    let Some((store_a, ctx)) = setup(test) else {
        return;
    };
    let store_b = second_store_with_base(store_a.path());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:latest AS build\nRUN echo built > /artifact\n\
         FROM localhost/busybox:latest\nCOPY --from=build /artifact /artifact\nRUN cat /artifact > /copy\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("ci-cache");
    let to = format!("type=local,dest={},mode=max", dir.display());
    let from = format!("type=local,src={}", dir.display());
    let ctx_s = ctx.path().display().to_string();
    // Nothing there yet: an empty cache, not an error.
    let first = ok(rbk(
        store_a.path(),
        &[
            "build",
            "-t",
            "lc:1",
            "--cache-from",
            &from,
            "--cache-to",
            &to,
            &ctx_s,
        ],
    ));
    assert!(stderr(&first).contains("0 records"), "{}", stderr(&first));
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file());
    // An independent reader of OCI layouts accepts the directory.
    if have("skopeo") {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:rbk-buildcache", dir.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
    }
    let second = ok(rbk(
        store_b.path(),
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "lc:1",
            "--cache-from",
            &from,
            &ctx_s,
        ],
    ));
    let err = stderr(&second);
    assert!(err.contains(": 0 steps run, 3 cached"), "{err}");
    assert_eq!(
        inspect(store_a.path(), "lc:1")["Id"],
        inspect(store_b.path(), "lc:1")["Id"]
    );
}

#[test]
fn annotations_land_on_the_manifest() {
    let test = "annotations_land_on_the_manifest";
    let Some((store, ctx)) = setup(test) else {
        return;
    };
    let meta = tempfile::NamedTempFile::new().unwrap();
    let meta_s = meta.path().display().to_string();
    let ctx_s = ctx.path().display().to_string();
    ok(rbk(
        store.path(),
        &[
            "build",
            "--annotation",
            "org.opencontainers.image.source=https://example.com/app",
            "--annotation",
            "manifest:team=core",
            "--metadata-file",
            &meta_s,
            &ctx_s,
        ],
    ));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta.path()).unwrap()).unwrap();
    let digest = m["containerimage.digest"].as_str().unwrap();
    let blob = store
        .path()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.com/app"
    );
    assert_eq!(manifest["annotations"]["team"], "core");
    for bad in ["index:a=b", "novalue"] {
        let out = rbk(store.path(), &["build", "--annotation", bad, &ctx_s]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&out).contains("--annotation"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn an_inline_cache_rides_in_the_pushed_image() {
    let test = "an_inline_cache_rides_in_the_pushed_image";
    let Some((store_a, ctx)) = setup(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let store_b = second_store_with_base(store_a.path());
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:latest\nRUN echo a > /a\nCOPY f /f\nRUN cat /a /f > /g\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("f"), "file\n").unwrap();
    let ctx_s = ctx.path().display().to_string();
    let image = format!("{}/o/inline:1", reg.host);
    let insecure = format!("--insecure-registry={}", reg.host);
    ok(rbk(
        store_a.path(),
        &[
            "build",
            "-t",
            &image,
            "--cache-to",
            "type=inline",
            "--push",
            &insecure,
            &ctx_s,
        ],
    ));
    // The config carries one record per step (its first-pass key, so the
    // config is the same however the step was served), each naming a
    // layer of the image by its diff id.
    let img = inspect(store_a.path(), &image);
    let id = img["Id"].as_str().unwrap();
    let config_blob = store_a
        .path()
        .join("blobs/sha256")
        .join(id.trim_start_matches("sha256:"));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_blob).unwrap()).unwrap();
    let records = config["rbk.buildcache.v1"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{records:?}");
    let diff_ids = img["RootFS"]["Layers"].as_array().unwrap();
    for r in records {
        assert!(diff_ids.contains(&r["record"]["diff_id"]), "{r}");
    }

    // Another store, the image as its only cache: every step is a hit and
    // the image is the same one.
    let second = ok(rbk(
        store_b.path(),
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            &image,
            "--cache-from",
            &image,
            "--cache-to",
            "type=inline",
            &insecure,
            &ctx_s,
        ],
    ));
    let err = stderr(&second);
    assert!(err.contains("importing cache from"), "{err}");
    assert!(err.contains(": 0 steps run, 3 cached"), "{err}");
    assert_eq!(inspect(store_b.path(), &image)["Id"], img["Id"]);
    // An image without an inline cache is an empty cache, not an error.
    let plain = format!("{}/o/plain:1", reg.host);
    ok(rbk(
        store_a.path(),
        &["build", "-t", &plain, "--push", &insecure, &ctx_s],
    ));
    let third = ok(rbk(
        store_b.path(),
        &["build", "--cache-from", &plain, &insecure, &ctx_s],
    ));
    assert!(stderr(&third).contains("0 records"), "{}", stderr(&third));
}

/// docs/cli.md lists every option of `rbk build --help` with an example,
/// and nothing the command does not have.
#[test]
fn the_cli_reference_shows_every_build_option() {
    let out = ok(Command::new(rbk_bin())
        .args(["build", "--help"])
        .output()
        .unwrap());
    let help = stdout(&out);
    let flags: std::collections::BTreeSet<String> = help
        .lines()
        // Option lines are indented 2 or 6; their descriptions 10.
        .filter(|l| l.len() - l.trim_start().len() <= 6)
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split([' ', ',', '[', '=', '<'])
                .find(|w| w.starts_with("--"))
                .map(str::to_string)
        })
        .collect();
    assert!(flags.len() > 30, "{flags:?}");
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `-")).collect();
    for flag in &flags {
        let row = rows
            .iter()
            .find(|r| {
                r.split('|').nth(1).is_some_and(|c| {
                    c.contains(&format!("`{flag}`")) || c.contains(&format!(" {flag}`"))
                })
            })
            .unwrap_or_else(|| panic!("docs/cli.md has no row for {flag}"));
        let example = row.split('|').nth(2).unwrap_or("");
        // `-f, --file`: the short form counts too.
        let short = row
            .split('|')
            .nth(1)
            .and_then(|c| c.trim().strip_prefix('`'))
            .and_then(|c| c.split_once(", "))
            .map(|(s, _)| format!("{s} "));
        let used = example.contains(flag.as_str())
            || short.as_deref().is_some_and(|s| example.contains(s));
        assert!(
            example.contains("rbk build") && used,
            "the example for {flag} does not use it: {row}"
        );
    }
    for row in &rows {
        let cell = row.split('|').nth(1).unwrap_or("");
        assert!(
            flags.iter().any(|f| cell.contains(f.as_str())),
            "docs/cli.md documents an option rbk build does not have: {row}"
        );
    }
}
