//! The rpm scanner against a database written by rpm itself (Debian's
//! `rpm` package: rpmbuild + `rpm --justdb`, sqlite backend). Skips loudly
//! where rpm is not installed; CI installs it.

use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_real_sqlite_rpmdb_lists_its_packages() {
    if !have("rpmbuild") || !have("rpm") {
        eprintln!("SKIPPED a_real_sqlite_rpmdb_lists_its_packages: rpm/rpmbuild not installed (apt-get install rpm)");
        return;
    }
    let top = tempfile::tempdir().unwrap();
    let spec = top.path().join("hello.spec");
    std::fs::write(
        &spec,
        "Name: rbk-hello\nVersion: 1.2\nRelease: 3\nEpoch: 2\nSummary: t\nLicense: MIT\nBuildArch: noarch\n%description\nt\n%files\n",
    )
    .unwrap();
    let ok = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.path().display()))
        .args(["-bb", "--quiet"])
        .arg(&spec)
        .status()
        .unwrap();
    assert!(ok.success());
    let rpm = top.path().join("RPMS/noarch/rbk-hello-1.2-3.noarch.rpm");
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("var/lib/rpm");
    std::fs::create_dir_all(&db).unwrap();
    let run = |args: &[&str]| {
        let s = Command::new("rpm")
            .arg("--dbpath")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    };
    run(&["--initdb"]);
    run(&["-i", "--justdb", "--nodeps", rpm.to_str().unwrap()]);
    assert!(Path::new(&db.join("rpmdb.sqlite")).exists());
    let before: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let pkgs = rbk_attest::sbom::rpm::scan(root.path()).unwrap();
    let got: Vec<_> = pkgs
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(got, [("rbk-hello", "2:1.2-3")]);
    assert_eq!(pkgs[0].license.as_deref(), Some("MIT"));
    assert_eq!(pkgs[0].arch.as_deref(), Some("noarch"));
    let after: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "the scan wrote nothing into the image");
}
