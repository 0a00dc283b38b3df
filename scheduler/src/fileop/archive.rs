//! ADD's extraction of local tar archives.
//!
//! Like BuildKit, a source is an archive when, after undoing a compression
//! recognised by its magic bytes, it starts with a valid tar header.
//! Supported: plain tar, gzip, bzip2, xz and zstd, as Docker supports. The
//! xz decoder has no streaming interface, so an xz archive is decompressed
//! to an anonymous temporary file first.
//!
//! Extraction writes as a process chrooted into the rootfs would: names are
//! cleaned, an entry with a `..` component is refused, and each entry's
//! parent is resolved inside the rootfs (so a symlink earlier in the
//! archive cannot send a later entry outside it). Ownership comes from the
//! archive unless `--chown` is given.

use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::Path;

use crate::context::{resolve_in_root, HashingReader};

use super::dest::{io_at, Attrs, Writer};
use super::FileOpError;

/// A recognised archive encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// The archive opened once, read from its start again: every pass reads
/// the same file, whatever happens to its path meanwhile.
fn reopen(file: &File, path: &Path) -> Result<File, FileOpError> {
    let mut again = file.try_clone().map_err(io_at("read", path))?;
    again.rewind().map_err(io_at("rewind", path))?;
    Ok(again)
}

fn decoder<'a>(
    input: impl Read + 'a,
    path: &Path,
    format: Format,
) -> Result<Box<dyn Read + 'a>, FileOpError> {
    let file = BufReader::new(input);
    Ok(match format {
        Format::Tar => Box::new(file),
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        Format::Zstd => {
            Box::new(zstd::Decoder::with_buffer(file).map_err(io_at("decompress", path))?)
        }
        Format::Xz => {
            let mut out =
                tempfile::tempfile().map_err(io_at("create a temporary file for", path))?;
            let mut input = file;
            lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| FileOpError::Archive {
                path: path.to_path_buf(),
                why: format!("xz: {e}"),
            })?;
            out.rewind().map_err(io_at("rewind", path))?;
            Box::new(BufReader::new(out))
        }
    })
}

/// Just enough decompressed bytes of `path` to see a tar header; decoding
/// stops once they are in (for xz, whose decoder only writes).
fn head(file: &File, path: &Path, format: Format, buf: &mut [u8; 512]) -> Option<usize> {
    if format != Format::Xz {
        let mut reader = decoder(reopen(file, path).ok()?, path, format).ok()?;
        return read_full(&mut reader, buf).ok();
    }
    struct Capped<'a>(&'a mut [u8; 512], usize);
    impl Write for Capped<'_> {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.1 == self.0.len() {
                // Enough: abort the decoder.
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let n = data.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&data[..n]);
            self.1 += n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut input = BufReader::new(reopen(file, path).ok()?);
    let mut capped = Capped(buf, 0);
    let _ = lzma_rs::xz_decompress(&mut input, &mut capped);
    Some(capped.1)
}

