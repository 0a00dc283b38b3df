//! Choosing the files a COPY/ADD source list names, the way BuildKit does.
//!
//! A source is a path relative to the source root (a leading `/` and `..`
//! are clamped to the root). Each path component may be a Go
//! `filepath.Match` glob (`*`, `?`, `[...]`, `\`); `**` has no special
//! meaning there, unlike in `.dockerignore`. Globs match hidden files too.
//! A glob that matches nothing selects nothing (BuildKit's
//! `AllowEmptyWildcard`, which `docker build` sets), but the literal
//! directory it is in must exist, and a literal source must exist.
//!
//! A source named directly that is a symlink is followed (inside the root);
//! symlinks found while walking a directory are kept as links. Entries that
//! `.dockerignore` excludes behave as if they were not in the context.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::ignore::{clean_path, glob_match, parse_class, IgnoreMatcher, Token};
use super::rootpath::resolve_in_root;
use super::{ContextError, Entry, EntryMeta, SelectedSource, Selection};

/// What to leave out while selecting.
#[derive(Clone, Copy, Default)]
pub(crate) struct Filters<'a> {
    /// `.dockerignore`, matched against paths relative to the root.
    pub ignore: Option<&'a IgnoreMatcher>,
    /// `COPY --exclude`, matched against paths inside each source, and
    /// against each matched source's own path and name.
    pub excludes: Option<&'a IgnoreMatcher>,
    /// Follow a symlink named directly as a source (COPY always does).
    pub follow_named: bool,
}

impl Filters<'_> {
    fn ignored(&self, root_rel: &str) -> bool {
        self.ignore.is_some_and(|m| m.matches(root_rel, false))
    }

    fn excluded(&self, source_rel: &str) -> bool {
        self.excludes.is_some_and(|m| m.matches(source_rel, false))
    }

    /// Whether an ignored or excluded directory can still hold kept files.
    fn may_keep_inside(&self, ignored: bool, excluded: bool) -> bool {
        (!ignored || self.ignore.is_some_and(IgnoreMatcher::has_exclusions))
            && (!excluded || self.excludes.is_some_and(IgnoreMatcher::has_exclusions))
    }
}

/// Selects what `patterns` name under `root`.
pub(crate) fn select_in(
    root: &Path,
    patterns: &[String],
    filters: Filters<'_>,
) -> Result<Selection, ContextError> {
    let walked_ns = super::statcache::now_ns();
    let mut sources = Vec::new();
    for pattern in patterns {
        let (names, globbed) = expand(root, pattern)?;
        for name in names {
            // `--exclude` also drops sources themselves (Docker's example:
            // `COPY --exclude=*.txt hom* /mydir/`), by path or by name.
            let base = name.rsplit('/').next().unwrap_or(&name);
            if !name.is_empty() && (filters.excluded(&name) || filters.excluded(base)) {
                continue;
            }
            match select_one(root, pattern, &name, filters)? {
                Some(source) => sources.push(source),
                // An ignored file is not in the context: a glob just does
                // not see it, a literal name is missing.
                None if globbed => {}
                None => {
                    return Err(ContextError::NotFound {
                        pattern: pattern.clone(),
                        name: display_name(&name),
                        source: ignored_error(),
                    })
                }
            }
        }
    }
    Ok(Selection {
        sources,
        walked_ns,
        owners: false,
    })
}

/// The root-relative names a source pattern stands for, sorted, and whether
/// a glob took part.
fn expand(root: &Path, pattern: &str) -> Result<(Vec<String>, bool), ContextError> {
    let cleaned = clean_path(&format!("/{pattern}"));
    let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    let mut names = vec![String::new()];
    let mut globbed = false;
    for part in parts {
        if !has_glob(part) {
            for name in &mut names {
                push_component(name, part);
            }
            continue;
        }
        let tokens = compile_component(part).map_err(|why| ContextError::BadSource {
            pattern: pattern.to_string(),
            why,
        })?;
        let mut next = Vec::new();
        for dir_name in &names {
            let dir =
                resolve_in_root(root, dir_name, true).map_err(|e| io_err("resolve", root, e))?;
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                // A file matched by an earlier glob has no children: no match.
                Err(_) if globbed => continue,
                // The literal directory a glob lives in must exist (BuildKit
                // reports "lstat <dir>: no such file or directory").
                Err(source) => {
                    return Err(ContextError::NotFound {
                        pattern: pattern.to_string(),
                        name: display_name(dir_name),
                        source,
                    })
                }
            };
            let mut found = Vec::new();
            for entry in listing {
                let entry = entry.map_err(|e| io_err("list", &dir, e))?;
                let file_name = entry.file_name();
                let Some(file_name) = file_name.to_str() else {
                    continue;
                };
                if glob_match(&tokens, file_name) {
                    let mut name = dir_name.clone();
                    push_component(&mut name, file_name);
                    found.push(name);
                }
            }
            found.sort();
            next.extend(found);
        }
        names = next;
        globbed = true;
    }
    if globbed {
        // Literal components after a glob (`m/*/file.txt`) name a path in
        // each match that may not be there: those matches drop out.
        names.retain(|name| {
            resolve_in_root(root, name, false).is_ok_and(|p| p.symlink_metadata().is_ok())
        });
    }
    Ok((names, globbed))
}

