//! This process and others: whether it is privileged, and tags that name
//! a process for good (its pid and start time), for files that must be
//! known as a dead process's even after its pid is reused.

/// Whether the process runs as root (and may chown, mknod, set trusted.*).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the process runs in a user namespace other than the host's (a
/// rootless rbk): root there may chown to its mapped ids and mount overlay
/// with `userxattr`, but not make devices (other than whiteouts) or set
/// `trusted.*` xattrs. The host's namespace maps every id to itself.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
            let fields: Vec<&str> = m.split_whitespace().collect();
            fields != ["0", "0", "4294967295"]
        })
    })
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`), or `None` when there is no such process. With the
/// pid it names one process for good: a pid reused later has another.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything,
    // spaces and parentheses included: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process as `<pid>-<start>`, for names of files that must be known
/// as a dead process's even after its pid is reused.
pub fn tag() -> String {
    let pid = std::process::id();
    match start_time(pid) {
        Some(start) => format!("{pid}-{start}"),
        None => pid.to_string(),
    }
}

/// Whether the process a [`tag`] (or a bare pid) names is gone:
/// no process has the pid, or the one that has it started at another time.
pub fn tag_is_dead(tag: &str) -> bool {
    let mut parts = tag.splitn(2, '-');
    let Some(Ok(pid)) = parts.next().map(str::parse::<u32>) else {
        return false;
    };
    match (parts.next().map(str::parse::<u64>), start_time(pid)) {
        (_, None) => true,
        (Some(Ok(start)), Some(now)) => start != now,
        // A bare pid still in use: alive, as far as anyone can tell.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_tags_tell_a_live_process_from_a_dead_one() {
        let me = tag();
        assert!(me.contains('-'), "{me}");
        assert!(!tag_is_dead(&me));
        assert!(!tag_is_dead(&std::process::id().to_string()));
        // Our pid with another start time: a reused pid.
        assert!(tag_is_dead(&format!("{}-1", std::process::id())));
        // A pid above the kernel's maximum (4194304).
        assert!(tag_is_dead("4194305-7"));
        assert!(!tag_is_dead("not-a-pid"));
    }
}
