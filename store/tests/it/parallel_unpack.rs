//! Layers of one image unpacked side by side (overlay snapshotter): each
//! layer's snapshot is exactly what applying the layers one by one makes —
//! whiteouts, opaque directories, hard links, a layer whose parents only
//! its lower layers show — committed in order under the same chain ids;
//! a corrupt blob fails its layer and leaves the store sound.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rbk_store::check::{check, CheckOptions, Severity};
use rbk_store::compress::{self, Compression};
use rbk_store::digest::Digest;
use rbk_store::oci::{self, Descriptor, MEDIA_TYPE_OCI_LAYER};
use rbk_store::snapshot::{overlay_supported, OverlaySnapshotter, Snapshotter};
use rbk_store::unpack::{unpack_layers, LayerRef, UnpackError};
use rbk_store::{mount, Store};

use super::layer::describe;

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
}

/// A gzip'd layer tar of `entries`, and its diff id.
fn layer_of(entries: &[E<'_>]) -> (Vec<u8>, Digest) {
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
            E::File(p, data) => {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, p, data.as_bytes()).unwrap();
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

/// The image's layers: a base; one that deletes a file of it (whiteout),
/// replaces a directory (opaque) and copies up a file with a new hard
/// link to it; one whose entry's parents only the lower layers show (so
/// it must be applied over them); and one more plain layer on top.
fn layers() -> Vec<(Vec<u8>, Digest)> {
    vec![
        layer_of(&[
            E::Dir("a", 0o755),
            E::File("a/keep", "keep"),
            E::File("a/gone", "gone"),
            E::Dir("d", 0o755),
            E::File("d/old", "old"),
            E::Dir("d/sub", 0o755),
            E::File("d/sub/x", "x"),
            E::Dir("h", 0o755),
            E::File("h/base", "base"),
            E::Dir("e", 0o700),
        ]),
        layer_of(&[
            E::Dir("a", 0o755),
            E::File("a/.wh.gone", ""),
            E::Dir("d", 0o750),
            E::File("d/.wh..wh..opq", ""),
            E::File("d/new", "new"),
            E::Dir("h", 0o755),
            E::File("h/base", "base, copied up"),
            E::Link("h/link", "h/base"),
        ]),
        layer_of(&[E::File("e/deep/f", "under a parent from below")]),
        layer_of(&[
            E::File("top", "top"),
            E::Dir("a", 0o755),
            E::File("a/.wh.keep", ""),
        ]),
    ]
}

fn store_with(layers: &[(Vec<u8>, Digest)]) -> (tempfile::TempDir, Store, Vec<Descriptor>) {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let descs = layers
        .iter()
        .map(|(blob, _)| {
            let d = store.content.put(blob).unwrap();
            Descriptor::new(MEDIA_TYPE_OCI_LAYER, d, blob.len() as u64)
        })
        .collect();
    (t, store, descs)
}

fn unpack(
    store: &Store,
    snap: &dyn Snapshotter,
    descs: &[Descriptor],
    diff_ids: &[Digest],
) -> Result<Option<String>, UnpackError> {
    let refs: Vec<LayerRef<'_>> = descs
        .iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| LayerRef { blob, diff_id })
        .collect();
    unpack_layers(store, snap, &refs, |_| Ok::<(), UnpackError>(()), || false)
}

/// Every layer's snapshot dir, by chain id.
fn trees(snap: &dyn Snapshotter, diff_ids: &[Digest]) -> Vec<(String, BTreeMap<PathBuf, String>)> {
    oci::chain_ids(diff_ids)
        .iter()
        .map(|c| {
            let key = c.hex().to_string();
            let mut tree = describe(&snap.upper_dir(&key).unwrap());
            // A whiteout node's mtime is when it was made.
            for v in tree.values_mut().filter(|v| v.starts_with("special")) {
                let at = v.find(" mtime=").unwrap();
                let end = v[at + 1..].find(' ').map_or(v.len(), |e| at + 1 + e);
                v.replace_range(at..end, "");
            }
            (key, tree)
        })
        .collect()
}

/// The tree a read-only view of `top` shows, mounted.
fn rootfs(snap: &dyn Snapshotter, top: Option<&str>) -> BTreeMap<PathBuf, String> {
    let mounts = snap.view("rootfs-view", top).unwrap();
    let mp = tempfile::tempdir().unwrap();
    let guard = mount::mount_all(&mounts, mp.path()).unwrap();
    let tree = describe(mp.path());
    guard.unmount().unwrap();
    snap.remove("rootfs-view").unwrap();
    tree
}

fn skip(test: &str) -> bool {
    if !overlay_supported() {
        eprintln!("SKIPPED: {test}: needs root and a kernel with overlayfs");
        return true;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("SKIPPED: {test}: one core, layers are unpacked one by one");
        return true;
    }
    false
}

#[test]
fn layers_unpacked_side_by_side_are_the_layers_applied_in_order() {
    if skip("layers_unpacked_side_by_side_are_the_layers_applied_in_order") {
        return;
    }
    let layers = layers();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.1.clone()).collect();

    // Today's path, by hand: each layer applied over the ones below.
    let (_t1, s1, _) = store_with(&layers);
    let seq = OverlaySnapshotter::open(&s1.root().join("snapshots")).unwrap();
    let mut parent: Option<String> = None;
    for ((blob, diff_id), chain) in layers.iter().zip(oci::chain_ids(&diff_ids)) {
        let key = chain.hex().to_string();
        let mut plain = compress::decompress(&blob[..]).unwrap();
        seq.apply_layer(&key, parent.as_deref(), &mut plain, Some(diff_id))
            .unwrap();
        parent = Some(key);
    }

    let (_t2, s2, descs) = store_with(&layers);
    let par = OverlaySnapshotter::open(&s2.root().join("snapshots")).unwrap();
    let top = unpack(&s2, &par, &descs, &diff_ids).unwrap();
    assert_eq!(top, parent);
    assert_eq!(trees(&par, &diff_ids), trees(&seq, &diff_ids));
    // Parents as committed: the same chain.
    for chain in oci::chain_ids(&diff_ids) {
        let k = chain.hex().to_string();
        assert_eq!(par.stat(&k).unwrap().parent, seq.stat(&k).unwrap().parent);
    }
    // The rootfs both show, mounted: the same tree, meaning the layers.
    let par_root = rootfs(&par, top.as_deref());
    assert_eq!(par_root, rootfs(&seq, top.as_deref()));
    let names: Vec<&str> = par_root.keys().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        names,
        ["a", "d", "d/new", "e", "e/deep", "e/deep/f", "h", "h/base", "h/link", "top"]
    );
    assert!(par_root[Path::new("h/link")].contains("links-with=h/base"));
    assert!(par_root[Path::new("e")].contains("mode=700"));
    let report = check(&s2, CheckOptions::default()).unwrap();
    assert_eq!(report.problems(), 0, "{:?}", report.findings);
}

