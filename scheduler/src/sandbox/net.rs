//! The default network of RUN steps: the container's own network namespace
//! with user-mode networking by `slirp4netns` (Debian's package of that
//! name), as rootless podman and BuildKit use: outbound TCP and UDP through
//! the host's network stack, DNS through slirp's forwarder (which reaches
//! the host's resolvers, loopback ones included), and no way to the host's
//! loopback services (`--disable-host-loopback`).
//!
//! slirp4netns is started by rbk for the namespace's init once it exists;
//! init waits until the namespace's default route is in place before it
//! starts the command, and slirp4netns is stopped with the run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SandboxError;

/// The guest side of slirp4netns' network.
pub const GUEST_ADDR: &str = "10.0.2.100";
/// slirp4netns' DNS forwarder.
pub const DNS_ADDR: &str = "10.0.2.3";

/// How long slirp4netns may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running slirp4netns, stopped on drop.
#[derive(Debug)]
pub struct UserNet {
    child: Child,
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
        .map_err(|source| SandboxError::Io {
            op: "open (user-mode networking needs it)",
            path: tun.to_path_buf(),
            source,
        })
}

impl UserNet {
    /// Connects the network namespace of process `pid` and waits until it
    /// is configured (its default route exists).
    pub fn start(pid: i32) -> Result<UserNet, SandboxError> {
        let bin = slirp4netns().ok_or(SandboxError::NoUserNet)?;
        let child = Command::new(&bin)
            .args([
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--enable-seccomp",
            ])
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| SandboxError::Io {
                op: "start",
                path: bin.clone(),
                source,
            })?;
        let mut net = UserNet { child };
        let route = PathBuf::from(format!("/proc/{pid}/net/route"));
        let started = Instant::now();
        loop {
            // The default route is the last thing --configure sets.
            let routed = std::fs::read_to_string(&route).is_ok_and(|t| {
                t.lines()
                    .skip(1)
                    .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
            });
            if routed {
                return Ok(net);
            }
            if let Ok(Some(status)) = net.child.try_wait() {
                return Err(SandboxError::UserNet(format!(
                    "slirp4netns exited ({status})"
                )));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(SandboxError::UserNet(format!(
                    "slirp4netns did not configure the network within {}s",
                    READY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
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
    fn resolv_conf_points_at_the_forwarder_and_keeps_search() {
        let host = "nameserver 127.0.0.53\nsearch example.com\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "nameserver 10.0.2.3\nsearch example.com\noptions edns0\n"
        );
    }
}
