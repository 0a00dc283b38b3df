//! The real backend: rbk-store's content store, image index, snapshotter,
//! cache index and registry caches behind the scheduler's traits ([`Images`]
//! for [`Store`] itself; [`Layers`] and [`StepCache`] for [`StoreBackend`]).
//! This is the only module of the scheduler that knows the store's types
//! and its layout on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rbk_store::cache::{BuildCache, CacheRecord};
use rbk_store::compress::Compression;
use rbk_store::images::Store;
use rbk_store::lock::KeyLock;
use rbk_store::oci::{Descriptor, ImageConfig as OciConfig};
use rbk_store::reference::Reference;
use rbk_store::registry::cache::{self as registry_cache, CacheEntry, RemoteCache};
use rbk_store::snapshot::Snapshotter;
use rbk_store::unpack::{unpack_layers, LayerRef};
use rbk_store::workspace::{self as store_ws, CommitOptions, PrepareOptions, WorkspaceError};
use rbk_store::Digest;

use super::{
    BackendError, BaseImage, CommittedImage, Images, Layer, Layers, Lookup, Mounted, StepCache,
    StepGuard, WorkDirs, Workspace,
};
use crate::shared_cache::{CacheDest, CacheExport, ExportedCache, MountExport};
use rbk_runtime::cancel::CancelToken;

/// rbk-store behind the scheduler's traits, with the build's registry
/// caches (`--cache-from`, `--cache-to`) and layer compression.
pub struct StoreBackend<'a> {
    store: &'a Store,
    snapshotter: &'a dyn Snapshotter,
    compression: Compression,
    clamp_mtime: Option<i64>,
    cache_from: Vec<Arc<RemoteCache>>,
    cache_to: Vec<CacheExport>,
    remote: RemoteHits,
}

impl<'a> StoreBackend<'a> {
    /// The backend of `store` with `snapshotter`. Undoes what a killed
    /// rbk left of its running steps first (see [`sweep_dead_steps`]).
    pub fn new(store: &'a Store, snapshotter: &'a dyn Snapshotter) -> Self {
        sweep_dead_steps(store.root(), snapshotter);
        StoreBackend {
            store,
            snapshotter,
            compression: Compression::None,
            clamp_mtime: None,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            remote: RemoteHits::default(),
        }
    }

    /// New layers' files get mtimes no later than `epoch` (Unix seconds,
    /// `SOURCE_DATE_EPOCH`), as BuildKit's rewrite-timestamp does, so the
    /// same inputs give the same layers whenever and wherever they are built.
    pub fn with_clamped_mtimes(mut self, epoch: Option<i64>) -> Self {
        self.clamp_mtime = epoch;
        self
    }

    /// Layers are committed with `compression`.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Registry caches consulted after the store's own (`--cache-from`).
    pub fn with_cache_from(mut self, caches: Vec<Arc<RemoteCache>>) -> Self {
        self.cache_from = caches;
        self
    }

    /// Registry caches written after the build (`--cache-to`).
    pub fn with_cache_to(mut self, exports: Vec<CacheExport>) -> Self {
        self.cache_to = exports;
        self
    }

    /// The store's directories a build may use.
    pub fn work_dirs(&self) -> WorkDirs {
        let root = self.store.root();
        WorkDirs {
            tmp: rbk_store::Layout::new(root).tmp(),
            cache_mounts: rbk_store::Layout::new(root).cache_mounts(),
            stat_caches: root.join("cache").join("stat"),
        }
    }
}

/// The store's images: resolved leased, committed with their manifest.
impl Images for Store {
    fn resolve(&self, name: &str, platform: &str) -> Result<BaseImage, BackendError> {
        let want: Option<rbk_store::oci::PlatformSpec> = platform.parse().ok();
        let img = self.resolve_leased_for(name, want.as_ref())?;
        let layers = img
            .manifest
            .layers
            .iter()
            .zip(&img.config.rootfs.diff_ids)
            .map(|(blob, diff_id)| Layer {
                blob: blob.clone(),
                diff_id: diff_id.clone(),
            })
            .collect();
        Ok(BaseImage {
            id: img.id,
            layers,
            config: img.config,
        })
    }

