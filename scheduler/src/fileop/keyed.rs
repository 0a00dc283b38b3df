//! Copying what a cache key was made of, and nothing else: each copied
//! context file must still be the file hashed for the key (same inode,
//! size, mtime and ctime, before and after the copy), and when its stat
//! cannot prove that (it changed within a clock tick of the walk) the
//! copy's bytes must hash to the keyed content. Anything else fails the
//! step with [`FileOpError::SourceChanged`]: the layer is never committed,
//! so the cache never serves content under a key of other content.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::context::{
    changed_near, file_record, is_gone, is_version, Entry, HashingReader, SelectedSource, Selection,
};

use super::dest::io_at;
use super::FileOpError;

/// The digest a copied selection was keyed on: each entry's record.
#[derive(Clone, Copy)]
pub(super) struct Keyed<'a> {
    pub selection: &'a Selection,
    pub records: &'a [[u8; 32]],
}

/// What one copied source must match.
#[derive(Clone, Copy)]
pub(super) struct Check<'a> {
    pub source: &'a SelectedSource,
    /// Its entries' records, in order.
    pub records: &'a [[u8; 32]],
    /// When the walk that listed it began.
    pub walked_ns: i64,
    /// Whether owners are in the records.
    pub owners: bool,
}

impl Check<'_> {
    fn changed(&self, entry: &Entry) -> FileOpError {
        FileOpError::SourceChanged {
            name: self.source.name_of(entry),
        }
    }

    /// The open source is the file hashed, unchanged since.
    pub(super) fn same(&self, src: &File, entry: &Entry) -> Result<(), FileOpError> {
        match is_version(src, &entry.meta) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.changed(entry)),
            Err(e) => Err(io_at("stat", &entry.path)(e)),
        }
    }

    /// After copying entry `i` to `copied`: still the same file, and when
    /// its stat cannot prove it (changed within a clock tick of the walk)
    /// the copy's bytes hash to the content the key names.
    pub(super) fn after(
        &self,
        src: &File,
        i: usize,
        entry: &Entry,
        copied: &Path,
    ) -> Result<(), FileOpError> {
        self.same(src, entry)?;
        if !changed_near(&entry.meta, self.walked_ns) {
            return Ok(());
        }
        let mut hasher = blake3::Hasher::new();
        let copy = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(copied)
            .map_err(io_at("read back", copied))?;
        std::io::copy(
            &mut HashingReader {
                inner: copy,
                hasher: &mut hasher,
            },
            &mut std::io::sink(),
        )
        .map_err(io_at("read back", copied))?;
        self.content(i, entry, *hasher.finalize().as_bytes())
    }

    /// Bytes read from entry `i` hash to `content`: is that what was keyed?
    pub(super) fn content(
        &self,
        i: usize,
        entry: &Entry,
        content: [u8; 32],
    ) -> Result<(), FileOpError> {
        match self.records.get(i) {
            Some(rec) if *rec == file_record(&entry.meta, content, self.owners) => Ok(()),
            _ => Err(self.changed(entry)),
        }
    }

    /// Opens a regular file of the selection to copy it: a file gone or
    /// turned into a symlink since the walk has changed.
    pub(super) fn open(check: Option<&Self>, entry: &Entry) -> Result<File, FileOpError> {
        // O_NOFOLLOW: a file swapped for a symlink since the walk is
        // refused rather than read through.
        let src = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&entry.path);
        let src = match (src, check) {
            (Err(e), Some(c)) if is_gone(&e) => return Err(c.changed(entry)),
            (src, _) => src.map_err(io_at("open", &entry.path))?,
        };
        if let Some(c) = check {
            c.same(&src, entry)?;
        }
        Ok(src)
    }
}
