//! rbk's side of a run: pumping output (pipes or a pty), watching the status
//! pipe and the cancel token, and reaping the keeper.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{process_err, Step, STEPS};
use crate::sandbox::{CancelToken, OutputStream, SandboxError};
/// rbk's side of a run: pumps output, watches the status pipe and the
/// cancel token, and reaps the keeper.
pub(super) struct Supervisor {
    keeper: Pid,
    /// Readable once the keeper exits, so the end of a run is seen at once
    /// even when the command closed its output early (`None` before 5.3).
    pidfd: Option<OwnedFd>,
    init: Option<Pid>,
    status: OwnedFd,
    status_buf: Vec<u8>,
    failure: Option<(Step, u32, i32)>,
    reached_exec: bool,
    killed: bool,
}

/// Input bytes held for the terminal before rbk stops reading its stdin.
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// What one polled fd is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Out(usize),
    Master,
    Status,
    Stdin,
    Keeper,
    /// The socket init sends the terminal's master on (`run -t`).
    PtySock,
}

/// The command's terminal: its master now, or the socket it will come on.
pub(super) type Terminal = (Option<OwnedFd>, Option<OwnedFd>);

/// The fds a run's supervisor pumps: the command's output pipes or its
/// terminal's master, rbk's stdin for the terminal, and what is pending.
struct Streams {
    outs: Vec<(OutputStream, OwnedFd)>,
    master: Option<OwnedFd>,
    stdin: std::io::Stdin,
    /// The sources still open.
    open: Vec<Source>,
    winsize: Option<libc::winsize>,
    buf: Vec<u8>,
    /// Input for the terminal that it has not taken yet. The master is
    /// non-blocking so a command that does not read cannot stall the loop
    /// (and with it the output the command may be blocked on).
    pending_input: Vec<u8>,
    /// Where the terminal's master comes from, until it has come.
    pty_sock: Option<OwnedFd>,
    forward_stdin: bool,
}

impl Streams {
    fn new(
        outs: Vec<(OutputStream, OwnedFd)>,
        (master, pty_sock): Terminal,
        forward_stdin: bool,
        keeper_fd: bool,
    ) -> Self {
        let stdin = std::io::stdin();
        let mut open: Vec<Source> = (0..outs.len()).map(Source::Out).collect();
        open.push(Source::Status);
        if keeper_fd {
            open.push(Source::Keeper);
        }
        if pty_sock.is_some() {
            open.push(Source::PtySock);
        }
        if master.is_some() {
            open.push(Source::Master);
            if forward_stdin {
                open.push(Source::Stdin);
            }
        }
        if let Some(m) = &master {
            set_nonblocking(m.as_raw_fd());
        }
        Streams {
            winsize: get_winsize(stdin.as_raw_fd()),
            outs,
            master,
            stdin,
            open,
            buf: vec![0u8; 64 * 1024],
            pending_input: Vec::new(),
            pty_sock,
            forward_stdin,
        }
    }

    /// Takes the terminal's master init sent (once), sized as rbk's.
    fn receive_terminal(&mut self) {
        self.open.retain(|s| *s != Source::PtySock);
        let Some(sock) = self.pty_sock.take() else {
            return;
        };
        let Some(master) = recv_fd(sock.as_raw_fd()) else {
            return;
        };
        set_nonblocking(master.as_raw_fd());
        if let Some(ws) = &self.winsize {
            set_winsize(master.as_raw_fd(), ws);
        }
        self.master = Some(master);
        self.open.push(Source::Master);
        if self.forward_stdin {
            self.open.push(Source::Stdin);
        }
    }

    /// Passes a change of rbk's terminal size on to the container's.
    fn follow_window_size(&mut self) {
        if let (Some(m), Some(old)) = (&self.master, self.winsize) {
            if let Some(now) = get_winsize(self.stdin.as_raw_fd()) {
                if (now.ws_row, now.ws_col) != (old.ws_row, old.ws_col) {
                    set_winsize(m.as_raw_fd(), &now);
                    self.winsize = Some(now);
                }
            }
        }
    }

