//! A running container among the host's processes, from `/proc`: its init
//! (pid 1 of its PID namespace), which `rbk exec` joins and `rbk cp` reads
//! the root of.

use std::path::Path;

use super::state::{running, State};

/// The host pid of the running container's init (pid 1 of its PID
/// namespace): the child of its keeper, itself a child of the supervisor.
/// `None` when it is not running (or between two runs of a restart).
pub fn init_pid(root: &Path, s: &State) -> Option<u32> {
    if !running(root, &s.id) {
        return None;
    }
    let procs: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_pid(pid)?)))
        .collect();
    let keepers: Vec<u32> = procs
        .iter()
        .filter(|(_, ppid)| *ppid == s.supervisor)
        .map(|(pid, _)| *pid)
        .collect();
    procs
        .iter()
        .filter(|(_, ppid)| keepers.contains(ppid))
        .map(|(pid, _)| *pid)
        .find(|pid| is_namespace_init(*pid))
}

/// Whether the process `pid` has a child: a container's init has one once
/// it started the container's command.
pub fn has_child(pid: u32) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|p| parent_pid(p) == Some(pid))
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold anything.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` is pid 1 of a PID namespace below ours (`NSpid: N 1`).
fn is_namespace_init(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .is_some_and(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
}
