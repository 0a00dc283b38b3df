//! `rbk system df` and `rbk system prune`, in Docker's words: what takes
//! space, and freeing what no container uses.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::containers::{ok, BusyboxStore};

/// The `df` row of `kind`: TOTAL and ACTIVE.
fn counts(store: &Path, kind: &str) -> (usize, usize) {
    let df = ok(store, &["system", "df"]);
    let line = df
        .lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} row:\n{df}"));
    let nums: Vec<usize> = line[kind.len()..]
        .split_whitespace()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn system_df_counts_and_system_prune_frees_what_nothing_uses() {
    let Some(b) = BusyboxStore::new("system_df_counts_and_system_prune_frees") else {
        return;
    };
    let store = &b.store;
    b.run_detached("up", &["-v", "used:/data"], &["sleep", "60"]);
    b.run_detached("down", &[], &["true"]);
    ok(store, &["volume", "create", "spare"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ok(store, &["ps", "-q"]).lines().count() > 1 {
        assert!(std::time::Instant::now() < deadline, "down never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let df = ok(store, &["system", "df"]);
    assert!(
        df.starts_with("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"),
        "{df}"
    );
    assert_eq!(counts(store, "Images"), (1, 1));
    assert_eq!(counts(store, "Containers"), (2, 1));
    assert_eq!(counts(store, "Local Volumes"), (2, 1));
    assert!(df.contains("Build Cache"), "{df}");
    // Without --volumes volumes stay; the image is in use even with -a.
    let pruned = ok(store, &["system", "prune", "-a", "-f"]);
    assert!(pruned.contains("Deleted Containers:"), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(counts(store, "Containers"), (1, 1));
    assert_eq!(counts(store, "Images"), (1, 1));
    assert_eq!(counts(store, "Local Volumes"), (2, 1));
    let pruned = ok(store, &["system", "prune", "--volumes", "-f"]);
    assert!(pruned.contains("Deleted Volumes:\nspare\n"), "{pruned}");
    assert_eq!(counts(store, "Local Volumes"), (1, 1));
    // Once nothing uses it, -a takes the image too.
    ok(store, &["rm", "-f", "up"]);
    let pruned = ok(store, &["system", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("untagged: localhost/busybox:latest"),
        "{pruned}"
    );
    assert_eq!(counts(store, "Images"), (0, 0));
    assert_eq!(ok(store, &["images", "-q"]), "");
}
