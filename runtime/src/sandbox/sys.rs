//! Every syscall of the sandbox: fork, unshare, mount, pivot_root, exec
//! (`child.rs`), and rbk's supervision loop: poll, waitpid, kill, pty
//! (`parent.rs`). This file prepares a run and holds the process-wide
//! helpers (support probe, signal forwarding).
//!
//! Child code runs after `fork()` in a multi-threaded process, so it uses
//! only data prepared here before the fork (C strings, pointer arrays) and
//! raw syscalls. Failures are reported to the parent as fixed-size records on
//! a close-on-exec status pipe; a successful exec closes it.
#![allow(unsafe_code)]

mod child;
mod forked;
mod join;
mod parent;
mod terminal;

use std::ffi::{c_char, CString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Uid};

use child::{keeper, set_cloexec};
use forked::exit;
pub(super) use join::join;
use parent::{get_winsize, read_fd, RawModeGuard, Read, Supervisor};
use terminal::{container_pty, terminal_from_init};

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
    /// Connect the new network namespace with user-mode networking.
    pub user_net: bool,
    /// Ports to forward into it.
    pub publish: &'a [super::net::PortMapping],
    /// Where the user-mode network keeps its API socket.
    pub scratch: &'a Path,
    pub user: &'a ExecUser,
    pub cwd: &'a str,
    pub argv: &'a [String],
    pub env: Vec<String>,
    pub candidates: Vec<String>,
    pub stdin: StdinMode,
    pub tty: bool,
    pub insecure: bool,
    /// For `rbk exec`: the namespaces joined, named in the order of the
    /// fds given to [`join`] (empty for a run).
    pub join: Vec<&'static str>,
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

/// Parts of `/proc` that would let a command change the host (sysctls,
/// sysrq): made read-only, as Docker does. Not a security boundary (the
/// command is root), a guard against accidents like a postinst's `sysctl`.
const PROC_READONLY: [&str; 4] = ["sys", "sysrq-trigger", "irq", "bus"];
/// Parts of `/proc` hidden behind `/dev/null` or an empty tmpfs (Docker's list).
const PROC_MASKED: [&str; 8] = [
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
    "acpi",
    "scsi",
];

/// The capabilities the command keeps: Docker's default set, so builds
/// behave as they do under Docker (no mounts, no module loading, ...).
const DEFAULT_CAPS: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// The fd the status pipe gets in the children.
const STATUS_FD: RawFd = 3;
/// The fd of the network namespace the keeper enters (user-mode
/// networking).
const NET_FD: RawFd = 4;
/// The socket on which init sends rbk the master of the terminal it opens
/// in the container's own devpts (`rbk run -t`).
const PTY_FD: RawFd = 5;
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
    ProcReadonly,
    Capabilities,
    Seccomp,
    Network,
    Exec,
    Setns,
}

const STEPS: [Step; 34] = [
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
    Step::ProcReadonly,
    Step::Capabilities,
    Step::Seccomp,
    Step::Network,
    Step::Exec,
    Step::Setns,
];

/// The C side of a [`Launch`]: built before fork so children never allocate.
struct Prepared {
    rootfs: CString,
    proc_dir: CString,
    proc_readonly: Vec<CString>,
    proc_masked: Vec<CString>,
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
    /// Seccomp programs to install, in order (none when insecure).
    seccomp: &'static [super::seccomp::Program],
    /// Keep every capability (insecure).
    all_caps: bool,
    /// Where rbk's argv and environ live, for init to blank them.
    proc_regions: Option<ProcRegions>,
    /// Init opens the command's terminal in the container's devpts and
    /// sends its master on [`PTY_FD`].
    terminal_in_container: bool,
}

/// The argv and environ memory blocks of this process, from
/// `/proc/self/stat` (fields 48 to 51).
pub(super) struct ProcRegions {
    pub arg_start: usize,
    pub arg_end: usize,
    pub env_start: usize,
    pub env_end: usize,
}

impl ProcRegions {
    fn of_self() -> Option<ProcRegions> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The name (field 2) is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<usize> = rest
            .split_whitespace()
            .skip(45)
            .take(4)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        match fields[..] {
            [arg_start, arg_end, env_start, env_end]
                if arg_start <= arg_end && env_start <= env_end =>
            {
                Some(ProcRegions {
                    arg_start,
                    arg_end,
                    env_start,
                    env_end,
                })
            }
            _ => None,
        }
    }
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
    let argv = cstrings("argument", l.argv)?;
    let envp = cstrings("environment variable", &l.env)?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);
    Ok(Prepared {
        rootfs: cpath(l.rootfs)?,
        proc_dir: cpath(&l.proc_dir)?,
        proc_readonly: proc_paths(l, &PROC_READONLY)?,
        proc_masked: proc_paths(l, &PROC_MASKED)?,
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
        cwd_prefixes: cwd_prefixes(l.cwd)?,
        _argv: argv,
        _envp: envp,
        argv_ptrs,
        envp_ptrs,
        candidates: cstrings("command", &l.candidates)?,
        seccomp: if l.insecure {
            &[]
        } else {
            super::seccomp::default_programs()?
        },
        all_caps: l.insecure,
        proc_regions: ProcRegions::of_self(),
        terminal_in_container: l.tty && l.join.is_empty(),
    })
}

