//! `rbk sbom IMAGE`: the SPDX 2.3 software bill of materials of an image in
//! the store, as `docker sbom` prints one: the packages its package
//! managers recorded (dpkg, apk, rpm) and its distribution, each package
//! annotated with the layer that installed it. Nothing from the image
//! runs: the databases are read through a read-only view of its layers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rbk_attest::sbom::{Inventory, Package};
use rbk_attest::spdx::{self, Described};
use rbk_store::workspace::{unpack_image, Workspace};
use rbk_store::{Image, Store, StoreError};

/// `rbk sbom`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk sbom app:1 > app.spdx.json
  rbk sbom --platform linux/arm64 -o sbom.json app:1")]
pub struct SbomArgs {
    /// Image name or id
    #[arg(value_name = "IMAGE", add = crate::complete::images())]
    image: String,
    /// From a multi-platform image, this platform's (default: this machine's)
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Write the document to FILE instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs `rbk sbom` against the store at `root`.
pub fn sbom(root: &Path, a: &SbomArgs) -> anyhow::Result<i32> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let want = a
        .platform
        .as_deref()
        .map(|p| p.parse::<rbk_store::oci::PlatformSpec>())
        .transpose()
        .context("--platform")?;
    let image = match store.resolve_leased_for(&a.image, want.as_ref()) {
        Ok(i) => i,
        Err(StoreError::ImageNotFound { name }) => {
            bail!("no such image: {name} (build, import, pull or load it first)")
        }
        Err(e) => return Err(e.into()),
    };
    let created = crate::env::source_date_epoch().unwrap_or_else(now);
    let doc = document(root, &store, &image, &a.image, created)?;
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    match &a.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(0)
}

/// The SPDX document of `image` (in the store at `root`) named `name`:
/// its packages, each annotated with the layer that installed it;
/// `created` is the document's time (unix seconds).
pub(crate) fn document(
    root: &Path,
    store: &Store,
    image: &Image,
    name: &str,
    created: i64,
) -> anyhow::Result<serde_json::Value> {
    let (inventory, layer_of) = scan(root, store, image)?;
    let described = Described {
        name: name.to_string(),
        digest: Some(image.manifest_digest.to_string()),
        created,
        tool: format!("rbk-{}", env!("CARGO_PKG_VERSION")),
    };
    let layers: BTreeMap<&Package, String> = layer_of.iter().map(|(p, l)| (p, l.clone())).collect();
    Ok(spdx::document(&described, &inventory, &layers))
}

/// The wall-clock time in unix seconds (0 before 1970).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The image's inventory, and for each package the diff id of the first
/// layer whose filesystem has it (each chain of layers viewed read-only).
fn scan(
    root: &Path,
    store: &Store,
    image: &Image,
) -> anyhow::Result<(Inventory, Vec<(Package, String)>)> {
    let snapshotter = crate::snapshotter(root)?;
    unpack_image(store, snapshotter.as_ref(), image)
        .with_context(|| format!("cannot unpack {}", image.id))?;
    let chains = image.chain_ids();
    let diff_ids = &image.config.rootfs.diff_ids;
    let mut before = Inventory::default();
    let mut layer_of = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let key = format!("sbom-{}-{}-{i}", std::process::id(), chain.hex());
        let view = Workspace::view(root, snapshotter.as_ref(), &key, Some(chain.hex()))
            .with_context(|| format!("cannot view layer {i} of {}", image.id))?;
        let inv = Inventory::scan(view.rootfs())?;
        let layer = diff_ids.get(i).map(|d| d.to_string()).unwrap_or_default();
        for p in inv.added_since(&before) {
            layer_of.push((p.clone(), layer.clone()));
        }
        before = inv;
    }
    Ok((before, layer_of))
}
