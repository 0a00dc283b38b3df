//! `rbk manifest create|inspect|push|merge`: multi-platform images (OCI
//! image indexes) made from images in the store, shown, and pushed whole —
//! what `docker manifest` and `docker buildx imagetools` do, for the store;
//! and joined from the images several builds pushed by digest (`merge`).

mod merge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rbk_store::compress::Compression;
use rbk_store::registry::Client;
use rbk_store::{Image, Reference, Store};

use crate::cmd_registry::RegistryFlags;

/// The `rbk manifest` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Make NAME an index of the images given (one per platform; an image
    /// that is itself multi-platform brings each of its platforms)
    #[command(after_help = "Example:\n  rbk manifest create app:1 app:1-amd64 app:1-arm64")]
    Create {
        /// The index's name
        #[arg(value_name = "NAME")]
        name: String,
        /// Images (names or ids), each stating its platform
        #[arg(required = true, value_name = "IMAGE", add = crate::complete::images())]
        images: Vec<String>,
        /// Set an annotation on the index (repeatable)
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
    },
    /// Print the index (or manifest) NAME names, from the store or, with
    /// --remote, from its registry
    Inspect {
        /// Image name or id
        #[arg(value_name = "NAME")]
        name: String,
        /// Ask NAME's registry instead of the store
        #[arg(long)]
        remote: bool,
        #[command(flatten)]
        registry: RegistryFlags,
    },
    /// Push NAME with every platform (images, then the index)
    Push {
        /// Local image name
        #[arg(value_name = "NAME")]
        name: String,
        /// Where to push it, if not to NAME itself (HOST/REPO[:TAG])
        #[arg(value_name = "DESTINATION")]
        destination: Option<String>,
        #[command(flatten)]
        registry: RegistryFlags,
    },
    /// Join the platform images that several builds wrote in their
    /// --metadata-file (pushed with push-by-digest=true) into one OCI index
    /// per tag; only manifests are read, no layer is pulled
    #[command(after_help = "Examples:
  rbk build --platform linux/amd64 -o type=registry,name=reg.example.com/app:1,push-by-digest=true \\
      --metadata-file amd64.json .      # on one machine
  rbk build --platform linux/arm64 -o type=registry,name=reg.example.com/app:1,push-by-digest=true \\
      --metadata-file arm64.json .      # on another
  rbk manifest merge --push amd64.json arm64.json")]
    Merge {
        /// Push each index to its registry (the images must be there); without
        /// it, the images must be in the store and the index is made there
        #[arg(long)]
        push: bool,
        /// Check and print the indexes' names and digests; push or make nothing
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Metadata files written by `rbk build --metadata-file`
        #[arg(required = true, value_name = "METADATA.json")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        registry: RegistryFlags,
    },
}

/// Runs one `rbk manifest` command against the store at `root`.
pub fn run(root: &Path, cmd: ManifestCommand) -> anyhow::Result<i32> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    match cmd {
        ManifestCommand::Create {
            name,
            images,
            annotations,
        } => create(&store, &name, &images, &annotations),
        ManifestCommand::Inspect {
            name,
            remote,
            registry,
        } => inspect(&store, &name, remote, &registry),
        ManifestCommand::Push {
            name,
            destination,
            registry,
        } => {
            let dest = Reference::parse(destination.as_deref().unwrap_or(&name))?;
            let client = Client::new(registry.options())?;
            let pushed = client
                .push_with(&store, &name, &dest, Compression::Gzip, &|_| {})
                .with_context(|| format!("cannot push {}", dest.familiar()))?;
            println!("{}", pushed.digest);
            Ok(0)
        }
        ManifestCommand::Merge {
            push,
            dry_run,
            files,
            registry,
        } => {
            let client;
            let source = if push {
                client = Client::new(registry.options())?;
                merge::Source::Registry(&client)
            } else {
                merge::Source::Store(&store)
            };
            merge::merge(&files, &source, dry_run)?;
            Ok(0)
        }
    }
}

fn create(
    store: &Store,
    name: &str,
    images: &[String],
    annotations: &[String],
) -> anyhow::Result<i32> {
    let target = Reference::parse(name)?;
    let mut members: Vec<Image> = Vec::new();
    for i in images {
        let image = store.resolve(i).with_context(|| format!("image {i}"))?;
        for m in store.index_images(&image)? {
            if image.index.is_none() && m.platform().is_none() {
                bail!("image {i} does not state its platform: an index needs one per image (import it with --platform)");
            }
            members.push(m);
        }
    }
    let mut notes = BTreeMap::new();
    for a in annotations {
        let Some((k, v)) = a.split_once('=') else {
            bail!("--annotation {a:?}: expected KEY=VALUE");
        };
        notes.insert(k.to_string(), v.to_string());
    }
    let index = store.commit_index(&members, std::slice::from_ref(&target), &notes)?;
    let platforms = index
        .index
        .as_ref()
        .map(|i| i.present_platforms().join(", "))
        .unwrap_or_default();
    eprintln!("{}: {platforms}", target.familiar());
    println!("{}", index.entry_digest());
    Ok(0)
}

fn inspect(store: &Store, name: &str, remote: bool, flags: &RegistryFlags) -> anyhow::Result<i32> {
    let bytes = if remote {
        let r = Reference::parse(name)?;
        let client = Client::new(flags.options())?;
        client.get_manifest(&r, &|_| {})?.0
    } else {
        let image = store.resolve(name)?;
        store.content.read(image.entry_digest())?
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).context("the manifest is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(0)
}
