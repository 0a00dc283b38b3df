//! Every syscall of the sandbox: fork, unshare, mount, pivot_root, exec, and
//! the parent's supervision loop (poll, waitpid, kill, pty).
//!
//! Child code runs after `fork()` in a multi-threaded process, so it uses
//! only data prepared before the fork (C strings, pointer arrays) and raw
//! syscalls: no allocation, no locks, no panics. Failures are reported to the
//! parent as fixed-size records on a close-on-exec status pipe; a successful
//! exec closes it.
#![allow(unsafe_code)]

use std::ffi::{c_char, CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::{CancelToken, ExecUser, OutputStream, SandboxError, StdinMode};

/// A bind mount with both ends as host paths (the target already resolved
/// inside the rootfs).
pub(super) struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub readonly: bool,
}

/// Everything the children need, prepared by `mod.rs`.
pub(super) struct Launch<'a> {
    pub rootfs: &'a Path,
    pub proc_dir: PathBuf,
    pub dev_dir: PathBuf,
    pub sys_dir: PathBuf,
    pub binds: Vec<Bind>,
    pub hostname: &'a str,
    pub isolate_net: bool,
    pub user: &'a ExecUser,
    pub cwd: &'a str,
    pub argv: &'a [String],
    pub env: Vec<String>,
    pub candidates: Vec<String>,
    pub stdin: StdinMode,
    pub tty: bool,
}

/// Device nodes bind-mounted from the host into the container's `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Symlinks in the container's `/dev`: (link name, target).
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The fd the status pipe gets in the children.
const STATUS_FD: RawFd = 3;
/// Exit code of a child whose setup failed (Docker uses 125 for that too).
const EXIT_SETUP: i32 = 125;

/// What a status record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
enum Step {
    InitPid = 1,
    Stdio,
    Setsid,
    Unshare,
    ForkInit,
    MakePrivate,
    BindRootfs,
    MountProc,
    MountDev,
    DevNode,
    DevDir,
    DevLink,
    MountPts,
    MountShm,
    Bind,
    RemountRo,
    PivotRoot,
    Hostname,
    Loopback,
    ForkCommand,
    Ctty,
    MkdirCwd,
    Setgroups,
    Setgid,
    Setuid,
    ChdirCwd,
    ExecNotFound,
    ExecFailed,
}

const STEPS: [Step; 28] = [
    Step::InitPid,
    Step::Stdio,
    Step::Setsid,
    Step::Unshare,
    Step::ForkInit,
    Step::MakePrivate,
    Step::BindRootfs,
    Step::MountProc,
    Step::MountDev,
    Step::DevNode,
    Step::DevDir,
    Step::DevLink,
    Step::MountPts,
    Step::MountShm,
    Step::Bind,
    Step::RemountRo,
    Step::PivotRoot,
    Step::Hostname,
    Step::Loopback,
    Step::ForkCommand,
    Step::Ctty,
    Step::MkdirCwd,
    Step::Setgroups,
    Step::Setgid,
    Step::Setuid,
    Step::ChdirCwd,
    Step::ExecNotFound,
    Step::ExecFailed,
];

/// The C side of a [`Launch`]: built before fork so children never allocate.
struct Prepared {
    rootfs: CString,
    proc_dir: CString,
    dev_dir: CString,
    sys_dir: CString,
    dev_nodes: Vec<(CString, CString)>,
    dev_links: Vec<(CString, CString)>,
    pts_dir: CString,
    shm_dir: CString,
    binds: Vec<(CString, CString, bool)>,
    hostname: Option<CString>,
    isolate_net: bool,
    tty: bool,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    cwd_prefixes: Vec<CString>,
    cwd: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    candidates: Vec<CString>,
}

fn cstr(what: &'static str, s: impl AsRef<[u8]>) -> Result<CString, SandboxError> {
    CString::new(s.as_ref()).map_err(|_| SandboxError::NulByte {
        what,
        value: String::from_utf8_lossy(s.as_ref()).into_owned(),
    })
}

fn cpath(p: &Path) -> Result<CString, SandboxError> {
    cstr("path", p.as_os_str().as_bytes())
}

