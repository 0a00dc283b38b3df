//! The steps that make layers: RUN (exec) and COPY/ADD (file) vertices.

use super::mount::{canon_mount, parse_mount};
use super::util::{expand_heredoc, heredoc_script};
use super::{Lowerer, Stage, State};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{
    Canon, ExecEnv, ExecOp, FileOp, InlineFile, Network, Op, Source, Vertex, VertexDigest, VertexId,
};
use crate::instructions::{self, Command, Copy, Run};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
    pub(super) fn run_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        run: &Run,
        node: &Node,
        state: &State,
        env: &dyn Env,
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
        let op = ExecOp {
            args,
            env: ExecEnv::new(state.env.clone(), state.args.clone()),
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
            .digest("env", &VertexDigest(op.env.digest()))
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

    pub(super) fn copy_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        copy: &Copy,
        node: &Node,
        state: &State,
        env: &dyn Env,
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
