//! `rbk sbom`: an image whose base layer holds a real dpkg database (this
//! machine's) and whose second layer, from a RUN, adds a package. The
//! SPDX document lists what `dpkg-query --admindir` (an independent
//! reader) lists, names the layer that installed each package, and
//! passes spdx-tools' validator.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::build::{store_with_busybox, tar_dir};
use crate::cache::ok;
use crate::rbk;

pub(crate) const STATUS: &str = "/var/lib/dpkg/status";

/// (name, version) of the installed packages dpkg-query reads in `admindir`.
pub(crate) fn dpkg_query(admindir: &Path) -> BTreeSet<(String, String)> {
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\\n"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "ii").then(|| Some((w.next()?.to_string(), w.next()?.to_string())))?
        })
        .collect()
}

/// Imports `localhost/deb:1` into `store`: this machine's dpkg database
/// and a Debian os-release, nothing else.
pub(crate) fn import_deb_base(dir: &Path, store: &Path) {
    let rootfs = dir.join("deb");
    std::fs::create_dir_all(rootfs.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy(STATUS, rootfs.join("var/lib/dpkg/status")).unwrap();
    std::fs::write(
        rootfs.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let tarball = dir.join("deb.tar");
    tar_dir(&rootfs, &tarball);
    ok(rbk(
        store,
        &["import", tarball.to_str().unwrap(), "localhost/deb:1"],
    ));
}

#[test]
fn the_sbom_lists_what_dpkg_query_lists_with_the_layer_of_each() {
    let test = "sbom::the_sbom_lists_what_dpkg_query_lists_with_the_layer_of_each";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    if !Path::new(STATUS).is_file() || crate::on_path("dpkg-query").is_none() {
        eprintln!("SKIPPED {test}: no dpkg database on this machine");
        return;
    }
    let store = dir.path().join("store");
    import_deb_base(dir.path(), &store);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:latest\nCOPY --from=localhost/deb:1 / /\n\
         RUN printf '\\nPackage: rbk-extra\\nStatus: install ok installed\\nVersion: 9.1-2\\nArchitecture: all\\n' >> /var/lib/dpkg/status\n",
    )
    .unwrap();
    ok(rbk(
        &store,
        &["build", "-t", "localhost/withdeb:1", ctx.to_str().unwrap()],
    ));
    let out = dir.path().join("sbom.json");
    ok(rbk(
        &store,
        &["sbom", "-o", out.to_str().unwrap(), "localhost/withdeb:1"],
    ));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    the_packages_are_dpkg_querys(&doc, dir.path());
    the_extra_package_is_the_last_layers(&doc, &store);
    validated_by_spdx_tools(test, &out);
}

fn the_packages_are_dpkg_querys(doc: &serde_json::Value, dir: &Path) {
    let admin = dir.join("admin");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(admin.join("updates")).unwrap();
    let mut status = std::fs::read_to_string(STATUS).unwrap();
    status.push_str(
        "\nPackage: rbk-extra\nStatus: install ok installed\nVersion: 9.1-2\nArchitecture: all\n",
    );
    std::fs::write(admin.join("status"), status).unwrap();
    let want = dpkg_query(&admin);
    let got: BTreeSet<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // the image itself
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(want.len() > 50, "dpkg-query listed {}", want.len());
    assert_eq!(got, want);
}

fn the_extra_package_is_the_last_layers(doc: &serde_json::Value, store: &Path) {
    let inspect = ok(rbk(store, &["image", "inspect", "localhost/withdeb:1"])).0;
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap().clone();
    let layer_of = |name: &str| -> String {
        let p = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        p["annotations"][0]["comment"].as_str().unwrap().to_string()
    };
    let last = layers.last().unwrap().as_str().unwrap();
    assert_eq!(layer_of("rbk-extra"), format!("layer {last}"));
    assert_ne!(
        layer_of("adduser"),
        format!("layer {last}"),
        "adduser came before the RUN"
    );
}

pub(crate) fn validated_by_spdx_tools(test: &str, file: &Path) {
    let tool = Path::new("/opt/rbk-test-venv/bin/pyspdxtools");
    if !tool.exists() {
        eprintln!("SKIPPED {test}: spdx-tools' validator (scripts/test.sh installs it)");
        return;
    }
    let out = Command::new(tool).arg("-i").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "pyspdxtools: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
