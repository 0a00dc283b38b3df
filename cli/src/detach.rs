//! `rbk run -d` and `rbk start`: a container's supervisor in the background
//! (its record: [`rbk_runtime::container`]).
//!
//! `-d` starts a second `rbk run` with the same flags (without `-d`) in a
//! session of its own, its output going to the container's log, and waits
//! until it reports the container running; that process is the container's
//! supervisor until it exits (or `rbk stop` ends it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rbk_runtime::container::{self, State};

/// The environment variable that makes an `rbk run` the supervisor of the
/// detached container with that id.
const DETACHED_ID: &str = "RBK_DETACHED_CONTAINER";

/// How long `rbk run -d` waits for its container to start (unpacking a
/// large image counts).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// The container this `rbk run` supervises, when `rbk run -d` (or `rbk
/// start`) started it as a detached container's supervisor.
pub fn supervised_id() -> Result<Option<String>> {
    let Some(id) = crate::env::text(DETACHED_ID) else {
        return Ok(None);
    };
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.len() != 12 {
        bail!("{DETACHED_ID}={id:?} is not a container id");
    }
    Ok(Some(id))
}

/// Starts `rbk __log-relay DIR` on `reader` (see [`crate::log_relay`]),
/// detached: it outlives this `rbk run -d`.
fn start_relay(exe: &Path, dir: &Path, reader: std::io::PipeReader) -> Result<std::process::Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("__log-relay")
        .arg(dir)
        .stdin(reader)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::sys::spawn_detached(&mut cmd).context("cannot start the log relay")
}

/// `rbk run -d`: starts the supervisor `rbk RUN_ARGS` of a new container
/// and returns its id once the container runs (`rm`: its record goes when
/// it exits).
pub fn start(root: &Path, run_args: &[String], rm: bool) -> Result<String> {
    let id = container::random_id();
    launch(root, &id, run_args, rm, true)?;
    Ok(id)
}

/// `rbk start`: runs the exited container `s` again with the flags it was
/// started with (its id, name and log kept), once it is running.
pub fn restart(root: &Path, s: &State) -> Result<()> {
    if s.run_args.is_empty() {
        bail!(
            "container {} was recorded by an older rbk without its flags: run it again with rbk run",
            s.name
        );
    }
    launch(root, &s.id, &s.run_args, false, false)
}

/// Starts the supervisor `rbk run RUN_ARGS` of container `id`, its output
/// appended to the container's log through a relay, and returns once it
/// has the container on record (it may have exited since). `fresh`: a new
/// container, whose record goes if it does not start.
fn launch(root: &Path, id: &str, run_args: &[String], rm: bool, fresh: bool) -> Result<()> {
    let dir = container::path(root, id);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .with_context(|| format!("cannot create {}", dir.join("log").display()))?;
    let exe = std::env::current_exe().context("cannot find rbk's own binary")?;
    let (reader, writer) = std::io::pipe().context("cannot make a pipe for the log")?;
    let mut relay = start_relay(&exe, &dir, reader)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("--snapshotter")
        .arg(crate::snapshotter_flag())
        .args(run_args)
        .env(DETACHED_ID, id)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let spawned = crate::sys::spawn_detached(&mut cmd);
    // The pipe's write ends are the supervisor's (and its container's)
    // alone now: the relay ends when they have all gone.
    drop(cmd);
    let mut child = spawned.context("cannot start the container")?;
    let started = Instant::now();
    loop {
        // The new supervisor put its pid on record: the container started.
        if container::read(root, id).is_ok_and(|s| s.supervisor == child.id()) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            // All it said, once the relay has written it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while relay.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            if fresh && (rm || container::read(root, id).is_err()) {
                let _ = std::fs::remove_dir_all(&dir);
            }
            bail!(
                "the container did not start ({status}):\n{}",
                text.trim_end()
            );
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "the container did not start within {}s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
