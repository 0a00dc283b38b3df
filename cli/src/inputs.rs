//! Turns command-line arguments (a context dir with a Dockerfile, or an
//! rbk.toml with target names) into compiler inputs, reading the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rbk_compiler::lower::{dependency_order, Input, NamedContext, NoResolver};
use rbk_compiler::targets::{ResolvedTarget, TargetFile};

/// What `rbk build`/`rbk graph` were asked to compile.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildInputArgs {
    /// Name of the Dockerfile (default: PATH/Dockerfile; - reads it from
    /// standard input)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set a build-time variable (repeatable)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Name and optionally a tag, name:tag (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Another build context (repeatable), for FROM NAME, COPY --from=NAME
    /// and RUN --mount=from=NAME: NAME=DIR, NAME=docker-image://REF or
    /// NAME=oci-layout://DIR[:TAG][@DIGEST]
    #[arg(
        long = "build-context",
        value_name = "NAME=DIR|docker-image://REF|oci-layout://DIR"
    )]
    pub build_contexts: Vec<String>,
    /// Set a label on the image(s) (repeatable; over the Dockerfile's and
    /// rbk.toml's)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Target platform (os/arch)
    #[arg(long)]
    pub platform: Option<String>,
    /// Build context directory, or an rbk.toml file
    #[arg(value_name = "PATH", default_value = ".")]
    pub path: PathBuf,
    /// With an rbk.toml: the targets or groups to build (default: group "default", else all)
    #[arg(value_name = "TARGET")]
    pub names: Vec<String>,
}

/// A `--build-arg`: `KEY=VALUE`, or `KEY` alone for the value of the
/// environment variable KEY (as docker does; unset, it is not passed).
fn parse_build_arg(s: &str) -> Result<Option<(String, String)>> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Some((k.to_string(), v.to_string()))),
        None if !s.is_empty() => Ok(crate::env::text(s).map(|v| (s.to_string(), v))),
        _ => bail!("invalid --build-arg {s:?}: expected KEY=VALUE or KEY"),
    }
}

/// `--build-context NAME=VALUE`s.
fn parse_build_contexts(values: &[String]) -> Result<BTreeMap<String, NamedContext>> {
    let mut out = BTreeMap::new();
    for v in values {
        let Some((name, value)) = v
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        else {
            bail!("invalid --build-context {v:?}: expected NAME=DIR or NAME=docker-image://REF");
        };
        let context = parse_context(value, Path::new("."))
            .with_context(|| format!("--build-context {name}"))?;
        out.insert(name.to_string(), context);
    }
    Ok(out)
}

/// One named context's value: `docker-image://REF`, `target:NAME` or a
/// directory (relative to `base`).
fn parse_context(value: &str, base: &Path) -> Result<NamedContext> {
    if let Some(r) = value.strip_prefix("docker-image://") {
        rbk_store::Reference::parse(r).with_context(|| format!("docker-image://{r}"))?;
        return Ok(NamedContext::Image(r.to_string()));
    }
    if let Some(t) = value.strip_prefix("target:") {
        return Ok(NamedContext::Target(t.to_string()));
    }
    if value.starts_with("oci-layout://") {
        bail!("oci-layout:// contexts are read by `rbk build` only");
    }
    if value.contains("://") || value.starts_with("git@") {
        bail!("remote contexts ({value}) are not supported; give a directory, docker-image://REF or target:NAME");
    }
    let dir = base
        .join(value)
        .canonicalize()
        .with_context(|| format!("{value} does not exist"))?;
    if !dir.is_dir() {
        bail!("{value} is not a directory");
    }
    Ok(NamedContext::Dir(dir.display().to_string()))
}

