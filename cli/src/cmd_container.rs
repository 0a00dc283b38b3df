//! `rbk ps`, `rbk logs`, `rbk stop`, `rbk rm`: the containers `rbk run`
//! started, in Docker's words.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use rbk_runtime::container::{self, State};

mod logs;
mod ps;

/// `rbk ps`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk ps
  rbk ps -a -q
  rbk ps --format '{{.Names}}: {{.Status}}'
  rbk ps -a --format 'table {{.ID}}\\t{{.Image}}\\t{{.Status}}'
  rbk ps --format '{{json .}}'")]
pub struct PsArgs {
    /// Show stopped containers too
    #[arg(short, long)]
    all: bool,
    /// Only show container ids
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the command
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table (default), json, or a Go template per
    /// container. Fields: ID Image Command CreatedAt RunningFor Ports
    /// State Status Names Labels Mounts Networks
    #[arg(long)]
    format: Option<String>,
}

/// `rbk logs`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk logs web
  rbk logs -f web
  rbk logs --tail 20 -t web")]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (or all)
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<String>,
    /// Show the time each line came before it
    #[arg(short, long)]
    timestamps: bool,
    /// Container name or id
    #[arg(add = crate::complete::containers())]
    container: String,
}

/// `rbk stop`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rbk stop web\n  rbk stop -t 2 web db")]
pub struct StopArgs {
    /// Seconds to wait for the container to stop before killing it
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Container names or ids
    #[arg(required = true, add = crate::complete::containers())]
    containers: Vec<String>,
}

/// `rbk start`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The container runs again with the command, flags and name it was \
started with (rbk run -d), with the files it left (its layer and anonymous volumes are kept \
until rbk rm). Its output goes on in the same log.

Examples:\n  rbk start web\n  rbk start -a job"
)]
pub struct StartArgs {
    /// Attach: print the container's output until it exits, and exit with its code
    #[arg(short, long)]
    attach: bool,
    /// Container names or ids
    #[arg(required = true, add = crate::complete::containers())]
    containers: Vec<String>,
}

/// `rbk rm`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rbk rm web\n  rbk rm -f web")]
pub struct RmArgs {
    /// Stop (kill) running containers first
    #[arg(short, long)]
    force: bool,
    /// Container names or ids
    #[arg(required = true, add = crate::complete::containers())]
    containers: Vec<String>,
}

/// `rbk ps`
pub fn ps(root: &Path, a: &PsArgs) -> Result<i32> {
    ps::ps(root, a, &mut crate::pipe::stdout())
}

/// `rbk logs`
pub fn logs(root: &Path, a: &LogsArgs) -> Result<i32> {
    logs::logs(root, a, &mut crate::pipe::stdout())
}

/// The signal number of `name` (`SIGQUIT`, `QUIT`, `3`); SIGTERM when it
/// is none of those rbk forwards.
fn stop_signal(name: &str) -> i32 {
    let n = name.trim().trim_start_matches("SIG");
    match n {
        "INT" | "2" => libc::SIGINT,
        "QUIT" | "3" => libc::SIGQUIT,
        "HUP" | "1" => libc::SIGHUP,
        _ => libc::SIGTERM,
    }
}

/// Stops one container: its stop signal, then SIGKILL after `grace`.
/// Returns once nothing of it runs.
fn stop_one(root: &Path, s: &State, grace: Duration) -> Result<()> {
    if !container::running(root, &s.id) {
        return Ok(());
    }
    // So a restart policy lets it be.
    std::fs::write(container::path(root, &s.id).join("stopping"), b"")?;
    crate::sys::signal(s.supervisor, stop_signal(&s.stop_signal));
    let deadline = Instant::now() + grace;
    while container::running(root, &s.id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if container::running(root, &s.id) {
        // The supervisor's death takes the container with it (its keeper
        // and init have PDEATHSIG=SIGKILL).
        crate::sys::signal(s.supervisor, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while container::running(root, &s.id) {
            if Instant::now() > deadline {
                bail!("container {} did not stop", s.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        clean_after_kill(root, s);
    }
    Ok(())
}

/// What a SIGKILLed supervisor could not undo: the container's root mount,
/// its writable layer (unless a detached container keeps it), its
/// anonymous volumes, its lease (it is dead, so sweeping dead leases is
/// safe).
fn clean_after_kill(root: &Path, s: &State) {
    let id = s.id.as_str();
    let keeps_layer = s.detached && !s.run_args.iter().any(|a| a == "--rm");
    let rootfs = root.join("tmp").join(format!("run-{id}-rootfs"));
    let mounted = rbk_store::sys::mounts_under(&rootfs).unwrap_or_default();
    for m in mounted.iter().rev() {
        let _ = rbk_store::sys::unmount(m);
    }
    let _ = std::fs::remove_dir(&rootfs);
    if let Ok(snap) = crate::snapshotter(root) {
        if !keeps_layer {
            let _ = snap.remove(&container::layer_key(id));
        }
    }
    if !keeps_layer {
        for v in container::anonymous_volumes(root, id) {
            let _ = std::fs::remove_dir_all(v);
        }
    }
    let _ = rbk_store::lease::live_leases(root, None, true);
}

/// `rbk stop`
pub fn stop(root: &Path, a: &StopArgs) -> Result<i32> {
    let mut failed = false;
    for c in &a.containers {
        match find(root, c).and_then(|s| stop_one(root, &s, Duration::from_secs(a.time))) {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("rbk: {e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// `rbk start`
pub fn start(root: &Path, a: &StartArgs) -> Result<i32> {
    if a.attach && a.containers.len() > 1 {
        bail!("you cannot start and attach several containers at once");
    }
    let mut failed = false;
    for c in &a.containers {
        let res = find(root, c).and_then(|s| {
            if container::running(root, &s.id) {
                return Ok(s);
            }
            let log = container::path(root, &s.id).join("log");
            let from = std::fs::metadata(&log).map_or(0, |m| m.len());
            crate::detach::restart(root, &s)?;
            if a.attach {
                let code = attach(root, &s, from)?;
                std::process::exit(code);
            }
            Ok(s)
        });
        match res {
            Ok(_) => println!("{c}"),
            Err(e) => {
                eprintln!("rbk: {e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// Copies the container's log from byte `from` to stdout until the
/// container exits; returns its exit code.
fn attach(root: &Path, s: &State, from: u64) -> Result<i32> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = container::path(root, &s.id).join("log");
    let mut log =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    log.seek(std::io::SeekFrom::Start(from))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = std::io::stdout();
    loop {
        // Decided before the last read: all the relay wrote is read then.
        let done = !container::running(root, &s.id)
            && !crate::log_relay::relaying(&container::path(root, &s.id));
        loop {
            let n = log
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
        }
        if done {
            let code = container::read(root, &s.id)?.exit_code.unwrap_or(0);
            return Ok(code);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `rbk rm`
pub fn rm(root: &Path, a: &RmArgs) -> Result<i32> {
    let mut failed = false;
    for c in &a.containers {
        let res = find(root, c).and_then(|s| {
            if container::running(root, &s.id) {
                if !a.force {
                    bail!(
                        "container {} is running: stop it first, or use rm -f",
                        s.name
                    );
                }
                stop_one(root, &s, Duration::ZERO)?;
            }
            Ok(container::state::remove(
                root,
                crate::snapshotter(root)?.as_ref(),
                &s.id,
            )?)
        });
        match res {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("rbk: {e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// The container named `what` (a name, an id or an id's prefix).
fn find(root: &Path, what: &str) -> Result<State> {
    Ok(container::find(root, what)?)
}
