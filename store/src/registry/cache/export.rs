//! `--cache-to type=registry`: each record pushed as its own small artifact
//! (see [`super::records`]), only those the registry lacks, in parallel;
//! then the index the cache ref names.

use super::records::{self, record_tag, IndexEntry};
use super::CacheEntry;
use crate::cache::CacheRecord;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::Store;
use crate::oci::{now_rfc3339, Descriptor, MEDIA_TYPE_OCI_MANIFEST};
use crate::reference::Reference;
use crate::registry::{for_each_parallel, Client, Progress, RegistryError};

/// What [`export`] or [`super::export_local`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The digest of the index manifest the cache ref now names.
    pub digest: Digest,
    /// Records exported.
    pub records: usize,
    /// Distinct layers those records have.
    pub layers: usize,
    /// Records written (the registry or directory lacked them).
    pub pushed: usize,
    /// Records already there, left as they were.
    pub skipped: usize,
}

/// Pushes `records` (whose layers must be in `store`) to the cache `dest`:
/// each record as the artifact tagged `record_tag` in `dest`'s
/// repository, unless the registry has it already (one `GET` of its small
/// manifest first; a record older than an hour is dated anew), its layer
/// only when missing (or mounted from another repository of the registry);
/// then the index of this export at `dest` itself. Records other builders
/// exported to `dest` stay: no tag another export wrote is written over,
/// except by a record of the same key. `remote_layer` maps a stored layer
/// to the blob to push (e.g. a gzip variant of an uncompressed layer); that
/// blob must be in `store` too.
pub fn export(
    client: &Client,
    store: &Store,
    dest: &Reference,
    records: &[CacheRecord],
    remote_layer: &(dyn Fn(&Descriptor) -> Result<Descriptor, StoreError> + Sync),
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<ExportReport, RegistryError> {
    let entries = entries_of(records, remote_layer)?;
    let (tagged, pushed) = push_records(client, store, dest, &entries, false, progress)?;

    let listed = tagged
        .iter()
        .map(|(i, at)| IndexEntry {
            key: entries[*i].record.key.clone(),
            tag: at.tag().unwrap_or_default().to_string(),
        })
        .collect();
    let digest = put_index(client, store, dest, listed, progress)?;
    let mut layers: Vec<&Digest> = entries
        .iter()
        .filter_map(|e| e.remote.as_ref().map(|d| &d.digest))
        .collect();
    layers.sort();
    layers.dedup();
    Ok(ExportReport {
        digest,
        records: entries.len(),
        layers: layers.len(),
        pushed,
        skipped: entries.len() - pushed,
    })
}

/// `records` as entries with the blobs to push, sorted by key, each once.
fn entries_of(
    records: &[CacheRecord],
    remote_layer: &(dyn Fn(&Descriptor) -> Result<Descriptor, StoreError> + Sync),
) -> Result<Vec<CacheEntry>, StoreError> {
    let mut entries: Vec<CacheEntry> = Vec::with_capacity(records.len());
    for r in records {
        let remote = r.layer.as_ref().map(remote_layer).transpose()?;
        entries.push(CacheEntry {
            record: r.clone(),
            remote,
        });
    }
    entries.sort_by(|a, b| a.record.key.cmp(&b.record.key));
    entries.dedup_by(|a, b| a.record.key == b.record.key);
    Ok(entries)
}

/// Pushes `records` next to the cache `dest` as [`export`] does, without
/// its index: while a build runs, so that other builders sharing the cache
/// find them at once (the build's export at its end writes the index).
/// Returns how many were pushed.
pub fn publish(
    client: &Client,
    store: &Store,
    dest: &Reference,
    records: &[CacheRecord],
    remote_layer: &(dyn Fn(&Descriptor) -> Result<Descriptor, StoreError> + Sync),
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<usize, RegistryError> {
    let entries = entries_of(records, remote_layer)?;
    Ok(push_records(client, store, dest, &entries, false, progress)?.1)
}

/// Pushes those of `entries` the registry lacks (all with `always`), as
/// artifacts tagged by key next to `dest`: their tagged references, in the
/// order of `entries`, and how many were pushed.
fn push_records(
    client: &Client,
    store: &Store,
    dest: &Reference,
    entries: &[CacheEntry],
    always: bool,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<(Vec<(usize, Reference)>, usize), RegistryError> {
    let cache_tag = dest.tag().unwrap_or(crate::reference::DEFAULT_TAG);
    let workers = client.options().parallel.max(1) * 2;

    // Which records the registry lacks: one HEAD each.
    let tagged: Vec<(usize, Reference)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| Ok((i, dest.with_tag(&record_tag(cache_tag, &e.record.key))?)))
        .collect::<Result<_, StoreError>>()?;
    let lacking: Vec<(usize, bool)> = for_each_parallel(&tagged, workers, |(i, at)| {
        Ok((*i, always || lacks(client, at, progress)?))
    })?;
    let mut missing: Vec<(Reference, Vec<u8>)> = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    let created = now_rfc3339();
    for (i, _) in lacking.iter().filter(|(_, lacks)| *lacks) {
        let (e, at) = (&entries[*i], &tagged[*i].1);
        let artifact = records::record_artifact(e, e.remote.as_ref(), &created)?;
        store.content.put(&artifact.config_bytes)?;
        blobs.extend(e.remote.iter().cloned());
        blobs.push(artifact.config);
        missing.push((at.clone(), artifact.manifest));
    }
    // Their layers and configs (HEAD first, mounted or uploaded), then
    // their manifests.
    client.push_blobs(store, dest, &blobs, progress)?;
    for_each_parallel(&missing, workers, |(at, manifest)| {
        client.put_manifest(at, MEDIA_TYPE_OCI_MANIFEST, manifest, progress)
    })?;

    Ok((tagged, missing.len()))
}

/// Pushes the cache mount records `records` (their layers in `store`,
/// already gzip) next to `dest`, each replacing the one there: a cache
/// mount changes with every build. Returns how many were pushed.
pub fn export_mounts(
    client: &Client,
    store: &Store,
    dest: &Reference,
    records: &[CacheRecord],
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<usize, RegistryError> {
    let entries: Vec<CacheEntry> = records
        .iter()
        .map(|r| CacheEntry {
            record: r.clone(),
            remote: r.layer.clone(),
        })
        .collect();
    Ok(push_records(client, store, dest, &entries, true, progress)?.1)
}

/// A record older than this is pushed again when exported again, so its
/// date (what `prune --keep-duration` goes by) says when it was last
/// exported, within this much, at the cost of one small manifest an hour at
/// most per record.
const REFRESH: time::Duration = time::Duration::hours(1);

/// Whether the record tagged `at` must be pushed: the registry lacks it,
/// or it is older than [`REFRESH`] (or undated).
fn lacks(
    client: &Client,
    at: &Reference,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<bool, RegistryError> {
    let bytes = match client.get_manifest(at, progress) {
        Ok((bytes, _, _)) => bytes,
        Err(RegistryError::NotFound { .. }) => return Ok(true),
        Err(e) => return Err(e),
    };
    let created = records::parse_manifest(&bytes)
        .ok()
        .and_then(|m| m.annotations.get(records::ANNOTATION_CREATED).cloned())
        .and_then(|c| {
            time::OffsetDateTime::parse(&c, &time::format_description::well_known::Rfc3339).ok()
        });
    Ok(created.is_none_or(|c| time::OffsetDateTime::now_utc() - c > REFRESH))
}

/// Pushes the index of this export's records under `dest`.
fn put_index(
    client: &Client,
    store: &Store,
    dest: &Reference,
    listed: Vec<IndexEntry>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Digest, RegistryError> {
    let (config, manifest) = records::index_artifact(listed, |b| store.content.put(b))?;
    client.push_blobs(store, dest, std::slice::from_ref(&config), progress)?;
    client.put_manifest(dest, MEDIA_TYPE_OCI_MANIFEST, &manifest, progress)
}
