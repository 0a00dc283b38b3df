//! Rootless rbk: run by a user who is not root, rbk re-runs itself as root
//! of a new user namespace whose ids map to the user (0) and to the user's
//! subordinate ranges in `/etc/subuid` and `/etc/subgid` (1…N), written by
//! Debian's `newuidmap`/`newgidmap` (package `uidmap`), as podman and
//! buildah do. Inside, builds work as they do as root: overlay mounts with
//! `userxattr`, chown to any mapped id (a file chowned to 1000 in a build is
//! 1000 in the layer), namespaces for RUN. The store defaults to
//! `$XDG_DATA_HOME/rbk` (`~/.local/share/rbk`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One subordinate id range: `start`, `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First host id.
    pub start: u64,
    /// How many.
    pub count: u64,
}

/// The ranges of `user` (name or numeric id) in a subuid/subgid file's
/// text, in file order.
pub fn ranges_in(text: &str, user: &str, uid: u32) -> Vec<Range> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let matches = who == user || who.parse::<u32>().is_ok_and(|n| n == uid);
            matches.then_some(())?;
            Some(Range {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// The user's name, from /etc/passwd (for the subordinate id files).
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

/// A tool on the PATH, or in the usual system directories.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    crate::env::path()
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([
            "/usr/bin".into(),
            "/bin".into(),
            "/usr/sbin".into(),
            "/sbin".into(),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The map arguments for `newuidmap PID …`: own id to 0, each range after.
fn map_args(own: u32, ranges: &[Range]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut next = 1u64;
    for r in ranges {
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += r.count;
    }
    args
}

/// Re-runs this rbk as root of a user namespace (see the module doc) and
/// returns its exit code. `root` is the store to use.
pub fn reexec(root: &Path) -> Result<i32> {
    let (uid, gid) = crate::sys::real_ids();
    let name = user_name(uid).unwrap_or_else(|| uid.to_string());
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let (uids, gids) = (
        ranges_in(&read("/etc/subuid"), &name, uid),
        ranges_in(&read("/etc/subgid"), &name, uid),
    );
    if uids.is_empty() || gids.is_empty() {
        bail!(
            "rbk runs rootless in a user namespace, but {name} has no subordinate ids in \
             /etc/subuid and /etc/subgid; as root, give it a range: \
             usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
        );
    }
    let (Some(newuidmap), Some(newgidmap)) = (find_tool("newuidmap"), find_tool("newgidmap"))
    else {
        bail!(
            "rbk runs rootless with newuidmap and newgidmap: install them (apt-get install uidmap)"
        );
    };
    let exe = std::fs::read_link("/proc/self/exe").context("cannot find rbk's own binary")?;
    let args: Vec<OsString> = std::env::args_os().collect();
    let env = [("RBK_ROOT", root.as_os_str().to_os_string())];
    let child = crate::sys::fork_into_user_namespace(&exe, &args, &env)
        .context("cannot create a user namespace for rootless rbk")?;
    for (tool, own, ranges) in [(&newuidmap, uid, &uids), (&newgidmap, gid, &gids)] {
        let out = Command::new(tool)
            .arg(child.pid().to_string())
            .args(map_args(own, ranges))
            .output()
            .with_context(|| format!("cannot run {}", tool.display()))?;
        if !out.status.success() {
            bail!(
                "{} refused the id map: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(child.release_and_wait()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_uid_and_maps_in_order() {
        let text = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\nalice:500000:0\n";
        assert_eq!(
            ranges_in(text, "alice", 1000),
            vec![Range {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(ranges_in(text, "carol", 1001).len(), 1);
        assert!(ranges_in(text, "dave", 1002).is_empty());
        let r = [
            Range {
                start: 100000,
                count: 10,
            },
            Range {
                start: 300000,
                count: 5,
            },
        ];
        assert_eq!(
            map_args(1000, &r),
            ["0", "1000", "1", "1", "100000", "10", "11", "300000", "5"]
        );
    }
}
