//! Compressed variants of uncompressed layers: made once, reused through
//! their record, remade when `prune` took the blob, and a whole manifest
//! rewritten with them.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rbk_store::compress::Compression;
use rbk_store::images::PruneOptions;
use rbk_store::oci::{
    Descriptor, ImageConfig, RootFs, MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_ZSTD,
};
use rbk_store::{Digest, Image, Reference, Store};

/// A layer tar with one file of `size` pseudo-random-ish bytes.
pub(crate) fn layer_tar(seed: &str, size: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(seed.len() as u8 + 3) ^ (i / 251) as u8)
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, format!("{seed}.bin"), &data[..])
        .unwrap();
    tar.into_inner().unwrap()
}

/// Stores `tars` as uncompressed layers (media type `media_type`) of an
/// image tagged `name`.
pub(crate) fn uncompressed_image(
    store: &Store,
    name: &str,
    tars: &[Vec<u8>],
    media_type: &str,
) -> Image {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in tars {
        let d = store.content.put(t).unwrap();
        diff_ids.push(d.clone());
        layers.push(Descriptor::new(media_type, d, t.len() as u64));
    }
    let config = ImageConfig {
        architecture: "amd64".to_string(),
        os: "linux".to_string(),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids,
        },
        ..ImageConfig::default()
    };
    store
        .commit_image(&config, &layers, &[Reference::parse(name).unwrap()])
        .unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn record(store: &Store, algo: &str, diff_id: &Digest) -> PathBuf {
    store.root().join("variants").join(algo).join(diff_id.hex())
}

#[test]
fn a_variant_is_made_once_then_found_through_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = layer_tar("a", 3 << 20);
    let img = uncompressed_image(
        &store,
        "x/a",
        std::slice::from_ref(&tar),
        MEDIA_TYPE_OCI_LAYER,
    );
    let layer = &img.manifest.layers[0];
    assert_eq!(layer.digest, img.config.rootfs.diff_ids[0]);

    assert_eq!(
        store
            .cached_compressed_layer(layer, Compression::Gzip)
            .unwrap(),
        None
    );
    let gz = store.compressed_layer(layer, Compression::Gzip).unwrap();
    assert_eq!(gz.media_type, MEDIA_TYPE_OCI_LAYER_GZIP);
    let blob = store.content.read(&gz.digest).unwrap();
    assert_eq!(gz.size, blob.len() as u64);
    assert!(gz.size < tar.len() as u64 / 2, "{} bytes", gz.size);
    assert_eq!(gunzip(&blob), tar);

    // The record is there; a second call reads it and writes nothing.
    let rec = record(&store, "gzip", &layer.digest);
    let before = std::fs::metadata(&rec).unwrap();
    assert_eq!(
        store.compressed_layer(layer, Compression::Gzip).unwrap(),
        gz
    );
    let after = std::fs::metadata(&rec).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );

    // Proof that the answer comes from the record, not from compressing
    // again: point the record at another blob and it is what comes back.
    let other = store.content.put(b"not really gzip").unwrap();
    std::fs::write(
        &rec,
        format!(r#"{{"digest":"{other}","size":15}}"#).as_bytes(),
    )
    .unwrap();
    assert_eq!(
        store
            .compressed_layer(layer, Compression::Gzip)
            .unwrap()
            .digest,
        other
    );

    // zstd is a separate variant; none and compressed layers pass through.
    let zst = store.compressed_layer(layer, Compression::Zstd).unwrap();
    assert_eq!(zst.media_type, MEDIA_TYPE_OCI_LAYER_ZSTD);
    let plain = zstd::decode_all(&store.content.read(&zst.digest).unwrap()[..]).unwrap();
    assert_eq!(plain, tar);
    assert_eq!(
        &store.compressed_layer(layer, Compression::None).unwrap(),
        layer
    );
    assert_eq!(
        store.compressed_layer(&zst, Compression::Gzip).unwrap(),
        zst
    );
}

