//! COPY and ADD: a file vertex — where the sources come from (the context
//! or another stage or image), the expanded sources and destination, heredoc
//! files, and the flags.

use super::util::expand_heredoc;
use super::{Lowerer, Stage, StageImage};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{Canons, Digests, FileOp, InlineFile, Op, Source, Vertex, VertexId};
use crate::instructions::{self, Copy};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
    pub(super) fn copy_vertex(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        copy: &Copy,
        node: &Node,
        state: &StageImage,
        env: &dyn Env,
    ) -> Result<VertexId, ParseError> {
        let mut inputs = Vec::new();
        let from = match &copy.from {
            Some(f) => {
                let f = self.expand(node, f, env)?;
                match self.named_dir(&f) {
                    Some(dir) => Source::Context { path: dir, name: f },
                    None => {
                        let id = self.resolve_from(stages, i, node, &f)?;
                        inputs.push(id);
                        Source::Vertex(id)
                    }
                }
            }
            None => self.own_context(),
        };
        let op = self.file_op(copy, from, node, state, env)?;
        let Digests {
            id: digest,
            key,
            own,
        } = self.file_digest(&op, state);
        let kw = if op.add { "ADD" } else { "COPY" };
        let mut shown: Vec<String> = op.sources.clone();
        shown.extend(op.inline.iter().map(|f| format!("<<{}", f.name)));
        let created_by = format!("{kw} {} {}", shown.join(" "), op.dest);
        let origin = self.origin(&stages[i], node);
        Ok(self.compiler.graph.add(Vertex {
            op: Op::File(op),
            digest,
            key,
            own,
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
        state: &StageImage,
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
            Source::Context { path, .. } if *path == self.input.context => {
                self.input.ignore_file.clone()
            }
            _ => None,
        };
        let chmod = opt(&copy.chmod)?;
        if let Some(m) = &chmod {
            check_chmod(m, node)?;
        }
        let chown = opt(&copy.chown)?;
        // As BuildKit: with --chmod the copy is an ordinary one (its layer
        // stacks on the parent), and a linked layer, made on nothing, has no
        // /etc/passwd to look a name up in.
        let link = copy.link && chmod.is_none();
        if let (true, Some(c)) = (link, &chown) {
            check_link_chown(c, node)?;
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
            chown,
            chmod,
            link,
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
    fn file_digest(&self, op: &FileOp, state: &StageImage) -> Digests {
        let graph = &self.compiler.graph;
        let mut c = Canons::new("file");
        c.vertex("parent", graph.vertex(state.head))
            .num("add", op.add as u64);
        match &op.from {
            Source::Context { path, name } => c.context("context", path, name),
            Source::Vertex(v) => c.vertex("from", graph.vertex(*v)),
        };
        c.each(|c| op.canon_fields(c));
        c.finish()
    }
}

/// `--chown` with `--link`: numeric ids, or `root` (which needs no lookup).
fn check_link_chown(chown: &str, node: &Node) -> Result<(), ParseError> {
    let (user, group) = chown.split_once(':').unwrap_or((chown, ""));
    let plain = |s: &str| s.is_empty() || s == "root" || s.bytes().all(|b| b.is_ascii_digit());
    if plain(user) && plain(group) {
        return Ok(());
    }
    Err(ParseError::new(
        instructions::locate(node, "--chown"),
        format!(
            "--chown={chown} names a user or group, which COPY --link cannot look up (its layer is made on an empty filesystem): use numeric ids (--chown=1000:1000), or drop --link"
        ),
    ))
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
