//! Image commands, docker-compatible: `images`, `inspect`, `history`, `tag`,
//! `rmi`, `prune`, `save`, `load`, `import`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rbk_store::archive;
use rbk_store::images::{PruneOptions, RemoveEvent};
use rbk_store::oci::{ContainerConfig, LayerCompression};
use rbk_store::{Image, Reference, Store};
use serde_json::{json, Map, Value};

mod filter;
mod history;
mod list;
use history::history;
pub(crate) use list::created_at;
use list::{images, ListOptions};

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
        ImageCommand::Prune { all } => {
            let report = store.prune(PruneOptions { cache: all })?;
            if !report.images.is_empty() {
                writeln!(out, "Deleted Images:")?;
                for d in &report.images {
                    writeln!(out, "deleted: {d}")?;
                }
                writeln!(out)?;
            }
            if report.cache_records > 0 {
                writeln!(out, "Deleted build cache records: {}", report.cache_records)?;
            }
            writeln!(
                out,
                "Total reclaimed space: {}",
                human_size(report.reclaimed)
            )?;
            Ok(0)
        }
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

pub(crate) fn print_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Docker's `Config` object: every standard key present, null when unset.
fn docker_config(c: Option<&ContainerConfig>) -> Value {
    let c = c.cloned().unwrap_or_default();
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("Hostname", json!(""));
    put("Domainname", json!(""));
    put("User", json!(c.user.clone().unwrap_or_default()));
    put("AttachStdin", json!(false));
    put("AttachStdout", json!(false));
    put("AttachStderr", json!(false));
    if let Some(p) = &c.exposed_ports {
        put("ExposedPorts", json!(p));
    }
    put("Tty", json!(false));
    put("OpenStdin", json!(false));
    put("StdinOnce", json!(false));
    put("Env", json!(c.env));
    put("Cmd", json!(c.cmd));
    if let Some(h) = &c.healthcheck {
        put("Healthcheck", json!(h));
    }
    if let Some(a) = c.args_escaped {
        put("ArgsEscaped", json!(a));
    }
    put("Image", json!(""));
    put("Volumes", json!(c.volumes));
    put(
        "WorkingDir",
        json!(c.working_dir.clone().unwrap_or_default()),
    );
    put("Entrypoint", json!(c.entrypoint));
    put("OnBuild", json!(c.on_build));
    put("Labels", json!(c.labels));
    if let Some(s) = &c.stop_signal {
        put("StopSignal", json!(s));
    }
    if let Some(s) = &c.shell {
        put("Shell", json!(s));
    }
    Value::Object(m)
}