/// `--label KEY=VALUE`s.
fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in labels {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => bail!("invalid --label {l:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile, if there is one
/// (BuildKit prefers it to the context's `.dockerignore`).
fn own_ignore_file(dockerfile: &Path) -> Option<String> {
    if dockerfile == Path::new("-") {
        return None;
    }
    let mut name = dockerfile.file_name()?.to_os_string();
    name.push(".dockerignore");
    let path = dockerfile.with_file_name(name);
    let path = path.canonicalize().ok()?;
    path.is_file().then(|| path.display().to_string())
}

/// The Dockerfile's text: `-` is standard input.
fn read_dockerfile(path: &Path) -> Result<String> {
    if path != Path::new("-") {
        return read(path);
    }
    use std::io::{IsTerminal as _, Read as _};
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("-f -: no Dockerfile on standard input (pipe one in)");
    }
    let mut bytes = Vec::new();
    stdin
        .read_to_end(&mut bytes)
        .context("cannot read the Dockerfile from standard input")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn absolute(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("build context {} does not exist", path.display()))
}

/// The input of one rbk.toml target, with the command line's settings
/// over the file's.
fn target_input(
    t: &ResolvedTarget,
    args: &BuildInputArgs,
    build_args: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    named_contexts: &BTreeMap<String, NamedContext>,
    base: &Path,
) -> Result<Input> {
    let mut merged = t.args.clone();
    merged.extend(build_args.clone());
    let mut tags = t.tags.clone();
    tags.extend(args.tags.iter().cloned());
    let mut target_labels = t.labels.clone();
    target_labels.extend(labels.clone());
    let mut contexts = BTreeMap::new();
    for (name, value) in &t.contexts {
        let c = parse_context(value, base)
            .with_context(|| format!("target {:?}: contexts.{name}", t.name))?;
        contexts.insert(name.clone(), c);
    }
    contexts.extend(named_contexts.clone());
    Ok(Input {
        name: t.name.clone(),
        file: t.dockerfile.display().to_string(),
        source: read(&t.dockerfile)?,
        context: absolute(&t.context)?.display().to_string(),
        target: args.target.clone().or(t.target.clone()),
        build_args: merged,
        tags,
        labels: target_labels,
        platform: args.platform.clone().or(t.platform.clone()),
        ignore_file: own_ignore_file(&t.dockerfile),
        named_contexts: contexts,
    })
}

/// True when PATH names an rbk.toml rather than a context directory.
pub fn is_target_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml") || path.is_file()
}

/// The shared-cache settings of one rbk.toml target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCaches {
    /// The target (image) name.
    pub name: String,
    /// Its `cache-to` entries.
    pub cache_to: Vec<String>,
    /// Its `cache-from` entries.
    pub cache_from: Vec<String>,
}

/// Reads the Dockerfiles the arguments name.
pub fn load(args: &BuildInputArgs) -> Result<Vec<Input>> {
    Ok(load_with_caches(args)?.0)
}

/// [`load`], plus the cache settings of each rbk.toml target (none for a
/// plain context directory).
pub fn load_with_caches(args: &BuildInputArgs) -> Result<(Vec<Input>, Vec<TargetCaches>)> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        if let Some((k, v)) = parse_build_arg(a)? {
            build_args.insert(k, v);
        }
    }
    let labels = parse_labels(&args.labels)?;
    let named_contexts = parse_build_contexts(&args.build_contexts)?;
    if is_target_file(&args.path) {
        if args.file.is_some() {
            bail!("-f cannot be used with an rbk.toml; set `dockerfile` in the target instead");
        }
        let file = args.path.display().to_string();
        let text = read(&args.path)?;
        let targets = TargetFile::parse(&text, &file)?;
        let base = args.path.parent().unwrap_or(Path::new("."));
        let selected = targets.select(&args.names, base, &file)?;
        // Every target is a candidate: the selected ones may be built on
        // others (FROM one of their tags, a target: context), which then
        // build first in the same run. A target nobody selected whose
        // Dockerfile cannot be read is left out.
        let mut all: Vec<(ResolvedTarget, Input)> = Vec::new();
        for t in targets.all(base) {
            let wanted = selected.iter().any(|s| s.name == t.name);
            match target_input(&t, args, &build_args, &labels, &named_contexts, base) {
                Ok(input) => all.push((t, input)),
                Err(e) if wanted => return Err(e),
                Err(_) => {}
            }
        }
        let wanted: Vec<usize> = selected
            .iter()
            .filter_map(|s| all.iter().position(|(t, _)| t.name == s.name))
            .collect();
        let candidates: Vec<Input> = all.iter().map(|(_, i)| i.clone()).collect();
        let order = dependency_order(&candidates, &wanted, &NoResolver)?;
        let mut out = Vec::with_capacity(order.len());
        let mut caches = Vec::new();
        for i in order {
            let (t, input) = &all[i];
            if !t.cache_to.is_empty() || !t.cache_from.is_empty() {
                caches.push(TargetCaches {
                    name: t.name.clone(),
                    cache_to: t.cache_to.clone(),
                    cache_from: t.cache_from.clone(),
                });
            }
            out.push(input.clone());
        }
        return Ok((out, caches));
    }
    if !args.names.is_empty() {
        bail!(
            "target names ({}) are only for an rbk.toml; {} is a directory",
            args.names.join(", "),
            args.path.display()
        );
    }
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.path.join("Dockerfile"));
    let context = absolute(&args.path)?;
    let shown = if dockerfile == Path::new("-") {
        "<stdin>".to_string()
    } else {
        dockerfile.display().to_string()
    };
    let name = args.tags.first().cloned().unwrap_or_else(|| shown.clone());
    Ok((
        vec![Input {
            name,
            file: shown,
            source: read_dockerfile(&dockerfile)?,
            context: context.display().to_string(),
            target: args.target.clone(),
            build_args,
            tags: args.tags.clone(),
            labels,
            platform: args.platform.clone(),
            ignore_file: own_ignore_file(&dockerfile),
            named_contexts,
        }],
        Vec::new(),
    ))
}
