//! `rbk system df` and `rbk system prune`: the space images, containers,
//! volumes and the build cache take, and freeing what nothing uses, in
//! Docker's words.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context as _, Result};
use clap::Args;
use rbk_store::digest::Digest;
use rbk_store::images::{Image, PruneOptions, Store};

use crate::human::human_size;
use rbk_runtime::container::{self, volume};

/// `rbk system df`
#[derive(Debug, Args)]
pub struct DfArgs {}

/// `rbk system prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones
    #[arg(short, long)]
    all: bool,
    /// Remove the volumes no container uses too
    #[arg(long)]
    volumes: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
}

/// One row of `df`.
struct Row {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Row {
    /// The row of `kind` over its items, each its size and whether it is
    /// in use; reclaimable, what the unused ones take.
    fn tally(kind: &'static str, items: impl Iterator<Item = (u64, bool)>) -> Row {
        let mut row = Row {
            kind,
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        for (size, in_use) in items {
            row.total += 1;
            row.size += size;
            if in_use {
                row.active += 1;
            } else {
                row.reclaimable += size;
            }
        }
        row
    }
}

/// The ids of the images the containers on record were started from.
fn images_in_use(store: &Store, root: &Path) -> HashSet<Digest> {
    container::list(root)
        .iter()
        .filter_map(|s| store.resolve(&s.image).ok())
        .map(|i| i.id)
        .collect()
}

/// The blobs of an image (config and layers) with their sizes.
fn blobs(image: &Image) -> Vec<(Digest, u64)> {
    let mut v = vec![(
        image.manifest.config.digest.clone(),
        image.manifest.config.size,
    )];
    v.extend(
        image
            .manifest
            .layers
            .iter()
            .map(|l| (l.digest.clone(), l.size)),
    );
    v
}

/// Images: each blob counted once; reclaimable what no image in use has.
fn image_row(images: &[Image], used: &HashSet<Digest>) -> Row {
    let mut all = std::collections::HashMap::new();
    let mut kept = HashSet::new();
    let mut ids = HashSet::new();
    for i in images {
        ids.insert(i.id.clone());
        for (d, size) in blobs(i) {
            if used.contains(&i.id) {
                kept.insert(d.clone());
            }
            all.insert(d, size);
        }
    }
    let size = all.values().sum();
    let reclaimable = all
        .iter()
        .filter(|(d, _)| !kept.contains(*d))
        .map(|(_, s)| s)
        .sum();
    Row {
        kind: "Images",
        total: ids.len(),
        active: ids.iter().filter(|id| used.contains(*id)).count(),
        size,
        reclaimable,
    }
}

/// The bytes of a container's writable layer (0 when it has none).
fn layer_size(root: &Path, id: &str) -> u64 {
    crate::snapshotter(root)
        .ok()
        .and_then(|sn| sn.upper_dir(&container::layer_key(id)).ok())
        .map_or(0, |upper| container::disk_usage(&upper))
}

/// Containers: their writable layers; reclaimable, the stopped ones'.
fn container_row(root: &Path) -> Row {
    let all = container::list(root);
    let items = all
        .iter()
        .map(|s| (layer_size(root, &s.id), container::running(root, &s.id)));
    Row::tally("Containers", items)
}

/// Named volumes: in use when a container on record mounts them.
fn volume_row(root: &Path) -> Row {
    let items = volume::names(root).into_iter().map(|n| {
        let size = container::disk_usage(&volume::data(root, &n));
        (size, !container::volume_users(root, &n).is_empty())
    });
    Row::tally("Local Volumes", items)
}

/// The build cache: its records, and the layers only they hold.
fn cache_row(store: &Store, images: &[Image]) -> Result<Row> {
    let in_images: HashSet<Digest> = images
        .iter()
        .flat_map(|i| blobs(i).into_iter().map(|(d, _)| d))
        .collect();
    let records = store.cache.list().context("cannot read the build cache")?;
    let mut own = std::collections::HashMap::new();
    for r in &records {
        if let Some(l) = &r.layer {
            if !in_images.contains(&l.digest) {
                own.insert(l.digest.clone(), l.size);
            }
        }
    }
    let size = own.values().sum();
    Ok(Row {
        kind: "Build Cache",
        total: records.len(),
        active: 0,
        size,
        reclaimable: size,
    })
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    format!("{}%", part * 100 / whole)
}

/// `rbk system df`
pub fn df(root: &Path, _a: &DfArgs) -> Result<i32> {
    let store = crate::existing_store(root);
    let images = match &store {
        Some(s) => s.list().context("cannot list images")?,
        None => Vec::new(),
    };
    let used = store
        .as_ref()
        .map(|s| images_in_use(s, root))
        .unwrap_or_default();
    let mut rows = vec![
        image_row(&images, &used),
        container_row(root),
        volume_row(root),
    ];
    if let Some(s) = &store {
        rows.push(cache_row(s, &images)?);
    }
    println!(
        "{:<16}{:<10}{:<10}{:<10}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    );
    for r in rows {
        let reclaim = match r.kind {
            "Build Cache" => human_size(r.reclaimable),
            _ => format!(
                "{} ({})",
                human_size(r.reclaimable),
                percent(r.reclaimable, r.size)
            ),
        };
        println!(
            "{:<16}{:<10}{:<10}{:<10}{reclaim}",
            r.kind,
            r.total,
            r.active,
            human_size(r.size)
        );
    }
    Ok(0)
}

/// The warning `system prune` asks about, as Docker words it.
fn warning(a: &PruneArgs) -> String {
    let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n");
    if a.volumes {
        w.push_str("  - all volumes not used by at least one container\n");
    }
    w.push_str(if a.all {
        "  - all images without at least one container associated to them\n"
    } else {
        "  - all dangling images\n"
    });
    w.push_str("  - all build cache\n");
    w
}

/// `rbk system prune`
pub fn prune(root: &Path, a: &PruneArgs) -> Result<i32> {
    if !a.force && !crate::prompt::confirm(&warning(a)) {
        return Ok(0);
    }
    let mut reclaimed = prune_containers(root)?;
    if let Some(store) = crate::existing_store(root) {
        let untagged = if a.all {
            untag_unused(&store, root)?
        } else {
            Vec::new()
        };
        let report = store
            .prune(PruneOptions { cache: true })
            .context("cannot prune the store")?;
        if !report.images.is_empty() || !untagged.is_empty() {
            println!("Deleted Images:");
            for name in &untagged {
                println!("untagged: {name}");
            }
            for d in &report.images {
                println!("deleted: {d}");
            }
            println!();
        }
        if report.cache_records > 0 {
            println!("Deleted build cache records: {}\n", report.cache_records);
        }
        reclaimed += report.reclaimed;
    }
    if a.volumes {
        reclaimed += crate::cmd_volume::prune_unused(root)?;
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// Removes the records of stopped containers; returns the bytes freed.
fn prune_containers(root: &Path) -> Result<u64> {
    let mut freed = 0;
    let mut any = false;
    for s in container::list(root) {
        if container::running(root, &s.id) {
            continue;
        }
        freed += container::disk_usage(&container::path(root, &s.id));
        freed += layer_size(root, &s.id);
        container::state::remove(root, crate::snapshotter(root)?.as_ref(), &s.id)?;
        if !any {
            println!("Deleted Containers:");
            any = true;
        }
        println!("{}", s.id);
    }
    if any {
        println!();
    }
    Ok(freed)
}

/// `-a`: untags every image no container on record uses (the prune after
/// deletes them); returns the names untagged.
fn untag_unused(store: &Store, root: &Path) -> Result<Vec<String>> {
    let used = images_in_use(store, root);
    let mut untagged = Vec::new();
    for image in store.list().context("cannot list images")? {
        if used.contains(&image.id) {
            continue;
        }
        for tag in &image.tags {
            let name = tag.to_string();
            store
                .remove(&name, false)
                .with_context(|| format!("cannot untag {name}"))?;
            untagged.push(name);
        }
    }
    Ok(untagged)
}
