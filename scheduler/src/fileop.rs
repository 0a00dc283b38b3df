//! COPY and ADD as file operations, with Docker's (BuildKit's) semantics.
//!
//! What a COPY does, in the order [`copy`] does it:
//!
//! - A relative destination is taken from the WORKDIR. A destination that
//!   ends in `/`, is `.` or is empty names a directory.
//! - Sources are selected as [`crate::context`] describes (globs per path
//!   component, `.dockerignore`, `--exclude`). A glob matching nothing
//!   copies nothing, as in `docker build` today; a literal source that is
//!   missing is an error. More than one source (after expansion, counting
//!   heredocs and URLs) needs a directory destination.
//! - A directory source copies its *contents* into the destination, which
//!   is created (0755) when missing. A file goes *into* a destination that is
//!   a directory, and otherwise *becomes* the destination. Missing parent
//!   directories are created 0755, owned by root (or the `--chown` owner).
//! - Modes and mtimes are kept. Ownership becomes root:root for the build
//!   context, is kept for `--from` sources ([`CopySpec::keep_ownership`]),
//!   and `--chown` overrides both; `--chmod` replaces the mode of every
//!   copied file and directory (not of created parents).
//! - A source named directly that is a symlink is followed (inside its
//!   root); symlinks inside copied directories are copied as links; hard
//!   links within one COPY are kept as hard links. FIFOs, sockets and
//!   device nodes are skipped (counted in [`CopyStats::skipped`]).
//! - ADD extracts local tar archives (plain, gzip, bzip2, xz, zstd) into the
//!   destination directory, keeping the archive's ownership unless
//!   `--chown`, and downloads `http(s)://` URLs (mode 0600, mtime from
//!   `Last-Modified`, checked against `--checksum`, which only URLs may
//!   have). Git repositories are refused with a clear error (not yet
//!   supported).
//!
//! Safety: nothing is read outside `src_root` and nothing is written
//! outside `dest_rootfs`, whatever symlinks on either side say. Paths are
//! resolved component by component inside their root, with absolute link
//! targets restarting at that root, as `chroot` would.

mod archive;
mod chown;
mod dest;
pub mod git;
mod keyed;
pub mod remote;
mod url;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rbk_compiler::chmod::Chmod;

use crate::context::{
    clean_path, digest_tree, resolve_in_root, select_in, ContentDigest, ContextError, Entry,
    EntryKind, Filters, IgnoreMatcher, SelectedSource, Selection, StatCache,
};

pub use chown::resolve_chown;
use dest::{io_at, Attrs, Content, Writer};
use keyed::{Check, Keyed};

/// Everything a COPY or ADD instruction asks for, with names already
/// resolved by the caller.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    /// Source patterns relative to the source root (URLs too, for ADD).
    pub sources: Vec<String>,
    /// Destination, absolute in the container or relative to `workdir`.
    pub dest: String,
    /// The image's WORKDIR (empty means `/`).
    pub workdir: String,
    /// `--chown`, resolved with [`resolve_chown`].
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, octal or symbolic.
    pub chmod: Option<Chmod>,
    /// `--exclude` patterns, matched relative to each source.
    pub excludes: Vec<String>,
    /// `--parents`: keep each source's path (below a `/./` pivot, if any).
    pub parents: bool,
    /// Follow a symlink named directly as a source (Docker always does);
    /// when false it is copied as a link.
    pub follow_symlinks_in_sources: bool,
    /// Keep the sources' uid/gid (true for `COPY --from`; false for the
    /// build context, whose files become root:root).
    pub keep_ownership: bool,
    /// Set for ADD.
    pub add: Option<AddOptions>,
    /// `COPY <<EOF` documents: file name and content.
    pub heredocs: Vec<(String, Vec<u8>)>,
}

/// What ADD does beyond COPY.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Extract local tar archives (ADD's default; `--unpack=false` clears it).
    pub unpack: bool,
    /// `--checksum=sha256:<hex>` (also sha384, sha512) for URL sources.
    pub checksum: Option<String>,
    /// `--keep-git-dir`: keep `.git` when the source is a repository.
    pub keep_git_dir: bool,
}

