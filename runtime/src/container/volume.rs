//! Volumes, as Docker's `local` driver keeps them, and the `-v` requests
//! that name them.
//!
//! A named volume is `<store>/volumes/NAME/` holding its content in `_data`
//! and `volume.json` (when it was made). The first container that mounts an
//! empty volume seeds it with what its image has at that path, as Docker
//! does (see [`super::binds`]). Containers' anonymous volumes live beside
//! them as `<id>-<n>` (12 hex digits, a dash, a number), a shape no volume
//! name may take.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ContainerError;
use crate::sandbox::BindMount;

/// One `-v` request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// A host path bound at a container path.
    Bind(BindMount),
    /// An anonymous volume at a container path.
    Anonymous(String),
    /// A named volume (`NAME:/path[:ro]`), made on first use.
    Named {
        /// The volume's name.
        name: String,
        /// The container path.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
}

/// What `volume.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    created: String,
}

/// Where volumes live (anonymous ones too).
pub fn dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// The content directory of volume `name`.
pub fn data(root: &Path, name: &str) -> PathBuf {
    dir(root).join(name).join("_data")
}

/// Whether `name` is a volume name (Docker's rule,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`) and not the shape of an anonymous one.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    first_ok && rest_ok && !is_anonymous(name)
}

/// `<container id>-<n>`: a container's anonymous volume.
fn is_anonymous(name: &str) -> bool {
    name.split_once('-').is_some_and(|(id, n)| {
        id.len() == 12
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Creates volume `name` unless it exists; returns whether it is new.
pub fn create(root: &Path, name: &str) -> Result<bool, ContainerError> {
    if !valid_name(name) {
        return Err(ContainerError::InvalidVolumeName {
            name: name.to_string(),
        });
    }
    let d = data(root, name);
    if d.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(&d).map_err(|e| ContainerError::io("create volume", &d, e))?;
    let meta = dir(root).join(name).join("volume.json");
    let json = serde_json::to_vec(&Meta {
        created: super::now(),
    })
    .map_err(std::io::Error::other)
    .and_then(|json| std::fs::write(&meta, json));
    json.map_err(|e| ContainerError::io("write", &meta, e))?;
    Ok(true)
}

/// When volume `name` was made, RFC 3339 (empty when unknown).
pub fn created(root: &Path, name: &str) -> String {
    std::fs::read(dir(root).join(name).join("volume.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        .map(|m| m.created)
        .unwrap_or_default()
}

/// Every named volume, by name.
pub fn names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_data").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    names
}

/// Removes volume `name`; returns the bytes it held.
pub fn remove(root: &Path, name: &str) -> Result<u64, ContainerError> {
    let d = dir(root).join(name);
    let size = super::disk_usage(&d.join("_data"));
    std::fs::remove_dir_all(&d).map_err(|e| ContainerError::io("remove volume", &d, e))?;
    Ok(size)
}

/// The names of the named volumes among `-v` flags.
pub fn named_volumes(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            let (host, target) = (parts.next()?, parts.next()?);
            let named = !host.starts_with('/')
                && !host.starts_with('.')
                && target.starts_with('/')
                && valid_name(host);
            named.then(|| host.to_string())
        })
        .collect()
}

/// `/a/b/` and `a/b` both mean `/a/b` inside the container.
pub fn normalize_target(t: &str) -> String {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else if trimmed.starts_with('/') {
        trimmed.into()
    } else {
        format!("/{trimmed}")
    }
}

fn invalid(spec: &str, reason: String) -> ContainerError {
    ContainerError::InvalidVolume {
        spec: spec.to_string(),
        reason,
    }
}

/// Parses `HOST:CONTAINER[:ro|:rw]` or `CONTAINER`. Like Docker, a missing
/// host directory is created.
pub fn parse(spec: &str) -> Result<Volume, ContainerError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [target] => return anonymous(spec, target),
        [host, target] => (*host, *target, "rw"),
        [host, target, mode] => (*host, *target, *mode),
        _ => return Err(invalid(spec, "expected HOST:CONTAINER[:ro]".into())),
    };
    let readonly = match mode {
        "ro" => true,
        "rw" | "" => false,
        other => {
            return Err(invalid(
                spec,
                format!("unknown mode {other:?} (use ro or rw)"),
            ))
        }
    };
    if !target.starts_with('/') {
        return Err(invalid(
            spec,
            format!("the container path {target:?} must be absolute"),
        ));
    }
    if !host.starts_with('/') && !host.starts_with('.') {
        if !valid_name(host) {
            return Err(invalid(spec, format!("{host:?} is neither a host path (absolute or ./relative) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")));
        }
        return Ok(Volume::Named {
            name: host.to_string(),
            target: normalize_target(target),
            readonly,
        });
    }
    let host = PathBuf::from(host);
    if !host.exists() {
        std::fs::create_dir_all(&host)
            .map_err(|e| ContainerError::io("create volume source", &host, e))?;
    }
    let source = std::fs::canonicalize(&host)
        .map_err(|e| ContainerError::io("use volume source", &host, e))?;
    Ok(Volume::Bind(BindMount {
        source,
        target: normalize_target(target),
        readonly,
    }))
}

fn anonymous(spec: &str, target: &str) -> Result<Volume, ContainerError> {
    if !target.starts_with('/') {
        return Err(invalid(
            spec,
            "expected HOST:CONTAINER[:ro] or an absolute container path".into(),
        ));
    }
    Ok(Volume::Anonymous(normalize_target(target)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_and_leave_anonymous_ones_alone() {
        for good in ["db", "my_vol.1", "a-b", "0data", "abcdef012345-x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a", "-x", ".x", "a/b", "a b", "abcdef012345-0", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn volumes_parse_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            parse(&format!("{host}:/data/:ro")).unwrap(),
            Volume::Bind(BindMount {
                source: real.clone(),
                target: "/data".into(),
                readonly: true
            })
        );
        assert!(matches!(
            parse(&format!("{host}:/d")).unwrap(),
            Volume::Bind(BindMount {
                readonly: false,
                ..
            })
        ));
        assert_eq!(
            parse("/var/lib/x/").unwrap(),
            Volume::Anonymous("/var/lib/x".into())
        );
        let missing = dir.path().join("new/sub");
        parse(&format!("{}:/m", missing.display())).unwrap();
        assert!(missing.is_dir(), "a missing host directory is created");
        assert_eq!(
            parse("named:/data:ro").unwrap(),
            Volume::Named {
                name: "named".into(),
                target: "/data".into(),
                readonly: true
            }
        );
        assert_eq!(
            named_volumes(&["db:/d".into(), "/h:/x".into(), "/y".into()]),
            ["db"]
        );
        for bad in [
            "n/x:/data",
            "a:/data",
            "rel",
            &format!("{host}:data"),
            &format!("{host}:/d:xx"),
            "a:b:c:d",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
