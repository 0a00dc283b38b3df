//! Compressed variants of uncompressed layers, made when an image leaves
//! the machine (`push`, a registry build cache) and kept for next time.
//!
//! Builds and `import` store layers as plain tars, as BuildKit and Docker
//! do locally: committing them costs no compression, and their blob digest
//! is their diff id. A registry wants them compressed, so
//! [`Store::compressed_layer`] compresses a layer once, stores the result as
//! an ordinary blob, and remembers it in a small record,
//! `variants/<algo>/<diff-id hex>`, holding `{"digest":…,"size":…}`.
//!
//! The variant blob is referenced by no local manifest, so `prune` may
//! delete it; a record whose blob is gone is then ignored and the variant
//! made again. gzip output here is deterministic (see
//! [`crate::compress::ParallelGzip`]), so a recomputed variant has the
//! same digest as the pushed one and the registry already has it.

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::compress::{compressor, Compression};
use crate::content::write_atomic;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::images::{Image, Store};
use crate::oci::{Descriptor, Manifest};

/// What `variants/<algo>/<hex>` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    digest: Digest,
    size: u64,
}

/// An image's manifest with its layers compressed, as
/// [`Store::manifest_with_compression`] makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedManifest {
    /// The manifest's digest (the stored one when nothing was compressed).
    pub digest: Digest,
    /// Its bytes, also in the content store.
    pub bytes: Vec<u8>,
    /// The manifest.
    pub manifest: Manifest,
    /// The blobs it references, config first, then layers: what to push.
    pub blobs: Vec<Descriptor>,
}

/// The media type of `uncompressed` compressed with `to`, in the same
/// family: Docker names take `.gzip`/`.zstd`, OCI names `+gzip`/`+zstd`.
fn variant_media_type(uncompressed: &str, to: Compression) -> String {
    if uncompressed.starts_with("application/vnd.docker.") {
        format!("{uncompressed}.{to}")
    } else {
        format!("{uncompressed}+{to}")
    }
}

impl Store {
    fn variant_record_path(&self, diff_id: &Digest, to: Compression) -> PathBuf {
        self.root()
            .join("variants")
            .join(to.to_string())
            .join(diff_id.hex())
    }

