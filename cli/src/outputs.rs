//! Where `rbk build` puts its images besides the store: `-o/--output` with
//! buildx's syntax (`type=image|registry|docker|oci|tar|local`, `dest=`,
//! `name=`, `push=`, `push-by-digest=`, `compression=`, `compression-level=`,
//! `force-compression=`, `oci-mediatypes=`), `--push` and `--load`. Every value is
//! parsed with the other flags (into the build's settings); after the build,
//! [`export`] sends each image where its outputs say, the work done by
//! `rbk_scheduler::export` and only standard output and the lines said
//! handled here.

use std::io::{self, IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
pub use rbk_scheduler::export::image::PushRecord;
use rbk_scheduler::export::{filesystem, image};
use rbk_scheduler::BuiltImage;
use rbk_store::archive::{self, SaveItem};
use rbk_store::compress::Compression;
use rbk_store::images::{Image, Store};
use rbk_store::registry::Client;
use rbk_store::variant::ExportFormat;
use rbk_store::Reference;

/// The accepted forms, for error messages.
const FORMS: &str =
    "type=image|registry|docker|oci|tar|local with dest=, name=, push=, push-by-digest=, \
compression=gzip|zstd|uncompressed, compression-level=N, force-compression=BOOL, \
oci-mediatypes=BOOL; or a directory (type=local) or - (type=tar to standard output)";

/// One `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Kept in the store (every build is); `name=` tags it, `push=true`
    /// pushes those names (`type=registry` is `type=image,push=true`);
    /// `push-by-digest=true` (which implies `push=true`) pushes into those
    /// names' repositories under the manifest's digest only, tagging
    /// nothing there.
    Image {
        names: Vec<Reference>,
        push: bool,
        by_digest: bool,
        format: ExportFormat,
    },
    /// An image archive: Docker's (`type=docker`) or an OCI layout
    /// (`type=oci`). rbk writes one tarball that is both, so either loads
    /// in docker, podman and skopeo.
    Archive {
        kind: &'static str,
        dest: Dest,
        names: Vec<Reference>,
        format: ExportFormat,
    },
    /// The final filesystem as a tarball.
    Tar { dest: Dest },
    /// The final filesystem in a directory.
    Local { dest: PathBuf },
}

impl Output {
    /// Whether it writes Docker's schema 2 media types.
    pub fn docker_media_types(&self) -> bool {
        match self {
            Output::Image { format, .. } | Output::Archive { format, .. } => {
                format.docker_media_types
            }
            Output::Tar { .. } | Output::Local { .. } => false,
        }
    }

    /// The same output pushing by digest only, when it pushes (see
    /// [`push_by_digest`]); any other output as it is.
    pub fn by_digest(self) -> Output {
        match self {
            Output::Image {
                names,
                push: true,
                format,
                ..
            } => Output::Image {
                names,
                push: true,
                by_digest: true,
                format,
            },
            other => other,
        }
    }

    /// Whether it pushes to a registry.
    pub fn pushes(&self) -> bool {
        matches!(self, Output::Image { push: true, .. })
    }

    /// Whether it writes to standard output.
    pub fn writes_stdout(&self) -> bool {
        matches!(
            self,
            Output::Tar { dest: Dest::Stdout }
                | Output::Archive {
                    dest: Dest::Stdout,
                    ..
                }
        )
    }
}

/// The output that pushes each image it is given by digest only (no tag),
/// into the repository of each of the image's tags, and records the tags
/// in the metadata file for `rbk manifest merge`: what a sharded build
/// asks for the targets whose platforms are built on several machines.
/// The same as `-o type=image,push=true,push-by-digest=true`.
pub fn push_by_digest() -> Output {
    Output::Image {
        names: Vec::new(),
        push: true,
        by_digest: true,
        format: Compression::Gzip.into(),
    }
}

/// Where an exported file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    File(PathBuf),
}

