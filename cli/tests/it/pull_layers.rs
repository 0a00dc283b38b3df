//! A pulled image of several layers, unpacked by its first `rbk run` (side
//! by side where the overlay snapshotter can): upper layers that delete a
//! lower layer's file (whiteout), replace a directory (opaque), copy up a
//! file and hard-link to it, or write under a directory only a lower layer
//! has, give the rootfs the layers mean; a layer served wrong fails the
//! pull naming it and leaves the store sound.

use std::collections::HashMap;
use std::io::Write;

use rbk_store::compress::{self, Compression};
use rbk_store::Digest;

use crate::hostile_registry::{check_is_clean, serve};
use crate::{cannot_run_containers, fails_with, rbk, skip, stderr, stdout};

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
}

/// A gzip'd layer of `entries`: (blob, diff id).
fn layer(entries: &[E<'_>]) -> (Vec<u8>, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, mode, data) => {
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    let mut gz = compress::compressor(Vec::new(), Compression::Gzip, None).unwrap();
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// The layers: busybox and a few trees; then a whiteout, an opaque
/// directory and a copied-up file with a hard link; a file under a
/// directory of the first layer only; a file and another whiteout.
fn layers() -> Vec<(Vec<u8>, Digest)> {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    vec![
        layer(&[
            E::Dir("bin", 0o755),
            E::File("bin/busybox", 0o755, &busybox),
            E::Dir("a", 0o755),
            E::File("a/keep", 0o644, b"keep"),
            E::File("a/gone", 0o644, b"gone"),
            E::Dir("d", 0o755),
            E::File("d/old", 0o644, b"old"),
            E::Dir("d/sub", 0o755),
            E::File("d/sub/x", 0o644, b"x"),
            E::Dir("h", 0o755),
            E::File("h/base", 0o644, b"base"),
            E::Dir("e", 0o700),
        ]),
        layer(&[
            E::Dir("a", 0o755),
            E::File("a/.wh.gone", 0o644, b""),
            E::Dir("d", 0o755),
            E::File("d/.wh..wh..opq", 0o644, b""),
            E::File("d/new", 0o644, b"new"),
            E::Dir("h", 0o755),
            E::File("h/base", 0o644, b"copied up"),
            E::Link("h/link", "h/base"),
        ]),
        layer(&[E::File("e/deep/f", 0o644, b"deep")]),
        layer(&[
            E::File("top", 0o644, b"top"),
            E::Dir("a", 0o755),
            E::File("a/.wh.keep", 0o644, b""),
        ]),
    ]
}

/// A registry's routes for `repo:1` made of `layers`, the blob of layer
/// `wrong` (if any) served as other bytes.
fn routes(
    repo: &str,
    layers: &[(Vec<u8>, Digest)],
    wrong: Option<usize>,
) -> HashMap<String, Vec<u8>> {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.to_string()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = Digest::of(&config);
    let mut routes = HashMap::new();
    let mut descs = Vec::new();
    for (i, (blob, _)) in layers.iter().enumerate() {
        let d = Digest::of(blob);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": blob.len(),
        }));
        let mut body = blob.clone();
        if wrong == Some(i) {
            let at = body.len() / 2;
            body[at] ^= 0xff;
        }
        routes.insert(format!("/v2/{repo}/blobs/{d}"), body);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    });
    routes.insert(
        format!("/v2/{repo}/manifests/1"),
        serde_json::to_vec(&manifest).unwrap(),
    );
    routes.insert(format!("/v2/{repo}/blobs/{cd}"), config);
    routes
}

#[test]
fn a_pulled_image_unpacks_to_the_rootfs_its_layers_mean() {
    let test = "a_pulled_image_unpacks_to_the_rootfs_its_layers_mean";
    if let Some(why) = cannot_run_containers() {
        return skip(test, &why);
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        return skip(test, "no /bin/busybox (apt-get install busybox-static)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let registry = serve(routes("layers", &layers(), None));
    let name = format!("{}/layers:1", registry.host);
    let out = rbk(&root, &["pull", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = "cd / && /bin/busybox find a d e h top | /bin/busybox sort && \
                  /bin/busybox stat -c '%n %a' e && /bin/busybox stat -c '%n %h' h/link && /bin/busybox cat h/link";
    let out = rbk(
        &root,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &name,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "a\nd\nd/new\ne\ne/deep\ne/deep/f\nh\nh/base\nh/link\ntop\n\
         e 700\nh/link 2\ncopied up"
    );
    check_is_clean(&root);
}

#[test]
fn a_layer_served_wrong_fails_the_pull_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let layers = layers();
    let registry = serve(routes("wrong", &layers, Some(1)));
    let name = format!("{}/wrong:1", registry.host);
    let out = rbk(&root, &["pull", &name]);
    fails_with(&out, &Digest::of(&layers[1].0).to_string());
    let out = rbk(&root, &["images", "-q"]);
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
    check_is_clean(&root);
}
