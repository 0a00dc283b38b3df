//! `rbk volume create|ls|inspect|rm|prune`: named volumes, as Docker's
//! `local` driver keeps them (their layout and rules:
//! [`rbk_runtime::container::volume`]).

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use rbk_runtime::container;
use rbk_runtime::container::volume::{self, create, data, names, remove, valid_name};

/// `rbk volume …`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given)
    #[command(
        after_help = "Examples:\n  rbk volume create dbdata\n  rbk run -d -v dbdata:/var/lib/mysql rbk-examples/mariadb:debian"
    )]
    Create(CreateArgs),
    /// List volumes
    #[command(name = "ls", alias = "list")]
    Ls(LsArgs),
    /// Show volumes' details as JSON
    Inspect(NamesArgs),
    /// Remove volumes (not one a container on record uses)
    #[command(name = "rm", alias = "remove")]
    Rm(NamesArgs),
    /// Remove the volumes no container on record uses
    Prune(PruneArgs),
}

/// `rbk volume create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The volume's name
    name: Option<String>,
}

/// `rbk volume ls`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show names
    #[arg(short, long)]
    quiet: bool,
}

/// Volume names.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Volume names
    #[arg(required = true)]
    names: Vec<String>,
}

/// `rbk volume prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
}

/// `rbk volume …`
pub fn run(root: &Path, c: VolumeCommand) -> Result<i32> {
    match c {
        VolumeCommand::Create(a) => {
            let name = a
                .name
                .unwrap_or_else(|| container::random_id() + &container::random_id()[..4]);
            create(root, &name)?;
            println!("{name}");
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            if !a.quiet {
                println!("DRIVER    VOLUME NAME");
            }
            for n in names(root) {
                if a.quiet {
                    println!("{n}");
                } else {
                    println!("local     {n}");
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect(a) => inspect(root, &a.names),
        VolumeCommand::Rm(a) => rm(root, &a.names),
        VolumeCommand::Prune(a) => prune(root, a.force),
    }
}

fn inspect(root: &Path, names: &[String]) -> Result<i32> {
    let mut out = Vec::new();
    let mut failed = false;
    for n in names {
        if !valid_name(n) || !data(root, n).is_dir() {
            eprintln!("rbk: no such volume: {n}");
            failed = true;
            continue;
        }
        let created = volume::created(root, n);
        out.push(serde_json::json!({
            "CreatedAt": created,
            "Driver": "local",
            "Labels": null,
            "Mountpoint": data(root, n),
            "Name": n,
            "Options": null,
            "Scope": "local",
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(i32::from(failed))
}

fn rm(root: &Path, names: &[String]) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let res = if !valid_name(n) || !data(root, n).is_dir() {
            Err(anyhow::anyhow!("no such volume: {n}"))
        } else {
            match container::volume_users(root, n).as_slice() {
                [] => remove(root, n).map(|_| ()).map_err(anyhow::Error::from),
                ids => Err(anyhow::anyhow!(
                    "remove {n}: volume is in use - [{}]",
                    ids.join(", ")
                )),
            }
        };
        match res {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("rbk: {e:#}");
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

/// Removes the volumes no container on record uses; returns the bytes
/// reclaimed, having printed what went.
pub fn prune_unused(root: &Path) -> Result<u64> {
    let mut total = 0;
    let mut any = false;
    for n in names(root) {
        if container::volume_users(root, &n).is_empty() {
            if !any {
                println!("Deleted Volumes:");
                any = true;
            }
            total += remove(root, &n)?;
            println!("{n}");
        }
    }
    if any {
        println!();
    }
    Ok(total)
}

fn prune(root: &Path, force: bool) -> Result<i32> {
    if !force
        && !crate::prompt::confirm(
            "WARNING! This will remove all local volumes not used by at least one container.",
        )
    {
        return Ok(0);
    }
    let total = prune_unused(root)?;
    println!("Total reclaimed space: {}", crate::human::human_size(total));
    Ok(0)
}
