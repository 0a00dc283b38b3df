//! `rbk image prune`: delete untagged images (and with `--all` the build
//! cache) and say what was reclaimed.

use std::io::Write;

use rbk_store::images::PruneOptions;
use rbk_store::Store;

use crate::human::human_size;

/// `rbk image prune`.
pub(super) fn prune(store: &Store, out: &mut dyn Write, all: bool) -> anyhow::Result<i32> {
    let report = store.prune(PruneOptions { cache: all })?;
    if !report.images.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for d in &report.images {
            writeln!(out, "deleted: {d}")?;
        }
        writeln!(out)?;
    }
    if report.cache_records > 0 {
        writeln!(out, "Deleted build cache records: {}", report.cache_records)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(report.reclaimed)
    )?;
    Ok(0)
}
