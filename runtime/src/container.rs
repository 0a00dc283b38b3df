//! Containers: what `rbk run` keeps of a container while (and after) it
//! runs, and what it builds the container from.
//!
//! rbk has no daemon: a container lives as long as the `rbk run` that
//! supervises it. This module is that supervisor's library and the
//! record the other commands (`ps`, `logs`, `stop`, `start`, `rm`, `exec`,
//! `cp`) read:
//!
//! - [`state`] — the record under `<store>/containers/<id>/` (its
//!   `state.json`, the supervisor's lock, the `stopping` mark), found by
//!   name or id prefix, and removed with its layer and anonymous volumes;
//! - [`record`] — the record a running supervisor holds, from start to
//!   exit (restarts counted, exit code kept for a detached one);
//! - [`supervise`] — running the container's process under its restart
//!   policy, signals forwarded;
//! - [`process`] — the container's init among the host's processes (for
//!   `rbk exec` and `rbk cp` into a running container);
//! - [`spec`] — Docker's rules for the command line, environment, user and
//!   working directory from the image's config and the flags, and the
//!   sandbox's [`ExecSpec`](crate::sandbox::ExecSpec) from them;
//! - [`bundle`] — the container's root (the store's workspace over its
//!   image) and binds, made and released;
//! - [`volume`] — `-v` requests, named volumes under `<store>/volumes/`,
//!   and the binds a container gets: volumes seeded from the image, its
//!   `/etc/hostname` ([`binds`]).
//!
//! The container's root filesystem is the store's
//! [`Workspace`](rbk_store::workspace::Workspace), the same a build step
//! runs in. This module never prints: the CLI says what happened.

pub mod binds;
pub mod bundle;
pub mod process;
pub mod record;
pub mod spec;
pub mod state;
pub mod supervise;
pub mod volume;

use std::path::{Path, PathBuf};

pub use process::{has_child, init_pid};
pub use record::{NewContainer, Record};
pub use state::{
    anonymous_volumes, find, layer_key, list, lock, path, read, running, volume_users, write, State,
};

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this name, id or id prefix.
    #[error("no such container: {what}")]
    NotFound {
        /// As the user gave it.
        what: String,
    },
    /// An id prefix matches several containers.
    #[error("container id prefix {prefix} is ambiguous: it matches {}", .ids.join(", "))]
    Ambiguous {
        /// The prefix.
        prefix: String,
        /// The ids it matches.
        ids: Vec<String>,
    },
    /// Another supervisor holds the container's lock.
    #[error("container {id} is already running")]
    AlreadyRunning {
        /// The container's id.
        id: String,
    },
    /// `--name` names another container.
    #[error("the name {name:?} is in use by container {other} (rbk rm {name} first)")]
    NameInUse {
        /// The name.
        name: String,
        /// The container that has it.
        other: String,
    },
    /// A record that does not parse.
    #[error("{} is not a container record", .path.display())]
    BadRecord {
        /// The `state.json`.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A `-v` that is neither a bind, a named nor an anonymous volume.
    #[error("invalid volume {spec:?}: {reason}")]
    InvalidVolume {
        /// The flag's value.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A volume name outside Docker's rule.
    #[error(
        "invalid volume name {name:?}: use letters, digits, _ . - (starting with a letter or digit)"
    )]
    InvalidVolumeName {
        /// The name.
        name: String,
    },
    /// An `-e` (or env-file line) without a name.
    #[error("invalid environment variable {entry:?}: the name is empty")]
    InvalidEnv {
        /// The entry.
        entry: String,
    },
    /// The image has something at a volume's path the container cannot
    /// reach (a symlink out of its root, a loop).
    #[error("cannot find {target} in the container's root")]
    Resolve {
        /// The container path.
        target: String,
        /// Why.
        #[source]
        source: Box<crate::sandbox::SandboxError>,
    },
    /// A volume could not be seeded with the image's files.
    #[error("cannot copy the image's {target} into volume {volume}")]
    Seed {
        /// The container path.
        target: String,
        /// The volume (a name, or an anonymous one's directory).
        volume: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image's layers could not be unpacked.
    #[error("cannot unpack image {image}")]
    Unpack {
        /// The image's id.
        image: String,
        /// Why.
        #[source]
        source: Box<rbk_store::workspace::WorkspaceError>,
    },
    /// The container's root could not be prepared or mounted.
    #[error("cannot mount the container's layer over {image}")]
    Root {
        /// The image as the user named it.
        image: String,
        /// Why.
        #[source]
        source: Box<rbk_store::workspace::WorkspaceError>,
    },
    /// The container's layer could not be removed.
    #[error("cannot remove the layer of container {id}")]
    Layer {
        /// The container.
        id: String,
        /// Why.
        #[source]
        source: rbk_store::snapshot::SnapshotError,
    },
    /// A file operation.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ContainerError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        ContainerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The time now, RFC 3339 (records' `created` and `finished`).
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A short random id (12 hex digits, like Docker's short ids): a
/// container's, and the start of an unnamed volume's.
pub fn random_id() -> String {
    let mut bytes = [0u8; 6];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        // Unique enough for one machine: pid and time.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mix = nanos ^ (u128::from(std::process::id()) << 64);
        bytes.copy_from_slice(&mix.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes the files under `path` hold (a volume's, a record's).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_hex_digits() {
        let id = random_id();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id());
    }
}
