//! Which inputs of one build are built on which: a `FROM` naming a tag
//! another input makes, or a `target:NAME` context (bake's `contexts`).
//! Inputs are added to the graph in that order, so an image's steps hang
//! off the steps of the image it is built on and a change to the base
//! reaches it in the same build.

use std::collections::HashMap;

use super::{canonical_ref, CompileError, Compiler, ImageResolver, Input, Lowerer, NamedContext};
use crate::ast::Span;
use crate::error::ParseError;

/// One input's dependency on another, with where it is written.
struct Edge {
    to: usize,
    span: Span,
    what: String,
}

/// The inputs `wanted` (indices into `inputs`) and every input they are
/// built on, each after its dependencies; `wanted`'s own order is kept
/// where dependencies allow. A cycle is an error naming it at the `FROM`
/// that closes it; a `target:` context naming no input is an error.
pub fn dependency_order(
    inputs: &[Input],
    wanted: &[usize],
    resolver: &dyn ImageResolver,
) -> Result<Vec<usize>, CompileError> {
    let mut by_tag: HashMap<String, usize> = HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
        for t in &input.tags {
            by_tag.entry(canonical_ref(t)).or_insert(i);
        }
    }
    let mut edges: Vec<Option<Vec<Edge>>> = (0..inputs.len()).map(|_| None).collect();
    // 0: not seen, 1: on the current path, 2: done.
    let mut mark = vec![0u8; inputs.len()];
    let mut order = Vec::new();
    for &root in wanted {
        if mark[root] != 0 {
            continue;
        }
        // An explicit stack of (input, next edge), so long chains of
        // targets need no native stack.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = 1;
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if edges[i].is_none() {
                edges[i] = Some(input_edges(inputs, i, &by_tag, resolver)?);
            }
            let list = edges[i].as_deref().unwrap_or_default();
            if let Some(e) = list.get(*next) {
                *next += 1;
                match mark[e.to] {
                    0 => {
                        mark[e.to] = 1;
                        stack.push((e.to, 0));
                    }
                    1 => {
                        let start = stack.iter().position(|&(j, _)| j == e.to).unwrap_or(0);
                        let mut names: Vec<&str> = stack[start..]
                            .iter()
                            .map(|&(j, _)| inputs[j].name.as_str())
                            .collect();
                        names.push(&inputs[e.to].name);
                        return Err(CompileError::new(
                            &inputs[i],
                            ParseError::new(
                                e.span,
                                format!(
                                    "targets are built on each other: {} ({})",
                                    names.join(" → "),
                                    e.what
                                ),
                            ),
                        ));
                    }
                    _ => {}
                }
            } else {
                mark[i] = 2;
                order.push(i);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// The inputs input `i` is built on.
fn input_edges(
    inputs: &[Input],
    i: usize,
    by_tag: &HashMap<String, usize>,
    resolver: &dyn ImageResolver,
) -> Result<Vec<Edge>, CompileError> {
    let input = &inputs[i];
    let target = |name: &str, t: &str, span: Span| -> Result<Edge, CompileError> {
        let to = inputs.iter().position(|x| x.name == t).ok_or_else(|| {
            CompileError::new(
                input,
                ParseError::new(
                    span,
                    format!("context {name:?} is target {t:?}, which is not defined"),
                ),
            )
        })?;
        Ok(Edge {
            to,
            span,
            what: format!("context {name} = target:{t}"),
        })
    };
    let mut out = Vec::new();
    for (base, span) in from_bases(input, resolver)? {
        match input.named_contexts.get(&base) {
            Some(NamedContext::Target(t)) => out.push(target(&base, t, span)?),
            Some(_) => {}
            None => {
                // An image built on an earlier version of itself (FROM its
                // own tag) starts from the stored one.
                if let Some(&to) = by_tag.get(&canonical_ref(&base)).filter(|&&to| to != i) {
                    out.push(Edge {
                        to,
                        span,
                        what: format!("FROM {base}"),
                    });
                }
            }
        }
    }
    // A target context counts even when only COPY --from reads it.
    for (name, c) in &input.named_contexts {
        if let NamedContext::Target(t) = c {
            let e = target(name, t, Span::default())?;
            if !out.iter().any(|x| x.to == e.to) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// The base of every stage of `input` that is not built on an earlier
/// stage, with its `FROM`'s position (global ARGs and build args applied).
fn from_bases(
    input: &Input,
    resolver: &dyn ImageResolver,
) -> Result<Vec<(String, Span)>, CompileError> {
    let err = |e| CompileError::new(input, e);
    let df = crate::parse::parse(&input.source).map_err(err)?;
    // Splitting into stages touches no graph: a scratch compiler will do.
    let mut scratch = Compiler::new(resolver);
    let mut lw = Lowerer::new(&mut scratch, input, df.directives.escape).map_err(err)?;
    let stages = lw.split(&df.nodes).map_err(err)?;
    Ok(stages
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            lw.names
                .get(&s.base.to_ascii_lowercase())
                .is_none_or(|j| j >= i)
        })
        .map(|(_, s)| (s.base.clone(), s.from.span))
        .collect())
}
