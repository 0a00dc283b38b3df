//! Content store, image index (tags, resolve, rmi, prune) and locking.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use rbk_store::cache::{BuildCache, CacheRecord};
use rbk_store::images::{PruneOptions, RemoveEvent};
use rbk_store::oci::{self, Descriptor, ImageConfig, RootFs};
use rbk_store::{ContentStore, Digest, Reference, Store, StoreError};

/// A one-layer image whose layer is `payload` (stored as an "uncompressed
/// layer": the store does not look inside).
pub fn make_image(store: &Store, payload: &[u8], created: &str, tags: &[&str]) -> rbk_store::Image {
    image_with(store, payload, "amd64", Some(created), tags)
}

/// A one-layer linux image of `arch` whose layer is `payload`, with `tags`.
fn image_with(
    store: &Store,
    payload: &[u8],
    arch: &str,
    created: Option<&str>,
    tags: &[&str],
) -> rbk_store::Image {
    let layer = store.content.put(payload).unwrap();
    let config = ImageConfig {
        created: created.map(str::to_string),
        architecture: arch.into(),
        os: "linux".into(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.clone()],
        },
        ..Default::default()
    };
    let desc = Descriptor::new(oci::MEDIA_TYPE_OCI_LAYER, layer, payload.len() as u64);
    let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
    store.commit_image(&config, &[desc], &tags).unwrap()
}

fn index_text(root: &Path) -> String {
    fs::read_to_string(root.join("index.json")).unwrap_or_default()
}

#[test]
fn corrupted_blob_error_names_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ContentStore::open(dir.path()).unwrap();
    let d = cs.put(b"some layer bytes").unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(cs.path(&d))
        .unwrap();
    f.write_all(b"X").unwrap();
    drop(f);
    let err = cs.read(&d).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    assert!(err.to_string().contains(d.as_str()), "{err}");
    // Streaming reads fail at EOF too.
    let mut r = cs.open_blob(&d).unwrap();
    let e = r.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains(d.as_str()), "{e}");
    // A missing blob says so, with the digest.
    let missing = Digest::of(b"nope");
    let err = cs.read(&missing).unwrap_err().to_string();
    assert!(
        err.contains("not in the store") && err.contains(missing.as_str()),
        "{err}"
    );
}

#[test]
fn concurrent_writers_of_same_and_different_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let cs = ContentStore::open(dir.path()).unwrap();
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let cs = cs.clone();
            s.spawn(move || {
                for j in 0..20u8 {
                    // Half the writers race on identical content.
                    let data = if j % 2 == 0 {
                        vec![j; 10_000]
                    } else {
                        vec![i, j]
                    };
                    let mut w = cs.writer().unwrap();
                    w.write_all(&data).unwrap();
                    let (d, n) = w.commit(None).unwrap();
                    assert_eq!(d, Digest::of(&data));
                    assert_eq!(n, data.len() as u64);
                    assert_eq!(cs.read(&d).unwrap(), data);
                }
            });
        }
    });
    assert_eq!(cs.list().unwrap().len(), 10 + 8 * 10);
    assert_eq!(
        fs::read_dir(cs.tmp_dir()).unwrap().count(),
        0,
        "staging files left over"
    );
}

#[test]
fn tmp_leftovers_are_swept_only_when_no_one_else_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = ContentStore::open(dir.path()).unwrap();
    let junk = dir.path().join("tmp").join("blob-crashed");
    fs::write(&junk, b"half").unwrap();
    let second = ContentStore::open(dir.path()).unwrap();
    assert!(junk.exists(), "swept while another process held the store");
    drop((first, second));
    let _third = ContentStore::open(dir.path()).unwrap();
    assert!(!junk.exists(), "crash leftover not swept");
}

#[test]
fn tag_resolve_untag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = make_image(&store, b"layer-a", "2024-01-01T00:00:00Z", &["busybox"]);
    assert!(index_text(dir.path()).contains("docker.io/library/busybox:latest"));
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        img.id.as_str(),
        img.id.hex(),
        img.id.short(),
        &img.id.hex()[..4],
        img.manifest_digest.as_str(),
        &format!("busybox@{}", img.manifest_digest),
    ] {
        assert_eq!(store.resolve(name).unwrap().id, img.id, "{name}");
    }
    let err = store.resolve("nginx").unwrap_err().to_string();
    assert!(err.contains("no such image: nginx"), "{err}");

    store
        .tag(&img, &Reference::parse("localhost/bb:1").unwrap())
        .unwrap();
    let tags: Vec<String> = store
        .resolve("busybox")
        .unwrap()
        .tags
        .iter()
        .map(|t| t.familiar())
        .collect();
    assert_eq!(tags, ["busybox:latest", "localhost/bb:1"]);

    store.untag(&Reference::parse("busybox").unwrap()).unwrap();
    store
        .untag(&Reference::parse("localhost/bb:1").unwrap())
        .unwrap();
    // Untagged but still listed, as <none>.
    let all = store.list().unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].tags.is_empty());
    let err = store
        .untag(&Reference::parse("busybox").unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such tag: busybox:latest"), "{err}");
}

