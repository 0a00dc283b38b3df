//! What the lower layers of an overlay show at a path, as the kernel
//! merges them: for a layer applied into a fresh overlay layer dir, whose
//! parents and hard link targets may come from below.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::{is_overlay_whiteout, lstat_opt, LayerError};

/// Whether directory `p` of an overlay layer is opaque (hides what lower
/// layers hold under it).
pub(super) fn is_opaque(p: &Path) -> bool {
    crate::sys::get_xattr(p, OsStr::new(super::opaque_xattr()))
        .is_ok_and(|v| v.as_deref() == Some(b"y"))
}

/// What the stack `lowers` (nearest first) shows at `rel`: overlay's
/// lookup, component by component. The first layer holding a name decides
/// its type; a whiteout hides it; below a directory only lower layers where
/// it is a directory too merge in, down to the first non-directory or
/// opaque one. `None` when nothing shows there.
pub(super) fn lower_entry(lowers: &[PathBuf], rel: &Path) -> Result<Option<Metadata>, LayerError> {
    let mut layers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let mut cur = PathBuf::new();
    let mut shown: Option<Metadata> = None;
    for c in rel.components() {
        if shown.as_ref().is_some_and(|m| !m.is_dir()) {
            // Under a file: nothing.
            return Ok(None);
        }
        cur.push(c);
        let (mut found, mut merged) = (None, Vec::new());
        for layer in layers {
            let p = layer.join(&cur);
            let Some(m) = lstat_opt(&p)? else {
                continue;
            };
            if is_overlay_whiteout(&m) || !m.is_dir() {
                // Hides itself and all below; a file ends the merge.
                found = found.or(Some(m).filter(|m| !is_overlay_whiteout(m)));
                break;
            }
            let opaque = is_opaque(&p);
            found = found.or(Some(m));
            merged.push(layer);
            if opaque {
                break;
            }
        }
        let Some(m) = found else {
            return Ok(None);
        };
        shown = Some(m);
        layers = merged;
    }
    Ok(shown)
}
