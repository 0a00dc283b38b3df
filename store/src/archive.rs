//! `save`, `load` and `import`: images in and out of the store as tar files.
//!
//! `save` writes one tar that is both a docker-archive (`manifest.json`,
//! `repositories`) and an OCI image layout (`oci-layout`, `index.json`),
//! the two sharing the blobs under `blobs/sha256/`, so `docker load`,
//! `podman load`, `skopeo` (`docker-archive:` and `oci-archive:`) and
//! `umoci` all read it (Docker 25+ writes the same shape).
//!
//! `load` reads either kind, plain or gzip/zstd compressed. Everything is
//! staged in `tmp/` and verified first; blobs are published and tags set
//! only when the whole archive was good, so a bad archive leaves the store
//! as it was.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ArchiveError, StoreError};
use crate::oci::LayerCompression;

mod changes;
mod import;
mod load;
mod save;

pub use changes::apply_change;
pub use import::{import, import_for, import_with};
pub use load::load;
pub use save::{save, save_items, SaveItem};

/// The annotation containerd and Docker put the full image name in.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// JSON files in an archive larger than this are refused rather than read
/// into memory (real manifests and configs are a few KiB).
const MAX_JSON: u64 = 64 << 20;

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Wraps `reader` in a decompressor chosen by its first bytes (gzip, zstd,
/// or none).
pub fn decompressed<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, StoreError> {
    let mut buf = BufReader::with_capacity(1 << 20, reader);
    let head = buf
        .fill_buf()
        .map_err(|source| StoreError::Archive(ArchiveError::Read { source }))?;
    Ok(match LayerCompression::sniff(head) {
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|source| StoreError::Archive(ArchiveError::Read { source }))?,
        ),
        LayerCompression::None => Box::new(buf),
    })
}

/// An archive read error, reduced to one short line: the tar crate quotes
/// raw header bytes, which can be anything (even several lines).
pub(crate) fn read_err(e: io::Error) -> StoreError {
    let text = e.to_string();
    let mut line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect();
    if line.len() < text.len() {
        line.push('…');
    }
    StoreError::Archive(ArchiveError::Read {
        source: io::Error::new(e.kind(), line),
    })
}

/// An archive path made safe: relative, no `..`, no `.`, `/`-joined.
fn clean_entry_path(raw: &Path) -> Result<String, StoreError> {
    let entry = || raw.to_string_lossy().into_owned();
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(StoreError::Archive(ArchiveError::UnsafeEntry {
                    entry: entry(),
                    reason: "it contains '..'",
                }))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(StoreError::Archive(ArchiveError::UnsafeEntry {
                    entry: entry(),
                    reason: "it is an absolute path",
                }))
            }
        }
    }
    Ok(parts.join("/"))
}