#[test]
fn tagging_again_what_is_tagged_leaves_the_index_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = make_image(&store, b"layer-a", "2024-01-01T00:00:00Z", &["busybox"]);
    let index = dir.path().join("index.json");
    let inode = || std::fs::metadata(&index).unwrap().ino();
    let before = (inode(), index_text(dir.path()));
    // What a no-op rebuild does: the same image under the same name.
    let name = Reference::parse("busybox").unwrap();
    store.tag(&img, &name).unwrap();
    assert_eq!((inode(), index_text(dir.path())), before, "not rewritten");
    // A change is still written (atomically: a new file renamed in).
    store
        .tag(&img, &Reference::parse("localhost/bb:1").unwrap())
        .unwrap();
    assert_ne!(inode(), before.0);
    assert!(index_text(dir.path()).contains("localhost/bb:1"));
}

#[test]
fn retag_leaves_previous_image_dangling() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = make_image(&store, b"a", "2024-01-01T00:00:00Z", &["app"]);
    let b = make_image(&store, b"b", "2024-01-02T00:00:00Z", &["app"]);
    assert_eq!(store.resolve("app").unwrap().id, b.id);
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, b.id, "newest first");
    assert_eq!(list[1].id, a.id);
    assert!(list[1].tags.is_empty());
}

#[test]
fn rmi_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = make_image(&store, b"x", "2024-01-01T00:00:00Z", &["one", "two"]);
    // By id with two tags: refused without force.
    let err = store.remove(img.id.short(), false).unwrap_err();
    assert!(matches!(err, StoreError::ImageHasTags { .. }), "{err}");
    assert!(err.to_string().contains("one:latest"), "{err}");
    // By tag: only untags while another tag is left.
    let ev = store.remove("one", false).unwrap();
    assert_eq!(
        ev,
        vec![RemoveEvent::Untagged(Reference::parse("one").unwrap())]
    );
    // Last tag: untag and delete.
    let ev = store.remove("two", false).unwrap();
    assert_eq!(
        ev,
        vec![
            RemoveEvent::Untagged(Reference::parse("two").unwrap()),
            RemoveEvent::Deleted(img.id.clone())
        ]
    );
    assert!(store.list().unwrap().is_empty());
    // Forced removal by id of a multi-tagged image.
    let img = make_image(&store, b"y", "2024-01-01T00:00:00Z", &["p", "q"]);
    let ev = store.remove(img.id.as_str(), true).unwrap();
    assert_eq!(ev.len(), 3);
    assert!(store.list().unwrap().is_empty());
    let err = store.remove("ghost", false).unwrap_err().to_string();
    assert!(err.contains("ghost"), "{err}");
}

#[test]
fn prune_keeps_what_tags_and_cache_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = make_image(&store, b"kept", "2024-01-01T00:00:00Z", &["kept"]);
    let gone = make_image(&store, b"gone", "2024-01-01T00:00:00Z", &["gone"]);
    let cached = store.content.put(b"cached layer").unwrap();
    let cached_chain = Digest::of(b"cached chain");
    store
        .cache
        .put(&CacheRecord {
            key: "k".into(),
            family: "f".into(),
            layer: Some(Descriptor::new(
                oci::MEDIA_TYPE_OCI_LAYER_GZIP,
                cached.clone(),
                12,
            )),
            diff_id: None,
            chain_id: Some(cached_chain.clone()),
            config: None,
            inputs: serde_json::Value::Null,
            created: "2024-01-01T00:00:00Z".into(),
        })
        .unwrap();
    let orphan = store.content.put(b"orphan").unwrap();
    // Snapshots: one per image layer chain, one for the cache, one stray,
    // and one not named by a chain id (in progress), which must survive.
    for chain in [
        &kept.chain_ids()[0],
        &gone.chain_ids()[0],
        &cached_chain,
        &Digest::of(b"stray"),
    ] {
        let fs_dir = store.snapshot_dir(chain).join("fs");
        fs::create_dir_all(&fs_dir).unwrap();
        fs::write(fs_dir.join("f"), b"12345").unwrap();
    }
    let active = dir.path().join("snapshots").join("active-1");
    fs::create_dir_all(&active).unwrap();

    store.remove("gone", false).unwrap();
    let report = store.prune(PruneOptions::default()).unwrap();
    assert!(report.blobs.contains(&orphan));
    assert!(report.blobs.contains(&gone.id));
    assert!(report.blobs.contains(&gone.manifest_digest));
    assert_eq!(report.snapshots.len(), 2);
    assert!(report.reclaimed >= 10);
    assert!(store.content.has(&cached));
    assert!(store.content.has(&kept.manifest_digest));
    assert!(store.snapshot_dir(&kept.chain_ids()[0]).exists());
    assert!(store.snapshot_dir(&cached_chain).exists());
    assert!(!store.snapshot_dir(&gone.chain_ids()[0]).exists());
    assert!(active.exists());
    assert_eq!(store.resolve("kept").unwrap().id, kept.id);

    let report = store.prune(PruneOptions { cache: true }).unwrap();
    assert_eq!(report.cache_records, 1);
    assert!(!store.content.has(&cached));
    assert!(store.content.has(&kept.id));
}

