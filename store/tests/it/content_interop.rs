//! Interop with real tools, both ways: skopeo and umoci read what `save`
//! writes; `load` reads what skopeo writes. Each test prints SKIPPED and
//! returns when a tool is not installed (CI installs them).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rbk_store::{archive, Reference, Store};

use crate::content_archive::{rootfs_dir, saved, tar_dir};

fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed; this interop test did not run");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A store with a busybox image imported from a rootfs folder, and that
/// folder.
fn busybox() -> (
    tempfile::TempDir,
    Store,
    rbk_store::Image,
    tempfile::TempDir,
) {
    let rootfs = rootfs_dir(true);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = Reference::parse("localhost/busybox:1.0").unwrap();
    let changes = ["CMD [\"/bin/sh\"]".to_string(), "WORKDIR /srv".to_string()];
    let tar = tar_dir(rootfs.path());
    let img = archive::import(&store, &tar[..], Some(&r), &changes).unwrap();
    (dir, store, img, rootfs)
}

/// Path → (kind, content or link target, mode) for every entry under root.
fn tree(root: &Path) -> BTreeMap<String, (char, Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, Vec<u8>, u32)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.mode() & 0o7777;
            if m.is_symlink() {
                let t = fs::read_link(&p).unwrap();
                out.insert(rel, ('l', t.to_string_lossy().into_owned().into_bytes(), 0));
            } else if m.is_dir() {
                out.insert(rel, ('d', Vec::new(), mode));
                walk(root, &p, out);
            } else {
                out.insert(rel, ('f', fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn skopeo_inspects_rbk_save_as_docker_archive_and_oci_archive() {
    if !have("skopeo") {
        return;
    }
    let (_dir, store, img, _rootfs) = busybox();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("busybox.tar");
    fs::write(&file, saved(&store, &["localhost/busybox:1.0"])).unwrap();

    let docker: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", file.display()))))
    .unwrap();
    // docker-archive names layers by diff id.
    let diff_ids: Vec<String> = img
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(docker["Layers"], serde_json::json!(diff_ids));
    assert_eq!(docker["Os"], "linux");
    assert_eq!(docker["Architecture"], img.config.architecture);

    let oci: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", file.display()))))
    .unwrap();
    let digests: Vec<String> = img
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.to_string())
        .collect();
    assert_eq!(oci["Layers"], serde_json::json!(digests));
    assert_eq!(oci["Digest"], img.manifest_digest.to_string());

    let config: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", file.display()))))
    .unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
}

#[test]
fn umoci_unpacks_rbk_save_to_the_same_tree() {
    if !have("umoci") {
        return;
    }
    let (_dir, store, _img, rootfs) = busybox();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    fs::create_dir(&layout).unwrap();
    let bytes = saved(&store, &["localhost/busybox:1.0"]);
    tar::Archive::new(&bytes[..]).unpack(&layout).unwrap();
    let bundle = work.path().join("bundle");
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack");
    if !nix_is_root() {
        cmd.arg("--rootless");
    }
    run(cmd
        .arg("--image")
        .arg(format!("{}:1.0", layout.display()))
        .arg(&bundle));
    let got = tree(&bundle.join("rootfs"));
    let want = tree(rootfs.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, (kind, data, mode)) in &want {
        let (gk, gd, gm) = &got[k];
        assert_eq!((gk, gd == data), (kind, true), "{k}");
        if *kind == 'f' {
            assert_eq!(gm, mode, "{k} mode");
        }
    }
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// An OCI layout directory made by skopeo from an rbk save, tagged `1.0`.
fn skopeo_layout(store: &Store, work: &Path) -> std::path::PathBuf {
    let file = work.join("in.tar");
    fs::write(&file, saved(store, &["localhost/busybox:1.0"])).unwrap();
    let layout = work.join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", file.display()))
        .arg(format!("oci:{}:1.0", layout.display())));
    layout
}

#[test]
fn rbk_loads_what_skopeo_copy_writes() {
    if !have("skopeo") {
        return;
    }
    let (_dir, store, img, _rootfs) = busybox();
    let work = tempfile::tempdir().unwrap();
    let layout = skopeo_layout(&store, work.path());
    for (transport, name) in [
        ("docker-archive", "example.com/a/docker:1"),
        ("oci-archive", "example.com/a/oci:2"),
    ] {
        let file = work.path().join(format!("{transport}.tar"));
        run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(format!("{transport}:{}:{name}", file.display())));
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::open(dir2.path()).unwrap();
        let loaded = archive::load(&store2, fs::File::open(&file).unwrap())
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        assert_eq!(loaded.len(), 1, "{transport}");
        let got = store2.resolve(name).unwrap();
        // Same config (so same id, layers, command) whatever the transport.
        assert_eq!(got.id, img.id, "{transport}");
        assert_eq!(got.config, img.config, "{transport}");
        for l in &got.manifest.layers {
            assert!(
                store2.content.read(&l.digest).is_ok(),
                "{transport}: layer {}",
                l.digest
            );
        }
    }
}

#[test]
fn rbk_loads_what_buildah_push_writes() {
    if !have("buildah") {
        return;
    }
    let (_dir, store, img, _rootfs) = busybox();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("in.tar");
    fs::write(&file, saved(&store, &["localhost/busybox:1.0"])).unwrap();
    // A private containers-storage, so the machine's is not touched.
    let storage = work.path().join("storage");
    let run_dir = work.path().join("run");
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(&storage)
            .arg("--runroot")
            .arg(&run_dir)
            .arg("--storage-driver")
            .arg("vfs");
        c.args(args);
        c
    };
    let pulled = buildah(&["pull", "-q", &format!("oci-archive:{}", file.display())])
        .output()
        .unwrap();
    if !pulled.status.success() {
        eprintln!(
            "SKIPPED: buildah cannot use a private store here: {}",
            String::from_utf8_lossy(&pulled.stderr).trim()
        );
        return;
    }
    let id = String::from_utf8_lossy(&pulled.stdout).trim().to_string();
    let out = work.path().join("pushed.tar");
    run(&mut buildah(&[
        "push",
        &id,
        &format!("oci-archive:{}:localhost/pushed:3", out.display()),
    ]));
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path()).unwrap();
    archive::load(&store2, fs::File::open(&out).unwrap()).unwrap();
    let got = store2.resolve("localhost/pushed:3").unwrap();
    assert_eq!(got.config.rootfs.diff_ids, img.config.rootfs.diff_ids);
    assert_eq!(
        got.config.config.as_ref().unwrap().cmd,
        img.config.config.as_ref().unwrap().cmd
    );
    let _ = buildah(&["rmi", "-a", "-f"]).output();
}
