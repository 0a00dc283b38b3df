//! Mounts: the only place in the store that performs them (`mount(2)`,
//! `umount2(2)`), in the manner of containerd's `core/mount`.
//!
//! A [`Mount`] is plain data; snapshotters only *compute* them, so they are
//! testable without root. [`mount_all`] turns them into kernel mounts and
//! hands back a guard that undoes them. This module knows nothing of
//! snapshots, layers or the store above it.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// A mount to perform, as plain data (containerd's shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    /// Filesystem type: `"overlay"` or `"bind"`.
    pub kind: String,
    /// What to mount (`"overlay"` or a directory for binds).
    pub source: PathBuf,
    /// Options: flags (`ro`, `rbind`, ...) and data (`lowerdir=...`).
    pub options: Vec<String>,
}

/// A mount that failed or could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount(2)` refused.
    #[error("cannot mount {kind} {} on {}: {source}", .source_path.display(), .target.display())]
    Mount {
        /// The mount type ("overlay", "bind").
        kind: String,
        /// The mount source.
        source_path: PathBuf,
        /// Where it was to be mounted.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The option string is longer than the kernel accepts (one page).
    #[error(
        "{kind} mount options for {} are {len} bytes, over the kernel's limit of {limit}; \
         the layer chain is too deep",
        .target.display()
    )]
    OptionsTooLong {
        /// The mount type.
        kind: String,
        /// Where it was to be mounted.
        target: PathBuf,
        /// Length of the option string.
        len: usize,
        /// The limit (page size minus the terminating NUL).
        limit: usize,
    },
    /// `umount2(2)` failed even with `MNT_DETACH`.
    #[error("cannot unmount {}: {source}", .target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
}

/// Mounts that are undone (in reverse order) when the guard is dropped, even
/// on an error path or a panic.
#[derive(Debug)]
#[must_use = "dropping the guard unmounts at once"]
pub struct MountGuard {
    targets: Vec<PathBuf>,
}

impl MountGuard {
    /// The mount point(s), innermost last.
    pub fn targets(&self) -> &[PathBuf] {
        &self.targets
    }

    /// Unmounts now and reports a failure instead of swallowing it.
    pub fn unmount(mut self) -> Result<(), MountError> {
        let targets = std::mem::take(&mut self.targets);
        let mut first_err = None;
        for t in targets.iter().rev() {
            if let Err(e) = unmount(t) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for t in self.targets.iter().rev() {
            // Nothing to report to from Drop; `unmount()` exists for callers
            // who want the error. A lazy detach already ran as the fallback.
            let _ = unmount(t);
        }
    }
}

/// Unmounts `target`, falling back to a lazy detach when it is busy so that a
/// leftover process cannot pin the build's mounts forever.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(_) => {
            nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| MountError::Unmount {
                target: target.to_path_buf(),
                source: e.into(),
            })
        }
    }
}

/// The mount points at or below `dir` in this process's mount namespace,
/// from `/proc/self/mountinfo` (its fifth field, octal escapes undone).
pub fn mounts_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts each of `mounts` on `target`, in order (later ones stack on top).
/// On failure, whatever was mounted so far is undone before returning.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<MountGuard, MountError> {
    let mut guard = MountGuard {
        targets: Vec::new(),
    };
    for m in mounts {
        mount_one(m, target)?;
        guard.targets.push(target.to_path_buf());
    }
    Ok(guard)
}

