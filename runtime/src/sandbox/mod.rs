//! The sandbox that runs RUN steps and `rbk run` containers.
//!
//! A command runs in new mount, pid, uts and ipc namespaces (and a new network
//! namespace with only `lo` for [`NetworkMode::None`]), pivot_root'ed into a
//! rootfs the caller has already mounted (an overlay of the image's layers),
//! with a fresh `/proc`, a minimal `/dev`, read-only `/sys`, `/etc/hosts` and
//! `/etc/resolv.conf` generated from the host's, and the caller's bind mounts.
//!
//! Every mount happens inside the new mount namespace, so nothing leaks to the
//! host even if rbk is killed. The stub files and directories that mounts need
//! in the rootfs are created before the run and removed after it (see
//! [`rootfs`]), so they never reach a committed layer.
//!
//! The process tree: rbk forks a *keeper* that unshares the namespaces and
//! forks the *init* (pid 1 of the new pid namespace). Init sets up the mounts,
//! pivots, forks the command, reaps zombies, forwards signals to the command
//! and exits with its status; when init dies the kernel kills everything left
//! in the namespace. Cancelling kills init.
//!
//! This is isolation for builds, not a security boundary: the command runs as
//! real root (when its user is root) with the host's user namespace.
//!
//! All syscalls live in `sys.rs`; the rest is safe code.

mod env;
pub mod net;
pub mod rootfs;
pub mod seccomp;
mod sys;
mod user;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use env::EnvList;
pub use sys::{forward_signals, sandbox_supported, SignalForwarder};
pub use user::{resolve_user, ExecUser};

use rootfs::{ensure_stub, remove_stubs, Stub, StubKind};

/// `PATH` used when the spec's environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exit code reported for a command that could not be found (as shells do).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code reported for a command that exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

/// The network a command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The host's network namespace (Docker's default for builds).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
    /// A new network namespace with outbound access through user-mode
    /// networking ([`net`]): Docker's and BuildKit's default, without a
    /// way to the host's loopback services.
    Private,
}

/// A host file or directory mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (a file or a directory); it must exist.
    pub source: PathBuf,
    /// Absolute path inside the container; created (and removed after the run)
    /// when missing.
    pub target: String,
    /// Mount read-only.
    pub readonly: bool,
}

/// Where the command's standard input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdinMode {
    /// `/dev/null` (RUN steps).
    #[default]
    Null,
    /// rbk's own standard input (`rbk run -i`).
    Inherit,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output (and everything, in tty mode).
    Stdout,
    /// Standard error.
    Stderr,
}

/// What to run and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// Final argv (the caller has applied SHELL / exec form); `args[0]` is
    /// searched in the container's `PATH` unless it contains a `/`.
    pub args: Vec<String>,
    /// Environment, in order. `PATH` defaults to [`DEFAULT_PATH`] and `HOME`
    /// to the user's home directory when absent.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container; created root-owned (mode 755)
    /// when missing, like Docker's WORKDIR. Empty means `/`.
    pub cwd: String,
    /// `""`, `name`, `uid`, `name:group`, `uid:gid`, ... resolved in the
    /// rootfs's `/etc/passwd` and `/etc/group` (see [`resolve_user`]).
    pub user: String,
    /// Host name inside the container; empty keeps the host's.
    pub hostname: String,
    /// Network namespace choice.
    pub network: NetworkMode,
    /// Host ports forwarded to the container (`rbk run -p`); only with
    /// [`NetworkMode::Private`].
    pub publish: Vec<net::PortMapping>,
    /// Extra bind mounts (RUN --mount, `rbk run -v`), applied in order.
    pub mounts: Vec<BindMount>,
    /// Standard input.
    pub stdin: StdinMode,
    /// BuildKit's `--security=insecure` (`RUN --security=insecure`, which
    /// needs `--allow security.insecure`): every capability and no seccomp
    /// filter. Off, the command gets Docker's default capabilities and the
    /// default seccomp profile ([`seccomp`]).
    pub insecure: bool,
    /// Give the command a pseudo-terminal wired to rbk's terminal (`-it`):
    /// output then arrives as [`OutputStream::Stdout`] only, and rbk's stdin
    /// is put in raw mode for the duration of the run.
    pub tty: bool,
    /// Where the run keeps its own files (the container's `/etc/hosts` and
    /// `/etc/resolv.conf`, the user-mode network's API socket): a directory
    /// that is swept if rbk is killed (the store's `tmp/`). `None` is the
    /// system's temporary directory.
    pub scratch: Option<PathBuf>,
}

