//! Verifying a store (`rbk system check`) and repairing it (`--repair`).
//!
//! What is checked: every blob hashes to its name; `index.json` parses and
//! every image it lists has its manifest, config and layers, all sound;
//! every cache record parses; every snapshot is complete (its metadata
//! names it, its tree is there, its parent exists). Also found: what dead
//! processes left (staging files, active snapshots, mounts, lease and lock
//! files) and what nothing reaches any more (blobs and snapshots no image,
//! cache record or live lease holds).
//!
//! Damage and leftovers are problems; unreachable content is not (it is
//! what `prune` collects). Repair removes all three, under the exclusive
//! store lock, and never touches what a running process holds in its lease.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::images::Store;
use crate::lease::live_leases;
use crate::leftovers::{dead_owner, kept_container_chains};
use crate::lock::LockMode;
use crate::mount;
use crate::oci::{chain_ids, ImageConfig, Index, Manifest};
use crate::snapshot::{self, fsck, SnapshotHealth, SnapshotState};

pub use crate::leftovers::dead_step_mount;

/// How to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Remove what is damaged, left over or unreachable.
    pub repair: bool,
    /// Skip hashing every blob (structure only).
    pub quick: bool,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Content or metadata is wrong or missing.
    Damaged,
    /// A process that is gone left it behind.
    Leftover,
    /// Sound, but nothing uses it (what `prune` removes).
    Unreachable,
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious.
    pub severity: Severity,
    /// What (a blob, an image, a path under the store).
    pub subject: String,
    /// What is wrong with it.
    pub problem: String,
    /// Whether `--repair` removed it.
    pub repaired: bool,
}

/// What a check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Blobs seen.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Blobs whose content was hashed.
    pub blobs_verified: usize,
    /// Index entries (tags and dangling images).
    pub images: usize,
    /// Cache records.
    pub cache_records: usize,
    /// Snapshot directories.
    pub snapshots: usize,
    /// Everything found, damage first.
    pub findings: Vec<Finding>,
    /// Images some of whose layers are kept where a build cache holds
    /// them, fetched when something reads them (sound, not damage).
    pub remote: Vec<RemoteLayers>,
}

/// An image's layers kept in a registry (or a cache directory) and not
/// fetched yet (see [`crate::content::remote`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteLayers {
    /// The image, by name (or digest when it has none).
    pub image: String,
    /// Those layers, in the image's order.
    pub layers: Vec<Digest>,
    /// Where they come from (each place once).
    pub from: Vec<String>,
}

impl CheckReport {
    /// Damage and leftovers not repaired: a non-zero exit.
    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity != Severity::Unreachable && !f.repaired)
            .count()
    }

    fn add(&mut self, severity: Severity, subject: impl Into<String>, problem: impl Into<String>) {
        self.findings.push(Finding {
            severity,
            subject: subject.into(),
            problem: problem.into(),
            repaired: false,
        });
    }
}

/// Checks the store at `store.root()` (snapshots under `snapshots/`) and,
/// with `opts.repair`, repairs it.
pub fn check(store: &Store, opts: CheckOptions) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    // Hashing is the slow part: done first, without holding the lock.
    let corrupt = blob_pass(store, opts, &mut report)?;
    let mode = if opts.repair {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    };
    let _guard = store.lock(mode)?;
    let mut reach = Reach::default();
    check_index(store, &corrupt, &mut reach, &mut report, opts.repair)?;
    check_cache(store, &mut reach, &mut report, opts.repair)?;
    // Listed before the leases are read (see crate::lease).
    let blobs = store.content.list()?;
    let snaps = fsck(&store.layout().snapshots()).map_err(|e| StoreError::Io {
        op: "check snapshots in",
        path: store.layout().snapshots(),
        source: io::Error::other(e),
    })?;
    let own = store.content.lease().path();
    let leases = live_leases(store.root(), own.as_deref(), opts.repair)?;
    for dead in &leases.dead {
        report.add(
            Severity::Leftover,
            rel(store, dead),
            "lease of a process that is gone",
        );
        mark_repaired(&mut report, opts.repair);
    }
    reach.blobs.extend(leases.blobs);
    reach.snapshots.extend(leases.snapshots);
    reach.snapshots.extend(kept_container_chains(store.root()));
    check_mounts(store, &mut report, opts.repair);
    check_snapshots(store, &snaps, &reach, &mut report, opts.repair)?;
    check_staging(store, &mut report, opts.repair)?;
    check_locks(store, &mut report, opts.repair)?;
    for d in blobs {
        if !reach.blobs.contains(&d) && !corrupt.contains(&d) {
            report.add(
                Severity::Unreachable,
                d.to_string(),
                "blob that no image, cache record or running process uses",
            );
            if opts.repair {
                store.content.delete(&d)?;
                mark_repaired(&mut report, true);
            }
        }
    }
    if opts.repair {
        store.sweep_variant_records();
    }
    report
        .findings
        .sort_by(|a, b| (a.severity, &a.subject).cmp(&(b.severity, &b.subject)));
    Ok(report)
}