fn prepare(l: &Launch) -> Result<Prepared, SandboxError> {
    let dev = |name: &str| cpath(&l.dev_dir.join(name));
    let mut dev_nodes = Vec::new();
    for n in DEV_NODES {
        dev_nodes.push((cpath(&Path::new("/dev").join(n))?, dev(n)?));
    }
    let mut dev_links = Vec::new();
    for (name, target) in DEV_LINKS {
        dev_links.push((cstr("path", target)?, dev(name)?));
    }
    let mut binds = Vec::new();
    for b in &l.binds {
        binds.push((cpath(&b.source)?, cpath(&b.target)?, b.readonly));
    }
    let mut cwd_prefixes = Vec::new();
    let mut prefix = String::new();
    for part in l.cwd.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        cwd_prefixes.push(cstr("working directory", &prefix)?);
    }
    let argv = l
        .argv
        .iter()
        .map(|a| cstr("argument", a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = l
        .env
        .iter()
        .map(|e| cstr("environment variable", e))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    Ok(Prepared {
        rootfs: cpath(l.rootfs)?,
        proc_dir: cpath(&l.proc_dir)?,
        dev_dir: cpath(&l.dev_dir)?,
        sys_dir: cpath(&l.sys_dir)?,
        dev_nodes,
        dev_links,
        pts_dir: dev("pts")?,
        shm_dir: dev("shm")?,
        binds,
        hostname: match l.hostname {
            "" => None,
            h => Some(cstr("hostname", h)?),
        },
        isolate_net: l.isolate_net,
        tty: l.tty,
        uid: Uid::from_raw(l.user.uid),
        gid: Gid::from_raw(l.user.gid),
        groups: l.user.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        cwd: cstr(
            "working directory",
            if l.cwd.is_empty() { "/" } else { l.cwd },
        )?,
        cwd_prefixes,
        _argv: argv,
        _envp: envp,
        argv_ptrs,
        envp_ptrs,
        candidates: l
            .candidates
            .iter()
            .map(|c| cstr("command", c))
            .collect::<Result<_, _>>()?,
    })
}

fn process_err(op: &'static str) -> impl FnOnce(Errno) -> SandboxError {
    move |e| SandboxError::Process {
        op,
        source: std::io::Error::from(e),
    }
}

/// The fds a run's children use, created before the fork.
struct ChildFds {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: OwnedFd,
}

/// Starts the sandbox for `l`, supervises it and returns the exit code.
pub(super) fn launch(
    l: &Launch,
    output: &mut dyn FnMut(OutputStream, &[u8]),
    cancel: &CancelToken,
) -> Result<i32, SandboxError> {
    let plan = prepare(l)?;
    let (status_r, status_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
    let mut tty_master = None;
    let mut _raw_guard = None;
    let mut out_r = Vec::new();
    let fds = if l.tty {
        let winsize = get_winsize(std::io::stdin().as_raw_fd());
        let pty = nix::pty::openpty(winsize.as_ref(), None)
            .map_err(process_err("open a pseudo-terminal"))?;
        set_cloexec(pty.master.as_raw_fd());
        set_cloexec(pty.slave.as_raw_fd());
        _raw_guard = RawModeGuard::enter();
        let dup = |fd: &OwnedFd| {
            fd.try_clone().map_err(|source| SandboxError::Process {
                op: "duplicate a pty fd",
                source,
            })
        };
        let fds = ChildFds {
            stdin: Some(dup(&pty.slave)?),
            stdout: dup(&pty.slave)?,
            stderr: pty.slave,
            status: status_w,
        };
        tty_master = Some(pty.master);
        fds
    } else {
        let (o_r, o_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
        let (e_r, e_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
        out_r.push((OutputStream::Stdout, o_r));
        out_r.push((OutputStream::Stderr, e_r));
        let stdin = match l.stdin {
            StdinMode::Null => Some(OwnedFd::from(File::open("/dev/null").map_err(
                |source| SandboxError::Io {
                    op: "open",
                    path: PathBuf::from("/dev/null"),
                    source,
                },
            )?)),
            StdinMode::Inherit => None,
        };
        ChildFds {
            stdin,
            stdout: o_w,
            stderr: e_w,
            status: status_w,
        }
    };

    let parent_pid = nix::unistd::getpid();
    // SAFETY: the child only runs `keeper`, which makes raw syscalls on data
    // prepared above (no allocation, no locks) and ends in `_exit`.
    let keeper = match unsafe { nix::unistd::fork() }.map_err(process_err("fork"))? {
        ForkResult::Child => keeper(&plan, &fds, parent_pid),
        ForkResult::Parent { child } => child,
    };
    drop(fds);
    let mut sup = Supervisor {
        keeper,
        init: None,
        status: status_r,
        status_buf: Vec::new(),
        failure: None,
        killed: false,
    };
    let code = sup.run(
        out_r,
        tty_master,
        l.stdin == StdinMode::Inherit,
        output,
        cancel,
    );
    if let Some((step, arg, errno)) = sup.failure {
        return Err(failure_error(l, &plan, step, arg, errno));
    }
    if cancel.is_cancelled() {
        return Err(SandboxError::Cancelled);
    }
    code
}

/// Turns a child's status record into the error the user sees.
fn failure_error(l: &Launch, plan: &Prepared, step: Step, arg: u32, errno: i32) -> SandboxError {
    let source = std::io::Error::from_raw_os_error(errno);
    let command = l.argv.first().cloned().unwrap_or_default();
    let idx = arg as usize;
    let path = |c: Option<&CString>| {
        c.map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let step = match step {
        Step::ExecNotFound => return SandboxError::CommandNotFound { command },
        Step::ExecFailed => return SandboxError::NotExecutable { command, source },
        Step::Bind => format!(
            "bind mount {} on {}",
            path(plan.binds.get(idx).map(|b| &b.0)),
            path(plan.binds.get(idx).map(|b| &b.1))
        ),
        Step::RemountRo => format!("make {} read-only", path(plan.binds.get(idx).map(|b| &b.1))),
        Step::DevNode => format!("bind mount {}", path(plan.dev_nodes.get(idx).map(|d| &d.0))),
        Step::DevLink => format!("create {}", path(plan.dev_links.get(idx).map(|d| &d.1))),
        Step::MkdirCwd | Step::ChdirCwd => format!("enter working directory {}", l.cwd),
        Step::Setuid | Step::Setgid | Step::Setgroups => {
            format!("switch to user {}:{}", l.user.uid, l.user.gid)
        }
        Step::MountProc => "mount /proc".to_string(),
        Step::MountDev => "mount /dev".to_string(),
        Step::PivotRoot => format!("pivot_root into {}", l.rootfs.display()),
        Step::BindRootfs => format!("bind mount rootfs {}", l.rootfs.display()),
        other => format!("{other:?}"),
    };
    SandboxError::Setup { step, source }
}

// ---------------------------------------------------------------- children

fn exit(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running atexit handlers or
    // destructors, which must not run in a forked child.
    unsafe { libc::_exit(code) }
}

/// Writes a 12-byte status record: tag, step, arg, value (errno or pid).
fn report(step: Step, arg: u32, value: i32) {
    let mut rec = [0u8; 12];
    rec[0..2].copy_from_slice(&(step as u16).to_le_bytes());
    rec[4..8].copy_from_slice(&arg.to_le_bytes());
    rec[8..12].copy_from_slice(&value.to_le_bytes());
    // SAFETY: writes from a valid stack buffer to an fd we own; a write of
    // 12 bytes to a pipe is atomic.
    unsafe { libc::write(STATUS_FD, rec.as_ptr().cast(), rec.len()) };
}

fn fail(step: Step, arg: u32, e: Errno) -> ! {
    report(step, arg, e as i32);
    exit(EXIT_SETUP)
}

fn check<T>(r: nix::Result<T>, step: Step, arg: u32) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(step, arg, e),
    }
}

/// Duplicates `fd` to a number >= 10 (so the later dup2 onto 0..3 cannot
/// clobber a source), or fails the setup.
fn dup_high(fd: RawFd) -> RawFd {
    // SAFETY: F_DUPFD on an fd this process owns.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
    if r < 0 {
        fail(Step::Stdio, 0, Errno::last())
    }
    r
}

fn dup_to(from: RawFd, to: RawFd) {
    // SAFETY: dup2 between fds this process owns.
    if unsafe { libc::dup2(from, to) } < 0 {
        fail(Step::Stdio, 1, Errno::last())
    }
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on an fd this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn close_raw(fd: RawFd) {
    // SAFETY: closing an fd number this process owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// The first child: puts stdio in place, unshares the namespaces and forks
/// init, then waits for it and exits with its status.
fn keeper(p: &Prepared, fds: &ChildFds, parent: Pid) -> ! {
    // Tie our life to rbk's: if it dies, we die, and so does init (below).
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || nix::unistd::getppid() != parent
    {
        exit(EXIT_SETUP);
    }
    let status = dup_high(fds.status.as_raw_fd());
    let stdin = fds.stdin.as_ref().map(|f| dup_high(f.as_raw_fd()));
    let out = dup_high(fds.stdout.as_raw_fd());
    let err = dup_high(fds.stderr.as_raw_fd());
    dup_to(status, STATUS_FD);
    set_cloexec(STATUS_FD);
    if let Some(stdin) = stdin {
        dup_to(stdin, 0);
    }
    dup_to(out, 1);
    dup_to(err, 2);
    // Drop every other inherited fd (other runs' pipes, rbk's files) so the
    // container holds nothing of rbk's and pipes see EOF when it ends.
    // SAFETY: close_range only closes fds.
    unsafe { libc::syscall(libc::SYS_close_range, STATUS_FD + 1, u32::MAX, 0) };

    // A session of our own: terminal signals for rbk do not reach the
    // container (rbk forwards what it wants to).
    check(nix::unistd::setsid(), Step::Setsid, 0);
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if p.isolate_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    check(unshare(flags), Step::Unshare, 0);
    // SAFETY: this process is single-threaded (a fork child); the child runs
    // `init`, which follows the same no-allocation rules.
    let init_pid = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(Step::ForkInit, 0, e),
        Ok(ForkResult::Child) => init(p),
        Ok(ForkResult::Parent { child }) => child,
    };
    report(Step::InitPid, 0, init_pid.as_raw());
    for fd in 0..=STATUS_FD {
        close_raw(fd);
    }
    exit(wait_exit_code(init_pid))
}

/// Waits for `pid` and maps its status to an exit code (128+N for signal N).
fn wait_exit_code(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return EXIT_SETUP,
        }
    }
}

/// Signals init forwards to the command.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Pid 1 of the new pid namespace: mounts, pivot_root, then forks the
/// command, reaps zombies and forwards signals until the command exits.
fn init(p: &Prepared) -> ! {
    // If the keeper dies (killed by rbk), take the namespace down with it.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    setup_mounts(p);
    if let Some(h) = &p.hostname {
        check(
            nix::unistd::sethostname(OsStr::from_bytes(h.as_bytes())),
            Step::Hostname,
            0,
        );
    }
    if p.isolate_net {
        loopback_up();
    }
    // Block the signals we handle synchronously before the command exists,
    // so none is lost; blocked signals reach pid 1 even without a handler.
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    check(
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None),
        Step::ForkCommand,
        0,
    );
    // SAFETY: single-threaded child; `command` follows the no-allocation rules.
    let child = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(Step::ForkCommand, 0, e),
        Ok(ForkResult::Child) => command(p),
        Ok(ForkResult::Parent { child }) => child,
    };
    for fd in 0..=STATUS_FD {
        close_raw(fd);
    }
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

fn setup_mounts(p: &Prepared) {
    let none: Option<&str> = None;
    // Nothing we mount may propagate back to the host.
    check(
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
        Step::MakePrivate,
        0,
    );
    // pivot_root needs the new root to be a mount point.
    check(
        mount(
            Some(p.rootfs.as_c_str()),
            p.rootfs.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        ),
        Step::BindRootfs,
        0,
    );
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    check(
        mount(
            Some("proc"),
            p.proc_dir.as_c_str(),
            Some("proc"),
            nosuid_nodev_noexec,
            none,
        ),
        Step::MountProc,
        0,
    );
    check(
        mount(
            Some("tmpfs"),
            p.dev_dir.as_c_str(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
        Step::MountDev,
        0,
    );
    for (i, (host, target)) in p.dev_nodes.iter().enumerate() {
        let i = i as u32;
        let f = check(
            nix::fcntl::open(
                target.as_c_str(),
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o666),
            ),
            Step::DevNode,
            i,
        );
        drop(f);
        check(
            mount(
                Some(host.as_c_str()),
                target.as_c_str(),
                none,
                MsFlags::MS_BIND,
                none,
            ),
            Step::DevNode,
            i,
        );
    }
    for dir in [&p.pts_dir, &p.shm_dir] {
        check(
            nix::unistd::mkdir(dir.as_c_str(), Mode::from_bits_truncate(0o755)),
            Step::DevDir,
            0,
        );
    }
    check(
        mount(
            Some("devpts"),
            p.pts_dir.as_c_str(),
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        Step::MountPts,
        0,
    );
    check(
        mount(
            Some("shm"),
            p.shm_dir.as_c_str(),
            Some("tmpfs"),
            nosuid_nodev_noexec,
            Some("mode=1777,size=65536k"),
        ),
        Step::MountShm,
        0,
    );
    for (i, (target, link)) in p.dev_links.iter().enumerate() {
        check(
            nix::unistd::symlinkat(target.as_c_str(), AT_FDCWD, link.as_c_str()),
            Step::DevLink,
            i as u32,
        );
    }
    // /sys is optional: a read-only sysfs, else a read-only bind of the host's.
    let ro = nosuid_nodev_noexec | MsFlags::MS_RDONLY;
    if mount(Some("sysfs"), p.sys_dir.as_c_str(), Some("sysfs"), ro, none).is_err()
        && mount(
            Some("/sys"),
            p.sys_dir.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .is_ok()
    {
        let _ = mount(
            none,
            p.sys_dir.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
            none,
        );
    }
    for (i, (source, target, readonly)) in p.binds.iter().enumerate() {
        let i = i as u32;
        check(
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            ),
            Step::Bind,
            i,
        );
        if *readonly {
            check(
                mount(
                    none,
                    target.as_c_str(),
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    none,
                ),
                Step::RemountRo,
                i,
            );
        }
    }
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // leaves only the rootfs, without a put_old directory in the image.
    check(nix::unistd::chdir(p.rootfs.as_c_str()), Step::PivotRoot, 0);
    check(nix::unistd::pivot_root(".", "."), Step::PivotRoot, 1);
    check(umount2(".", MntFlags::MNT_DETACH), Step::PivotRoot, 2);
    check(nix::unistd::chdir("/"), Step::PivotRoot, 3);
}

/// Brings `lo` up in a fresh network namespace.
fn loopback_up() {
    // SAFETY: plain socket/ioctl calls on a zeroed, NUL-terminated ifreq that
    // lives on our stack; the socket is closed before returning.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail(Step::Loopback, 0, Errno::last());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            fail(Step::Loopback, 1, Errno::last());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req) < 0 {
            fail(Step::Loopback, 2, Errno::last());
        }
        libc::close(sock);
    }
}

/// The command's process: signals reset, terminal, working directory,
/// identity, then exec along the candidate paths.
fn command(p: &Prepared) -> ! {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // rbk ignores SIGPIPE (Rust does); ignored signals survive exec, so reset.
    for sig in 1..32 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: restoring the default disposition is always valid.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    if p.tty {
        check(nix::unistd::setsid(), Step::Ctty, 0);
        // SAFETY: TIOCSCTTY on our stdin, the pty slave.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY as _, 0) } < 0 {
            fail(Step::Ctty, 1, Errno::last());
        }
    }
    for dir in &p.cwd_prefixes {
        match nix::unistd::mkdir(dir.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => fail(Step::MkdirCwd, 0, e),
        }
    }
    check(nix::unistd::setgroups(&p.groups), Step::Setgroups, 0);
    check(nix::unistd::setgid(p.gid), Step::Setgid, 0);
    check(nix::unistd::setuid(p.uid), Step::Setuid, 0);
    check(nix::unistd::chdir(p.cwd.as_c_str()), Step::ChdirCwd, 0);
    let mut denied = None;
    for cand in &p.candidates {
        // SAFETY: argv and envp are NUL-terminated arrays of pointers to
        // CStrings that `p` keeps alive; execve only returns on failure.
        unsafe { libc::execve(cand.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
        match Errno::last() {
            Errno::ENOENT | Errno::ENOTDIR => {}
            // Like execvp: remember, keep searching.
            Errno::EACCES => denied = Some(Errno::EACCES),
            e => {
                report(Step::ExecFailed, 0, e as i32);
                exit(super::EXIT_NOT_EXECUTABLE);
            }
        }
    }
    match denied {
        Some(e) => {
            report(Step::ExecFailed, 0, e as i32);
            exit(super::EXIT_NOT_EXECUTABLE)
        }
        None => {
            report(Step::ExecNotFound, 0, Errno::ENOENT as i32);
            exit(super::EXIT_NOT_FOUND)
        }
    }
}

// ------------------------------------------------------------------ parent

/// rbk's side of a run: pumps output, watches the status pipe and the
/// cancel token, and reaps the keeper.
struct Supervisor {
    keeper: Pid,
    init: Option<Pid>,
    status: OwnedFd,
    status_buf: Vec<u8>,
    failure: Option<(Step, u32, i32)>,
    killed: bool,
}

/// What one polled fd is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Out(usize),
    Master,
    Status,
    Stdin,
}

impl Supervisor {
    fn run(
        &mut self,
        mut outs: Vec<(OutputStream, OwnedFd)>,
        master: Option<OwnedFd>,
        forward_stdin: bool,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        let stdin = std::io::stdin();
        let mut open: Vec<Source> = (0..outs.len()).map(Source::Out).collect();
        open.push(Source::Status);
        if master.is_some() {
            open.push(Source::Master);
            if forward_stdin {
                open.push(Source::Stdin);
            }
        }
        let mut winsize = get_winsize(stdin.as_raw_fd());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.handle_token(cancel);
            if let (Some(m), Some(old)) = (&master, winsize) {
                if let Some(now) = get_winsize(stdin.as_raw_fd()) {
                    if (now.ws_row, now.ws_col) != (old.ws_row, old.ws_col) {
                        set_winsize(m.as_raw_fd(), &now);
                        winsize = Some(now);
                    }
                }
            }
            let ready: Vec<(Source, bool)> = {
                let fd_of = |s: &Source| match s {
                    Source::Out(i) => outs[*i].1.as_fd(),
                    Source::Master => master.as_ref().map_or(stdin.as_fd(), |m| m.as_fd()),
                    Source::Status => self.status.as_fd(),
                    Source::Stdin => stdin.as_fd(),
                };
                let mut pfds: Vec<PollFd> = open
                    .iter()
                    .map(|s| PollFd::new(fd_of(s), PollFlags::POLLIN))
                    .collect();
                match poll(&mut pfds, PollTimeout::from(50u16)) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(process_err("poll the container's output")(e)),
                }
                open.iter()
                    .zip(&pfds)
                    .map(|(s, p)| (*s, p.revents().is_some_and(|r| !r.is_empty())))
                    .collect()
            };
            for (source, is_ready) in ready {
                if !is_ready {
                    continue;
                }
                let fd = match source {
                    Source::Out(i) => outs[i].1.as_raw_fd(),
                    Source::Master => master.as_ref().map_or(-1, |m| m.as_raw_fd()),
                    Source::Status => self.status.as_raw_fd(),
                    Source::Stdin => stdin.as_raw_fd(),
                };
                match read_fd(fd, &mut buf) {
                    Some(0) | None => open.retain(|s| *s != source),
                    Some(n) => {
                        let data = &buf[..n];
                        match source {
                            Source::Out(i) => output(outs[i].0, data),
                            Source::Master => output(OutputStream::Stdout, data),
                            Source::Status => self.on_status(data),
                            Source::Stdin => {
                                if let Some(m) = &master {
                                    write_all_fd(m.as_raw_fd(), data);
                                }
                            }
                        }
                    }
                }
            }
            if let Some(code) = self.try_reap()? {
                // Every process of the container is gone: drain what is left.
                for (stream, fd) in outs.drain(..) {
                    drain(fd.as_raw_fd(), &mut buf, |d| output(stream, d));
                }
                if let Some(m) = &master {
                    drain(m.as_raw_fd(), &mut buf, |d| output(OutputStream::Stdout, d));
                }
                let mut status = Vec::new();
                drain(self.status.as_raw_fd(), &mut buf, |d| {
                    status.extend_from_slice(d)
                });
                self.on_status(&status);
                return Ok(code);
            }
        }
    }

    fn handle_token(&mut self, cancel: &CancelToken) {
        if cancel.is_cancelled() && !self.killed {
            self.killed = true;
            if let Some(init) = self.init {
                // Only while the keeper lives is init's pid surely still init.
                if matches!(
                    waitpid(
                        self.keeper,
                        Some(WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED)
                    ),
                    Ok(WaitStatus::StillAlive)
                ) {
                    let _ = kill(init, Signal::SIGKILL);
                }
            }
            // Init has PDEATHSIG=SIGKILL: killing the keeper kills it too.
            let _ = kill(self.keeper, Signal::SIGKILL);
        }
        if let Some(signo) = cancel.take_signal() {
            match (self.init, Signal::try_from(signo)) {
                (Some(init), Ok(sig)) => {
                    let _ = kill(init, sig);
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
            } else if self.failure.is_none() {
                self.failure = Some((step, arg, value));
            }
        }
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
        if matches!(
            waitpid(
                self.keeper,
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED)
            ),
            Ok(WaitStatus::StillAlive)
        ) {
            let _ = kill(self.keeper, Signal::SIGKILL);
            let _ = waitpid(self.keeper, None);
        }
    }
}

