//! Turns command-line arguments (a context dir with a Dockerfile, or an
//! rbk.toml with target names) into compiler inputs, reading the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rbk_compiler::lower::{dependency_order, Input, NamedContext, NoResolver};
use rbk_compiler::targets::{ResolvedTarget, Syntax, TargetFile};

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
    /// Target platform(s): os/arch[/variant], comma-separated for a
    /// multi-platform image (one index holding each platform's image)
    #[arg(long, value_name = "PLATFORM[,PLATFORM…]")]
    pub platform: Option<String>,
    /// A build context directory, a Dockerfile, or a target file
    /// (rbk.toml, docker-bake.json, docker-bake.hcl, compose.yaml)
    #[arg(value_name = "PATH", default_value = ".")]
    pub path: PathBuf,
    /// Override a target file's value (repeatable): TARGET.KEY=VALUE, as
    /// bake (TARGET may be * or use *; KEY: args.NAME, labels.NAME, tags,
    /// platform, target, context, dockerfile, output, cache-from, cache-to,
    /// secret, ssh, no-cache, pull)
    #[arg(long = "set", value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// With an rbk.toml: the targets or groups to build (default: group "default", else all)
    #[arg(value_name = "TARGET", add = target_candidates())]
    pub names: Vec<String>,
    /// The Dockerfile `rbk build -` read from standard input (`-f -` then
    /// names it).
    #[arg(skip)]
    pub stdin_dockerfile: Option<String>,
}

/// The files `rbk bake` looks for, the first found being the one used:
/// bake's own files over compose files (bake gives them precedence when
/// it merges them), rbk.toml last.
pub const DEFAULT_FILES: &[&str] = &[
    "docker-bake.hcl",
    "docker-bake.json",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "rbk.toml",
];

/// The targets and groups of the target file bake would pick in the
/// current directory (rbk.toml, docker-bake.hcl/json, compose.yaml), for
/// shell completion.
fn target_candidates() -> clap_complete::engine::ArgValueCandidates {
    clap_complete::engine::ArgValueCandidates::new(|| {
        let Ok(dir) = std::env::current_dir() else {
            return Vec::new();
        };
        target_names_in(&dir)
            .into_iter()
            .map(clap_complete::engine::CompletionCandidate::new)
            .collect()
    })
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
fn read_dockerfile(path: &Path, already_read: Option<&str>) -> Result<String> {
    if path != Path::new("-") {
        return read(path);
    }
    if let Some(text) = already_read {
        return Ok(text.to_string());
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
    extra_tags: &[String],
    build_args: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    named_contexts: &BTreeMap<String, NamedContext>,
    base: &Path,
) -> Result<Input> {
    let mut merged = t.args.clone();
    merged.extend(build_args.clone());
    let mut tags = t.tags.clone();
    tags.extend(extra_tags.iter().cloned());
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
        platform: None,
        ignore_file: own_ignore_file(&t.dockerfile),
        named_contexts: contexts,
    })
}

/// What PATH names, by name and then by content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A build context directory.
    Context,
    /// A Dockerfile (its directory is the context).
    Dockerfile,
    /// A target file: rbk.toml, docker-bake.json, docker-bake.hcl or
    /// compose.yaml.
    Targets(Syntax),
}

/// Tells a context directory, a Dockerfile, an rbk.toml, a
/// docker-bake.json and a compose file apart: by name first (`*.toml`,
/// `*.json`, `*.yaml`/`*.yml`), then by content (`{` opens JSON; a
/// `services:` line makes compose; a file whose instructions parse with a
/// FROM is a Dockerfile; anything else is read as TOML).
pub fn path_kind(path: &Path) -> Result<PathKind> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".hcl") {
        return Ok(PathKind::Targets(Syntax::Hcl));
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return Ok(PathKind::Targets(Syntax::Compose));
    }
    if name.ends_with(".toml") {
        return Ok(PathKind::Targets(Syntax::Toml));
    }
    if name.ends_with(".json") {
        return Ok(PathKind::Targets(Syntax::Json));
    }
    if !path.is_file() {
        return Ok(PathKind::Context);
    }
    let text = read(path)?;
    if text.trim_start().starts_with('{') {
        return Ok(PathKind::Targets(Syntax::Json));
    }
    if text.lines().any(|l| l.starts_with("services:")) {
        return Ok(PathKind::Targets(Syntax::Compose));
    }
    if text
        .lines()
        .any(|l| l.starts_with("target \"") || l.starts_with("group \""))
    {
        return Ok(PathKind::Targets(Syntax::Hcl));
    }
    let is_dockerfile =
        rbk_compiler::parse(&text).is_ok_and(|df| df.nodes.iter().any(|n| n.keyword == "from"));
    Ok(if is_dockerfile {
        PathKind::Dockerfile
    } else {
        PathKind::Targets(Syntax::Toml)
    })
}

