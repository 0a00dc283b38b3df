//! `rbk run`: starts a container from an image in the store, in the same
//! sandbox as RUN steps, on a fresh writable layer over the image's
//! snapshots.
//!
//! rbk has no daemon: a container lives as long as the `rbk run` that
//! supervises it — in the foreground, or detached (`-d`, a supervisor in a
//! session of its own, see [`crate::containers`]). Its writable layer and
//! anonymous volumes are removed when it exits, except a detached
//! container's, kept (as Docker keeps them) for `rbk start` and `rbk cp`
//! until `rbk rm`. Keep data with a bind mount (`-v /host/dir:/data`) or a
//! named volume (`-v NAME:/data`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use rbk_runtime::sandbox::net::PortMapping;
use rbk_runtime::sandbox::{
    forward_signals, rootfs::resolve_in_root, sandbox_supported, BindMount, CancelToken, ExecSpec,
    Executor, NamespaceExecutor, NetworkMode, OutputStream, SandboxError, StdinMode,
};
use rbk_store::images::{Image, Store};
use rbk_store::oci::ContainerConfig;
use rbk_store::snapshot::Snapshotter;
use rbk_store::unpack::{unpack_layers, LayerRef, UnpackError};
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

/// One `-v` request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Volume {
    /// A host path bound at a container path.
    Bind(BindMount),
    /// An anonymous volume at a container path.
    Anonymous(String),
    /// A named volume (`NAME:/path[:ro]`), made on first use.
    Named {
        /// The volume's name.
        name: String,
        /// The container path.
        target: String,
        /// Mount read-only.
        readonly: bool,
    },
}

/// The names of the named volumes among `-v` flags.
pub(crate) fn named_volumes(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            let (host, target) = (parts.next()?, parts.next()?);
            let named = !host.starts_with('/')
                && !host.starts_with('.')
                && target.starts_with('/')
                && crate::cmd_volume::valid_name(host);
            named.then(|| host.to_string())
        })
        .collect()
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    No,
    /// Restart after a non-zero exit, at most this many times (None: no limit).
    OnFailure(Option<u32>),
}

impl Restart {
    fn parse(s: &str) -> Result<Restart> {
        match s.split_once(':') {
            None if s == "no" => Ok(Restart::No),
            None if s == "on-failure" => Ok(Restart::OnFailure(None)),
            Some(("on-failure", n)) => {
                Ok(Restart::OnFailure(Some(n.parse().map_err(|_| {
                    anyhow!("--restart {s:?}: the retry count must be a number")
                })?)))
            }
            _ => bail!("--restart {s:?}: use no or on-failure[:MAX_RETRIES]"),
        }
    }
}

/// What a run's flags ask for, checked before anything is created.
struct Flags {
    network: NetworkMode,
    publish: Vec<PortMapping>,
    restart: Restart,
    volumes: Vec<Volume>,
    extra_env: Vec<String>,
}

