//! Our layer tars against GNU tar, both ways.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use rbk_store::compress::Compression;
use rbk_store::layer::{self, ApplyMode};

use super::layer::{describe, rich_tree};

fn gnu_tar() -> bool {
    let ok = Command::new("tar")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU tar"));
    if !ok {
        eprintln!("SKIPPED: layer interop tests need GNU tar");
    }
    ok
}

fn tar_flags() -> Vec<&'static str> {
    let mut f = vec!["--xattrs", "--xattrs-include=*", "--numeric-owner"];
    if rbk_store::process::is_root() {
        f.push("--same-owner");
    }
    f
}

#[test]
fn gnu_tar_extracts_our_layer_identically() {
    if !gnu_tar() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dst).unwrap();
    rich_tree(&src);
    let layer_path = t.path().join("layer.tar");
    layer::tar_dir(
        &src,
        fs::File::create(&layer_path).unwrap(),
        Compression::None,
    )
    .unwrap();
    let st = Command::new("tar")
        .args(["-xpf"])
        .arg(&layer_path)
        .arg("-C")
        .arg(&dst)
        .args(tar_flags())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(describe(&src), describe(&dst));
}

#[test]
fn we_apply_gnu_tar_archives_identically() {
    if !gnu_tar() {
        return;
    }
    for format in ["gnu", "pax"] {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        rich_tree(&src);
        let out = Command::new("tar")
            .arg(format!("--format={format}"))
            .args(["-cf", "-", "-C"])
            .arg(&src)
            .args(tar_flags())
            .arg(".")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        layer::apply(&out.stdout[..], &dst, ApplyMode::Merge).unwrap();
        let (a, b) = (describe(&src), describe(&dst));
        // GNU format has no place for xattrs; compare those only for pax.
        let strip = |m: std::collections::BTreeMap<std::path::PathBuf, String>| {
            m.into_iter()
                .map(|(k, v)| (k, v.split(" xattrs=").next().unwrap_or("").to_string()))
                .collect::<Vec<_>>()
        };
        if format == "pax" {
            assert_eq!(a, b, "{format}");
        } else {
            assert_eq!(strip(a), strip(b), "{format}");
        }
        assert!(Path::new(&dst.join("bin/busybox")).exists());
    }
}
