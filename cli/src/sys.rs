//! The CLI's syscalls, all here: whether rbk runs as root, and Ctrl-C and
//! SIGTERM setting a cancel token instead of killing rbk, so running steps
//! are stopped, mounts undone and nothing half-made is committed.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use rbk_runtime::sandbox::CancelToken;

static TOKEN: OnceLock<CancelToken> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    if let Some(t) = TOKEN.get() {
        t.cancel();
    }
}

/// The real user and group ids of this process.
pub fn real_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// Whether rbk runs as root (the store's default place depends on it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Routes SIGINT and SIGTERM to `token` for the rest of the process.
pub fn cancel_on_interrupt(token: &CancelToken) {
    let _ = TOKEN.set(token.clone());
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic store through a token
        // that lives for the whole process (a static), which is
        // async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
}

/// A process forked into new user and mount namespaces, stopped until its
/// id maps are written.
pub struct UnmappedChild {
    pid: nix::unistd::Pid,
    go: std::os::fd::OwnedFd,
}

impl UnmappedChild {
    /// The child's pid (for newuidmap and newgidmap).
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the child go on (it becomes root of its namespace and execs
    /// `exe` with `args` and the extra `env`), then waits for it and
    /// returns its exit code. Ctrl-C reaches both; the parent ignores it
    /// and waits for the child to wind down.
    pub fn release_and_wait(self) -> std::io::Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        for sig in [Signal::SIGINT, Signal::SIGQUIT] {
            // SAFETY: setting SIG_IGN is always sound.
            unsafe {
                let _ = sigaction(sig, &ignore);
            }
        }
        nix::unistd::write(&self.go, b"g")?;
        drop(self.go);
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Forks a child that unshares user and mount namespaces, tells the parent
/// it did, waits to be released (its id maps written by then), becomes
/// root of the namespace and execs `exe` with `args` and `env` added.
/// Call while the process is single-threaded (first thing in `main`).
pub fn fork_into_user_namespace(
    exe: &std::path::Path,
    args: &[std::ffi::OsString],
    env: &[(&str, std::ffi::OsString)],
) -> std::io::Result<UnmappedChild> {
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{fork, read, ForkResult};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let to_c = |s: &[u8]| {
        CString::new(s)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte"))
    };
    // Everything the child needs, made before the fork.
    let exe_c = to_c(exe.as_os_str().as_bytes())?;
    let argv: Vec<CString> = args
        .iter()
        .map(|a| to_c(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut envp: Vec<CString> = Vec::new();
    for (k, v) in crate::env::all() {
        if env.iter().any(|(name, _)| k.as_bytes() == name.as_bytes()) {
            continue;
        }
        envp.push(to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    for (k, v) in env {
        envp.push(to_c(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    let (ready_r, ready_w) = nix::unistd::pipe()?;
    let (go_r, go_w) = nix::unistd::pipe()?;
    // SAFETY: rbk is single-threaded here (this runs first in main), so the
    // child may do anything the parent could.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop((ready_r, go_w));
            let code = (|| -> nix::Result<std::convert::Infallible> {
                unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
                nix::unistd::write(&ready_w, b"u")?;
                let mut b = [0u8; 1];
                if read(&go_r, &mut b)? != 1 {
                    return Err(nix::errno::Errno::EPIPE);
                }
                let root_gid = nix::unistd::Gid::from_raw(0);
                let root_uid = nix::unistd::Uid::from_raw(0);
                nix::unistd::setresgid(root_gid, root_gid, root_gid)?;
                nix::unistd::setresuid(root_uid, root_uid, root_uid)?;
                // Changing credentials cleared it: die with the parent.
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                nix::unistd::execve(&exe_c, &argv, &envp)
            })();
            let e = code.err().unwrap_or(nix::errno::Errno::EINVAL);
            eprintln!("rbk: cannot enter the user namespace: {e}");
            // SAFETY: ends the forked child without running the parent's
            // destructors.
            unsafe { libc::_exit(125) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, go_r));
            let mut b = [0u8; 1];
            if read(&ready_r, &mut b)? != 1 {
                return Err(std::io::Error::other(
                    "the child could not create a user namespace (are unprivileged user namespaces disabled?)",
                ));
            }
            Ok(UnmappedChild {
                pid: child,
                go: go_w,
            })
        }
    }
}

/// Sends signal `sig` to process `pid` (best effort: it may be gone).
pub fn signal(pid: u32, sig: i32) {
    if let (Ok(pid), Ok(sig)) = (i32::try_from(pid), Signal::try_from(sig)) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Starts `cmd` detached from this terminal: in a session of its own, so
/// the terminal's Ctrl-C and hang-up do not reach it.
pub fn spawn_detached(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn()
}

/// Mounts the binfmt_misc filesystem at `dir` (where the kernel lets
/// programs register interpreters for foreign binaries).
pub fn mount_binfmt_misc(dir: &std::path::Path) -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("binfmt_misc"),
        dir,
        Some("binfmt_misc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// Enters the user namespace of process `pid` unless this process is in it
/// already (a rootless container, seen from the user's own namespace):
/// then its ids, and the capabilities its owner has there, apply to what
/// this process does in the container's files. Call it while rbk has one
/// thread only (the kernel requires it).
pub fn join_user_namespace(pid: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let theirs = format!("/proc/{pid}/ns/user");
    let (a, b) = (
        std::fs::metadata("/proc/self/ns/user")?,
        std::fs::metadata(&theirs)?,
    );
    if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
        return Ok(());
    }
    let ns = std::fs::File::open(&theirs)?;
    // SAFETY: setns on an fd of /proc/PID/ns/user that `ns` keeps open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
