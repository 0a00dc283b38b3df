//! Lowering: typed instructions of one or many Dockerfiles → one
//! [`BuildGraph`]. Resolves global and stage `ARG`s, build args, `ENV`,
//! stage references, `--target`, `ONBUILD`, and computes each image's config.
//! Only the stages the target needs are lowered.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::Node;
use crate::config::{Empty, ImageConfig};
use crate::error::ParseError;
use crate::graph::{
    BuildGraph, Canon, ExecOp, FileOp, ImageOutput, InlineFile, Network, Op, Origin, Source,
    Vertex, VertexId,
};
use crate::instructions::{self, Command, Copy, Instruction, Run};
use crate::parse::expand::ShellLex;
use crate::platform::Platform;

mod mount;
mod util;

use mount::{canon_mount, parse_mount};
use util::{
    expand_heredoc, expand_port, health_config, heredoc_script, json_list, node_rest,
    quote_if_needed,
};
pub use util::{join_path, normalize_image};

/// The `PATH` an image gets when its base sets none, as BuildKit does.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

#[derive(Clone)]
struct State {
    config: ImageConfig,
    /// Declared ARGs in scope, with their values (None: declared, unset).
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    author: Option<String>,
    platform: Platform,
    head: VertexId,
}

struct Lowerer<'c, 'r, 'i> {
    compiler: &'c mut Compiler<'r>,
    input: &'i Input,
    lex: ShellLex,
    target_platform: Platform,
    meta_args: Vec<(String, Option<String>)>,
    declared: BTreeSet<String>,
    done: Vec<Option<State>>,
    busy: Vec<bool>,
}

