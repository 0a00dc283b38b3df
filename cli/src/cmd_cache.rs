//! `rbk cache`: the build cache shared through a registry.

use anyhow::{bail, Context as _, Result};
use rbk_store::registry::cache::{parse_duration, parse_size, prune, PruneOptions, PrunedRecord};
use rbk_store::registry::Client;
use rbk_store::Reference;

use crate::cmd_registry::RegistryFlags;
use crate::human::human_size;

/// `rbk cache …`
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Delete old records of a registry build cache (`--cache-to
    /// type=registry,ref=REF`); the registry must allow deleting
    #[command(after_help = "Examples:
  rbk cache prune --ref reg.example.com/app:buildcache --keep-duration 7d
  rbk cache prune --ref reg.example.com/app:buildcache --keep-storage 10GB
  rbk cache prune --ref reg.example.com/app:buildcache --keep-duration 24h --keep-storage 2GB")]
    Prune(PruneArgs),
}

/// `rbk cache prune`
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The cache, as given to --cache-to type=registry,ref=REF
    #[arg(long = "ref", value_name = "REF")]
    reference: String,
    /// Delete the records exported longer ago than this (24h, 7d, 90m)
    #[arg(long, value_name = "DURATION")]
    keep_duration: Option<String>,
    /// Then delete the oldest records until the rest take at most this
    /// much (10GB, 512MB; powers of 1024, as Docker's --keep-storage)
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// Runs a `rbk cache` command.
pub fn run(command: CacheCommand) -> Result<i32> {
    match command {
        CacheCommand::Prune(a) => prune_cache(&a),
    }
}

fn prune_cache(args: &PruneArgs) -> Result<i32> {
    let reference =
        Reference::parse(&args.reference).with_context(|| format!("--ref {:?}", args.reference))?;
    let opts = PruneOptions {
        keep_duration: args
            .keep_duration
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--keep-duration: {e}"))?,
        keep_storage: args
            .keep_storage
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--keep-storage: {e}"))?,
    };
    if opts.keep_duration.is_none() && opts.keep_storage.is_none() {
        bail!("rbk cache prune: give --keep-duration, --keep-storage or both (what to keep)");
    }
    let client = Client::new(args.registry.options())?;
    let report = prune(&client, &reference, &opts, &|_| {})
        .with_context(|| format!("cannot prune the cache {reference}"))?;
    let line = |what: &str, r: &PrunedRecord| {
        println!(
            "{what} {}  {}  {}",
            r.tag,
            if r.created.is_empty() {
                "(undated)"
            } else {
                &r.created
            },
            human_size(r.size)
        )
    };
    for r in &report.deleted {
        line("deleted", r);
    }
    for r in &report.kept {
        line("kept", r);
    }
    let freed: u64 = report.deleted.iter().map(|r| r.size).sum();
    eprintln!(
        "{reference}: deleted {} record{} ({}), kept {} ({})",
        report.deleted.len(),
        if report.deleted.len() == 1 { "" } else { "s" },
        human_size(freed),
        report.kept.len(),
        human_size(report.kept_bytes)
    );
    Ok(0)
}
