//! A layer's size as Docker shows it (`docker history`, `docker images`):
//! the bytes of what it holds — regular files, and symlinks by the length
//! of their target — not of its tar (headers, padding and the two end
//! blocks make an empty layer 1–2 kB). Read from the tar's headers once per
//! layer, then kept beside the store (`layer-sizes/<digest>`).

use std::io::{Read, Seek};
use std::path::PathBuf;

use super::Store;
use crate::error::StoreError;
use crate::oci::Descriptor;

impl Store {
    /// What `layer` holds, in bytes (see the module documentation); a
    /// layer whose blob the store lacks (a lazy one) counts its blob size.
    pub fn layer_content_size(&self, layer: &Descriptor) -> Result<u64, StoreError> {
        let cached = self.size_file(layer);
        if let Some(n) = std::fs::read_to_string(&cached)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Ok(n);
        }
        let path = self.content.path(&layer.digest);
        if !path.is_file() {
            // Kept as its snapshot: the tar it would make, counted as it
            // streams (nothing written).
            let mut counter = Counter::default();
            if !crate::content::lazy::stream(self.root(), &layer.digest, &mut counter)? {
                return Ok(layer.size);
            }
            return Ok(counter.content);
        }
        let io = |e| StoreError::from_io("read the layer", &path, e);
        let mut file = std::fs::File::open(&path).map_err(io)?;
        let mut magic = [0u8; 4];
        let got = file.read(&mut magic).map_err(io)?;
        file.rewind().map_err(io)?;
        let n = match crate::compress::detect(&magic[..got]) {
            // Uncompressed: skip from header to header.
            crate::compress::Compression::None => {
                content_bytes(tar::Archive::new(file).entries_with_seek().map_err(io)?)
            }
            _ => {
                let plain = crate::compress::decompress(file).map_err(io)?;
                content_bytes(tar::Archive::new(plain).entries().map_err(io)?)
            }
        }
        .map_err(io)?;
        if let Some(dir) = cached.parent() {
            let _ = std::fs::create_dir_all(dir);
            let _ = crate::content::write_atomic(
                self.content.tmp_dir(),
                &cached,
                n.to_string().as_bytes(),
            );
        }
        Ok(n)
    }

    /// Forgets the sizes of layers the store no longer has (after `prune`).
    pub(crate) fn sweep_layer_sizes(&self) {
        let Ok(rd) = std::fs::read_dir(self.layout().layer_sizes()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let gone = name
                .to_str()
                .and_then(|hex| {
                    format!("sha256:{hex}")
                        .parse::<crate::digest::Digest>()
                        .ok()
                })
                .is_none_or(|d| !self.content.has(&d));
            if gone {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn size_file(&self, layer: &Descriptor) -> PathBuf {
        self.layout().layer_sizes().join(layer.digest.hex())
    }
}

/// A tar stream's content bytes, counted as it is written: each header's
/// size for regular files, its link name's length for symlinks; extended
/// headers (pax, GNU long names) and data are skipped.
#[derive(Default)]
struct Counter {
    /// Content bytes so far.
    content: u64,
    /// Bytes of the current header still to come.
    header: Vec<u8>,
    /// Bytes of data (padded to 512) still to skip.
    skip: u64,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.skip > 0 {
                let n = rest
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                rest = &rest[n..];
                continue;
            }
            let n = rest.len().min(512 - self.header.len());
            self.header.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.header.len() == 512 {
                let block = std::mem::take(&mut self.header);
                self.count(&block);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Counter {
    /// One 512-byte header block (or an end-of-archive zero block).
    fn count(&mut self, block: &[u8]) {
        if block.iter().all(|&b| b == 0) {
            return;
        }
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(block);
        let size = h.entry_size().unwrap_or(0);
        match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => self.content += size,
            tar::EntryType::Symlink => {
                self.content += h.link_name_bytes().map_or(0, |l| l.len() as u64);
            }
            _ => {}
        }
        self.skip = size.div_ceil(512) * 512;
    }
}

/// The bytes of regular files and symlink targets among `entries`.
fn content_bytes<R: Read>(entries: tar::Entries<'_, R>) -> std::io::Result<u64> {
    let mut n = 0u64;
    for e in entries {
        let e = e?;
        let h = e.header();
        match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => n += h.size()?,
            tar::EntryType::Symlink => {
                n += e.link_name_bytes().map_or(0, |l| l.len() as u64);
            }
            _ => {}
        }
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_layer_counts_what_it_holds_not_its_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (files, want) in [
            (vec![], 0u64),
            (vec![("a", &b"hello"[..]), ("dir/b", &b"12"[..])], 7),
        ] {
            let tar = tar_of(&files);
            assert!(tar.len() >= 1024);
            let d = store.content.put(&tar).unwrap();
            let desc = Descriptor::new(crate::oci::MEDIA_TYPE_OCI_LAYER, d, tar.len() as u64);
            assert_eq!(store.layer_content_size(&desc).unwrap(), want);
            // Kept: asked again, the same.
            assert_eq!(store.layer_content_size(&desc).unwrap(), want);
            // Counted as a stream, the same.
            let mut c = Counter::default();
            for chunk in tar.chunks(100) {
                std::io::Write::write_all(&mut c, chunk).unwrap();
            }
            assert_eq!(c.content, want);
        }
    }
}