    fn commit(
        &self,
        config: &OciConfig,
        layers: &[Descriptor],
        tags: &[Reference],
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<CommittedImage, BackendError> {
        let image = self.commit_annotated_image(config, layers, tags, annotations)?;
        Ok(CommittedImage {
            id: image.id,
            manifest: image.manifest_digest,
        })
    }
}

impl Layers for StoreBackend<'_> {
    fn unpack(
        &self,
        layers: &[Layer],
        cancel: &CancelToken,
    ) -> Result<Option<String>, BackendError> {
        let refs: Vec<LayerRef<'_>> = layers
            .iter()
            .map(|l| LayerRef {
                blob: &l.blob,
                diff_id: &l.diff_id,
            })
            .collect();
        unpack_layers(
            self.store,
            self.snapshotter,
            &refs,
            |b| self.fetch(b),
            || cancel.is_cancelled(),
        )
    }

    fn prepare(&self, parent: Option<&str>) -> Result<Box<dyn Workspace + '_>, BackendError> {
        let key = rbk_store::snapshot::scratch_key(&unique().to_string());
        // A step's overlay is mounted once and never again (it is committed
        // or removed), so it is mounted `volatile` where the kernel can.
        let opts = PrepareOptions {
            volatile: true,
            ..PrepareOptions::default()
        };
        let ws =
            store_ws::Workspace::prepare(self.store.root(), self.snapshotter, &key, parent, opts)?;
        Ok(Box::new(StoreWorkspace { backend: self, ws }))
    }

    fn view(&self, parent: Option<&str>) -> Result<Box<dyn Mounted + '_>, BackendError> {
        let key = format!("view-{}-{}", std::process::id(), unique());
        let view = store_ws::Workspace::view(self.store.root(), self.snapshotter, &key, parent)?;
        Ok(Box::new(StoreView(view)))
    }

    fn fetch(&self, layer: &Descriptor) -> Result<(), BackendError> {
        self.remote.materialize(self.store, &layer.digest)
    }
}

impl StepCache for StoreBackend<'_> {
    fn lookup(&self, key: &str) -> Lookup {
        let recorded = self.store.cache.get(key).is_some();
        if let Some(rec) = self.local_hit(key) {
            return Lookup {
                hit: Some(rec),
                recorded: true,
            };
        }
        match self.remote.lookup(&self.cache_from, key) {
            Some(rec) => {
                // Kept locally, so `--explain`, a later `--cache-to` and a
                // build without `--cache-from` see it (its layer counts
                // once fetched).
                let _ = self.store.cache.put(&rec);
                Lookup {
                    hit: Some(rec),
                    recorded: true,
                }
            }
            None => Lookup {
                hit: None,
                recorded,
            },
        }
    }

    fn put(&self, record: &CacheRecord) -> Result<(), BackendError> {
        Ok(self.store.cache.put(record)?)
    }

    fn poll(&self, key: &str) -> Result<Option<CacheRecord>, BackendError> {
        if let Some(rec) = self.local_hit(key) {
            return Ok(Some(rec));
        }
        for c in &self.cache_from {
            let found = c
                .ask_again(key)
                .map_err(|message| BackendError::Unreachable {
                    cache: c.source(),
                    message,
                })?;
            if let Some(entry) = found {
                self.remote.remember(c, &entry);
                let _ = self.store.cache.put(&entry.record);
                return Ok(Some(entry.record));
            }
        }
        Ok(None)
    }

    fn publish(&self, keys: &[&str]) -> Result<(), BackendError> {
        let records = self.shareable(keys.iter().map(|k| k.to_string()))?;
        for e in &self.cache_to {
            if let CacheDest::Registry { client, reference } = &e.dest {
                registry_cache::publish(
                    client,
                    self.store,
                    reference,
                    &records,
                    &|l| self.store.compressed_layer(l, Compression::Gzip),
                    &|_| {},
                )?;
            }
        }
        Ok(())
    }

    fn nearest(&self, family: &str, key: &str) -> Option<CacheRecord> {
        self.store.cache.nearest(family, key)
    }

    fn lock(
        &self,
        key: &str,
        on_wait: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<Option<StepGuard>, BackendError> {
        let dir = self.store.root().join("locks");
        let lock = KeyLock::acquire(&dir, &format!("step-{key}"), on_wait, || {
            cancel.is_cancelled()
        })?;
        Ok(lock.map(|l| StepGuard(Box::new(l))))
    }

    fn export(&self, keys: &super::ExportKeys<'_>) -> Result<Vec<ExportedCache>, BackendError> {
        let mut done = Vec::with_capacity(self.cache_to.len());
        for e in &self.cache_to {
            let records = self.shareable(keys(e.images.as_deref(), e.mode))?;
            let report = match &e.dest {
                CacheDest::Registry { client, reference } => registry_cache::export(
                    client,
                    self.store,
                    reference,
                    &records,
                    &|l| self.store.compressed_layer(l, Compression::Gzip),
                    &|_| {},
                )?,
                CacheDest::Local(dir) => registry_cache::export_local(self.store, dir, &records)?,
            };
            let (mounts, mounts_left) = match &e.mounts {
                Some(m) => self.export_mounts(&e.dest, m)?,
                None => (0, Vec::new()),
            };
            done.push(ExportedCache {
                reference: e.dest.to_string(),
                report,
                mounts,
                mounts_left,
            });
        }
        Ok(done)
    }
}

