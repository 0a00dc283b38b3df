//! save / load / import: round trips, and bad archives leave the store as
//! it was.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::Path;

use rbk_store::archive;
use rbk_store::error::ArchiveError;
use rbk_store::oci::{self, LayerCompression};
use rbk_store::{Digest, Reference, Store, StoreError};

/// A tiny busybox rootfs as a tar: `/bin/busybox` (Debian's busybox-static
/// when installed, else a stand-in file) plus applet links and /etc.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    rootfs_tar(true)
}

/// Like [`busybox_rootfs_tar`]; without `real_busybox` the binary is a small
/// stand-in, which keeps debug-build gzip fast in tests that do not run it.
pub fn rootfs_tar(real_busybox: bool) -> Vec<u8> {
    tar_dir(rootfs_dir(real_busybox).path())
}

/// The rootfs folder [`rootfs_tar`] tars.
pub fn rootfs_dir(real_busybox: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    match real_busybox.then(|| fs::copy("/bin/busybox", root.join("bin/busybox"))) {
        Some(Ok(_)) => {}
        Some(Err(_)) | None => {
            if real_busybox {
                eprintln!("note: /bin/busybox missing; using a stand-in binary");
            }
            fs::write(root.join("bin/busybox"), b"#!stand-in busybox\n").unwrap();
        }
    }
    for applet in ["sh", "ls", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    dir
}

/// A tar of `root`'s contents, symlinks kept as links.
pub fn tar_dir(root: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", root).unwrap();
    b.into_inner().unwrap()
}

/// The store's visible state: index.json and the set of blobs.
fn state(root: &Path) -> (String, Vec<String>) {
    let index = fs::read_to_string(root.join("index.json")).unwrap_or_default();
    let mut blobs: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (index, blobs)
}

fn tmp_is_empty(root: &Path) -> bool {
    fs::read_dir(root.join("tmp")).unwrap().count() == 0
}

/// A store holding an imported busybox image tagged `localhost/busybox`.
pub fn store_with_busybox() -> (tempfile::TempDir, Store, rbk_store::Image) {
    store_with_rootfs(false)
}

/// A store holding an image imported from [`rootfs_tar`].
pub fn store_with_rootfs(real_busybox: bool) -> (tempfile::TempDir, Store, rbk_store::Image) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = Reference::parse("localhost/busybox").unwrap();
    let changes = vec!["CMD [\"/bin/sh\"]".to_string(), "ENV PATH=/bin".to_string()];
    let img = archive::import(&store, &rootfs_tar(real_busybox)[..], Some(&r), &changes).unwrap();
    (dir, store, img)
}

pub fn saved(store: &Store, names: &[&str]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let items = archive::save_items(store, &names).unwrap();
    let mut out = Vec::new();
    archive::save(store, &items, &mut out).unwrap();
    out
}

fn entries(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (p, data)
        })
        .collect()
}

