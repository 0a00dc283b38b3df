//! COPY and ADD: a file vertex — where the sources come from (the context
//! or another stage or image), the expanded sources and destination, heredoc
//! files, and the flags.

use super::util::expand_heredoc;
use super::{Lowerer, Stage, State};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{Canon, FileOp, InlineFile, Op, Source, Vertex, VertexDigest, VertexId};
use crate::instructions::{self, Copy};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
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
                match self.named_dir(&f) {
                    Some(dir) => Source::Context(dir),
                    None => {
                        let id = self.resolve_from(stages, i, node, &f)?;
                        inputs.push(id);
                        Source::Vertex(id)
                    }
                }
            }
            None => Source::Context(self.input.context.clone()),
        };
        let op = self.file_op(copy, from, node, state, env)?;
        let digest = self.file_digest(&op, state);
        let kw = if op.add { "ADD" } else { "COPY" };
        let mut shown: Vec<String> = op.sources.clone();
        shown.extend(op.inline.iter().map(|f| format!("<<{}", f.name)));
        let created_by = format!("{kw} {} {}", shown.join(" "), op.dest);
        let origin = self.origin(&stages[i], node);
        Ok(self.compiler.graph.add(Vertex {
            op: Op::File(op),
            digest,
            parent: Some(state.head),
            inputs,
            origins: vec![origin],
            created_by,
        }))
    }

    /// The op of a COPY/ADD reading `from`: every word expanded.
    fn file_op(
        &self,
        copy: &Copy,
        from: Source,
        node: &Node,
        state: &State,
        env: &dyn Env,
    ) -> Result<FileOp, ParseError> {
        let opt = |v: &Option<String>| -> Result<Option<String>, ParseError> {
            v.as_ref().map(|v| self.expand(node, v, env)).transpose()
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
        // The Dockerfile's own ignore file is for the main context only.
        let ignore_file = match &from {
            Source::Context(c) if *c == self.input.context => self.input.ignore_file.clone(),
            _ => None,
        };
        let chmod = opt(&copy.chmod)?;
        if let Some(m) = &chmod {
            check_chmod(m, node)?;
        }
        Ok(FileOp {
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
            chown: opt(&copy.chown)?,
            chmod,
            link: copy.link,
            parents: copy.parents,
            excludes: copy
                .excludes
                .iter()
                .map(|e| self.expand(node, e, env))
                .collect::<Result<_, _>>()?,
            checksum: opt(&copy.checksum)?,
            keep_git_dir: copy.keep_git_dir,
            ignore_file,
        })
    }

    /// The definition digest of a file op over the state's head.
    fn file_digest(&self, op: &FileOp, state: &State) -> VertexDigest {
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
        // Only when set: the digests of every other COPY stay as they were.
        if let Some(f) = &op.ignore_file {
            c.str("ignore_file", f);
        }
        c.finish()
    }
}

/// `--chmod` takes an octal or a symbolic mode.
fn check_chmod(m: &str, node: &Node) -> Result<(), ParseError> {
    match crate::chmod::Chmod::parse(m) {
        Ok(_) => Ok(()),
        Err(why) => Err(ParseError::new(
            instructions::locate(node, "--chmod"),
            format!("invalid --chmod={m}: {why}"),
        )),
    }
}
