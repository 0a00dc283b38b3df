//! `rbk-runtime` runs untrusted commands for rbk and keeps the containers
//! that run them.
//!
//! - [`sandbox`] — the namespace sandbox that isolates a RUN step or an
//!   `rbk run`/`rbk exec` process: user, mount, pid, net, uts and ipc
//!   namespaces, seccomp, capabilities, user-mode networking, and joining
//!   a running container.
//! - [`container`] — the container lifecycle behind `rbk run`, `start`,
//!   `exec`, `cp`, `ps`, `stop` and `rm`: records under the store's
//!   `containers/`, the record a supervising `rbk run` holds, Docker's
//!   rules for a container's command line, environment, user and working
//!   directory, and its volumes.
//! - [`cancel`] — the token that stops a run from another thread.
//!
//! It knows nothing of build graphs or CLI flags, and never prints. The
//! root filesystem it runs in is handed to it mounted: the scheduler's
//! build step and the CLI's `rbk run` both make it with the store's
//! [`Workspace`](rbk_store::workspace::Workspace). It uses the store only
//! for that, for the image config's type and for file locks.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod cancel;
pub mod container;
pub mod sandbox;
