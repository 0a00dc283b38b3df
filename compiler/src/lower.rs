//! Lowering: typed instructions of one or many Dockerfiles → one
//! [`BuildGraph`]. Resolves global and stage `ARG`s, build args, `ENV`,
//! stage references, `--target`, `ONBUILD`, and computes each image's config.
//! Only the stages the target needs are lowered.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ast::Node;
use crate::config::{Empty, RuntimeConfig};
use crate::error::ParseError;
use crate::graph::{BuildGraph, ImageOutput, Origin, VertexId};
use crate::instructions::{self, Instruction};
use crate::parse::expand::{Env, ShellLex};
use crate::platform::Platform;
use crate::vars::{Scope, Vars};

// One file per kind of step, as in the scheduler's `step/`: a new
// instruction touches one file here and one there.
mod copy;
mod from;
mod metadata;
mod run;
mod workdir;

mod deps;
mod mount;
mod stages;
mod util;

pub use deps::dependency_order;
pub use util::{canonical_ref, join_path, normalize_image};

/// The `PATH` an image gets when its base sets none, as BuildKit does.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Most build stages one Dockerfile may have. Real Dockerfiles have a few
/// dozen; the limit bounds the work a hostile file can ask for (lowering is
/// linear in stages, so it is generous).
pub const MAX_STAGES: usize = 10_000;

/// Most ports one EXPOSE may list once ranges are expanded: every port of
/// all three protocols fits. Past it, a 64 KiB line of `1-65535` words
/// would ask for half a billion entries.
pub const MAX_EXPOSED_PORTS: usize = 3 * 65_536;

/// What lowering needs to know about a base image.
#[derive(Debug, Clone, Default)]
pub struct BaseImage {
    /// Its config (env, workdir, user, shell, ONBUILD triggers …).
    pub config: RuntimeConfig,
    /// Its platform (`os/arch[/variant]`), when known.
    pub platform: Option<String>,
}

/// Looks up base images' configs (the CLI backs this with the store). Lowering
/// works without it; unknown bases then start from an empty config.
pub trait ImageResolver {
    /// The config of `image` (a reference as written, `:latest` added).
    fn resolve(&self, image: &str, platform: &Platform) -> Option<BaseImage>;
}

/// A resolver that knows no images.
pub struct NoResolver;

impl ImageResolver for NoResolver {
    fn resolve(&self, _: &str, _: &Platform) -> Option<BaseImage> {
        None
    }
}

/// One image to compile.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Image (target) name, used in graph output and errors.
    pub name: String,
    /// Path of the Dockerfile, as shown in messages.
    pub file: String,
    /// The Dockerfile text.
    pub source: String,
    /// Absolute path of the build context (identifies it in digests).
    pub context: String,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// Tags to apply.
    pub tags: Vec<String>,
    /// Extra labels (from rbk.toml).
    pub labels: BTreeMap<String, String>,
    /// Target platform (`os/arch`); the host's when `None`.
    pub platform: Option<String>,
    /// `<Dockerfile>.dockerignore` beside the Dockerfile, when there is
    /// one: it replaces the context's `.dockerignore` for this Dockerfile's
    /// COPY and ADD (absolute path).
    pub ignore_file: Option<String>,
    /// `--build-context NAME=…`: what `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` read instead of a stage or image of that name.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// A `--build-context` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// `docker-image://REF`: that image.
    Image(String),
    /// `target:NAME` (rbk.toml `contexts`, as bake): the image another
    /// input of the same build makes.
    Target(String),
    /// A local directory (absolute path): files for `COPY --from` and bind
    /// mounts.
    Dir(String),
}

/// A compile error with the file it is in, rendered with a caret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{rendered}")]
pub struct CompileError {
    /// The Dockerfile.
    pub file: String,
    /// Position and message.
    pub error: ParseError,
    /// `FILE:LINE:COL: message`, the source line and a caret.
    pub rendered: String,
}