#[test]
fn a_killed_lock_holder_releases_the_lock() {
    // A child process takes the exclusive lock with flock(1) and is killed.
    if std::process::Command::new("flock")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: flock(1) not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lock = dir.path().join("lock");
    let mut child = std::process::Command::new("flock")
        .arg("-x")
        .arg("-o")
        .arg(&lock)
        .arg("sleep")
        .arg("3")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // Would hang forever if the lock survived its holder.
    make_image(&store, b"after kill", "2024-01-01T00:00:00Z", &["x"]);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn store_types_are_shareable_across_threads() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Store>();
    check::<ContentStore>();
    check::<rbk_store::CacheIndex>();
}

#[test]
fn concurrent_index_updates_lose_no_tag() {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for i in 0..6 {
            let root = dir.path().to_path_buf();
            s.spawn(move || {
                // Each thread opens its own Store, as separate processes do.
                let store = Store::open(&root).unwrap();
                for j in 0..5 {
                    let tag = format!("t{i}-{j}");
                    make_image(&store, tag.as_bytes(), "2024-01-01T00:00:00Z", &[&tag]);
                }
            });
        }
    });
    let store = Store::open(dir.path()).unwrap();
    let images = store.list().unwrap();
    assert_eq!(images.len(), 30);
    for i in 0..6 {
        for j in 0..5 {
            store.resolve(&format!("t{i}-{j}")).unwrap();
        }
    }
}

/// A one-layer image of `arch` (linux), untagged.
fn image_of(store: &Store, payload: &[u8], arch: &str) -> rbk_store::Image {
    image_with(store, payload, arch, None, &[])
}

#[test]
fn platforms_added_at_once_to_one_name_all_land_and_prune_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let name = Reference::parse("multi:1").unwrap();
    let archs = ["amd64", "arm64", "riscv64", "s390x", "ppc64le", "386"];
    std::thread::scope(|s| {
        for arch in archs {
            let root = dir.path().to_path_buf();
            let name = name.clone();
            s.spawn(move || {
                let store = Store::open(&root).unwrap();
                let image = image_of(&store, arch.as_bytes(), arch);
                store.add_platform(&name, &image).unwrap();
            });
        }
    });
    let store = Store::open(dir.path()).unwrap();
    let multi = store.resolve("multi:1").unwrap();
    let mut have = multi.index.as_ref().unwrap().present_platforms();
    have.sort();
    let mut want: Vec<String> = archs.iter().map(|a| format!("linux/{a}")).collect();
    want.sort();
    assert_eq!(have, want);
    // One name, no nameless per-platform entries.
    assert_eq!(store.list().unwrap().len(), 1);
    // Each platform's image by platform and by its own id.
    for arch in archs {
        let p: oci::PlatformSpec = format!("linux/{arch}").parse().unwrap();
        let img = store.resolve_for("multi:1", Some(&p)).unwrap();
        assert_eq!(img.config.architecture, arch);
        assert_eq!(store.resolve(img.id.as_str()).unwrap().id, img.id);
    }
    // Replacing a platform keeps the others; prune keeps every image the
    // index holds, and drops the replaced one.
    let old = store
        .resolve_for("multi:1", Some(&"linux/arm64".parse().unwrap()))
        .unwrap();
    let new = image_of(&store, b"arm64 v2", "arm64");
    let after = store.add_platform(&name, &new).unwrap();
    assert_eq!(after.index.as_ref().unwrap().present_platforms().len(), 6);
    let report = store.prune(PruneOptions::default()).unwrap();
    assert!(report.blobs.contains(&old.manifest_digest), "{report:?}");
    for arch in archs {
        let p: oci::PlatformSpec = format!("linux/{arch}").parse().unwrap();
        let img = store.resolve_for("multi:1", Some(&p)).unwrap();
        for l in &img.manifest.layers {
            assert!(store.content.has(&l.digest), "{arch}");
        }
    }
    let check = rbk_store::check::check(&store, rbk_store::check::CheckOptions::default()).unwrap();
    assert!(check.findings.is_empty(), "{check:?}");
}