pub use crate::cancel::CancelToken;

/// Runs an [`ExecSpec`] over a rootfs. Implemented by [`NamespaceExecutor`]
/// and by fakes in scheduler tests.
pub trait Executor: Send + Sync {
    /// Runs `spec` inside `rootfs`, streaming output chunks to `output` as
    /// they come, and returns the command's exit code (128+N when killed by
    /// signal N). A command that cannot be found or executed is an error (see
    /// [`SandboxError::exit_code`]).
    fn run(
        &self,
        rootfs: &Path,
        spec: &ExecSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError>;

    /// Whether this executor can run anything here (the reason when not),
    /// asked once before the first RUN of a build that has one to run: a
    /// build whose RUN steps are all cached does not need to know.
    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }

    /// Told once, after [`preflight`](Executor::preflight), the network a
    /// build's RUN steps get by default, so the executor can get it ready
    /// ahead of them.
    fn expect_network(&self, _network: NetworkMode) {}
}

/// The real executor: Linux namespaces, needs root (see [`sandbox_supported`]).
///
/// Rules for callers:
/// - A rootfs must not be shared by two runs at once (each RUN step and each
///   `rbk run` has its own overlay): both would create and remove the same
///   mount stubs.
/// - The container dies with the thread that called [`Executor::run`]
///   (`PR_SET_PDEATHSIG`), which blocks until the end anyway; so if rbk is
///   killed, the container goes too and no mount survives (they only ever
///   existed in the container's mount namespace).
/// - The command is pid 2 under a small init (like `docker run --init`), so
///   SIGTERM's default action works on it; it keeps Docker's default
///   capabilities, and `/proc/sys` is read-only.
///
/// For `rbk run`: set `stdin: StdinMode::Inherit` (and `tty: true` for
/// `-it`), hold a [`forward_signals`] guard for the duration of the run so
/// SIGINT/SIGTERM reach the command, write the output chunks unbuffered, and
/// exit with the returned code (or [`SandboxError::exit_code`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceExecutor;

/// Errors of the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The default network needs slirp4netns, which is not installed.
    #[error("slirp4netns is not installed (apt-get install slirp4netns)")]
    NoUserNet,
    /// slirp4netns failed.
    #[error("cannot set up the container's network: {0}")]
    UserNet(String),
    /// A port could not be published through slirp4netns's API socket.
    #[error("cannot publish {host_ip}:{host_port} to port {container_port}/{proto}")]
    Publish {
        /// The host address.
        host_ip: String,
        /// The host port.
        host_port: u16,
        /// The container's port.
        container_port: u16,
        /// `tcp` or `udp`.
        proto: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The seccomp profile could not be built.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// A file operation on the host failed.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A user or group name is not in the image.
    #[error("unable to find user {user}: no {name:?} in the image's {file}")]
    UnknownUser {
        /// The user string as given.
        user: String,
        /// The name that is missing.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// Resolving a path in the rootfs followed too many symlinks.
    #[error("too many levels of symbolic links resolving {path} in the rootfs")]
    SymlinkLoop {
        /// The container path.
        path: String,
    },
    /// A mount target cannot be used.
    #[error("cannot mount on {target}: {reason}")]
    MountTarget {
        /// The container path.
        target: String,
        /// Why.
        reason: &'static str,
    },
    /// The spec has no command.
    #[error("no command to run")]
    EmptyCommand,
    /// A string handed to the kernel contains a NUL byte.
    #[error("{what} contains a NUL byte: {value:?}")]
    NulByte {
        /// Which field.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// The command is not in the container (exit code 127).
    #[error("exec: {command:?}: {}", if .command.contains('/') { "no such file or directory" } else { "executable file not found in $PATH" })]
    CommandNotFound {
        /// `args[0]`.
        command: String,
    },
    /// The command exists but cannot be executed (exit code 126).
    #[error("exec: {command:?}: {reason}")]
    NotExecutable {
        /// `args[0]`.
        command: String,
        /// The kernel's reason, said for people (permission denied, exec
        /// format error, an environment too large …).
        reason: String,
    },
    /// A step of setting up the sandbox failed inside the child.
    #[error("cannot set up the sandbox: {step}")]
    Setup {
        /// The step, with its path when there is one.
        step: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// Creating or supervising the sandbox's processes failed.
    #[error("cannot {op} for the sandbox")]
    Process {
        /// What we were doing.
        op: &'static str,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled through its [`CancelToken`].
    #[error("cancelled")]
    Cancelled,
}

impl SandboxError {
    /// The exit code a shell would report for this error: 127 for a missing
    /// command, 126 for one that cannot be executed, `None` otherwise.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            SandboxError::CommandNotFound { .. } => Some(EXIT_NOT_FOUND),
            SandboxError::NotExecutable { .. } => Some(EXIT_NOT_EXECUTABLE),
            _ => None,
        }
    }
}

/// Removes the mount stubs when dropped, so they go even on error or panic.
struct StubGuard<'a> {
    root: &'a Path,
    created: Vec<Stub>,
}

impl StubGuard<'_> {
    fn finish(mut self) -> Result<(), SandboxError> {
        remove_stubs(self.root, &mut self.created)
    }
}

