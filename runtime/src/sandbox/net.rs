//! The default network of RUN steps: the container's own network namespace
//! with user-mode networking by `slirp4netns` (Debian's package of that
//! name), as rootless podman and BuildKit use: outbound TCP and UDP through
//! the host's network stack, DNS through slirp's forwarder (which reaches
//! the host's resolvers, loopback ones included), and no way to the host's
//! loopback services (`--disable-host-loopback`).
//!
//! Each container gets a network namespace of its own, made by rbk before
//! the container ([`ContainerNet`]) and connected by a slirp4netns of its
//! own; the container's keeper enters it, and both go with the run. A
//! build keeps one such namespace ready ahead of its next RUN ([`prime`],
//! see `pool.rs`): a fresh one per step, never one a step has used.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SandboxError;

mod pool;
mod sys;

pub use pool::{prime, ContainerNet};

/// The guest side of slirp4netns' network.
pub const GUEST_ADDR: &str = "10.0.2.100";
/// slirp4netns' DNS forwarder.
pub const DNS_ADDR: &str = "10.0.2.3";

/// How long slirp4netns may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running slirp4netns, stopped on drop — and when rbk dies without
/// dropping it (SIGKILL): it holds the write end of its `--exit-fd` pipe,
/// which the kernel closes with the process, and slirp4netns exits on that.
#[derive(Debug)]
pub struct UserNet {
    child: Child,
    _api: Option<tempfile::TempDir>,
    _exit: std::os::fd::OwnedFd,
}

/// A port of the host forwarded to a port of the container (`-p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `tcp` or `udp`.
    pub proto: String,
    /// The host address to listen on (`0.0.0.0` for all).
    pub host_ip: String,
    /// The host port; 0 until a free one is chosen (`-p 80`,
    /// `-p 127.0.0.1::80`).
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
}

impl PortMapping {
    /// Parses Docker's `-p [IP:][HOST]:CONTAINER[/udp|/tcp]` (also
    /// `CONTAINER` alone): without a host port, `host_port` is 0 and the
    /// port is to be chosen, as Docker chooses a free one.
    pub fn parse(s: &str) -> Result<PortMapping, String> {
        let bad =
            || format!("invalid --publish {s:?}: use [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]");
        let (spec, proto) = match s.rsplit_once('/') {
            Some((spec, p @ ("tcp" | "udp"))) => (spec, p),
            Some(_) => return Err(bad()),
            None => (s, "tcp"),
        };
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let port = |p: &str| p.parse::<u16>().ok().filter(|&n| n > 0);
        let (ip, host, container) = match parts[..] {
            [c] => ("0.0.0.0", "", c),
            [c, h] => ("0.0.0.0", h, c),
            [c, h, ip] => (ip, h, c),
            _ => return Err(bad()),
        };
        let ip = if ip.is_empty() { "0.0.0.0" } else { ip };
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!(
                "invalid --publish {s:?}: {ip:?} is not an IPv4 address"
            ));
        }
        Ok(PortMapping {
            proto: proto.to_string(),
            host_ip: ip.to_string(),
            host_port: match host {
                "" | "0" => 0,
                h => port(h).ok_or_else(bad)?,
            },
            container_port: port(container).ok_or_else(bad)?,
        })
    }
}

impl std::fmt::Display for PortMapping {
    /// The mapping as `-p` takes it back: `IP:HOST:CONTAINER/PROTO`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PortMapping {
            proto,
            host_ip,
            host_port,
            container_port,
        } = self;
        write!(f, "{host_ip}:{host_port}:{container_port}/{proto}")
    }
}