/// The `key=value` fields of one `-o`.
#[derive(Default)]
struct Fields {
    kind: Option<String>,
    dest: Option<String>,
    names: Vec<Reference>,
    push: Option<bool>,
    by_digest: Option<bool>,
    compression: Option<Compression>,
    level: Option<i32>,
    force: bool,
    oci_types: bool,
}

/// Reads the fields of `s`; an error says what is wrong.
fn fields(s: &str) -> Result<Fields, String> {
    let mut f = Fields {
        oci_types: true,
        ..Fields::default()
    };
    for field in split_csv(s).map_err(String::from)? {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?} is not key=value"))?;
        match k {
            "type" => f.kind = Some(v.to_string()),
            "dest" => f.dest = Some(v.to_string()),
            "name" => {
                for n in v.split(',').filter(|n| !n.is_empty()) {
                    f.names
                        .push(Reference::parse(n).map_err(|e| format!("name {n:?}: {e}"))?);
                }
            }
            "push" => f.push = Some(parse_bool(v).map_err(|e| format!("push: {e}"))?),
            "push-by-digest" => f.by_digest = Some(parse_bool(v).map_err(|e| format!("{k}: {e}"))?),
            "compression" => {
                f.compression = Some(
                    v.parse::<Compression>()
                        .map_err(|e| format!("compression: {e}"))?,
                )
            }
            "load" | "unpack" | "store" => {
                parse_bool(v).map_err(|e| format!("{k}: {e}"))?;
            }
            "oci-mediatypes" => f.oci_types = parse_bool(v).map_err(|e| format!("{k}: {e}"))?,
            "force-compression" => f.force = parse_bool(v).map_err(|e| format!("{k}: {e}"))?,
            "compression-level" => {
                f.level = Some(
                    v.parse::<i32>()
                        .map_err(|_| format!("compression-level: {v:?} is not a number"))?,
                )
            }
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    if f.by_digest == Some(true) && f.push == Some(false) {
        return Err("push-by-digest=true needs push=true".into());
    }
    Ok(f)
}

/// Parses one `-o` value (buildx's CSV syntax, or a bare path or `-`).
pub fn parse(s: &str) -> Result<Output> {
    if s == "-" {
        return Ok(Output::Tar { dest: Dest::Stdout });
    }
    if !s.contains('=') {
        if s.is_empty() {
            bail!("--output: empty value; expected {FORMS}");
        }
        return Ok(Output::Local {
            dest: PathBuf::from(s),
        });
    }
    let bad = |why: String| anyhow::anyhow!("--output {s:?}: {why}; expected {FORMS}");
    let Fields {
        kind,
        dest,
        names,
        push,
        by_digest,
        compression,
        level,
        force,
        oci_types,
    } = fields(s).map_err(bad)?;
    let kind = kind.ok_or_else(|| bad("type= is missing".into()))?;
    let need_dest = |dest: Option<String>| -> Result<Dest> {
        match dest.as_deref() {
            None | Some("") => Err(bad(format!("type={kind} needs dest=FILE or dest=-"))),
            Some("-") => Ok(Dest::Stdout),
            Some(p) => Ok(Dest::File(PathBuf::from(p))),
        }
    };
    let no = |what: &str, present: bool| -> Result<()> {
        if present {
            return Err(bad(format!("type={kind} takes no {what}")));
        }
        Ok(())
    };
    let format = |default: Compression| -> Result<ExportFormat> {
        export_format(compression, default, level, force, oci_types).map_err(bad)
    };
    match kind.as_str() {
        "image" | "registry" => {
            no("dest=", dest.is_some())?;
            let by_digest = by_digest.unwrap_or(false);
            Ok(Output::Image {
                names,
                push: push.unwrap_or(kind == "registry" || by_digest),
                by_digest,
                format: format(Compression::Gzip)?,
            })
        }
        "docker" | "oci" => {
            no("push=", push.is_some() || by_digest.is_some())?;
            Ok(Output::Archive {
                kind: if kind == "docker" { "docker" } else { "oci" },
                dest: need_dest(dest)?,
                names,
                // Archives keep the layers as the store does unless asked.
                format: format(Compression::None)?,
            })
        }
        "tar" | "local" => {
            no("name=", !names.is_empty())?;
            no("push=", push.is_some() || by_digest.is_some())?;
            no("compression=", compression.is_some())?;
            no("compression-level=", level.is_some())?;
            let dest = need_dest(dest)?;
            if kind == "tar" {
                return Ok(Output::Tar { dest });
            }
            match dest {
                Dest::File(dest) => Ok(Output::Local { dest }),
                Dest::Stdout => Err(bad("type=local needs a directory as dest=".into())),
            }
        }
        other => Err(bad(format!("unknown type {other:?}"))),
    }
}

/// Checks the layer format keys against each other: levels in the codec's
/// range, Docker media types only for codecs Docker defines.
fn export_format(
    compression: Option<Compression>,
    default: Compression,
    level: Option<i32>,
    force: bool,
    oci_types: bool,
) -> Result<ExportFormat, String> {
    let c = compression.unwrap_or(default);
    let range = match c {
        Compression::None => None,
        Compression::Gzip => Some(0..=9),
        Compression::Zstd => Some(0..=22),
    };
    if let Some(l) = level {
        match range {
            None => {
                return Err(format!(
                    "compression-level={l} needs compression=gzip or compression=zstd"
                ))
            }
            Some(r) if !r.contains(&l) => {
                return Err(format!(
                    "compression-level={l} is out of {c}'s range {}-{}",
                    r.start(),
                    r.end()
                ))
            }
            Some(_) => {}
        }
    }
    if !oci_types && c == Compression::Zstd {
        return Err("compression=zstd needs OCI media types (oci-mediatypes=true)".into());
    }
    Ok(ExportFormat {
        compression: c,
        // zstd's level 0 is its default, as in buildx.
        level: level.filter(|&l| !(c == Compression::Zstd && l == 0)),
        force,
        docker_media_types: !oci_types,
    })
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// Splits `a=1,"name=x,y",b=2` on commas outside double quotes, dropping
/// the quotes (buildx reads `-o` as one CSV record).
fn split_csv(s: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("an unclosed double quote");
    }
    out.push(cur);
    Ok(out)
}

/// Checks the outputs against what the build makes, before it starts: at
/// most one may write to standard output, and a filesystem output needs
/// exactly one image.
pub fn check(outputs: &[Output], images: usize) -> Result<()> {
    let to_stdout = outputs.iter().filter(|o| o.writes_stdout()).count();
    if to_stdout > 1 {
        bail!("--output: only one output can go to standard output (dest=-)");
    }
    if to_stdout == 1 && io::stdout().is_terminal() {
        bail!("--output: refusing to write a tarball to a terminal; redirect standard output or give dest=FILE");
    }
    for o in outputs {
        let single = match o {
            Output::Tar { .. } => Some("type=tar"),
            Output::Local { .. } => Some("type=local"),
            Output::Archive { names, .. } if !names.is_empty() => Some("name= on an archive"),
            Output::Image { names, .. } if !names.is_empty() => Some("name="),
            _ => None,
        };
        if let (Some(what), true) = (single, images != 1) {
            bail!("--output: {what} needs exactly one image, and this build makes {images}; choose a target");
        }
        if let Output::Image {
            names, push: true, ..
        } = o
        {
            if names.is_empty() && images == 0 {
                bail!("--output: push=true needs name= or -t");
            }
        }
    }
    Ok(())
}

/// Runs the exports for the built `images`; returns a record of each
/// image pushed, by name or by digest (what the metadata file describes).
pub fn export(
    store: &Store,
    client: &dyn Fn() -> Result<std::sync::Arc<Client>>,
    outputs: &[Output],
    images: &[BuiltImage],
) -> Result<Vec<PushRecord>> {
    let mut pushed = Vec::new();
    if outputs.is_empty() {
        return Ok(pushed);
    }
    // By manifest digest: resolving an id would read every stored manifest.
    let resolved: Vec<Image> = images
        .iter()
        .map(|b| {
            let tags = b
                .tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .collect();
            store.image_by_entry(&b.manifest, tags, None)
        })
        .collect::<Result<_, _>>()?;
    for o in outputs {
        match o {
            Output::Image {
                names,
                push,
                by_digest: digest_only,
                format,
            } => {
                let push = match (*push, *digest_only) {
                    (false, _) => Push::No,
                    (true, false) => Push::ByName(&mut pushed),
                    (true, true) => Push::ByDigest(&mut pushed),
                };
                let to = (names.as_slice(), format);
                export_image(store, client, &resolved, images, to, push)?
            }
            Output::Archive {
                kind,
                dest,
                names,
                format,
            } => {
                let items: Vec<SaveItem> = resolved
                    .iter()
                    .zip(images)
                    .map(|(image, built)| {
                        Ok(SaveItem {
                            image: image::for_export(store, image, format)?,
                            names: if names.is_empty() {
                                built
                                    .tags
                                    .iter()
                                    .filter_map(|t| Reference::parse(t).ok())
                                    .collect()
                            } else {
                                names.clone()
                            },
                        })
                    })
                    .collect::<Result<_>>()?;
                write_dest(dest, &format!("the {kind} archive"), |w| {
                    Ok(archive::save(store, &items, w)?)
                })?;
            }
            Output::Tar { dest } => {
                let image = only(&resolved)?;
                write_dest(dest, "the filesystem tarball", |w| {
                    Ok(filesystem::write_tar(store, image, w)?)
                })?;
            }
            Output::Local { dest } => filesystem::write_dir(store, only(&resolved)?, dest)?,
        }
    }
    Ok(pushed)
}

fn only(images: &[Image]) -> Result<&Image> {
    match images {
        [one] => Ok(one),
        _ => bail!("a filesystem output needs exactly one image"),
    }
}

/// Whether and how `type=image` pushes.
enum Push<'a> {
    No,
    /// Under each name, recorded here (what the registry got).
    ByName(&'a mut Vec<PushRecord>),
    /// By digest into each name's repository, recorded here.
    ByDigest(&'a mut Vec<PushRecord>),
}

/// `type=image`: tags the image with `names` (else its `-t` tags) and
/// pushes them when asked (`to`: the names and the format).
fn export_image(
    store: &Store,
    client: &dyn Fn() -> Result<std::sync::Arc<Client>>,
    resolved: &[Image],
    built: &[BuiltImage],
    (names, format): (&[Reference], &ExportFormat),
    mut push: Push<'_>,
) -> Result<()> {
    for (image, b) in resolved.iter().zip(built) {
        let names: Vec<Reference> = if names.is_empty() {
            b.tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .collect()
        } else {
            for n in names {
                store.tag(image, n)?;
            }
            names.to_vec()
        };
        if matches!(push, Push::No) {
            continue;
        }
        if names.is_empty() {
            bail!("cannot push {}: it has no name (give -t or name=)", b.name);
        }
        let client = client()?;
        let what = (image, b.name.as_str());
        match &mut push {
            Push::No => {}
            Push::ByDigest(record) => record.push(image::push_by_digest(
                store,
                &client,
                what,
                &names,
                format,
                &|r, p| eprintln!("pushed {}@{}", r.familiar_repository(), p.digest),
            )?),
            Push::ByName(record) => record.push(image::push_by_names(
                store,
                &client,
                what,
                &names,
                format,
                &|n, p| eprintln!("pushed {}: {}", n.familiar(), p.digest),
            )?),
        }
    }
    Ok(())
}

/// Writes to `dest` through `write`: a file (made beside its place and
/// renamed, so a failure leaves no half file) or standard output.
fn write_dest(
    dest: &Dest,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match dest {
        Dest::Stdout => {
            let mut out = io::stdout().lock();
            write(&mut out)?;
            out.flush().context("cannot write to standard output")
        }
        Dest::File(path) => write_file_atomically(path, write)
            .with_context(|| format!("cannot export {what} to {}", path.display())),
    }
}

/// Writes `path` through a file beside it that is renamed into place (see
/// [`rbk_scheduler::export::file::write_file_atomically`]).
pub(crate) fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    rbk_scheduler::export::file::write_file_atomically(path, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_forms() {
        assert_eq!(
            parse("out").unwrap(),
            Output::Local {
                dest: PathBuf::from("out")
            }
        );
        assert_eq!(parse("-").unwrap(), Output::Tar { dest: Dest::Stdout });
        assert_eq!(
            parse("type=tar,dest=fs.tar").unwrap(),
            Output::Tar {
                dest: Dest::File(PathBuf::from("fs.tar"))
            }
        );
        match parse("type=registry,\"name=r.io/a:1,r.io/a:latest\"").unwrap() {
            Output::Image {
                names,
                push,
                by_digest,
                format,
            } => {
                assert!(!by_digest);
                assert_eq!(names.len(), 2);
                assert!(push);
                assert_eq!(format, ExportFormat::from(Compression::Gzip));
            }
            other => panic!("{other:?}"),
        }
        match parse("type=image,name=a:1,push=true,compression=zstd").unwrap() {
            Output::Image { push, format, .. } => {
                assert!(push && format.compression == Compression::Zstd)
            }
            other => panic!("{other:?}"),
        }
        match parse(
            "type=registry,name=a,compression=gzip,compression-level=9,\
             force-compression=true,oci-mediatypes=false",
        )
        .unwrap()
        {
            Output::Image { format, .. } => assert_eq!(
                format,
                ExportFormat {
                    compression: Compression::Gzip,
                    level: Some(9),
                    force: true,
                    docker_media_types: true,
                }
            ),
            other => panic!("{other:?}"),
        }
        match parse("type=docker,dest=x,compression=zstd,compression-level=19").unwrap() {
            Output::Archive { format, .. } => {
                assert_eq!(format.compression, Compression::Zstd);
                assert_eq!(format.level, Some(19));
            }
            other => panic!("{other:?}"),
        }
        match parse("type=oci,dest=x").unwrap() {
            Output::Archive { format, .. } => {
                assert_eq!(format, ExportFormat::from(Compression::None))
            }
            other => panic!("{other:?}"),
        }
        match parse("type=registry,name=r.io/a:1,push-by-digest=true").unwrap() {
            Output::Image {
                push, by_digest, ..
            } => assert!(push && by_digest),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("type=oci,dest=-").unwrap(),
            Output::Archive {
                kind: "oci",
                dest: Dest::Stdout,
                ..
            }
        ));
    }

    #[test]
    fn bad_values_name_the_problem() {
        for (v, want) in [
            ("type=zip,dest=x", "unknown type"),
            ("type=docker", "needs dest="),
            ("type=local,dest=-", "needs a directory"),
            ("type=tar,dest=x,name=a", "takes no name="),
            ("type=image,dest=x", "takes no dest="),
            ("type=image,push=maybe", "not true or false"),
            ("type=image,compression=lz4", "compression"),
            (
                "type=docker,dest=x,compression-level=3",
                "needs compression=gzip",
            ),
            ("dest=x", "type= is missing"),
            ("type=image,colour=red", "unknown key"),
            (
                "type=image,name=a,push=false,push-by-digest=true",
                "needs push=true",
            ),
            ("type=docker,dest=x,push-by-digest=true", "takes no push="),
            ("type=image,\"name=a", "unclosed"),
            ("type=image,oci-mediatypes=maybe", "not true or false"),
            (
                "type=image,compression=zstd,oci-mediatypes=false",
                "needs OCI media types",
            ),
            ("type=registry,name=a,compression-level=10", "range 0-9"),
            ("type=registry,name=a,compression-level=x", "not a number"),
            (
                "type=tar,dest=x,compression-level=1",
                "takes no compression-level=",
            ),
        ] {
            let e = format!("{:#}", parse(v).unwrap_err());
            assert!(e.contains(want), "{v}: {e}");
            assert!(e.contains("--output"), "{v}: {e}");
        }
    }
}