/// Reads once; `None` on EOF-like errors (EIO is a pty whose slave closed).
fn read_fd(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: reads into a valid, writable buffer from an fd we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Some(n as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            // EAGAIN (only in `drain`): nothing more for now.
            _ => return None,
        }
    }
}

fn write_all_fd(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a valid buffer to an fd we own.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            return;
        }
        data = &data[n as usize..];
    }
}

/// Reads everything left in `fd` without blocking.
fn drain(fd: RawFd, buf: &mut [u8], mut sink: impl FnMut(&[u8])) {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    while let Some(n) = read_fd(fd, buf).filter(|n| *n > 0) {
        sink(&buf[..n]);
    }
}

fn get_winsize(fd: RawFd) -> Option<libc::winsize> {
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
struct RawModeGuard {
    saved: nix::sys::termios::Termios,
}

impl RawModeGuard {
    fn enter() -> Option<Self> {
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

/// Checks that this process can run the sandbox: root, and able to create
/// mount, pid, uts, ipc and network namespaces. The error says why not.
pub fn sandbox_supported() -> Result<(), String> {
    if !Uid::effective().is_root() {
        return Err("the RUN sandbox needs root (rbk runs without a user namespace)".into());
    }
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    // SAFETY: the child only calls unshare and _exit.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("cannot fork to probe namespaces: {e}")),
        Ok(ForkResult::Child) => exit(match unshare(flags) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }),
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, errno)) => Err(format!(
                "cannot create namespaces (unshare: {})",
                Errno::from_raw(errno)
            )),
            other => Err(format!("namespace probe ended unexpectedly: {other:?}")),
        },
    }
}

