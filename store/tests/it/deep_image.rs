//! Images of many layers: up to `MAX_LAYERS` load, unpack and mount (the
//! short links named relative to their directory keep the kernel's
//! one-page option limit at bay); one more is refused before anything is
//! unpacked.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use rbk_store::compress::Compression;
use rbk_store::digest::Digest;
use rbk_store::images::MAX_LAYERS;
use rbk_store::oci::{
    Descriptor, ImageConfig, Index, Manifest, RootFs, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_MANIFEST,
};
use rbk_store::snapshot::{overlay_supported, OverlaySnapshotter, Snapshotter};
use rbk_store::unpack::{unpack_layers, LayerRef, UnpackError};
use rbk_store::{archive, layer, Store, StoreError};

/// An OCI archive of one image of `n` layers, layer `i` holding file
/// `f<i>`: (archive, manifest, config).
fn deep_archive(n: usize) -> (Vec<u8>, Manifest, ImageConfig) {
    let (tar, manifest, config, _) = deep_image(n);
    (tar, manifest, config)
}

/// [`deep_archive`], and every blob of it.
fn deep_image(n: usize) -> (Vec<u8>, Manifest, ImageConfig, Vec<Vec<u8>>) {
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join(format!("f{i}")), i.to_string()).unwrap();
        let mut tar = Vec::new();
        layer::tar_dir(src.path(), &mut tar, Compression::None).unwrap();
        let d = Digest::of(&tar);
        layers.push(Descriptor::new(
            MEDIA_TYPE_OCI_LAYER,
            d.clone(),
            tar.len() as u64,
        ));
        diff_ids.push(d.clone());
        blobs.push((d, tar));
    }
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
        ..Default::default()
    };
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_desc = Descriptor::new(
        MEDIA_TYPE_OCI_CONFIG,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    blobs.push((config_desc.digest.clone(), config_bytes));
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
        config: config_desc,
        layers,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut top = Descriptor::new(
        MEDIA_TYPE_OCI_MANIFEST,
        Digest::of(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    top.annotations.insert(
        "io.containerd.image.name".into(),
        "docker.io/library/deep:latest".into(),
    );
    blobs.push((top.digest.clone(), manifest_bytes));
    let index = Index {
        schema_version: 2,
        manifests: vec![top],
        ..Default::default()
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &serde_json::to_vec(&index).unwrap());
    for (d, data) in &blobs {
        add(&format!("blobs/sha256/{}", d.hex()), data);
    }
    let mut out = tar.into_inner().unwrap();
    out.flush().unwrap();
    (
        out,
        manifest,
        config,
        blobs.into_iter().map(|b| b.1).collect(),
    )
}

fn unpack(
    store: &Store,
    snap: &dyn Snapshotter,
    m: &Manifest,
    c: &ImageConfig,
) -> Result<Option<String>, UnpackError> {
    let refs: Vec<LayerRef<'_>> = m
        .layers
        .iter()
        .zip(&c.rootfs.diff_ids)
        .map(|(blob, diff_id)| LayerRef { blob, diff_id })
        .collect();
    unpack_layers(store, snap, &refs, |_| Ok::<(), UnpackError>(()), || false)
}

/// A store under a path as long as `/var/lib/rbk`'s or longer, so the
/// short links' absolute paths alone would not fit one page.
fn long_store(t: &Path) -> std::path::PathBuf {
    t.join("a-store-root-under-a-rather-long-directory-name")
}

#[test]
fn an_image_of_one_layer_too_many_is_refused_before_unpacking() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&long_store(t.path())).unwrap();
    let (tar, manifest, config) = deep_archive(MAX_LAYERS + 1);
    let err = archive::load(&store, &tar[..]).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooManyLayers {
                layers: 129,
                max: 128,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at most 128"), "{err}");
    assert!(store.read_index().unwrap().manifests.is_empty());
    // Nor unpacked, should it come by another way: not one snapshot made.
    let snap = OverlaySnapshotter::open(&store.root().join("snapshots")).unwrap();
    let err = unpack(&store, &snap, &manifest, &config).unwrap_err();
    assert!(
        matches!(err, UnpackError::Store(StoreError::TooManyLayers { .. })),
        "{err}"
    );
    assert!(snap.list().unwrap().is_empty());
}

#[test]
fn a_pulled_image_of_one_layer_too_many_is_never_tagged() {
    // What a pull does once it has the blobs: list the manifest in the
    // index (store/src/registry/ calls this).
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let (_, manifest, _, blobs) = deep_image(MAX_LAYERS + 1);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let desc = Descriptor::new(
        MEDIA_TYPE_OCI_MANIFEST,
        Digest::of(&bytes),
        bytes.len() as u64,
    );
    let r = rbk_store::Reference::parse("example.com/deep:1").unwrap();
    let err = store
        .add_to_index_after(&[(desc, vec![r])], || {
            for b in &blobs {
                store.content.put(b)?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::TooManyLayers { .. }), "{err}");
    assert!(store.read_index().unwrap().manifests.is_empty());
}

#[test]
fn an_image_of_the_most_layers_loads_unpacks_and_mounts() {
    let test = "an_image_of_the_most_layers_loads_unpacks_and_mounts";
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&long_store(t.path())).unwrap();
    let (tar, manifest, config) = deep_archive(MAX_LAYERS);
    archive::load(&store, &tar[..]).unwrap();
    let snap = OverlaySnapshotter::open(&store.root().join("snapshots")).unwrap();
    let top = unpack(&store, &snap, &manifest, &config).unwrap();
    let mounts = snap.view("v", top.as_deref()).unwrap();
    let data: usize = mounts[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        data > rbk_store::mount::page_size(),
        "the test must exceed one page with absolute paths ({data})"
    );
    if !overlay_supported() {
        eprintln!("SKIPPED: {test} [mount]: needs root and overlayfs");
        return;
    }
    let mp = tempfile::tempdir().unwrap();
    let guard = rbk_store::mount::mount_all(&mounts, mp.path()).unwrap();
    for i in [0, 64, MAX_LAYERS - 1] {
        assert_eq!(
            std::fs::read_to_string(mp.path().join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
    guard.unmount().unwrap();
}
