//! The build context: what COPY/ADD sources select from it, and content
//! digests of those selections for cache keys.
//!
//! Selection follows BuildKit (see [`select`] for the glob rules) and honours
//! `.dockerignore` ([`IgnoreMatcher`]). Digests cover paths, content, mode,
//! ownership and symlink targets but never timestamps, so touching a file
//! does not miss the cache. Files are hashed in parallel with blake3 and
//! remembered in a [`StatCache`], so an unchanged context costs one `lstat`
//! per file.

mod hash;
mod ignore;
mod open;
mod recheck;
mod rootpath;
mod select;
mod statcache;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use hash::ContentDigest;
pub use ignore::{clean_path, IgnoreError, IgnoreMatcher};
pub use open::{Contexts, Selected};
pub use rootpath::resolve_in_root;
pub use statcache::{stat_cache_path, StatCache};

pub(crate) use hash::{file_record, is_gone, is_version, HashingReader};
pub(crate) use statcache::changed_near;

pub(crate) use select::{select_in, Filters};

/// Errors while reading the build context or another source tree.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `.dockerignore` has a bad line.
    #[error("{}", .path.display())]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// What is wrong, with its line.
        #[source]
        source: IgnoreError,
    },
    /// A `--exclude` pattern is malformed.
    #[error("bad --exclude pattern")]
    Exclude(#[source] IgnoreError),
    /// A source names something that is not there (or is ignored).
    #[error("source {pattern:?}: lstat {name}")]
    NotFound {
        /// The source as written.
        pattern: String,
        /// The path looked for, from the source root.
        name: String,
        /// Why it is not there.
        #[source]
        source: std::io::Error,
    },
    /// A COPY/ADD source that is not in the build context (or is
    /// `.dockerignore`d): the context directory and the path inside it.
    #[error("source {pattern:?}: {name} is not in the build context {}", .context.display())]
    NotInContext {
        /// The source as written.
        pattern: String,
        /// The path looked for, from the context's root.
        name: String,
        /// The context directory.
        context: PathBuf,
        /// Why it is not there.
        #[source]
        source: std::io::Error,
    },
    /// A source glob is malformed.
    #[error("source {pattern:?}: syntax error in pattern: {why}")]
    BadSource {
        /// The source as written.
        pattern: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A file changed between the walk that listed it and the read that
    /// hashed it: its digest would not be of the file the key names.
    #[error("context file {name} changed while it was being read for the cache key; the build stopped so the cache is not keyed on content it never held — run the build again once the file is no longer being written")]
    Changed {
        /// Its path from the source root.
        name: String,
    },
    /// A file a RUN step had bind-mounted changed before it ended.
    #[error("context file {name} changed while a RUN step had it mounted; the build stopped so the cache does not hold a result of content it was not keyed on — run the build again once the file is no longer being written")]
    ChangedWhileMounted {
        /// Its path from the context root.
        name: String,
    },
}

/// The kind of a file-system entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed inside a walked directory).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// What `lstat` said about an entry, plus a symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// File type.
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Full `st_mode`, for devices and FIFOs.
    pub raw_mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device holding the entry.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard-link count.
    pub nlink: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// The target of a symlink.
    pub link: Option<PathBuf>,
}

impl EntryMeta {
    /// Converts `std` metadata from `lstat`.
    pub fn from_std(meta: &std::fs::Metadata, link: Option<PathBuf>) -> Self {
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        EntryMeta {
            kind,
            mode: meta.mode() & 0o7777,
            raw_mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            rdev: meta.rdev(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec(),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000) + meta.ctime_nsec(),
            link,
        }
    }
}

/// One entry of a selected source.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the source (`""` is the source itself).
    pub sub: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its `lstat`.
    pub meta: EntryMeta,
}

/// One thing a source pattern matched, with everything under it.
#[derive(Debug, Clone)]
pub struct SelectedSource {
    /// The pattern as written in the instruction.
    pub pattern: String,
    /// The matched path relative to the source root, as named (before
    /// following a symlink); its last component names the copy.
    pub name: String,
    /// The path actually read, relative to the source root.
    pub real: String,
    /// The source itself first, then its descendants in pre-order (each
    /// directory followed by its contents, names sorted byte-wise).
    pub entries: Vec<Entry>,
}

/// The result of [`BuildContext::select`]: sources in the order the
/// patterns were given, each pattern's matches sorted.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The matched sources.
    pub sources: Vec<SelectedSource>,
    /// When the walk began (nanoseconds since the epoch): a file changed
    /// this recently may have changed again in the same clock tick, with
    /// no trace in its stat (see [`changed_near`]).
    pub walked_ns: i64,
    /// Whether the files' owners are part of the digest: not for COPY and
    /// ADD, which write 0:0 (or `--chown`'s) whoever owns the source, so
    /// a checkout by another user keys the same; yes for a RUN's bind
    /// mount, which shows them to the command.
    pub owners: bool,
}

impl Selection {
    /// Number of entries over all sources.
    pub fn len(&self) -> usize {
        self.sources.iter().map(|s| s.entries.len()).sum()
    }

    /// True when nothing was selected.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl SelectedSource {
    /// The path of one of its entries as named from the source root (what
    /// errors and `--explain` show).
    pub fn name_of(&self, entry: &Entry) -> String {
        match (self.name.is_empty(), entry.sub.is_empty()) {
            (_, true) => self.name.clone(),
            (true, false) => entry.sub.clone(),
            (false, false) => format!("{}/{}", self.name, entry.sub),
        }
    }
}