    /// The compressed variant of `layer` made earlier, if its record exists
    /// and its blob is still in the store; computes nothing. `layer` itself
    /// when it is already compressed or `to` is `None`.
    ///
    /// Do not call while holding the store lock (this takes it, shared).
    pub fn cached_compressed_layer(
        &self,
        layer: &Descriptor,
        to: Compression,
    ) -> Result<Option<Descriptor>, StoreError> {
        if !needs_compression(layer, to) {
            return Ok(Some(layer.clone()));
        }
        let path = self.variant_record_path(&layer.digest, to);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("read", &path),
        };
        // A record that does not parse (a crash cannot make one: it is
        // written atomically, but a user may edit) is as good as none.
        let Ok(rec) = serde_json::from_slice::<Record>(&data) else {
            return Ok(None);
        };
        if self.content.size(&rec.digest).ok() != Some(rec.size)
            || !self.keep_recent(&rec.digest)?
        {
            return Ok(None);
        }
        Ok(Some(variant(layer, to, rec.digest, rec.size)))
    }

    /// `layer` compressed with `to`, as a descriptor of a blob in the store.
    ///
    /// Returns `layer` unchanged when `to` is [`Compression::None`] or the
    /// layer is already compressed (its media type says so) or not a layer
    /// at all. Otherwise the variant is made once — the uncompressed blob
    /// streamed through the shared compressor (gzip on every core) into a
    /// new blob — recorded under `variants/`, and reused by later calls
    /// while its blob exists. The media type keeps the layer's family
    /// (OCI `…tar+gzip`, Docker `…tar.gzip`); URLs and annotations are kept.
    ///
    /// Safe to call from several threads and processes at once: at worst
    /// two of them compress the same layer, to the same bytes. The returned
    /// blob is fresh (its mtime is now), so a concurrent `prune` spares it
    /// for [`crate::images::PRUNE_GRACE`] while this process has the store
    /// open. Do not call while holding the store lock (this takes it,
    /// shared).
    pub fn compressed_layer(
        &self,
        layer: &Descriptor,
        to: Compression,
    ) -> Result<Descriptor, StoreError> {
        if let Some(d) = self.cached_compressed_layer(layer, to)? {
            return Ok(d);
        }
        // A second round only if a prune removed the new blob in the
        // moment between its commit and `keep_recent` (it may have been
        // there already, old, when ours was committed over it).
        for _ in 0..2 {
            let (digest, size) = self.compress_blob(&layer.digest, to)?;
            let rec = Record {
                digest: digest.clone(),
                size,
            };
            let path = self.variant_record_path(&layer.digest, to);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).at("create directory", dir)?;
            }
            let bytes = serde_json::to_vec(&rec)
                .map_err(|e| StoreError::json(format!("variant record of {}", layer.digest), e))?;
            write_atomic(self.content.tmp_dir(), &path, &bytes)?;
            if self.keep_recent(&digest)? {
                return Ok(variant(layer, to, digest, size));
            }
        }
        Err(StoreError::BlobMissing {
            digest: layer.digest.clone(),
        })
    }

    /// Records `variant` (a blob in the store) as the `to` copy of the
    /// uncompressed `layer`, so the next [`Store::compressed_layer`] reuses
    /// it instead of compressing again. For a layer that arrived compressed
    /// (a registry cache's) and was decompressed here: the caller has
    /// checked that `variant` decompresses to `layer`.
    pub fn record_compressed_layer(
        &self,
        layer: &Descriptor,
        variant: &Descriptor,
        to: Compression,
    ) -> Result<(), StoreError> {
        if !needs_compression(layer, to) || !self.content.has(&variant.digest) {
            return Ok(());
        }
        let path = self.variant_record_path(&layer.digest, to);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let rec = Record {
            digest: variant.digest.clone(),
            size: variant.size,
        };
        let bytes = serde_json::to_vec(&rec)
            .map_err(|e| StoreError::json(format!("variant record of {}", layer.digest), e))?;
        write_atomic(self.content.tmp_dir(), &path, &bytes)
    }

    /// The manifest of `image` with every uncompressed layer replaced by
    /// its `to` variant (made in parallel, see [`Store::compressed_layer`]).
    /// When no layer changes, the stored manifest is returned byte for
    /// byte; otherwise the rewritten manifest is stored too. The config,
    /// and so the image id, is the same either way.
    ///
    /// Do not call while holding the store lock.
    pub fn manifest_with_compression(
        &self,
        image: &Image,
        to: Compression,
    ) -> Result<CompressedManifest, StoreError> {
        // Each distinct layer once: two tasks on one layer would only
        // compress it twice.
        let mut unique: Vec<&Descriptor> = Vec::new();
        for l in &image.manifest.layers {
            if !unique.iter().any(|u| u.digest == l.digest) {
                unique.push(l);
            }
        }
        let done: Vec<(Digest, Descriptor)> = unique
            .par_iter()
            .map(|l| Ok((l.digest.clone(), self.compressed_layer(l, to)?)))
            .collect::<Result<_, StoreError>>()?;
        let layers: Vec<Descriptor> = image
            .manifest
            .layers
            .iter()
            .map(|l| {
                done.iter()
                    .find(|(d, _)| d == &l.digest)
                    .map_or_else(|| l.clone(), |(_, v)| v.clone())
            })
            .collect();
        let (digest, bytes, manifest) = if layers == image.manifest.layers {
            let bytes = self.content.read(&image.manifest_digest)?;
            (image.manifest_digest.clone(), bytes, image.manifest.clone())
        } else {
            let mut m = image.manifest.clone();
            m.layers = layers;
            let bytes = serde_json::to_vec(&m).map_err(|e| {
                StoreError::json(format!("manifest of {} with {to} layers", image.id), e)
            })?;
            (self.content.put(&bytes)?, bytes, m)
        };
        let blobs = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .cloned()
            .collect();
        Ok(CompressedManifest {
            digest,
            bytes,
            manifest,
            blobs,
        })
    }

    /// Deletes the variant records whose layer or variant blob is gone.
    /// For `prune`, which calls it under the exclusive store lock after
    /// deleting blobs; a record it misses is harmless (ignored on lookup).
    pub(crate) fn sweep_variant_records(&self) {
        let Ok(algos) = fs::read_dir(self.root().join("variants")) else {
            return;
        };
        for entry in algos
            .flatten()
            .flat_map(|a| fs::read_dir(a.path()))
            .flatten()
        {
            let Ok(e) = entry else { continue };
            let path = e.path();
            let layer = e
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
            let variant = fs::read(&path)
                .ok()
                .and_then(|data| serde_json::from_slice::<Record>(&data).ok());
            let live = match (layer, variant) {
                (Some(l), Some(v)) => self.content.has(&l) && self.content.has(&v.digest),
                // Not a record (a staging leftover of another tool?): leave it.
                (None, _) => true,
                (Some(_), None) => false,
            };
            if !live {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Streams blob `d` through the shared compressor into a new blob.
    /// The source is verified as it is read, so a corrupt layer is
    /// reported, never compressed.
    fn compress_blob(&self, d: &Digest, to: Compression) -> Result<(Digest, u64), StoreError> {
        let src_path = self.content.path(d);
        let mut src = self.content.open_blob(d)?;
        let writer = self.content.writer()?;
        let staging = writer.staging_path().to_path_buf();
        let into = |e| StoreError::from_io("compress into", &staging, e);
        let mut enc = compressor(writer, to, None).map_err(into)?;
        // Big reads: the gzip compressor works on 1 MiB chunks anyway.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::from_io("read", &src_path, e)),
            };
            enc.write_all(&buf[..n]).map_err(into)?;
        }
        enc.finish().map_err(into)?.commit(None)
    }

    /// Leases blob `d` to this process if it is still there (see
    /// [`crate::lease`]); false if it is gone.
    fn keep_recent(&self, d: &Digest) -> Result<bool, StoreError> {
        self.content.has_leased(d)
    }
}

