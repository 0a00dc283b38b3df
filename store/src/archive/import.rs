//! `import`: a rootfs tarball becomes a one-layer image, like `docker
//! import`. The tarball is read once: its uncompressed bytes are hashed
//! (the diffID) and written into a blob — kept uncompressed by default, as
//! a build's layers are (`push` compresses it), or compressed if asked —
//! in the same pass, while the tar structure is checked on the way through.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::compress::compressor;
use crate::content::BlobWriter;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::{Image, Store};
use crate::oci::{
    now_rfc3339, ContainerConfig, Descriptor, History, ImageConfig, LayerCompression, PlatformSpec,
    RootFs,
};
use crate::reference::Reference;

use super::{apply_change, clean_entry_path, decompressed, read_err};

/// Passes bytes through, hashing them and copying them to a compressor.
struct Tee<'a, W: Write> {
    inner: Box<dyn Read + 'a>,
    hasher: Sha256,
    sink: W,
    /// The staging file, for a failed write's error.
    staging: std::path::PathBuf,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        // A failed write is the store's (a full disk), not the archive's:
        // it travels as a StoreError that `store_or_read_err` recovers.
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            let err = StoreError::from_io("write", &self.staging, e);
            return Err(io::Error::other(err));
        }
        Ok(n)
    }
}

/// A failed read of the archive, or the store's failed write carried
/// through the reader (see [`Tee`]).
fn store_or_read_err(e: io::Error) -> StoreError {
    if e.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
        return StoreError::from_io("write", Path::new(""), e);
    }
    read_err(e)
}

/// Makes an image from a rootfs tarball (plain, gzip or zstd): one
/// uncompressed layer (its blob digest is its diff id), a config for this
/// machine with `changes` applied, tagged `reference` if given.
pub fn import(
    store: &Store,
    reader: impl Read,
    reference: Option<&Reference>,
    changes: &[String],
) -> Result<Image, StoreError> {
    import_with(store, reader, reference, changes, LayerCompression::None)
}

/// [`import`] with the layer compressed as asked (gzip, zstd, or none).
pub fn import_with(
    store: &Store,
    reader: impl Read,
    reference: Option<&Reference>,
    changes: &[String],
    compression: LayerCompression,
) -> Result<Image, StoreError> {
    import_for(store, reader, reference, changes, compression, None)
}

/// [`import_with`] for `platform` (`os/arch[/variant]`, what the image's
/// config says it is; the host's when `None`), as `docker import
/// --platform`.
pub fn import_for(
    store: &Store,
    reader: impl Read,
    reference: Option<&Reference>,
    changes: &[String],
    compression: LayerCompression,
    platform: Option<&str>,
) -> Result<Image, StoreError> {
    let PlatformSpec {
        os,
        architecture,
        variant,
    } = match platform {
        Some(p) => p.parse()?,
        None => PlatformSpec::host(),
    };
    // Check the changes before reading a possibly large tarball.
    let mut container = ContainerConfig::default();
    for c in changes {
        apply_change(&mut container, c)?;
    }
    let writer = store.content.writer()?;
    let staging = writer.staging_path().to_path_buf();
    let mut tee = Tee {
        inner: decompressed(reader)?,
        hasher: Sha256::new(),
        // The shared compressor: gzip runs on every core.
        sink: compressor(writer, compression.into(), None)
            .map_err(|e| StoreError::from_io("compress into", &staging, e))?,
        staging: staging.clone(),
    };
    {
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries().map_err(store_or_read_err)? {
            let entry = entry.map_err(store_or_read_err)?;
            clean_entry_path(&entry.path().map_err(read_err)?)?;
            if entry.header().entry_type().is_hard_link() {
                if let Some(target) = entry.link_name().map_err(read_err)? {
                    clean_entry_path(&target)?;
                }
            }
        }
    }
    // The end-of-archive blocks and any padding belong to the layer too.
    io::copy(&mut tee, &mut io::sink()).map_err(store_or_read_err)?;
    let Tee { hasher, sink, .. } = tee;
    let diff_id = Digest::from_hasher(hasher);
    let writer: BlobWriter = sink
        .finish()
        .map_err(|e| StoreError::from_io("compress into", &staging, e))?;
    let (digest, size) = writer.commit(None)?;
    let created = now_rfc3339();
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture,
        os,
        variant,
        config: Some(container),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: vec![diff_id],
        },
        history: vec![History {
            created: Some(created),
            created_by: Some("rbk import".to_string()),
            comment: Some("Imported from tarball".to_string()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let layer = Descriptor::new(compression.oci_media_type(), digest, size);
    let tags: Vec<Reference> = reference.into_iter().cloned().collect();
    store.commit_image(&config, &[layer], &tags)
}
