//! `/etc/os-release` (falling back to `/usr/lib/os-release`): which
//! distribution an image is.

use std::path::Path;

use super::{read_below, ScanError};

/// The fields of os-release an SBOM uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `fedora`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), if set.
    pub version_id: Option<String>,
    /// `PRETTY_NAME`, if set.
    pub pretty_name: Option<String>,
}

/// Reads os-release below `root`; `None` when the image has none.
pub fn read(root: &Path) -> Result<Option<OsRelease>, ScanError> {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        if let Some(bytes) = read_below(root, rel)? {
            return Ok(Some(parse(&String::from_utf8_lossy(&bytes))));
        }
    }
    Ok(None)
}

/// Parses os-release's `KEY=value` lines (values optionally quoted).
pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = unquote(v.trim());
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_ID" => os.version_id = Some(v),
            "PRETTY_NAME" => os.pretty_name = Some(v),
            _ => {}
        }
    }
    os
}

fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_quoted_and_bare_values() {
        let os = super::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n# c\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
