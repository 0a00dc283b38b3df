//! RUN: an exec vertex — the final argv (SHELL and heredocs applied), the
//! environment, working directory and user, `--network`, `--security` and
//! `--mount`s.

use super::mount::{canon_mount, parse_mount};
use super::util::heredoc_script;
use super::{Lowerer, Stage, StageImage};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{
    Canons, Digests, ExecEnv, ExecOp, Mount, Network, Op, Source, Vertex, VertexDigest, VertexId,
};
use crate::instructions::{self, Command, Run};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
    pub(super) fn run_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        run: &Run,
        node: &Node,
        state: &StageImage,
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
        let network = network(run, node)?;
        let insecure = insecure(run, node)?;
        let (mounts, inputs) = self.run_mounts(stages, i, run, node, state, env)?;
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
        let Digests {
            id: digest,
            key,
            own,
        } = self.exec_digest(&op, state);
        let created_by = format!("RUN {}", op.args.join(" "));
        let origin = self.origin(&stages[i], node);
        Ok(self.compiler.graph.add(Vertex {
            op: Op::Exec(op),
            digest,
            key,
            own,
            parent: Some(state.head),
            inputs,
            origins: vec![origin],
            created_by,
        }))
    }

    /// The `--mount`s of a RUN, and the vertices they read (`from=`).
    fn run_mounts(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        run: &Run,
        node: &Node,
        state: &StageImage,
        env: &dyn Env,
    ) -> Result<(Vec<Mount>, Vec<VertexId>), ParseError> {
        let mut mounts = Vec::new();
        let mut inputs = Vec::new();
        for m in &run.mounts {
            let spec = self.expand(node, &m.spec, env)?;
            let bad = |msg| ParseError::new(instructions::locate(node, &m.spec), msg);
            let parsed = parse_mount(&spec).map_err(bad)?;
            let from = match &parsed.from {
                Some(f) => match self.named_dir(f) {
                    Some(dir) => Some(Source::Context {
                        path: dir,
                        name: f.clone(),
                    }),
                    None => {
                        let id = self.resolve_from(stages, i, node, f)?;
                        inputs.push(id);
                        Some(Source::Vertex(id))
                    }
                },
                None => None,
            };
            mounts.push(
                parsed
                    .build(from, self.own_context(), &state.config.working_dir)
                    .map_err(bad)?,
            );
        }
        Ok((mounts, inputs))
    }

    /// The definition digest of an exec op over the state's head.
    fn exec_digest(&self, op: &ExecOp, state: &StageImage) -> Digests {
        let mut c = Canons::new("exec");
        c.vertex("parent", self.compiler.graph.vertex(state.head))
            .strs("args", &op.args)
            .digest("env", &VertexDigest(op.env.digest()))
            .str("cwd", &op.cwd)
            .str("user", &op.user)
            .str("network", &format!("{:?}", op.network))
            .num("insecure", op.insecure as u64);
        for m in &op.mounts {
            canon_mount(&mut c, m, &self.compiler.graph);
        }
        c.finish()
    }
}

/// `RUN --network=`.
fn network(run: &Run, node: &Node) -> Result<Network, ParseError> {
    match run.network.as_deref() {
        None | Some("default") => Ok(Network::Default),
        Some("host") => Ok(Network::Host),
        Some("none") => Ok(Network::None),
        Some(other) => Err(ParseError::new(
            instructions::locate(node, "--network"),
            format!("unsupported network mode {other:?} (use default, host or none)"),
        )),
    }
}

/// `RUN --security=`: whether it is `insecure`.
fn insecure(run: &Run, node: &Node) -> Result<bool, ParseError> {
    match run.security.as_deref() {
        None | Some("sandbox") => Ok(false),
        Some("insecure") => Ok(true),
        Some(other) => Err(ParseError::new(
            instructions::locate(node, "--security"),
            format!("unsupported security mode {other:?} (use sandbox or insecure)"),
        )),
    }
}
