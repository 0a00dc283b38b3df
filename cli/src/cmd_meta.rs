//! `rbk version` (the build and what the host gives rbk) and `rbk man`
//! (manual pages for every command, from the same definitions as
//! `--help`).

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::hostinfo::{self, Status};

/// `rbk version` flags.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output: text, or json
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

/// `rbk man` flags.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (rbk.1, rbk-build.1, …)
    #[arg(value_name = "DIR")]
    dir: std::path::PathBuf,
}

/// The build date as YYYY-MM-DD (UTC).
fn built() -> String {
    let secs: i64 = env!("RBK_BUILT_EPOCH").parse().unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `rbk version`.
pub fn version(root: &Path, args: &VersionArgs) -> Result<i32> {
    let pieces = hostinfo::gather(root, crate::snapshotter_flag());
    let usable: Vec<&str> = pieces
        .iter()
        .filter(|p| p.status == Status::Ok)
        .map(|p| p.id)
        .collect();
    let missing: Vec<&str> = pieces
        .iter()
        .filter(|p| matches!(p.status, Status::Missing | Status::Absent))
        .map(|p| p.id)
        .collect();
    if args.format == "json" {
        let v = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("RBK_COMMIT"),
            "commit_date": env!("RBK_COMMIT_DATE"),
            "built": built(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "host": { "usable": usable, "missing": missing },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("rbk {}", env!("CARGO_PKG_VERSION"));
    println!(
        "commit:   {} ({})",
        env!("RBK_COMMIT"),
        env!("RBK_COMMIT_DATE")
    );
    println!("built:    {}", built());
    println!(
        "platform: {}/{}",
        std::env::consts::OS,
        rbk_store::oci::host_architecture()
    );
    println!("host has: {}", usable.join(", "));
    if !missing.is_empty() {
        println!(
            "host lacks: {} (rbk system info says more)",
            missing.join(", ")
        );
    }
    Ok(0)
}

/// `rbk man DIR`: one page per command and subcommand.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut written = 0;
    write_pages(cmd, "rbk", &args.dir, &mut written)?;
    eprintln!("wrote {written} pages to {}", args.dir.display());
    Ok(0)
}

fn write_pages(cmd: clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    let cmd = cmd.name(name.to_string()).bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .with_context(|| format!("cannot render the page of {name}"))?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}
