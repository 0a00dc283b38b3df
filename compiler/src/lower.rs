//! Lowering: typed instructions of one or many Dockerfiles → one
//! [`BuildGraph`]. Resolves global and stage `ARG`s, build args, `ENV`,
//! stage references, `--target`, `ONBUILD`, and computes each image's config.
//! Only the stages the target needs are lowered.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::Node;
use crate::config::{Empty, HealthConfig, ImageConfig};
use crate::error::ParseError;
use crate::graph::{
    BuildGraph, Canon, ExecOp, FileOp, ImageOutput, InlineFile, Mount, MountKind, Network, Op,
    Origin, Sharing, Source, Vertex, VertexId,
};
use crate::instructions::{self, Command, Copy, Healthcheck, Instruction, Run};
use crate::parse::expand::ShellLex;
use crate::platform::Platform;

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
            return Err(ParseError::new(span, "no build stage in the Dockerfile: add a FROM"));
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
            state.head = self.config_vertex(&stages[target], from, &state, text);
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
        env: &Vec<(String, String)>,
    ) -> Result<String, ParseError> {
        self.lex
            .process_word(word, env)
            .map_err(|e| ParseError::new(instructions::locate(node, word), e.message))
    }

    fn expand_words(
        &self,
        node: &Node,
        word: &str,
        env: &Vec<(String, String)>,
    ) -> Result<Vec<String>, ParseError> {
        self.lex
            .process_words(word, env)
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
                ParseError::new(stage.from.span, format!("ONBUILD trigger {t:?}: {}", e.message))
            })?;
            for node in &df.nodes {
                let inst = instructions::convert(node).map_err(|e| {
                    ParseError::new(stage.from.span, format!("ONBUILD trigger {t:?}: {}", e.message))
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

    fn config_vertex(
        &mut self,
        stage: &Stage<'_>,
        node: &Node,
        state: &State,
        instruction: String,
    ) -> VertexId {
        let parent = self.compiler.graph.vertex(state.head).digest;
        let digest = Canon::new("config")
            .digest("parent", &parent)
            .str("instruction", &instruction)
            .finish();
        let origin = self.origin(stage, node);
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
                        for port in expand_port(&w).map_err(|m| {
                            ParseError::new(instructions::locate(node, p), m)
                        })? {
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
        state.head = self.config_vertex(stage, node, state, text);
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
        if let Some(j) = stages.iter().position(|s| s.name.as_deref() == Some(&lower)) {
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
        env: &Vec<(String, String)>,
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
            .strs("env", &op.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
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
        env: &Vec<(String, String)>,
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
                        expand_heredoc(&self.lex, &c.data, env)
                            .map_err(|m| ParseError::new(node.span, m))?
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

fn canon_mount(c: &mut Canon, m: &Mount, graph: &BuildGraph) {
    c.str("mount.target", &m.target);
    let src = |c: &mut Canon, s: &Source| match s {
        Source::Context(ctx) => {
            c.str("mount.context", ctx);
        }
        Source::Vertex(v) => {
            c.digest("mount.from", &graph.vertex(*v).digest);
        }
    };
    match &m.kind {
        MountKind::Bind {
            from,
            source,
            readwrite,
        } => {
            c.str("mount.type", "bind");
            src(c, from);
            c.str("mount.source", source).num("mount.rw", *readwrite as u64);
        }
        MountKind::Cache {
            id,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly,
        } => {
            c.str("mount.type", "cache").str("mount.id", id);
            c.str("mount.sharing", &format!("{sharing:?}"));
            if let Some(f) = from {
                src(c, f);
            }
            c.str("mount.source", source)
                .num("mount.mode", *mode as u64)
                .num("mount.uid", *uid as u64)
                .num("mount.gid", *gid as u64)
                .num("mount.ro", *readonly as u64);
        }
        MountKind::Tmpfs { size } => {
            c.str("mount.type", "tmpfs").num("mount.size", *size);
        }
        // Secrets never enter a key: only that one is mounted, and where.
        MountKind::Secret { id, env, .. } => {
            c.str("mount.type", "secret").str("mount.id", id);
            c.str("mount.env", env.as_deref().unwrap_or(""));
        }
        MountKind::Ssh { id, .. } => {
            c.str("mount.type", "ssh").str("mount.id", id);
        }
    }
}

#[derive(Default)]
struct MountSpec {
    kind: String,
    target: Option<String>,
    source: Option<String>,
    from: Option<String>,
    id: Option<String>,
    sharing: Option<String>,
    mode: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    readonly: Option<bool>,
    required: bool,
    size: Option<String>,
    env: Option<String>,
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("invalid value {other:?} for mount option {key}")),
    }
}

/// `type=cache,target=/x,id=y,…`
fn parse_mount(spec: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "bind".to_string(),
        ..Default::default()
    };
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| v.ok_or_else(|| format!("mount option {key} needs a value"));
        match key.as_str() {
            "type" => m.kind = need(value)?.to_ascii_lowercase(),
            "target" | "dst" | "destination" => m.target = Some(need(value)?),
            "source" | "src" => m.source = Some(need(value)?),
            "from" => m.from = Some(need(value)?),
            "id" => m.id = Some(need(value)?),
            "sharing" => m.sharing = Some(need(value)?),
            "mode" => m.mode = Some(need(value)?),
            "uid" => m.uid = Some(need(value)?),
            "gid" => m.gid = Some(need(value)?),
            "size" => m.size = Some(need(value)?),
            "env" => m.env = Some(need(value)?),
            "readonly" | "ro" => m.readonly = Some(parse_bool(&key, value.as_deref())?),
            "readwrite" | "rw" => m.readonly = Some(!parse_bool(&key, value.as_deref())?),
            "required" => m.required = parse_bool(&key, value.as_deref())?,
            _ => return Err(format!("unknown mount option {key:?}")),
        }
    }
    if !matches!(m.kind.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
        return Err(format!(
            "unsupported mount type {:?} (use bind, cache, tmpfs, secret or ssh)",
            m.kind
        ));
    }
    Ok(m)
}

fn parse_num(key: &str, v: Option<&str>, radix: u32, default: u32) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(s) => u32::from_str_radix(s, radix)
            .map_err(|_| format!("invalid value {s:?} for mount option {key}")),
    }
}

impl MountSpec {
    fn build(self, from: Option<Source>, context: &str, workdir: &str) -> Result<Mount, String> {
        let target = self.target.as_deref().map(|t| join_path(workdir, t));
        let required_target = || {
            target
                .clone()
                .ok_or_else(|| format!("mount type={} needs a target", self.kind))
        };
        let kind = match self.kind.as_str() {
            "bind" => MountKind::Bind {
                from: from.unwrap_or_else(|| Source::Context(context.to_string())),
                source: self.source.clone().unwrap_or_else(|| "/".to_string()),
                readwrite: self.readonly == Some(false),
            },
            "cache" => {
                let t = required_target()?;
                MountKind::Cache {
                    id: self.id.clone().unwrap_or_else(|| t.clone()),
                    sharing: match self.sharing.as_deref() {
                        None | Some("shared") => Sharing::Shared,
                        Some("private") => Sharing::Private,
                        Some("locked") => Sharing::Locked,
                        Some(o) => return Err(format!("invalid sharing mode {o:?}")),
                    },
                    from,
                    source: self.source.clone().unwrap_or_else(|| "/".to_string()),
                    mode: parse_num("mode", self.mode.as_deref(), 8, 0o755)?,
                    uid: parse_num("uid", self.uid.as_deref(), 10, 0)?,
                    gid: parse_num("gid", self.gid.as_deref(), 10, 0)?,
                    readonly: self.readonly.unwrap_or(false),
                }
            }
            "tmpfs" => MountKind::Tmpfs {
                size: match self.size.as_deref() {
                    None => 0,
                    Some(s) => s
                        .parse()
                        .map_err(|_| format!("invalid tmpfs size {s:?}: expected bytes"))?,
                },
            },
            "secret" => {
                let id = match (&self.id, &target, &self.env) {
                    (Some(id), _, _) => id.clone(),
                    (None, Some(t), _) => t.rsplit('/').next().unwrap_or(t).to_string(),
                    (None, None, Some(e)) => e.clone(),
                    (None, None, None) => return Err("secret mount needs an id or a target".into()),
                };
                let t = match (&target, &self.env) {
                    (Some(t), _) => t.clone(),
                    (None, Some(_)) => String::new(),
                    (None, None) => format!("/run/secrets/{id}"),
                };
                return Ok(Mount {
                    target: t,
                    kind: MountKind::Secret {
                        id,
                        required: self.required,
                        mode: parse_num("mode", self.mode.as_deref(), 8, 0o400)?,
                        uid: parse_num("uid", self.uid.as_deref(), 10, 0)?,
                        gid: parse_num("gid", self.gid.as_deref(), 10, 0)?,
                        env: self.env.clone(),
                    },
                });
            }
            _ => {
                return Ok(Mount {
                    target: target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".to_string()),
                    kind: MountKind::Ssh {
                        id: self.id.clone().unwrap_or_else(|| "default".to_string()),
                        required: self.required,
                    },
                })
            }
        };
        Ok(Mount {
            target: required_target()?,
            kind,
        })
    }
}

/// The script a shell-form RUN with heredocs hands to the shell. A lone
/// heredoc (`RUN <<EOF`) is the script itself (with a `#!` line, run through
/// that interpreter); otherwise the shell reads the heredocs it names.
fn heredoc_script(cmd: &str, heredocs: &[crate::ast::Heredoc]) -> String {
    if heredocs.is_empty() {
        return cmd.to_string();
    }
    if let [h] = heredocs {
        let word = cmd.trim();
        let bare = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if bare.starts_with("<<") && !bare.contains(char::is_whitespace) && h.file_descriptor == 0 {
            let body = if h.chomp {
                instructions::chomp(&h.content)
            } else {
                h.content.clone()
            };
            if let Some(first) = body.lines().next() {
                if let Some(interp) = first.strip_prefix("#!") {
                    return format!(
                        "{} /dev/stdin <<'RBK_HEREDOC_EOF'\n{body}RBK_HEREDOC_EOF",
                        interp.trim()
                    );
                }
            }
            return body;
        }
    }
    let mut script = cmd.to_string();
    for h in heredocs {
        script.push('\n');
        script.push_str(&h.content);
        script.push_str(&h.name);
    }
    script
}

/// Expands `$NAME` and `${…}` in a heredoc body, keeping quotes and other
/// text as written (BuildKit does not strip quotes from heredoc files).
fn expand_heredoc(
    lex: &ShellLex,
    data: &str,
    env: &Vec<(String, String)>,
) -> Result<String, String> {
    let mut out = String::with_capacity(data.len());
    let mut rest = data;
    while let Some(pos) = rest.find(['$', '\\']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = after;
            continue;
        }
        if tail.starts_with('\\') {
            out.push('\\');
            rest = &tail[1..];
            continue;
        }
        let len = if tail.starts_with("${") {
            let mut depth = 0usize;
            let mut end = None;
            for (i, ch) in tail.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end.ok_or_else(|| "unterminated ${ in heredoc".to_string())?
        } else {
            1 + tail[1..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len() - 1)
        };
        if len == 1 {
            out.push('$');
        } else {
            out.push_str(&lex.process_word(&tail[..len], env).map_err(|e| e.message)?);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    Ok(out)
}

fn health_config(node: &Node, h: &Healthcheck) -> Result<HealthConfig, ParseError> {
    Ok(match h {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let dur = |v: &Option<String>| v.as_deref().and_then(instructions::parse_duration).unwrap_or(0);
            HealthConfig {
                test: match command {
                    Command::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                    Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                },
                interval: dur(interval),
                timeout: dur(timeout),
                start_period: dur(start_period),
                start_interval: dur(start_interval),
                retries: match retries {
                    Some(r) => r.parse().map_err(|_| {
                        ParseError::new(node.span, format!("invalid --retries {r:?}"))
                    })?,
                    None => 0,
                },
            }
        }
    })
}

fn node_rest(node: &Node) -> String {
    let t = node.original.trim();
    t.split_once(char::is_whitespace)
        .map(|(_, r)| r.trim().to_string())
        .unwrap_or_default()
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"))
}

fn quote_if_needed(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

/// Adds `:latest` to a reference with neither tag nor digest.
pub fn normalize_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `EXPOSE` word → `port/proto` entries (ranges expanded).
fn expand_port(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto {proto:?} in EXPOSE {word}"));
    }
    // `EXPOSE 0.0.0.0:80:80` style host parts are not allowed by Docker.
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid port {s:?} in EXPOSE {word}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!("invalid range in EXPOSE {word}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Joins a WORKDIR-relative path and cleans `.`/`..`/double slashes.
pub fn join_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", if base.is_empty() { "/" } else { base })
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (b, p, want) in [
            ("", "app", "/app"),
            ("/app", "src", "/app/src"),
            ("/app", "/x/../y/./z/", "/y/z"),
            ("/a/b", "..", "/a"),
            ("/", "../..", "/"),
        ] {
            assert_eq!(join_path(b, p), want, "{b} + {p}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(expand_port("80").ok(), Some(vec!["80/tcp".to_string()]));
        assert_eq!(
            expand_port("53/UDP").ok(),
            Some(vec!["53/udp".to_string()])
        );
        assert_eq!(expand_port("8000-8002").map(|v| v.len()).ok(), Some(3));
        assert!(expand_port("http").is_err());
        assert!(expand_port("80/foo").is_err());
        assert!(expand_port("9-1").is_err());
    }

    #[test]
    fn images_get_latest() {
        assert_eq!(normalize_image("centos"), "centos:latest");
        assert_eq!(normalize_image("centos:7"), "centos:7");
        assert_eq!(normalize_image("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize_image("x@sha256:00"), "x@sha256:00");
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked").ok();
        assert!(m.is_some());
        assert!(parse_mount("type=weird,target=/x").is_err());
        assert!(parse_mount("type=cache,bogus=1").is_err());
        let built = parse_mount("type=cache,target=cache")
            .and_then(|m| m.build(None, "/ctx", "/app"));
        match built {
            Ok(Mount {
                target,
                kind: MountKind::Cache { id, .. },
            }) => {
                assert_eq!(target, "/app/cache");
                assert_eq!(id, "/app/cache");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lone_heredoc_is_the_script() {
        let h = crate::ast::Heredoc {
            name: "EOF".into(),
            file_descriptor: 0,
            expand: true,
            chomp: false,
            content: "echo a\necho b\n".into(),
        };
        assert_eq!(heredoc_script("<<EOF", std::slice::from_ref(&h)), "echo a\necho b\n");
        assert_eq!(
            heredoc_script("cat <<EOF > /x", std::slice::from_ref(&h)),
            "cat <<EOF > /x\necho a\necho b\nEOF"
        );
    }
}
