//! Image commands, docker-compatible: `images`, `inspect`, `history`, `tag`,
//! `rmi`, `prune`, `save`, `load`, `import`.
//!
//! This file holds their flags and the dispatch; each command lives in a
//! file of its own under `cmd_image/` (`list.rs` is `images`, with
//! `filter.rs` for its `--filter`). `tag`, one call to the store, is
//! done here.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rbk_store::{Reference, Store};

mod filter;
mod history;
mod import;
mod inspect;
mod list;
mod load;
mod prune;
mod rmi;
mod save;

use history::history;
use import::import;
use inspect::inspect;
use list::{images, ListOptions};
use load::load;
use prune::prune;
use rmi::rmi;
use save::save;

const IMAGES_EXAMPLES: &str = "Examples:
  rbk images
  rbk images -q -f dangling=true
  rbk images -f reference='busy*' -f label=org.opencontainers.image.version
  rbk images --format '{{.Repository}}:{{.Tag}} {{.Size}}'
  rbk images --format 'table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}'
  rbk images --format '{{json .}}'";

const INSPECT_EXAMPLES: &str = "Examples:
  rbk inspect busybox
  rbk inspect -f '{{.Id}}' busybox
  rbk inspect -f '{{index .RepoTags 0}} {{.Config.Env}}' busybox
  rbk inspect -f '{{json .Config}}' busybox";

const HISTORY_EXAMPLES: &str = "Examples:
  rbk history busybox
  rbk history --format '{{.CreatedBy}}' busybox
  rbk history --format 'table {{.ID}}\\t{{.Size}}\\t{{.CreatedBy}}' busybox";

