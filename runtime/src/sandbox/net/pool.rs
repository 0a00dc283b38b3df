//! Network namespaces made ahead, so a RUN step of the default network
//! does not wait for slirp4netns to start.
//!
//! Each member is a fresh network namespace connected by a slirp4netns of
//! its own ([`ContainerNet`]). A step takes one, its keeper enters it, and
//! it is destroyed with the step (slirp4netns killed, the last fd of the
//! namespace closed): no member is ever given to a second step. Once a
//! build has [`prime`]d the pool, taking a member starts making the next
//! one on a thread of its own, which overlaps with the step that took it.
//!
//! BuildKit's CNI pool (`util/network/cniprovider`) keeps namespaces too,
//! but gives a namespace back to the pool after a step and hands it to the
//! next one; here nothing a step did in its namespace (sockets, routes,
//! addresses, firewall rules) can reach another step, because no
//! namespace outlives its step.
//!
//! Nothing outlives rbk either: a member is held by fds only (no
//! bind-mounted namespace file), and its slirp4netns exits when rbk's end
//! of its `--exit-fd` pipe closes, which the kernel does when rbk dies.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::{sys, PortMapping, UserNet};
use crate::sandbox::SandboxError;

/// How many members a primed pool keeps ready (or in the making) beyond
/// the steps waiting for one. One suffices for a chain of RUNs: the next
/// step's namespace is made while this one runs.
const SPARE: usize = 1;

/// A container's network: a network namespace of its own, connected to
/// the outside by a slirp4netns of its own; both end when it is dropped.
#[derive(Debug)]
pub struct ContainerNet {
    ns: OwnedFd,
    _net: UserNet,
}

impl ContainerNet {
    /// A fresh namespace connected by a new slirp4netns that forwards
    /// `ports` (its API socket in a directory in `scratch`).
    pub fn new(ports: &[PortMapping], scratch: &Path) -> Result<ContainerNet, SandboxError> {
        let ns = sys::new_netns().map_err(|source| SandboxError::Process {
            op: "create a network namespace",
            source,
        })?;
        let net = UserNet::connect(ns.as_fd(), ports, scratch)?;
        Ok(ContainerNet { ns, _net: net })
    }

    /// A network for one container: a member of the pool when it is primed
    /// and no port is forwarded, else one made now.
    pub fn take(ports: &[PortMapping], scratch: &Path) -> Result<ContainerNet, SandboxError> {
        if !ports.is_empty() || !lock().primed {
            return ContainerNet::new(ports, scratch);
        }
        take_member()
    }

    /// The namespace, for the container's keeper to enter.
    pub fn ns(&self) -> BorrowedFd<'_> {
        self.ns.as_fd()
    }

    /// Ends it once its container is gone, off the caller's path: killing
    /// slirp4netns and waiting for it takes as long as the kernel takes to
    /// unregister its tap device (an RCU grace period or more), which a
    /// step need not wait for. When no thread can be started, the closure
    /// is dropped with the error, and the network with it, here.
    pub fn retire(self) {
        let _ = std::thread::Builder::new()
            .name("rbk-netdown".into())
            .spawn(move || drop(self));
    }
}

/// The process's pool: members made and not yet taken, how many are being
/// made, how many steps wait for one.
struct State {
    primed: bool,
    ready: Vec<Result<ContainerNet, SandboxError>>,
    making: usize,
    waiting: usize,
}

static POOL: Mutex<State> = Mutex::new(State {
    primed: false,
    ready: Vec::new(),
    making: 0,
    waiting: 0,
});
static MADE: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, State> {
    // The state stays consistent between statements: a panic elsewhere
    // while it was held leaves nothing half-done.
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts keeping a network namespace ready for the next RUN step of the
/// default network (a build calls it once it knows it runs one). Taking a
/// member then starts the next.
pub fn prime() {
    let mut st = lock();
    st.primed = true;
    refill(&mut st);
}

/// Hands out a ready member, waiting for one being made when none is.
fn take_member() -> Result<ContainerNet, SandboxError> {
    let mut st = lock();
    st.waiting += 1;
    loop {
        if let Some(member) = st.ready.pop() {
            st.waiting -= 1;
            refill(&mut st);
            return member;
        }
        // One in the making for each waiting step, at least.
        refill(&mut st);
        st = MADE.wait(st).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Starts making members until the waiting steps and [`SPARE`] more are
/// covered.
fn refill(st: &mut State) {
    while st.primed && st.ready.len() + st.making < st.waiting + SPARE {
        make_one(st);
    }
}

/// Makes one member on a thread of its own, which puts it (or why it
/// could not be made) in the pool.
fn make_one(st: &mut State) {
    st.making += 1;
    let spawned = std::thread::Builder::new()
        .name("rbk-netpool".into())
        .spawn(|| {
            // No ports: no API socket, so the scratch directory is unused.
            let member = ContainerNet::new(&[], Path::new("/"));
            let mut st = lock();
            st.making -= 1;
            st.ready.push(member);
            MADE.notify_all();
        });
    if let Err(source) = spawned {
        st.making -= 1;
        st.ready.push(Err(SandboxError::Process {
            op: "start a thread making a network namespace",
            source,
        }));
        MADE.notify_all();
    }
}