    /// Waits (at most 50 ms) for the open sources: what each is ready for.
    fn poll(&self, sup: &Supervisor) -> Result<Vec<(Source, PollFlags)>, SandboxError> {
        let wants_out = !self.pending_input.is_empty();
        // Stop reading rbk's stdin while the terminal is not taking it.
        let take_stdin = self.pending_input.len() < MAX_PENDING_INPUT;
        let stdin = self.stdin.as_fd();
        let fd_of = |s: &Source| match s {
            Source::Out(i) => self.outs[*i].1.as_fd(),
            Source::Master => self.master.as_ref().map_or(stdin, |m| m.as_fd()),
            Source::Status => sup.status.as_fd(),
            Source::Stdin => stdin,
            Source::Keeper => sup.pidfd.as_ref().map_or(stdin, |p| p.as_fd()),
            Source::PtySock => self.pty_sock.as_ref().map_or(stdin, |p| p.as_fd()),
        };
        let mut polled: Vec<Source> = self.open.clone();
        polled.retain(|s| *s != Source::Stdin || take_stdin);
        let mut pfds: Vec<PollFd> = polled
            .iter()
            .map(|s| {
                let mut events = PollFlags::POLLIN;
                if *s == Source::Master && wants_out {
                    events |= PollFlags::POLLOUT;
                }
                PollFd::new(fd_of(s), events)
            })
            .collect();
        match poll(&mut pfds, PollTimeout::from(50u16)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(process_err("poll the container's output")(e)),
        }
        Ok(polled
            .iter()
            .zip(&pfds)
            .map(|(s, p)| (*s, p.revents().unwrap_or(PollFlags::empty())))
            .collect())
    }

    /// Serves one ready source.
    fn handle(
        &mut self,
        sup: &mut Supervisor,
        source: Source,
        revents: PollFlags,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) {
        if source == Source::Keeper {
            // The keeper exited; `try_reap` collects it.
            self.open.retain(|s| *s != source);
            return;
        }
        if source == Source::PtySock {
            self.receive_terminal();
            return;
        }
        if let (Source::Master, Some(m)) = (source, &self.master) {
            if revents.contains(PollFlags::POLLOUT) {
                write_some(m.as_raw_fd(), &mut self.pending_input);
            }
            if revents == PollFlags::POLLOUT {
                return;
            }
        }
        let fd = match source {
            Source::Out(i) => self.outs[i].1.as_raw_fd(),
            Source::Master => self.master.as_ref().map_or(-1, |m| m.as_raw_fd()),
            Source::Status => sup.status.as_raw_fd(),
            Source::Stdin | Source::Keeper | Source::PtySock => self.stdin.as_raw_fd(),
        };
        match read_fd(fd, &mut self.buf) {
            Read::Again => {}
            Read::Eof => {
                self.open.retain(|s| *s != source);
                if let (Source::Stdin, Some(m)) = (source, &self.master) {
                    // rbk's input ended: send the terminal's EOF character
                    // so the command sees it too.
                    self.pending_input.push(0x04);
                    write_some(m.as_raw_fd(), &mut self.pending_input);
                }
            }
            Read::Data(n) => {
                let data = &self.buf[..n];
                match source {
                    Source::Out(i) => output(self.outs[i].0, data),
                    Source::Master => output(OutputStream::Stdout, data),
                    Source::Status => sup.on_status(data),
                    Source::Keeper | Source::PtySock => {}
                    Source::Stdin => {
                        self.pending_input.extend_from_slice(data);
                        if let Some(m) = &self.master {
                            write_some(m.as_raw_fd(), &mut self.pending_input);
                        }
                    }
                }
            }
        }
    }

    /// Reads what is left in every pipe once the container is gone.
    fn drain(&mut self, sup: &mut Supervisor, output: &mut dyn FnMut(OutputStream, &[u8])) {
        for (stream, fd) in self.outs.drain(..) {
            drain(fd.as_raw_fd(), &mut self.buf, |d| output(stream, d));
        }
        if let Some(m) = &self.master {
            drain(m.as_raw_fd(), &mut self.buf, |d| {
                output(OutputStream::Stdout, d)
            });
        }
        let mut status = Vec::new();
        drain(sup.status.as_raw_fd(), &mut self.buf, |d| {
            status.extend_from_slice(d)
        });
        sup.on_status(&status);
    }
}

impl Supervisor {
    pub(super) fn new(keeper: Pid, status: OwnedFd) -> Self {
        Supervisor {
            pidfd: pidfd_open(keeper),
            keeper,
            init: None,
            status,
            status_buf: Vec::new(),
            failure: None,
            reached_exec: false,
            killed: false,
        }
    }

    /// Whether the command's process got as far as exec.
    pub(super) fn reached_exec(&self) -> bool {
        self.reached_exec
    }

    /// The first failure a child reported: step, its argument, errno.
    pub(super) fn failure(&self) -> Option<(Step, u32, i32)> {
        self.failure
    }

    pub(super) fn run(
        &mut self,
        outs: Vec<(OutputStream, OwnedFd)>,
        terminal: Terminal,
        forward_stdin: bool,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        let mut io = Streams::new(outs, terminal, forward_stdin, self.pidfd.is_some());
        loop {
            self.handle_token(cancel);
            io.follow_window_size();
            for (source, revents) in io.poll(self)? {
                if !revents.is_empty() {
                    io.handle(self, source, revents, output);
                }
            }
            if let Some(code) = self.try_reap()? {
                // Every process of the container is gone: drain what is left.
                io.drain(self, output);
                return Ok(code);
            }
        }
    }

