//! `rbk build --ssh`: SSH agents for `RUN --mount=type=ssh`, as buildx
//! takes them — `default` (or any id alone) forwards `$SSH_AUTH_SOCK`,
//! `ID=SOCKET` another agent, `ID=KEY[,KEY…]` a private agent that rbk
//! starts with those keys (OpenSSH's `ssh-agent` and `ssh-add`) and stops
//! when the build ends.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// One `--ssh` value, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshSpec {
    /// Forward this agent socket.
    Socket(PathBuf),
    /// Start an agent holding these keys.
    Keys(Vec<PathBuf>),
}

/// Parses `--ssh` values into agents by id (a later value for an id wins).
pub fn parse(values: &[String]) -> Result<BTreeMap<String, SshSpec>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (id, paths) = match v.split_once('=') {
            Some((id, paths)) => (id, Some(paths)),
            None => (v.as_str(), None),
        };
        if id.is_empty() || id.contains(',') {
            bail!("invalid --ssh {v:?}: expected default, ID, ID=SOCKET or ID=KEY[,KEY...]");
        }
        let spec = match paths {
            None => match crate::env::text("SSH_AUTH_SOCK") {
                Some(s) if !s.is_empty() => SshSpec::Socket(PathBuf::from(s)),
                _ => bail!("--ssh {id}: SSH_AUTH_SOCK is not set (start an agent, or give --ssh {id}=KEYFILE)"),
            },
            Some(paths) => {
                let paths: Vec<PathBuf> = paths.split(',').map(PathBuf::from).collect();
                match paths.as_slice() {
                    [one] if is_socket(one) => SshSpec::Socket(one.clone()),
                    _ => {
                        for p in &paths {
                            if !p.is_file() {
                                bail!("--ssh {id}: {} is neither an agent socket nor a key file", p.display());
                            }
                        }
                        SshSpec::Keys(paths)
                    }
                }
            }
        };
        if let SshSpec::Socket(s) = &spec {
            if !is_socket(s) {
                bail!("--ssh {id}: {} is not a socket", s.display());
            }
        }
        out.insert(id.to_string(), spec);
    }
    Ok(out)
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The agents of a build: sockets by id, and the agents rbk started
/// (stopped on drop, their sockets with them).
pub struct Agents {
    /// Socket of each id.
    pub sockets: BTreeMap<String, PathBuf>,
    started: Vec<(Child, tempfile::TempDir)>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (child, _) in &mut self.started {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the key agents; `scratch` is where their sockets go.
pub fn start(specs: &BTreeMap<String, SshSpec>, scratch: &Path) -> Result<Agents> {
    let mut agents = Agents {
        sockets: BTreeMap::new(),
        started: Vec::new(),
    };
    for (id, spec) in specs {
        match spec {
            SshSpec::Socket(s) => {
                agents.sockets.insert(id.clone(), s.clone());
            }
            SshSpec::Keys(keys) => {
                let (child, dir, socket) = agent_with(id, keys, scratch)?;
                agents.started.push((child, dir));
                agents.sockets.insert(id.clone(), socket);
            }
        }
    }
    Ok(agents)
}

/// `ssh-agent -D` on a private socket, then `ssh-add` of `keys`.
fn agent_with(
    id: &str,
    keys: &[PathBuf],
    scratch: &Path,
) -> Result<(Child, tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix("ssh-")
        .tempdir_in(scratch)
        .with_context(|| {
            format!(
                "--ssh {id}: cannot make a directory in {}",
                scratch.display()
            )
        })?;
    let socket = dir.path().join("agent.sock");
    let mut child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("--ssh {id}: cannot start ssh-agent (apt-get install openssh-client)")
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_socket(&socket) {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("--ssh {id}: ssh-agent did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("ssh-add")
        .args(keys)
        .env("SSH_AUTH_SOCK", &socket)
        .env_remove("SSH_ASKPASS")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .output();
    let failed = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run ssh-add: {e}")),
    };
    if let Some(why) = failed {
        let _ = child.kill();
        let _ = child.wait();
        bail!("--ssh {id}: cannot add the keys to the agent (a key with a passphrase needs an agent of your own: --ssh {id}=$SSH_AUTH_SOCK): {why}");
    }
    Ok((child, dir, socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(&key, "k").unwrap();
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let v = |s: String| parse(&[s]);
        assert_eq!(
            v(format!("default={}", sock.display())).unwrap()["default"],
            SshSpec::Socket(sock.clone())
        );
        assert_eq!(
            v(format!("git={}", key.display())).unwrap()["git"],
            SshSpec::Keys(vec![key.clone()])
        );
        let e = v(format!("x={}", dir.path().join("nope").display())).unwrap_err();
        assert!(
            e.to_string()
                .contains("neither an agent socket nor a key file"),
            "{e}"
        );
        assert!(v("=a".into()).is_err());
    }
}