/// Walks one named source; `None` when `.dockerignore` leaves nothing of it.
fn select_one(
    root: &Path,
    pattern: &str,
    name: &str,
    filters: Filters<'_>,
) -> Result<Option<SelectedSource>, ContextError> {
    let not_found = |source: std::io::Error| ContextError::NotFound {
        pattern: pattern.to_string(),
        name: display_name(name),
        source,
    };
    let real_path = resolve_in_root(root, name, filters.follow_named).map_err(not_found)?;
    let std_meta = std::fs::symlink_metadata(&real_path).map_err(not_found)?;
    let real = real_path
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ignored = !name.is_empty() && (filters.ignored(name) || filters.ignored(&real));
    let mut entries = Vec::new();
    if std_meta.is_dir() {
        if ignored && !filters.may_keep_inside(true, false) {
            return Ok(None);
        }
        let children = walk(&real_path, "", &real, filters)?;
        if ignored && children.is_empty() {
            return Ok(None);
        }
        let meta = EntryMeta::from_std(&std_meta, None);
        entries.reserve_exact(1 + count(&children));
        entries.push(Entry {
            sub: String::new(),
            path: real_path.clone(),
            meta,
        });
        flatten(children, &mut entries);
    } else {
        if ignored {
            return Ok(None);
        }
        // A symlink here is one whose target loops or leaves nothing to
        // follow; it is copied as a link.
        let link = if std_meta.file_type().is_symlink() {
            Some(std::fs::read_link(&real_path).map_err(|e| io_err("readlink", &real_path, e))?)
        } else {
            None
        };
        entries.push(Entry {
            sub: String::new(),
            path: real_path.clone(),
            meta: EntryMeta::from_std(&std_meta, link),
        });
    }
    Ok(Some(SelectedSource {
        pattern: pattern.to_string(),
        name: name.to_string(),
        real,
        entries,
    }))
}

fn ignored_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "excluded by .dockerignore")
}

/// An entry of a walk and what is under it.
struct Walked {
    entry: Entry,
    kids: Vec<Walked>,
    /// Entries under it, at every depth.
    below: usize,
}

/// The entries of a walk in pre-order, each moved once into one vector
/// sized up front (a walk that flattened at every level would move an entry
/// once per level above it).
fn flatten(nodes: Vec<Walked>, out: &mut Vec<Entry>) {
    for n in nodes {
        out.push(n.entry);
        flatten(n.kids, out);
    }
}

/// How many entries `nodes` hold, at every depth.
fn count(nodes: &[Walked]) -> usize {
    nodes.iter().map(|n| 1 + n.below).sum()
}

/// A directory found by a walk: its root-relative path (made only when a
/// `.dockerignore` needs it), and whether it is dropped but may hold kept
/// files.
type FoundDir = Option<(String, bool)>;

