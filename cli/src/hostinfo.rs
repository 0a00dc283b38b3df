//! `rbk system info`: what this host gives rbk, piece by piece, with the
//! Debian package that provides a missing piece and what needs it.
//!
//! Each check only looks (files under /proc and /sys, tools on the PATH,
//! an overlay probe in the store's own directory); nothing is installed or
//! registered. `--require` turns missing pieces into a failure, so scripts
//! (scripts/demo.sh, scripts/test.sh) stop before any work with the
//! command that mends it.

use std::path::Path;

use serde::Serialize;

/// How a piece stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// There and usable.
    Ok,
    /// Not there, or not usable: what needs it will fail.
    Missing,
    /// Not there, and nothing this user runs by default needs it
    /// (foreign platforms, rootless tools as root, pasta).
    Absent,
    /// Facts only (kernel, store path).
    Info,
}

/// One piece of the host.
#[derive(Debug, Clone, Serialize)]
pub struct Piece {
    /// Short stable name, for `--require` and scripts.
    pub id: &'static str,
    /// How it stands.
    pub status: Status,
    /// What was found, or why it is missing.
    pub detail: String,
    /// The Debian package that provides it, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<&'static str>,
    /// What in rbk needs it.
    pub needed_for: &'static str,
}

impl Piece {
    fn new(id: &'static str, needed_for: &'static str, found: Result<String, String>) -> Piece {
        let (status, detail) = match found {
            Ok(d) => (Status::Ok, d),
            Err(d) => (Status::Missing, d),
        };
        Piece {
            id,
            status,
            detail,
            package: None,
            needed_for,
        }
    }

    fn info(id: &'static str, detail: String) -> Piece {
        Piece {
            id,
            status: Status::Info,
            detail,
            package: None,
            needed_for: "",
        }
    }

    /// Marks a missing piece as one only some uses need.
    fn optional(mut self, yes: bool) -> Piece {
        if yes && self.status == Status::Missing {
            self.status = Status::Absent;
        }
        self
    }

    fn package(mut self, p: &'static str) -> Piece {
        self.package = Some(p);
        self
    }
}

/// Every id `--require` accepts, in the order they are printed.
pub const IDS: &[&str] = &[
    "kernel",
    "user",
    "store",
    "snapshotter",
    "overlayfs",
    "namespaces",
    "userns",
    "seccomp",
    "cgroups",
    "slirp4netns",
    "tun",
    "pasta",
    "newuidmap",
    "subids",
    "qemu",
];

/// Looks at the host. `root` is the store; `snapshotter` the flag's value.
pub fn gather(root: &Path, snapshotter: &str) -> Vec<Piece> {
    let is_root = nix::unistd::geteuid().is_root();
    let overlay = overlay(root, snapshotter, is_root);
    let chosen = match (snapshotter, overlay.status) {
        ("auto", Status::Ok) => "overlay (auto)".to_string(),
        ("auto", _) => "copy (auto: overlayfs is not usable here)".to_string(),
        (s, _) => s.to_string(),
    };
    vec![
        Piece::info("kernel", kernel()),
        Piece::info("user", user(is_root)),
        Piece::info("store", store(root)),
        Piece::info("snapshotter", chosen),
        overlay,
        namespaces(is_root),
        userns(),
        seccomp(),
        cgroups(),
        Piece::new(
            "slirp4netns",
            "the default network of RUN and `rbk run -p`",
            tool("slirp4netns"),
        )
        .package("slirp4netns"),
        Piece::new("tun", "the default network of RUN", tun()),
        pasta(),
        newuidmap(is_root),
        subids(is_root),
        qemu(),
    ]
}

fn kernel() -> String {
    let release = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    format!("Linux {release} ({})", std::env::consts::ARCH)
}

fn user(is_root: bool) -> String {
    let uid = nix::unistd::getuid().as_raw();
    if is_root && rbk_store::sys::in_user_namespace() {
        format!("root of a user namespace (uid {uid})")
    } else if is_root {
        "root".to_string()
    } else {
        format!("uid {uid}: rootless (rbk re-runs itself in a user namespace)")
    }
}

fn store(root: &Path) -> String {
    let state = if root.join("index.json").is_file() {
        "a store"
    } else if root.exists() {
        "no store yet (the directory exists)"
    } else {
        "no store yet (made by the first build, pull or import)"
    };
    let mut s = format!("{} — {state}", root.display());
    let probe = root.ancestors().find(|p| p.exists());
    if let Some(stat) = probe.and_then(|p| nix::sys::statvfs::statvfs(p).ok()) {
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        s.push_str(&format!(", {} free", crate::human::human_size(free)));
    }
    s
}

