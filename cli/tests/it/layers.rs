//! A step's uncompressed layer is kept once: as its snapshot, the tar made
//! the first time something reads the blob (rbk_store::lazy).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::build::{rbk, store_with_busybox, succeed, write};

/// Builds `dockerfile` as `tag` and returns its top layer's digest hex.
fn build_top_layer(store: &Path, ctx: &Path, dockerfile: &str, tag: &str) -> String {
    write(ctx, &[("Dockerfile", dockerfile)]);
    succeed(rbk(store).args(["build", "-q", "-t", tag]).arg(ctx));
    let out = succeed(rbk(store).args(["inspect", tag]));
    let img = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone();
    let top = img["RootFS"]["Layers"].as_array().unwrap().last().unwrap();
    top.as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

#[test]
fn a_layer_is_written_when_first_read_and_goes_with_its_snapshot() {
    let test = "a_layer_is_written_when_first_read_and_goes_with_its_snapshot";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    let hex = build_top_layer(
        &store,
        &ctx,
        "FROM localhost/busybox:latest\nRUN busybox dd if=/dev/zero of=/big bs=1024 count=2048\n",
        "lazy:1",
    );
    let blob = store.join("blobs/sha256").join(&hex);
    // Committed as its snapshot only: no second copy of its 2 MiB.
    assert!(!blob.exists(), "{}", blob.display());
    assert!(store.join("lazy").join(&hex).exists());
    let check = succeed(rbk(&store).args(["system", "check"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("store is sound"));
    // Read (saved): written then, verified, kept.
    let archive = dir.path().join("lazy.tar");
    succeed(rbk(&store).args(["save", "-o"]).arg(&archive).arg("lazy:1"));
    assert!(blob.is_file());
    assert!(std::fs::metadata(&blob).unwrap().len() > 2 << 20);
    let check = succeed(rbk(&store).args(["system", "check"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("store is sound"));
    // The archive is whole: a fresh store runs it.
    let fresh = dir.path().join("fresh");
    succeed(rbk(&fresh).args(["load", "-i"]).arg(&archive));
    let out = succeed(rbk(&fresh).args(["run", "--rm", "lazy:1", "busybox", "wc", "-c", "/big"]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("2097152"));

    // Another image, never read: rmi and prune take its snapshot and its
    // record; the blob is then missing, as a deleted one would be.
    let hex = build_top_layer(
        &store,
        &ctx,
        "FROM localhost/busybox:latest\nRUN echo other > /other\n",
        "other:1",
    );
    assert!(store.join("lazy").join(&hex).exists());
    succeed(rbk(&store).args(["rmi", "other:1"]));
    succeed(rbk(&store).args(["prune", "-a"]));
    assert!(!store.join("lazy").join(&hex).exists());
    assert!(!store.join("blobs/sha256").join(&hex).exists());
    let check = succeed(rbk(&store).args(["system", "check"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("store is sound"));
}

#[test]
fn a_step_writes_through_a_volatile_overlay_and_its_layer_is_whole() {
    let test = "a_step_writes_through_a_volatile_overlay_and_its_layer_is_whole";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    if !rbk_store::mount::overlay_volatile_supported() {
        eprintln!("SKIPPED {test}: this kernel's overlay has no `volatile` option (Linux 5.10+)");
        return;
    }
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    // The step's own root is a volatile overlay (its fsyncs cost nothing,
    // and unmounting it does not wait for the disk); the commit syncs the
    // layer instead, and what it wrote is all there.
    build_top_layer(
        &store,
        &ctx,
        "FROM localhost/busybox:latest\nRUN busybox grep ' / / ' /proc/self/mountinfo > /root.mount && busybox dd if=/dev/zero of=/big bs=1024 count=4096 && busybox sync\n",
        "volatile:1",
    );
    let out =
        succeed(rbk(&store).args(["run", "--rm", "volatile:1", "busybox", "cat", "/root.mount"]));
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        line.contains(" overlay ") && line.contains("volatile"),
        "{line}"
    );
    let out =
        succeed(rbk(&store).args(["run", "--rm", "volatile:1", "busybox", "wc", "-c", "/big"]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("4194304"));
    let check = succeed(rbk(&store).args(["system", "check"]));
    assert!(String::from_utf8_lossy(&check.stdout).contains("store is sound"));
}
