//! `rbk-runtime` runs untrusted commands for rbk: the namespace sandbox
//! that isolates a RUN step or an `rbk run`/`rbk exec` container
//! ([`sandbox`]), and the token that stops one from another thread
//! ([`cancel`]). It knows nothing of build graphs, layers or the CLI: the
//! scheduler and the CLI hand it a prepared root filesystem and a command.

pub mod cancel;
pub mod container;
pub mod sandbox;
