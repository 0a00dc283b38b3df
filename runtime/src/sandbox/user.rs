//! Resolves a Dockerfile `USER` / `rbk run -u` string against the image's own
//! `/etc/passwd` and `/etc/group`, the way Docker (runc) does.
//!
//! The files are read through [`resolve_in_root`](super::rootfs::resolve_in_root)
//! so a symlinked `/etc/passwd` in an image can never make us read a host file.

use std::path::{Path, PathBuf};

use super::rootfs::resolve_in_root;
use super::SandboxError;

/// The identity a command runs as, after resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Supplementary group ids (from `/etc/group` memberships when the group
    /// was not given explicitly, as Docker does).
    pub groups: Vec<u32>,
    /// Home directory from `/etc/passwd` (`/` when unknown); used for `HOME`.
    pub home: String,
}

/// One `/etc/passwd` entry (only the fields we use).
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// One `/etc/group` entry (only the fields we use).
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) in
/// `rootfs`. Unknown names are errors; unknown numeric ids are accepted with
/// a primary group of 0, like Docker.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ExecUser, SandboxError> {
    let passwd = read_db(rootfs, "/etc/passwd")?
        .map(|text| parse_passwd(&text))
        .unwrap_or_default();
    let groups = read_db(rootfs, "/etc/group")?
        .map(|text| parse_group(&text))
        .unwrap_or_default();
    resolve_with(&passwd, &groups, user)
}

fn resolve_with(
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
    user: &str,
) -> Result<ExecUser, SandboxError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            SandboxError::UnknownUser {
                user: user.to_string(),
                name: user_part.to_string(),
                file: "/etc/passwd",
            }
        })?),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user_part.parse::<u32>().unwrap_or(0),
    };
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let (gid, supplementary) = match group_part {
        Some(g) if !g.is_empty() => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups
                    .iter()
                    .find(|e| e.name == g)
                    .map(|e| e.gid)
                    .ok_or_else(|| SandboxError::UnknownUser {
                        user: user.to_string(),
                        name: g.to_string(),
                        file: "/etc/group",
                    })?,
            };
            // An explicit group replaces the implicit memberships (runc's rule).
            (gid, Vec::new())
        }
        _ => {
            let gid = entry.map(|e| e.gid).unwrap_or(0);
            let mut sup: Vec<u32> = match entry {
                Some(e) => groups
                    .iter()
                    .filter(|g| g.members.contains(&e.name))
                    .map(|g| g.gid)
                    .collect(),
                None => Vec::new(),
            };
            sup.sort_unstable();
            sup.dedup();
            (gid, sup)
        }
    };
    let mut all_groups = vec![gid];
    all_groups.extend(supplementary.into_iter().filter(|g| *g != gid));
    Ok(ExecUser {
        uid,
        gid,
        groups: all_groups,
        home,
    })
}

/// Reads a database file inside the rootfs; `None` when it does not exist.
fn read_db(rootfs: &Path, path: &str) -> Result<Option<String>, SandboxError> {
    let host: PathBuf = resolve_in_root(rootfs, path)?;
    match std::fs::read(&host) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(source) => Err(SandboxError::Io {
            op: "read",
            path: host,
            source,
        }),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        broken line\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n";

    fn resolve(user: &str) -> Result<ExecUser, SandboxError> {
        resolve_with(&parse_passwd(PASSWD), &parse_group(GROUP), user)
    }

    #[test]
    fn table() {
        // (user string, uid, gid, groups, home)
        let cases: &[(&str, u32, u32, &[u32], &str)] = &[
            ("", 0, 0, &[0, 10], "/root"),
            ("root", 0, 0, &[0, 10], "/root"),
            ("0", 0, 0, &[0, 10], "/root"),
            ("app", 1000, 1000, &[1000, 10, 50], "/home/app"),
            ("1000", 1000, 1000, &[1000, 10, 50], "/home/app"),
            ("app:staff", 1000, 50, &[50], "/home/app"),
            ("app:4242", 1000, 4242, &[4242], "/home/app"),
            ("1234", 1234, 0, &[0], "/"),
            ("1234:5678", 1234, 5678, &[5678], "/"),
            ("nobody", 65534, 65534, &[65534], "/nonexistent"),
            (":10", 0, 10, &[10], "/root"),
        ];
        for (user, uid, gid, groups, home) in cases {
            let got = resolve(user).unwrap();
            assert_eq!(
                got,
                ExecUser {
                    uid: *uid,
                    gid: *gid,
                    groups: groups.to_vec(),
                    home: home.to_string()
                },
                "user {user:?}"
            );
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = resolve("ghost").unwrap_err().to_string();
        assert!(
            err.contains("ghost") && err.contains("/etc/passwd"),
            "{err}"
        );
        let err = resolve("app:ghosts").unwrap_err().to_string();
        assert!(
            err.contains("ghosts") && err.contains("/etc/group"),
            "{err}"
        );
    }

    #[test]
    fn missing_files_allow_numeric_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve_user(dir.path(), "42:43").unwrap();
        assert_eq!((u.uid, u.gid), (42, 43));
        assert!(resolve_user(dir.path(), "app").is_err());
    }
}