fn predefined(target: &Platform, build: &Platform) -> Vec<(String, Option<String>)> {
    [
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.arch.clone()),
        ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDARCH", build.arch.clone()),
        ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v)))
    .collect()
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
            done: Vec::new(),
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
        self.done = vec![None; stages.len()];
        self.busy = vec![false; stages.len()];
        let target = match &self.input.target {
            Some(t) => stages
                .iter()
                .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
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
        let mut state = self.stage(&stages, target)?;
        if !self.input.labels.is_empty() {
            let labels = self.input.labels.clone();
            let mut text = String::from("LABEL");
            for (k, v) in &labels {
                state.config.labels.insert(k.clone(), v.clone());
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
                && !self.meta_args.iter().any(|(k, _)| k == name)
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
            config: state.config,
            author: state.author,
            platform: state.platform.to_string(),
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
                    let env = self.meta_env();
                    let base = self.expand(node, &image, &env)?;
                    if base.is_empty() {
                        return Err(ParseError::new(
                            node.span,
                            format!("base name ({image}) should not be blank"),
                        ));
                    }
                    let platform = match platform {
                        Some(p) => Some(self.expand(node, &p, &env)?),
                        None => None,
                    };
                    if let Some(n) = &name {
                        if stages.iter().any(|s| s.name.as_ref() == Some(n)) {
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
                                Some(d) => Some(self.expand(node, &d, &self.meta_env())?),
                                None => None,
                            },
                        };
                        self.meta_args.retain(|(k, _)| k != &name);
                        self.meta_args.push((name, value));
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

    fn meta_env(&self) -> Vec<(String, String)> {
        self.meta_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    fn expand(
        &self,
        node: &Node,
        word: &str,
        env: &[(String, String)],
    ) -> Result<String, ParseError> {
        self.lex
            .process_word(word, &env)
            .map_err(|e| ParseError::new(instructions::locate(node, word), e.message))
    }

    fn expand_words(
        &self,
        node: &Node,
        word: &str,
        env: &[(String, String)],
    ) -> Result<Vec<String>, ParseError> {
        self.lex
            .process_words(word, &env)
            .map_err(|e| ParseError::new(instructions::locate(node, word), e.message))
    }

    /// Lowers stage `i` (and what it depends on) once.
    fn stage(&mut self, stages: &[Stage<'_>], i: usize) -> Result<State, ParseError> {
        if let Some(s) = &self.done[i] {
            return Ok(s.clone());
        }
        let stage = &stages[i];
        if self.busy[i] {
            return Err(ParseError::new(
                stage.from.span,
                format!("circular dependency detected on stage {}", stage.label),
            ));
        }
        self.busy[i] = true;
        let platform = match &stage.platform {
            Some(p) => Platform::parse(p).map_err(|m| ParseError::new(stage.from.span, m))?,
            None => self.target_platform.clone(),
        };
        let base_lower = stage.base.to_ascii_lowercase();
        let base_stage = stages[..i]
            .iter()
            .position(|s| s.name.as_deref() == Some(&base_lower));
        let mut state = match base_stage {
            Some(j) => {
                let mut s = self.stage(stages, j)?;
                s.args.clear();
                s.cmd_set = false;
                s
            }
            None => {
                let (image, config) = if base_lower == "scratch" {
                    ("scratch".to_string(), ImageConfig::default())
                } else {
                    let image = normalize_image(&stage.base);
                    let config = self
                        .compiler
                        .resolver
                        .resolve(&image, &platform)
                        .map(|b| b.config)
                        .unwrap_or_default();
                    (image, config)
                };
                let head = self.source_vertex(stage, &image, &platform);
                State {
                    config,
                    args: Vec::new(),
                    cmd_set: false,
                    author: None,
                    platform: platform.clone(),
                    head,
                }
            }
        };
        if state.config.get_env("PATH").is_none() {
            state.config.set_env("PATH", DEFAULT_PATH);
        }
        // The base's ONBUILD triggers run first, then are not inherited.
        let triggers = std::mem::take(&mut state.config.on_build);
        for t in &triggers {
            let df = crate::parse::parse(t).map_err(|e| {
                ParseError::new(
                    stage.from.span,
                    format!("ONBUILD trigger {t:?}: {}", e.message),
                )
            })?;
            for node in &df.nodes {
                let inst = instructions::convert(node).map_err(|e| {
                    ParseError::new(
                        stage.from.span,
                        format!("ONBUILD trigger {t:?}: {}", e.message),
                    )
                })?;
                self.dispatch(stages, i, &inst, stage.from, &mut state)?;
            }
        }
        for (inst, node) in &stage.body {
            self.dispatch(stages, i, inst, node, &mut state)?;
        }
        self.busy[i] = false;
        self.done[i] = Some(state.clone());
        Ok(state)
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

    /// The environment variables are expanded with: declared ARGs with
    /// values, overridden by ENV.
    fn stage_env(state: &State) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = state
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        env.extend(state.config.env_pairs());
        env
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
        let env = Self::stage_env(state);
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
                            Some(d) => Some(self.expand(node, d, &env)?),
                            None => self
                                .meta_args
                                .iter()
                                .find(|(k, _)| k == name)
                                .and_then(|(_, v)| v.clone()),
                        },
                    };
                    state.args.retain(|(k, _)| k != name);
                    state.args.push((name.clone(), value));
                }
                return Ok(());
            }
            Instruction::Env(pairs) => {
                let mut text = String::from("ENV");
                let mut expanded = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.expand(node, k, &env)?;
                    let v = self.expand(node, v, &env)?;
                    text.push_str(&format!(" {k}={}", quote_if_needed(&v)));
                    expanded.push((k, v));
                }
                for (k, v) in expanded {
                    state.config.set_env(&k, &v);
                }
                text
            }
            Instruction::Label(pairs) => {
                let mut text = String::from("LABEL");
                for (k, v) in pairs {
                    let k = self.expand(node, k, &env)?;
                    let v = self.expand(node, v, &env)?;
                    text.push_str(&format!(" {k}={}", quote_if_needed(&v)));
                    state.config.labels.insert(k, v);
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
                    for w in self.expand_words(node, p, &env)? {
                        for port in expand_port(&w)
                            .map_err(|m| ParseError::new(instructions::locate(node, p), m))?
                        {
                            state.config.exposed_ports.insert(port.clone(), Empty {});
                            all.push(port);
                        }
                    }
                }
                format!("EXPOSE {}", all.join(" "))
            }
            Instruction::Volume(vols) => {
                let mut all = Vec::new();
                for v in vols {
                    let v = self.expand(node, v, &env)?;
                    if v.trim().is_empty() {
                        return Err(ParseError::new(
                            node.span,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    state.config.volumes.insert(v.clone(), Empty {});
                    all.push(v);
                }
                format!("VOLUME {}", json_list(&all))
            }
            Instruction::User(u) => {
                state.config.user = self.expand(node, u, &env)?;
                format!("USER {}", state.config.user)
            }
            Instruction::Workdir(w) => {
                let w = self.expand(node, w, &env)?;
                state.config.working_dir = join_path(&state.config.working_dir, &w);
                format!("WORKDIR {}", state.config.working_dir)
            }
            Instruction::Onbuild(t) => {
                state.config.on_build.push(t.clone());
                format!("ONBUILD {t}")
            }
            Instruction::StopSignal(s) => {
                state.config.stop_signal = self.expand(node, s, &env)?;
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
                let head = self.run_vertex(stages, i, run, node, state, &env)?;
                state.head = head;
                return Ok(());
            }
            Instruction::Copy(copy) => {
                let head = self.copy_vertex(stages, i, copy, node, state, &env)?;
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

    /// A `--from` value: a stage name, a stage index, or an image.
    fn resolve_from(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        node: &Node,
        from: &str,
    ) -> Result<VertexId, ParseError> {
        let lower = from.to_ascii_lowercase();
        if let Some(j) = stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&lower))
        {
            if j == i {
                return Err(ParseError::new(
                    instructions::locate(node, from),
                    format!("stage {from:?} cannot copy from itself"),
                ));
            }
            return Ok(self.stage(stages, j)?.head);
        }
        if let Ok(j) = from.parse::<usize>() {
            if j >= i {
                return Err(ParseError::new(
                    instructions::locate(node, from),
                    format!("--from={j} refers to a stage that is not defined before this one"),
                ));
            }
            return Ok(self.stage(stages, j)?.head);
        }
        let image = normalize_image(from);
        let stage = &stages[i];
        Ok(self.source_vertex(stage, &image, &self.target_platform.clone()))
    }

    fn run_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        run: &Run,
        node: &Node,
        state: &State,
        env: &[(String, String)],
    ) -> Result<VertexId, ParseError> {
        let args = match &run.command {
            Command::Exec(v) => v.clone(),
            Command::Shell(cmd) => {
                let mut v = Self::shell(state);
                v.push(heredoc_script(cmd, &run.heredocs));
                v
            }
        };
        if args.is_empty() {
            return Err(ParseError::new(node.span, "RUN with an empty command"));
        }
        let network = match run.network.as_deref() {
            None | Some("default") => Network::Default,
            Some("host") => Network::Host,
            Some("none") => Network::None,
            Some(other) => {
                return Err(ParseError::new(
                    instructions::locate(node, "--network"),
                    format!("unsupported network mode {other:?} (use default, host or none)"),
                ))
            }
        };
        let insecure = match run.security.as_deref() {
            None | Some("sandbox") => false,
            Some("insecure") => true,
            Some(other) => {
                return Err(ParseError::new(
                    instructions::locate(node, "--security"),
                    format!("unsupported security mode {other:?} (use sandbox or insecure)"),
                ))
            }
        };
        let mut mounts = Vec::new();
        let mut inputs = Vec::new();
        for m in &run.mounts {
            let spec = self.expand(node, &m.spec, env)?;
            let parsed = parse_mount(&spec)
                .map_err(|msg| ParseError::new(instructions::locate(node, &m.spec), msg))?;
            let from = match &parsed.from {
                Some(f) => {
                    let id = self.resolve_from(stages, i, node, f)?;
                    inputs.push(id);
                    Some(Source::Vertex(id))
                }
                None => None,
            };
            mounts.push(
                parsed
                    .build(from, &self.input.context, &state.config.working_dir)
                    .map_err(|msg| ParseError::new(instructions::locate(node, &m.spec), msg))?,
            );
        }
        let mut exec_env = state.config.env_pairs();
        for (k, v) in &state.args {
            if let Some(v) = v {
                if !exec_env.iter().any(|(ek, _)| ek == k) {
                    exec_env.push((k.clone(), v.clone()));
                }
            }
        }
        let op = ExecOp {
            args,
            env: exec_env,
            cwd: if state.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                state.config.working_dir.clone()
            },
            user: state.config.user.clone(),
            network,
            insecure,
            mounts,
        };
        let parent = self.compiler.graph.vertex(state.head).digest;
        let mut c = Canon::new("exec");
        c.digest("parent", &parent)
            .strs("args", &op.args)
            .strs(
                "env",
                &op.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
            .str("cwd", &op.cwd)
            .str("user", &op.user)
            .str("network", &format!("{:?}", op.network))
            .num("insecure", op.insecure as u64);
        for m in &op.mounts {
            canon_mount(&mut c, m, &self.compiler.graph);
        }
        let created_by = format!("RUN {}", op.args.join(" "));
        let origin = self.origin(&stages[i], node);
        Ok(self.compiler.graph.add(Vertex {
            op: Op::Exec(op),
            digest: c.finish(),
            parent: Some(state.head),
            inputs,
            origins: vec![origin],
            created_by,
        }))
    }

    fn copy_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        copy: &Copy,
        node: &Node,
        state: &State,
        env: &[(String, String)],
    ) -> Result<VertexId, ParseError> {
        let mut inputs = Vec::new();
        let from = match &copy.from {
            Some(f) => {
                let f = self.expand(node, f, env)?;
                let id = self.resolve_from(stages, i, node, &f)?;
                inputs.push(id);
                Source::Vertex(id)
            }
            None => Source::Context(self.input.context.clone()),
        };
        let mut sources = Vec::with_capacity(copy.sources.len());
        for s in &copy.sources {
            sources.push(self.expand(node, s, env)?);
        }
        let inline = copy
            .contents
            .iter()
            .map(|c| {
                Ok(InlineFile {
                    name: c.path.clone(),
                    data: if c.expand {
                        expand_heredoc(&c.data, env).map_err(|m| ParseError::new(node.span, m))?
                    } else {
                        c.data.clone()
                    },
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        let chmod = match &copy.chmod {
            Some(m) => {
                let m = self.expand(node, m, env)?;
                if m.is_empty() || m.len() > 4 || !m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                    return Err(ParseError::new(
                        instructions::locate(node, "--chmod"),
                        format!("invalid --chmod={m}: expected an octal mode such as 755"),
                    ));
                }
                Some(m)
            }
            None => None,
        };
        let op = FileOp {
            add: copy.add,
            from,
            sources,
            inline,
            dest: self.expand(node, &copy.dest, env)?,
            workdir: if state.config.working_dir.is_empty() {
                "/".to_string()
            } else {
                state.config.working_dir.clone()
            },
            chown: match &copy.chown {
                Some(c) => Some(self.expand(node, c, env)?),
                None => None,
            },
            chmod,
            link: copy.link,
            parents: copy.parents,
            excludes: copy
                .excludes
                .iter()
                .map(|e| self.expand(node, e, env))
                .collect::<Result<_, _>>()?,
            checksum: match &copy.checksum {
                Some(c) => Some(self.expand(node, c, env)?),
                None => None,
            },
            keep_git_dir: copy.keep_git_dir,
        };
        let parent = self.compiler.graph.vertex(state.head).digest;
        let mut c = Canon::new("file");
        c.digest("parent", &parent).num("add", op.add as u64);
        match &op.from {
            Source::Context(ctx) => c.str("context", ctx),
            Source::Vertex(v) => {
                let d = self.compiler.graph.vertex(*v).digest;
                c.digest("from", &d)
            }
        };
        c.strs("sources", &op.sources);
        for f in &op.inline {
            c.str("inline.name", &f.name).str("inline.data", &f.data);
        }
        c.str("dest", &op.dest)
            .str("workdir", &op.workdir)
            .str("chown", op.chown.as_deref().unwrap_or(""))
            .str("chmod", op.chmod.as_deref().unwrap_or(""))
            .num("link", op.link as u64)
            .num("parents", op.parents as u64)
            .strs("excludes", &op.excludes)
            .str("checksum", op.checksum.as_deref().unwrap_or(""))
            .num("keep_git_dir", op.keep_git_dir as u64);
        let kw = if op.add { "ADD" } else { "COPY" };
        let mut shown: Vec<String> = op.sources.clone();
        shown.extend(op.inline.iter().map(|f| format!("<<{}", f.name)));
        let created_by = format!("{kw} {} {}", shown.join(" "), op.dest);
        let origin = self.origin(&stages[i], node);
        Ok(self.compiler.graph.add(Vertex {
            op: Op::File(op),
            digest: c.finish(),
            parent: Some(state.head),
            inputs,
            origins: vec![origin],
            created_by,
        }))
    }
}
