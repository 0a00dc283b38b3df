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
//! reran and made the same files leaves those keys as they were. What a
//! kind adds to the key is its own ([`StepKind::result_inputs`]).

use rbk_compiler::graph::Vertex;

use super::{StepEnv, StepError, StepKind};
use crate::context::digest_tree;
use crate::state::State;
use rbk_runtime::cancel::CancelToken;

/// Step `vx`'s result key over `parent`, reading `extra` (the states of
/// its inputs, in order); `None` for a kind
/// without one ([`StepKind::result_inputs`]).
pub(crate) fn result_key(
    env: &StepEnv<'_>,
    kind: &dyn StepKind,
    vx: &Vertex,
    parent: &State,
    extra: &[&State],
    epoch: Option<i64>,
    cancel: &CancelToken,
) -> Result<Option<String>, StepError> {
    let Some(inputs) = kind.result_inputs(env, extra, cancel)? else {
        return Ok(None);
    };
    let own = vx.own.hex();
    let chain = parent.chain_id().map(|c| c.to_string()).unwrap_or_default();
    let mut parts: Vec<String> = vec!["rbk.result.v1".into(), own, chain];
    parts.extend(inputs);
    if let Some(e) = epoch {
        parts.push(format!("source_date_epoch={e}"));
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    Ok(Some(super::key_of(&bytes)))
}

/// The digest of what `patterns` select in `state`'s filesystem.
pub(crate) fn selected(
    env: &StepEnv<'_>,
    state: &State,
    patterns: &[String],
    excludes: &[String],
    cancel: &CancelToken,
) -> Result<String, StepError> {
    let view = env.view(state, cancel)?;
    Ok(digest_tree(view.path(), patterns, excludes, None)?.hex)
}
