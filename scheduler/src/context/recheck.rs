//! What a `RUN --mount=type=bind` of a build context shows: all of the
//! source, `.dockerignore`d files too (the mount is of the directory
//! itself), keyed like a COPY's selection; and the check, once the command
//! has ended, that it still shows the files the key was made of.

use super::hash::{content_digest, record};
use super::statcache::{changed_near, same_version};
use super::{BuildContext, ContentDigest, ContextError, Entry, EntryKind, Filters, Selection};

impl BuildContext {
    /// Everything under `source` (a path from the context root, symlinks
    /// resolved inside it), ignored files included.
    pub fn select_visible(&self, source: &str) -> Result<Selection, ContextError> {
        let filters = Filters {
            ignore: None,
            excludes: None,
            follow_named: true,
        };
        // The walk needs no stat cache: read it meanwhile, for the digest.
        let (selection, _) = rayon::join(
            || super::select_in(&self.root, &[source.to_string()], filters),
            || self.stat_cache(),
        );
        // The command sees the owners: they are part of what it reads.
        selection.map(|s| Selection { owners: true, ..s })
    }

    /// Checks that `source` still holds what `sel` listed and `digest` was
    /// made of: the same names, each file the same version (inode, size,
    /// times; by content when it changed within a clock tick of the walk),
    /// the same modes, owners and link targets. A file changed and changed
    /// back is another version, so the check fails for it too.
    pub fn check_unchanged(
        &self,
        source: &str,
        sel: &Selection,
        digest: &ContentDigest,
    ) -> Result<(), ContextError> {
        let changed = |name: String| ContextError::ChangedWhileMounted { name };
        let now = self.select_visible(source)?;
        if now.sources.len() != sel.sources.len() {
            return Err(changed(source.to_string()));
        }
        let mut records = digest.records.iter();
        for (was, is) in sel.sources.iter().zip(&now.sources) {
            for (i, old) in was.entries.iter().enumerate() {
                let keyed = records.next();
                let new = is.entries.get(i).filter(|new| new.sub == old.sub);
                let same = match new {
                    Some(new) => same_entry(old, new, keyed, sel.walked_ns)?,
                    None => false,
                };
                if !same {
                    return Err(changed(was.name_of(old)));
                }
            }
            if let Some(extra) = is.entries.get(was.entries.len()) {
                return Err(changed(is.name_of(extra)));
            }
        }
        Ok(())
    }
}

/// Whether `new` is still the entry `old` was, whose record is `keyed`.
fn same_entry(
    old: &Entry,
    new: &Entry,
    keyed: Option<&[u8; 32]>,
    walked_ns: i64,
) -> Result<bool, ContextError> {
    Ok(match old.meta.kind {
        EntryKind::File if !same_version(&new.meta, &old.meta) => false,
        EntryKind::File if changed_near(&old.meta, walked_ns) => {
            match content_digest(&new.path, &new.meta, None) {
                Ok(content) => keyed == Some(&record(&new.meta, Some(content), true)),
                Err(ContextError::Changed { .. }) => false,
                Err(e) => return Err(e),
            }
        }
        EntryKind::File => true,
        _ => keyed == Some(&record(&new.meta, None, true)),
    })
}