/// Splits mount options into kernel flags and the data string.
fn parse_options(options: &[String]) -> (MsFlags, Vec<&str>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            other => data.push(other),
        }
    }
    (flags, data)
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), MountError> {
    let err = |source: nix::Error| MountError::Mount {
        kind: m.kind.clone(),
        source_path: m.source.clone(),
        target: target.to_path_buf(),
        source: source.into(),
    };
    let (mut flags, data) = parse_options(&m.options);
    let data = data.join(",");
    let limit = page_size().saturating_sub(1);
    if data.len() > limit && m.kind == "overlay" {
        // Docker's overlay2 way: the lower dirs named relative to the one
        // directory of short links they share, from a process in it.
        if let Some((dir, short)) = relative_lowers(&data) {
            if short.len() <= limit {
                return crate::sys::mount_from(&dir, &m.source, target, &m.kind, flags, &short)
                    .map_err(err);
            }
        }
    }
    if data.len() > limit {
        return Err(MountError::OptionsTooLong {
            kind: m.kind.clone(),
            target: target.to_path_buf(),
            len: data.len(),
            limit,
        });
    }
    let data_arg = (!data.is_empty()).then_some(data.as_str());
    if m.kind == "bind" || flags.contains(MsFlags::MS_BIND) {
        flags |= MsFlags::MS_BIND;
        let ro = flags.contains(MsFlags::MS_RDONLY);
        // The kernel ignores MS_RDONLY on the initial bind; read-only takes a
        // remount of the new bind mount.
        nix::mount::mount(Some(&m.source), target, None::<&str>, flags, None::<&str>)
            .map_err(err)?;
        if ro {
            let re = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) = nix::mount::mount(None::<&str>, target, None::<&str>, re, None::<&str>)
            {
                let _ = unmount(target);
                return Err(err(e));
            }
        }
        Ok(())
    } else {
        nix::mount::mount(
            Some(&m.source),
            target,
            Some(m.kind.as_str()),
            flags,
            data_arg,
        )
        .map_err(err)
    }
}

/// The overlay data `data` with its lower dirs named relative to the
/// directory they all are in (the snapshotter's short links), and that
/// directory; `None` when they are not all in one.
fn relative_lowers(data: &str) -> Option<(PathBuf, String)> {
    let mut dir: Option<&Path> = None;
    let mut out = Vec::new();
    for opt in data.split(',') {
        let Some(list) = opt.strip_prefix("lowerdir=") else {
            out.push(opt.to_string());
            continue;
        };
        let mut names = Vec::new();
        for lower in list.split(':') {
            let p = Path::new(lower);
            let (parent, name) = (p.parent()?, p.file_name()?.to_str()?);
            if *dir.get_or_insert(parent) != parent || !p.is_absolute() {
                return None;
            }
            names.push(name);
        }
        out.push(format!("lowerdir={}", names.join(":")));
    }
    Some((dir?.to_path_buf(), out.join(",")))
}

/// The length of an overlay's mount data once [`mount_one`] has named its
/// lower dirs relative to their directory (when they share one).
pub(crate) fn overlay_data_len(options: &[String]) -> usize {
    let (_, data) = parse_options(options);
    let data = data.join(",");
    relative_lowers(&data).map_or(data.len(), |(_, short)| short.len())
}

/// Writes the filesystem holding `path` to disk (`syncfs(2)`): what
/// unmounting an overlay does to its upper filesystem, unless it was mounted
/// `volatile`.
pub fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    crate::sys::syncfs(&std::fs::File::open(path)?)
}

/// Whether overlay takes the `volatile` option (Linux 5.10 and later): no
/// sync of the upper filesystem at unmount, and `fsync` inside the mount
/// returns at once.
pub fn overlay_volatile_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let mut num = || parts.next().and_then(|p| p.parse::<u32>().ok());
        matches!((num(), num()), (Some(major), Some(minor)) if (major, minor) >= (5, 10))
    })
}

/// The system page size, which bounds mount option strings.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "lowerdir=/a:/b", "nodev", "index=off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(flags.contains(MsFlags::MS_NODEV));
        assert_eq!(data, vec!["lowerdir=/a:/b", "index=off"]);
    }

    #[test]
    fn too_long_options_are_refused_before_the_kernel() {
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!("lowerdir={}", "x".repeat(page_size() + 10))],
        };
        let e = mount_all(&[m], Path::new("/nonexistent-rbk-target")).unwrap_err();
        assert!(matches!(e, MountError::OptionsTooLong { .. }), "{e}");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain\\x"), "/plain\\x");
        assert!(mounts_under(Path::new("/proc"))
            .unwrap()
            .iter()
            .any(|p| p == Path::new("/proc")));
    }
}
