//! The record a supervising `rbk run` holds for its container: written
//! running when it starts, updated on each restart, and at exit removed (a
//! foreground container, `-d --rm`) or kept exited until `rbk rm`.

use std::path::{Path, PathBuf};

use rbk_store::sys::flock::Locked;

use super::state::{self, State};
use super::{now, ContainerError};

/// What a supervisor records of the container it is about to start.
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    /// Its id (12 hex digits).
    pub id: String,
    /// Started detached (`-d`): on record until `rbk rm`.
    pub detached: bool,
    /// Its record goes when it exits even when detached (`--rm`).
    pub remove: bool,
    /// `--name`; `rbk-<id>` when `None`.
    pub name: Option<String>,
    /// The image as the user named it.
    pub image: String,
    /// The command line it runs.
    pub command: Vec<String>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// The published ports, as `-p` gives them.
    pub ports: Vec<String>,
    /// The image's STOPSIGNAL.
    pub stop_signal: Option<String>,
    /// The `rbk run` command line that starts it again (`rbk start`), for a
    /// detached one.
    pub run_args: Vec<String>,
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
    /// The user its command runs as.
    pub user: String,
    /// Its working directory.
    pub workdir: String,
}

/// A container on record for as long as its `rbk run` supervises it (the
/// container's lock held).
pub struct Record {
    root: PathBuf,
    state: State,
    /// Off the record at exit: a foreground container, or `-d --rm`.
    remove: bool,
    _lock: Locked,
}

impl Record {
    /// Records container `c` running (its name checked unique). A detached
    /// container `rbk start` runs again keeps its image as first named and
    /// when it was created, as Docker's.
    pub fn begin(root: &Path, c: NewContainer) -> Result<Record, ContainerError> {
        let id = c.id;
        let name = c.name.unwrap_or_else(|| format!("rbk-{id}"));
        if let Some(other) = state::list(root)
            .into_iter()
            .find(|s| s.name == name && s.id != id)
        {
            return Err(ContainerError::NameInUse {
                name,
                other: other.id,
            });
        }
        let dir = state::path(root, &id);
        std::fs::create_dir_all(&dir).map_err(|e| ContainerError::io("create", &dir, e))?;
        let lock = state::lock(root, &id)?;
        let previous = state::read(root, &id).ok().filter(|_| c.detached);
        let state = State {
            image: previous.as_ref().map_or(c.image, |p| p.image.clone()),
            created: previous.as_ref().map_or_else(now, |p| p.created.clone()),
            id,
            name,
            command: c.command,
            ports: c.ports,
            detached: c.detached,
            stop_signal: c.stop_signal.unwrap_or_else(|| "SIGTERM".into()),
            supervisor: std::process::id(),
            status: "running".into(),
            exit_code: None,
            finished: None,
            restarts: 0,
            run_args: c.run_args,
            volumes: c.volumes,
            env: c.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            user: c.user,
            workdir: c.workdir,
        };
        state::write(root, &state)?;
        Ok(Record {
            root: root.to_path_buf(),
            remove: !c.detached || c.remove,
            state,
            _lock: lock,
        })
    }

    /// Whether its layer stays when it exits (a detached container stays on
    /// record, and with it its files, until `rbk rm`, as with Docker).
    pub fn keeps_layer(&self) -> bool {
        !self.remove
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Whether `rbk stop` asked it to stop (no restart then).
    pub fn stopping(&self) -> bool {
        state::path(&self.root, self.id()).join("stopping").exists()
    }

    /// Counts a restart (the `n`th, after exit code `code`).
    pub fn restarted(&self, n: u32, code: i32) {
        let mut s = self.state.clone();
        s.restarts = n;
        s.exit_code = Some(code);
        let _ = state::write(&self.root, &s);
    }

    /// The container exited (`None`: it could not run): a detached one
    /// stays on record (exited) until `rbk rm`; a foreground one goes.
    pub fn finish(&self, code: Option<i32>) {
        let dir = state::path(&self.root, self.id());
        if self.remove {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let mut s = state::read(&self.root, self.id()).unwrap_or_else(|_| self.state.clone());
        s.status = "exited".into();
        s.exit_code = Some(code.unwrap_or(125));
        s.finished = Some(now());
        let _ = state::write(&self.root, &s);
        let _ = std::fs::remove_file(dir.join("stopping"));
    }
}