/// The image-management subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// List images (REPOSITORY, TAG, IMAGE ID, CREATED, SIZE, PLATFORM)
    #[command(alias = "ls", alias = "list", after_help = IMAGES_EXAMPLES)]
    Images {
        /// Only show image ids
        #[arg(short, long)]
        quiet: bool,
        /// Show all images (rbk keeps no intermediate images: the same list)
        #[arg(short, long)]
        all: bool,
        /// Only images that match: dangling=true|false, label=KEY[=VALUE],
        /// reference=PATTERN (repeatable)
        #[arg(short, long = "filter", value_name = "FILTER")]
        filter: Vec<String>,
        /// Output format: table (default), json (one object per line), or a
        /// Go template: '{{.Repository}}:{{.Tag}}', '{{json .}}',
        /// 'table {{.Repository}}\t{{.Size}}'. Fields: ID Repository Tag
        /// Digest CreatedSince CreatedAt Size Containers Platform
        #[arg(long)]
        format: Option<String>,
        /// Show full image ids
        #[arg(long)]
        no_trunc: bool,
        /// Only images of this repository (e.g. busybox)
        repository: Option<String>,
    },
    /// Show images as JSON, like `docker image inspect`
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect {
        /// A Go template applied to each image's JSON document instead:
        /// '{{.Id}}', '{{index .RepoTags 0}}', '{{json .Config}}'
        #[arg(short, long)]
        format: Option<String>,
        /// Of a multi-platform image, the image of this platform
        /// (os/arch[/variant]; default this machine's, else the first)
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
        /// Image names or ids
        #[arg(required = true, value_name = "NAME|ID", add = crate::complete::images())]
        names: Vec<String>,
    },
    /// Show the history (layers) of an image
    #[command(after_help = HISTORY_EXAMPLES)]
    History {
        /// A Go template per layer: '{{.CreatedBy}}', 'table {{.ID}}\t{{.Size}}'.
        /// Fields: ID CreatedSince CreatedAt CreatedBy Size Comment
        #[arg(long)]
        format: Option<String>,
        /// Image name or id
        #[arg(value_name = "NAME|ID", add = crate::complete::images())]
        name: String,
        /// Do not truncate the output
        #[arg(long)]
        no_trunc: bool,
        /// Only show image ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Give an image another name
    Tag {
        /// Existing image name or id
        #[arg(value_name = "SOURCE", add = crate::complete::images())]
        source: String,
        /// New name[:tag]
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Remove images: untags, and deletes an image when no tag is left
    #[command(alias = "image-rm")]
    Rmi {
        /// Remove an image by id even when several tags point at it
        #[arg(short, long)]
        force: bool,
        /// Image names or ids
        #[arg(required = true, value_name = "NAME|ID", add = crate::complete::images())]
        names: Vec<String>,
    },
    /// Free what no tag or cache record needs; prints the space reclaimed
    Prune {
        /// Also drop the build cache
        #[arg(short, long)]
        all: bool,
    },
    /// Write images to a tar (docker-archive and OCI layout in one)
    Save {
        /// Output file (default: standard output, if not a terminal)
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Image names or ids
        #[arg(required = true, value_name = "NAME|ID", add = crate::complete::images())]
        names: Vec<String>,
    },
    /// Load images from a docker-archive or OCI archive (plain, gzip, zstd)
    Load {
        /// Input file (default: standard input)
        #[arg(short, long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print nothing
        #[arg(short, long)]
        quiet: bool,
    },
    /// Make an image from a rootfs tarball, like `docker import`
    Import {
        /// The tarball ('-' for standard input)
        #[arg(value_name = "TARBALL")]
        tarball: String,
        /// Name[:tag] for the image
        #[arg(value_name = "NAME[:TAG]")]
        reference: Option<String>,
        /// Dockerfile instruction to apply (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR)
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
        /// Compression of the layer kept in the store: none (the default,
        /// like a build's layers; `rbk push` compresses it), gzip or zstd
        #[arg(long, default_value = "none", value_parser = ["gzip", "zstd", "none"])]
        compression: String,
        /// The platform the rootfs is for (os/arch[/variant], default the
        /// host's), as `docker import --platform`. With NAME, the image is
        /// added to NAME's platforms (NAME names an index of them), in place
        /// of one of the same platform
        #[arg(long, value_name = "PLATFORM")]
        platform: Option<String>,
    },
}

/// Runs one image command against the store at `root`; returns the exit code.
pub fn run(root: &Path, cmd: ImageCommand) -> anyhow::Result<i32> {
    match run_inner(root, cmd) {
        // `rbk images | head` is not an error.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        other => other,
    }
}

fn run_inner(root: &Path, cmd: ImageCommand) -> anyhow::Result<i32> {
    let store = Store::open(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    let out = &mut crate::pipe::stdout();
    match cmd {
        ImageCommand::Images {
            quiet,
            all: _,
            filter,
            format,
            no_trunc,
            repository,
        } => images(
            &store,
            out,
            &ListOptions {
                quiet,
                format: format.as_deref(),
                no_trunc,
                repository: repository.as_deref(),
                filters: &filter,
            },
        ),
        ImageCommand::Inspect {
            names,
            platform,
            format,
        } => inspect(&store, out, &names, platform.as_deref(), format.as_deref()),
        ImageCommand::History {
            name,
            no_trunc,
            quiet,
            format,
        } => history(&store, out, &name, no_trunc, quiet, format.as_deref()),
        ImageCommand::Tag { source, target } => {
            let image = store.resolve(&source)?;
            store.tag(&image, &Reference::parse(&target)?)?;
            Ok(0)
        }
        ImageCommand::Rmi { force, names } => rmi(&store, out, &names, force),
        ImageCommand::Prune { all } => prune(&store, out, all),
        ImageCommand::Save { output, names } => save(&store, &names, output.as_deref()),
        ImageCommand::Load { input, quiet } => load(&store, out, input.as_deref(), quiet),
        ImageCommand::Import {
            tarball,
            reference,
            changes,
            compression,
            platform,
        } => import(
            &store,
            out,
            &tarball,
            reference.as_deref(),
            &changes,
            &compression,
            platform.as_deref(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use rbk_store::{archive, Image};
    use serde_json::Value;

    use super::*;

    /// A store with one image imported from an empty tar, tagged twice.
    pub(crate) fn store() -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty_tar = vec![0u8; 1024];
        let r = Reference::parse("localhost/busybox:1").unwrap();
        let changes = ["CMD [\"/bin/sh\"]".to_string(), "EXPOSE 80".to_string()];
        let img = archive::import(&store, &empty_tar[..], Some(&r), &changes).unwrap();
        store
            .tag(&img, &Reference::parse("busybox").unwrap())
            .unwrap();
        let img = store.resolve("busybox").unwrap();
        (dir, store, img)
    }

    #[test]
    fn images_table_quiet_and_json() {
        let (_d, store, img) = store();
        let mut out = Vec::new();
        images(&store, &mut out, &ListOptions::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("REPOSITORY          TAG      IMAGE ID"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("busybox             latest   "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("localhost/busybox   1        "),
            "{text}"
        );
        assert!(lines[1].contains(img.id.short()), "{text}");

        let mut out = Vec::new();
        images(
            &store,
            &mut out,
            &ListOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", img.id.short())
        );

        let mut out = Vec::new();
        images(
            &store,
            &mut out,
            &ListOptions {
                format: Some("json"),
                repository: Some("localhost/busybox"),
                ..Default::default()
            },
        )
        .unwrap();
        let rows: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["Repository"], "localhost/busybox");
        assert_eq!(rows[0]["Tag"], "1");

        let mut out = Vec::new();
        images(
            &store,
            &mut out,
            &ListOptions {
                format: Some("{{.Repository}}:{{.Tag}}"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "busybox:latest\nlocalhost/busybox:1\n"
        );
    }

    #[test]
    fn history_lists_layers_newest_first() {
        let (_d, store, img) = store();
        let mut out = Vec::new();
        history(&store, &mut out, "busybox", false, false, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("IMAGE"), "{text}");
        assert!(
            text.lines().nth(1).unwrap().starts_with(img.id.short()),
            "{text}"
        );
        assert!(text.contains("rbk import"), "{text}");
    }
}
