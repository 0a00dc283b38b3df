//! Resolving `--chown=user:group` against an image's `/etc/passwd` and
//! `/etc/group`.

use std::path::Path;

use crate::context::resolve_in_root;

use super::FileOpError;

/// Resolves a `--chown` value (`user`, `user:group`, `uid`, `uid:gid`,
/// `:group`, in any mix of names and numbers) to numeric ids, reading names
/// from the rootfs's `/etc/passwd` and `/etc/group` (resolved inside
/// `rootfs`, so a symlinked `/etc` cannot point the lookup outside it).
///
/// The rules are BuildKit's (checked side by side in tests/differential):
/// a user *name* without a group gets the user's primary group from
/// `/etc/passwd`; a numeric uid without a group gets the same number as
/// gid; an empty user (`:group`) is root; an empty group (`user:`) is as if
/// none were given. Unlike BuildKit, which silently falls back to root, a
/// name missing from the image is an error: a typo must not give root's
/// ownership.
pub fn resolve_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), FileOpError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    if user.is_empty() && group.is_none() {
        return Err(FileOpError::BadChown {
            spec: spec.to_string(),
            why: "no user or group".to_string(),
        });
    }
    // `root` is 0 without a lookup, as in BuildKit: a linked COPY's layer
    // (made on nothing) and a scratch image have no /etc/passwd.
    let (uid, primary_gid) = if user.is_empty() || user == "root" {
        (0, 0)
    } else if let Ok(uid) = user.parse::<u32>() {
        (uid, uid)
    } else {
        let fields = lookup(rootfs, "/etc/passwd", user, spec)?;
        (fields.0, fields.1.unwrap_or(fields.0))
    };
    let gid = match group {
        None => primary_gid,
        Some("root") => 0,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(rootfs, "/etc/group", g, spec)?.0,
        },
    };
    Ok((uid, gid))
}

/// Finds `name` in a passwd- or group-format file (`name:x:id:gid:...`):
/// its id and, for passwd, its primary group.
fn lookup(
    rootfs: &Path,
    file: &str,
    name: &str,
    spec: &str,
) -> Result<(u32, Option<u32>), FileOpError> {
    let what = if file.ends_with("passwd") {
        "user"
    } else {
        "group"
    };
    let missing = || FileOpError::BadChown {
        spec: spec.to_string(),
        why: format!("unable to find {what} {name}: no matching entries in {file}"),
    };
    let path = resolve_in_root(rootfs, file, true).map_err(|_| missing())?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(source) => {
            return Err(FileOpError::Io {
                op: "read",
                path,
                source,
            })
        }
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            let id = fields.nth(1)?.trim().parse::<u32>().ok()?;
            let gid = fields.next().and_then(|g| g.trim().parse::<u32>().ok());
            Some((id, gid))
        })
        .ok_or_else(missing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let r = |s: &str| resolve_chown(dir.path(), s);
        // A name alone: the user's primary group; a number alone: itself.
        assert_eq!(r("app").unwrap(), (1000, 1001));
        assert_eq!(r("app:").unwrap(), (1000, 1001));
        assert_eq!(r(":staff").unwrap(), (0, 50));
        assert_eq!(r(":77").unwrap(), (0, 77));
        assert_eq!(r("app:staff").unwrap(), (1000, 50));
        assert_eq!(r("12:34").unwrap(), (12, 34));
        assert_eq!(r("7").unwrap(), (7, 7));
        assert_eq!(r("app:9").unwrap(), (1000, 9));
        let err = r("nobody").unwrap_err().to_string();
        assert!(err.contains("unable to find user nobody"), "{err}");
        assert!(r("app:nogroup").is_err());
        assert!(r(":").is_err());
    }
}