impl StoreBackend<'_> {
    /// Packs the cache mounts `m` names and exports them to `dest`: how
    /// many, and those left behind (too large), with why.
    fn export_mounts(
        &self,
        dest: &CacheDest,
        m: &MountExport,
    ) -> Result<(usize, Vec<String>), BackendError> {
        use rbk_store::registry::cache::mounts::{pack_mount, Unpacked};
        let dirs = self.work_dirs();
        let mut records = Vec::new();
        let mut left = Vec::new();
        for id in &m.ids {
            let dir = crate::shared_cache::cache_mount_dir(&dirs.cache_mounts, id);
            match pack_mount(self.store, id, &dir, m.max)? {
                Ok(rec) => records.push(rec),
                Err(Unpacked::Empty) => {}
                Err(Unpacked::TooLarge(n)) => left.push(format!(
                    "cache mount {id:?} takes {n} bytes, more than cache-mounts-max ({} bytes)",
                    m.max
                )),
            }
        }
        let n = match dest {
            CacheDest::Registry { client, reference } => {
                registry_cache::export_mounts(client, self.store, reference, &records, &|_| {})?
            }
            CacheDest::Local(dir) => {
                registry_cache::export_local_mounts(self.store, dir, &records)?
            }
        };
        Ok((n, left))
    }
}

/// A step's writable snapshot, mounted under `tmp/` (the store's
/// [`store_ws::Workspace`]).
struct StoreWorkspace<'b, 'a> {
    backend: &'b StoreBackend<'a>,
    ws: store_ws::Workspace<'a>,
}

impl Workspace for StoreWorkspace<'_, '_> {
    fn rootfs(&self) -> &Path {
        self.ws.rootfs()
    }

    fn commit(self: Box<Self>, below: &[Layer]) -> Result<Layer, BackendError> {
        let b = self.backend;
        let below: Vec<Digest> = below.iter().map(|l| l.diff_id.clone()).collect();
        let opts = CommitOptions {
            compression: b.compression,
            clamp_mtime: b.clamp_mtime,
        };
        let layer = self.ws.commit(b.store, &below, opts)?;
        Ok(Layer {
            blob: layer.blob,
            diff_id: layer.diff_id,
        })
    }
}

/// A read-only view, mounted under `tmp/`.
struct StoreView<'a>(store_ws::Workspace<'a>);

impl Mounted for StoreView<'_> {
    fn path(&self) -> &Path {
        self.0.rootfs()
    }
}

