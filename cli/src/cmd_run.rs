//! `rbk run`: starts a container from an image in the store, in the same
//! sandbox as RUN steps, on a fresh writable layer over the image's
//! snapshots.
//!
//! rbk has no daemon: a container lives as long as the `rbk run` that
//! supervises it — in the foreground, or detached (`-d`, a supervisor in a
//! session of its own, see [`crate::detach`]). Its writable layer and
//! anonymous volumes are removed when it exits, except a detached
//! container's, kept (as Docker keeps them) for `rbk start` and `rbk cp`
//! until `rbk rm`. Keep data with a bind mount (`-v /host/dir:/data`) or a
//! named volume (`-v NAME:/data`).
//!
//! This file checks the flags, resolves the image and prints; the
//! container itself — its record, root, volumes, process and restarts — is
//! [`rbk_runtime::container`]'s.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use rbk_runtime::container::bundle::{Bundle, BundleSpec};
use rbk_runtime::container::spec::{self, ProcessFlags};
use rbk_runtime::container::supervise::{supervise, RestartPolicy};
use rbk_runtime::container::volume::{self, Volume};
use rbk_runtime::container::{self, NewContainer, Record};
use rbk_runtime::sandbox::net::PortMapping;
use rbk_runtime::sandbox::{sandbox_supported, ExecSpec, NetworkMode, OutputStream, SandboxError};
use rbk_store::images::{Image, Store};
use rbk_store::oci::ContainerConfig;
use rbk_store::StoreError;

/// `rbk run`
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "rbk has no daemon: a container lives as long as its `rbk run`, in the \
foreground or detached with -d (then see rbk ps, logs, stop, rm). Its network is its own \
(publish ports with -p; --network host shares the host's). Its writable layer and anonymous \
volumes are removed when it exits, unless it is detached (then rbk rm removes them). Signals sent to rbk (Ctrl-C, SIGTERM) go to the container's \
process; its exit code becomes rbk's.

