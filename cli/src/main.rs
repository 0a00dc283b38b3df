//! `rbk`: the command-line front end. Parses flags, picks concrete store and
//! executor implementations, prints tables and progress, maps errors to exit
//! codes.

mod build;
mod cmd_bake;
mod cmd_build;
mod cmd_cache;
mod cmd_check;
mod cmd_container;
mod cmd_cp;
mod cmd_exec;
mod cmd_graph;
mod cmd_image;
mod cmd_manifest;
mod cmd_meta;
mod cmd_plan;
mod cmd_registry;
mod cmd_run;
mod cmd_sbom;
mod cmd_sign;
mod cmd_system;
mod cmd_volume;
mod complete;
mod detach;
mod emulation;
mod env;
mod format;
mod graph_out;
mod hostinfo;
mod human;
mod inputs;
mod log_relay;
mod network;
mod outputs;
mod pipe;
mod plan_doc;
mod plan_emit;
mod ports;
mod progress;
mod prompt;
mod report;
mod rootless;
mod ssh;
mod stdin_context;
mod sys;
mod table;
mod timings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// rbk — a daemonless, declarative container-image builder.
#[derive(Debug, Parser)]
#[command(name = "rbk", version, about, propagate_version = true)]
struct Cli {
    /// Store directory (default: $RBK_ROOT, /var/lib/rbk as root, else ~/.local/share/rbk)
    #[arg(long, global = true, env = "RBK_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Snapshotter: overlay (kernel overlayfs), copy (plain copies), or auto
    #[arg(long, global = true, env = "RBK_SNAPSHOTTER", default_value = "auto")]
    snapshotter: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build images from a Dockerfile or an rbk.toml
    Build(Box<cmd_build::BuildArgs>),
    /// Build the targets of docker-bake.hcl/.json, compose.yaml or rbk.toml
    /// (as `docker buildx bake`)
    Bake(cmd_bake::BakeArgs),
    /// Run a command in a new container from an image
    Run(cmd_run::RunArgs),
    /// List containers (running ones; -a for all)
    Ps(cmd_container::PsArgs),
    /// Run a command in a running container
    Exec(cmd_exec::ExecArgs),
    /// Copy files and directories between a running container and the host
    Cp(cmd_cp::CpArgs),
    /// Show a detached container's output
    Logs(cmd_container::LogsArgs),
    /// Show a container's published ports (`80/tcp -> 0.0.0.0:49153`)
    Port(ports::PortArgs),
    /// Stop running containers (their STOPSIGNAL, then SIGKILL)
    Stop(cmd_container::StopArgs),
    /// Start stopped containers again (their recorded command and flags)
    Start(cmd_container::StartArgs),
    /// Remove containers
    Rm(cmd_container::RmArgs),
    /// Print a Dockerfile's syntax tree (BuildKit's dump format)
    Parse(cmd_graph::ParseArgs),
    /// Show the build graph of Dockerfiles or an rbk.toml
    Graph(cmd_graph::GraphArgs),
    /// Split a target file's build over several builders (CI jobs,
    /// Kubernetes pods) sharing a registry: who builds what, or the pipeline
    Plan(Box<cmd_plan::PlanArgs>),
    /// Check Dockerfiles with BuildKit's lint rules (as `docker build --check`)
    Check(cmd_check::CheckArgs),
    /// Download an image from a registry
    Pull(cmd_registry::PullArgs),
    /// Upload an image to a registry
    Push(cmd_registry::PushArgs),
    /// Print an image's software bill of materials (SPDX 2.3 JSON), as `docker sbom`
    Sbom(cmd_sbom::SbomArgs),
    /// Sign an image in a registry the way cosign does (key pair: --generate-key)
    Sign(cmd_sign::SignArgs),
    /// Check an image's cosign signatures with a public key
    Verify(cmd_sign::VerifyArgs),
    /// Log in to a registry (credentials are checked, then stored 0600)
    Login(cmd_registry::LoginArgs),
    /// Forget a registry's stored credentials
    Logout(cmd_registry::LogoutArgs),
    #[command(flatten)]
    Image(cmd_image::ImageCommand),
    /// Image commands under their docker-style group name (`rbk image inspect …`)
    #[command(subcommand, name = "image")]
    ImageGroup(cmd_image::ImageCommand),
    /// Multi-platform images: make an index of images, show it, push it
    #[command(subcommand)]
    Manifest(cmd_manifest::ManifestCommand),
    /// The build cache shared through a registry: `rbk cache prune`
    #[command(subcommand)]
    Cache(cmd_cache::CacheCommand),
    /// Named volumes: `rbk volume create|ls|inspect|rm|prune`
    #[command(subcommand)]
    Volume(cmd_volume::VolumeCommand),
    /// The host and the store: `rbk system info`, `rbk system check [--repair]`
    #[command(subcommand)]
    System(cmd_system::SystemCommand),
    /// The build of rbk (version, commit, date) and what this host gives it
    Version(cmd_meta::VersionArgs),
    /// Write manual pages for every command into a directory
    #[command(after_help = "Example:\n  rbk man /usr/local/share/man/man1 && man rbk-build")]
    Man(cmd_meta::ManArgs),
    /// Copies a detached container's output to its log (started by `rbk run -d`)
    #[command(name = "__log-relay", hide = true)]
    LogRelay {
        /// The container's record directory
        dir: PathBuf,
    },
    /// Print shell completions
    #[command(after_help = "Example:\n  rbk completions bash > /etc/bash_completion.d/rbk")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// `rbk run`'s exit code when rbk itself fails, as Docker's.
const EXIT_RBK_FAILED: i32 = 125;

/// The store root: flag, then $RBK_ROOT, then the per-user default.
fn store_root(flag: Option<PathBuf>) -> PathBuf {
    if let Some(r) = flag {
        return r;
    }
    if sys::is_root() {
        return PathBuf::from("/var/lib/rbk");
    }
    match (env::xdg_data_home(), env::home()) {
        (Some(d), _) => d.join("rbk"),
        (None, Some(h)) => h.join(".local/share/rbk"),
        (None, None) => PathBuf::from(".rbk"),
    }
}

/// The snapshotter the flag asks for.
pub(crate) fn snapshotter(
    root: &std::path::Path,
) -> anyhow::Result<Box<dyn rbk_store::snapshot::Snapshotter>> {
    use rbk_store::snapshot::{overlay_works_in, CopySnapshotter, OverlaySnapshotter};
    let dir = rbk_store::Layout::new(root).snapshots();
    let kind = SNAPSHOTTER.get().map(String::as_str).unwrap_or("auto");
    let overlay = match kind {
        "overlay" => true,
        "copy" => false,
        // Probe on the store's own filesystem: overlay may work in /tmp
        // and not there (or the reverse).
        "auto" => {
            std::fs::create_dir_all(&dir)?;
            overlay_works_in(&dir)
        }
        other => anyhow::bail!("--snapshotter {other:?}: use overlay, copy or auto"),
    };
    Ok(if overlay {
        Box::new(OverlaySnapshotter::open(&dir)?)
    } else {
        Box::new(CopySnapshotter::open(&dir)?)
    })
}

static SNAPSHOTTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The `--snapshotter` this rbk was given (for the `rbk run` that `-d`
/// starts).
pub(crate) fn snapshotter_flag() -> &'static str {
    SNAPSHOTTER.get().map(String::as_str).unwrap_or("auto")
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let root = store_root(cli.root);
    let _ = SNAPSHOTTER.set(cli.snapshotter);
    // Layers a build cache holds come in when something reads them, from
    // any command (a later `rbk save`, `rbk run`).
    cmd_registry::fetch_remote_layers_from_environment();
    match cli.command {
        Command::Build(a) => cmd_build::build(&root, &a),
        Command::Bake(a) => cmd_bake::bake(&root, &a),
        // As `docker run`: 125 when rbk itself fails (no such image, a bad
        // flag), 126/127 when the command cannot run, else the command's.
        Command::Run(a) => Ok(cmd_run::run(&root, &a).unwrap_or_else(|e| {
            eprintln!("{}", report::render(&e));
            EXIT_RBK_FAILED
        })),
        Command::Exec(a) => cmd_exec::exec(&root, &a),
        Command::Cp(a) => cmd_cp::cp(&root, &a),
        Command::Ps(a) => cmd_container::ps(&root, &a),
        Command::Logs(a) => cmd_container::logs(&root, &a),
        Command::Port(a) => ports::port(&root, &a, &mut pipe::stdout()),
        Command::Stop(a) => cmd_container::stop(&root, &a),
        Command::Start(a) => cmd_container::start(&root, &a),
        Command::Rm(a) => cmd_container::rm(&root, &a),
        Command::Image(c) | Command::ImageGroup(c) => cmd_image::run(&root, c),
        Command::Pull(a) => cmd_registry::pull(&root, &a),
        Command::Push(a) => cmd_registry::push(&root, &a),
        Command::Sbom(a) => cmd_sbom::sbom(&root, &a),
        Command::Sign(a) => cmd_sign::sign(&root, &a),
        Command::Verify(a) => cmd_sign::verify(&root, &a),
        Command::Login(a) => cmd_registry::login(&a),
        Command::Logout(a) => cmd_registry::logout(&a),
        Command::Parse(a) => cmd_graph::parse(&a),
        Command::System(c) => cmd_system::run(&root, c),
        Command::Volume(c) => cmd_volume::run(&root, c),
        Command::Cache(c) => cmd_cache::run(c),
        Command::Manifest(c) => cmd_manifest::run(&root, c),
        Command::Graph(a) => cmd_graph::graph(&root, &a),
        Command::Plan(a) => cmd_plan::plan(&root, &a),
        Command::Check(a) => build::compile::with_resolver(&root, |r| cmd_check::run(&a, r)),
        Command::Version(a) => cmd_meta::version(&root, &a),
        Command::Man(a) => cmd_meta::man(Cli::command(), &a),
        Command::LogRelay { dir } => log_relay::run(&dir),
        Command::Completions { shell } => {
            // The shell asks rbk itself (`COMPLETE=SHELL rbk -- …`), so
            // image, container and target names are offered too.
            use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
            let completer: &dyn EnvCompleter = match shell {
                clap_complete::Shell::Bash => &Bash,
                clap_complete::Shell::Zsh => &Zsh,
                clap_complete::Shell::Fish => &Fish,
                clap_complete::Shell::Elvish => &Elvish,
                _ => &Powershell,
            };
            let bin = std::env::current_exe()
                .ok()
                .filter(|p| p.is_absolute())
                .map_or_else(|| "rbk".to_string(), |p| p.display().to_string());
            let mut script = Vec::new();
            completer.write_registration("COMPLETE", "rbk", &bin, &bin, &mut script)?;
            std::io::Write::write_all(&mut pipe::stdout(), &script)?;
            Ok(0)
        }
    }
}

/// The store at `root` if one is there, without creating one as a side
/// effect of a command that only reads.
pub(crate) fn existing_store(root: &std::path::Path) -> Option<rbk_store::images::Store> {
    if !rbk_store::Layout::new(root).index().exists() {
        return None;
    }
    rbk_store::images::Store::open(root).ok()
}

/// Whether `command` works on the store (and so, run by a user who is not
/// root, needs the user namespace of [`rootless`]).
fn needs_namespace(command: &Command) -> bool {
    !matches!(
        command,
        Command::Parse(_)
            | Command::Graph(_)
            | Command::Plan(_)
            | Command::Check(_)
            | Command::Login(_)
            | Command::Cache(_)
            | Command::Logout(_)
            | Command::Completions { .. }
            | Command::Version(_)
            | Command::Man(_)
            | Command::LogRelay { .. }
            | Command::System(cmd_system::SystemCommand::Info(_))
            // They join the user namespace of the container's own rootless
            // rbk, which a namespace of their own could not enter.
            | Command::Exec(_)
            | Command::Cp(_)
    )
}

fn main() -> ExitCode {
    // `COMPLETE=bash rbk -- words…`: the shell asking for completions.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = Cli::parse();
    if !sys::is_root() && needs_namespace(&cli.command) {
        let root = store_root(cli.root.clone());
        return match rootless::reexec(&root) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("{}", report::render(&e));
                ExitCode::from(1)
            }
        };
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // The reader went away (`| head`): nothing to say to anyone.
        Err(_) if pipe::closed() => ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (plus causes), no backtrace.
            eprintln!("{}", report::render(&e));
            ExitCode::from(1)
        }
    }
}
