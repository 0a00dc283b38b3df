//! dpkg's database: `/var/lib/dpkg/status` (RFC 822-style stanzas) and
//! distroless's `/var/lib/dpkg/status.d/*` (one stanza file per package).

use std::path::Path;

use super::{list_below, read_below, Manager, Package, ScanError};

/// The packages dpkg records as installed below `root`.
pub fn scan(root: &Path) -> Result<Vec<Package>, ScanError> {
    let mut out = Vec::new();
    if let Some(bytes) = read_below(root, "var/lib/dpkg/status")? {
        out.extend(parse(&String::from_utf8_lossy(&bytes)));
    }
    for name in list_below(root, "var/lib/dpkg/status.d")? {
        // distroless writes `<pkg>` and `<pkg>.md5sums`; only stanzas count
        if name.ends_with(".md5sums") {
            continue;
        }
        let rel = format!("var/lib/dpkg/status.d/{name}");
        if let Some(bytes) = read_below(root, &rel)? {
            out.extend(parse_stanzas(&String::from_utf8_lossy(&bytes), false));
        }
    }
    Ok(out)
}

/// The installed packages of a status file's text.
pub fn parse(text: &str) -> Vec<Package> {
    parse_stanzas(text, true)
}

/// `need_status`: the main status file lists removed and half-configured
/// packages too; only `install ok installed` ones are in the image.
fn parse_stanzas(text: &str, need_status: bool) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|stanza| package(stanza, need_status))
        .collect()
}

fn package(stanza: &str, need_status: bool) -> Option<Package> {
    let field = |key: &str| -> Option<String> {
        stanza.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (!l.starts_with([' ', '\t']) && k.eq_ignore_ascii_case(key))
                .then(|| v.trim().to_string())
        })
    };
    let name = field("Package")?;
    if need_status {
        let status = field("Status")?;
        if !status.ends_with(" installed") || !status.starts_with("install ") {
            return None;
        }
    }
    let version = field("Version")?;
    // `Source: name (version)` when the source version differs
    let source = field("Source")
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
        .filter(|s| !s.is_empty() && *s != name);
    Some(Package {
        manager: Manager::Deb,
        name,
        version,
        arch: field("Architecture"),
        source,
        supplier: field("Maintainer"),
        license: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: adduser\nStatus: install ok installed\nPriority: important\nArchitecture: all\nVersion: 3.134\nDescription: add users\n and groups\n .\n Package: not-a-field\nMaintainer: Debian Adduser Developers <adduser@packages.debian.org>\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n";

    #[test]
    fn installed_stanzas_only_with_their_fields() {
        let p = parse(STATUS);
        let names: Vec<_> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("adduser", "3.134"), ("libc6", "2.36-9+deb12u4")]);
        assert_eq!(p[1].source.as_deref(), Some("glibc"));
        assert_eq!(p[1].arch.as_deref(), Some("amd64"));
        assert_eq!(p[0].source, None);
    }

    #[test]
    fn distroless_status_d_counts_without_a_status_field() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("var/lib/dpkg/status.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("base-files"),
            "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n",
        )
        .unwrap();
        std::fs::write(d.join("base-files.md5sums"), "abc  etc/issue\n").unwrap();
        let p = scan(dir.path()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].version, "12.4");
    }
}
