//! An image's final filesystem, unpacked into a directory or archived as
//! one tarball (`-o type=local`, `-o type=tar`).

use std::io::{self, Write};
use std::path::Path;

use rbk_store::images::{Image, Store};
use rbk_store::layer::ApplyMode;

use super::ExportError;

/// Unpacks `image`'s layers, in order, into `dir` (made if missing); a
/// multi-platform image's each into `dir/<os>_<arch>[_<variant>]`, as
/// buildx lays them out. An index of one platform (an image with its
/// attestations) is that platform's image.
pub fn write_dir(store: &Store, image: &Image, dir: &Path) -> Result<(), ExportError> {
    // An image without an index is its own one platform.
    let children = store.index_images(image)?;
    if let [one] = children.as_slice() {
        return unpack_layers(store, one, dir);
    }
    for child in children {
        let sub = child.platform().map_or_else(
            || child.id.short().to_string(),
            |p| p.to_string().replace('/', "_"),
        );
        unpack_layers(store, &child, &dir.join(sub))?;
    }
    Ok(())
}

/// Unpacks one image's layers, in order, into `dir` (made if missing).
fn unpack_layers(store: &Store, image: &Image, dir: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Io {
        op: "create",
        path: dir.to_path_buf(),
        source,
    })?;
    for l in &image.manifest.layers {
        let blob = store.content.open_blob(&l.digest)?;
        let plain =
            rbk_store::compress::decompress(blob).map_err(|source| ExportError::ReadLayer {
                digest: l.digest.clone(),
                source,
            })?;
        rbk_store::layer::apply(plain, dir, ApplyMode::Merge).map_err(|source| {
            ExportError::Unpack {
                digest: l.digest.clone(),
                dir: dir.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// `image`'s filesystem as one tarball: unpacked into a scratch directory
/// of the store, then archived in name order with numeric owners.
pub fn write_tar(store: &Store, image: &Image, w: &mut dyn Write) -> Result<(), ExportError> {
    let scratch = tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(store.layout().tmp())
        .map_err(ExportError::Scratch)?;
    write_dir(store, image, scratch.path())?;
    let mut tar = tar::Builder::new(w);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    append_sorted(&mut tar, scratch.path(), Path::new(""))?;
    tar.finish().map_err(ExportError::Tarball)?;
    Ok(())
}

/// Appends `root/rel` and everything under it, children in name order.
fn append_sorted(
    tar: &mut tar::Builder<&mut dyn Write>,
    root: &Path,
    rel: &Path,
) -> Result<(), ExportError> {
    let dir = root.join(rel);
    let list = |source| ExportError::Io {
        op: "list",
        path: dir.clone(),
        source,
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(list)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(list)?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(|source| ExportError::Io {
            op: "inspect",
            path: path.clone(),
            source,
        })?;
        tar.append_path_with_name(&path, &rel)
            .map_err(|source| ExportError::Io {
                op: "archive",
                path: path.clone(),
                source,
            })?;
        if meta.is_dir() {
            append_sorted(tar, root, &rel)?;
        }
    }
    Ok(())
}