    fn handle_token(&mut self, cancel: &CancelToken) {
        if cancel.is_cancelled() && !self.killed {
            self.killed = true;
            if let Some(init) = self.init {
                // Only while the keeper lives is init's pid surely still init.
                if self.keeper_alive() {
                    let _ = kill(init, Signal::SIGKILL);
                }
            }
            // Init has PDEATHSIG=SIGKILL: killing the keeper kills it too.
            let _ = kill(self.keeper, Signal::SIGKILL);
        }
        if let Some(signo) = cancel.take_signal() {
            match (self.init, Signal::try_from(signo)) {
                (Some(init), Ok(sig)) => {
                    if self.keeper_alive() {
                        let _ = kill(init, sig);
                    }
                }
                // Init not started yet: keep the signal for the next turn.
                (None, Ok(_)) => cancel.send_signal(signo),
                (_, Err(_)) => {}
            }
        }
    }

    fn on_status(&mut self, data: &[u8]) {
        self.status_buf.extend_from_slice(data);
        while self.status_buf.len() >= 12 {
            let rec: Vec<u8> = self.status_buf.drain(..12).collect();
            let code = u16::from_le_bytes([rec[0], rec[1]]);
            let arg = u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]);
            let value = i32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]);
            let Some(step) = STEPS.iter().copied().find(|s| *s as u16 == code) else {
                continue;
            };
            if step == Step::InitPid {
                self.init = Some(Pid::from_raw(value));
            } else if step == Step::Exec {
                self.reached_exec = true;
            } else if self.failure.is_none() {
                self.failure = Some((step, arg, value));
            }
        }
    }

    /// Whether the keeper has not exited yet (it is not reaped either way).
    /// While it lives, init's pid cannot have been reused: the keeper reaps
    /// init only right before it exits itself.
    fn keeper_alive(&self) -> bool {
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED;
        matches!(
            waitid(Id::Pid(self.keeper), flags),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// Reaps the keeper if it exited; its code is the command's.
    fn try_reap(&mut self) -> Result<Option<i32>, SandboxError> {
        match waitpid(self.keeper, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Some(128 + sig as i32)),
            Ok(_) | Err(Errno::EINTR) => Ok(None),
            Err(e) => Err(process_err("wait for the container")(e)),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Reached early only on a supervision error: never leave the
        // container running or the keeper unreaped.
        if self.keeper_alive() {
            let _ = kill(self.keeper, Signal::SIGKILL);
            let _ = waitpid(self.keeper, None);
        }
    }
}

/// Receives an fd sent with SCM_RIGHTS on the unix socket `sock` (`None`
/// when the sender is gone without sending one).
fn recv_fd(sock: RawFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: the message, its iovec and its control buffer live on our
    // stack for the call; the CMSG macros stay inside `control`, and a
    // received fd is new and ours alone.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        if libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) <= 0 {
            return None;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Some(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd))
    }
}

/// A pidfd for `pid` (readable when it exits), if the kernel has them.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a non-negative return is a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) })
}

/// What one read gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// This many bytes.
    Data(usize),
    /// End of file, or an error that ends the stream (EIO: a pty whose
    /// slave closed).
    Eof,
    /// Nothing for now (non-blocking fd).
    Again,
}

/// Reads once, retrying on EINTR.
pub(super) fn read_fd(fd: RawFd, buf: &mut [u8]) -> Read {
    loop {
        // SAFETY: reads into a valid, writable buffer from an fd we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return Read::Data(n as usize);
        }
        if n == 0 {
            return Read::Eof;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => return Read::Again,
            _ => return Read::Eof,
        }
    }
}

/// Writes what the non-blocking `fd` takes now and removes it from `data`;
/// drops `data` if the fd is broken.
fn write_some(fd: RawFd, data: &mut Vec<u8>) {
    while !data.is_empty() {
        // SAFETY: writes from a valid buffer to an fd we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data.drain(..n as usize);
            continue;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => return,
            _ => {
                data.clear();
                return;
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Reads everything left in `fd` without blocking.
fn drain(fd: RawFd, buf: &mut [u8], mut sink: impl FnMut(&[u8])) {
    set_nonblocking(fd);
    while let Read::Data(n) = read_fd(fd, buf) {
        sink(&buf[..n]);
    }
}

pub(super) fn get_winsize(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ fills a winsize struct on our stack.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0).then_some(ws)
    }
}

fn set_winsize(fd: RawFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize struct we own.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, ws) };
}

/// Puts rbk's stdin terminal in raw mode for a `-it` run; restores on drop.
pub(super) struct RawModeGuard {
    saved: nix::sys::termios::Termios,
}

impl RawModeGuard {
    pub(super) fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawModeGuard {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
