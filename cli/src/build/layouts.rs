//! `--build-context NAME=oci-layout://DIR`: the layout loaded into the
//! store and given to the build as the image it holds.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use rbk_store::images::Store;
use rbk_store::Reference;

use crate::inputs::BuildInputArgs;

/// The input flags with each `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`
/// loaded into the store and given as the image it names
/// (`docker-image://localhost/rbk-build-context/NAME:…`).
pub(crate) fn with_oci_layouts_loaded(
    store: &Store,
    args: &BuildInputArgs,
) -> Result<BuildInputArgs> {
    let mut out = args.clone();
    for value in &mut out.build_contexts {
        let Some((name, spec)) = value.split_once('=') else {
            continue;
        };
        let Some(rest) = spec.strip_prefix("oci-layout://") else {
            continue;
        };
        let what = || format!("--build-context {name}={spec}");
        let (rest, digest) = match rest.rsplit_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<rbk_store::Digest>()
                        .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?,
                ),
            ),
            None => (rest, None),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !t.is_empty() => (p, Some(t)),
            _ => (rest, None),
        };
        let dir = Path::new(path);
        if !dir.join("index.json").is_file() {
            bail!(
                "{}: {} is not an OCI layout (no index.json)",
                what(),
                dir.display()
            );
        }
        let images = load_layout(store, dir).with_context(what)?;
        let chosen = images.iter().find(|i| match (&digest, tag) {
            (Some(d), _) => &i.manifest_digest == d,
            (None, Some(t)) => i.tags.iter().any(|r| r.tag() == Some(t)),
            (None, None) => images.len() == 1,
        });
        let Some(image) = chosen else {
            bail!(
                "{}: the layout holds {} image(s); name one with :TAG or @DIGEST",
                what(),
                images.len()
            );
        };
        let local = Reference::parse(&format!(
            "localhost/rbk-build-context/{}:{}",
            name.to_ascii_lowercase(),
            &image.manifest_digest.hex()[..12]
        ))
        .with_context(what)?;
        store.tag(image, &local)?;
        *value = format!("{name}=docker-image://{local}");
    }
    Ok(out)
}

/// Loads the OCI layout directory `dir` into `store` (through a tarball of
/// it in the store's staging area).
fn load_layout(store: &Store, dir: &Path) -> Result<Vec<rbk_store::images::Image>> {
    let mut tmp = tempfile::Builder::new()
        .prefix("layout-")
        .tempfile_in(store.root().join("tmp"))
        .context("cannot stage the layout")?;
    {
        let mut tar = tar::Builder::new(tmp.as_file_mut());
        tar.follow_symlinks(false);
        tar.append_dir_all(".", dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        tar.finish().context("cannot stage the layout")?;
    }
    let f = std::fs::File::open(tmp.path()).context("cannot stage the layout")?;
    Ok(rbk_store::archive::load(store, f)?)
}
