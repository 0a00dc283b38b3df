//! COPY and ADD: the cache key (the content of the context files they
//! select, or the keys of the stages they copy from), and the copy itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_compiler::graph::{FileOp, Source};
use serde_json::json;

use super::{Change, Execution, LayerPolicy, StepEnv, StepError, StepInputs, StepKind};
use crate::context::Selected;
use crate::fileop::{git, AddOptions, CopySpec, FileOpError};
use crate::state::State;
use rbk_runtime::cancel::CancelToken;

/// COPY or ADD, `--link` or not.
pub(crate) struct CopyStep<'g>(pub &'g FileOp);

impl StepKind for CopyStep<'_> {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::Layer
    }

    fn inputs(&self, env: &StepEnv<'_>, from_keys: &[&str]) -> Result<StepInputs, StepError> {
        inputs(env, self.0, from_keys)
    }

    /// A copy from a build context reads no other stage's key.
    fn inputs_are_early(&self) -> bool {
        matches!(self.0.from, Source::Context { .. })
    }

    fn execute(
        &self,
        env: &StepEnv<'_>,
        run: &Execution<'_>,
        rootfs: &Path,
    ) -> Result<Change, StepError> {
        let src = match &self.0.from {
            Source::Context { path, .. } => From::Context(PathBuf::from(path), self.selected(env)?),
            Source::Vertex(_) => From::State(
                run.extra
                    .first()
                    .ok_or(StepError::Internal("COPY --from without its input"))?,
            ),
        };
        execute(env, self.0, &src, rootfs, run.cancel)?;
        Ok(Change::Changed)
    }

    /// What it selects: the context files' digest (as the first pass keyed
    /// it) and its URLs, or the digest of what it selects in the stage it
    /// copies from (as BuildKit keys `COPY --from` on content). None for a
    /// linked copy: its layer has a key of its own.
    fn result_inputs(
        &self,
        env: &StepEnv<'_>,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<Option<Vec<String>>, StepError> {
        let f = self.0;
        if f.link {
            return Ok(None);
        }
        let mut parts = Vec::new();
        match &f.from {
            Source::Context { .. } => {
                if let Some(files) = self.selected(env)? {
                    parts.push(files.digest.hex.clone());
                }
                parts.extend(remote_parts(f)?);
            }
            Source::Vertex(_) => {
                let state = extra
                    .first()
                    .ok_or(StepError::Internal("COPY --from without its input"))?;
                let selected = super::cutoff::selected(env, state, &f.sources, &f.excludes, cancel);
                parts.push(selected?);
            }
        }
        Ok(Some(parts))
    }

    /// `COPY --link`: its definition without the parent. The same copy over
    /// another parent has the same layer key, so a changed base reuses the
    /// layer.
    fn link_definition(&self) -> Option<String> {
        self.0.link.then(|| self.0.link_digest().hex())
    }

    fn context_files(&self, env: &StepEnv<'_>) -> Result<Option<Arc<Selected>>, StepError> {
        self.selected(env)
    }
}

impl CopyStep<'_> {
    /// What it selects in its build context (its local sources: URLs are
    /// fetched beside them), made once a build by the context module;
    /// `None` when it copies from a stage or only downloads.
    fn selected(&self, env: &StepEnv<'_>) -> Result<Option<Arc<Selected>>, StepError> {
        let f = self.0;
        let Source::Context { path, .. } = &f.from else {
            return Ok(None);
        };
        let local: Vec<String> = f.sources.iter().filter(|s| !is_url(s)).cloned().collect();
        if local.is_empty() {
            return Ok(None);
        }
        let ignore_file = f.ignore_file.as_deref();
        Ok(Some(env.contexts.select(
            path,
            ignore_file,
            &local,
            &f.excludes,
        )?))
    }
}

/// Where a COPY reads from.
pub(crate) enum From<'s> {
    /// A build context directory, with the selection and digest made for
    /// the cache key.
    Context(PathBuf, Option<Arc<Selected>>),
    /// Another stage's or image's filesystem.
    State(&'s State),
}