/// Rebuilds a tar from entries (directories omitted), optionally changed.
fn rebuild(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in entries {
        if p.ends_with('/') {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name for malicious cases.
        let name = h.as_old_mut().name.as_mut();
        name[..p.len()].copy_from_slice(p.as_bytes());
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn import_busybox_rootfs() {
    let (_dir, store, img) = store_with_rootfs(true);
    assert_eq!(img.tags[0].familiar(), "localhost/busybox:latest");
    assert_eq!(img.manifest.layers.len(), 1);
    let layer = &img.manifest.layers[0];
    // Kept uncompressed, like a build's layers: the blob is the tar itself.
    assert_eq!(layer.media_type, oci::MEDIA_TYPE_OCI_LAYER);
    let blob = store.content.read(&layer.digest).unwrap();
    assert_eq!(LayerCompression::sniff(&blob), LayerCompression::None);
    assert_eq!(layer.digest, img.config.rootfs.diff_ids[0]);
    let tar_bytes = blob;
    assert_eq!(
        Digest::of(&tar_bytes),
        img.config.rootfs.diff_ids[0],
        "diffID is the uncompressed digest"
    );
    let names: Vec<String> = entries(&tar_bytes).into_iter().map(|(p, _)| p).collect();
    assert!(
        names.iter().any(|n| n.ends_with("bin/busybox")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("bin/sh")), "{names:?}");
    let cfg = img.config.config.as_ref().unwrap();
    assert_eq!(cfg.cmd.as_deref().unwrap(), ["/bin/sh"]);
    assert_eq!(cfg.env.as_deref().unwrap(), ["PATH=/bin"]);
    assert_eq!(img.config.os, "linux");
    assert_eq!(img.config.architecture, oci::host_architecture());
}

#[test]
fn import_refuses_unsafe_tarball_and_bad_change() {
    let (dir, store, _img) = store_with_busybox();
    let before = state(dir.path());
    let evil = rebuild(&[("../escape".to_string(), b"x".to_vec())]);
    let err = archive::import(&store, &evil[..], None, &[]).unwrap_err();
    assert!(
        matches!(err, StoreError::Archive(ArchiveError::UnsafeEntry { .. })),
        "{err}"
    );
    let err = archive::import(
        &store,
        &busybox_rootfs_tar()[..],
        None,
        &["RUN x".to_string()],
    )
    .unwrap_err();
    assert!(err.to_string().contains("RUN x"), "{err}");
    assert_eq!(state(dir.path()), before);
    assert!(tmp_is_empty(dir.path()));
}

#[test]
fn save_load_round_trip() {
    let (_dir, store, img) = store_with_busybox();
    store
        .tag(&img, &Reference::parse("localhost/bb:2").unwrap())
        .unwrap();
    let bytes = saved(&store, &["localhost/busybox", "localhost/bb:2"]);
    let names: Vec<String> = entries(&bytes).into_iter().map(|(p, _)| p).collect();
    for want in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing: {names:?}"
        );
    }
    // Blobs are written once even though two names share them.
    let blob_entries = names
        .iter()
        .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 14)
        .count();
    assert_eq!(blob_entries, 3);
    assert_eq!(
        saved(&store, &["localhost/busybox", "localhost/bb:2"]),
        bytes,
        "save is deterministic"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path()).unwrap();
    let loaded = archive::load(&store2, &bytes[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, img.id);
    assert_eq!(loaded[0].manifest_digest, img.manifest_digest);
    let tags: Vec<String> = loaded[0].tags.iter().map(Reference::familiar).collect();
    assert_eq!(tags, ["localhost/bb:2", "localhost/busybox:latest"]);
    for layer in &img.manifest.layers {
        assert_eq!(
            store2.content.read(&layer.digest).unwrap(),
            store.content.read(&layer.digest).unwrap()
        );
    }
    assert!(tmp_is_empty(dir2.path()));
    // Loading again is idempotent.
    archive::load(&store2, &bytes[..]).unwrap();
    assert_eq!(store2.list().unwrap().len(), 1);
}

#[test]
fn load_compressed_archives() {
    let (_dir, store, img) = store_with_busybox();
    let bytes = saved(&store, &["localhost/busybox"]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&bytes[..], 3).unwrap();
    for (what, data) in [("gzip", gz), ("zstd", zst)] {
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::open(dir2.path()).unwrap();
        let loaded = archive::load(&store2, &data[..]).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(loaded[0].id, img.id, "{what}");
    }
}

#[test]
fn load_docker_archive_without_oci_index_and_with_legacy_layout() {
    let (_dir, store, img) = store_with_busybox();
    let plain = store.content.read(&img.manifest.layers[0].digest).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    let layer = gz.finish().unwrap();
    let config = store.content.read(&img.id).unwrap();
    // Old `docker save` shape: <id>.json config, <dir>/layer.tar (here gzip,
    // as docker load also accepts: its diff id is checked through the
    // decompressor), and a symlinked duplicate.
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", img.id.hex()),
        "RepoTags": ["example.com/team/app:v1"],
        "Layers": ["dup/layer.tar"],
    }]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(&format!("{}.json", img.id.hex()), &config);
    add("aaa/layer.tar", &layer);
    add("manifest.json", manifest.to_string().as_bytes());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "dup/layer.tar", "../aaa/layer.tar")
        .unwrap();
    let bytes = b.into_inner().unwrap();

    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path()).unwrap();
    let loaded = archive::load(&store2, &bytes[..]).unwrap();
    assert_eq!(loaded[0].id, img.id);
    assert_eq!(loaded[0].tags[0].familiar(), "example.com/team/app:v1");
    assert_eq!(
        loaded[0].manifest.layers[0].media_type,
        oci::MEDIA_TYPE_OCI_LAYER_GZIP
    );
    assert_eq!(
        store2.resolve("example.com/team/app:v1").unwrap().id,
        img.id
    );
}