/// What a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links made.
    pub hardlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries skipped (FIFOs, sockets, devices).
    pub skipped: u64,
}

/// Errors of COPY/ADD.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// Selecting or reading sources failed.
    #[error(transparent)]
    Context(#[from] ContextError),
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
    /// Setting ownership failed.
    #[error("cannot chown {} to {uid}:{gid}", .path.display())]
    Chown {
        /// The entry.
        path: PathBuf,
        /// Wanted owner.
        uid: u32,
        /// Wanted group.
        gid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// COPY/ADD with nothing to copy.
    #[error("no source files were specified")]
    NoSources,
    /// Several sources but the destination is not a directory.
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /: {dest}")]
    DestNotDir {
        /// The destination as written.
        dest: String,
    },
    /// A directory was needed where something else is.
    #[error("cannot copy to non-directory: {}", .path.display())]
    NotADirectory {
        /// The path in the rootfs.
        path: PathBuf,
    },
    /// A file would replace a directory.
    #[error("cannot replace directory {} with a non-directory", .path.display())]
    ReplaceDir {
        /// The path in the rootfs.
        path: PathBuf,
    },
    /// A heredoc or download name that cannot be a file name.
    #[error("{name:?} cannot be used as a file name")]
    BadName {
        /// The name.
        name: String,
    },
    /// A computed path left the rootfs (a bug guard; should never happen).
    #[error("refusing to write outside the rootfs: {}", .path.display())]
    Escape {
        /// The offending path.
        path: PathBuf,
    },
    /// A bad `--chown` value or a name not in the image.
    #[error("invalid --chown={spec}: {why}")]
    BadChown {
        /// The value as written.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// An archive could not be read.
    #[error("cannot extract {}: {why}", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// An archive entry tries to leave the destination.
    #[error("archive {} has an unsafe entry {entry:?}", .path.display())]
    UnsafeArchiveEntry {
        /// The archive.
        path: PathBuf,
        /// The entry name.
        entry: String,
    },
    /// A download failed.
    #[error("cannot download {url}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong (the HTTP client's error, or a local I/O error
        /// while buffering the body).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A download's body could not be kept while it arrived.
    #[error("cannot download {url}: cannot {op}")]
    DownloadBody {
        /// The URL.
        url: String,
        /// What was being done with the body.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ADD of a git repository beside other sources.
    #[error("ADD {url}: a git repository must be ADD's only source")]
    GitWithOthers {
        /// The repository.
        url: String,
    },
    /// A git repository could not be fetched.
    #[error(transparent)]
    Git(#[from] git::GitError),
    /// A context file changed between hashing it for the cache key and
    /// copying it: the layer would hold content the key does not name.
    #[error("context file {name} changed while it was being copied; the build stopped so the cache does not hold content it was not keyed on — run the build again once the file is no longer being written")]
    SourceChanged {
        /// Its path in the context.
        name: String,
    },
    /// A selection copied with a digest not made of it (a bug guard).
    #[error("internal error: the files to copy are not those their cache key was made of")]
    Unkeyed,
    /// A download's digest is not the expected one.
    #[error("checksum mismatch for {url}: expected {expected}, got {actual}")]
    Checksum {
        /// The URL.
        url: String,
        /// `--checksum` value.
        expected: String,
        /// What the content hashes to.
        actual: String,
    },
    /// `--checksum` given with a source that is not a URL.
    #[error("checksum can't be specified for non-HTTP(S) sources: {local}")]
    ChecksumNeedsUrl {
        /// The first local source.
        local: String,
    },
    /// A `--checksum` value that is not `algorithm:hex`.
    #[error("invalid --checksum {value:?}: expected sha256:<hex>, sha384:<hex> or sha512:<hex>")]
    BadChecksum {
        /// The value as written.
        value: String,
    },
}

/// The content digest of what `patterns` select under `src_root` (another
/// stage's rootfs, for `COPY --from` cache keys); no `.dockerignore`.
pub fn source_digest(
    src_root: &Path,
    patterns: &[String],
    excludes: &[String],
    cache: Option<&StatCache>,
) -> Result<ContentDigest, FileOpError> {
    Ok(digest_tree(src_root, patterns, excludes, cache)?)
}

/// Copies per `spec` from `src_root` into `dest_rootfs`; see the module
/// docs for the rules. `ignore` is the context's `.dockerignore` (None for
/// `--from` sources).
pub fn copy(
    src_root: &Path,
    dest_rootfs: &Path,
    spec: &CopySpec,
    ignore: Option<&IgnoreMatcher>,
) -> Result<CopyStats, FileOpError> {
    let locals = validate(spec)?;
    if let Some(url) = git_source(spec) {
        return add_git(dest_rootfs, spec, url);
    }
    let src_root = canonical(src_root)?;
    let excludes = IgnoreMatcher::from_patterns(&spec.excludes).map_err(ContextError::Exclude)?;
    let filters = Filters {
        ignore,
        excludes: Some(&excludes),
        follow_named: spec.follow_symlinks_in_sources,
    };
    let selection = select_in(&src_root, &locals, filters)?;
    copy_selected(&src_root, dest_rootfs, spec, &selection, None)
}

/// Like [`copy`], but with the sources already selected: pass the
/// [`Selection`] that [`crate::context::BuildContext::select`] made (with
/// this spec's local sources and excludes) for the cache key, and the
/// `digest` made of it, so a large context is walked once per COPY, not
/// twice, and what is copied is what the key was made of: a file that is
/// no longer the one hashed fails the copy ([`FileOpError::SourceChanged`]).
pub fn copy_selection(
    src_root: &Path,
    dest_rootfs: &Path,
    spec: &CopySpec,
    selection: &Selection,
    digest: &ContentDigest,
) -> Result<CopyStats, FileOpError> {
    let src_root = canonical(src_root)?;
    validate(spec)?;
    if digest.records.len() != selection.len() {
        return Err(FileOpError::Unkeyed);
    }
    let keyed = Keyed {
        selection,
        records: &digest.records,
    };
    copy_selected(&src_root, dest_rootfs, spec, selection, Some(keyed))
}

/// Checks what can be checked before touching anything; returns the local
/// (non-URL) sources.
fn validate(spec: &CopySpec) -> Result<Vec<String>, FileOpError> {
    if spec.sources.is_empty() && spec.heredocs.is_empty() {
        return Err(FileOpError::NoSources);
    }
    if spec.add.is_some() {
        if let Some(git) = spec.sources.iter().find(|s| git::is_git_url(s)) {
            if spec.sources.len() > 1 || !spec.heredocs.is_empty() {
                return Err(FileOpError::GitWithOthers { url: git.clone() });
            }
        }
    }
    let locals: Vec<String> = spec
        .sources
        .iter()
        .filter(|s| !is_remote(spec, s))
        .cloned()
        .collect();
    let checksum = spec.add.as_ref().and_then(|a| a.checksum.as_ref());
    if let (Some(_), Some(source)) = (checksum, locals.first()) {
        return Err(FileOpError::ChecksumNeedsUrl {
            local: source.clone(),
        });
    }
    Ok(locals)
}

/// Whether a source is downloaded rather than read from the source root.
fn is_remote(spec: &CopySpec, source: &str) -> bool {
    spec.add.is_some() && (url::is_url(source) || git::is_git_url(source))
}

/// The repository an ADD clones, when its one source is one.
fn git_source(spec: &CopySpec) -> Option<&str> {
    spec.add.as_ref()?;
    match spec.sources.as_slice() {
        [one] if git::is_git_url(one) => Some(one),
        _ => None,
    }
}

/// `ADD <git url> <dest>`: the repository at its ref (and subdirectory)
/// fetched into a temporary directory, then copied like a context
/// directory: its contents land in `dest`.
fn add_git(dest_rootfs: &Path, spec: &CopySpec, url: &str) -> Result<CopyStats, FileOpError> {
    let source = git::GitSource::parse(url)?;
    let tmp = tempfile::tempdir().map_err(io_at("create a directory for", Path::new(url)))?;
    let opts = git::FetchOptions {
        keep_git_dir: spec.add.as_ref().is_some_and(|a| a.keep_git_dir),
        auth_token: None,
    };
    let checkout = git::fetch(&source, tmp.path(), &opts)?;
    // What was fetched must be the commit the step's key names.
    let keyed = git::resolve_commit(&source, &opts)?;
    if checkout.commit != keyed {
        return Err(git::GitError::Git {
            url: source.display(),
            step: "fetch",
            stderr: format!(
                "the ref moved to {} after the build keyed this step on {keyed}: build again",
                checkout.commit
            ),
        }
        .into());
    }
    let root = canonical(&checkout.dir)?;
    let local = CopySpec {
        sources: vec![".".to_string()],
        add: None,
        ..spec.clone()
    };
    let selection = select_in(&root, &local.sources, Filters::default())?;
    copy_selected(&root, dest_rootfs, &local, &selection, None)
}

fn copy_selected(
    src_root: &Path,
    dest_rootfs: &Path,
    spec: &CopySpec,
    selection: &Selection,
    keyed: Option<Keyed<'_>>,
) -> Result<CopyStats, FileOpError> {
    let dest_rootfs = canonical(dest_rootfs)?;
    let urls: Vec<&String> = spec.sources.iter().filter(|s| is_remote(spec, s)).collect();

    // Destination, as BuildKit's frontend spells it.
    let dir_hint = spec.dest.is_empty() || spec.dest == "." || spec.dest.ends_with('/');
    let dest_abs = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!(
            "{}/{}",
            if spec.workdir.is_empty() {
                "/"
            } else {
                &spec.workdir
            },
            spec.dest
        )
    };
    let dest = resolve_in_root(&dest_rootfs, &dest_abs, true)
        .map_err(io_at("resolve", Path::new(&dest_abs)))?;
    let total = selection.sources.len() + spec.heredocs.len() + urls.len();
    if total == 0 {
        // Only globs that matched nothing: BuildKit copies nothing.
        return Ok(CopyStats::default());
    }
    let dest_is_dir = dest.is_dir();
    if total > 1 && !dir_hint && !dest_is_dir {
        return Err(FileOpError::DestNotDir {
            dest: spec.dest.clone(),
        });
    }
    let parent_owner = spec.chown.unwrap_or((0, 0));
    let w = Writer::new(&dest_rootfs, spec.chown.is_some(), parent_owner);
    if dir_hint || spec.parents {
        w.ensure_dir(&dest)?;
    }
    let into_dir = dir_hint || dest_is_dir || spec.parents;

    let to = (dest.as_path(), into_dir);
    copy_sources(&w, spec, src_root, selection, keyed, to)?;
    for (name, content) in &spec.heredocs {
        let target = file_target(&w, &dest, into_dir, name)?;
        let attrs = Attrs {
            owner: parent_owner,
            mode: spec.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false)),
            mtime_ns: None,
        };
        w.file(
            &target,
            Content::Reader(&mut content.as_slice()),
            attrs,
            None,
        )?;
    }
    for u in urls {
        let checksum = spec.add.as_ref().and_then(|a| a.checksum.as_deref());
        let download = url::download(u, checksum)?;
        let target = file_target(&w, &dest, into_dir, &download.file_name)?;
        let attrs = Attrs {
            owner: parent_owner,
            mode: spec.chmod.as_ref().map_or(0o600, |c| c.apply(0o600, false)),
            mtime_ns: download.mtime_ns,
        };
        let mut body = download.body;
        w.file(&target, Content::Reader(&mut body), attrs, None)?;
    }
    w.finish()?;
    Ok(w.stats())
}

/// Copies the selected sources into `dest` (`into_dir`: as a directory),
/// each checked against its records when `keyed`.
fn copy_sources(
    w: &Writer,
    spec: &CopySpec,
    src_root: &Path,
    selection: &Selection,
    keyed: Option<Keyed<'_>>,
    (dest, into_dir): (&Path, bool),
) -> Result<(), FileOpError> {
    let mut first = 0;
    for source in &selection.sources {
        let end = first + source.entries.len();
        let check = keyed.map(|k| Check {
            source,
            records: k.records.get(first..end).unwrap_or_default(),
            walked_ns: k.selection.walked_ns,
            owners: k.selection.owners,
        });
        first = end;
        copy_source(w, spec, src_root, source, dest, into_dir, check)?;
    }
    Ok(())
}

/// Where a single file named `name` goes: into `dest` when it is a
/// directory, else `dest` itself (its parents created).
fn file_target(
    w: &Writer,
    dest: &Path,
    into_dir: bool,
    name: &str,
) -> Result<PathBuf, FileOpError> {
    if into_dir {
        w.ensure_dir(dest)?;
        // Names are single components already; this also refuses `..`.
        let base = Path::new(name)
            .file_name()
            .ok_or_else(|| FileOpError::BadName {
                name: name.to_string(),
            })?;
        Ok(dest.join(base))
    } else {
        if let Some(parent) = dest.parent() {
            w.ensure_dir(parent)?;
        }
        Ok(dest.to_path_buf())
    }
}

/// Copies one matched source, checked against its key when `check`.
fn copy_source(
    w: &Writer,
    spec: &CopySpec,
    src_root: &Path,
    source: &SelectedSource,
    dest: &Path,
    into_dir: bool,
    check: Option<Check<'_>>,
) -> Result<(), FileOpError> {
    let Some(top) = source.entries.first() else {
        return Ok(());
    };
    let base = if spec.parents {
        parents_base(
            w,
            spec,
            src_root,
            source,
            dest,
            top.meta.kind == EntryKind::Dir,
        )?
    } else if top.meta.kind == EntryKind::Dir {
        w.ensure_dir(dest)?;
        dest.to_path_buf()
    } else {
        let name = source.name.rsplit('/').next().unwrap_or(&source.name);
        file_target(w, dest, into_dir, name)?
    };

    if top.meta.kind == EntryKind::File && spec.add.as_ref().is_some_and(|a| a.unpack) {
        let file = Check::open(check.as_ref(), top)?;
        if let Some(format) = archive::detect(&file, &top.path)? {
            // ADD extracts into the destination as a directory.
            let target = if into_dir {
                dest.to_path_buf()
            } else {
                base.clone()
            };
            w.ensure_dir(&target)?;
            let read = archive::extract(w, &file, &top.path, format, &target, spec.chown)?;
            if let Some(c) = &check {
                c.same(&file, top)?;
                c.content(0, top, read)?;
            }
            return Ok(());
        }
    }

    // Directories first, in path order so parents precede children; then
    // everything else in parallel, since creating many small files is
    // bound by the kernel's inode allocation, not by order; entries sharing
    // an inode last, one by one, so they can be linked to the first copy.
    let mut parallel = Vec::new();
    let mut linked = Vec::new();
    for (i, entry) in source.entries.iter().enumerate() {
        if top.meta.kind == EntryKind::Dir && entry.sub.is_empty() {
            // The destination directory of a directory copy keeps its own
            // metadata (BuildKit creates it like a parent).
            continue;
        }
        let target = if entry.sub.is_empty() {
            base.clone()
        } else {
            base.join(&entry.sub)
        };
        let at = (i, entry, target);
        match entry.meta.kind {
            EntryKind::Dir => copy_entry(w, spec, &at, check.as_ref())?,
            EntryKind::File if entry.meta.nlink > 1 => linked.push(at),
            _ => parallel.push(at),
        }
    }
    parallel
        .par_iter()
        .try_for_each(|at| copy_entry(w, spec, at, check.as_ref()))?;
    for at in &linked {
        copy_entry(w, spec, at, check.as_ref())?;
    }
    Ok(())
}

/// Copies entry `i` of a source to `target`.
fn copy_entry(
    w: &Writer,
    spec: &CopySpec,
    (i, entry, target): &(usize, &Entry, PathBuf),
    check: Option<&Check<'_>>,
) -> Result<(), FileOpError> {
    let meta = &entry.meta;
    let attrs = attrs_for(spec, meta);
    match meta.kind {
        EntryKind::Dir => w.dir(target, attrs),
        EntryKind::File => {
            let mut src = Check::open(check, entry)?;
            let link_key = (meta.nlink > 1).then_some((meta.dev, meta.ino));
            w.file(target, Content::File(&mut src), attrs, link_key)?;
            match check {
                Some(c) => c.after(&src, *i, entry, target),
                None => Ok(()),
            }
        }
        EntryKind::Symlink => match &meta.link {
            Some(link) => w.symlink(target, link, attrs),
            None => Ok(()),
        },
        EntryKind::Other => {
            w.skip();
            Ok(())
        }
    }
}

/// Where a `--parents` source goes: `dest` plus its path below the pivot.
/// Directories on that path that the destination lacks are created with
/// the metadata of their counterparts in the source, as BuildKit copies
/// them (its `--parents` is a copy of the whole root filtered to the
/// source).
fn parents_base(
    w: &Writer,
    spec: &CopySpec,
    src_root: &Path,
    source: &SelectedSource,
    dest: &Path,
    is_dir: bool,
) -> Result<PathBuf, FileOpError> {
    let rel = parents_rel(&source.pattern, &source.name);
    let pivot = source
        .name
        .get(..source.name.len().saturating_sub(rel.len()))
        .unwrap_or("")
        .trim_end_matches('/');
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let dirs = if is_dir {
        parts.len()
    } else {
        parts.len().saturating_sub(1)
    };
    w.ensure_dir(dest)?;
    let mut target = dest.to_path_buf();
    let mut src_rel = pivot.to_string();
    for part in &parts[..dirs] {
        if !src_rel.is_empty() {
            src_rel.push('/');
        }
        src_rel.push_str(part);
        target.push(part);
        if std::fs::symlink_metadata(&target).is_ok() {
            // Existing: `dir` refuses anything but a real directory.
            w.ensure_dir(&target)?;
            continue;
        }
        let src = resolve_in_root(src_root, &src_rel, true).map_err(io_at("resolve", src_root))?;
        let meta = std::fs::symlink_metadata(&src).map_err(io_at("lstat", &src))?;
        let meta = crate::context::EntryMeta::from_std(&meta, None);
        w.dir(&target, attrs_for(spec, &meta))?;
    }
    if !is_dir {
        if let Some(last) = parts.last() {
            target.push(last);
        }
    }
    Ok(target)
}

/// Ownership, mode and mtime of a copied entry.
fn attrs_for(spec: &CopySpec, meta: &crate::context::EntryMeta) -> Attrs {
    let owner = spec.chown.unwrap_or(if spec.keep_ownership {
        (meta.uid, meta.gid)
    } else {
        (0, 0)
    });
    Attrs {
        owner,
        mode: spec.chmod.as_ref().map_or(meta.mode, |c| {
            c.apply(meta.mode, meta.kind == crate::context::EntryKind::Dir)
        }),
        mtime_ns: Some(meta.mtime_ns),
    }
}

/// The path a `--parents` source keeps: below the last `/./` of its
/// pattern, or all of it.
fn parents_rel(pattern: &str, name: &str) -> String {
    let pattern = pattern.trim_start_matches('/');
    match pattern.rfind("/./") {
        Some(i) => {
            let pivot = clean_path(&pattern[..i]);
            let pivot_depth = if pivot == "." {
                0
            } else {
                pivot.split('/').count()
            };
            name.split('/')
                .skip(pivot_depth)
                .collect::<Vec<_>>()
                .join("/")
        }
        None => name.to_string(),
    }
}

fn canonical(path: &Path) -> Result<PathBuf, FileOpError> {
    std::fs::canonicalize(path).map_err(io_at("open", path))
}