#[test]
fn a_layer_is_unpacked_ahead_only_when_it_needs_nothing_below() {
    if skip("a_layer_is_unpacked_ahead_only_when_it_needs_nothing_below") {
        return;
    }
    let layers = layers();
    let t = tempfile::tempdir().unwrap();
    let snap = OverlaySnapshotter::open(t.path()).unwrap();
    let stage = |i: usize| {
        let mut plain = compress::decompress(&layers[i].0[..]).unwrap();
        snap.stage_layer("k", &mut plain, Some(&layers[i].1), true)
            .unwrap()
    };
    // Whiteout, opaque dir and hard link: all within the layer itself.
    assert!(stage(1).is_some());
    assert!(stage(3).is_some());
    // `e/` comes from below (mode 0700, kept by the copy-up): not ahead.
    assert!(stage(2).is_none());
    // Nothing half-made is left behind.
    assert!(snap.list().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(t.path().join(".tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_corrupt_layer_blob_fails_that_layer_and_leaves_the_store_sound() {
    if skip("a_corrupt_layer_blob_fails_that_layer_and_leaves_the_store_sound") {
        return;
    }
    let layers = layers();
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.1.clone()).collect();
    let (_t, store, descs) = store_with(&layers);
    // Layer 1's blob damaged on disk after it was verified in.
    let bad = &descs[1].digest;
    let path = store.content.path(bad);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let (other, _) = layer_of(&[E::File("a/keep", "tampered")]);
    std::fs::write(&path, other).unwrap();
    let snap = OverlaySnapshotter::open(&store.root().join("snapshots")).unwrap();
    let err = unpack(&store, &snap, &descs, &diff_ids).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Apply { digest, .. } | UnpackError::Read { digest, .. } if digest == bad),
        "{err:?}"
    );
    assert!(err.to_string().contains(&bad.to_string()), "{err}");
    // Only the layer below is committed; nothing staged is left.
    let keys: Vec<String> = snap.list().unwrap().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, vec![oci::chain_ids(&diff_ids)[0].hex().to_string()]);
    let staged: Vec<_> = std::fs::read_dir(store.root().join("snapshots").join(".tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{staged:?}");
    // The damaged blob is reported as such, nothing else is wrong.
    let report = check(&store, CheckOptions::default()).unwrap();
    let wrong: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Unreachable)
        .collect();
    assert!(
        !wrong.is_empty() && wrong.iter().all(|f| f.subject.contains(bad.hex())),
        "{wrong:?}"
    );
}