Examples:
  rbk run --rm localhost/busybox echo hello
  rbk run -it localhost/debian:bookworm bash
  rbk run -d --name web -p 8080:80 rbk-examples/nginx:debian
  rbk run -d -e MYSQL_ROOT_PASSWORD=secret -v /srv/db:/var/lib/mysql -p 3306:3306 rbk-examples/mariadb:debian
  rbk run --restart on-failure:3 -d localhost/busybox sh -c 'exit 1'
  rbk run --entrypoint /bin/sh -u nobody -w /tmp localhost/busybox -c 'id; pwd'"
)]
pub struct RunArgs {
    /// Remove the container when it exits (always done in the foreground;
    /// with -d, its record goes too)
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container's id
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Publish a port: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] (repeatable)
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CONTAINER")]
    pub publish: Vec<String>,
    /// Restart policy: no, or on-failure[:MAX_RETRIES]
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Set an environment variable (KEY=VALUE, or KEY to pass rbk's own value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Working directory inside the container (replaces the image's WORKDIR)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User to run as: name, uid, name:group or uid:gid (replaces the image's USER)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Replace the image's ENTRYPOINT (and drop its CMD); "" clears it
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Network: default (its own, with -p to publish ports), host (the
    /// host's interfaces and ports) or none (loopback only)
    #[arg(long, default_value = "default", value_name = "MODE")]
    pub network: String,
    /// Bind mount HOST:CONTAINER[:ro|:rw], or CONTAINER alone for an anonymous volume
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Connect rbk's standard input to the container
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal (use with -i for an interactive shell)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// A name for the container (becomes its host name)
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Host name inside the container (default: the name, else the container's id)
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// The platform to run (os/arch[/variant]): the image must be of it; a
    /// foreign one runs under QEMU
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// The image: name[:tag], name@digest or id
    #[arg(value_name = "IMAGE", add = crate::complete::images())]
    pub image: String,
    /// Command and arguments (replace the image's CMD)
    #[arg(
        value_name = "ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `--restart`: no, on-failure or on-failure:N.
fn restart_policy(s: &str) -> Result<RestartPolicy> {
    match s.split_once(':') {
        None if s == "no" => Ok(RestartPolicy::No),
        None if s == "on-failure" => Ok(RestartPolicy::OnFailure(None)),
        Some(("on-failure", n)) => {
            Ok(RestartPolicy::OnFailure(Some(n.parse().map_err(|_| {
                anyhow!("--restart {s:?}: the retry count must be a number")
            })?)))
        }
        _ => bail!("--restart {s:?}: use no or on-failure[:MAX_RETRIES]"),
    }
}

/// What a run's flags ask for, checked before anything is created.
struct Flags {
    network: NetworkMode,
    publish: Vec<PortMapping>,
    restart: RestartPolicy,
    volumes: Vec<Volume>,
    extra_env: Vec<String>,
}

fn flags(args: &RunArgs) -> Result<Flags> {
    let network = match args.network.as_str() {
        "default" | "bridge" => crate::network::default_network("a container", "--network host")?,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => bail!("--network {other:?}: use default, host or none"),
    };
    let publish = args
        .publish
        .iter()
        .map(|p| PortMapping::parse(p).map_err(|e| anyhow!(e)))
        .collect::<Result<Vec<_>>>()?;
    if !publish.is_empty() && network != NetworkMode::Private {
        bail!(
            "--publish needs the container's own network (with --network {}, its ports are the host's)",
            args.network
        );
    }
    let volumes = args
        .volumes
        .iter()
        .map(|v| volume::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut extra_env = Vec::new();
    for file in &args.env_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --env-file {}", file.display()))?;
        extra_env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    extra_env.extend(args.env.iter().cloned());
    Ok(Flags {
        network,
        publish,
        restart: restart_policy(&args.restart)?,
        volumes,
        extra_env,
    })
}

/// Runs a container; returns its exit code (with -d: 0 once it started).
pub fn run(root: &Path, args: &RunArgs) -> Result<i32> {
    let flags = flags(args)?;
    if args.detach {
        if args.interactive || args.tty {
            bail!("-d cannot be used with -i or -t: a detached container has no terminal");
        }
        let id = crate::detach::start(root, &run_args(args), args.rm)?;
        println!("{id}");
        return Ok(0);
    }
    let (store, image, config, argv, env) = resolve(root, args, &flags)?;
    let publish = crate::ports::choose(&flags.publish)?;
    let record = begin(
        root,
        args,
        &config,
        &argv,
        &env,
        &publish,
        image.id.as_str(),
    )?;
    let hostname = args
        .hostname
        .clone()
        .or_else(|| args.name.clone())
        .unwrap_or_else(|| record.id().to_string());
    let snapshotter = crate::snapshotter(root)?;
    let bundle_spec = BundleSpec {
        image: &args.image,
        config: &config,
        volumes: &flags.volumes,
        hostname: &hostname,
    };
    let mut bundle = Bundle::create(&store, snapshotter.as_ref(), &image, &record, bundle_spec)?;
    let rootfs = bundle.rootfs().to_path_buf();
    let spec = ExecSpec {
        args: argv,
        env,
        hostname,
        publish,
        mounts: bundle.take_mounts(),
        // Swept with the store's other leftovers if rbk is killed.
        scratch: Some(root.join("tmp")),
        ..process_flags(args).exec_spec(&config, flags.network)
    };
    let result = supervise(
        &rootfs,
        &spec,
        flags.restart,
        &record,
        &mut write_output,
        &mut |n, code| eprintln!("rbk: the container exited with code {code}; restarting ({n})"),
    );
    let unmounted = bundle.unmount();
    let code = match result {
        Ok(code) => code,
        Err(e) => match e.exit_code() {
            // A missing command is the container's failure, not rbk's: one
            // line and the shell's exit code.
            Some(code) => {
                eprintln!("rbk: {e}");
                code
            }
            None => {
                record.finish(None);
                return Err(run_error(e, &args.image));
            }
        },
    };
    record.finish(Some(code));
    unmounted.with_context(|| format!("cannot unmount {}", rootfs.display()))?;
    Ok(code)
}

/// What `-w`, `-u`, `-i` and `-t` say of the container's process.
fn process_flags(args: &RunArgs) -> ProcessFlags {
    ProcessFlags {
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        interactive: args.interactive,
        tty: args.tty,
    }
}

/// Puts the container `rbk run` is about to start on record: with the id
/// `-d` chose when this process supervises a detached container (then
/// with the flags `rbk start` runs it again with, the image by id as
/// Docker starts a container from its image even after its name moved),
/// else a new one.
fn begin(
    root: &Path,
    args: &RunArgs,
    config: &ContainerConfig,
    argv: &[String],
    env: &[(String, String)],
    publish: &[PortMapping],
    image_id: &str,
) -> Result<Record> {
    let detached = crate::detach::supervised_id()?;
    let run_args = match detached {
        Some(_) => {
            let mut v = run_args(args);
            if let Some(pos) = v.iter().position(|a| a == "--") {
                if let Some(image) = v.get_mut(pos + 1) {
                    *image = image_id.to_string();
                }
            }
            v
        }
        None => Vec::new(),
    };
    let process = process_flags(args);
    let record = Record::begin(
        root,
        NewContainer {
            detached: detached.is_some(),
            id: detached.unwrap_or_else(container::random_id),
            remove: args.rm,
            name: args.name.clone(),
            image: args.image.clone(),
            command: argv.to_vec(),
            env: env.to_vec(),
            ports: publish.iter().map(|p| p.to_string()).collect(),
            stop_signal: config.stop_signal.clone(),
            run_args,
            volumes: volume::named_volumes(&args.volumes),
            user: process.user(config),
            workdir: process.workdir(config),
        },
    )?;
    Ok(record)
}

/// The flags of `a` as an `rbk run` command line, without `-d`: what the
/// detached container's supervisor runs, and `rbk start` again.
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

/// The image, its config, the command line and environment the container
/// gets, checked before anything is created.
#[allow(clippy::type_complexity)]
fn resolve(
    root: &Path,
    args: &RunArgs,
    flags: &Flags,
) -> Result<(
    Store,
    Image,
    ContainerConfig,
    Vec<String>,
    Vec<(String, String)>,
)> {
    // Nothing is created in the store for an image that is not there.
    if !root.join("index.json").exists() {
        bail!(
            "no such image: {} (the store at {} is empty)",
            args.image,
            root.display()
        );
    }
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    // From a multi-platform image, the platform asked for (else this
    // machine's).
    let want = args
        .platform
        .as_deref()
        .map(|p| p.parse::<rbk_store::oci::PlatformSpec>())
        .transpose()
        .context("--platform")?;
    let image = match store.resolve_leased_for(&args.image, want.as_ref()) {
        Ok(i) => i,
        Err(StoreError::ImageNotFound { name }) => {
            bail!("no such image: {name} (build, import or load it first; see `rbk images`)")
        }
        Err(e) => return Err(e.into()),
    };
    // An image that does not state its platform is taken as any.
    let have = image.platform();
    if let (Some(want), Some(have)) = (&want, &have) {
        if !want.accepts(have) {
            bail!(
                "{} is {have}, and --platform asks for {want}: it holds no other platform",
                args.image
            );
        }
    }
    // An image of another architecture runs under QEMU.
    if let Some(have) = &have {
        if let Some(done) = crate::emulation::ensure(&have.to_string())? {
            eprintln!("{done}");
        }
    }
    let config = image.config.config.clone().unwrap_or_default();
    let argv = spec::command_line(&config, args.entrypoint.as_deref(), &args.args);
    if argv.is_empty() {
        bail!(
            "no command specified: {} has no ENTRYPOINT or CMD; give one after the image name",
            args.image
        );
    }
    let env = spec::merged_env(&config, &flags.extra_env, crate::env::text, args.tty)?;
    if let Err(why) = sandbox_supported() {
        bail!("cannot run containers here: {why}");
    }
    Ok((store, image, config, argv, env))
}

fn run_error(e: SandboxError, image: &str) -> anyhow::Error {
    anyhow!(e).context(format!("cannot run {image}"))
}

/// Writes a chunk of the container's output at once (no buffering, so
/// prompts and progress show up as they come). A closed stdout is ignored.
pub(crate) fn write_output(stream: OutputStream, chunk: &[u8]) {
    let _ = match stream {
        OutputStream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk).and_then(|()| out.flush())
        }
        OutputStream::Stderr => {
            let mut err = std::io::stderr().lock();
            err.write_all(chunk).and_then(|()| err.flush())
        }
    };
}