/// Loads `bytes` into a store that already holds an image, expects an
/// error, and checks the store did not change.
fn assert_load_fails_cleanly(bytes: &[u8], check: impl Fn(&StoreError) -> bool) {
    let (dir, store, _img) = store_with_busybox();
    let before = state(dir.path());
    let err = archive::load(&store, bytes).unwrap_err();
    assert!(check(&err), "unexpected error: {err}");
    assert_eq!(state(dir.path()), before, "store changed after: {err}");
    assert!(tmp_is_empty(dir.path()), "staging left behind after: {err}");
}

fn good_archive() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = Reference::parse("localhost/other").unwrap();
    let tar = rebuild(&[("etc/hostname".to_string(), b"other\n".to_vec())]);
    archive::import(&store, &tar[..], Some(&r), &[]).unwrap();
    saved(&store, &["localhost/other"])
}

#[test]
fn truncated_archive_leaves_store_unchanged() {
    let bytes = good_archive();
    for cut in [
        bytes.len() / 3,
        bytes.len() / 2 + 7,
        bytes.len() - 1024 - 512 * 3,
    ] {
        assert_load_fails_cleanly(&bytes[..cut], |e| {
            matches!(
                e,
                StoreError::Archive(ArchiveError::Read { .. })
                    | StoreError::Archive(ArchiveError::Truncated { .. })
                    | StoreError::Archive(ArchiveError::Missing { .. })
                    | StoreError::Archive(ArchiveError::Format)
            )
        });
    }
    assert_load_fails_cleanly(&[], |e| {
        matches!(e, StoreError::Archive(ArchiveError::Format))
    });
    // Cut in the middle of a blob: named as truncation, not as corruption.
    let mut a = tar::Archive::new(&bytes[..]);
    let (pos, size, name) = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.size() > 100)
        .map(|e| {
            (
                e.raw_file_position(),
                e.size(),
                e.path().unwrap().to_string_lossy().into_owned(),
            )
        })
        .unwrap();
    let cut = (pos + size / 2) as usize;
    assert_load_fails_cleanly(
        &bytes[..cut],
        |e| matches!(e, StoreError::Archive(ArchiveError::Truncated { entry }) if *entry == name),
    );
}

#[test]
fn wrong_digest_leaves_store_unchanged() {
    let mut es = entries(&good_archive());
    let blob = es
        .iter_mut()
        .find(|(p, d)| p.starts_with("blobs/sha256/") && d.len() > 100)
        .unwrap();
    let last = blob.1.len() - 1;
    blob.1[last] ^= 0xff;
    let name = blob.0.clone();
    assert_load_fails_cleanly(
        &rebuild(&es),
        |e| matches!(e, StoreError::Corrupt { expected, .. } if name.ends_with(expected.hex())),
    );
}

#[test]
fn malicious_entry_leaves_store_unchanged() {
    let mut es = entries(&good_archive());
    es.insert(0, ("../../etc/evil".to_string(), b"owned".to_vec()));
    assert_load_fails_cleanly(
        &rebuild(&es),
        |e| matches!(e, StoreError::Archive(ArchiveError::UnsafeEntry { entry, .. }) if entry.contains("evil")),
    );
    let mut es = entries(&good_archive());
    es.insert(0, ("/abs/path".to_string(), b"x".to_vec()));
    assert_load_fails_cleanly(&rebuild(&es), |e| {
        matches!(e, StoreError::Archive(ArchiveError::UnsafeEntry { .. }))
    });
}

