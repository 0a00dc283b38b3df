//! The instructions that change only the image config — ENV, LABEL,
//! MAINTAINER, EXPOSE, VOLUME, USER, ONBUILD, STOPSIGNAL, HEALTHCHECK,
//! SHELL, CMD, ENTRYPOINT — each a `config` vertex carrying the history
//! text; and ARG, which changes only the scope of later steps.

use super::util::{expand_port, health_config, json_list, node_rest, quote_if_needed};
use super::{Lowerer, Stage, StageImage, MAX_EXPOSED_PORTS};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{Canons, Digests, Op, Origin, Vertex, VertexId};
use crate::instructions::{self, Command, Instruction};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
    /// `ARG name[=default]...` inside a stage: declares each in the stage's
    /// scope with the build arg's value, else its default, else the global
    /// ARG's value.
    pub(super) fn arg(
        &mut self,
        args: &[(String, Option<String>)],
        node: &Node,
        state: &mut StageImage,
        env: &dyn Env,
    ) -> Result<(), ParseError> {
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
        Ok(())
    }

    /// A config-only instruction: applies it to `state.config` and adds
    /// its vertex.
    pub(super) fn metadata(
        &mut self,
        stage: &Stage<'_>,
        inst: &Instruction,
        node: &Node,
        state: &mut StageImage,
        env: &dyn Env,
    ) -> Result<(), ParseError> {
        let text = match inst {
            Instruction::Env(pairs) => {
                self.key_values("ENV", pairs, node, env, |k, v| state.env.set(k, v))?
            }
            Instruction::Label(pairs) => {
                self.key_values("LABEL", pairs, node, env, |k, v| state.labels.set(k, v))?
            }
            Instruction::Maintainer(m) => {
                state.author = Some(m.clone());
                format!("MAINTAINER {m}")
            }
            Instruction::Expose(ports) => self.expose(ports, node, state, env)?,
            Instruction::Volume(vols) => self.volume(vols, node, state, env)?,
            Instruction::User(u) => {
                state.config.user = self.expand(node, u, env)?;
                format!("USER {}", state.config.user)
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
                let argv = Self::argv(state, c);
                state.cmd_set = true;
                let t = format!("CMD {}", json_list(&argv));
                state.config.cmd = Some(argv);
                t
            }
            Instruction::Entrypoint(c) => {
                let argv = Self::argv(state, c);
                // An ENTRYPOINT resets a CMD inherited from the base.
                if !state.cmd_set {
                    state.config.cmd = None;
                }
                let t = format!("ENTRYPOINT {}", json_list(&argv));
                state.config.entrypoint = Some(argv);
                t
            }
            other => {
                return Err(ParseError::new(
                    node.span,
                    format!("{} is not a config instruction", other.keyword()),
                ))
            }
        };
        let origin = self.origin(stage, node);
        state.head = self.config_vertex(origin, state, text);
        Ok(())
    }

    /// ENV and LABEL: every key and value expanded with the scope before
    /// the instruction, then handed to `set`; returns the history text.
    fn key_values(
        &self,
        keyword: &str,
        pairs: &[(String, String)],
        node: &Node,
        env: &dyn Env,
        mut set: impl FnMut(&str, &str),
    ) -> Result<String, ParseError> {
        let mut text = String::from(keyword);
        let mut expanded = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let k = self.expand(node, k, env)?;
            let v = self.expand(node, v, env)?;
            text.push_str(&format!(" {k}={}", quote_if_needed(&v)));
            expanded.push((k, v));
        }
        for (k, v) in &expanded {
            set(k, v);
        }
        Ok(text)
    }

    fn expose(
        &self,
        ports: &[String],
        node: &Node,
        state: &mut StageImage,
        env: &dyn Env,
    ) -> Result<String, ParseError> {
        let mut all = Vec::new();
        for p in ports {
            for w in self.expand_words(node, p, env)? {
                let expanded = expand_port(&w)
                    .map_err(|m| ParseError::new(instructions::locate(node, p), m))?;
                for port in expanded {
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
        Ok(format!("EXPOSE {}", all.join(" ")))
    }

    fn volume(
        &self,
        vols: &[String],
        node: &Node,
        state: &mut StageImage,
        env: &dyn Env,
    ) -> Result<String, ParseError> {
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
        Ok(format!("VOLUME {}", json_list(&all)))
    }

    /// The labels rbk.toml gives a target: one LABEL vertex at the end of
    /// its stage, with a synthetic origin (no Dockerfile line).
    pub(super) fn input_labels(&mut self, stage: &Stage<'_>, state: &mut StageImage) {
        if self.input.labels.is_empty() {
            return;
        }
        let labels = self.input.labels.clone();
        let mut text = String::from("LABEL");
        for (k, v) in &labels {
            state.labels.set(k, v);
            text.push_str(&format!(" {k}={}", quote_if_needed(v)));
        }
        let origin = Origin {
            line: 0,
            text: format!("{text}  (rbk.toml labels)"),
            ..self.origin(stage, stage.from)
        };
        state.head = self.config_vertex(origin, state, text);
    }

    fn config_vertex(
        &mut self,
        origin: Origin,
        state: &StageImage,
        instruction: String,
    ) -> VertexId {
        let Digests {
            id: digest,
            key,
            own,
        } = Canons::new("config")
            .vertex("parent", self.compiler.graph.vertex(state.head))
            .str("instruction", &instruction)
            .finish();
        self.compiler.graph.add(Vertex {
            op: Op::Config {
                instruction: instruction.clone(),
            },
            digest,
            key,
            own,
            parent: Some(state.head),
            inputs: Vec::new(),
            origins: vec![origin],
            created_by: instruction,
        })
    }

    /// The shell of shell-form commands: SHELL's, else `/bin/sh -c`.
    pub(super) fn shell(state: &StageImage) -> Vec<String> {
        if state.config.shell.is_empty() {
            vec!["/bin/sh".to_string(), "-c".to_string()]
        } else {
            state.config.shell.clone()
        }
    }

    /// A CMD's or ENTRYPOINT's argv: exec form as is, shell form through
    /// the shell.
    fn argv(state: &StageImage, c: &Command) -> Vec<String> {
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