/// The store's workspace errors, folded into the backend's by their kind.
impl From<WorkspaceError> for BackendError {
    fn from(e: WorkspaceError) -> Self {
        match e {
            WorkspaceError::Unpack(e) => e.into(),
            WorkspaceError::Snapshot(e) => e.into(),
            WorkspaceError::Mount(e) => e.into(),
            WorkspaceError::Store(e) => e.into(),
            WorkspaceError::Io { op, path, source } => BackendError::Io { op, path, source },
        }
    }
}

impl StoreBackend<'_> {
    /// The store's own record of `key`, its layer and snapshot leased so no
    /// `prune` in another process removes them before this build uses them.
    fn local_hit(&self, key: &str) -> Option<CacheRecord> {
        self.store.cache.get(key).filter(|rec| {
            self.store
                .lease_cache_hit(rec.layer.as_ref().map(|l| &l.digest), rec.chain_id.as_ref())
                .unwrap_or(false)
        })
    }

    /// The records of `keys` that can be shared, their layers in the store
    /// (fetched when a `--cache-from` served them); a record whose layer
    /// was pruned since the build used it has nothing to share.
    fn shareable(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<Vec<CacheRecord>, BackendError> {
        let mut records = Vec::new();
        for key in keys {
            let Some(rec) = self.store.cache.get(&key) else {
                continue;
            };
            if let Some(l) = &rec.layer {
                self.fetch(l)?;
                if !self.store.content.has(&l.digest) {
                    continue;
                }
            }
            records.push(rec);
        }
        Ok(records)
    }
}

/// Hits served by `--cache-from` caches whose layers may not be local yet.
#[derive(Default)]
struct RemoteHits {
    /// Local layer digest → the cache that has it and its entry.
    layers: Mutex<HashMap<Digest, (Arc<RemoteCache>, CacheEntry)>>,
    /// One download at a time per layer.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

impl RemoteHits {
    /// The first of `caches` with a record for `key`, remembered so its
    /// layer can be fetched later.
    fn lookup(&self, caches: &[Arc<RemoteCache>], key: &str) -> Option<CacheRecord> {
        for c in caches {
            if let Some(entry) = c.get(key) {
                self.remember(c, &entry);
                return Some(entry.record);
            }
        }
        None
    }

    /// Remembers that `cache` serves `entry`'s layer.
    fn remember(&self, cache: &Arc<RemoteCache>, entry: &CacheEntry) {
        if let Some(layer) = &entry.record.layer {
            self.layers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(layer.digest.clone(), (cache.clone(), entry.clone()));
        }
    }

    /// Makes sure the blob `digest` is in `store`: a layer the cache that
    /// served it holds is recorded as remote, not downloaded (the store
    /// fetches it when something first reads it, see
    /// `rbk_store::content::remote`). A blob no cache served is left to the
    /// caller (it reports the missing blob when it reads it).
    fn materialize(&self, store: &Store, digest: &Digest) -> Result<(), BackendError> {
        if store.content.has(digest) {
            return Ok(());
        }
        let Some((cache, entry)) = self
            .layers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
        else {
            return Ok(());
        };
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.clone())
            .or_default()
            .clone();
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        cache.reference_layer(store, &entry)?;
        Ok(())
    }
}

/// Undoes what a killed rbk left of its running steps: the rootfs and view
/// mounts under `tmp/` (named after the dead process's pid) and their
/// snapshots, so they cannot pile up or trip a later sweep of `tmp/`.
fn sweep_dead_steps(root: &Path, snapshotter: &dyn Snapshotter) {
    let tmp = rbk_store::Layout::new(root).tmp();
    let Ok(points) = rbk_store::mount::mounts_under(&tmp) else {
        return;
    };
    for point in points {
        if point.parent() != Some(tmp.as_path()) {
            continue;
        }
        let Some(key) = point
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| rbk_store::check::dead_step_mount(root, n))
        else {
            continue;
        };
        if rbk_store::mount::unmount(&point).is_ok() {
            let _ = std::fs::remove_dir(&point);
            let _ = snapshotter.remove(&key);
        }
    }
}

/// A process-unique number for temporary snapshot and directory names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::SeqCst) << 48)
}