fn overlay(root: &Path, snapshotter: &str, is_root: bool) -> Piece {
    let needed = "the overlay snapshotter (copy-on-write steps; else every step copies)";
    let known = std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    let found = if !is_root {
        Err("not probed: rootless rbk probes it inside its user namespace (Linux ≥ 5.11 mounts overlay there with userxattr)".to_string())
    } else if snapshotter == "copy" {
        Ok("not probed (--snapshotter copy)".to_string())
    } else {
        let dir = root.join("snapshots");
        let probed = root.exists() && std::fs::create_dir_all(&dir).is_ok();
        match (probed, known) {
            (true, _) if rbk_store::snapshot::overlay_works_in(&dir) => {
                Ok(format!("mounts in {}", dir.display()))
            }
            (true, _) => Err(format!(
                "cannot mount an overlay in {} (its filesystem may not serve as an upper directory)",
                dir.display()
            )),
            (false, true) => Ok("known to the kernel (the store is not made yet)".to_string()),
            (false, false) => Err("not in /proc/filesystems (modprobe overlay)".to_string()),
        }
    };
    Piece::new("overlayfs", needed, found)
}

fn namespaces(is_root: bool) -> Piece {
    let needed = "RUN steps and `rbk run`";
    let found = if is_root {
        rbk_runtime::sandbox::sandbox_supported()
            .map(|()| "mount, PID, UTS, IPC and network namespaces".to_string())
    } else {
        Ok("made inside rbk's user namespace".to_string())
    };
    Piece::new("namespaces", needed, found)
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn userns() -> Piece {
    let max = read_trim("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok());
    let debian = read_trim("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read_trim("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let found = match (max, debian.as_deref(), apparmor.as_deref()) {
        (Some(0), _, _) => Err("user.max_user_namespaces is 0 (sysctl -w user.max_user_namespaces=15000)".to_string()),
        (_, Some("0"), _) => Err("kernel.unprivileged_userns_clone is 0 (sysctl -w kernel.unprivileged_userns_clone=1)".to_string()),
        (_, _, Some("1")) => Err("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)".to_string()),
        (Some(n), _, _) => Ok(format!("up to {n}")),
        (None, _, _) => Err("/proc/sys/user/max_user_namespaces is missing (kernel without user namespaces)".to_string()),
    };
    Piece::new("userns", "rootless rbk", found)
}

fn seccomp() -> Piece {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = status.lines().find_map(|l| l.strip_prefix("Seccomp:"));
    let actions = read_trim("/proc/sys/kernel/seccomp/actions_avail");
    let found = match (field, actions) {
        (Some(_), Some(a)) if a.split_whitespace().any(|x| x == "errno") => {
            Ok("filters with errno".to_string())
        }
        (Some(_), _) => Ok("filters".to_string()),
        (None, _) => Err("the kernel has no seccomp (CONFIG_SECCOMP_FILTER)".to_string()),
    };
    Piece::new("seccomp", "the RUN sandbox's syscall filter", found)
}

fn cgroups() -> Piece {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    let found = match std::fs::read_to_string(v2) {
        Ok(c) => Ok(format!("v2 (controllers: {})", c.trim())),
        Err(_) if Path::new("/sys/fs/cgroup").is_dir() => {
            Ok("v1 or hybrid (rbk sets no limits through it)".to_string())
        }
        Err(_) => Err("no /sys/fs/cgroup".to_string()),
    };
    Piece::new("cgroups", "nothing yet: reported for completeness", found)
}

fn tool(name: &str) -> Result<String, String> {
    crate::rootless::find_tool(name)
        .map(|p| p.display().to_string())
        .ok_or_else(|| format!("{name} is not installed"))
}

fn tun() -> Result<String, String> {
    let tun = Path::new("/dev/net/tun");
    match std::fs::OpenOptions::new().read(true).write(true).open(tun) {
        Ok(_) => Ok("/dev/net/tun opens".to_string()),
        Err(e) => Err(format!("cannot open /dev/net/tun: {e}")),
    }
}

fn pasta() -> Piece {
    // rbk uses slirp4netns; pasta is reported so a host that has only it
    // is not mistaken for one with user-mode networking.
    let found = tool("pasta").map(|p| format!("{p} (rbk uses slirp4netns)"));
    Piece::new(
        "pasta",
        "nothing: rbk's user-mode network is slirp4netns",
        found,
    )
    .package("passt")
    .optional(true)
}

fn newuidmap(is_root: bool) -> Piece {
    let found = match (tool("newuidmap"), tool("newgidmap")) {
        (Ok(u), Ok(g)) => Ok(format!("{u}, {g}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let needed = if is_root {
        "rootless rbk (not this user: root)"
    } else {
        "rootless rbk"
    };
    Piece::new("newuidmap", needed, found)
        .package("uidmap")
        .optional(is_root)
}

fn subids(is_root: bool) -> Piece {
    let uid = nix::unistd::getuid().as_raw();
    let name = crate::rootless::user_name(uid).unwrap_or_else(|| uid.to_string());
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let count = |f: &str| -> u64 {
        crate::rootless::ranges_in(&read(f), &name, uid)
            .iter()
            .map(|r| r.count)
            .sum()
    };
    let (u, g) = (count("/etc/subuid"), count("/etc/subgid"));
    let found = if is_root && !rbk_store::sys::in_user_namespace() {
        Ok(format!(
            "not needed as root ({u} subordinate uids, {g} gids for {name})"
        ))
    } else if u > 0 && g > 0 {
        Ok(format!("{u} subordinate uids, {g} gids for {name}"))
    } else {
        Err(format!(
            "{name} has no range in /etc/subuid and /etc/subgid (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name})"
        ))
    };
    Piece::new("subids", "rootless rbk", found).optional(is_root)
}

fn qemu() -> Piece {
    let binfmt = Path::new("/proc/sys/fs/binfmt_misc");
    let mut registered: Vec<String> = std::fs::read_dir(binfmt)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_prefix("qemu-").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    registered.sort();
    let shipped = std::fs::read_dir("/usr/lib/binfmt.d")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("qemu-"))
        })
        .unwrap_or(false);
    let found = match (registered.is_empty(), shipped) {
        (false, _) => Ok(format!("handlers for {}", registered.join(", "))),
        (true, true) => Ok("installed; rbk registers a handler when a build needs it".to_string()),
        (true, false) => Err("no QEMU user emulation installed".to_string()),
    };
    Piece::new(
        "qemu",
        "RUN for a foreign platform (--platform linux/arm64 …)",
        found,
    )
    .package("qemu-user-static")
    .optional(true)
}

/// The missing pieces among `require`, or an error naming an unknown id.
pub fn missing<'a>(pieces: &'a [Piece], require: &[String]) -> Result<Vec<&'a Piece>, String> {
    let mut out = Vec::new();
    for id in require {
        let Some(p) = pieces.iter().find(|p| p.id == id) else {
            return Err(format!(
                "--require {id:?}: no such piece (one of: {})",
                IDS.join(", ")
            ));
        };
        if matches!(p.status, Status::Missing | Status::Absent) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The line that tells how to get a missing piece.
pub fn remedy(p: &Piece) -> String {
    match p.package {
        Some(pkg) => format!("{}: {} — apt-get install {pkg}", p.id, p.detail),
        None => format!("{}: {}", p.id, p.detail),
    }
}

/// The text table.
pub fn render(pieces: &[Piece]) -> String {
    let width = pieces.iter().map(|p| p.id.len()).max().unwrap_or(0);
    let mut s = String::new();
    for p in pieces {
        let mark = match p.status {
            Status::Ok => "ok     ",
            Status::Missing => "MISSING",
            Status::Absent => "absent ",
            Status::Info => "       ",
        };
        s.push_str(&format!("{:width$}  {mark}  {}\n", p.id, p.detail));
        if matches!(p.status, Status::Missing | Status::Absent) {
            if let Some(pkg) = p.package {
                s.push_str(&format!("{:width$}           apt-get install {pkg}\n", ""));
            }
            if !p.needed_for.is_empty() {
                s.push_str(&format!(
                    "{:width$}           needed for {}\n",
                    "", p.needed_for
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_has_a_listed_id_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let pieces = gather(&dir.path().join("store"), "copy");
        let ids: Vec<&str> = pieces.iter().map(|p| p.id).collect();
        assert_eq!(ids, IDS);
    }

    #[test]
    fn require_reports_missing_and_refuses_unknown_ids() {
        let pieces = vec![
            Piece::new("slirp4netns", "x", Err("not installed".into())).package("slirp4netns"),
            Piece::new("seccomp", "y", Ok("filters".into())),
        ];
        let want = ["slirp4netns".to_string(), "seccomp".to_string()];
        let miss = missing(&pieces, &want).unwrap();
        assert_eq!(miss.len(), 1);
        assert_eq!(
            remedy(miss[0]),
            "slirp4netns: not installed — apt-get install slirp4netns"
        );
        let err = missing(&pieces, &["nope".to_string()]).unwrap_err();
        assert!(err.contains("no such piece"), "{err}");
    }
}
