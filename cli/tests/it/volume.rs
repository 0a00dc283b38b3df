//! Named volumes, as Docker's local driver: `-v NAME:/path` makes one on
//! first use, seeded from the image; `rbk volume create|ls|inspect|rm|prune`.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;

use crate::build::rbk;
use crate::containers::{ok, text, BusyboxStore};

#[test]
fn a_named_volume_is_seeded_kept_and_removed_when_unused() {
    let Some(b) = BusyboxStore::new("a_named_volume_is_seeded_kept_and_removed") else {
        return;
    };
    let store = &b.store;
    // First use: made, seeded with the image's /etc, written to.
    let out = ok(
        store,
        &[
            "run",
            "--rm",
            "-v",
            "conf:/etc",
            "localhost/busybox:latest",
            "sh",
            "-c",
            "cat /etc/passwd; echo kept > /etc/added",
        ],
    );
    assert_eq!(out, "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(ok(store, &["volume", "ls", "-q"]), "conf\n");
    let data = store.join("volumes/conf/_data");
    assert_eq!(
        std::fs::read_to_string(data.join("added")).unwrap(),
        "kept\n"
    );
    // Another container finds it; :ro is read-only.
    let ro = rbk(store)
        .args([
            "run",
            "--rm",
            "-v",
            "conf:/etc:ro",
            "localhost/busybox:latest",
            "sh",
            "-c",
            "cat /etc/added; echo x > /etc/y",
        ])
        .output()
        .unwrap();
    assert_eq!(ro.status.code(), Some(1), "{}", text(&ro));
    assert_eq!(String::from_utf8_lossy(&ro.stdout), "kept\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(store, &["volume", "inspect", "conf"])).unwrap();
    assert_eq!(inspect[0]["Name"], "conf");
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Mountpoint"], data.to_str().unwrap());
    // In use by a container on record: rm refuses.
    b.run_detached("user", &["-v", "conf:/data"], &["sleep", "60"]);
    let busy = rbk(store).args(["volume", "rm", "conf"]).output().unwrap();
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    assert!(text(&busy).contains("volume is in use"), "{}", text(&busy));
    let pruned = ok(store, &["volume", "prune", "-f"]);
    assert!(!pruned.contains("conf"), "{pruned}");
    ok(store, &["rm", "-f", "user"]);
    assert_eq!(ok(store, &["volume", "rm", "conf"]), "conf\n");
    assert!(!store.join("volumes/conf").exists());
    let missing = rbk(store).args(["volume", "rm", "conf"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing).contains("no such volume: conf"));
}

#[test]
fn volume_prune_asks_first_and_spares_nothing_in_use() {
    let Some(b) = BusyboxStore::new("volume_prune_asks_first") else {
        return;
    };
    let store = &b.store;
    assert_eq!(ok(store, &["volume", "create", "a1"]), "a1\n");
    assert_eq!(
        ok(store, &["volume", "create", "a1"]),
        "a1\n",
        "create is idempotent"
    );
    let anonymous = ok(store, &["volume", "create"]);
    assert!(ok(store, &["volume", "ls"]).contains(anonymous.trim()));
    let bad = rbk(store)
        .args(["volume", "create", "no/slash"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    // Without -f it asks; "n" keeps everything.
    let mut no = rbk(store)
        .args(["volume", "prune"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    no.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let no = no.wait_with_output().unwrap();
    assert!(no.status.success(), "{}", text(&no));
    assert!(text(&no).contains("Are you sure"), "{}", text(&no));
    assert_eq!(ok(store, &["volume", "ls", "-q"]).lines().count(), 2);
    let yes = ok(store, &["volume", "prune", "-f"]);
    assert!(
        yes.contains("Deleted Volumes:") && yes.contains("a1"),
        "{yes}"
    );
    assert!(yes.contains("Total reclaimed space:"), "{yes}");
    assert_eq!(ok(store, &["volume", "ls", "-q"]), "");
}
