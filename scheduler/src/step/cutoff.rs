//! Early cutoff: a step's key by *results*, known once its inputs exist.
//!
//! The first pass keys a step by its definition, its parent's key and
//! what it reads from contexts, so a rerun upstream changes every key
//! after it, even when the rerun made the same files. Before a step that
//! missed runs, the runner asks the cache once more, under the step's
//! result key: its op alone ([`Vertex::own`]), the parent's filesystem
//! (its chain id), what it reads from a context (as the first pass keyed
//! it) and the digest of what it selects in the stages it reads from (as
//! BuildKit keys `COPY --from` on the content it selects). A stage that
//! reran and made the same files leaves those keys as they were.

use rbk_compiler::graph::{MountKind, Op, Source, Vertex};

use super::{Keyed, StepEnv, StepError};
use crate::context::digest_tree;
use crate::state::State;
use rbk_runtime::cancel::CancelToken;

/// Step `vx`'s result key over `parent`, reading `extra` (the states of
/// its inputs, in order) and the context files `keyed`; `None` for a
/// `COPY --link` (its layer has a key of its own) and ops without layers.
pub(crate) fn result_key(
    env: &StepEnv<'_>,
    vx: &Vertex,
    keyed: &Keyed,
    parent: &State,
    extra: &[&State],
    epoch: Option<i64>,
    cancel: &CancelToken,
) -> Result<Option<String>, StepError> {
    let own = vx.own.hex();
    let chain = parent.chain_id().map(|c| c.to_string()).unwrap_or_default();
    let mut parts: Vec<String> = vec!["rbk.result.v1".into(), own, chain];
    match &vx.op {
        Op::File(f) if f.link => return Ok(None),
        Op::File(f) => match &f.from {
            Source::Context { .. } => {
                if let Some(files) = &keyed.files {
                    parts.push(files.digest.hex.clone());
                }
                parts.extend(f.sources.iter().filter(|s| super::copy::is_url(s)).cloned());
            }
            Source::Vertex(_) => {
                let state = extra
                    .first()
                    .ok_or(StepError::Internal("COPY --from without its input"))?;
                parts.push(selected(env, state, &f.sources, &f.excludes, cancel)?);
            }
        },
        Op::Exec(e) => {
            parts.extend(keyed.binds.iter().map(|b| b.digest.hex.clone()));
            let mut states = extra.iter();
            for m in &e.mounts {
                let (from, source) = match &m.kind {
                    MountKind::Bind {
                        from: Source::Vertex(_),
                        source,
                        ..
                    } => (true, Some(source)),
                    MountKind::Cache {
                        from: Some(Source::Vertex(_)),
                        ..
                    } => (true, None),
                    _ => (false, None),
                };
                if !from {
                    continue;
                }
                let state = states
                    .next()
                    .ok_or(StepError::Internal("a mount without its input"))?;
                parts.push(match source {
                    Some(src) => selected(env, state, std::slice::from_ref(src), &[], cancel)?,
                    None => state.chain_id().map(|c| c.to_string()).unwrap_or_default(),
                });
            }
        }
        Op::Workdir { .. } => {}
        Op::Source { .. } | Op::Config { .. } => return Ok(None),
    }
    if let Some(e) = epoch {
        parts.push(format!("source_date_epoch={e}"));
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    Ok(Some(super::key_of(&bytes)))
}

/// The digest of what `patterns` select in `state`'s filesystem.
fn selected(
    env: &StepEnv<'_>,
    state: &State,
    patterns: &[String],
    excludes: &[String],
    cancel: &CancelToken,
) -> Result<String, StepError> {
    let view = env.view(state, cancel)?;
    Ok(digest_tree(view.path(), patterns, excludes, None)?.hex)
}