/// Lists `dir` recursively; subdirectories are walked in parallel. `sub` is
/// the path relative to the source, `root_rel` relative to the root (only
/// made when a `.dockerignore` needs it).
fn walk(
    dir: &Path,
    sub: &str,
    root_rel: &str,
    filters: Filters<'_>,
) -> Result<Vec<Walked>, ContextError> {
    let listing = std::fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
    let mut found: Vec<(Walked, FoundDir)> = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        if let Some(f) = found_entry(&entry, sub, root_rel, filters)? {
            found.push(f);
        }
    }
    // Names sorted within each directory, each directory followed by its
    // contents (pre-order, like a tar): deterministic without sorting the
    // whole tree again at every level. All share the prefix `sub/`.
    let skip = if sub.is_empty() { 0 } else { sub.len() + 1 };
    found.sort_unstable_by(|a, b| {
        a.0.entry.sub.as_bytes()[skip..].cmp(&b.0.entry.sub.as_bytes()[skip..])
    });
    found
        .par_iter_mut()
        .try_for_each(|(node, dir)| -> Result<(), ContextError> {
            if let Some((root_rel, _)) = dir {
                node.kids = walk(&node.entry.path, &node.entry.sub, root_rel, filters)?;
                node.below = count(&node.kids);
            }
            Ok(())
        })?;
    // A dropped directory is kept only to hold kept files.
    Ok(found
        .into_iter()
        .filter(|(node, dir)| !(matches!(dir, Some((_, true))) && node.kids.is_empty()))
        .map(|(node, _)| node)
        .collect())
}

/// One listed entry as the walk keeps it, or `None` when it is left out.
fn found_entry(
    entry: &std::fs::DirEntry,
    sub: &str,
    root_rel: &str,
    filters: Filters<'_>,
) -> Result<Option<(Walked, FoundDir)>, ContextError> {
    let file_name = entry.file_name();
    let file_name = file_name.to_string_lossy();
    let child_sub = join_rel(sub, &file_name);
    let child_root_rel = match filters.ignore {
        Some(_) => join_rel(root_rel, &file_name),
        None => String::new(),
    };
    let path = entry.path();
    // DirEntry::metadata does not follow symlinks on Unix.
    let std_meta = entry.metadata().map_err(|e| io_err("lstat", &path, e))?;
    let ignored = filters.ignored(&child_root_rel);
    let excluded = filters.excluded(&child_sub);
    let dir = if std_meta.is_dir() {
        if (ignored || excluded) && !filters.may_keep_inside(ignored, excluded) {
            return Ok(None);
        }
        Some((child_root_rel, ignored || excluded))
    } else if ignored || excluded {
        return Ok(None);
    } else {
        None
    };
    let link = if std_meta.file_type().is_symlink() {
        Some(std::fs::read_link(&path).map_err(|e| io_err("readlink", &path, e))?)
    } else {
        None
    };
    let node = Walked {
        entry: Entry {
            sub: child_sub,
            path,
            meta: EntryMeta::from_std(&std_meta, link),
        },
        kids: Vec::new(),
        below: 0,
    };
    Ok(Some((node, dir)))
}

fn join_rel(base: &str, name: &str) -> String {
    let mut out = String::with_capacity(base.len() + 1 + name.len());
    push_component(&mut out, base);
    push_component(&mut out, name);
    out
}

fn push_component(name: &mut String, part: &str) {
    if !name.is_empty() {
        name.push('/');
    }
    name.push_str(part);
}

fn display_name(name: &str) -> String {
    format!("/{name}")
}

fn has_glob(part: &str) -> bool {
    part.contains(['*', '?', '[', '\\'])
}

/// Compiles one path component as Go's `filepath.Match` reads it.
fn compile_component(part: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = part.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '\\' => {
                let next = *chars.get(i).ok_or("trailing backslash")?;
                i += 1;
                tokens.push(Token::Lit(next));
            }
            '[' => {
                let (token, next) = parse_class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            other => tokens.push(Token::Lit(other)),
        }
    }
    Ok(tokens)
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> ContextError {
    ContextError::Io {
        op,
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_in_the_middle_keeps_only_matches_with_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["m/x/file.txt", "m/y/file.txt", "m/z/other.txt"] {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let (names, globbed) = expand(dir.path(), "m/*/file.txt").unwrap();
        assert!(globbed);
        assert_eq!(names, ["m/x/file.txt", "m/y/file.txt"]);
    }

    #[test]
    fn component_globs_follow_filepath_match() {
        for (pattern, name, want) in [
            ("*.txt", "a.txt", true),
            ("*.txt", ".hidden.txt", true),
            ("a?c", "abc", true),
            ("[ab]*", "bcd", true),
            ("[^ab]*", "bcd", false),
            ("\\*", "*", true),
            ("**", "anything", true),
        ] {
            let tokens = compile_component(pattern).unwrap();
            assert_eq!(glob_match(&tokens, name), want, "{pattern} vs {name}");
        }
    }
}
