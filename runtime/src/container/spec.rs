//! Docker's rules for what a container runs: the command line from the
//! image's ENTRYPOINT and CMD and the arguments, the environment from its
//! ENV and the `-e` flags, its user and working directory — and the
//! sandbox's [`ExecSpec`] they make.

use rbk_store::oci::ContainerConfig;

use super::ContainerError;
use crate::sandbox::{EnvList, ExecSpec, NetworkMode, StdinMode};

/// What the flags of `rbk run` (or `rbk exec`) say of the process, over
/// what the image says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFlags {
    /// `-w`: replaces the image's WORKDIR.
    pub workdir: Option<String>,
    /// `-u`: replaces the image's USER.
    pub user: Option<String>,
    /// `-i`: the process reads the caller's stdin.
    pub interactive: bool,
    /// `-t`: the process gets a terminal.
    pub tty: bool,
}

impl ProcessFlags {
    /// The user the process runs as (the flag, else the image's; empty:
    /// root).
    pub fn user(&self, config: &ContainerConfig) -> String {
        self.user
            .clone()
            .or_else(|| config.user.clone())
            .unwrap_or_default()
    }

    /// The process's working directory (the flag, else the image's).
    pub fn workdir(&self, config: &ContainerConfig) -> String {
        self.workdir
            .clone()
            .or_else(|| config.working_dir.clone())
            .unwrap_or_default()
    }

    /// The sandbox's spec for the process, without its command line,
    /// environment and mounts: working directory, user, `network`, stdin,
    /// terminal, and Docker's default isolation.
    pub fn exec_spec(&self, config: &ContainerConfig, network: NetworkMode) -> ExecSpec {
        ExecSpec {
            cwd: self.workdir(config),
            user: self.user(config),
            network,
            stdin: if self.interactive {
                StdinMode::Inherit
            } else {
                StdinMode::Null
            },
            tty: self.tty,
            // Docker's default: default capabilities and seccomp profile.
            insecure: false,
            ..ExecSpec::default()
        }
    }
}

/// Docker's rules for the command line: ENTRYPOINT + CMD; arguments replace
/// CMD; `--entrypoint` replaces ENTRYPOINT and drops the image's CMD (an
/// empty one clears it).
pub fn command_line(
    config: &ContainerConfig,
    entrypoint: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (entry, image_cmd) = match entrypoint {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (
            config.entrypoint.clone().unwrap_or_default(),
            config.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if args.is_empty() {
        image_cmd
    } else {
        args.to_vec()
    };
    entry.into_iter().chain(cmd).collect()
}

/// The image's ENV, then `-e`/`--env-file` entries (a later key wins; `KEY`
/// alone takes `host(KEY)` and is dropped when the host has none, as in
/// Docker). A terminal gets `TERM=xterm` unless one is set.
pub fn merged_env(
    config: &ContainerConfig,
    extra: &[String],
    host: impl Fn(&str) -> Option<String>,
    tty: bool,
) -> Result<Vec<(String, String)>, ContainerError> {
    let mut env = EnvList::new();
    for kv in config.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env.set(k, v.to_string());
    }
    for kv in extra {
        match kv.split_once('=') {
            Some(("", _)) => return Err(ContainerError::InvalidEnv { entry: kv.clone() }),
            Some((k, v)) => env.set(k, v.to_string()),
            None if kv.is_empty() => return Err(ContainerError::InvalidEnv { entry: kv.clone() }),
            None => {
                if let Some(v) = host(kv) {
                    env.set(kv, v);
                }
            }
        }
    }
    if tty && !env.contains("TERM") {
        env.set("TERM", "xterm".into());
    }
    Ok(env.into_pairs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(entry: &[&str], cmd: &[&str]) -> ContainerConfig {
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| x.to_string()).collect());
        ContainerConfig {
            entrypoint: v(entry),
            cmd: v(cmd),
            ..ContainerConfig::default()
        }
    }

    /// ENTRYPOINT, CMD, --entrypoint, arguments, and the argv they give.
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
    );

    /// An image may carry 100,000 Env entries and `-e` may replace each:
    /// the merge is linear (it was a scan per variable: minutes here).
    /// The deadline is a guard against quadratic time, 100× above need.
    #[test]
    fn a_huge_environment_merges_in_linear_time() {
        let n = 100_000;
        let mut c = config(&[], &["sh"]);
        c.env = Some((0..n).map(|i| format!("V{i}=image")).collect());
        let extra: Vec<String> = (0..n).rev().map(|i| format!("V{i}=flag")).collect();
        let started = std::time::Instant::now();
        let env = merged_env(&c, &extra, |_| None, true).unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "merging {n} variables took {:?}",
            started.elapsed()
        );
        assert_eq!(env.len(), n + 1);
        assert_eq!(env[0], ("V0".to_string(), "flag".to_string()));
        assert_eq!(env[n - 1].0, format!("V{}", n - 1));
        assert_eq!(env[n], ("TERM".to_string(), "xterm".to_string()));
    }

    #[test]
    fn command_line_follows_docker() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: &[Case] = &[
            (&[], &["sh"], None, &[], &["sh"]),
            (&[], &["sh"], None, &["ls", "-l"], &["ls", "-l"]),
            (&["/e.sh"], &["mysqld"], None, &[], &["/e.sh", "mysqld"]),
            (&["/e.sh"], &["mysqld"], None, &["bash"], &["/e.sh", "bash"]),
            (&["/e.sh"], &["mysqld"], Some("/bin/sh"), &[], &["/bin/sh"]),
            (
                &["/e.sh"],
                &["mysqld"],
                Some("env"),
                &["-i"],
                &["env", "-i"],
            ),
            (&["/e.sh"], &["mysqld"], Some(""), &["id"], &["id"]),
            (&["/e.sh"], &["mysqld"], Some(""), &[], &[]),
            (&[], &[], None, &[], &[]),
        ];
        for (entry, cmd, flag, args, want) in cases {
            let got = command_line(&config(entry, cmd), *flag, &s(args));
            assert_eq!(got, s(want), "{entry:?} {cmd:?} {flag:?} {args:?}");
        }
    }

    #[test]
    fn env_merges_image_flags_and_host() {
        let cfg = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into(), "B=2".into()]),
            ..ContainerConfig::default()
        };
        let host = |k: &str| (k == "HOSTVAR").then(|| "h".to_string());
        let extra = ["A=9", "HOSTVAR", "MISSING", "C=x=y"].map(String::from);
        let env = merged_env(&cfg, &extra, host, false).unwrap();
        let flat: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(flat, ["PATH=/bin", "A=9", "B=2", "HOSTVAR=h", "C=x=y"]);
        let tty = merged_env(&cfg, &[], host, true).unwrap();
        assert_eq!(
            tty.last().unwrap(),
            &("TERM".to_string(), "xterm".to_string())
        );
        assert!(merged_env(&cfg, &["=v".into()], host, false).is_err());
    }
}