/// The write end of the self-pipe the signal handler writes to (-1: none).
static FORWARD_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_forwarded_signal(signo: libc::c_int) {
    let fd = FORWARD_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = signo as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is on our stack.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// While alive, SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to rbk are not acted
/// on by rbk but delivered to the container run with the token (see
/// [`forward_signals`]). Dropping it restores the previous handlers.
pub struct SignalForwarder {
    old: Vec<(Signal, nix::sys::signal::SigAction)>,
    write: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Forwards rbk's SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container run with
/// `token` (for `rbk run`): a handler writes the signal to a pipe, and a
/// thread hands it to [`CancelToken::send_signal`]. Only one forwarder may
/// exist at a time.
pub fn forward_signals(token: &CancelToken) -> Result<SignalForwarder, SandboxError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
    if FORWARD_FD
        .compare_exchange(-1, w.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(process_err("forward signals (a forwarder already exists)")(
            Errno::EBUSY,
        ));
    }
    let token = token.clone();
    let thread = std::thread::Builder::new()
        .name("rbk-signals".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            while let Some(1) = read_fd(r.as_raw_fd(), &mut b) {
                token.send_signal(i32::from(b[0]));
            }
        })
        .map_err(|source| SandboxError::Process {
            op: "start the signal thread",
            source,
        })?;
    let action = SigAction::new(
        SigHandler::Handler(on_forwarded_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut old = Vec::new();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: the handler only loads an atomic and calls write(2).
        if let Ok(prev) = unsafe { sigaction(sig, &action) } {
            old.push((sig, prev));
        }
    }
    Ok(SignalForwarder {
        old,
        write: Some(w),
        thread: Some(thread),
    })
}

impl Drop for SignalForwarder {
    fn drop(&mut self) {
        for (sig, prev) in self.old.drain(..) {
            // SAFETY: restores the handler that was installed before us.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &prev) };
        }
        FORWARD_FD.store(-1, Ordering::SeqCst);
        // Closing the write end ends the thread's read loop.
        drop(self.write.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
