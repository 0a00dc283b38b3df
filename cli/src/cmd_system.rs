//! `rbk system check`: verify the store, and repair it on request;
//! `rbk system info`: what this host gives rbk.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rbk_store::check::{check, CheckOptions, CheckReport, Severity};
use rbk_store::images::Store;

mod usage;

/// Store maintenance.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the space images, containers, volumes and the build cache take
    #[command(after_help = "Example:\n  rbk system df")]
    Df(usage::DfArgs),
    /// Remove stopped containers, dangling images (-a: every image no
    /// container uses) and the build cache; volumes too with --volumes.
    /// Prints the space reclaimed
    #[command(after_help = "Examples:\n  rbk system prune\n  rbk system prune -a --volumes -f")]
    Prune(usage::PruneArgs),
    /// Verify the store: every blob's digest, every image's manifest,
    /// config and layers, cache records, snapshots, and what crashed
    /// processes left behind. Exits 1 when something is damaged or left
    /// over.
    #[command(
        after_help = "Examples:\n  rbk system check\n  rbk system check --quick --format json\n  rbk system check --repair"
    )]
    Check(CheckArgs),
    /// What this host gives rbk: kernel, overlayfs, namespaces, seccomp,
    /// cgroups, user-mode networking, rootless tools, QEMU handlers, the
    /// store and its snapshotter. A missing piece names the Debian
    /// package that provides it. Exits 1 when a piece named by
    /// `--require` is missing.
    #[command(
        after_help = "Examples:\n  rbk system info\n  rbk system info --format json\n  rbk system info --require namespaces,overlayfs,seccomp,slirp4netns,tun"
    )]
    Info(InfoArgs),
}

/// `rbk system info` flags.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Fail (exit 1) unless these pieces are usable, comma-separated:
    /// kernel, user, store, snapshotter, overlayfs, namespaces, userns,
    /// seccomp, cgroups, slirp4netns, tun, pasta, newuidmap, subids, qemu
    #[arg(long, value_delimiter = ',', value_name = "PIECES")]
    require: Vec<String>,
    /// Output: text, or json (every piece with its status and package)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

/// `rbk system check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Remove what is damaged, left over or unreachable (never what a
    /// running rbk uses); images whose blobs are damaged are untagged
    #[arg(long)]
    repair: bool,
    /// Check structure only: do not hash every blob
    #[arg(long)]
    quick: bool,
    /// Output: text, or json (the whole report)
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

/// Runs a system command; returns the exit code.
pub fn run(root: &Path, cmd: SystemCommand) -> Result<i32> {
    match cmd {
        SystemCommand::Check(a) => check_cmd(root, &a),
        SystemCommand::Df(a) => usage::df(root, &a),
        SystemCommand::Prune(a) => usage::prune(root, &a),
        SystemCommand::Info(a) => info_cmd(root, &a),
    }
}

fn info_cmd(root: &Path, args: &InfoArgs) -> Result<i32> {
    use crate::hostinfo;
    let pieces = hostinfo::gather(root, crate::snapshotter_flag());
    let missing = hostinfo::missing(&pieces, &args.require).map_err(anyhow::Error::msg)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&pieces)?);
    } else {
        print!("{}", hostinfo::render(&pieces));
    }
    if missing.is_empty() {
        return Ok(0);
    }
    eprintln!("rbk: this host lacks what is required:");
    for p in &missing {
        eprintln!("  {}", hostinfo::remedy(p));
    }
    Ok(1)
}

fn check_cmd(root: &Path, args: &CheckArgs) -> Result<i32> {
    if !rbk_store::Layout::new(root).blobs().is_dir() {
        anyhow::bail!("no store at {} (nothing to check)", root.display());
    }
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let opts = CheckOptions {
        repair: args.repair,
        quick: args.quick,
    };
    let report = check(&store, opts).context("cannot check the store")?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, args.repair);
    }
    Ok(i32::from(report.problems() > 0))
}

fn print_report(r: &CheckReport, repair: bool) {
    let verified = if r.blobs_verified > 0 {
        format!(", {} hashed", r.blobs_verified)
    } else {
        String::new()
    };
    println!(
        "checked {} blobs ({}{verified}), {} index entries, {} cache records, {} snapshots",
        r.blobs,
        crate::human::human_size(r.blob_bytes),
        r.images,
        r.cache_records,
        r.snapshots
    );
    for m in &r.remote {
        let n = m.layers.len();
        println!(
            "image {}: remote: {n} layer{} in {}, fetched when read",
            m.image,
            if n == 1 { "" } else { "s" },
            m.from.join(", ")
        );
    }
    for f in &r.findings {
        let label = match f.severity {
            Severity::Damaged => "damaged",
            Severity::Leftover => "leftover",
            Severity::Unreachable => "unreachable",
        };
        let done = if f.repaired { " [removed]" } else { "" };
        println!("{label}: {}: {}{done}", f.subject, f.problem);
    }
    let problems = r.problems();
    let unreachable = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Unreachable && !f.repaired)
        .count();
    if problems == 0 {
        println!("store is sound");
    } else if !repair {
        println!("{problems} problem(s); `rbk system check --repair` removes them");
    } else {
        println!("{problems} problem(s) could not be repaired");
    }
    if unreachable > 0 {
        println!("{unreachable} unreachable item(s): `rbk prune` or `--repair` removes them");
    }
}
