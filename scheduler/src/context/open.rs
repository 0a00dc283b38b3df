//! The build contexts of one build, each opened once, and what steps
//! select in them. A selection is made once, when a step's key is made,
//! and the step reads that same selection when it runs (a COPY copies it,
//! a RUN checks its bind mounts against it): the cache never holds content
//! its key does not name, and the planner carries no file lists.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{stat_cache_path, BuildContext, ContentDigest, ContextError, IgnoreMatcher, Selection};

/// What a step selected in a build context, and its digest.
#[derive(Debug)]
pub struct Selected {
    /// The files, in selection order.
    pub selection: Selection,
    /// Their content digest, with each file's record digest.
    pub digest: ContentDigest,
}

impl Selected {
    /// Each file's path from the source root and its record's digest.
    pub fn named(&self) -> impl Iterator<Item = (String, &[u8; 32])> {
        self.digest.files(&self.selection)
    }
}

/// A context directory and the ignore file used for it, if not its own.
type ContextKey = (String, Option<String>);

/// What was asked of a context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Ask {
    /// COPY/ADD sources, less the excludes.
    Sources(Vec<String>, Vec<String>),
    /// Everything visible under a source (a RUN's bind mount).
    Visible(String),
}

/// Build contexts opened once per build, with their stat caches (one per
/// directory and ignore file: a Dockerfile's own `.dockerignore` makes the
/// same directory another context), and the selections made in them.
pub struct Contexts {
    dir: PathBuf,
    open: Mutex<BTreeMap<ContextKey, Arc<BuildContext>>>,
    selected: Mutex<HashMap<(ContextKey, Ask), Arc<Selected>>>,
}

impl Contexts {
    /// Contexts whose stat caches live in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Contexts {
            dir,
            open: Mutex::new(BTreeMap::new()),
            selected: Mutex::new(HashMap::new()),
        }
    }

    /// The context at `path`, with the rules of `ignore_file` instead of
    /// its own `.dockerignore` when given.
    pub fn get(
        &self,
        path: &str,
        ignore_file: Option<&str>,
    ) -> Result<Arc<BuildContext>, ContextError> {
        let key = (path.to_string(), ignore_file.map(str::to_string));
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(&key) {
            return Ok(c.clone());
        }
        let root = Path::new(path);
        let cache_path = stat_cache_path(&self.dir, root);
        let ctx = match ignore_file {
            None => BuildContext::open(root)?,
            Some(f) => BuildContext::open_with_ignore(root, read_ignore_file(Path::new(f))?)?,
        };
        let ctx = Arc::new(ctx.with_stat_cache_file(cache_path));
        open.insert(key, ctx.clone());
        Ok(ctx)
    }

    /// What `sources` select in the context at `path` (see
    /// [`Contexts::get`]), less `excludes`, and its digest: made on the
    /// first ask of the build, the same one after.
    pub fn select(
        &self,
        path: &str,
        ignore_file: Option<&str>,
        sources: &[String],
        excludes: &[String],
    ) -> Result<Arc<Selected>, ContextError> {
        let ask = Ask::Sources(sources.to_vec(), excludes.to_vec());
        self.selected(path, ignore_file, ask, |c| c.select(sources, excludes))
    }

    /// Everything visible under `source` in the context at `path` (a
    /// RUN's bind mount), and its digest: made once a build, as
    /// [`Contexts::select`].
    pub fn select_visible(&self, path: &str, source: &str) -> Result<Arc<Selected>, ContextError> {
        let ask = Ask::Visible(source.to_string());
        self.selected(path, None, ask, |c| c.select_visible(source))
    }

    fn selected(
        &self,
        path: &str,
        ignore_file: Option<&str>,
        ask: Ask,
        make: impl FnOnce(&BuildContext) -> Result<Selection, ContextError>,
    ) -> Result<Arc<Selected>, ContextError> {
        let key = ((path.to_string(), ignore_file.map(str::to_string)), ask);
        let known = |selected: &Mutex<HashMap<_, Arc<Selected>>>| {
            let map = selected.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&key).cloned()
        };
        if let Some(s) = known(&self.selected) {
            return Ok(s);
        }
        // Made outside the lock (contexts are hashed in parallel); when two
        // steps ask at once, the first one kept is the one both get.
        let c = self.get(path, ignore_file)?;
        let selection = make(&c)?;
        let digest = c.digest(&selection)?;
        let made = Arc::new(Selected { selection, digest });
        let mut map = self.selected.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.entry(key).or_insert(made).clone())
    }

    /// Writes the stat caches back (best effort: a lost cache only costs a
    /// re-read next time).
    pub fn save(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for ((path, _), ctx) in open.iter() {
            if let Some(cache) = ctx.used_stat_cache().filter(|c| c.is_dirty()) {
                let _ = std::fs::create_dir_all(&self.dir);
                let _ = cache.save(&stat_cache_path(&self.dir, Path::new(path)));
            }
        }
    }
}

/// The rules of a Dockerfile's own ignore file.
fn read_ignore_file(path: &Path) -> Result<IgnoreMatcher, ContextError> {
    let text = std::fs::read_to_string(path).map_err(|source| ContextError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    IgnoreMatcher::parse(&text).map_err(|source| ContextError::Ignore {
        path: path.to_path_buf(),
        source,
    })
}
