//! `rbk import`: a filesystem tarball made an image of one layer.

use std::fs::File;
use std::io::{self, Read, Write};

use anyhow::Context;
use rbk_store::archive;
use rbk_store::oci::LayerCompression;
use rbk_store::{Reference, Store};

/// `rbk import`.
pub(super) fn import(
    store: &Store,
    out: &mut dyn Write,
    tarball: &str,
    reference: Option<&str>,
    changes: &[String],
    compression: &str,
    platform: Option<&str>,
) -> anyhow::Result<i32> {
    if let Some(p) = platform {
        rbk_compiler::platform::Platform::parse(p)
            .map_err(|e| anyhow::anyhow!("--platform {p:?}: {e}"))?;
    }
    let reference = reference.map(Reference::parse).transpose()?;
    let reader: Box<dyn Read> = if tarball == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(tarball).with_context(|| format!("cannot open {tarball}"))?)
    };
    let compression = match compression {
        "zstd" => LayerCompression::Zstd,
        "gzip" => LayerCompression::Gzip,
        _ => LayerCompression::None,
    };
    // With a platform, NAME gathers the platforms imported into it.
    let tag_now = if platform.is_some() {
        None
    } else {
        reference.as_ref()
    };
    let image = archive::import_for(store, reader, tag_now, changes, compression, platform)?;
    if let (Some(r), Some(_)) = (&reference, platform) {
        let all = store.add_platform(r, &image)?;
        if let Some(index) = &all.index {
            eprintln!(
                "{}: platforms {}",
                r.familiar(),
                index.present_platforms().join(", ")
            );
        }
    }
    writeln!(out, "{}", image.id)?;
    Ok(0)
}