fn slirp4netns() -> Option<PathBuf> {
    [
        "/usr/bin/slirp4netns",
        "/bin/slirp4netns",
        "/usr/local/bin/slirp4netns",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Whether the default network can be given here: slirp4netns present,
/// and `/dev/net/tun` usable (a rootless rbk cannot open it where it is
/// root's alone, mode 0600).
pub fn available() -> Result<(), SandboxError> {
    if slirp4netns().is_none() {
        return Err(SandboxError::NoUserNet);
    }
    let tun = std::path::Path::new("/dev/net/tun");
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tun)
        .map(drop)
        .map_err(io_err("open (user-mode networking needs it)", tun))
}

fn io_err<'p>(
    op: &'static str,
    path: &'p std::path::Path,
) -> impl FnOnce(std::io::Error) -> SandboxError + 'p {
    move |source| SandboxError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl UserNet {
    /// Connects the network namespace `ns` (one no process runs in yet),
    /// waits until slirp4netns says it is configured (its `--ready-fd`) and
    /// forwards `ports`. The API socket of forwarded ports lives in a
    /// directory in `scratch`.
    pub fn connect(
        ns: BorrowedFd<'_>,
        ports: &[PortMapping],
        scratch: &Path,
    ) -> Result<UserNet, SandboxError> {
        let bin = slirp4netns().ok_or(SandboxError::NoUserNet)?;
        let api = match ports.is_empty() {
            true => None,
            false => Some(
                tempfile::Builder::new()
                    .prefix("rbk-net-")
                    .tempdir_in(scratch)
                    .map_err(io_err("create a temporary directory in", scratch))?,
            ),
        };
        let socket = api.as_ref().map(|d| d.path().join("api.sock"));
        // All ends close-on-exec: slirp4netns gets the read end of the exit
        // pipe and the write end of the ready pipe (made inheritable in its
        // child below); no other child gets any.
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| io_err("create a pipe for", &bin)(e.into()))
        };
        let (exit_r, exit_w) = pipe()?;
        let (ready_r, ready_w) = pipe()?;
        let (exit_fd, ready_fd, ns_fd) = (exit_r.as_raw_fd(), ready_w.as_raw_fd(), ns.as_raw_fd());
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-seccomp",
            "--netns-type=path",
        ]);
        cmd.arg(format!("--exit-fd={exit_fd}"));
        cmd.arg(format!("--ready-fd={ready_fd}"));
        sys::inherit_in_child(&mut cmd, [exit_fd, ready_fd, ns_fd]);
        if let Some(s) = &socket {
            cmd.arg("--api-socket").arg(s);
        }
        let child = cmd
            .arg(format!("/proc/self/fd/{ns_fd}"))
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io_err("start", &bin))?;
        drop((exit_r, ready_w));
        let mut net = UserNet {
            child,
            _api: api,
            _exit: exit_w,
        };
        net.wait_ready(ready_r)?;
        if let Some(s) = &socket {
            net.wait_for_api(s)?;
            for p in ports {
                forward(s, p)?;
            }
        }
        Ok(net)
    }

    /// Waits until slirp4netns writes to its ready pipe, which it does once
    /// the namespace is configured (its default route in place); the pipe
    /// ends without a byte when slirp4netns exits first.
    fn wait_ready(&mut self, ready: std::os::fd::OwnedFd) -> Result<(), SandboxError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let started = Instant::now();
        let mut b = [0u8; 1];
        loop {
            let left = READY_TIMEOUT.saturating_sub(started.elapsed());
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    return Err(SandboxError::UserNet(format!(
                        "slirp4netns did not configure the network within {}s",
                        READY_TIMEOUT.as_secs()
                    )))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SandboxError::UserNet(format!("poll slirp4netns: {e}"))),
                Ok(_) => {}
            }
            match nix::unistd::read(&ready, &mut b) {
                Ok(1) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                _ => {
                    let status = self.child.wait().map(|s| s.to_string());
                    return Err(SandboxError::UserNet(format!(
                        "slirp4netns exited ({})",
                        status.unwrap_or_else(|e| e.to_string())
                    )));
                }
            }
        }
    }

    /// Waits until slirp4netns listens on its API socket (it may start
    /// after the network is configured).
    fn wait_for_api(&mut self, socket: &std::path::Path) -> Result<(), SandboxError> {
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SandboxError::UserNet(format!(
                    "slirp4netns exited ({status})"
                )));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(SandboxError::UserNet(format!(
                    "slirp4netns did not open its API socket within {}s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

/// Asks slirp4netns, through its API socket, to forward `p`.
fn forward(socket: &std::path::Path, p: &PortMapping) -> Result<(), SandboxError> {
    use std::io::{Read, Write};
    let request = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": {
            "proto": p.proto,
            "host_addr": p.host_ip,
            "host_port": p.host_port,
            "guest_addr": GUEST_ADDR,
            "guest_port": p.container_port,
        }
    });
    let fail = |why: Box<dyn std::error::Error + Send + Sync>| SandboxError::Publish {
        host_ip: p.host_ip.to_string(),
        host_port: p.host_port,
        container_port: p.container_port,
        proto: p.proto.to_string(),
        source: why,
    };
    let mut conn = std::os::unix::net::UnixStream::connect(socket).map_err(|e| fail(e.into()))?;
    conn.write_all(request.to_string().as_bytes())
        .and_then(|()| conn.shutdown(std::net::Shutdown::Write))
        .map_err(|e| fail(e.into()))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| fail(e.into()))?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| fail(e.into()))?;
    match v.get("error") {
        None => Ok(()),
        Some(e) => {
            let desc = e.get("desc").and_then(|d| d.as_str()).unwrap_or("refused");
            Err(fail(format!("slirp4netns: {desc}").into()))
        }
    }
}

impl Drop for UserNet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/etc/resolv.conf` for the default network: slirp's forwarder, with the
/// host's search domains and options.
pub fn resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {DNS_ADDR}\n");
    for l in host.lines() {
        let l = l.trim();
        if l.starts_with("search ") || l.starts_with("domain ") || l.starts_with("options ") {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flags_parse_like_docker() {
        let p = PortMapping::parse("8080:80").expect("valid");
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("0.0.0.0", 8080, 80)
        );
        assert_eq!(p.proto, "tcp");
        let p = PortMapping::parse("127.0.0.1:5353:53/udp").expect("valid");
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("127.0.0.1", 5353, 53)
        );
        assert_eq!(p.proto, "udp");
        let p = PortMapping::parse("80").expect("valid");
        assert_eq!(
            (p.host_ip.as_str(), p.host_port, p.container_port),
            ("0.0.0.0", 0, 80)
        );
        let p = PortMapping::parse("127.0.0.1::80").expect("valid");
        assert_eq!((p.host_ip.as_str(), p.host_port), ("127.0.0.1", 0));
        assert_eq!(PortMapping::parse(":80").expect("valid").host_port, 0);
        let p = PortMapping::parse("127.0.0.1:5353:53/udp").expect("valid");
        assert_eq!(p.to_string(), "127.0.0.1:5353:53/udp");
        assert_eq!(PortMapping::parse(&p.to_string()), Ok(p));
        for bad in [
            "",
            "a:80",
            "80:0",
            "1:2:3:4",
            "80/sctp",
            "example.com:80:80",
            "70000:80",
            "80:",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_points_at_the_forwarder_and_keeps_search() {
        let host = "nameserver 127.0.0.53\nsearch example.com\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "nameserver 10.0.2.3\nsearch example.com\noptions edns0\n"
        );
    }
}
