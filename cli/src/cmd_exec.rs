//! `rbk exec`: runs a command in a running container, as `docker exec`:
//! in its namespaces, with its capabilities, seccomp filter, environment,
//! user and working directory (see
//! [`NamespaceExecutor::join`](rbk_runtime::sandbox::NamespaceExecutor::join)).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rbk_runtime::container::spec::{merged_env, ProcessFlags};
use rbk_runtime::sandbox::{forward_signals, CancelToken, ExecSpec, NamespaceExecutor};
use rbk_store::oci::ContainerConfig;

use rbk_runtime::container;

/// `rbk exec`
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "The command runs in the container's namespaces (its processes, \
network, host name, files) with the same capabilities, seccomp filter and environment as \
the container's own process. Its exit code becomes rbk's (126: it cannot be executed, \
127: not found).

Examples:
  rbk exec web cat /etc/hostname
  rbk exec -it web sh
  rbk exec -e DEBUG=1 -u nobody -w /tmp web env"
)]
pub struct ExecArgs {
    /// Connect rbk's standard input to the command
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass rbk's own value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User to run as: name, uid, name:group or uid:gid (default: the container's)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Working directory inside the container (default: the container's)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Container name or id
    #[arg(value_name = "CONTAINER", add = crate::complete::containers())]
    pub container: String,
    /// Command and arguments
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// As `docker exec`: 126 when the command could not be started in the
/// container (Docker's "OCI runtime exec failed").
const EXIT_EXEC_FAILED: i32 = 126;

/// The container's init, once it runs the container's command: `rbk run
/// -d` returns when the container is on record, which may be a moment
/// before its init exists (while its layers are unpacked) and started the
/// command (else the exec'd process could take the command's pid 2, as in
/// Docker it never does). `None` once it is not running.
fn wait_for_init(root: &Path, state: &container::State) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let init = container::init_pid(root, state).filter(|pid| container::has_child(*pid));
        if let Some(pid) = init {
            return Some(pid);
        }
        if !container::running(root, &state.id) || Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rbk exec`: the command's exit code. A missing or stopped container is
/// an error (exit 1, as Docker's).
pub fn exec(root: &Path, a: &ExecArgs) -> Result<i32> {
    let state = container::find(root, &a.container)?;
    let Some(init) = wait_for_init(root, &state) else {
        bail!("container {} ({}) is not running", state.name, state.id);
    };
    // The container's environment, user and working directory are the
    // exec's defaults, as the image's are the container's.
    let config = ContainerConfig {
        env: Some(state.env.clone()),
        user: Some(state.user.clone()),
        working_dir: Some(state.workdir.clone()),
        ..ContainerConfig::default()
    };
    let env = merged_env(&config, &a.env, crate::env::text, a.tty)?;
    let process = ProcessFlags {
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        interactive: a.interactive,
        tty: a.tty,
    };
    let spec = ExecSpec {
        args: a.args.clone(),
        env,
        scratch: Some(rbk_store::Layout::new(root).tmp()),
        ..process.exec_spec(&config, ExecSpec::default().network)
    };
    let cancel = CancelToken::new();
    let _signals = forward_signals(&cancel)?;
    let result = NamespaceExecutor.join(init, &spec, &mut crate::cmd_run::write_output, &cancel);
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("rbk: cannot exec in container {}: {e}", state.name);
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            Ok(e.exit_code().unwrap_or(EXIT_EXEC_FAILED))
        }
    }
}
