//! Garbage collection: dangling images, and the blobs and snapshots that
//! no tagged image, cache record or running process needs.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::Store;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::lease::live_leases;
use crate::lock::LockMode;
use crate::oci::{chain_ids, ImageConfig, Index, Manifest};
use crate::snapshot;

/// What `prune` should consider garbage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Also drop every build cache record (and so what only they kept).
    pub cache: bool,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Dangling images dropped from the index.
    pub images: Vec<Digest>,
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Snapshots (chain ids) deleted.
    pub snapshots: Vec<Digest>,
    /// Cache records dropped.
    pub cache_records: usize,
    /// Bytes freed on disk.
    pub reclaimed: u64,
}

impl Store {
    /// Deletes what nothing needs: dangling images, blobs no tagged image
    /// or cache record reaches, and snapshots (`snapshots/<chain-id-hex>`)
    /// of no kept image or cache record. Only directories named by a chain
    /// id are considered, so snapshots in progress are left alone. Whatever
    /// a running process holds in its lease (a build's base, its cache hits,
    /// the layers it just made) is spared, and so are the dead processes'
    /// lease files swept. A snapshot is renamed out of the way before it is
    /// deleted, so an interrupted prune never leaves half of one behind.
    pub fn prune(&self, opts: PruneOptions) -> Result<PruneReport, StoreError> {
        let _guard = self.lock(LockMode::Exclusive)?;
        let mut report = PruneReport::default();
        if opts.cache {
            report.cache_records = self.cache.clear()?;
        }
        let mut index = self.read_index()?;
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_chains: HashSet<Digest> = HashSet::new();
        let mut dropped: Vec<Digest> = Vec::new();
        index.manifests.retain(|d| {
            let keep = d.ref_name().is_some();
            if !keep && !dropped.contains(&d.digest) {
                dropped.push(d.digest.clone());
            }
            keep
        });
        for desc in &index.manifests {
            if !keep_blobs.insert(desc.digest.clone()) {
                continue;
            }
            let name = desc.ref_name().unwrap_or(desc.digest.as_str()).to_string();
            let wrap = |e| StoreError::InImage {
                image: name.clone(),
                source: Box::new(e),
            };
            self.keep_image(&desc.digest, &mut keep_blobs, &mut keep_chains)
                .map_err(wrap)?;
        }
        // Cache records name only their own chain (an image's chains hold
        // every ancestor already).
        let mut loose_chains: HashSet<Digest> = HashSet::new();
        for rec in self.cache.list()? {
            keep_blobs.extend(rec.layer.map(|l| l.digest));
            loose_chains.extend(rec.chain_id.filter(|c| !keep_chains.contains(c)));
        }
        report.images = dropped
            .into_iter()
            .filter(|d| !keep_blobs.contains(d))
            .collect();
        self.write_index(&index)?;
        // Candidates first, leases after: anything that appeared before the
        // listing was leased before the leases are read (see crate::lease).
        let blobs = self.content.list()?;
        let snapshots = self.snapshot_chains()?;
        let own = self.content.lease().path();
        let leased = live_leases(self.root(), own.as_deref(), true)?;
        for d in blobs {
            if !keep_blobs.contains(&d) && !leased.blobs.contains(&d) {
                report.reclaimed += self.content.size(&d).unwrap_or(0);
                self.content.delete(&d)?;
                report.blobs.push(d);
            }
        }
        // Records of layers kept in a registry that nothing needs now (as
        // their blobs would have gone).
        crate::content::remote::sweep(&self.content, &|d| {
            keep_blobs.contains(d) || leased.blobs.contains(d)
        });
        // Records of compressed layer variants whose blobs just went.
        self.sweep_variant_records();
        let keep = self.kept_snapshots(&snapshots, &keep_chains, &loose_chains, &leased.snapshots);
        for (chain, path) in snapshots {
            if keep.contains(chain.hex()) {
                continue;
            }
            report.reclaimed += dir_size(&path);
            snapshot::discard_dir(&self.layout.snapshots(), &path)?;
            report.snapshots.push(chain);
        }
        // Records of layers made on demand whose snapshots just went.
        if !report.snapshots.is_empty() {
            crate::content::lazy::sweep(&self.content);
            self.sweep_layer_sizes();
        }
        Ok(report)
    }

    /// Adds what the manifest or index `digest` needs to the kept blobs and
    /// snapshots: for an index, each of its images present here.
    fn keep_image(
        &self,
        digest: &Digest,
        keep_blobs: &mut HashSet<Digest>,
        keep_chains: &mut HashSet<Digest>,
    ) -> Result<(), StoreError> {
        let bytes = self.content.read(digest)?;
        if Self::is_index_document(&bytes) {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::json(format!("index {digest}"), e))?;
            for d in &index.manifests {
                if self.content.has(&d.digest) && keep_blobs.insert(d.digest.clone()) {
                    self.keep_image(&d.digest, keep_blobs, keep_chains)?;
                }
            }
            return Ok(());
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::json(format!("manifest {digest}"), e))?;
        keep_blobs.insert(manifest.config.digest.clone());
        keep_blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let config: ImageConfig = self.read_json(&manifest.config.digest, "config")?;
        keep_chains.extend(chain_ids(&config.rootfs.diff_ids));
        Ok(())
    }

    /// The snapshots (by key) prune keeps: those of kept chains or leased,
    /// and every parent of those — an overlay snapshot is its parents'
    /// trees plus its own (a cache record names only its own chain, and its
    /// base image's snapshot may have no other keeper). `image_chains` are
    /// closed under parents already (every prefix of an image's layers);
    /// only the `loose` and leased ones are walked up, to the first kept
    /// parent.
    fn kept_snapshots(
        &self,
        snapshots: &[(Digest, PathBuf)],
        image_chains: &HashSet<Digest>,
        loose: &HashSet<Digest>,
        leased: &HashSet<String>,
    ) -> HashSet<String> {
        let mut keep: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        for (chain, _) in snapshots {
            if image_chains.contains(chain) {
                keep.insert(chain.hex().to_string());
            } else if loose.contains(chain) || leased.contains(chain.hex()) {
                keep.insert(chain.hex().to_string());
                todo.push(chain.hex().to_string());
            }
        }
        // A container's kept layer (`run-<id>`, a stopped container's files
        // until `rbk rm`) stands on its image's layers, tagged or not.
        let containers = fs::read_dir(self.layout.snapshots())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with("run-"));
        todo.extend(containers);
        while let Some(key) = todo.pop() {
            if let Some(parent) = self.snapshot_parent(&key) {
                if keep.insert(parent.clone()) {
                    todo.push(parent);
                }
            }
        }
        keep
    }

    /// The parent of snapshot `key` (a chain id's hex), from its metadata.
    fn snapshot_parent(&self, key: &str) -> Option<String> {
        snapshot::parent_of(&self.layout.snapshots(), key)
    }

    /// The committed-layer snapshot directories (named by a chain id).
    fn snapshot_chains(&self) -> Result<Vec<(Digest, PathBuf)>, StoreError> {
        let dir = self.layout.snapshots();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at("list", &dir)? {
            let entry = entry.at("list", &dir)?;
            let chain = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok());
            if let Some(chain) = chain {
                out.push((chain, entry.path()));
            }
        }
        Ok(out)
    }
}

/// Bytes used by the files under `path` (not following symlinks).
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