impl Drop for StubGuard<'_> {
    fn drop(&mut self) {
        // Errors were already reported by `finish` when it ran; this is the
        // fallback for early returns.
        let _ = remove_stubs(self.root, &mut self.created);
    }
}

impl Executor for NamespaceExecutor {
    fn preflight(&self) -> Result<(), String> {
        sandbox_supported()
    }

    /// The default network's namespaces are made ahead ([`net::prime`]).
    fn expect_network(&self, network: NetworkMode) {
        if network == NetworkMode::Private {
            net::prime();
        }
    }

    fn run(
        &self,
        rootfs: &Path,
        spec: &ExecSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        let command = spec.args.first().ok_or(SandboxError::EmptyCommand)?;
        if cancel.is_cancelled() {
            return Err(SandboxError::Cancelled);
        }
        let root = std::fs::canonicalize(rootfs).map_err(|source| SandboxError::Io {
            op: "open rootfs",
            path: rootfs.to_path_buf(),
            source,
        })?;
        let user = resolve_user(&root, &spec.user)?;
        let env = final_env(spec, &user);
        let candidates = exec_candidates(command, &env);

        let scratch = spec.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let files = tempfile::Builder::new()
            .prefix("rbk-sandbox-")
            .tempdir_in(&scratch)
            .map_err(|source| SandboxError::Io {
                op: "create a temporary directory in",
                path: scratch.clone(),
                source,
            })?;
        let mut stubs = StubGuard {
            root: &root,
            created: Vec::new(),
        };
        let proc_dir = ensure_stub(&root, "/proc", StubKind::Dir, &mut stubs.created)?;
        let dev_dir = ensure_stub(&root, "/dev", StubKind::Dir, &mut stubs.created)?;
        let sys_dir = ensure_stub(&root, "/sys", StubKind::Dir, &mut stubs.created)?;
        let binds = binds(&root, spec, files.path(), &mut stubs.created)?;

        let cwd = absolute_cwd(&spec.cwd);
        let launch = sys::Launch {
            rootfs: &root,
            proc_dir,
            dev_dir,
            sys_dir,
            binds,
            hostname: &spec.hostname,
            isolate_net: spec.network != NetworkMode::Host,
            user_net: spec.network == NetworkMode::Private,
            publish: &spec.publish,
            scratch: &scratch,
            user: &user,
            cwd: &cwd,
            argv: &spec.args,
            env,
            candidates,
            stdin: spec.stdin,
            tty: spec.tty,
            insecure: spec.insecure,
            join: Vec::new(),
        };
        let result = sys::launch(&launch, output, cancel);
        let cleaned = stubs.finish();
        drop(files);
        let code = result?;
        cleaned?;
        Ok(code)
    }
}