impl CompileError {
    pub(crate) fn new(input: &Input, error: ParseError) -> Self {
        CompileError {
            file: input.file.clone(),
            rendered: error.render(&input.file, &input.source),
            error,
        }
    }
}

/// Compiles Dockerfiles into one shared graph.
pub struct Compiler<'r> {
    graph: BuildGraph,
    resolver: &'r dyn ImageResolver,
    /// Images added so far, by canonical tag, then platform: a later
    /// `FROM` of the tag, for the same platform, builds on that image's
    /// last vertex instead of a stored image.
    by_tag: HashMap<String, BTreeMap<String, usize>>,
    /// The same, by input name (for `target:NAME` contexts).
    by_name: HashMap<String, BTreeMap<String, usize>>,
}

impl<'r> Compiler<'r> {
    /// A compiler that asks `resolver` for base image configs.
    pub fn new(resolver: &'r dyn ImageResolver) -> Self {
        Compiler {
            graph: BuildGraph::default(),
            resolver,
            by_tag: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// Parses and lowers one Dockerfile into the graph; returns the index of
    /// its image in [`BuildGraph::images`]. A `FROM` naming a tag of an
    /// image added before builds on it (see [`Compiler::add_all`]).
    pub fn add(&mut self, input: &Input) -> Result<usize, CompileError> {
        let df = crate::parse::parse(&input.source).map_err(|e| CompileError::new(input, e))?;
        let mut lw = Lowerer::new(self, input, df.directives.escape)
            .map_err(|e| CompileError::new(input, e))?;
        let platform = lw.target_platform.to_string();
        let index = lw.run(&df.nodes).map_err(|e| CompileError::new(input, e))?;
        for t in &input.tags {
            self.by_tag
                .entry(canonical_ref(t))
                .or_default()
                .insert(platform.clone(), index);
        }
        self.by_name
            .entry(input.name.clone())
            .or_default()
            .insert(platform, index);
        Ok(index)
    }

    /// Adds `inputs`, each after the inputs it is built on (a `FROM` of
    /// one of their tags, a `target:` context), so a change to one image
    /// reaches every image built on it in the same graph. Returns the order
    /// they were added in (indices into `inputs`). A cycle is an error
    /// naming it.
    pub fn add_all(&mut self, inputs: &[Input]) -> Result<Vec<usize>, CompileError> {
        let wanted: Vec<usize> = (0..inputs.len()).collect();
        let order = dependency_order(inputs, &wanted, self.resolver)?;
        for &i in &order {
            self.add(&inputs[i])?;
        }
        Ok(order)
    }

    /// The finished graph.
    pub fn finish(self) -> BuildGraph {
        self.graph
    }
}

/// Compiles a single Dockerfile.
pub fn compile(input: &Input, resolver: &dyn ImageResolver) -> Result<BuildGraph, CompileError> {
    let mut c = Compiler::new(resolver);
    c.add(input)?;
    Ok(c.finish())
}

struct Stage<'n> {
    name: Option<String>,
    label: String,
    base: String,
    platform: Option<String>,
    from: &'n Node,
    body: Vec<(Instruction, &'n Node)>,
}

/// The image a stage has built so far, while its instructions are
/// lowered: the config, the variables in scope, and the vertex at its head.
#[derive(Clone)]
struct StageImage {
    /// The image config, except the maps below (filled in at the end).
    config: RuntimeConfig,
    /// `ENV`, shared with the base and with each RUN step's environment.
    env: Vars,
    /// `LABEL`, `EXPOSE` and `VOLUME`, shared with the base until changed
    /// (a base with thousands of labels and many stages on it stays linear).
    labels: Vars,
    ports: Vars,
    volumes: Vars,
    /// Declared ARGs in scope, with their values (None: declared, unset).
    args: Vars,
    cmd_set: bool,
    author: Option<String>,
    platform: Platform,
    head: VertexId,
}

impl StageImage {
    /// A stage starting from `config` (a base image's, or scratch's).
    fn from_config(mut config: RuntimeConfig, platform: Platform, head: VertexId) -> Self {
        let mut env = Vars::new();
        for kv in std::mem::take(&mut config.env) {
            match kv.split_once('=') {
                Some((k, v)) => env.set(k, v),
                None => env.set(&kv, ""),
            }
        }
        let mut labels = Vars::untracked();
        for (k, v) in std::mem::take(&mut config.labels) {
            labels.set(&k, &v);
        }
        let mut ports = Vars::untracked();
        for k in std::mem::take(&mut config.exposed_ports).into_keys() {
            ports.set(&k, "");
        }
        let mut volumes = Vars::untracked();
        for k in std::mem::take(&mut config.volumes).into_keys() {
            volumes.set(&k, "");
        }
        StageImage {
            config,
            env,
            labels,
            ports,
            volumes,
            args: Vars::new(),
            cmd_set: false,
            author: None,
            platform,
            head,
        }
    }

    /// The config with the maps filled in, for the image output.
    fn into_config(self) -> RuntimeConfig {
        let mut config = self.config;
        config.env = self
            .env
            .entries()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
            .collect();
        let keys = |vars: &Vars| -> BTreeMap<String, Empty> {
            vars.entries()
                .into_iter()
                .map(|(k, _)| (k.to_string(), Empty {}))
                .collect()
        };
        config.exposed_ports = keys(&self.ports);
        config.volumes = keys(&self.volumes);
        config.labels = self
            .labels
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.unwrap_or_default().to_string()))
            .collect();
        config
    }
}

