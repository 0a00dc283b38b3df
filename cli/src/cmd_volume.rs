//! Named volumes, as Docker's `local` driver keeps them: `rbk volume
//! create|ls|inspect|rm|prune` and `rbk run -v NAME:/path`.
//!
//! A volume is `<store>/volumes/NAME/` holding its content in `_data` and
//! `volume.json` (when it was made). The first container that mounts an
//! empty volume seeds it with what its image has at that path, as Docker
//! does. Containers' anonymous volumes live beside them as `<id>-<n>`
//! (12 hex digits, a dash, a number), a shape no volume name may take.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::containers;

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

/// What `volume.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    created: String,
}

/// Where volumes live (anonymous ones too).
pub fn dir(root: &Path) -> PathBuf {
    rbk_store::Layout::new(root).volumes()
}

/// The content directory of volume `name`.
pub fn data(root: &Path, name: &str) -> PathBuf {
    dir(root).join(name).join("_data")
}

/// Whether `name` is a volume name (Docker's rule,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`) and not the shape of an anonymous one.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok =
        name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    first_ok && rest_ok && !is_anonymous(name)
}

/// `<container id>-<n>`: a container's anonymous volume.
fn is_anonymous(name: &str) -> bool {
    name.split_once('-').is_some_and(|(id, n)| {
        id.len() == 12
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Creates volume `name` unless it exists; returns whether it is new.
pub fn create(root: &Path, name: &str) -> Result<bool> {
    if !valid_name(name) {
        bail!("invalid volume name {name:?}: use letters, digits, _ . - (starting with a letter or digit)");
    }
    let d = data(root, name);
    if d.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create volume {}", d.display()))?;
    let meta = dir(root).join(name).join("volume.json");
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    std::fs::write(&meta, serde_json::to_vec(&Meta { created })?)
        .with_context(|| format!("cannot write {}", meta.display()))?;
    Ok(true)
}

/// Every named volume, by name.
pub fn names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir(root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("_data").is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    names
}

/// The containers on record that use volume `name`.
pub fn users(root: &Path, name: &str) -> Vec<String> {
    containers::list(root)
        .into_iter()
        .filter(|s| s.volumes.iter().any(|v| v == name))
        .map(|s| s.id)
        .collect()
}

/// `rbk volume …`
pub fn run(root: &Path, c: VolumeCommand) -> Result<i32> {
    match c {
        VolumeCommand::Create(a) => {
            let name = a
                .name
                .unwrap_or_else(|| crate::cmd_run::random_id() + &crate::cmd_run::random_id()[..4]);
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
        let meta_path = dir(root).join(n).join("volume.json");
        let created = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .map(|m| m.created)
            .unwrap_or_default();
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
            match users(root, n).as_slice() {
                [] => remove(root, n).map(|_| ()),
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

/// Removes volume `name`; returns the bytes it held.
fn remove(root: &Path, name: &str) -> Result<u64> {
    let d = dir(root).join(name);
    let size = crate::cmd_system::disk_usage(&d.join("_data"));
    std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove volume {}", d.display()))?;
    Ok(size)
}

/// Removes the volumes no container on record uses; returns the bytes
/// reclaimed, having printed what went.
pub fn prune_unused(root: &Path) -> Result<u64> {
    let mut total = 0;
    let mut any = false;
    for n in names(root) {
        if users(root, &n).is_empty() {
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
        && !crate::cmd_system::confirm(
            "WARNING! This will remove all local volumes not used by at least one container.",
        )
    {
        return Ok(0);
    }
    let total = prune_unused(root)?;
    println!(
        "Total reclaimed space: {}",
        crate::cmd_image::human_size(total)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_and_leave_anonymous_ones_alone() {
        for good in ["db", "my_vol.1", "a-b", "0data", "abcdef012345-x"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a", "-x", ".x", "a/b", "a b", "abcdef012345-0", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