/// The platforms of a `--platform` value or a target's `platforms`:
/// comma-separated, each checked and normalised, duplicates dropped; none
/// means the host's.
fn platform_list(list: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = rbk_compiler::platform::Platform::parse(p)
            .map_err(anyhow::Error::msg)
            .context("--platform")?
            .to_string();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `input` once per platform (once, for the host, when none is named):
/// the images of one name and several platforms become one index.
fn for_platforms(input: &Input, platforms: &[String]) -> Vec<Input> {
    if platforms.is_empty() {
        return vec![input.clone()];
    }
    platforms
        .iter()
        .map(|p| Input {
            platform: Some(p.clone()),
            ..input.clone()
        })
        .collect()
}

/// Reads the Dockerfiles the arguments name.
pub fn load(args: &BuildInputArgs) -> Result<Vec<Input>> {
    Ok(load_with_settings(args)?.0)
}

/// The target file PATH names, parsed with the environment's variables and
/// the `--set` overrides.
pub fn target_file(args: &BuildInputArgs, syntax: Syntax) -> Result<TargetFile> {
    let file = args.path.display().to_string();
    let text = read(&args.path)?;
    Ok(TargetFile::parse_with(
        &text,
        &file,
        syntax,
        &crate::env::text,
        &args.set,
    )?)
}

/// The targets and groups of the first target file found in `dir` (as
/// `rbk bake` picks it), for shell completion: nothing when there is none
/// or it does not parse.
pub fn target_names_in(dir: &Path) -> Vec<String> {
    let Some(path) = DEFAULT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        return Vec::new();
    };
    let Ok(PathKind::Targets(syntax)) = path_kind(&path) else {
        return Vec::new();
    };
    let args = BuildInputArgs {
        file: None,
        target: None,
        build_args: Vec::new(),
        tags: Vec::new(),
        build_contexts: Vec::new(),
        labels: Vec::new(),
        platform: None,
        path,
        set: Vec::new(),
        names: Vec::new(),
        stdin_dockerfile: None,
    };
    let Ok(file) = target_file(&args, syntax) else {
        return Vec::new();
    };
    file.targets
        .keys()
        .chain(file.groups.keys())
        .cloned()
        .collect()
}

