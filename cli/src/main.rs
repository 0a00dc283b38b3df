//! `rbk`: the command-line front end. Parses flags, picks concrete store and
//! executor implementations, prints tables and progress, maps errors to exit
//! codes.

mod cmd_graph;
mod inputs;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a Dockerfile's syntax tree (BuildKit's dump format)
    Parse(cmd_graph::ParseArgs),
    /// Show the build graph of Dockerfiles or an rbk.toml
    Graph(cmd_graph::GraphArgs),
    /// Print shell completions
    #[command(after_help = "Example:\n  rbk completions bash > /etc/bash_completion.d/rbk")]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// The store root: flag, then $RBK_ROOT, then the per-user default.
fn store_root(flag: Option<PathBuf>) -> PathBuf {
    if let Some(r) = flag {
        return r;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/rbk");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/rbk"),
        None => PathBuf::from(".rbk"),
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let _root = store_root(cli.root);
    match cli.command {
        Command::Parse(a) => cmd_graph::parse(&a),
        Command::Graph(a) => cmd_graph::graph(&a, &rbk_compiler::NoResolver),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "rbk", &mut std::io::stdout());
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            // One clear line (plus causes), no backtrace.
            let mut msg = format!("rbk: {e}");
            for cause in e.chain().skip(1) {
                msg.push_str(&format!(": {cause}"));
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}