/// The `docker image inspect` object of one image.
pub fn inspect_json(store: &Store, image: &Image) -> Value {
    let chains = image.chain_ids();
    let fs_dir = |d: &rbk_store::Digest| store.snapshot_dir(d).join("fs").display().to_string();
    let mut data = Map::new();
    if let Some(top) = chains.last() {
        let lower: Vec<String> = chains[..chains.len() - 1]
            .iter()
            .rev()
            .map(fs_dir)
            .collect();
        if !lower.is_empty() {
            data.insert("LowerDir".into(), json!(lower.join(":")));
        }
        data.insert("UpperDir".into(), json!(fs_dir(top)));
        data.insert(
            "WorkDir".into(),
            json!(store.snapshot_dir(top).join("work").display().to_string()),
        );
    }
    let comment = image
        .config
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    let mut v = json!({
        "Id": image.id,
        "RepoTags": image.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": image.tags.iter().map(|t| t.with_digest(image.entry_digest().clone()).familiar()).collect::<std::collections::BTreeSet<_>>(),
        "Parent": "",
        "Comment": comment,
        "Created": image.config.created.clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": image.config.author.clone().unwrap_or_default(),
        "Config": docker_config(image.config.config.as_ref()),
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Size": image.size,
        "GraphDriver": { "Data": data, "Name": "overlay2" },
        "RootFS": { "Type": image.config.rootfs.kind, "Layers": image.config.rootfs.diff_ids },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    });
    if let (Some(variant), Some(obj)) = (&image.config.variant, v.as_object_mut()) {
        obj.insert("Variant".into(), json!(variant));
    }
    // What the name points at, as Docker's containerd store shows it: the
    // index of a multi-platform image, with the platforms held here.
    if let (Ok(desc), Some(obj)) = (store.entry_descriptor(image), v.as_object_mut()) {
        obj.insert(
            "Descriptor".into(),
            json!({"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}),
        );
        if let Some(index) = &image.index {
            obj.insert("Platforms".into(), json!(index.present_platforms()));
        }
    }
    v
}

fn inspect(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    platform: Option<&str>,
    format: Option<&str>,
) -> anyhow::Result<i32> {
    // `json` is the default document, as with Docker.
    let format = match format {
        Some(f) if f.trim() == "json" => None,
        Some(f) => Some(crate::format::Format::parse(f)?),
        None => None,
    }
    .flatten();
    let want = platform
        .map(|p| p.parse::<rbk_store::oci::PlatformSpec>())
        .transpose()
        .context("--platform")?;
    let mut found = Vec::new();
    let mut code = 0;
    for n in names {
        match store.resolve_for(n, want.as_ref()) {
            Ok(image) => found.push(inspect_json(store, &image)),
            Err(e) => {
                eprintln!("rbk: {}", rbk_scheduler::error_chain(&e));
                code = 1;
            }
        }
    }
    match format {
        Some(f) => {
            for v in &found {
                writeln!(out, "{}", f.render(v)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
    }
    Ok(code)
}

/// `rbk import`.
fn import(
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

fn rmi(store: &Store, out: &mut dyn Write, names: &[String], force: bool) -> anyhow::Result<i32> {
    let mut code = 0;
    for n in names {
        if let Some(conflict) = (!force).then(|| in_use(store, n)).flatten() {
            eprintln!("rbk: {conflict}");
            code = 1;
            continue;
        }
        match store.remove(n, force) {
            Ok(events) => {
                for e in events {
                    match e {
                        RemoveEvent::Untagged(r) => writeln!(out, "Untagged: {}", r.familiar())?,
                        RemoveEvent::Deleted(d) => writeln!(out, "Deleted: {d}")?,
                    }
                }
            }
            Err(e) => {
                eprintln!("rbk: {}", rbk_scheduler::error_chain(&e));
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Why `rmi NAME` must be forced, as Docker says it: a container on record
/// uses the image, and NAME is its last tag or its id (removing it would
/// take the files the container stands on).
fn in_use(store: &Store, name: &str) -> Option<String> {
    let image = store.resolve(name).ok()?;
    let is_tag = Reference::parse(name).is_ok_and(|r| image.tags.contains(&r));
    if is_tag && image.tags.len() > 1 {
        return None;
    }
    let user = rbk_runtime::container::list(store.root())
        .into_iter()
        .find(|c| store.resolve(&c.image).is_ok_and(|i| i.id == image.id))?;
    let short = image.id.hex().get(..12).unwrap_or_default().to_string();
    Some(format!(
        "conflict: unable to remove repository reference {name:?} (must force) - container {} is using its referenced image {short}",
        user.id
    ))
}

fn save(store: &Store, names: &[String], output: Option<&Path>) -> anyhow::Result<i32> {
    let items = archive::save_items(store, names)?;
    match output {
        Some(path) => {
            crate::outputs::write_file_atomically(path, |out| {
                archive::save(store, &items, out)?;
                Ok(())
            })?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect the output");
            }
            archive::save(store, &items, crate::pipe::stdout())?;
        }
    }
    Ok(0)
}

fn load(
    store: &Store,
    out: &mut dyn Write,
    input: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<i32> {
    let images = match input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            archive::load(store, f)?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("no archive given: use -i FILE or pipe one on standard input");
            }
            archive::load(store, io::stdin().lock())?
        }
    };
    if !quiet {
        for image in images {
            if image.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", image.id)?;
            }
            for t in &image.tags {
                writeln!(out, "Loaded image: {}", t.familiar())?;
            }
        }
    }
    Ok(0)
}

/// Sizes as Docker prints them: decimal units, three significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// "5 minutes ago", like Docker's `CREATED` column.
pub(crate) fn since(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return "N/A".to_string();
    };
    ago((time::OffsetDateTime::now_utc() - t).whole_seconds().max(0))
}

/// `secs` seconds as Docker's `CREATED` column says them (go-units'
/// HumanDuration, then " ago").
fn ago(secs: i64) -> String {
    let mins = secs / 60;
    let hours = (secs + 1800) / 3600;
    let ago = match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    };
    format!("{ago} ago")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
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
    fn inspect_has_docker_fields() {
        let (_d, store, img) = store();
        let v = inspect_json(&store, &img);
        assert_eq!(v["Id"], img.id.to_string());
        assert_eq!(
            v["RepoTags"],
            json!(["busybox:latest", "localhost/busybox:1"])
        );
        assert_eq!(v["Config"]["Cmd"], json!(["/bin/sh"]));
        assert_eq!(v["Config"]["Entrypoint"], Value::Null);
        assert_eq!(v["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(v["RootFS"]["Layers"], json!(img.config.rootfs.diff_ids));
        let upper = v["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
        assert!(
            upper.ends_with(&format!("snapshots/{}/fs", img.chain_ids()[0].hex())),
            "{upper}"
        );
        assert!(v["GraphDriver"]["Data"].get("LowerDir").is_none());
        assert_eq!(v["Os"], "linux");
    }

    #[test]
    fn inspect_format() {
        let (_d, store, img) = store();
        let run = |f: &str| {
            let mut out = Vec::new();
            inspect(&store, &mut out, &["busybox".to_string()], None, Some(f))
                .map(|_| String::from_utf8(out).unwrap())
        };
        assert_eq!(run("{{.Id}}").unwrap(), format!("{}\n", img.id));
        assert_eq!(run("{{index .RepoTags 0}}").unwrap(), "busybox:latest\n");
        assert_eq!(run("{{.Config.Cmd}}").unwrap(), "[/bin/sh]\n");
        let config: Value = serde_json::from_str(&run("{{json .Config}}").unwrap()).unwrap();
        assert_eq!(config["ExposedPorts"], json!({"80/tcp": {}}));
        let e = format!("{:#}", run("{{.Foo}}").unwrap_err());
        assert!(e.contains("at <.Foo>: can't evaluate field Foo"), "{e}");
        let doc: Value = serde_json::from_str(&run("json").unwrap()).unwrap();
        assert_eq!(doc[0]["Id"], img.id.to_string());
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

    #[test]
    fn sizes_like_docker() {
        for (n, s) in [
            (0, "0B"),
            (999, "999B"),
            (1234, "1.23kB"),
            (4_264_000, "4.26MB"),
            (187_000_000, "187MB"),
            (4_200_000, "4.2MB"),
            (10_000, "10kB"),
        ] {
            assert_eq!(human_size(n), s, "{n}");
        }
    }

    #[test]
    fn created_since() {
        assert_eq!(since("nonsense"), "N/A");
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(59), "59 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(
            since("2000-01-01T00:00:00Z").split(' ').nth(1),
            Some("years")
        );
    }
}