/// The inputs and settings of the targets a target file selects, each
/// after the targets it is built on.
fn load_targets(
    args: &BuildInputArgs,
    syntax: Syntax,
    build_args: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    named_contexts: &BTreeMap<String, NamedContext>,
) -> Result<(Vec<Input>, Vec<ResolvedTarget>)> {
    if args.file.is_some() {
        bail!("-f cannot be used with a target file; set `dockerfile` in the target instead");
    }
    let file = args.path.display().to_string();
    let targets = target_file(args, syntax)?;
    let base = args.path.parent().unwrap_or(Path::new("."));
    let selected = targets.select(&args.names, base, &file)?;
    if selected.len() > 1 && !args.tags.is_empty() {
        bail!(
            "-t names one image, and {} selects {} targets ({}); name one target, or set tags per target (--set TARGET.tags=NAME)",
            file,
            selected.len(),
            selected.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    // Every target is a candidate: the selected ones may be built on
    // others (FROM one of their tags, a target: context), which then
    // build first in the same run. A target nobody selected whose
    // Dockerfile cannot be read is left out.
    let selected_names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
    let mut all: Vec<(ResolvedTarget, Input)> = Vec::new();
    for t in targets.all(base) {
        let wanted = selected_names.contains(&t.name.as_str());
        // -t applies to the one target named, not to what it is built on.
        let tags: &[String] = if wanted { &args.tags } else { &[] };
        match target_input(&t, args, tags, build_args, labels, named_contexts, base) {
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
    let mut settings = Vec::new();
    for i in order {
        let (t, input) = &all[i];
        settings.push(t.clone());
        let platforms = match &args.platform {
            Some(list) => platform_list(list)?,
            None => platform_list(&t.platforms.join(","))
                .with_context(|| format!("target {:?}: platforms", t.name))?,
        };
        out.extend(for_platforms(input, &platforms));
    }
    Ok((out, settings))
}

/// [`load`], plus each rbk.toml target's settings (none for a context
/// directory or a Dockerfile).
pub fn load_with_settings(args: &BuildInputArgs) -> Result<(Vec<Input>, Vec<ResolvedTarget>)> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        if let Some((k, v)) = parse_build_arg(a)? {
            build_args.insert(k, v);
        }
    }
    let labels = parse_labels(&args.labels)?;
    let named_contexts = parse_build_contexts(&args.build_contexts)?;
    let kind = path_kind(&args.path)?;
    if let PathKind::Targets(syntax) = kind {
        return load_targets(args, syntax, &build_args, &labels, &named_contexts);
    }
    let (context_dir, dockerfile) = context_and_dockerfile(args, kind)?;
    if !args.names.is_empty() {
        bail!(
            "target names ({}) are only for an rbk.toml; {} is a directory",
            args.names.join(", "),
            args.path.display()
        );
    }
    let context = absolute(&context_dir)?;
    let shown = if dockerfile == Path::new("-") {
        "<stdin>".to_string()
    } else {
        dockerfile.display().to_string()
    };
    let name = args.tags.first().cloned().unwrap_or_else(|| shown.clone());
    let platforms = platform_list(args.platform.as_deref().unwrap_or_default())?;
    let input = Input {
        name,
        file: shown,
        source: read_dockerfile(&dockerfile, args.stdin_dockerfile.as_deref())?,
        context: context.display().to_string(),
        target: args.target.clone(),
        build_args,
        tags: args.tags.clone(),
        labels,
        platform: None,
        ignore_file: own_ignore_file(&dockerfile),
        named_contexts,
    };
    Ok((for_platforms(&input, &platforms), Vec::new()))
}

/// The context directory and the Dockerfile of a PATH that is not a target
/// file: a Dockerfile path's directory is its context (and -f may not also
/// name one); a directory's Dockerfile is -f, else its `Dockerfile`.
fn context_and_dockerfile(args: &BuildInputArgs, kind: PathKind) -> Result<(PathBuf, PathBuf)> {
    match (kind, &args.file) {
        (PathKind::Dockerfile, None) => {
            let dir = match args.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            Ok((dir, args.path.clone()))
        }
        (PathKind::Dockerfile, Some(_)) => bail!(
            "{} is a Dockerfile and -f names another; give the context directory with -f",
            args.path.display()
        ),
        (_, Some(f)) => Ok((args.path.clone(), f.clone())),
        (_, None) => Ok((args.path.clone(), args.path.join("Dockerfile"))),
    }
}

/// `rbk build --print`: the selected targets after bake's language, as
/// `docker buildx bake --print` shapes them
/// (`{"group": {"default": {"targets": […]}}, "target": {NAME: {…}}}`).
pub fn print_targets(args: &BuildInputArgs) -> Result<serde_json::Value> {
    use serde_json::{json, Map, Value};
    let mut targets = Map::new();
    let mut names = Vec::new();
    let mut put = |name: &str, t: Value, names: &mut Vec<String>| {
        // Empty values are left out, as bake does.
        let t: Map<String, Value> = t
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| match v {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                Value::Bool(b) => *b,
                _ => true,
            })
            .collect();
        names.push(name.to_string());
        targets.insert(name.to_string(), Value::Object(t));
    };
    let kind = path_kind(&args.path)?;
    match kind {
        PathKind::Targets(syntax) => {
            let file = args.path.display().to_string();
            let tf = target_file(args, syntax)?;
            let base = args.path.parent().unwrap_or(Path::new("."));
            for t in tf.select(&args.names, base, &file)? {
                let dockerfile = t
                    .dockerfile
                    .strip_prefix(&t.context)
                    .unwrap_or(&t.dockerfile)
                    .display()
                    .to_string();
                let v = json!({
                    "context": t.context.display().to_string(),
                    "dockerfile": dockerfile,
                    "args": t.args,
                    "labels": t.labels,
                    "tags": t.tags,
                    "target": t.target,
                    "platforms": t.platforms,
                    "output": t.output,
                    "cache-from": t.cache_from,
                    "cache-to": t.cache_to,
                    "secret": t.secret,
                    "ssh": t.ssh,
                    "contexts": t.contexts,
                    "no-cache": t.no_cache,
                    "pull": t.pull,
                });
                put(&t.name, v, &mut names);
            }
        }
        _ => {
            let (context, dockerfile) = context_and_dockerfile(args, kind)?;
            // As bake prints it: relative to the context when inside it.
            let dockerfile = dockerfile.strip_prefix(&context).unwrap_or(&dockerfile);
            let v = json!({
                "context": context.display().to_string(),
                "dockerfile": dockerfile.display().to_string(),
                "tags": args.tags,
                "target": args.target,
            });
            put("default", v, &mut names);
        }
    }
    Ok(json!({
        "group": {"default": {"targets": names}},
        "target": targets,
    }))
}