#[test]
fn manifest_referencing_missing_blob_leaves_store_unchanged() {
    let es = entries(&good_archive());
    let index: oci::Index =
        serde_json::from_slice(&es.iter().find(|(p, _)| p == "index.json").unwrap().1).unwrap();
    let manifest_path = format!("blobs/sha256/{}", index.manifests[0].digest.hex());
    let manifest: oci::Manifest =
        serde_json::from_slice(&es.iter().find(|(p, _)| *p == manifest_path).unwrap().1).unwrap();
    let layer_path = format!("blobs/sha256/{}", manifest.layers[0].digest.hex());
    let without: Vec<_> = es.into_iter().filter(|(p, _)| *p != layer_path).collect();
    assert_load_fails_cleanly(
        &rebuild(&without),
        |e| matches!(e, StoreError::Archive(ArchiveError::Missing { path }) if *path == layer_path),
    );
}

#[test]
fn not_an_archive_is_a_clear_error() {
    assert_load_fails_cleanly(b"this is not a tar file at all, just some words", |e| {
        matches!(
            e,
            StoreError::Archive(ArchiveError::Read { .. })
                | StoreError::Archive(ArchiveError::Format)
        )
    });
}

#[test]
fn lying_diff_id_leaves_store_unchanged() {
    // A config that claims another layer's diff id must not load: snapshots
    // are keyed by chain ids made from diff ids.
    let (_d, store, img) = store_with_busybox();
    let layer = store.content.read(&img.manifest.layers[0].digest).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&store.content.read(&img.id).unwrap()).unwrap();
    let other = Digest::of(b"someone else's layer");
    config["rootfs"]["diff_ids"] = serde_json::json!([other]);
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["localhost/liar:1"],
        "Layers": ["layer.tar"],
    }]);
    let bytes = rebuild(&[
        ("config.json".to_string(), config.to_string().into_bytes()),
        ("layer.tar".to_string(), layer),
        (
            "manifest.json".to_string(),
            manifest.to_string().into_bytes(),
        ),
    ]);
    assert_load_fails_cleanly(
        &bytes,
        |e| matches!(e, StoreError::Archive(ArchiveError::DiffIdMismatch { expected, .. }) if *expected == other),
    );
}

#[test]
fn save_of_corrupt_blob_names_digest_and_image() {
    let (_d, store, img) = store_with_busybox();
    let layer = &img.manifest.layers[0].digest;
    let mut data = fs::read(store.content.path(layer)).unwrap();
    data[10] ^= 0xff;
    fs::write(store.content.path(layer), data).unwrap();
    let items = archive::save_items(&store, &["localhost/busybox".to_string()]).unwrap();
    let err = archive::save(&store, &items, std::io::sink()).unwrap_err();
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(chain.contains("localhost/busybox:latest"), "{chain}");
    assert!(chain.contains(layer.as_str()), "{chain}");
}

#[test]
fn import_with_gzip_zstd_and_without_compression() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = rootfs_tar(false);
    for (c, mt) in [
        (LayerCompression::Gzip, oci::MEDIA_TYPE_OCI_LAYER_GZIP),
        (LayerCompression::Zstd, oci::MEDIA_TYPE_OCI_LAYER_ZSTD),
        (LayerCompression::None, oci::MEDIA_TYPE_OCI_LAYER),
    ] {
        let img = archive::import_with(&store, &tar[..], None, &[], c).unwrap();
        let layer = &img.manifest.layers[0];
        assert_eq!(layer.media_type, mt);
        let blob = store.content.read(&layer.digest).unwrap();
        let plain = match c {
            LayerCompression::Zstd => zstd::decode_all(&blob[..]).unwrap(),
            LayerCompression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            LayerCompression::None => blob,
        };
        assert_eq!(plain, tar);
        assert_eq!(Digest::of(&plain), img.config.rootfs.diff_ids[0]);
        // And it survives a save/load round trip.
        let bytes = saved(&store, &[img.id.as_str()]);
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::open(dir2.path()).unwrap();
        assert_eq!(archive::load(&store2, &bytes[..]).unwrap()[0].id, img.id);
    }
}
