//! Layers written when first read (`rbk_store::content::lazy`): from the snapshot
//! that holds them, verified, kept; a snapshot that no longer makes the
//! digest is refused; a layer whose snapshots are gone is missing.
#![allow(clippy::unwrap_used)]

use std::fs;

use rbk_store::compress::Compression;
use rbk_store::content::lazy::{self, Source};
use rbk_store::snapshot::SnapshotterKind;
use rbk_store::snapshot::{CopySnapshotter, Snapshotter};
use rbk_store::{Digest, Store};

/// A store with one committed copy snapshot (a few files, no parent)
/// recorded as the source of its own uncompressed layer; returns the
/// layer's digest and size.
fn store_with_lazy_layer(store: &Store) -> (CopySnapshotter, Digest, u64) {
    let snap = CopySnapshotter::open(&store.root().join("snapshots")).unwrap();
    snap.prepare("build", None).unwrap();
    let fs_dir = snap.upper_dir("build").unwrap();
    fs::create_dir_all(fs_dir.join("etc")).unwrap();
    fs::write(fs_dir.join("etc/app.conf"), "answer=42\n").unwrap();
    fs::write(fs_dir.join("big"), vec![7u8; 300_000]).unwrap();
    let info = snap
        .diff("build", &mut std::io::sink(), Compression::None.into())
        .unwrap();
    let name = info.diff_id.hex().to_string();
    snap.commit(&name, "build").unwrap();
    let source = Source {
        snapshot: name,
        kind: SnapshotterKind::Copy,
        clamp_mtime: None,
    };
    lazy::record(&store.content, &info.digest, info.size, source).unwrap();
    (snap, info.digest, info.size)
}

#[test]
fn a_lazy_layer_is_written_from_its_snapshot_when_read_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_snap, digest, size) = store_with_lazy_layer(&store);
    let blob = store.content.path(&digest);
    assert!(store.content.has(&digest));
    assert_eq!(store.content.size(&digest).unwrap(), size);
    assert!(!blob.exists(), "not written before anything reads it");
    let bytes = store.content.read(&digest).unwrap();
    assert_eq!(Digest::of(&bytes), digest);
    assert_eq!(bytes.len() as u64, size);
    assert!(blob.is_file(), "kept once written");
}

#[test]
fn a_snapshot_that_no_longer_makes_the_layer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (snap, digest, _) = store_with_lazy_layer(&store);
    // The snapshot's files change behind the store's back.
    let fs_dir = snap.upper_dir(digest.hex()).unwrap();
    fs::write(fs_dir.join("etc/app.conf"), "answer=43\n").unwrap();
    let err = store.content.read(&digest).unwrap_err();
    let chain = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(chain.contains(digest.hex()), "{chain}");
    assert!(
        !store.content.path(&digest).exists(),
        "nothing stored under a digest its bytes do not have"
    );
}

#[test]
fn a_lazy_layer_whose_snapshots_are_gone_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (snap, digest, _) = store_with_lazy_layer(&store);
    snap.remove(digest.hex()).unwrap();
    assert!(!store.content.has(&digest));
    assert!(store.content.read(&digest).is_err());
}