/// The key of a COPY/ADD: the digest of the context files it selects (and
/// the URLs it downloads), or the keys of the stages it copies from.
pub(crate) fn inputs(
    env: &StepEnv<'_>,
    f: &FileOp,
    from_keys: &[&str],
) -> Result<StepInputs, StepError> {
    let Source::Context { .. } = &f.from else {
        return Ok(StepInputs::plain(
            from_keys.join(","),
            json!({ "sources": f.sources, "dest": f.dest, "inputs": from_keys }),
        ));
    };
    let mut key = String::new();
    if let Some(files) = CopyStep(f).selected(env)? {
        key.push_str(&files.digest.hex);
    }
    for part in remote_parts(f)? {
        key.push_str(&part);
    }
    Ok(StepInputs::plain(
        key,
        json!({ "sources": f.sources, "dest": f.dest }),
    ))
}

/// What the remote sources of an ADD put in its keys: a URL without
/// --checksum its address only; a git repository its address and the
/// commit its ref names now (`git ls-remote`), so a moved branch reruns.
fn remote_parts(f: &FileOp) -> Result<Vec<String>, StepError> {
    let mut parts = Vec::new();
    for u in f.sources.iter().filter(|s| is_url(s)) {
        if f.add && git::is_git_url(u) {
            let src = git::GitSource::parse(u).map_err(FileOpError::from)?;
            let commit = git::resolve_commit(&src, &git::FetchOptions::default())
                .map_err(FileOpError::from)?;
            parts.push(format!("{u}@{commit}"));
        } else {
            parts.push(u.clone());
        }
    }
    Ok(parts)
}

pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || git::is_git_url(s)
}

/// Runs a COPY/ADD into the mounted `rootfs`.
pub(crate) fn execute(
    env: &StepEnv<'_>,
    file: &FileOp,
    src: &From<'_>,
    rootfs: &Path,
    cancel: &CancelToken,
) -> Result<(), StepError> {
    let spec = copy_spec(file, rootfs, matches!(src, From::State(_)))?;
    match src {
        From::Context(path, selection) => {
            let c = env
                .contexts
                .get(&path.display().to_string(), file.ignore_file.as_deref())?;
            match selection {
                Some(keyed) => crate::fileop::copy_selection(
                    c.root(),
                    rootfs,
                    &spec,
                    &keyed.selection,
                    &keyed.digest,
                )?,
                None => crate::fileop::copy(c.root(), rootfs, &spec, Some(c.ignore()))?,
            };
        }
        From::State(state) => {
            let view = env.view(state, cancel)?;
            crate::fileop::copy(view.path(), rootfs, &spec, None)?;
        }
    }
    Ok(())
}

/// The file operation a COPY/ADD asks for; `--chown` names are looked up
/// in the image being built.
fn copy_spec(file: &FileOp, rootfs: &Path, from_stage: bool) -> Result<CopySpec, StepError> {
    let chown = match &file.chown {
        Some(c) => Some(crate::fileop::resolve_chown(rootfs, c)?),
        None => None,
    };
    let chmod = match &file.chmod {
        Some(m) => Some(
            rbk_compiler::chmod::Chmod::parse(m).map_err(|why| StepError::Chmod(m.clone(), why))?,
        ),
        None => None,
    };
    Ok(CopySpec {
        sources: file.sources.clone(),
        dest: file.dest.clone(),
        workdir: file.workdir.clone(),
        chown,
        chmod,
        excludes: file.excludes.clone(),
        parents: file.parents,
        follow_symlinks_in_sources: true,
        // Files from a context get root (or --chown); from a stage they keep
        // their owners, as in Docker.
        keep_ownership: from_stage,
        add: file.add.then(|| AddOptions {
            unpack: true,
            checksum: file.checksum.clone(),
            keep_git_dir: file.keep_git_dir,
        }),
        heredocs: file
            .inline
            .iter()
            .map(|f| (f.name.clone(), f.data.clone().into_bytes()))
            .collect(),
    })
}
