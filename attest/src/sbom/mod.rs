//! What is installed in an image's filesystem: the distribution
//! (`/etc/os-release`) and the packages its package managers recorded —
//! dpkg ([`dpkg`]: Debian, Ubuntu, distroless's `status.d`), apk ([`apk`]:
//! Alpine) and rpm ([`rpm`]: the rpmdb's headers, in its sqlite or ndb
//! form).
//!
//! The scanners read the databases as files below a root; nothing from the
//! image runs. A database that is present but cannot be read is an error
//! naming it, never a silently empty inventory.

pub mod apk;
pub mod dpkg;
pub mod osrelease;
pub mod rpm;

use std::path::{Path, PathBuf};

pub use osrelease::OsRelease;

/// Which package manager recorded a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Manager {
    /// Debian's dpkg.
    Deb,
    /// Alpine's apk.
    Apk,
    /// rpm.
    Rpm,
}

impl Manager {
    /// The package-URL type (`pkg:deb/…`).
    pub fn purl_type(self) -> &'static str {
        match self {
            Manager::Deb => "deb",
            Manager::Apk => "apk",
            Manager::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    /// Who recorded it.
    pub manager: Manager,
    /// Its name.
    pub name: String,
    /// Its version as the manager writes it (`1.2-3`, `2:1.0-1`, `1.0-r2`).
    pub version: String,
    /// Its architecture (`amd64`, `x86_64`, `all`, `noarch`), if recorded.
    pub arch: Option<String>,
    /// The source package it was built from, if different and recorded.
    pub source: Option<String>,
    /// The maintainer or packager, if recorded.
    pub supplier: Option<String>,
    /// The declared license, if the database records one (apk, rpm).
    pub license: Option<String>,
}

/// Why an inventory could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A package database could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A package database is not in the form expected.
    #[error("{}: {why}", .path.display())]
    Format {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// What an image's filesystem holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The distribution, if `/etc/os-release` (or `/usr/lib/os-release`)
    /// says.
    pub os: Option<OsRelease>,
    /// Its packages, sorted, without duplicates.
    pub packages: Vec<Package>,
}

impl Inventory {
    /// Scans the filesystem below `root` (an unpacked image or a merged
    /// overlay mount). Symlinks in the database paths are not followed out
    /// of `root`: the files are read by their paths below it only.
    pub fn scan(root: &Path) -> Result<Inventory, ScanError> {
        let os = osrelease::read(root)?;
        let mut packages = dpkg::scan(root)?;
        packages.extend(apk::scan(root)?);
        packages.extend(rpm::scan(root)?);
        packages.sort();
        packages.dedup();
        Ok(Inventory { os, packages })
    }

    /// The packages of `self` that `before` does not have (same name and
    /// version): what a layer installed or upgraded.
    pub fn added_since<'a>(&'a self, before: &Inventory) -> Vec<&'a Package> {
        self.packages
            .iter()
            .filter(|p| before.packages.binary_search(p).is_err())
            .collect()
    }
}

/// Reads `rel` below `root` if it is a regular file (not a symlink, which
/// could point out of the image); `None` when absent.
pub(crate) fn read_below(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, ScanError> {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => std::fs::read(&path)
            .map(Some)
            .map_err(|source| ScanError::Read { path, source }),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ScanError::Read { path, source }),
    }
}

/// The names in directory `rel` below `root`, sorted; empty when absent.
pub(crate) fn list_below(root: &Path, rel: &str) -> Result<Vec<String>, ScanError> {
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ScanError::Read { path, source }),
    }
    let rd = std::fs::read_dir(&path).map_err(|source| ScanError::Read {
        path: path.clone(),
        source,
    })?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|source| ScanError::Read {
            path: path.clone(),
            source,
        })?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_since_is_what_is_new_or_upgraded() {
        let p = |n: &str, v: &str| Package {
            manager: Manager::Deb,
            name: n.into(),
            version: v.into(),
            arch: None,
            source: None,
            supplier: None,
            license: None,
        };
        let before = Inventory {
            os: None,
            packages: vec![p("a", "1"), p("b", "1")],
        };
        let after = Inventory {
            os: None,
            packages: vec![p("a", "1"), p("b", "2"), p("c", "1")],
        };
        let added: Vec<&str> = after
            .added_since(&before)
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(added, ["b", "c"]);
    }

    #[test]
    fn a_symlinked_database_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::os::unix::fs::symlink(
            "/var/lib/dpkg/status",
            dir.path().join("var/lib/dpkg/status"),
        )
        .unwrap();
        assert_eq!(read_below(dir.path(), "var/lib/dpkg/status").unwrap(), None);
    }
}