/// `items` as C strings (`what` names them in the error for a NUL byte).
fn cstrings<S: AsRef<str>>(what: &'static str, items: &[S]) -> Result<Vec<CString>, SandboxError> {
    items.iter().map(|s| cstr(what, s.as_ref())).collect()
}

/// The pointer array `execve` takes: each string's, then a null.
fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    ptrs
}

/// `/a`, `/a/b`, `/a/b/c` for the working directory `/a/b/c`.
fn cwd_prefixes(cwd: &str) -> Result<Vec<CString>, SandboxError> {
    let mut out = Vec::new();
    let mut prefix = String::new();
    for part in cwd.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        out.push(cstr("working directory", &prefix)?);
    }
    Ok(out)
}

/// The paths of `names` under the run's /proc.
fn proc_paths(l: &Launch, names: &[&str]) -> Result<Vec<CString>, SandboxError> {
    names.iter().map(|n| cpath(&l.proc_dir.join(n))).collect()
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
    /// The network namespace to enter (user-mode networking).
    net: Option<OwnedFd>,
    /// The children's end of the socket init sends the terminal on.
    pty: Option<OwnedFd>,
}

/// Starts the sandbox for `l`, supervises it and returns the exit code.
pub(super) fn launch(
    l: &Launch,
    output: &mut dyn FnMut(OutputStream, &[u8]),
    cancel: &CancelToken,
) -> Result<i32, SandboxError> {
    let plan = prepare(l)?;
    // The container's network namespace, made before it (or taken from the
    // pool, made ahead) and connected; it goes when the run is over.
    let net = match l.user_net {
        true => {
            super::net::available()?;
            Some(super::net::ContainerNet::take(l.publish, l.scratch)?)
        }
        false => None,
    };
    let ns = match &net {
        Some(n) => Some(
            n.ns()
                .try_clone_to_owned()
                .map_err(|source| SandboxError::Process {
                    op: "duplicate the network namespace's fd",
                    source,
                })?,
        ),
        None => None,
    };
    // `keeper` makes raw syscalls on data prepared above (no allocation, no
    // locks) and ends in `_exit`.
    let code = supervised(l, &plan, ns, output, cancel, |fds, parent| {
        keeper(&plan, fds, parent)
    });
    if let Some(net) = net {
        net.retire();
    }
    code
}

