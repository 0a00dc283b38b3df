//! The dpkg scanner against this machine's own database, compared with
//! `dpkg-query` (an independent reader): every installed package, with its
//! version. Skips loudly off Debian.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

#[test]
fn the_hosts_dpkg_database_matches_dpkg_query() {
    let q = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\\n"])
        .output();
    let Some(q) = q.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIPPED the_hosts_dpkg_database_matches_dpkg_query: no dpkg-query here");
        return;
    };
    let want: BTreeSet<(String, String)> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "ii").then(|| Some((w.next()?.to_string(), w.next()?.to_string())))?
        })
        .collect();
    assert!(want.len() > 50, "dpkg-query listed {} packages", want.len());
    let got: BTreeSet<(String, String)> = rbk_attest::sbom::dpkg::scan(Path::new("/"))
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.version))
        .collect();
    assert_eq!(got, want);
}
