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

use crate::compress::{compressor, decompress, Compression};
use crate::content::write_atomic;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::images::{Image, Store};
use crate::oci::{
    Descriptor, Manifest, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_LAYER,
    MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_ZSTD, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX,
};

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

/// A multi-platform image as it leaves the store: each platform's image
/// with its layers as asked ([`CompressedManifest`]) under an index listing
/// them (the stored index itself when nothing changed).
#[derive(Debug, Clone, PartialEq)]
pub struct CompressedIndex {
    /// The index's digest.
    pub digest: Digest,
    /// Its bytes, also in the content store.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub media_type: String,
    /// Each platform's image, in the index's order.
    pub images: Vec<(Image, CompressedManifest)>,
    /// The index's attachments (attestations) kept with it, as stored.
    pub attachments: Vec<CompressedManifest>,
}

/// How an image's layers and manifest leave the store: what a push or an
/// archive asks for (buildx's `compression=`, `compression-level=`,
/// `force-compression=` and `oci-mediatypes=` output keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportFormat {
    /// The codec for uncompressed layers.
    pub compression: Compression,
    /// Its level; `None` is the codec's default (see
    /// [`crate::compress::Level`]).
    pub level: Option<i32>,
    /// Recompress layers stored compressed with another codec too.
    pub force: bool,
    /// Docker's media types (schema 2) instead of OCI's.
    pub docker_media_types: bool,
}

impl From<Compression> for ExportFormat {
    fn from(compression: Compression) -> Self {
        ExportFormat {
            compression,
            ..ExportFormat::default()
        }
    }
}

impl ExportFormat {
    /// The name of the directory under `variants/` for this codec and level.
    fn variant_dir(&self) -> String {
        match self.level {
            None => self.compression.to_string(),
            Some(l) => format!("{}-{l}", self.compression),
        }
    }
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
    fn variant_record_path(&self, source: &Digest, to: &ExportFormat) -> PathBuf {
        self.layout()
            .variants()
            .join(to.variant_dir())
            .join(source.hex())
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
        self.cached_layer_variant(layer, &to.into())
    }

