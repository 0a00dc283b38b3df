//! Lowering: typed instructions of one or many Dockerfiles → one
//! [`BuildGraph`]. Resolves global and stage `ARG`s, build args, `ENV`,
//! stage references, `--target`, `ONBUILD`, and computes each image's config.
//! Only the stages the target needs are lowered.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ast::Node;
use crate::config::{Empty, ImageConfig};
use crate::error::ParseError;
use crate::graph::{BuildGraph, Canon, ImageOutput, Op, Origin, Vertex, VertexId};
use crate::instructions::{self, Command, Instruction};
use crate::parse::expand::{Env, ShellLex};
use crate::platform::Platform;
use crate::vars::{Scope, Vars};

mod mount;
mod stages;
mod steps;
mod util;

use util::{expand_port, health_config, json_list, node_rest, quote_if_needed};
pub use util::{join_path, normalize_image};

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
    pub config: ImageConfig,
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
    fn new(input: &Input, error: ParseError) -> Self {
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
}

impl<'r> Compiler<'r> {
    /// A compiler that asks `resolver` for base image configs.
    pub fn new(resolver: &'r dyn ImageResolver) -> Self {
        Compiler {
            graph: BuildGraph::default(),
            resolver,
        }
    }

    /// Parses and lowers one Dockerfile into the graph; returns the index of
    /// its image in [`BuildGraph::images`].
    pub fn add(&mut self, input: &Input) -> Result<usize, CompileError> {
        let df = crate::parse::parse(&input.source).map_err(|e| CompileError::new(input, e))?;
        let mut lw = Lowerer::new(self, input, df.directives.escape)
            .map_err(|e| CompileError::new(input, e))?;
        let index = lw.run(&df.nodes).map_err(|e| CompileError::new(input, e))?;
        Ok(index)
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

/// A stage's state while its instructions are lowered.
#[derive(Clone)]
struct State {
    /// The image config, except the maps below (filled in at the end).
    config: ImageConfig,
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

impl State {
    /// A state starting from `config` (a base image's, or scratch's).
    fn from_config(mut config: ImageConfig, platform: Platform, head: VertexId) -> Self {
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
        State {
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
    fn into_config(self) -> ImageConfig {
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
    states: Vec<Option<State>>,
    /// The last vertex of each lowered stage.
    heads: Vec<Option<VertexId>>,
    /// Stages being lowered (to detect cycles through `--from`).
    busy: Vec<bool>,
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
                            "target stage {t:?} could not be found (stages: {})",
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
        if !self.input.labels.is_empty() {
            let labels = self.input.labels.clone();
            let mut text = String::from("LABEL");
            for (k, v) in &labels {
                state.labels.set(k, v);
                text.push_str(&format!(" {k}={}", quote_if_needed(v)));
            }
            let from = stages[target].from;
            // Synthetic: it comes from rbk.toml, not from a line.
            let origin = Origin {
                line: 0,
                text: format!("{text}  (rbk.toml labels)"),
                ..self.origin(&stages[target], from)
            };
            state.head = self.config_vertex(origin, &state, text);
        }
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

    fn source_vertex(&mut self, stage: &Stage<'_>, image: &str, platform: &Platform) -> VertexId {
        let digest = Canon::new("source")
            .str("image", image)
            .str("platform", &platform.to_string())
            .finish();
        let origin = self.origin(stage, stage.from);
        self.compiler.graph.add(Vertex {
            op: Op::Source {
                image: image.to_string(),
                platform: platform.to_string(),
            },
            digest,
            parent: None,
            inputs: Vec::new(),
            origins: vec![origin],
            created_by: String::new(),
        })
    }

    fn workdir_vertex(&mut self, origin: Origin, state: &State) -> VertexId {
        let parent = self.compiler.graph.vertex(state.head).digest;
        let path = state.config.working_dir.clone();
        let user = state.config.user.clone();
        let digest = Canon::new("workdir")
            .digest("parent", &parent)
            .str("path", &path)
            .str("user", &user)
            .finish();
        self.compiler.graph.add(Vertex {
            created_by: format!("WORKDIR {path}"),
            op: Op::Workdir { path, user },
            digest,
            parent: Some(state.head),
            inputs: Vec::new(),
            origins: vec![origin],
        })
    }

    fn config_vertex(&mut self, origin: Origin, state: &State, instruction: String) -> VertexId {
        let parent = self.compiler.graph.vertex(state.head).digest;
        let digest = Canon::new("config")
            .digest("parent", &parent)
            .str("instruction", &instruction)
            .finish();
        self.compiler.graph.add(Vertex {
            op: Op::Config {
                instruction: instruction.clone(),
            },
            digest,
            parent: Some(state.head),
            inputs: Vec::new(),
            origins: vec![origin],
            created_by: instruction,
        })
    }

    fn dispatch(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        inst: &Instruction,
        node: &Node,
        state: &mut State,
    ) -> Result<(), ParseError> {
        let stage = &stages[i];
        // Words are expanded with the scope before the instruction (O(1) copies).
        let (env_before, args_before) = (state.env.clone(), state.args.clone());
        let scope = Scope {
            env: &env_before,
            args: &args_before,
        };
        let env: &dyn Env = &scope;
        let text = match inst {
            Instruction::From { .. } => {
                return Err(ParseError::new(node.span, "FROM inside a stage body"))
            }
            Instruction::Arg(args) => {
                for (name, default) in args {
                    self.declared.insert(name.clone());
                    let value = match self.input.build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => match default {
                            Some(d) => Some(self.expand(node, d, env)?),
                            None => self.meta_args.lookup(name).map(str::to_string),
                        },
                    };
                    state.args.declare(name, value.as_deref());
                }
                return Ok(());
            }
            Instruction::Env(pairs) => {
                let mut text = String::from("ENV");
                let mut expanded = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.expand(node, k, env)?;
                    let v = self.expand(node, v, env)?;
                    text.push_str(&format!(" {k}={}", quote_if_needed(&v)));
                    expanded.push((k, v));
                }
                for (k, v) in expanded {
                    state.env.set(&k, &v);
                }
                text
            }
            Instruction::Label(pairs) => {
                let mut text = String::from("LABEL");
                for (k, v) in pairs {
                    let k = self.expand(node, k, env)?;
                    let v = self.expand(node, v, env)?;
                    text.push_str(&format!(" {k}={}", quote_if_needed(&v)));
                    state.labels.set(&k, &v);
                }
                text
            }
            Instruction::Maintainer(m) => {
                state.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    for w in self.expand_words(node, p, env)? {
                        for port in expand_port(&w)
                            .map_err(|m| ParseError::new(instructions::locate(node, p), m))?
                        {
                            if all.len() == MAX_EXPOSED_PORTS {
                                return Err(ParseError::new(
                                    instructions::locate(node, p),
                                    format!("EXPOSE lists more than {MAX_EXPOSED_PORTS} ports"),
                                ));
                            }
                            state.ports.set(&port, "");
                            all.push(port);
                        }
                    }
                }
                format!("EXPOSE {}", all.join(" "))
            }
            Instruction::Volume(vols) => {
                let mut all = Vec::new();
                for v in vols {
                    let v = self.expand(node, v, env)?;
                    if v.trim().is_empty() {
                        return Err(ParseError::new(
                            node.span,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    state.volumes.set(&v, "");
                    all.push(v);
                }
                format!("VOLUME {}", json_list(&all))
            }
            Instruction::User(u) => {
                state.config.user = self.expand(node, u, env)?;
                format!("USER {}", state.config.user)
            }
            Instruction::Workdir(w) => {
                let w = self.expand(node, w, env)?;
                state.config.working_dir = join_path(&state.config.working_dir, &w);
                let origin = self.origin(stage, node);
                state.head = self.workdir_vertex(origin, state);
                return Ok(());
            }
            Instruction::Onbuild(t) => {
                state.config.on_build.push(t.clone());
                format!("ONBUILD {t}")
            }
            Instruction::StopSignal(s) => {
                state.config.stop_signal = self.expand(node, s, env)?;
                format!("STOPSIGNAL {}", state.config.stop_signal)
            }
            Instruction::Healthcheck(h) => {
                state.config.healthcheck = Some(health_config(node, h)?);
                format!("HEALTHCHECK {}", node_rest(node))
            }
            Instruction::Shell(sh) => {
                state.config.shell = sh.clone();
                format!("SHELL {}", json_list(sh))
            }
            Instruction::Cmd(c) => {
                let argv = self.argv(state, c);
                state.cmd_set = true;
                let t = format!("CMD {}", json_list(&argv));
                state.config.cmd = Some(argv);
                t
            }
            Instruction::Entrypoint(c) => {
                let argv = self.argv(state, c);
                if !state.cmd_set {
                    state.config.cmd = None;
                }
                let t = format!("ENTRYPOINT {}", json_list(&argv));
                state.config.entrypoint = Some(argv);
                t
            }
            Instruction::Run(run) => {
                let head = self.run_vertex(stages, i, run, node, state, env)?;
                state.head = head;
                return Ok(());
            }
            Instruction::Copy(copy) => {
                let head = self.copy_vertex(stages, i, copy, node, state, env)?;
                state.head = head;
                return Ok(());
            }
        };
        let origin = self.origin(stage, node);
        state.head = self.config_vertex(origin, state, text);
        Ok(())
    }

    fn shell(state: &State) -> Vec<String> {
        if state.config.shell.is_empty() {
            vec!["/bin/sh".to_string(), "-c".to_string()]
        } else {
            state.config.shell.clone()
        }
    }

    fn argv(&self, state: &State, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = Self::shell(state);
                v.push(s.clone());
                v
            }
        }
    }
}