struct Lowerer<'c, 'r, 'i> {
    compiler: &'c mut Compiler<'r>,
    input: &'i Input,
    lex: ShellLex,
    target_platform: Platform,
    /// Global ARGs (before the first FROM) and the predefined platform ARGs.
    meta_args: Vars,
    declared: BTreeSet<String>,
    /// Stage index by (lower-case) name.
    names: HashMap<String, usize>,
    /// The base stage of each stage, if it is built on one.
    base_of: Vec<Option<usize>>,
    /// How many not yet started stages are built on each stage.
    base_uses: Vec<usize>,
    /// Final states of lowered stages that later stages are built on.
    states: Vec<Option<StageImage>>,
    /// The last vertex of each lowered stage.
    heads: Vec<Option<VertexId>>,
    /// Stages being lowered (to detect cycles through `--from`).
    busy: Vec<bool>,
    /// Images of the graph this input builds on, by name.
    built_on: Vec<String>,
}

fn predefined(target: &Platform, build: &Platform) -> Vars {
    // Global ARGs only feed expansion and ARG defaults: no digest needed.
    let mut vars = Vars::untracked();
    for (k, v) in [
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.arch.clone()),
        ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.arch.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
    ] {
        vars.declare(k, Some(&v));
    }
    vars
}

const PREDEFINED_PROXY: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl<'c, 'r, 'i> Lowerer<'c, 'r, 'i> {
    fn new(
        compiler: &'c mut Compiler<'r>,
        input: &'i Input,
        escape: char,
    ) -> Result<Self, ParseError> {
        let build_platform = Platform::host();
        let target_platform = match &input.platform {
            Some(p) => Platform::parse(p).map_err(|m| ParseError::new(Default::default(), m))?,
            None => build_platform.clone(),
        };
        Ok(Lowerer {
            compiler,
            input,
            lex: ShellLex::new(escape),
            meta_args: predefined(&target_platform, &build_platform),
            target_platform,
            declared: BTreeSet::new(),
            names: HashMap::new(),
            base_of: Vec::new(),
            base_uses: Vec::new(),
            states: Vec::new(),
            heads: Vec::new(),
            busy: Vec::new(),
            built_on: Vec::new(),
        })
    }

    fn run(&mut self, nodes: &[Node]) -> Result<usize, ParseError> {
        let stages = self.split(nodes)?;
        if stages.is_empty() {
            let span = nodes.first().map(|n| n.span).unwrap_or_default();
            return Err(ParseError::new(
                span,
                "no build stage in the Dockerfile: add a FROM",
            ));
        }
        self.base_of = stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                // A named context of that name replaces the stage.
                if self.input.named_contexts.contains_key(&s.base) {
                    return None;
                }
                let base = s.base.to_ascii_lowercase();
                self.names.get(&base).copied().filter(|&j| j < i)
            })
            .collect();
        self.base_uses = vec![0; stages.len()];
        for &j in self.base_of.iter().flatten() {
            self.base_uses[j] += 1;
        }
        self.states = vec![None; stages.len()];
        self.heads = vec![None; stages.len()];
        self.busy = vec![false; stages.len()];
        let target = match &self.input.target {
            Some(t) => self
                .names
                .get(&t.to_ascii_lowercase())
                .copied()
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    ParseError::new(
                        Default::default(),
                        format!(
                            "target stage {t:?} could not be found{} (stages: {})",
                            crate::suggest::hint(t, names.iter().copied()),
                            if names.is_empty() {
                                "none named".to_string()
                            } else {
                                names.join(", ")
                            }
                        ),
                    )
                })?,
            None => stages.len() - 1,
        };
        let mut state = self.lower_stages(&stages, target)?;
        self.input_labels(&stages[target], &mut state);
        for name in self.input.build_args.keys() {
            if !self.declared.contains(name)
                && !PREDEFINED_PROXY.contains(&name.as_str())
                && !self.meta_args.contains(name)
            {
                self.compiler.graph.warnings.push(format!(
                    "{}: build-arg {name} was not consumed by any ARG",
                    self.input.file
                ));
            }
        }
        let graph = &mut self.compiler.graph;
        graph.images.push(ImageOutput {
            name: self.input.name.clone(),
            tags: self.input.tags.clone(),
            vertex: state.head,
            stage: stages[target].label.clone(),
            file: self.input.file.clone(),
            author: state.author.clone(),
            platform: state.platform.to_string(),
            config: state.into_config(),
            built_on: std::mem::take(&mut self.built_on),
        });
        Ok(graph.images.len() - 1)
    }

    /// Splits the instructions into stages; handles the global ARGs before
    /// the first FROM.
    fn split<'n>(&mut self, nodes: &'n [Node]) -> Result<Vec<Stage<'n>>, ParseError> {
        let mut stages: Vec<Stage<'n>> = Vec::new();
        for node in nodes {
            let inst = instructions::convert(node)?;
            match inst {
                Instruction::From {
                    image,
                    name,
                    platform,
                } => {
                    if stages.len() >= MAX_STAGES {
                        return Err(ParseError::new(
                            node.span,
                            format!("more than {MAX_STAGES} build stages in one Dockerfile"),
                        ));
                    }
                    let env = &self.meta_args;
                    let base = self.expand(node, &image, env)?;
                    if base.is_empty() {
                        return Err(ParseError::new(
                            node.span,
                            format!("base name ({image}) should not be blank"),
                        ));
                    }
                    self.valueless_arg_in_from(node, &image, &base)?;
                    let platform = match platform {
                        Some(p) => Some(self.expand(node, &p, env)?),
                        None => None,
                    };
                    if let Some(n) = &name {
                        if self.names.insert(n.clone(), stages.len()).is_some() {
                            return Err(ParseError::new(
                                node.span,
                                format!("duplicate stage name {n:?}"),
                            ));
                        }
                    }
                    let label = name.clone().unwrap_or_else(|| stages.len().to_string());
                    stages.push(Stage {
                        name,
                        label,
                        base,
                        platform,
                        from: node,
                        body: Vec::new(),
                    });
                }
                Instruction::Arg(args) if stages.is_empty() => {
                    for (name, default) in args {
                        self.declared.insert(name.clone());
                        let value = match self.input.build_args.get(&name) {
                            Some(v) => Some(v.clone()),
                            None => match default {
                                Some(d) => Some(self.expand(node, &d, &self.meta_args)?),
                                None => None,
                            },
                        };
                        self.meta_args.declare(&name, value.as_deref());
                    }
                }
                other => match stages.last_mut() {
                    Some(s) => s.body.push((other, node)),
                    None => {
                        return Err(ParseError::new(
                            node.span,
                            format!(
                                "{} before the first FROM: only ARG may come before FROM",
                                other.keyword()
                            ),
                        ))
                    }
                },
            }
        }
        Ok(stages)
    }

    /// A FROM whose image name an ARG without a value left broken
    /// (`FROM busybox:$V` → `busybox:`): the ARG and the line, not an
    /// "invalid reference" from the registry after the build started.
    fn valueless_arg_in_from(
        &self,
        node: &Node,
        image: &str,
        base: &str,
    ) -> Result<(), ParseError> {
        let broken = base.ends_with([':', '@', '/'])
            || base.starts_with([':', '@', '/'])
            || base.contains("//")
            || base.contains(":@");
        if !broken {
            return Ok(());
        }
        let refs = self
            .lex
            .with_skip_unset_env(true)
            .process_word_with_matches(image, &self.meta_args)
            .map(|e| e.references)
            .unwrap_or_default();
        let Some(var) = refs
            .iter()
            .filter(|r| !r.has_fallback && r.is_definable())
            .map(|r| r.name.as_str())
            .find(|v| self.meta_args.get(v).flatten().is_none_or(str::is_empty))
        else {
            return Ok(());
        };
        let why = match self.meta_args.get(var) {
            None => format!(
                "{var} is not an ARG declared before the first FROM (only those reach FROM)"
            ),
            Some(_) => format!("the ARG {var} has no value"),
        };
        Err(ParseError::new(
            instructions::locate(node, image),
            format!(
                "FROM {image}: {why}, which leaves the image name {base:?}; give it one: `ARG {var}=VALUE` before the first FROM, or `--build-arg {var}=VALUE`"
            ),
        ))
    }

    fn expand(&self, node: &Node, word: &str, env: &dyn Env) -> Result<String, ParseError> {
        self.lex
            .process_word(word, env)
            .map_err(|e| ParseError::new(instructions::locate(node, word), e.message))
    }

    fn expand_words(
        &self,
        node: &Node,
        word: &str,
        env: &dyn Env,
    ) -> Result<Vec<String>, ParseError> {
        self.lex
            .process_words(word, env)
            .map_err(|e| ParseError::new(instructions::locate(node, word), e.message))
    }

    fn origin(&self, stage: &Stage<'_>, node: &Node) -> Origin {
        Origin {
            image: self.input.name.clone(),
            stage: stage.label.clone(),
            file: self.input.file.clone(),
            line: node.start_line,
            text: node.original.trim().to_string(),
        }
    }

    /// Lowers one instruction of stage `i`'s body onto `state`.
    fn dispatch(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        inst: &Instruction,
        node: &Node,
        state: &mut StageImage,
    ) -> Result<(), ParseError> {
        let stage = &stages[i];
        // Words are expanded with the scope before the instruction (O(1) copies).
        let (env_before, args_before) = (state.env.clone(), state.args.clone());
        let scope = Scope {
            env: &env_before,
            args: &args_before,
        };
        let env: &dyn Env = &scope;
        match inst {
            Instruction::From { .. } => Err(ParseError::new(node.span, "FROM inside a stage body")),
            Instruction::Arg(args) => self.arg(args, node, state, env),
            Instruction::Run(run) => {
                state.head = self.run_vertex(stages, i, run, node, state, env)?;
                Ok(())
            }
            Instruction::Copy(copy) => {
                state.head = self.copy_vertex(stages, i, copy, node, state, env)?;
                Ok(())
            }
            Instruction::Workdir(w) => self.workdir(stage, w, node, state, env),
            other => self.metadata(stage, other, node, state, env),
        }
    }
}