const CHILD_ENV: &str = "RBK_TEST_CHILD_STORE";

/// Not a test on its own: the body of the child process that
/// `sigkill_at_any_point_leaves_a_usable_store` kills.
#[test]
#[ignore = "run as a child process by sigkill_at_any_point_leaves_a_usable_store"]
fn child_writes_forever() {
    let Some(root) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&root)).unwrap();
    for i in 0u64.. {
        let payload = vec![(i % 251) as u8; 200_000 + i as usize];
        make_image(
            &store,
            &payload,
            "2024-01-01T00:00:00Z",
            &["victim", &format!("v{}", i % 3)],
        );
        if i % 4 == 0 {
            let _ = store.prune(PruneOptions::default());
        }
    }
}

#[test]
fn sigkill_at_any_point_leaves_a_usable_store() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for delay_ms in [50u64, 120, 200, 330, 470] {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "content::child_writes_forever",
                "--nocapture",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // The next user finds a consistent store: the index parses, every
        // listed image reads back with verified blobs, tmp/ is swept.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        for image in store.list().unwrap() {
            for l in &image.manifest.layers {
                store.content.read(&l.digest).unwrap();
            }
        }
        make_image(&store, b"survivor", "2024-01-01T00:00:00Z", &["survivor"]);
        drop(store);
    }
    let store = Store::open(dir.path()).unwrap();
    assert!(
        store.resolve("victim").is_ok(),
        "the child never committed anything, so nothing was tested"
    );
}

#[test]
fn prune_spares_what_another_process_leases() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mine = store
        .content
        .put(b"an orphan of the pruning process")
        .unwrap();
    // Stands in for a running build: a layer whose cache record is not
    // written yet, leased by the process that wrote it.
    let other = Store::open(dir.path()).unwrap();
    let theirs = other
        .content
        .put(b"a layer whose cache record is not written yet")
        .unwrap();
    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.blobs, vec![mine.clone()]);
    assert!(store.content.has(&theirs));
    drop(other);
    let report = store.prune(PruneOptions::default()).unwrap();
    assert_eq!(report.blobs, vec![theirs.clone()]);
    assert!(!store.content.has(&theirs));
    assert!(
        fs::read_dir(dir.path().join("leases")).unwrap().count() <= 1,
        "only the pruning process's own lease may remain"
    );
}

#[test]
fn broken_image_is_named_in_errors_and_can_still_be_removed_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    make_image(&store, b"fine", "2024-01-01T00:00:00Z", &["fine"]);
    let broken = make_image(&store, b"broken", "2024-01-01T00:00:00Z", &["broken"]);
    fs::remove_file(store.content.path(&broken.id)).unwrap();
    // Listing leaves it apart, saying what is wrong, and shows the rest.
    let (images, damaged) = store.list_all().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].name(), "broken:latest");
    assert!(damaged[0].error.to_string().contains(broken.id.as_str()));
    assert_eq!(store.list().unwrap().len(), 1);
    // Its name says it is broken, and why.
    let err = store.resolve("broken").unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("broken:latest"), "{chain}");
    assert!(chain.contains(broken.id.as_str()), "{chain}");
    let ev = store.remove("broken", false).unwrap();
    assert_eq!(ev.last(), Some(&RemoveEvent::Deleted(broken.id.clone())));
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn resolving_a_whole_multi_platform_image_leases_every_platform() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let name = Reference::parse("multi:1").unwrap();
    let mut layers = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = image_of(&store, format!("{arch} layer").as_bytes(), arch);
        layers.push(image.manifest.layers[0].digest.clone());
        store.add_platform(&name, &image).unwrap();
    }
    // Another process (a `save` or `push`) takes the whole image...
    let reader = Store::open(dir.path()).unwrap();
    reader.resolve_leased("multi:1").unwrap();
    // ...while this one removes it and prunes: every platform's layer stays
    // until the reader is done, not only the one the name shows.
    store.remove("multi:1", false).unwrap();
    store.prune(PruneOptions::default()).unwrap();
    for l in &layers {
        assert!(store.content.has(l), "{l} pruned under a reader");
    }
    drop(reader);
    store.prune(PruneOptions::default()).unwrap();
    for l in &layers {
        assert!(!store.content.has(l), "{l} kept after the reader left");
    }
}