impl NamespaceExecutor {
    /// Runs `spec` in the running container whose init has the (host) pid
    /// `init` (`rbk exec`): in its user (when it is not rbk's own), IPC,
    /// UTS, network, PID and mount namespaces, with the capabilities,
    /// seccomp filter and identity a container's command gets. The user
    /// is resolved in the container's own root. `spec`'s mounts, host name,
    /// network and publish are the container's and ignored here; its
    /// working directory must exist. Returns the command's exit code.
    pub fn join(
        &self,
        init: u32,
        spec: &ExecSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        let command = spec.args.first().ok_or(SandboxError::EmptyCommand)?;
        let proc = PathBuf::from(format!("/proc/{init}"));
        // The container's root as its processes see it: paths in it are
        // resolved component by component, never leaving it.
        let root = proc.join("root");
        let user = resolve_user(&root, &spec.user)?;
        let env = final_env(spec, &user);
        let candidates = exec_candidates(command, &env);
        let (names, fds) = namespaces_of(&proc)?;
        let scratch = spec.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let cwd = absolute_cwd(&spec.cwd);
        let launch = sys::Launch {
            rootfs: &root,
            proc_dir: root.join("proc"),
            dev_dir: root.join("dev"),
            sys_dir: root.join("sys"),
            binds: Vec::new(),
            hostname: "",
            isolate_net: false,
            user_net: false,
            publish: &[],
            scratch: &scratch,
            user: &user,
            cwd: &cwd,
            argv: &spec.args,
            env,
            candidates,
            stdin: spec.stdin,
            tty: spec.tty,
            insecure: spec.insecure,
            join: names,
        };
        sys::join(&launch, &fds, output, cancel)
    }
}

/// Opens the namespaces of the process at `proc` (`/proc/PID`) to join, in
/// the order they must be entered: its user namespace first when it is not
/// ours (rootless), the mount namespace last.
fn namespaces_of(
    proc: &Path,
) -> Result<(Vec<&'static str>, Vec<std::os::fd::OwnedFd>), SandboxError> {
    use std::os::unix::fs::MetadataExt as _;
    let open = |name: &str| {
        let path = proc.join("ns").join(name);
        std::fs::File::open(&path).map_err(|source| SandboxError::Io {
            op: "open the namespace",
            path,
            source,
        })
    };
    let same_user = match (
        std::fs::metadata("/proc/self/ns/user"),
        std::fs::metadata(proc.join("ns/user")),
    ) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => true,
    };
    let mut names = Vec::new();
    let mut fds = Vec::new();
    let order: &[&'static str] = &["user", "ipc", "uts", "net", "pid", "mnt"];
    for name in order {
        if *name == "user" && same_user {
            continue;
        }
        fds.push(std::os::fd::OwnedFd::from(open(name)?));
        names.push(*name);
    }
    Ok((names, fds))
}

/// The container's bind mounts, their targets made in the rootfs (and
/// recorded in `created` for removal): its own `/etc/hosts` and
/// `/etc/resolv.conf` (written in `files`), then `spec.mounts`.
fn binds(
    root: &Path,
    spec: &ExecSpec,
    files: &Path,
    created: &mut Vec<Stub>,
) -> Result<Vec<sys::Bind>, SandboxError> {
    let hosts = write_file(files, "hosts", &hosts_file(spec))?;
    let resolv = match spec.network {
        NetworkMode::Private => net::resolv_conf(&resolv_conf()),
        NetworkMode::Host | NetworkMode::None => resolv_conf(),
    };
    let resolv = write_file(files, "resolv.conf", &resolv)?;
    let mut binds = Vec::new();
    for (source, target) in [(hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")] {
        let target = ensure_stub(root, target, StubKind::File, created)?;
        binds.push(sys::Bind {
            source,
            target,
            readonly: true,
        });
    }
    for m in &spec.mounts {
        let md = std::fs::metadata(&m.source).map_err(|source| SandboxError::Io {
            op: "find bind mount source",
            path: m.source.clone(),
            source,
        })?;
        let kind = if md.is_dir() {
            StubKind::Dir
        } else {
            StubKind::File
        };
        let target = ensure_stub(root, &m.target, kind, created)?;
        binds.push(sys::Bind {
            source: m.source.clone(),
            target,
            readonly: m.readonly,
        });
    }
    Ok(binds)
}

/// The working directory as an absolute path in the container: a relative
/// one is taken from its root, and none is the root.
fn absolute_cwd(cwd: &str) -> String {
    if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    }
}

