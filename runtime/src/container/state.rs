//! Containers on record: what `rbk run` writes under
//! `<store>/containers/<id>/` and `rbk ps`, `logs`, `stop` and `rm` read.
//!
//! - `state.json`: id, name, image, command, ports, status, exit code;
//! - `log`: the output of a detached container (`rbk run -d`), with
//!   `log.times` (when each line came) and `log.relay` (locked while the
//!   CLI's relay writes them);
//! - `lock`: held (flock) by the `rbk run` that supervises the container for
//!   as long as it runs, so "running" never outlives a killed supervisor;
//! - `stopping`: made by `rbk stop`, so a restart policy does not restart
//!   a container its user stopped.
//!
//! A foreground `rbk run` is on record while it runs; a detached one until
//! `rbk rm`, as with Docker.

use std::fs::File;
use std::path::{Path, PathBuf};

use rbk_store::flock::{flock, FlockMode, Locked};
use rbk_store::snapshot::Snapshotter;
use serde::{Deserialize, Serialize};

use super::ContainerError;

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
pub fn read(root: &Path, id: &str) -> Result<State, ContainerError> {
    let p = path(root, id).join("state.json");
    let text = std::fs::read(&p).map_err(|e| ContainerError::io("read", &p, e))?;
    serde_json::from_slice(&text).map_err(|source| ContainerError::BadRecord { path: p, source })
}

/// Writes a record atomically.
pub fn write(root: &Path, s: &State) -> Result<(), ContainerError> {
    let d = path(root, &s.id);
    std::fs::create_dir_all(&d).map_err(|e| ContainerError::io("create", &d, e))?;
    let tmp = d.join(".state.json.tmp");
    let json = serde_json::to_vec_pretty(s).map_err(|source| ContainerError::BadRecord {
        path: tmp.clone(),
        source,
    })?;
    std::fs::write(&tmp, json).map_err(|e| ContainerError::io("write", &tmp, e))?;
    let dest = d.join("state.json");
    std::fs::rename(&tmp, &dest).map_err(|e| ContainerError::io("write", &dest, e))
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

/// The containers on record that use the named volume `name`.
pub fn volume_users(root: &Path, name: &str) -> Vec<String> {
    list(root)
        .into_iter()
        .filter(|s| s.volumes.iter().any(|v| v == name))
        .map(|s| s.id)
        .collect()
}

/// The key of a container's layer (its active snapshot).
pub fn layer_key(id: &str) -> String {
    format!("run-{id}")
}

/// The directories of a container's anonymous volumes (`volumes/<id>-<n>`).
pub fn anonymous_volumes(root: &Path, id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(super::volume::dir(root))
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

/// Removes a stopped container: its anonymous volumes, its layer (from
/// `snapshotter`), then its record.
pub fn remove(root: &Path, snapshotter: &dyn Snapshotter, id: &str) -> Result<(), ContainerError> {
    for v in anonymous_volumes(root, id) {
        std::fs::remove_dir_all(&v).map_err(|e| ContainerError::io("remove volume", &v, e))?;
    }
    let key = layer_key(id);
    if snapshotter.exists(&key) {
        snapshotter
            .remove(&key)
            .map_err(|source| ContainerError::Layer {
                id: id.to_string(),
                source,
            })?;
    }
    let d = path(root, id);
    std::fs::remove_dir_all(&d).map_err(|e| ContainerError::io("remove", &d, e))
}

/// Takes the container's run lock (its supervisor holds it while it runs).
pub fn lock(root: &Path, id: &str) -> Result<Locked, ContainerError> {
    let p = path(root, id).join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| ContainerError::io("open", &p, e))?;
    match flock(f, FlockMode::TryExclusive).map_err(|e| ContainerError::io("lock", &p, e))? {
        Some(l) => Ok(l),
        None => Err(ContainerError::AlreadyRunning { id: id.to_string() }),
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
pub fn find(root: &Path, what: &str) -> Result<State, ContainerError> {
    let all = list(root);
    if let Some(s) = all.iter().find(|s| s.name == what || s.id == what) {
        return Ok(s.clone());
    }
    let hits: Vec<&State> = all.iter().filter(|s| s.id.starts_with(what)).collect();
    match hits.as_slice() {
        [one] if !what.is_empty() => Ok((*one).clone()),
        [] | [_] => Err(ContainerError::NotFound {
            what: what.to_string(),
        }),
        many => Err(ContainerError::Ambiguous {
            prefix: what.to_string(),
            ids: many.iter().map(|s| s.id.clone()).collect(),
        }),
    }
}