/// Whether `layer` is an uncompressed layer and `to` asks for compression.
fn needs_compression(layer: &Descriptor, to: Compression) -> bool {
    to != Compression::None
        && Compression::from_media_type(&layer.media_type) == Some(Compression::None)
}

/// `layer`'s descriptor pointing at its compressed variant.
fn variant(layer: &Descriptor, to: Compression, digest: Digest, size: u64) -> Descriptor {
    let mut d = layer.clone();
    d.media_type = variant_media_type(&layer.media_type, to);
    d.digest = digest;
    d.size = size;
    d
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_types_keep_their_family() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Compression::Gzip,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                Compression::Zstd,
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::Gzip,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar",
                Compression::Zstd,
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::Gzip,
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            ),
        ];
        for (from, to, want) in cases {
            let got = variant_media_type(from, to);
            assert_eq!(got, want);
            assert_eq!(Compression::from_media_type(&got), Some(to), "{got}");
        }
    }

    #[test]
    fn only_uncompressed_layers_need_compression() {
        let d = |mt: &str| Descriptor::new(mt, Digest::of(b"x"), 1);
        let tar = d(crate::oci::MEDIA_TYPE_OCI_LAYER);
        assert!(needs_compression(&tar, Compression::Gzip));
        assert!(!needs_compression(&tar, Compression::None));
        assert!(!needs_compression(
            &d(crate::oci::MEDIA_TYPE_OCI_LAYER_ZSTD),
            Compression::Gzip
        ));
        assert!(!needs_compression(
            &d(crate::oci::MEDIA_TYPE_OCI_CONFIG),
            Compression::Gzip
        ));
    }
}
