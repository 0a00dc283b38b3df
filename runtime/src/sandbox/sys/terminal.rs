//! The command's terminal in the container's own devpts, so that `tty`
//! names it as under Docker: for `rbk exec -t`, opened by rbk through the
//! container's root ([`container_pty`]); for `rbk run -t`, opened by init
//! once the container's devpts is mounted and sent to rbk on a socket
//! ([`terminal_from_init`], [`open_terminal`]).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::forked::{check, close_raw, fail};
use super::parent::RawModeGuard;
use super::{process_err, ChildFds, Launch, Stdio, Step, PTY_FD};
use crate::sandbox::{SandboxError, StdinMode};

/// A pseudo-terminal of the running container's own devpts (its
/// `/dev/pts/ptmx`, opened through `root`, its `/proc/PID/root`, without
/// leaving it or following a symlink), so that `tty` in the container
/// names it (`/dev/pts/0`), as in `docker exec -t`.
pub(super) fn container_pty(
    root: &Path,
    winsize: Option<&libc::winsize>,
) -> Result<nix::pty::OpenptyResult, SandboxError> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let io = |op: &'static str| {
        let path = root.join("dev/pts/ptmx");
        move |e: Errno| SandboxError::Io {
            op,
            path,
            source: std::io::Error::from(e),
        }
    };
    let dir = File::open(root).map_err(|source| SandboxError::Io {
        op: "open the container's root",
        path: root.to_path_buf(),
        source,
    })?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let master = openat2(&dir, "dev/pts/ptmx", how).map_err(io("open"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from a valid pointer; TIOCGPTPEER
    // takes open flags and returns a new fd of the terminal's other end.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(io("unlock the terminal")(Errno::last()));
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io("open the terminal of")(Errno::last()));
    }
    // SAFETY: a non-negative return of TIOCGPTPEER is a new fd we own.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    if let Some(ws) = winsize {
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, ws) };
    }
    Ok(nix::pty::OpenptyResult { master, slave })
}

/// `rbk run -t`: the command's terminal is opened by init in the
/// container's own devpts (so `tty` names it, as under Docker) and its
/// master sent to rbk on a socket; until the command starts, the
/// children's standard streams are `/dev/null`.
pub(super) fn terminal_from_init(
    l: &Launch,
    status: OwnedFd,
    net: Option<OwnedFd>,
) -> Result<Stdio, SandboxError> {
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two new fds into the array on success.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(process_err("create a socket for the terminal")(
            Errno::last(),
        ));
    }
    // SAFETY: both fds are new and owned by nothing else.
    let (ours, theirs) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1]))
    };
    let null = || {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|source| SandboxError::Io {
                op: "open",
                path: PathBuf::from("/dev/null"),
                source,
            })
    };
    let raw = match l.stdin {
        StdinMode::Inherit => RawModeGuard::enter(),
        StdinMode::Null => None,
    };
    Ok(Stdio {
        fds: ChildFds {
            stdin: Some(null()?),
            stdout: null()?,
            stderr: null()?,
            status,
            net,
            pty: Some(theirs),
        },
        outs: Vec::new(),
        master: None,
        pty_sock: Some(ours),
        _raw: raw,
    })
}

/// Opens a terminal in the container's own devpts (init runs in the new
/// root), sends its master to rbk on [`PTY_FD`] and returns the other end
/// for the command.
pub(super) fn open_terminal() -> RawFd {
    let master = check(
        nix::fcntl::open(
            "/dev/pts/ptmx",
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
        Step::Ctty,
        2,
    );
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int from a valid pointer; TIOCGPTPEER
    // takes open flags and returns a new fd of the terminal's other end.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            fail(Step::Ctty, 3, Errno::last());
        }
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        fail(Step::Ctty, 4, Errno::last());
    }
    if !send_fd(PTY_FD, master.as_raw_fd()) {
        fail(Step::Ctty, 5, Errno::last());
    }
    drop(master);
    close_raw(PTY_FD);
    slave
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS), with one byte.
fn send_fd(sock: RawFd, fd: RawFd) -> bool {
    let mut byte = [b't'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one control message of one int, suitably aligned.
    let mut control = [0u64; 4];
    // SAFETY: the message, its iovec and its control buffer live on our
    // stack for the call; the CMSG macros stay inside `control`, which is
    // larger than CMSG_SPACE(sizeof(int)).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return false;
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) == 1
    }
}