/// The archive format of `file` (opened from `path`), or `None` if it is
/// not a tar archive we can read (then ADD copies it as a file).
pub(crate) fn detect(file: &File, path: &Path) -> Result<Option<Format>, FileOpError> {
    let mut magic = [0u8; 6];
    let n = read_full(&mut reopen(file, path)?, &mut magic).map_err(io_at("read", path))?;
    let format = match &magic[..n] {
        [0x1f, 0x8b, ..] => Format::Gzip,
        [b'B', b'Z', b'h', ..] => Format::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Format::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Format::Zstd,
        _ => Format::Tar,
    };
    let mut header = [0u8; 512];
    // A decoding error means "not an archive", not a failed build.
    match head(file, path, format, &mut header) {
        Some(512) if is_tar_header(&header) => Ok(Some(format)),
        _ => Ok(None),
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A tar header block is valid when its checksum field matches the sum of
/// its bytes (the field itself counted as spaces).
fn is_tar_header(block: &[u8; 512]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    sum == want && block[..100].iter().any(|&b| b != 0)
}

/// Extracts `file` (opened from `path`) into the directory `target` of the
/// writer's rootfs. Returns the blake3 of every byte of the archive, as
/// read for the extraction: what was extracted is what that digest is of.
pub(crate) fn extract(
    w: &Writer,
    file: &File,
    path: &Path,
    format: Format,
    target: &Path,
    chown: Option<(u32, u32)>,
) -> Result<[u8; 32], FileOpError> {
    let mut hasher = blake3::Hasher::new();
    let input = HashingReader {
        inner: reopen(file, path)?,
        hasher: &mut hasher,
    };
    let archive = tar::Archive::new(decoder(input, path, format)?);
    extract_entries(w, archive, path, target, chown)?;
    // The decoder may stop before the end (tar's trailing blocks): hash the
    // rest, from where it stopped (the clones share the file offset).
    let mut rest = HashingReader {
        inner: file.try_clone().map_err(io_at("read", path))?,
        hasher: &mut hasher,
    };
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(io_at("read", path))?;
    Ok(*hasher.finalize().as_bytes())
}

fn extract_entries(
    w: &Writer,
    mut archive: tar::Archive<Box<dyn Read + '_>>,
    path: &Path,
    target: &Path,
    chown: Option<(u32, u32)>,
) -> Result<(), FileOpError> {
    let bad = |why: std::io::Error| FileOpError::Archive {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let root = w.root().to_path_buf();
    let target_rel = target
        .strip_prefix(&root)
        .map_err(|_| FileOpError::Escape {
            path: target.to_path_buf(),
        })?
        .to_string_lossy()
        .into_owned();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let unsafe_entry = || FileOpError::UnsafeArchiveEntry {
            path: path.to_path_buf(),
            entry: raw.clone(),
        };
        let Some(rel) = clean_entry(&raw) else {
            return Err(unsafe_entry());
        };
        if rel.is_empty() {
            continue;
        }
        let (parent_rel, base) = match rel.rsplit_once('/') {
            Some((p, b)) => (p, b),
            None => ("", rel.as_str()),
        };
        let parent = resolve_in_root(&root, &format!("/{target_rel}/{parent_rel}"), true)
            .map_err(io_at("resolve", target))?;
        w.ensure_dir(&parent)?;
        let dest = parent.join(base);
        let header = entry.header();
        let owner = match chown {
            Some(owner) => owner,
            None => (
                header.uid().map_err(bad)? as u32,
                header.gid().map_err(bad)? as u32,
            ),
        };
        let attrs = Attrs {
            owner,
            mode: header.mode().map_err(bad)? & 0o7777,
            mtime_ns: Some((header.mtime().map_err(bad)? as i64).saturating_mul(1_000_000_000)),
        };
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory => w.dir(&dest, attrs)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                w.file(&dest, super::dest::Content::Reader(&mut entry), attrs, None)?
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name().map_err(bad)?.ok_or_else(unsafe_entry)?;
                w.symlink(&dest, &link, attrs)?
            }
            tar::EntryType::Link => {
                let link = entry.link_name_bytes().ok_or_else(unsafe_entry)?;
                let link = clean_entry(&String::from_utf8_lossy(&link)).ok_or_else(unsafe_entry)?;
                let existing = resolve_in_root(&root, &format!("/{target_rel}/{link}"), false)
                    .map_err(io_at("resolve", target))?;
                w.hard_link(&dest, &existing)?;
                w.link_attrs(&dest, attrs)?
            }
            _ => w.skip(),
        }
    }
    Ok(())
}

/// Cleans an archive member name: drops leading `/` and `./`, collapses
/// `//` and `.`; `None` when a `..` component would climb out.
fn clean_entry(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(clean_entry("./a/b/").as_deref(), Some("a/b"));
        assert_eq!(clean_entry("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(clean_entry("a/../../x"), None);
        assert_eq!(clean_entry("./").as_deref(), Some(""));
    }
}