/// The environment as `KEY=VALUE` strings: a repeated key keeps its first
/// position and its last value (Docker's rule), then `PATH` and `HOME`
/// defaults when absent.
fn final_env(spec: &ExecSpec, user: &ExecUser) -> Vec<String> {
    let mut env = EnvList::new();
    for (k, v) in &spec.env {
        env.set(k, v.clone());
    }
    if !env.contains("PATH") {
        env.set("PATH", DEFAULT_PATH.to_string());
    }
    if !env.contains("HOME") {
        env.set("HOME", user.home.clone());
    }
    env.into_strings()
}

/// The paths `execve` should try for `command`, in order: the command itself
/// when it contains a `/`, else each `PATH` entry of the container's
/// environment (execvp would search rbk's own `PATH` instead).
fn exec_candidates(command: &str, env: &[String]) -> Vec<String> {
    if command.contains('/') {
        return vec![command.to_string()];
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                command.to_string()
            } else {
                format!("{}/{command}", dir.trim_end_matches('/'))
            }
        })
        .collect()
}

/// `/etc/hosts` for the container: loopback names and the container's host
/// name, plus the host's entries when it shares the host's network.
fn hosts_file(spec: &ExecSpec) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !spec.hostname.is_empty() {
        s.push_str(&format!("127.0.1.1\t{}\n", spec.hostname));
    }
    if spec.network == NetworkMode::Host {
        if let Ok(host) = std::fs::read_to_string("/etc/hosts") {
            s.push_str(&host);
        }
    }
    s
}

/// `/etc/resolv.conf` for the container: the host's (the one behind
/// systemd-resolved's stub when that is what the host uses).
fn resolv_conf() -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if host.contains("127.0.0.53") {
        if let Ok(real) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            return real;
        }
    }
    host
}

fn write_file(dir: &Path, name: &str, content: &str) -> Result<PathBuf, SandboxError> {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).map_err(|source| SandboxError::Io {
        op: "create",
        path: path.clone(),
        source,
    })?;
    f.write_all(content.as_bytes())
        .map_err(|source| SandboxError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_container_path() {
        let env = vec!["PATH=/a:/b/:".to_string()];
        assert_eq!(exec_candidates("ls", &env), ["/a/ls", "/b/ls", "ls"]);
        assert_eq!(exec_candidates("./x", &env), ["./x"]);
        assert_eq!(exec_candidates("sh", &[]).len(), 6);
    }

    #[test]
    fn env_gets_path_and_home_defaults_only_when_missing() {
        let user = ExecUser {
            uid: 1,
            gid: 1,
            groups: vec![1],
            home: "/home/u".into(),
        };
        let mut spec = ExecSpec {
            env: vec![("A".into(), "1".into())],
            ..ExecSpec::default()
        };
        assert_eq!(
            final_env(&spec, &user),
            ["A=1", &format!("PATH={DEFAULT_PATH}"), "HOME=/home/u"]
        );
        spec.env.push(("PATH".into(), "/x".into()));
        spec.env.push(("HOME".into(), "/h".into()));
        spec.env.push(("A".into(), "2".into()));
        assert_eq!(final_env(&spec, &user), ["A=2", "PATH=/x", "HOME=/h"]);
    }

    #[test]
    fn not_found_errors_read_like_docker() {
        let e = SandboxError::CommandNotFound {
            command: "foo".into(),
        };
        assert_eq!(
            e.to_string(),
            "exec: \"foo\": executable file not found in $PATH"
        );
        assert_eq!(e.exit_code(), Some(127));
    }
}