/// Forks the first child, which runs `first` on its fds and rbk's pid,
/// supervises it over `l`'s stdio (handing it the network namespace
/// `net` to enter, under user-mode networking) and returns the outcome. `first` runs between `fork` and `_exit`: it must only make raw
/// syscalls on data prepared before (no allocation, no locks).
fn supervised(
    l: &Launch,
    plan: &Prepared,
    net: Option<OwnedFd>,
    output: &mut dyn FnMut(OutputStream, &[u8]),
    cancel: &CancelToken,
    first: impl FnOnce(&ChildFds, nix::unistd::Pid) -> std::convert::Infallible,
) -> Result<i32, SandboxError> {
    let (status_r, status_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
    // `_raw` keeps rbk's terminal in raw mode until the run ends.
    let Stdio {
        fds,
        outs,
        master,
        pty_sock,
        _raw,
    } = stdio(l, status_w, net)?;
    let parent_pid = nix::unistd::getpid();
    // SAFETY: the child only runs `first`, which makes raw syscalls on data
    // prepared before (no allocation, no locks) and ends in `_exit`.
    let child = match unsafe { nix::unistd::fork() }.map_err(process_err("fork"))? {
        // `first` ends in `_exit`: it returns no value to match.
        #[allow(unreachable_code)]
        ForkResult::Child => match first(&fds, parent_pid) {},
        ForkResult::Parent { child } => child,
    };
    drop(fds);
    let mut sup = Supervisor::new(child, status_r);
    let terminal = (master, pty_sock);
    let forward_stdin = l.stdin == StdinMode::Inherit;
    let code = sup.run(outs, terminal, forward_stdin, output, cancel);
    outcome(l, plan, &mut sup, code, cancel)
}

/// A run's result once it ended: a setup failure the children reported
/// wins over the exit code.
fn outcome(
    l: &Launch,
    plan: &Prepared,
    sup: &mut Supervisor,
    code: Result<i32, SandboxError>,
    cancel: &CancelToken,
) -> Result<i32, SandboxError> {
    if let Some((step, arg, errno)) = sup.failure() {
        return Err(failure_error(l, plan, step, arg, errno));
    }
    if cancel.is_cancelled() {
        return Err(SandboxError::Cancelled);
    }
    let code = code?;
    if !sup.reached_exec() {
        // A child died before it could say why (e.g. out of fds).
        return Err(SandboxError::Setup {
            step: format!("start the container (its setup exited with code {code})"),
            source: std::io::Error::other("no status from the sandbox"),
        });
    }
    Ok(code)
}

/// The command's standard streams, made before the fork: the children's
/// ends, rbk's ends (pipes, or a terminal's master) and, for a terminal
/// on rbk's own stdin, the guard keeping that in raw mode.
struct Stdio {
    fds: ChildFds,
    outs: Vec<(OutputStream, OwnedFd)>,
    master: Option<OwnedFd>,
    /// Where init sends the master of the terminal it opens (`run -t`).
    pty_sock: Option<OwnedFd>,
    _raw: Option<RawModeGuard>,
}

fn stdio(l: &Launch, status: OwnedFd, net: Option<OwnedFd>) -> Result<Stdio, SandboxError> {
    if l.tty && l.join.is_empty() {
        return terminal_from_init(l, status, net);
    }
    if l.tty {
        let winsize = get_winsize(std::io::stdin().as_raw_fd());
        let pty = if l.join.is_empty() {
            nix::pty::openpty(winsize.as_ref(), None)
                .map_err(process_err("open a pseudo-terminal"))?
        } else {
            container_pty(l.rootfs, winsize.as_ref())?
        };
        set_cloexec(pty.master.as_raw_fd());
        set_cloexec(pty.slave.as_raw_fd());
        let raw = match l.stdin {
            StdinMode::Inherit => RawModeGuard::enter(),
            StdinMode::Null => None,
        };
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
            status,
            net,
            pty: None,
        };
        return Ok(Stdio {
            fds,
            outs: Vec::new(),
            master: Some(pty.master),
            pty_sock: None,
            _raw: raw,
        });
    }
    let (o_r, o_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
    let (e_r, e_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(process_err("create a pipe"))?;
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
    Ok(Stdio {
        fds: ChildFds {
            stdin,
            stdout: o_w,
            stderr: e_w,
            status,
            net,
            pty: None,
        },
        outs: vec![(OutputStream::Stdout, o_r), (OutputStream::Stderr, e_r)],
        master: None,
        pty_sock: None,
        _raw: None,
    })
}

/// Why `execve` refused, in words that point at the fix.
fn exec_failure(e: &std::io::Error, l: &Launch) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "permission denied: the file is not executable (no x bit, a directory, or on a noexec mount)".to_string(),
        Some(libc::ENOEXEC) => "exec format error: not a program this machine can run (another architecture, or a script without a #! line)".to_string(),
        Some(libc::E2BIG) => {
            let bytes: usize = l.argv.iter().chain(&l.env).map(|s| s.len() + 1).sum();
            let longest = l.argv.iter().chain(&l.env).map(String::len).max().unwrap_or(0);
            format!(
                "the arguments and environment are too large for the kernel (E2BIG): {bytes} bytes in {} strings, the longest {longest} bytes; Linux takes at most 128 KiB per string and a quarter of the stack limit in all",
                l.argv.len() + l.env.len()
            )
        }
        _ => e.to_string(),
    }
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
        Step::ExecFailed => {
            let reason = exec_failure(&source, l);
            return SandboxError::NotExecutable { command, reason };
        }
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
        Step::Hostname => format!("set the host name to {:?}", l.hostname),
        Step::Unshare => "create namespaces (unshare)".to_string(),
        Step::Setsid | Step::Stdio => "start a session for the container".to_string(),
        Step::ForkInit | Step::ForkCommand => "fork inside the container".to_string(),
        Step::MakePrivate => "make the mounts private".to_string(),
        Step::DevDir | Step::MountPts | Step::MountShm => "set up /dev".to_string(),
        Step::ProcReadonly => "make /proc/sys read-only".to_string(),
        Step::Loopback => "bring up the loopback interface".to_string(),
        Step::Ctty => "make the terminal the command's".to_string(),
        Step::Capabilities => "drop capabilities".to_string(),
        Step::Seccomp => "install the seccomp filter".to_string(),
        Step::Network => "enter the container's network namespace".to_string(),
        Step::Setns => format!(
            "enter the container's {} namespace",
            l.join.get(idx).copied().unwrap_or("")
        ),
        Step::InitPid | Step::Exec => "start the command".to_string(),
    };
    SandboxError::Setup { step, source }
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
            while let Read::Data(1) = read_fd(r.as_raw_fd(), &mut b) {
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

impl std::fmt::Debug for SignalForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signals: Vec<Signal> = self.old.iter().map(|(s, _)| *s).collect();
        f.debug_struct("SignalForwarder")
            .field("signals", &signals)
            .finish()
    }
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