fn mark_repaired(report: &mut CheckReport, repaired: bool) {
    if let Some(f) = report.findings.last_mut() {
        f.repaired = repaired;
    }
}

fn rel(store: &Store, p: &Path) -> String {
    p.strip_prefix(store.root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// What the index, the cache and the leases reach.
#[derive(Default)]
struct Reach {
    blobs: HashSet<Digest>,
    snapshots: HashSet<String>,
}

/// Lists `blobs/sha256/`, flags names that are no digest, and hashes every
/// blob (in parallel) unless `quick`. Returns the corrupt ones.
fn blob_pass(
    store: &Store,
    opts: CheckOptions,
    report: &mut CheckReport,
) -> Result<BTreeSet<Digest>, StoreError> {
    let dir = store.layout().blobs();
    let mut blobs = Vec::new();
    for entry in fs::read_dir(&dir).at("list", &dir)? {
        let entry = entry.at("list", &dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match Digest::from_hex(&name) {
            Ok(d) => blobs.push(d),
            Err(_) => {
                report.add(
                    Severity::Damaged,
                    rel(store, &entry.path()),
                    "not a blob (its name is no sha256 digest)",
                );
                if opts.repair {
                    let path = entry.path();
                    let res = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    res.at("delete", &path)?;
                    mark_repaired(report, true);
                }
            }
        }
    }
    report.blobs = blobs.len();
    report.blob_bytes = blobs
        .iter()
        .filter_map(|d| store.content.size(d).ok())
        .sum();
    if opts.quick {
        return Ok(BTreeSet::new());
    }
    let results: Vec<(Digest, Option<String>)> = blobs
        .par_iter()
        .filter_map(|d| {
            let mut r = match store.content.open_blob(d) {
                Ok(r) => r,
                // Deleted meanwhile by a prune: not damage.
                Err(StoreError::BlobMissing { .. }) => return None,
                Err(e) => return Some((d.clone(), Some(e.to_string()))),
            };
            match io::copy(&mut r, &mut io::sink()) {
                Ok(_) => Some((d.clone(), None)),
                Err(e) => Some((
                    d.clone(),
                    Some(StoreError::from_io("read", &store.content.path(d), e).to_string()),
                )),
            }
        })
        .collect();
    let mut corrupt = BTreeSet::new();
    for (d, err) in results {
        report.blobs_verified += 1;
        if let Some(why) = err {
            report.add(Severity::Damaged, d.to_string(), why);
            if opts.repair {
                store.content.delete(&d)?;
                mark_repaired(report, true);
            }
            corrupt.insert(d);
        }
    }
    Ok(corrupt)
}

/// Checks every index entry's manifest, config and layers; broken entries
/// are dropped from the index by a repair (their blobs are gone or bad).
fn check_index(
    store: &Store,
    corrupt: &BTreeSet<Digest>,
    reach: &mut Reach,
    report: &mut CheckReport,
    repair: bool,
) -> Result<(), StoreError> {
    let mut index = match store.read_index() {
        Ok(i) => i,
        Err(e) => {
            report.add(
                Severity::Damaged,
                "index.json",
                format!("{e}: no image can be found"),
            );
            if repair {
                let path = store.layout().index();
                let mut aside = path.clone().into_os_string();
                aside.push(format!(".damaged-{}", std::process::id()));
                let aside = PathBuf::from(aside);
                fs::rename(&path, &aside).at("move aside", &path)?;
                if let Some(f) = report.findings.last_mut() {
                    f.problem
                        .push_str(&format!(" (moved to {})", rel(store, &aside)));
                    f.repaired = true;
                }
            }
            return Ok(());
        }
    };
    report.images = index.manifests.len();
    let mut broken: HashSet<Digest> = HashSet::new();
    for desc in &index.manifests {
        let name = desc
            .ref_name()
            .map_or_else(|| desc.digest.to_string(), str::to_string);
        match image_problem(store, &desc.digest, corrupt, reach) {
            Ok(()) => report
                .remote
                .extend(remote_layers(store, &name, &desc.digest)),
            Err(why) => {
                report.add(Severity::Damaged, format!("image {name}"), describe(&why));
                mark_repaired(report, repair);
                broken.insert(desc.digest.clone());
            }
        }
    }
    if repair && !broken.is_empty() {
        index.manifests.retain(|d| !broken.contains(&d.digest));
        store.write_index(&index)?;
    }
    Ok(())
}

/// The layers of the image `digest` (each platform's, for an index) kept
/// where a build cache holds them.
fn remote_layers(store: &Store, name: &str, digest: &Digest) -> Option<RemoteLayers> {
    let mut layers: Vec<Digest> = Vec::new();
    let mut from: Vec<String> = Vec::new();
    let mut todo = vec![digest.clone()];
    while let Some(d) = todo.pop() {
        let Ok(bytes) = store.content.read(&d) else {
            continue;
        };
        if Store::is_index_document(&bytes) {
            if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
                todo.extend(
                    index
                        .manifests
                        .into_iter()
                        .map(|m| m.digest)
                        .filter(|m| store.content.has_local(m)),
                );
            }
            continue;
        }
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        for l in manifest.layers {
            let Some(src) = crate::content::remote::source(&store.content, &l.digest) else {
                continue;
            };
            let place = src.place.to_string();
            if !from.contains(&place) {
                from.push(place);
            }
            if !layers.contains(&l.digest) {
                layers.push(l.digest);
            }
        }
    }
    (!layers.is_empty()).then(|| RemoteLayers {
        image: name.to_string(),
        layers,
        from,
    })
}

/// What can be wrong with an image.
#[derive(Debug, thiserror::Error)]
enum ImageProblem {
    #[error("its {what} {digest} is corrupt")]
    Corrupt { what: &'static str, digest: Digest },
    #[error("its {what} {digest} is missing")]
    Missing { what: &'static str, digest: Digest },
    #[error("cannot read its {what} {digest}")]
    Unreadable {
        what: &'static str,
        digest: Digest,
        #[source]
        source: StoreError,
    },
    #[error("its {what} {digest} is invalid")]
    Invalid {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("none of the images of its index {digest} is in the store")]
    NoPlatform { digest: Digest },
    #[error("its config lists {config} layers but its manifest {manifest}")]
    LayerCount { config: usize, manifest: usize },
}

/// The text of `p` with its causes, for the report.
fn describe(p: &ImageProblem) -> String {
    let mut text = p.to_string();
    let mut cause = std::error::Error::source(p);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// What is wrong with the image whose manifest is `digest`, if anything;
/// what it reaches is added to `reach`.
fn image_problem(
    store: &Store,
    digest: &Digest,
    corrupt: &BTreeSet<Digest>,
    reach: &mut Reach,
) -> Result<(), ImageProblem> {
    let sound = |d: &Digest, what: &'static str| -> Result<(), ImageProblem> {
        let digest = d.clone();
        if corrupt.contains(d) {
            Err(ImageProblem::Corrupt { what, digest })
        } else if !store.content.has(d) {
            Err(ImageProblem::Missing { what, digest })
        } else {
            Ok(())
        }
    };
    let read = |d: &Digest, what: &'static str| -> Result<Vec<u8>, ImageProblem> {
        store
            .content
            .read(d)
            .map_err(|source| ImageProblem::Unreadable {
                what,
                digest: d.clone(),
                source,
            })
    };
    let invalid = |d: &Digest, what: &'static str| {
        let digest = d.clone();
        move |source| ImageProblem::Invalid {
            what,
            digest,
            source,
        }
    };
    sound(digest, "manifest")?;
    reach.blobs.insert(digest.clone());
    let bytes = read(digest, "manifest")?;
    if Store::is_index_document(&bytes) {
        // A multi-platform index: each platform's image that is here must
        // be whole, and at least one must be here.
        let index: Index = serde_json::from_slice(&bytes).map_err(invalid(digest, "index"))?;
        let mut present = 0;
        for d in &index.manifests {
            if store.content.has(&d.digest) || corrupt.contains(&d.digest) {
                image_problem(store, &d.digest, corrupt, reach)?;
                present += 1;
            }
        }
        if present == 0 {
            return Err(ImageProblem::NoPlatform {
                digest: digest.clone(),
            });
        }
        return Ok(());
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(invalid(digest, "manifest"))?;
    reach.blobs.insert(manifest.config.digest.clone());
    reach
        .blobs
        .extend(manifest.layers.iter().map(|l| l.digest.clone()));
    let config_digest = &manifest.config.digest;
    sound(config_digest, "config")?;
    let config: ImageConfig = serde_json::from_slice(&read(config_digest, "config")?)
        .map_err(invalid(config_digest, "config"))?;
    for l in &manifest.layers {
        sound(&l.digest, "layer")?;
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageProblem::LayerCount {
            config: config.rootfs.diff_ids.len(),
            manifest: manifest.layers.len(),
        });
    }
    reach.snapshots.extend(
        chain_ids(&config.rootfs.diff_ids)
            .iter()
            .map(|c| c.hex().to_string()),
    );
    Ok(())
}

/// Checks the cache records (each parses and is filed under its own key);
/// a repair deletes the bad ones.
fn check_cache(
    store: &Store,
    reach: &mut Reach,
    report: &mut CheckReport,
    repair: bool,
) -> Result<(), StoreError> {
    let (records, bad) = store.cache.scan()?;
    report.cache_records = records.len() + bad.len();
    for (path, why) in bad {
        report.add(
            Severity::Damaged,
            rel(store, &path),
            format!("cache record: {why}"),
        );
        if repair {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at("delete", &path),
            }
            mark_repaired(report, true);
        }
    }
    for rec in records {
        reach.blobs.extend(rec.layer.map(|l| l.digest));
        reach
            .snapshots
            .extend(rec.chain_id.map(|c| c.hex().to_string()));
    }
    Ok(())
}

/// Mounts under `tmp/` whose step's process is gone.
fn check_mounts(store: &Store, report: &mut CheckReport, repair: bool) {
    let tmp = store.layout().tmp();
    let Ok(points) = mount::mounts_under(&tmp) else {
        return;
    };
    for point in points {
        let name = point.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if point.parent() == Some(tmp.as_path()) && dead_step_mount(store.root(), name).is_some() {
            report.add(
                Severity::Leftover,
                rel(store, &point),
                "mount of a build step whose process is gone",
            );
            if repair && mount::unmount(&point).is_ok() {
                let _ = fs::remove_dir(&point);
                mark_repaired(report, true);
            }
        }
    }
}

/// Broken snapshots, active ones of dead processes, and committed ones
/// nothing reaches.
fn check_snapshots(
    store: &Store,
    snaps: &[(String, SnapshotHealth)],
    reach: &Reach,
    report: &mut CheckReport,
    repair: bool,
) -> Result<(), StoreError> {
    report.snapshots = snaps.len();
    let mut doomed: Vec<Doomed> = snaps
        .iter()
        .filter_map(|(key, health)| snapshot_problem(store, key, health, reach))
        .collect();
    if repair {
        doomed.extend(orphans(snaps, reach, &doomed));
    }
    // Children before parents.
    for (key, severity, problem) in doomed.into_iter().rev() {
        report.add(severity, format!("snapshots/{key}"), problem);
        if repair {
            let layout = store.layout();
            snapshot::discard_dir(&layout.snapshots(), &layout.snapshot(&key))?;
            mark_repaired(report, true);
        }
    }
    Ok(())
}

/// A snapshot to report (and remove on repair): its key, how bad, why.
type Doomed = (String, Severity, String);

/// What is wrong with one snapshot, if anything.
fn snapshot_problem(
    store: &Store,
    key: &str,
    health: &SnapshotHealth,
    reach: &Reach,
) -> Option<Doomed> {
    let chain = format!("sha256:{key}").parse::<Digest>().is_ok();
    let (severity, problem) = match health {
        SnapshotHealth::Broken(why) if dead_owner(store.root(), key) => (
            Severity::Leftover,
            format!("snapshot of a process that is gone ({why})"),
        ),
        SnapshotHealth::Broken(why) => (Severity::Damaged, format!("snapshot: {why}")),
        SnapshotHealth::Sound { state, .. }
            if *state != SnapshotState::Committed && dead_owner(store.root(), key) =>
        {
            (
                Severity::Leftover,
                "snapshot of a step whose process is gone".into(),
            )
        }
        SnapshotHealth::Sound {
            state: SnapshotState::Committed,
            ..
        } if chain && !reach.snapshots.contains(key) => (
            Severity::Unreachable,
            "snapshot that no image, cache record or running process uses".into(),
        ),
        SnapshotHealth::Sound { .. } => return None,
    };
    Some((key.to_string(), severity, problem))
}

/// The snapshots a repair must also take because they stand on one it
/// removes (transitively), parents first.
fn orphans(snaps: &[(String, SnapshotHealth)], reach: &Reach, doomed: &[Doomed]) -> Vec<Doomed> {
    let mut gone: HashSet<String> = doomed.iter().map(|d| d.0.clone()).collect();
    let mut out = Vec::new();
    loop {
        let more: Vec<String> = snaps
            .iter()
            .filter(|(k, h)| {
                !gone.contains(k)
                    && matches!(h, SnapshotHealth::Sound { parent: Some(p), .. } if gone.contains(p))
            })
            .map(|(k, _)| k.clone())
            .collect();
        if more.is_empty() {
            return out;
        }
        for k in more {
            if reach.snapshots.contains(&k) {
                // Needed, but its parent is broken: it must go too and is
                // unpacked again from its layer when used.
                out.push((
                    k.clone(),
                    Severity::Damaged,
                    "snapshot whose parent is broken".into(),
                ));
            } else {
                out.push((
                    k.clone(),
                    Severity::Unreachable,
                    "snapshot on a removed parent".into(),
                ));
            }
            gone.insert(k);
        }
    }
}

/// Staging files: `tmp/` (all of it when no other process has the store
/// open, else only what names a dead process) and `snapshots/.tmp`.
fn check_staging(store: &Store, report: &mut CheckReport, repair: bool) -> Result<(), StoreError> {
    let alone = !store.content.others_active();
    let mounted: HashSet<PathBuf> = mount::mounts_under(store.root())
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (dir, all) in [
        (store.layout().tmp(), alone),
        (snapshot::staging_of(&store.layout().snapshots()), false),
    ] {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if mounted.contains(&path) || !(all || dead_owner(store.root(), &name)) {
                continue;
            }
            report.add(
                Severity::Leftover,
                rel(store, &path),
                "staging file of a process that is gone",
            );
            if repair {
                // A process killed while it had something mounted there (the
                // overlay probe, a step's rootfs) left the mount: its owner
                // is gone, so detach it, deepest first, then delete.
                let mut inside: Vec<&PathBuf> =
                    mounted.iter().filter(|m| m.starts_with(&path)).collect();
                inside.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
                for m in inside {
                    let _ = mount::unmount(m);
                }
                let res = if path.is_dir() && !path.is_symlink() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match res {
                    Ok(()) => mark_repaired(report, true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => mark_repaired(report, true),
                    Err(e) => return Err(e).at("delete", &path),
                }
            }
        }
    }
    Ok(())
}

/// Lock files under `locks/` that nobody holds: their holder died.
fn check_locks(store: &Store, report: &mut CheckReport, repair: bool) -> Result<(), StoreError> {
    for path in crate::lock::stale_key_locks(&store.layout().locks(), repair)? {
        report.add(
            Severity::Leftover,
            rel(store, &path),
            "lock of a process that is gone",
        );
        mark_repaired(report, repair);
    }
    Ok(())
}