/// A build context directory with its `.dockerignore` and stat cache.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: IgnoreMatcher,
    /// Loaded on first use, so reading it can overlap the first walk.
    cache: std::sync::OnceLock<StatCache>,
    /// Where the stat cache is read from; none for an in-memory one.
    cache_file: Option<PathBuf>,
}

impl BuildContext {
    /// Opens `root`, reading `root/.dockerignore` when there is one.
    pub fn open(root: &Path) -> Result<Self, ContextError> {
        let root = canonical(root)?;
        let ignore_path = root.join(".dockerignore");
        let ignore = match std::fs::read_to_string(&ignore_path) {
            Ok(text) => IgnoreMatcher::parse(&text).map_err(|source| ContextError::Ignore {
                path: ignore_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreMatcher::default(),
            Err(source) => {
                return Err(ContextError::Io {
                    op: "read",
                    path: ignore_path,
                    source,
                })
            }
        };
        Ok(Self::with_ignore(root, ignore))
    }

    /// Opens `root` with ignore rules read elsewhere (BuildKit also accepts
    /// `<Dockerfile>.dockerignore` next to the Dockerfile).
    pub fn open_with_ignore(root: &Path, ignore: IgnoreMatcher) -> Result<Self, ContextError> {
        Ok(Self::with_ignore(canonical(root)?, ignore))
    }

    fn with_ignore(root: PathBuf, ignore: IgnoreMatcher) -> Self {
        BuildContext {
            root,
            ignore,
            cache: std::sync::OnceLock::new(),
            cache_file: None,
        }
    }

    /// Uses `cache` (typically [`StatCache::load`]ed) from now on.
    pub fn with_stat_cache(self, cache: StatCache) -> Self {
        Self {
            cache: cache.into(),
            cache_file: None,
            ..self
        }
    }

    /// Uses the stat cache saved at `path`, read when first needed (an
    /// unreadable one is an empty cache: it is never the source of truth).
    pub fn with_stat_cache_file(self, path: PathBuf) -> Self {
        Self {
            cache: std::sync::OnceLock::new(),
            cache_file: Some(path),
            ..self
        }
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules in force.
    pub fn ignore(&self) -> &IgnoreMatcher {
        &self.ignore
    }

    /// The stat cache (read now if it was not yet).
    pub fn stat_cache(&self) -> &StatCache {
        self.cache.get_or_init(|| match &self.cache_file {
            Some(path) => StatCache::load(path).unwrap_or_default(),
            None => StatCache::new(),
        })
    }

    /// The stat cache if anything used it, to save it after a build.
    pub fn used_stat_cache(&self) -> Option<&StatCache> {
        self.cache.get()
    }

    /// The files that COPY/ADD `patterns` select, minus `.dockerignore`d
    /// files and those matching `excludes` (`--exclude`, relative to each
    /// source). Never leaves the context: `..` and absolute paths are
    /// clamped to it, and symlinks are resolved inside it.
    pub fn select(
        &self,
        patterns: &[String],
        excludes: &[String],
    ) -> Result<Selection, ContextError> {
        let excludes = IgnoreMatcher::from_patterns(excludes).map_err(ContextError::Exclude)?;
        // An empty matcher matches nothing: none spares the walk making
        // each entry's paths for it.
        let filters = Filters {
            ignore: (!self.ignore.is_empty()).then_some(&self.ignore),
            excludes: (!excludes.is_empty()).then_some(&excludes),
            follow_named: true,
        };
        // The walk needs no stat cache: read it meanwhile, for the digest.
        let (selection, _) = rayon::join(
            || select_in(&self.root, patterns, filters),
            || self.stat_cache(),
        );
        selection.map_err(|e| match e {
            ContextError::NotFound {
                pattern,
                name,
                source,
            } => ContextError::NotInContext {
                pattern,
                name,
                context: self.root.clone(),
                source,
            },
            e => e,
        })
    }

    /// The content digest of a selection (see [`ContentDigest`]), reading
    /// only files the stat cache does not vouch for.
    pub fn digest(&self, sel: &Selection) -> Result<ContentDigest, ContextError> {
        hash::digest_selection(sel, Some(self.stat_cache()))
    }
}

fn canonical(root: &Path) -> Result<PathBuf, ContextError> {
    std::fs::canonicalize(root).map_err(|source| ContextError::Io {
        op: "open build context",
        path: root.to_path_buf(),
        source,
    })
}

/// Selects and digests `patterns` under any tree (another stage's rootfs for
/// `COPY --from`), without `.dockerignore`. Owners count: a copy from a
/// stage keeps them.
pub fn digest_tree(
    root: &Path,
    patterns: &[String],
    excludes: &[String],
    cache: Option<&StatCache>,
) -> Result<ContentDigest, ContextError> {
    let excludes = IgnoreMatcher::from_patterns(excludes).map_err(ContextError::Exclude)?;
    let filters = Filters {
        ignore: None,
        excludes: Some(&excludes),
        follow_named: true,
    };
    let sel = select_in(root, patterns, filters)?;
    hash::digest_selection(
        &Selection {
            owners: true,
            ..sel
        },
        cache,
    )
}