#[test]
fn a_variant_whose_blob_was_pruned_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = uncompressed_image(
        &store,
        "x/b",
        &[layer_tar("b", 200_000)],
        MEDIA_TYPE_OCI_LAYER,
    );
    let layer = &img.manifest.layers[0];
    let gz = store.compressed_layer(layer, Compression::Gzip).unwrap();
    // No manifest references the variant: prune takes it (and its record),
    // and keeps the image's own blobs.
    let rec = record(&store, "gzip", &layer.digest);
    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.blobs, vec![gz.digest.clone()]);
    assert!(store.content.has(&layer.digest));
    assert!(!rec.exists());
    // Made again, to the same bytes (gzip here is deterministic).
    let again = store.compressed_layer(layer, Compression::Gzip).unwrap();
    assert_eq!(again, gz);
    assert!(store.content.has(&gz.digest));

    // A record that outlived its blob (deleted by an older rbk's prune, or
    // by hand) is not trusted: the variant is made again.
    store.content.delete(&gz.digest).unwrap();
    assert!(rec.exists());
    assert_eq!(
        store
            .cached_compressed_layer(layer, Compression::Gzip)
            .unwrap(),
        None
    );
    assert_eq!(
        store.compressed_layer(layer, Compression::Gzip).unwrap(),
        gz
    );
    assert_eq!(
        gunzip(&store.content.read(&gz.digest).unwrap()),
        store.content.read(&layer.digest).unwrap()
    );
    assert_eq!(
        store
            .cached_compressed_layer(layer, Compression::Gzip)
            .unwrap(),
        Some(gz)
    );
}

#[test]
fn concurrent_callers_get_the_same_variant() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = uncompressed_image(
        &store,
        "x/c",
        &[layer_tar("c", 2 << 20)],
        MEDIA_TYPE_OCI_LAYER,
    );
    let layer = &img.manifest.layers[0];
    let got: Vec<Descriptor> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| store.compressed_layer(layer, Compression::Gzip).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|d| d == &got[0]), "{got:?}");
    assert!(store.content.has(&got[0].digest));
    // Nothing left half-written in the staging directory.
    assert_eq!(
        std::fs::read_dir(store.content.tmp_dir()).unwrap().count(),
        0
    );
}

#[test]
fn a_manifest_is_rewritten_with_compressed_layers_and_the_same_config() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t1 = layer_tar("one", 100_000);
    let t2 = layer_tar("two", 100_000);
    // The same layer twice, as images with a repeated step have.
    let img = uncompressed_image(
        &store,
        "x/m",
        &[t1.clone(), t2.clone(), t1.clone()],
        MEDIA_TYPE_OCI_LAYER,
    );
    let m = store
        .manifest_with_compression(&img, Compression::Gzip)
        .unwrap();
    assert_ne!(m.digest, img.manifest_digest);
    assert_eq!(Digest::of(&m.bytes), m.digest);
    assert_eq!(store.content.read(&m.digest).unwrap(), m.bytes);
    assert_eq!(m.manifest.config, img.manifest.config);
    assert_eq!(m.manifest.media_type, img.manifest.media_type);
    assert_eq!(m.manifest.layers[0], m.manifest.layers[2]);
    for (l, diff_id) in m.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
        assert_eq!(l.media_type, MEDIA_TYPE_OCI_LAYER_GZIP);
        let plain = gunzip(&store.content.read(&l.digest).unwrap());
        assert_eq!(&Digest::of(&plain), diff_id);
    }
    let mut want = vec![m.manifest.config.clone()];
    want.extend(m.manifest.layers.iter().cloned());
    assert_eq!(m.blobs, want);

    // Asking for no compression gives the stored manifest byte for byte.
    let same = store
        .manifest_with_compression(&img, Compression::None)
        .unwrap();
    assert_eq!(same.digest, img.manifest_digest);
    assert_eq!(
        same.bytes,
        store.content.read(&img.manifest_digest).unwrap()
    );

    // Compressing an already compressed manifest changes nothing.
    let pushed = store.image_by_manifest(&m.digest, Vec::new()).unwrap();
    let again = store
        .manifest_with_compression(&pushed, Compression::Gzip)
        .unwrap();
    assert_eq!(again.digest, m.digest);
}

#[test]
fn docker_layers_keep_docker_media_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = uncompressed_image(
        &store,
        "x/d",
        &[layer_tar("d", 10_000)],
        MEDIA_TYPE_DOCKER_LAYER,
    );
    let gz = store
        .compressed_layer(&img.manifest.layers[0], Compression::Gzip)
        .unwrap();
    assert_eq!(gz.media_type, MEDIA_TYPE_DOCKER_LAYER_GZIP);
}

#[test]
fn a_corrupt_layer_is_reported_not_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = uncompressed_image(
        &store,
        "x/e",
        &[layer_tar("e", 10_000)],
        MEDIA_TYPE_OCI_LAYER,
    );
    let layer = &img.manifest.layers[0];
    let path = store.content.path(&layer.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = store
        .compressed_layer(layer, Compression::Gzip)
        .unwrap_err();
    assert!(
        matches!(err, rbk_store::StoreError::Corrupt { .. }),
        "{err}"
    );
    assert!(!record(&store, "gzip", &layer.digest).exists());
}
