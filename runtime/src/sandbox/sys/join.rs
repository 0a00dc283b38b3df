//! `rbk exec`: entering a running container's namespaces. The parent's
//! side ([`join`]) is a run's, with the first child ([`joiner`]) in place
//! of the keeper.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use nix::unistd::{ForkResult, Pid};

use super::child::{close_above, command, place_stdio, tie_to, wait_exit_code};
use super::forked::{check, close_raw, exit, fail, report};
use super::{ChildFds, Launch, Prepared, Step, STATUS_FD};
use crate::sandbox::{CancelToken, OutputStream, SandboxError};
use nix::errno::Errno;

/// Runs `l`'s command in the namespaces `ns` (fds of a running container's
/// `/proc/PID/ns/*`, in [`Launch::join`]'s order), supervised as a run is.
pub(in crate::sandbox) fn join(
    l: &Launch,
    ns: &[OwnedFd],
    output: &mut dyn FnMut(OutputStream, &[u8]),
    cancel: &CancelToken,
) -> Result<i32, SandboxError> {
    let mut plan = super::prepare(l)?;
    // The working directory must exist in a running container (as runc).
    plan.cwd_prefixes.clear();
    let ns_fds: Vec<RawFd> = ns.iter().map(AsRawFd::as_raw_fd).collect();
    // `joiner` makes raw syscalls on data prepared above (no allocation, no
    // locks) and ends in `_exit`.
    super::supervised(l, &plan, None, output, cancel, |fds, parent| {
        joiner(&plan, fds, parent, &ns_fds)
    })
}

/// The first child of `rbk exec`: enters the namespaces of a running
/// container (`ns`, user first when there is one, mount last), then forks
/// the command (in the container's PID namespace, as its parent's
/// setns(CLONE_NEWPID) applies to children), waits for it and exits with
/// its status. The command is set up as a container's is (`command`).
fn joiner(p: &Prepared, fds: &ChildFds, parent: Pid, ns: &[RawFd]) -> ! {
    tie_to(parent);
    let keep = place_stdio(fds);
    for (i, fd) in ns.iter().enumerate() {
        // SAFETY: setns on an fd of /proc/PID/ns/* this process holds open.
        if unsafe { libc::setns(*fd, 0) } < 0 {
            fail(Step::Setns, i as u32, Errno::last());
        }
    }
    close_above(keep);
    check(nix::unistd::setsid(), Step::Setsid, 0);
    // Not dumpable until exec: the container's processes (root there, but
    // without CAP_SYS_PTRACE) cannot read or trace this fork of rbk in the
    // moment before it becomes the command. exec makes it dumpable again.
    // It is part of the session's setup: a failure stops the exec.
    check(nix::sys::prctl::set_dumpable(false), Step::Setsid, 1);
    // SAFETY: single-threaded child; `command` follows the no-allocation rules.
    let child = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(Step::ForkCommand, 0, e),
        Ok(ForkResult::Child) => {
            check(
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
                Step::ForkCommand,
                1,
            );
            command(p)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    report(Step::InitPid, 0, child.as_raw());
    for fd in 0..=STATUS_FD {
        close_raw(fd);
    }
    exit(wait_exit_code(child))
}
