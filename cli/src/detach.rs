//! `rbk run -d` and the record every `rbk run` keeps while it supervises a
//! container (see [`crate::containers`]).
//!
//! `-d` starts a second `rbk run` with the same flags (without `-d`) in a
//! session of its own, its output going to the container's log, and waits
//! until it reports the container running; that process is the container's
//! supervisor until it exits (or `rbk stop` ends it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rbk_store::flock::Locked;
use rbk_store::oci::ContainerConfig;

use crate::cmd_run::RunArgs;
use crate::containers::{self, State};

/// The environment variable that makes an `rbk run` the supervisor of the
/// detached container with that id.
const DETACHED_ID: &str = "RBK_DETACHED_CONTAINER";

/// How long `rbk run -d` waits for its container to start (unpacking a
/// large image counts).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// A container on record for as long as its `rbk run` supervises it.
pub struct Record {
    root: std::path::PathBuf,
    state: State,
    /// Off the record at exit: a foreground container, or `-d --rm`.
    remove: bool,
    _lock: Locked,
}

impl Record {
    /// Records the container `rbk run` is about to start: its id (the one
    /// `-d` chose, else a new one), its name (checked unique), running.
    pub fn begin(
        root: &Path,
        args: &RunArgs,
        config: &ContainerConfig,
        argv: &[String],
        env: &[(String, String)],
        ports: Vec<String>,
        image_id: &str,
    ) -> Result<Record> {
        let detached = std::env::var(DETACHED_ID).ok();
        let id = detached.clone().unwrap_or_else(crate::cmd_run::random_id);
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.len() != 12 {
            bail!("{DETACHED_ID}={id:?} is not a container id");
        }
        let name = args.name.clone().unwrap_or_else(|| format!("rbk-{id}"));
        if let Some(other) = containers::list(root)
            .into_iter()
            .find(|s| s.name == name && s.id != id)
        {
            bail!(
                "the name {name:?} is in use by container {} (rbk rm {name} first)",
                other.id
            );
        }
        std::fs::create_dir_all(containers::path(root, &id))
            .with_context(|| format!("cannot create {}", containers::path(root, &id).display()))?;
        let lock = containers::lock(root, &id)?;
        // The record of the container `rbk start` runs again.
        let previous = containers::read(root, &id)
            .ok()
            .filter(|_| detached.is_some());
        let state = State {
            id: id.clone(),
            name,
            // `rbk start` runs the image by id; it shows as first named.
            image: previous
                .as_ref()
                .map_or_else(|| args.image.clone(), |p| p.image.clone()),
            command: argv.to_vec(),
            // `rbk start` keeps when it was created, as Docker.
            created: previous.as_ref().map_or_else(now, |p| p.created.clone()),
            ports,
            detached: detached.is_some(),
            stop_signal: config
                .stop_signal
                .clone()
                .unwrap_or_else(|| "SIGTERM".into()),
            supervisor: std::process::id(),
            status: "running".into(),
            exit_code: None,
            finished: None,
            restarts: 0,
            // By id, as Docker starts a container from its image even
            // after its name moved to another.
            run_args: if detached.is_some() {
                let mut v = run_args(args);
                if let Some(pos) = v.iter().position(|a| a == "--") {
                    if let Some(image) = v.get_mut(pos + 1) {
                        *image = image_id.to_string();
                    }
                }
                v
            } else {
                Vec::new()
            },
            volumes: crate::cmd_run::named_volumes(&args.volumes),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            user: args
                .user
                .clone()
                .or_else(|| config.user.clone())
                .unwrap_or_default(),
            workdir: args
                .workdir
                .clone()
                .or_else(|| config.working_dir.clone())
                .unwrap_or_default(),
        };
        containers::write(root, &state)?;
        Ok(Record {
            root: root.to_path_buf(),
            remove: !state.detached || args.rm,
            state,
            _lock: lock,
        })
    }

    /// Whether its layer stays when it exits (a detached container stays on
    /// record, and with it its files, until `rbk rm`, as with Docker).
    pub fn keeps_layer(&self) -> bool {
        !self.remove
    }

    /// The container's id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Whether `rbk stop` asked it to stop (no restart then).
    pub fn stopping(&self) -> bool {
        containers::path(&self.root, self.id())
            .join("stopping")
            .exists()
    }

    /// Counts a restart.
    pub fn restarted(&self, n: u32, code: i32) {
        let mut s = self.state.clone();
        s.restarts = n;
        s.exit_code = Some(code);
        let _ = containers::write(&self.root, &s);
    }

    /// The container exited (`None`: it could not run): a detached one
    /// stays on record (exited) until `rbk rm`; a foreground one goes.
    pub fn finish(&self, code: Option<i32>) {
        let dir = containers::path(&self.root, self.id());
        if self.remove {
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let mut s = containers::read(&self.root, self.id()).unwrap_or_else(|_| self.state.clone());
        s.status = "exited".into();
        s.exit_code = Some(code.unwrap_or(125));
        s.finished = Some(now());
        let _ = containers::write(&self.root, &s);
        let _ = std::fs::remove_file(dir.join("stopping"));
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The flags of `a` as an `rbk run` command line, without `-d`.
fn run_args(a: &RunArgs) -> Vec<String> {
    let mut v = vec!["run".to_string()];
    if a.rm {
        v.push("--rm".to_string());
    }
    let mut flag = |name: &str, value: &str| {
        v.push(format!("--{name}"));
        v.push(value.to_string());
    };
    for e in &a.env {
        flag("env", e);
    }
    for f in &a.env_files {
        flag("env-file", &f.display().to_string());
    }
    for p in &a.publish {
        flag("publish", p);
    }
    for m in &a.volumes {
        flag("volume", m);
    }
    flag("restart", &a.restart);
    flag("network", &a.network);
    for (name, value) in [
        ("workdir", &a.workdir),
        ("user", &a.user),
        ("entrypoint", &a.entrypoint),
        ("name", &a.name),
        ("hostname", &a.hostname),
    ] {
        if let Some(value) = value {
            flag(name, value);
        }
    }
    v.push("--".to_string());
    v.push(a.image.clone());
    v.extend(a.args.iter().cloned());
    v
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

/// `rbk run -d`: starts the supervisor and returns once the container runs.
pub fn start(root: &Path, a: &RunArgs) -> Result<i32> {
    let id = crate::cmd_run::random_id();
    launch(root, &id, &run_args(a), a.rm, true)?;
    println!("{id}");
    Ok(0)
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
    let dir = containers::path(root, id);
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
        if containers::read(root, id).is_ok_and(|s| s.supervisor == child.id()) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            // All it said, once the relay has written it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while relay.try_wait()?.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            if fresh && (rm || containers::read(root, id).is_err()) {
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