fn flags(args: &RunArgs) -> Result<Flags> {
    let network = match args.network.as_str() {
        "default" | "bridge" => crate::cmd_build::default_network("a container", "--network host")?,
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
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
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
        restart: Restart::parse(&args.restart)?,
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
        return crate::detach::start(root, args);
    }
    let (store, image, config, argv, env) = resolve(root, args, &flags)?;
    let publish = crate::ports::choose(&flags.publish)?;
    let ports: Vec<String> = publish.iter().map(|p| p.to_string()).collect();
    let record =
        crate::detach::Record::begin(root, args, &config, &argv, &env, ports, image.id.as_str())?;
    let snapshotter = crate::snapshotter(root)?;
    let parent = unpack(&store, snapshotter.as_ref(), &image)?;
    let key = crate::containers::layer_key(record.id());
    // `rbk start` finds the layer the container kept.
    let mounts = if snapshotter.exists(&key) {
        snapshotter.mounts(&key)
    } else {
        snapshotter.prepare(&key, parent.as_deref())
    }
    .with_context(|| format!("cannot prepare the container's layer over {}", args.image))?;
    let _snapshot = SnapshotGuard {
        snapshotter: snapshotter.as_ref(),
        key: key.clone(),
        keep: record.keeps_layer(),
    };
    let rootfs = rbk_store::Layout::new(root)
        .tmp()
        .join(format!("{key}-rootfs"));
    std::fs::create_dir_all(&rootfs)
        .with_context(|| format!("cannot create {}", rootfs.display()))?;
    let _rootfs_dir = DirGuard(vec![rootfs.clone()]);
    let mounted = rbk_store::mount::mount_all(&mounts, &rootfs)
        .with_context(|| format!("cannot mount the container's root at {}", rootfs.display()))?;
    let (mut binds, _volumes) = volume_binds(
        root,
        record.id(),
        &rootfs,
        &config,
        &flags.volumes,
        record.keeps_layer(),
    )?;
    let hostname = args
        .hostname
        .clone()
        .or_else(|| args.name.clone())
        .unwrap_or_else(|| record.id().to_string());
    let (hostname_bind, _hostname_dir) = hostname_file(root, &key, &hostname)?;
    binds.insert(0, hostname_bind);
    let spec = ExecSpec {
        args: argv,
        env,
        hostname,
        publish,
        mounts: binds,
        // Swept with the store's other leftovers if rbk is killed.
        scratch: Some(rbk_store::Layout::new(root).tmp()),
        ..base_spec(args, &config, flags.network)
    };
    let result = run_with_restarts(&rootfs, &spec, flags.restart, &record);
    let unmounted = mounted.unmount();
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
    if !rbk_store::Layout::new(root).index().exists() {
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
    let argv = command_line(&config, args.entrypoint.as_deref(), &args.args);
    if argv.is_empty() {
        bail!(
            "no command specified: {} has no ENTRYPOINT or CMD; give one after the image name",
            args.image
        );
    }
    let env = merged_env(&config, &flags.extra_env, crate::env::text, args.tty)?;
    if let Err(why) = sandbox_supported() {
        bail!("cannot run containers here: {why}");
    }
    Ok((store, image, config, argv, env))
}

/// Runs the container, again after a failure while `restart` says so and
/// nobody stopped it.
fn run_with_restarts(
    rootfs: &Path,
    spec: &ExecSpec,
    restart: Restart,
    record: &crate::detach::Record,
) -> Result<i32, SandboxError> {
    let cancel = CancelToken::new();
    let _forward = forward_signals(&cancel)?;
    let mut restarts = 0u32;
    loop {
        let code = NamespaceExecutor.run(rootfs, spec, &mut write_output, &cancel)?;
        let again = match restart {
            Restart::No => false,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        };
        if !again || cancel.is_cancelled() || record.stopping() {
            return Ok(code);
        }
        restarts += 1;
        record.restarted(restarts, code);
        eprintln!("rbk: the container exited with code {code}; restarting ({restarts})");
    }
}

/// What the flags and the image say of the container's process: working
/// directory, user, network, stdin, terminal, Docker's default isolation.
fn base_spec(args: &RunArgs, config: &ContainerConfig, network: NetworkMode) -> ExecSpec {
    ExecSpec {
        cwd: args
            .workdir
            .clone()
            .or_else(|| config.working_dir.clone())
            .unwrap_or_default(),
        user: args
            .user
            .clone()
            .or_else(|| config.user.clone())
            .unwrap_or_default(),
        network,
        stdin: if args.interactive {
            StdinMode::Inherit
        } else {
            StdinMode::Null
        },
        tty: args.tty,
        // Docker's default: default capabilities and seccomp profile.
        insecure: false,
        ..ExecSpec::default()
    }
}

/// The container's `/etc/hostname`, as Docker gives one: a file outside
/// its layer (in the store's `tmp/`, swept if rbk is killed), bound over
/// the image's. The guard removes it.
fn hostname_file(root: &Path, key: &str, hostname: &str) -> Result<(BindMount, DirGuard)> {
    let dir = rbk_store::Layout::new(root)
        .tmp()
        .join(format!("{key}-etc"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let guard = DirGuard(vec![dir.clone()]);
    let file = dir.join("hostname");
    std::fs::write(&file, format!("{hostname}\n"))
        .with_context(|| format!("cannot write {}", file.display()))?;
    let bind = BindMount {
        source: file,
        target: "/etc/hostname".into(),
        readonly: false,
    };
    Ok((bind, guard))
}

/// Named volume `name` at `target`, made if it is not there; an empty one
/// is first seeded with what the image has at `target`, as Docker does.
fn named_volume(
    root: &Path,
    rootfs: &Path,
    name: &str,
    target: &str,
    readonly: bool,
) -> Result<BindMount> {
    crate::cmd_volume::create(root, name)?;
    let data = crate::cmd_volume::data(root, name);
    let empty = std::fs::read_dir(&data)
        .with_context(|| format!("cannot read volume {name} at {}", data.display()))?
        .next()
        .is_none();
    let inside = resolve_in_root(rootfs, target)?;
    if empty && inside.is_dir() {
        copy_tree(&inside, &data)
            .with_context(|| format!("cannot copy the image's {target} into volume {name}"))?;
    }
    Ok(BindMount {
        source: data,
        target: target.to_string(),
        readonly,
    })
}

/// Anonymous volumes — `-v /path` and the image's VOLUMEs no `-v` covers —
/// each an empty directory outside the container layer seeded with what
/// the image has there (as Docker does), plus the `-v` binds and named
/// volumes. The guard removes the anonymous ones, unless the container
/// `keep`s them with its layer (a detached one, until `rbk rm`: `rbk start`
/// finds them as they were, as Docker's anonymous volumes).
fn volume_binds(
    root: &Path,
    id: &str,
    rootfs: &Path,
    config: &ContainerConfig,
    volumes: &[Volume],
    keep: bool,
) -> Result<(Vec<BindMount>, DirGuard)> {
    let mut binds = Vec::new();
    let mut anonymous: Vec<String> = Vec::new();
    for v in volumes {
        match v {
            Volume::Bind(b) => binds.push(b.clone()),
            Volume::Anonymous(t) => anonymous.push(t.clone()),
            Volume::Named {
                name,
                target,
                readonly,
            } => binds.push(named_volume(root, rootfs, name, target, *readonly)?),
        }
    }
    for target in config.volumes.iter().flat_map(|v| v.keys()) {
        let target = normalize_target(target);
        let covered = binds.iter().any(|b| b.target == target) || anonymous.contains(&target);
        if !covered {
            anonymous.push(target);
        }
    }
    let volume_dir = rbk_store::Layout::new(root).volumes();
    let mut guard = DirGuard(Vec::new());
    for (n, target) in anonymous.iter().enumerate() {
        let dir = volume_dir.join(format!("{id}-{n}"));
        let kept = keep && dir.is_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create volume {}", dir.display()))?;
        if !keep {
            guard.0.push(dir.clone());
        }
        let inside = resolve_in_root(rootfs, target)?;
        if inside.is_dir() && !kept {
            copy_tree(&inside, &dir).with_context(|| {
                format!(
                    "cannot copy the image's {target} into its volume {}",
                    dir.display()
                )
            })?;
        }
        binds.push(BindMount {
            source: dir,
            target: target.clone(),
            readonly: false,
        });
    }
    Ok((binds, guard))
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

/// Docker's rules for the command line: ENTRYPOINT + CMD; arguments replace
/// CMD; `--entrypoint` replaces ENTRYPOINT and drops the image's CMD (an
/// empty one clears it).
fn command_line(
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
pub(crate) fn merged_env(
    config: &ContainerConfig,
    extra: &[String],
    host: impl Fn(&str) -> Option<String>,
    tty: bool,
) -> Result<Vec<(String, String)>> {
    let mut env = rbk_runtime::sandbox::EnvList::new();
    for kv in config.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env.set(k, v.to_string());
    }
    for kv in extra {
        match kv.split_once('=') {
            Some(("", _)) => bail!("invalid environment variable {kv:?}: the name is empty"),
            Some((k, v)) => env.set(k, v.to_string()),
            None if kv.is_empty() => bail!("invalid environment variable \"\": the name is empty"),
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

/// `/a/b/` and `a/b` both mean `/a/b` inside the container.
fn normalize_target(t: &str) -> String {
    let trimmed = t.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else if trimmed.starts_with('/') {
        trimmed.into()
    } else {
        format!("/{trimmed}")
    }
}

/// Parses `HOST:CONTAINER[:ro|:rw]` or `CONTAINER`.
fn parse_volume(spec: &str) -> Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, mode) = match parts.as_slice() {
        [target] => return anonymous_volume(spec, target),
        [host, target] => (*host, *target, "rw"),
        [host, target, mode] => (*host, *target, *mode),
        _ => bail!("invalid volume {spec:?}: expected HOST:CONTAINER[:ro]"),
    };
    let readonly = match mode {
        "ro" => true,
        "rw" | "" => false,
        other => bail!("invalid volume {spec:?}: unknown mode {other:?} (use ro or rw)"),
    };
    if !target.starts_with('/') {
        bail!("invalid volume {spec:?}: the container path {target:?} must be absolute");
    }
    if !host.starts_with('/') && !host.starts_with('.') {
        if !crate::cmd_volume::valid_name(host) {
            bail!("invalid volume {spec:?}: {host:?} is neither a host path (absolute or ./relative) nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)");
        }
        return Ok(Volume::Named {
            name: host.to_string(),
            target: normalize_target(target),
            readonly,
        });
    }
    let host = PathBuf::from(host);
    // Like Docker, a missing host directory is created.
    if !host.exists() {
        std::fs::create_dir_all(&host)
            .with_context(|| format!("cannot create volume source {}", host.display()))?;
    }
    let source = std::fs::canonicalize(&host)
        .with_context(|| format!("cannot use volume source {}", host.display()))?;
    Ok(Volume::Bind(BindMount {
        source,
        target: normalize_target(target),
        readonly,
    }))
}

fn anonymous_volume(spec: &str, target: &str) -> Result<Volume> {
    if !target.starts_with('/') {
        bail!(
            "invalid volume {spec:?}: expected HOST:CONTAINER[:ro] or an absolute container path"
        );
    }
    Ok(Volume::Anonymous(normalize_target(target)))
}

/// Makes sure every layer of `image` is a committed snapshot and returns the
/// top one's key (`None` for an image without layers).
fn unpack(store: &Store, snapshotter: &dyn Snapshotter, image: &Image) -> Result<Option<String>> {
    let diff_ids = &image.config.rootfs.diff_ids;
    let layers = &image.manifest.layers;
    if diff_ids.len() != layers.len() {
        bail!(
            "image {} is inconsistent: {} layers but {} diff ids in its config",
            image.id,
            layers.len(),
            diff_ids.len()
        );
    }
    let refs: Vec<LayerRef<'_>> = layers
        .iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| LayerRef { blob, diff_id })
        .collect();
    let parent = unpack_layers::<UnpackError>(store, snapshotter, &refs, |_| Ok(()), || false)
        .with_context(|| format!("cannot unpack image {}", image.id))?;
    Ok(parent)
}

/// A short random container id (12 hex digits, like Docker's short ids).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 6];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        // Unique enough for one machine: pid and time.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mix = nanos ^ (u128::from(std::process::id()) << 64);
        bytes.copy_from_slice(&mix.to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies the tree under `from` into the existing directory `to`, keeping
/// owners, modes and symlinks (an anonymous volume starts as a copy of the
/// image's content there, owner included: mysqld needs its datadir's owner).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{lchown, MetadataExt as _, PermissionsExt as _};
    let md = std::fs::symlink_metadata(from)?;
    lchown(to, Some(md.uid()), Some(md.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let md = entry.metadata()?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
            continue;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            // Sockets, fifos and devices are not data worth seeding.
            continue;
        }
        lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Removes the container's writable snapshot, even on an error path,
/// unless the container keeps it.
struct SnapshotGuard<'a> {
    snapshotter: &'a dyn Snapshotter,
    key: String,
    /// A detached container's layer stays until `rbk rm`.
    keep: bool,
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = self.snapshotter.remove(&self.key) {
            eprintln!(
                "rbk: warning: cannot remove the container's layer {}: {e}",
                self.key
            );
        }
    }
}

/// Removes directories (the mount point, anonymous volumes) when dropped.
/// Declared before the mounts they hold, so dropped after them.
struct DirGuard(Vec<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        for d in &self.0 {
            // remove_dir_all does not cross into a still-mounted directory's
            // content on its own; a leftover mount makes this fail, which is
            // the safe outcome.
            let _ = std::fs::remove_dir_all(d);
        }
    }
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

    #[test]
    fn volumes_parse_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().to_str().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            parse_volume(&format!("{host}:/data/:ro")).unwrap(),
            Volume::Bind(BindMount {
                source: real.clone(),
                target: "/data".into(),
                readonly: true
            })
        );
        assert!(matches!(
            parse_volume(&format!("{host}:/d")).unwrap(),
            Volume::Bind(BindMount {
                readonly: false,
                ..
            })
        ));
        assert_eq!(
            parse_volume("/var/lib/x/").unwrap(),
            Volume::Anonymous("/var/lib/x".into())
        );
        let missing = dir.path().join("new/sub");
        parse_volume(&format!("{}:/m", missing.display())).unwrap();
        assert!(missing.is_dir(), "a missing host directory is created");
        assert_eq!(
            parse_volume("named:/data:ro").unwrap(),
            Volume::Named {
                name: "named".into(),
                target: "/data".into(),
                readonly: true
            }
        );
        assert_eq!(
            named_volumes(&["db:/d".into(), "/h:/x".into(), "/y".into()]),
            ["db"]
        );
        for bad in [
            "n/x:/data",
            "a:/data",
            "rel",
            &format!("{host}:data"),
            &format!("{host}:/d:xx"),
            "a:b:c:d",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn copy_tree_keeps_owners_modes_and_links() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), "x").unwrap();
        std::fs::set_permissions(
            src.path().join("d/f"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("d/f", src.path().join("l")).unwrap();
        copy_tree(src.path(), dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("d/f")).unwrap(),
            "x"
        );
        let md = std::fs::metadata(dst.path().join("d/f")).unwrap();
        assert_eq!(md.mode() & 0o777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.path().join("l")).unwrap(),
            Path::new("d/f")
        );
    }

    #[test]
    fn ids_are_twelve_hex_digits() {
        let id = random_id();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id());
    }
}
