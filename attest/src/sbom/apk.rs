//! apk's database: `/lib/apk/db/installed`, stanzas of one-letter fields
//! (`P:` name, `V:` version, `A:` arch, `L:` license, `o:` origin, `m:`
//! maintainer).

use std::path::Path;

use super::{read_below, Manager, Package, ScanError};

/// The packages apk records as installed below `root`.
pub fn scan(root: &Path) -> Result<Vec<Package>, ScanError> {
    Ok(match read_below(root, "lib/apk/db/installed")? {
        Some(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        None => Vec::new(),
    })
}

/// The packages of an `installed` file's text.
pub fn parse(text: &str) -> Vec<Package> {
    text.split("\n\n").filter_map(package).collect()
}

fn package(stanza: &str) -> Option<Package> {
    let field = |key: &str| -> Option<String> {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let name = field("P:")?;
    let version = field("V:")?;
    let source = field("o:").filter(|o| *o != name);
    Some(Package {
        manager: Manager::Apk,
        name,
        version,
        arch: field("A:"),
        source,
        supplier: field("m:"),
        license: field("L:"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_name_version_arch_license_origin() {
        let p = super::parse(
            "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\nm:Natanael Copa <ncopa@alpinelinux.org>\nF:lib\nR:libc.musl-x86_64.so.1\n\nC:Q1def=\nP:busybox-binsh\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n",
        );
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].version.as_str()),
            ("musl", "1.2.4-r2")
        );
        assert_eq!(p[0].license.as_deref(), Some("MIT"));
        assert_eq!(p[0].source, None);
        assert_eq!(p[1].source.as_deref(), Some("busybox"));
    }
}
