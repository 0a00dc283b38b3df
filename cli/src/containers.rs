//! Containers on record: what `rbk run` writes under `<store>/containers/<id>/`
//! and `rbk ps`, `logs`, `stop` and `rm` read.
//!
//! - `state.json`: id, name, image, command, ports, status, exit code;
//! - `log`: the output of a detached container (`rbk run -d`), with
//!   `log.times` (when each line came) and `log.relay` (locked while the
//!   relay writes them: see [`crate::log_relay`]);
//! - `lock`: held (flock) by the `rbk run` that supervises the container for
//!   as long as it runs, so "running" never outlives a killed supervisor;
//! - `stopping`: made by `rbk stop`, so a restart policy does not restart
//!   a container its user stopped.
//!
//! A foreground `rbk run` is on record while it runs; a detached one until
//! `rbk rm`, as with Docker.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rbk_store::flock::{flock, FlockMode, Locked};
use serde::{Deserialize, Serialize};

/// A container's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// 12 hex digits.
    pub id: String,
    /// Its name (`--name`, else made from the id).
    pub name: String,
    /// The image as given.
    pub image: String,
    /// The command line it runs.
    pub command: Vec<String>,
    /// When it was created, RFC 3339.
    pub created: String,
    /// `-p` as given.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Whether it was started with `-d`.
    pub detached: bool,
    /// The signal `rbk stop` sends (the image's STOPSIGNAL).
    pub stop_signal: String,
    /// The pid of the `rbk run` supervising it.
    pub supervisor: u32,
    /// `running` or `exited`.
    pub status: String,
    /// The last exit code, once exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When it exited, RFC 3339.
    #[serde(default)]
    pub finished: Option<String>,
    /// How many times the restart policy restarted it.
    #[serde(default)]
    pub restarts: u32,
    /// The `rbk run` flags and arguments (without `-d`) a detached one was
    /// started with, for `rbk start`.
    #[serde(default)]
    pub run_args: Vec<String>,
    /// The named volumes it mounts (`-v NAME:/path`).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Its environment (`KEY=VALUE`), which `rbk exec` starts from.
    #[serde(default)]
    pub env: Vec<String>,
    /// The user its command runs as (`rbk exec`'s default).
    #[serde(default)]
    pub user: String,
    /// Its working directory (`rbk exec`'s default).
    #[serde(default)]
    pub workdir: String,
}

/// Where containers are recorded.
pub fn dir(root: &Path) -> PathBuf {
    rbk_store::Layout::new(root).containers()
}

/// A container's record directory.
pub fn path(root: &Path, id: &str) -> PathBuf {
    dir(root).join(id)
}

/// Reads a record.
pub fn read(root: &Path, id: &str) -> Result<State> {
    let p = path(root, id).join("state.json");
    let text = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a container record", p.display()))
}

/// Writes a record atomically.
pub fn write(root: &Path, s: &State) -> Result<()> {
    let d = path(root, &s.id);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let tmp = d.join(".state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, d.join("state.json"))
        .with_context(|| format!("cannot write {}", d.join("state.json").display()))
}

/// Every record, oldest first (unreadable ones are skipped).
pub fn list(root: &Path) -> Vec<State> {
    let mut out: Vec<State> = std::fs::read_dir(dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| read(root, &e.file_name().to_string_lossy()).ok())
        .collect();
    out.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    out
}

/// The key of a container's layer (its writable snapshot).
pub fn layer_key(id: &str) -> String {
    format!("run-{id}")
}

/// The directories of a container's anonymous volumes (`volumes/<id>-<n>`).
pub fn anonymous_volumes(root: &Path, id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(rbk_store::Layout::new(root).volumes())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(id)?.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect()
}

/// Removes a stopped container: its layer and anonymous volumes, then its
/// record.
pub fn remove(root: &Path, id: &str) -> Result<()> {
    for v in anonymous_volumes(root, id) {
        std::fs::remove_dir_all(&v)
            .with_context(|| format!("cannot remove volume {}", v.display()))?;
    }
    let snap = crate::snapshotter(root)?;
    let key = layer_key(id);
    if snap.exists(&key) {
        snap.remove(&key)
            .with_context(|| format!("cannot remove the layer of container {id}"))?;
    }
    let d = path(root, id);
    std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))
}

/// Takes the container's run lock (its supervisor holds it while it runs).
pub fn lock(root: &Path, id: &str) -> Result<Locked> {
    let p = path(root, id).join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("cannot open {}", p.display()))?;
    match flock(f, FlockMode::TryExclusive)? {
        Some(l) => Ok(l),
        None => bail!("container {id} is already running"),
    }
}

/// Whether a supervisor holds the container's lock right now.
pub fn running(root: &Path, id: &str) -> bool {
    let Ok(f) = File::open(path(root, id).join("lock")) else {
        return false;
    };
    matches!(flock(f, FlockMode::TryShared), Ok(None))
}

/// Finds a container by name, full id or id prefix.
pub fn find(root: &Path, what: &str) -> Result<State> {
    let all = list(root);
    if let Some(s) = all.iter().find(|s| s.name == what || s.id == what) {
        return Ok(s.clone());
    }
    let hits: Vec<&State> = all.iter().filter(|s| s.id.starts_with(what)).collect();
    match hits.as_slice() {
        [one] if !what.is_empty() => Ok((*one).clone()),
        [] | [_] => bail!("no such container: {what}"),
        many => bail!(
            "container id prefix {what} is ambiguous: it matches {}",
            many.iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

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
    let rest = &stat[stat.rfind(')')? + 1..];
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

/// "Up 3 minutes", "Exited (0) 2 seconds ago", as `docker ps` says it.
pub fn status_text(root: &Path, s: &State) -> String {
    if running(root, &s.id) {
        return format!(
            "Up {}",
            crate::cmd_image::since(&s.created).trim_end_matches(" ago")
        );
    }
    match (s.exit_code, &s.finished) {
        (Some(code), Some(t)) => format!("Exited ({code}) {}", crate::cmd_image::since(t)),
        _ => "Exited (unknown)".to_string(),
    }
}
