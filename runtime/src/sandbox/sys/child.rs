//! The children's side of a run: the keeper, init and the command. They run
//! after `fork()` in a multi-threaded process, so they use only data prepared
//! before the fork and raw syscalls: no allocation, no locks, no panics.

use std::ffi::{c_char, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::forked::{check, close_raw, exit, fail, report};
use super::{ChildFds, Prepared, Step, DEFAULT_CAPS, EXIT_SETUP, NET_FD, PTY_FD, STATUS_FD};

/// Duplicates `fd` to a number >= 10 (so the later dup2 onto 0..3 cannot
/// clobber a source). Failing here cannot be reported (the status pipe is not
/// at `STATUS_FD` yet); the parent sees a run that never reached exec.
fn dup_high(fd: RawFd) -> RawFd {
    // SAFETY: F_DUPFD on an fd this process owns.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
    if r < 0 {
        exit(EXIT_SETUP)
    }
    r
}

/// dup2, failing like [`dup_high`].
fn dup_to(from: RawFd, to: RawFd) {
    // SAFETY: dup2 between fds this process owns.
    if unsafe { libc::dup2(from, to) } < 0 {
        exit(EXIT_SETUP)
    }
}

pub(super) fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on an fd this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Ties the first child's life to rbk's, `parent`: killed when rbk dies,
/// gone at once if rbk died before it could ask.
pub(super) fn tie_to(parent: Pid) {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || nix::unistd::getppid() != parent
    {
        exit(EXIT_SETUP);
    }
}

/// The first child: puts stdio in place, unshares the namespaces and forks
/// init, then waits for it and exits with its status.
pub(super) fn keeper(p: &Prepared, fds: &ChildFds, parent: Pid) -> ! {
    // If rbk dies, we die, and so does init (below).
    tie_to(parent);
    let keep = place_stdio(fds);
    close_above(keep);

    // A session of our own: terminal signals for rbk do not reach the
    // container (rbk forwards what it wants to).
    check(nix::unistd::setsid(), Step::Setsid, 0);
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if fds.net.is_some() {
        // The namespace rbk made and connected for this run (user-mode
        // networking): entered, then its fd closed, so init and the
        // command never hold it.
        // SAFETY: setns on the namespace fd placed at NET_FD above.
        if unsafe { libc::setns(NET_FD, libc::CLONE_NEWNET) } < 0 {
            fail(Step::Network, 0, Errno::last());
        }
        close_raw(NET_FD);
    } else if p.isolate_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    check(unshare(flags), Step::Unshare, 0);
    // Init holds the read end and we the write end: if we are gone before
    // init has set its PDEATHSIG, init sees the hang-up and exits.
    let (life_r, life_w) = check(nix::unistd::pipe2(OFlag::O_CLOEXEC), Step::ForkInit, 1);
    // SAFETY: this process is single-threaded (a fork child); the child runs
    // `init`, which follows the same no-allocation rules.
    let init_pid = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(Step::ForkInit, 0, e),
        Ok(ForkResult::Child) => {
            drop(life_w);
            init(p, life_r)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(life_r);
    report(Step::InitPid, 0, init_pid.as_raw());
    // Only the fds placed above: the life pipe's write end, which must
    // stay open while we live, may have any number past them.
    for fd in 0..=STATUS_FD {
        close_raw(fd);
    }
    if fds.pty.is_some() {
        close_raw(PTY_FD);
    }
    exit(wait_exit_code(init_pid))
}

/// Puts the run's fds at their numbers (stdio, [`STATUS_FD`], [`NET_FD`]);
/// returns the highest one in use.
pub(super) fn place_stdio(fds: &ChildFds) -> RawFd {
    let status = dup_high(fds.status.as_raw_fd());
    let stdin = fds.stdin.as_ref().map(|f| dup_high(f.as_raw_fd()));
    let out = dup_high(fds.stdout.as_raw_fd());
    let err = dup_high(fds.stderr.as_raw_fd());
    let net = fds.net.as_ref().map(|f| dup_high(f.as_raw_fd()));
    let pty = fds.pty.as_ref().map(|f| dup_high(f.as_raw_fd()));
    dup_to(status, STATUS_FD);
    set_cloexec(STATUS_FD);
    if let Some(net) = net {
        dup_to(net, NET_FD);
        set_cloexec(NET_FD);
    }
    if let Some(pty) = pty {
        dup_to(pty, PTY_FD);
        set_cloexec(PTY_FD);
    }
    if let Some(stdin) = stdin {
        dup_to(stdin, 0);
    }
    dup_to(out, 1);
    dup_to(err, 2);
    if pty.is_some() {
        PTY_FD
    } else if net.is_some() {
        NET_FD
    } else {
        STATUS_FD
    }
}

/// Drops every inherited fd above `keep` (other runs' pipes, rbk's files)
/// so the container holds nothing of rbk's and pipes see EOF when it ends.
pub(super) fn close_above(keep: RawFd) {
    // SAFETY: close_range only closes fds.
    unsafe { libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0) };
}

/// Waits for `pid` and maps its status to an exit code (128+N for signal N).
pub(super) fn wait_exit_code(pid: Pid) -> i32 {
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
fn init(p: &Prepared, keeper_life: OwnedFd) -> ! {
    // If the keeper dies (killed by rbk), take the namespace down with it;
    // and if it already died before this line, stop here.
    check(
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL),
        Step::ForkInit,
        2,
    );
    let mut pfd = [PollFd::new(keeper_life.as_fd(), PollFlags::POLLIN)];
    if poll(&mut pfd, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        exit(EXIT_SETUP);
    }
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
    hide_rbk_identity(p);
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
    let terminal = p.terminal_in_container.then(super::terminal::open_terminal);
    // SAFETY: single-threaded child; `command` follows the no-allocation rules.
    let child = match unsafe { nix::unistd::fork() } {
        Err(e) => fail(Step::ForkCommand, 0, e),
        Ok(ForkResult::Child) => {
            if let Some(slave) = terminal {
                for fd in 0..=2 {
                    dup_to(slave, fd);
                }
                close_raw(slave);
            }
            command(p)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    if let Some(slave) = terminal {
        close_raw(slave);
    }
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

/// Init is a fork of rbk, so its memory still holds rbk's command line and
/// environment, which the command could read in `/proc/1/cmdline` and
/// `/proc/1/environ` (build arguments, tokens). Overwrites both regions of
/// init's own (copy-on-write) memory, as `setproctitle` does, so pid 1
/// reads as `rbk-init`; and renames the thread.
fn hide_rbk_identity(p: &Prepared) {
    const NAME: &[u8] = b"rbk-init\0";
    if let Some(r) = &p.proc_regions {
        for (start, end, text) in [
            (r.arg_start, r.arg_end, NAME),
            (r.env_start, r.env_end, &b""[..]),
        ] {
            let len = end.saturating_sub(start);
            if len == 0 {
                continue;
            }
            let dst = start as *mut u8;
            // SAFETY: [start, end) is this process's argv/environ block as
            // the kernel reported it for rbk before the fork; init has its
            // own copy of that memory and never reads argv or the
            // environment again.
            unsafe {
                std::ptr::write_bytes(dst, 0, len);
                std::ptr::copy_nonoverlapping(text.as_ptr(), dst, text.len().min(len));
            }
        }
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, NAME.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// The mount namespace's setup, in order: the rootfs, /proc, /dev, /sys,
/// the step's own mounts, then pivot_root into the rootfs.
fn setup_mounts(p: &Prepared) {
    bind_rootfs(p);
    mount_proc(p);
    mount_dev(p);
    mount_sys(p);
    bind_mounts(p);
    pivot(p);
}

/// Makes every mount private, then the rootfs a mount point of its own
/// (pivot_root needs one) without device access.
fn bind_rootfs(p: &Prepared) {
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
    // Device nodes a command creates in the rootfs (it may: CAP_MKNOD) are
    // committed to the layer but cannot be opened here.
    check(
        mount(
            none,
            p.rootfs.as_c_str(),
            none,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV,
            none,
        ),
        Step::BindRootfs,
        1,
    );
}

/// A fresh /proc for the new PID namespace, with the host-revealing parts
/// masked and the host-changing ones read-only.
fn mount_proc(p: &Prepared) {
    let none: Option<&str> = None;
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
    protect_proc(p);
}

/// A small /dev: a tmpfs with the standard nodes bound from the host's,
/// devpts, shm and the usual links.
fn mount_dev(p: &Prepared) {
    let none: Option<&str> = None;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    check(
        mount(
            Some("tmpfs"),
            p.dev_dir.as_c_str(),
            Some("tmpfs"),
            // nodev too: the standard nodes below are bind mounts of the
            // host's, each its own mount; a node made here stays unusable.
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
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
}

/// /sys, read-only.
fn mount_sys(p: &Prepared) {
    let none: Option<&str> = None;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
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
}

/// The step's bind mounts (`RUN --mount`, `rbk run -v`), read-only where
/// asked.
fn bind_mounts(p: &Prepared) {
    let none: Option<&str> = None;
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
}

/// pivot_root into the rootfs and lets go of the old root.
fn pivot(p: &Prepared) {
    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // leaves only the rootfs, without a put_old directory in the image.
    check(nix::unistd::chdir(p.rootfs.as_c_str()), Step::PivotRoot, 0);
    check(nix::unistd::pivot_root(".", "."), Step::PivotRoot, 1);
    check(umount2(".", MntFlags::MNT_DETACH), Step::PivotRoot, 2);
    check(nix::unistd::chdir("/"), Step::PivotRoot, 3);
}

/// Makes the host-changing parts of the new `/proc` read-only and masks the
/// ones that leak host information.
fn protect_proc(p: &Prepared) {
    let none: Option<&str> = None;
    for (i, path) in p.proc_readonly.iter().enumerate() {
        let path = path.as_c_str();
        match mount(
            Some(path),
            path,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        ) {
            Err(Errno::ENOENT) => continue,
            r => check(r, Step::ProcReadonly, i as u32),
        }
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC;
        check(
            mount(none, path, none, flags, none),
            Step::ProcReadonly,
            i as u32,
        );
    }
    for path in &p.proc_masked {
        let path = path.as_c_str();
        // Files get /dev/null, directories an empty read-only tmpfs; absent
        // entries need nothing.
        if mount(Some("/dev/null"), path, none, MsFlags::MS_BIND, none).is_err() {
            let _ = mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, none);
        }
    }
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
pub(super) fn command(p: &Prepared) -> ! {
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
    // Installed while this process may (CAP_SYS_ADMIN), so without
    // no_new_privs: setuid programs keep working, as under Docker.
    for (i, program) in p.seccomp.iter().enumerate() {
        install_seccomp(program, i as u32);
    }
    if !p.all_caps {
        drop_capabilities();
    }
    check(nix::unistd::setgroups(&p.groups), Step::Setgroups, 0);
    check(nix::unistd::setgid(p.gid), Step::Setgid, 0);
    check(nix::unistd::setuid(p.uid), Step::Setuid, 0);
    check(nix::unistd::chdir(p.cwd.as_c_str()), Step::ChdirCwd, 0);
    // Tells rbk the setup is complete; an exec failure reports after it.
    report(Step::Exec, 0, 0);
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
                exit(crate::sandbox::EXIT_NOT_EXECUTABLE);
            }
        }
    }
    match denied {
        Some(e) => {
            report(Step::ExecFailed, 0, e as i32);
            exit(crate::sandbox::EXIT_NOT_EXECUTABLE)
        }
        None => {
            report(Step::ExecNotFound, 0, Errno::ENOENT as i32);
            exit(crate::sandbox::EXIT_NOT_FOUND)
        }
    }
}

/// Installs one seccomp filter program on this process.
fn install_seccomp(program: &[libc::sock_filter], index: u32) {
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at a filter array that `p` keeps alive for the
    // call; the kernel copies it. No flags, so no thread synchronisation.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        fail(Step::Seccomp, index, Errno::last());
    }
}

/// `struct __user_cap_header_struct` of capget/capset.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (two of them for 64 capabilities).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Limits the command to [`DEFAULT_CAPS`]: drops every other capability
/// from the bounding set (so exec as root gets only those) and clears the
/// inheritable and ambient sets (which would bypass the bounding set).
fn drop_capabilities() {
    let keep: u64 = DEFAULT_CAPS.iter().fold(0, |m, c| m | (1u64 << c));
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            match Errno::last() {
                // Past the kernel's last capability.
                Errno::EINVAL => break,
                e => fail(Step::Capabilities, cap, e),
            }
        }
    }
    // SAFETY: prctl with integer arguments only; fails harmlessly on kernels
    // without ambient capabilities.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset read and write the header and two data structs
    // on our stack, as the v3 ABI specifies.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) < 0
        {
            fail(Step::Capabilities, 100, Errno::last());
        }
        for d in &mut data {
            d.inheritable = 0;
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) < 0
        {
            fail(Step::Capabilities, 101, Errno::last());
        }
    }
}