    /// [`Store::cached_compressed_layer`] for a codec, level and
    /// recompression choice.
    pub(crate) fn cached_layer_variant(
        &self,
        layer: &Descriptor,
        to: &ExportFormat,
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
        Ok(Some(variant(layer, to.compression, rec.digest, rec.size)))
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
    /// blob is leased to this process (see [`crate::lease`]), so a
    /// concurrent `prune` spares it. Do not call while holding the store
    /// lock (this takes it, shared).
    pub fn compressed_layer(
        &self,
        layer: &Descriptor,
        to: Compression,
    ) -> Result<Descriptor, StoreError> {
        self.layer_variant(layer, &to.into())
    }

    /// [`Store::compressed_layer`] for a codec, level and recompression
    /// choice: with `force`, a layer stored compressed with another codec
    /// is decompressed and compressed again (its variant recorded the same
    /// way, under the compressed blob's digest).
    pub(crate) fn layer_variant(
        &self,
        layer: &Descriptor,
        to: &ExportFormat,
    ) -> Result<Descriptor, StoreError> {
        if let Some(d) = self.cached_layer_variant(layer, to)? {
            return Ok(d);
        }
        self.make_variant(layer, to, None)
    }

    /// Makes `layer`'s `to` variant (as [`Store::layer_variant`] would when
    /// none is recorded) and writes every compressed byte to `side` too,
    /// as it is made: a push streams them to the registry while the store
    /// keeps them. `side` failing (the upload broke) stops only the
    /// copying; the variant is still made, so the caller can upload it
    /// from the store instead. What went to `side` is exactly the blob
    /// returned, or a prefix of it if `side` failed.
    pub(crate) fn layer_variant_teed(
        &self,
        layer: &Descriptor,
        to: &ExportFormat,
        side: &mut dyn Write,
    ) -> Result<Descriptor, StoreError> {
        self.make_variant(layer, to, Some(side))
    }

    /// Compresses `layer` into its `to` variant and records it; `side`, if
    /// any, gets the bytes as they are made. A second round only if a
    /// prune removed the new blob in the moment between its commit and
    /// `keep_recent` (it may have been there already, old, when ours was
    /// committed over it): the same bytes again (compression is
    /// deterministic), which `side` already has.
    fn make_variant(
        &self,
        layer: &Descriptor,
        to: &ExportFormat,
        mut side: Option<&mut dyn Write>,
    ) -> Result<Descriptor, StoreError> {
        for _ in 0..2 {
            let (digest, size) = self.compress_blob(&layer.digest, to, side.take())?;
            self.write_variant_record(&layer.digest, to, &digest, size)?;
            if self.keep_recent(&digest)? {
                return Ok(variant(layer, to.compression, digest, size));
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
    pub(crate) fn record_compressed_layer(
        &self,
        layer: &Descriptor,
        variant: &Descriptor,
        to: Compression,
    ) -> Result<(), StoreError> {
        let to = ExportFormat::from(to);
        if !needs_compression(layer, &to) || !self.content.has(&variant.digest) {
            return Ok(());
        }
        self.write_variant_record(&layer.digest, &to, &variant.digest, variant.size)
    }

    /// Records blob `digest` (`size` bytes) as the `to` variant of `source`.
    fn write_variant_record(
        &self,
        source: &Digest,
        to: &ExportFormat,
        digest: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let path = self.variant_record_path(source, to);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let rec = Record {
            digest: digest.clone(),
            size,
        };
        let bytes = serde_json::to_vec(&rec)
            .map_err(|e| StoreError::json(format!("variant record of {source}"), e))?;
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
        self.manifest_for_export(image, &to.into())
    }

    /// [`Store::manifest_with_compression`] for a whole [`ExportFormat`]:
    /// with `docker_media_types`, the manifest, config and layer
    /// descriptors take Docker's schema 2 media types (the config's bytes,
    /// and so the image id, stay).
    pub fn manifest_for_export(
        &self,
        image: &Image,
        to: &ExportFormat,
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
            .map(|l| Ok((l.digest.clone(), self.layer_variant(l, to)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut manifest = image.manifest.clone();
        for l in &mut manifest.layers {
            if let Some((_, v)) = done.iter().find(|(d, _)| d == &l.digest) {
                *l = v.clone();
            }
        }
        if to.docker_media_types {
            use_docker_media_types(&mut manifest);
        }
        let (digest, bytes) = if manifest == image.manifest {
            let bytes = self.content.read(&image.manifest_digest)?;
            (image.manifest_digest.clone(), bytes)
        } else {
            let bytes = serde_json::to_vec(&manifest).map_err(|e| {
                StoreError::json(
                    format!("manifest of {} with {} layers", image.id, to.compression),
                    e,
                )
            })?;
            (self.content.put(&bytes)?, bytes)
        };
        let blobs = manifest.blobs().cloned().collect();
        Ok(CompressedManifest {
            digest,
            bytes,
            manifest,
            blobs,
        })
    }

    /// Every platform's image of `image`'s index (each must be in the
    /// store: an error names those that are not); entries that are no
    /// platform's image (BuildKit's attestations) and are not here are left
    /// out.
    pub fn index_images(&self, image: &Image) -> Result<Vec<Image>, StoreError> {
        let Some(index) = &image.index else {
            return Ok(vec![image.clone()]);
        };
        let missing: Vec<String> = index
            .platforms()
            .filter(|(_, _, present)| !present)
            .map(|(p, _, _)| p.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::IncompleteIndex {
                image: image
                    .tags
                    .first()
                    .map_or_else(|| index.digest.to_string(), |t| t.familiar()),
                missing,
            });
        }
        index
            .platforms()
            .map(|(_, d, _)| self.image_by_manifest(&d.digest, Vec::new()))
            .collect()
    }

    /// `image`'s whole index as `to` has it leave the store (see
    /// [`Store::manifest_for_export`]); with Docker's media types the index
    /// becomes a manifest list. Attestations go with the images they name,
    /// made anew for those whose layers were re-encoded.
    pub fn index_for_export(
        &self,
        image: &Image,
        to: &ExportFormat,
    ) -> Result<CompressedIndex, StoreError> {
        let Some(stored) = &image.index else {
            return Err(StoreError::UnsupportedMediaType {
                media_type: image.manifest.media_type.clone().unwrap_or_default(),
                what: format!("image {} (not an index)", image.id),
            });
        };
        // Attestation manifests are OCI's: an index carrying them keeps
        // OCI's media types, as BuildKit forces them for attestations.
        let forced;
        let to = match stored.attachments().next() {
            Some(_) if to.docker_media_types => {
                forced = ExportFormat {
                    docker_media_types: false,
                    ..*to
                };
                &forced
            }
            _ => to,
        };
        let images = self.index_images(image)?;
        let mut out = Vec::with_capacity(images.len());
        let mut index = stored.index.clone();
        index.manifests.clear();
        for (child, (_, desc, _)) in images.into_iter().zip(stored.platforms()) {
            let converted = self.manifest_for_export(&child, to)?;
            let mut d = desc.clone();
            d.digest = converted.digest.clone();
            d.size = converted.bytes.len() as u64;
            if let Some(mt) = &converted.manifest.media_type {
                d.media_type = mt.clone();
            }
            index.manifests.push(d);
            out.push((child, converted));
        }
        let attachments = self.attachments_for_export(stored, &out, &mut index)?;
        if to.docker_media_types {
            index.media_type = Some(MEDIA_TYPE_DOCKER_MANIFEST_LIST.to_string());
        }
        let (digest, bytes) = if index == stored.index {
            (stored.digest.clone(), self.content.read(&stored.digest)?)
        } else {
            let bytes = serde_json::to_vec(&index)
                .map_err(|e| StoreError::json(format!("index of {}", stored.digest), e))?;
            (self.content.put(&bytes)?, bytes)
        };
        Ok(CompressedIndex {
            digest,
            bytes,
            media_type: index
                .media_type
                .unwrap_or_else(|| MEDIA_TYPE_OCI_INDEX.to_string()),
            images: out,
            attachments,
        })
    }

    /// The attestations of `stored` that go with the images `out` as they
    /// leave the store, each added to `index`: as stored when its image
    /// leaves unchanged, made anew for the manifest that leaves when the
    /// image's layers were re-encoded (see [`Store::rebind_attachment`]);
    /// those about no image that leaves, or that cannot be made anew, are
    /// left out.
    fn attachments_for_export(
        &self,
        stored: &crate::images::ImageIndex,
        out: &[(Image, CompressedManifest)],
        index: &mut crate::oci::Index,
    ) -> Result<Vec<CompressedManifest>, StoreError> {
        let mut attachments = Vec::new();
        for d in stored.attachments() {
            let Some(named) = d.attests() else {
                continue;
            };
            let Some((child, c)) = out.iter().find(|(child, _)| child.manifest_digest == named)
            else {
                continue;
            };
            if c.digest == child.manifest_digest {
                attachments.push(self.manifest_as_stored(&d.digest)?);
                index.manifests.push(d.clone());
            } else if let Some(r) = self.rebind_attachment(d, &named, &c.digest)? {
                attachments.push(CompressedManifest {
                    digest: r.descriptor.digest.clone(),
                    blobs: r.manifest.blobs().cloned().collect(),
                    bytes: r.bytes,
                    manifest: r.manifest,
                });
                index.manifests.push(r.descriptor);
            }
        }
        Ok(attachments)
    }

    /// Manifest `digest` as the store holds it, with the blobs it names.
    pub(crate) fn manifest_as_stored(
        &self,
        digest: &Digest,
    ) -> Result<CompressedManifest, StoreError> {
        let bytes = self.content.read(digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::json(format!("manifest {digest}"), e))?;
        let blobs = manifest.blobs().cloned().collect();
        Ok(CompressedManifest {
            digest: digest.clone(),
            bytes,
            manifest,
            blobs,
        })
    }

    /// Deletes the variant records whose layer or variant blob is gone.
    /// For `prune`, which calls it under the exclusive store lock after
    /// deleting blobs; a record it misses is harmless (ignored on lookup).
    pub(crate) fn sweep_variant_records(&self) {
        let Ok(algos) = fs::read_dir(self.layout().variants()) else {
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
                .and_then(|n| Digest::from_hex(n).ok());
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

    /// Streams blob `d` (decompressed first if it is compressed) through
    /// the shared compressor into a new blob, and into `side` too if given
    /// (see [`Store::layer_variant_teed`]). The source is verified as it
    /// is read, so a corrupt layer is reported, never compressed.
    fn compress_blob(
        &self,
        d: &Digest,
        to: &ExportFormat,
        side: Option<&mut dyn Write>,
    ) -> Result<(Digest, u64), StoreError> {
        let src_path = self.content.path(d);
        let blob = self.content.open_blob(d)?;
        let mut src = decompress(blob).at("decompress", &src_path)?;
        let writer = self.content.writer()?;
        let staging = writer.staging_path().to_path_buf();
        let into = |e| StoreError::from_io("compress into", &staging, e);
        let tee = Tee {
            store: writer,
            side,
        };
        let mut enc = compressor(tee, to.compression, to.level).map_err(into)?;
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
        enc.finish().map_err(into)?.store.commit(None)
    }

    /// Leases blob `d` to this process if it is still there (see
    /// [`crate::lease`]); false if it is gone.
    fn keep_recent(&self, d: &Digest) -> Result<bool, StoreError> {
        self.content.has_leased(d)
    }
}

/// The store's blob writer, and a second writer that gets the same bytes
/// for as long as it takes them (its first error ends the copying, not the
/// writing).
struct Tee<'a> {
    store: crate::content::BlobWriter,
    side: Option<&'a mut dyn Write>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.store.write(buf)?;
        if let Some(side) = &mut self.side {
            if side.write_all(&buf[..n]).is_err() {
                self.side = None;
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.store.flush()
    }
}

/// Whether `layer` must be (re)compressed for `to`: an uncompressed layer
/// when `to` compresses, and with `force` a layer compressed otherwise.
/// Anything that is not a layer never is.
fn needs_compression(layer: &Descriptor, to: &ExportFormat) -> bool {
    match Compression::from_media_type(&layer.media_type) {
        Some(Compression::None) => to.compression != Compression::None,
        Some(c) => to.force && c != to.compression,
        None => false,
    }
}

/// `layer`'s descriptor pointing at its variant compressed with `to`.
fn variant(layer: &Descriptor, to: Compression, digest: Digest, size: u64) -> Descriptor {
    let mut d = layer.clone();
    let plain = uncompressed_media_type(&layer.media_type);
    d.media_type = match to {
        Compression::None => plain.to_string(),
        c => variant_media_type(plain, c),
    };
    d.digest = digest;
    d.size = size;
    d
}

/// The uncompressed layer media type of the same family as `media_type`.
fn uncompressed_media_type(media_type: &str) -> &str {
    ["+gzip", "+zstd", ".gzip", ".zstd"]
        .iter()
        .find_map(|suffix| media_type.strip_suffix(suffix))
        .unwrap_or(media_type)
}

/// Gives `m` Docker's schema 2 media types (for registries and tools that
/// predate OCI's, buildx's `oci-mediatypes=false`).
fn use_docker_media_types(m: &mut Manifest) {
    m.media_type = Some(MEDIA_TYPE_DOCKER_MANIFEST.to_string());
    if m.config.media_type == MEDIA_TYPE_OCI_CONFIG {
        m.config.media_type = MEDIA_TYPE_DOCKER_CONFIG.to_string();
    }
    for l in &mut m.layers {
        let docker = match Compression::from_media_type(&l.media_type) {
            Some(Compression::None) => MEDIA_TYPE_DOCKER_LAYER,
            Some(Compression::Gzip) => MEDIA_TYPE_DOCKER_LAYER_GZIP,
            Some(Compression::Zstd) => MEDIA_TYPE_DOCKER_LAYER_ZSTD,
            None => continue,
        };
        l.media_type = docker.to_string();
    }
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
        let gzip = ExportFormat::from(Compression::Gzip);
        assert!(needs_compression(&tar, &gzip));
        assert!(!needs_compression(&tar, &Compression::None.into()));
        let zstd = d(crate::oci::MEDIA_TYPE_OCI_LAYER_ZSTD);
        assert!(!needs_compression(&zstd, &gzip));
        let forced = ExportFormat {
            force: true,
            ..gzip
        };
        assert!(needs_compression(&zstd, &forced));
        assert!(!needs_compression(
            &d(crate::oci::MEDIA_TYPE_OCI_LAYER_GZIP),
            &forced
        ));
        assert!(!needs_compression(
            &d(crate::oci::MEDIA_TYPE_OCI_CONFIG),
            &forced
        ));
    }

    #[test]
    fn docker_media_types_replace_oci_ones() {
        let mut m = Manifest {
            schema_version: 2,
            media_type: Some(crate::oci::MEDIA_TYPE_OCI_MANIFEST.into()),
            config: Descriptor::new(MEDIA_TYPE_OCI_CONFIG, Digest::of(b"c"), 1),
            layers: vec![
                Descriptor::new(crate::oci::MEDIA_TYPE_OCI_LAYER, Digest::of(b"a"), 1),
                Descriptor::new(crate::oci::MEDIA_TYPE_OCI_LAYER_GZIP, Digest::of(b"b"), 1),
            ],
            annotations: Default::default(),
        };
        use_docker_media_types(&mut m);
        assert_eq!(m.media_type.as_deref(), Some(MEDIA_TYPE_DOCKER_MANIFEST));
        assert_eq!(m.config.media_type, MEDIA_TYPE_DOCKER_CONFIG);
        assert_eq!(m.layers[0].media_type, MEDIA_TYPE_DOCKER_LAYER);
        assert_eq!(m.layers[1].media_type, MEDIA_TYPE_DOCKER_LAYER_GZIP);
        assert_eq!(
            uncompressed_media_type(MEDIA_TYPE_DOCKER_LAYER_GZIP),
            MEDIA_TYPE_DOCKER_LAYER
        );
    }
}
