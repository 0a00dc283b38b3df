//! COPY and ADD: the cache key (the content of the context files they
//! select, or the keys of the stages they copy from), and the copy itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbk_compiler::graph::{FileOp, Source};
use serde_json::json;

use super::{Change, Execution, Keyed, LayerPolicy, StepEnv, StepError, StepInputs, StepKind};
use crate::context::BuildContext;
use crate::fileop::{AddOptions, CopySpec};
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
            Source::Context { path, .. } => {
                From::Context(PathBuf::from(path), run.keyed.files.clone())
            }
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
        keyed: &Keyed,
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
                if let Some(files) = &keyed.files {
                    parts.push(files.digest.hex.clone());
                }
                parts.extend(f.sources.iter().filter(|s| is_url(s)).cloned());
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
}

/// Where a COPY reads from.
pub(crate) enum From<'s> {
    /// A build context directory, with the selection and digest made for
    /// the cache key.
    Context(PathBuf, Option<Arc<super::FileDigests>>),
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
    let Source::Context { path, .. } = &f.from else {
        return Ok(StepInputs::plain(
            from_keys.join(","),
            json!({ "sources": f.sources, "dest": f.dest, "inputs": from_keys }),
        ));
    };
    let (local, urls): (Vec<String>, Vec<String>) =
        f.sources.iter().cloned().partition(|s| !is_url(s));
    let mut files = None;
    let mut key = String::new();
    if !local.is_empty() {
        let c = env.contexts.get(path, f.ignore_file.as_deref())?;
        let sel = Arc::new(c.select(&local, &f.excludes)?);
        let digest = c.digest(&sel)?;
        key.push_str(&digest.hex);
        files = Some(Arc::new(super::FileDigests {
            selection: sel,
            digest,
        }));
    }
    // A URL without --checksum is keyed by its address only.
    for u in &urls {
        key.push_str(u);
    }
    Ok(StepInputs {
        key,
        plaintext: json!({ "sources": f.sources, "dest": f.dest }),
        files,
        binds: Vec::new(),
    })
}

pub(crate) fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
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
        }),
        heredocs: file
            .inline
            .iter()
            .map(|f| (f.name.clone(), f.data.clone().into_bytes()))
            .collect(),
    })
}

/// The rules of a Dockerfile's own ignore file.
fn read_ignore_file(path: &Path) -> Result<crate::context::IgnoreMatcher, StepError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        StepError::from(crate::context::ContextError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })
    })?;
    crate::context::IgnoreMatcher::parse(&text).map_err(|source| {
        StepError::from(crate::context::ContextError::Ignore {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Build contexts opened once per build, with their stat caches: one per
/// directory and ignore file (a Dockerfile's own `.dockerignore` makes the
/// same directory another context).
pub struct Contexts {
    dir: PathBuf,
    open: Mutex<BTreeMap<ContextKey, Arc<BuildContext>>>,
}

/// A context directory and the ignore file used for it, if not its own.
type ContextKey = (String, Option<String>);

impl Contexts {
    /// Contexts whose stat caches live in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Contexts {
            dir,
            open: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn get(
        &self,
        path: &str,
        ignore_file: Option<&str>,
    ) -> Result<Arc<BuildContext>, StepError> {
        let key = (path.to_string(), ignore_file.map(str::to_string));
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(&key) {
            return Ok(c.clone());
        }
        let root = Path::new(path);
        let cache_path = crate::context::stat_cache_path(&self.dir, root);
        let ctx = match ignore_file {
            None => BuildContext::open(root)?,
            Some(f) => BuildContext::open_with_ignore(root, read_ignore_file(Path::new(f))?)?,
        };
        let ctx = Arc::new(ctx.with_stat_cache_file(cache_path));
        open.insert(key, ctx.clone());
        Ok(ctx)
    }

    /// Writes the stat caches back (best effort: a lost cache only costs a
    /// re-read next time).
    pub fn save(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for ((path, _), ctx) in open.iter() {
            if let Some(cache) = ctx.used_stat_cache().filter(|c| c.is_dirty()) {
                let _ = std::fs::create_dir_all(&self.dir);
                let _ = cache.save(&crate::context::stat_cache_path(&self.dir, Path::new(path)));
            }
        }
    }
}
