//! Git sources: a build context given as a repository URL
//! (`https://host/org/repo.git#ref:subdir`, `git@host:org/repo.git`,
//! `git://…`, `ssh://…`) and `ADD <git url> <dest>`, fetched with the
//! `git` program as BuildKit does.
//!
//! Only network transports are allowed (`https`, `http`, `ssh`, `git`):
//! never `file://` or `ext::`, so a Dockerfile cannot read a repository of
//! the host. The clone is shallow at the ref asked for; hooks of the
//! remote never run (a clone does not install them); the `.git` directory
//! is dropped unless asked to keep it (`BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`,
//! `ADD --keep-git-dir=true`); the subdirectory must stay inside the
//! checkout.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a git source could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The URL is not a git URL rbk accepts.
    #[error("{url}: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// `git` is not installed.
    #[error("fetching {url} needs the git program: {source}")]
    NoGit {
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("git {step} of {url} failed: {stderr}")]
    Git {
        /// The URL.
        url: String,
        /// What was attempted (`fetch`, `checkout`…).
        step: &'static str,
        /// git's own message.
        stderr: String,
    },
    /// Local I/O failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A parsed git source: remote, ref and subdirectory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The repository URL, without the fragment.
    pub remote: String,
    /// The ref (branch, tag or commit) after `#`, if any.
    pub reference: Option<String>,
    /// The subdirectory after `#ref:`, if any.
    pub subdir: Option<String>,
}

/// Whether `s` names a git repository (rather than a path or a plain URL):
/// `git@host:…`, `git://`, `ssh://`, `github.com/…`, or an http(s) URL
/// whose path ends in `.git`.
pub fn is_git_url(s: &str) -> bool {
    if s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
        || s.starts_with("github.com/")
    {
        return true;
    }
    let without_ref = s.split('#').next().unwrap_or(s);
    (s.starts_with("https://") || s.starts_with("http://")) && without_ref.ends_with(".git")
}

impl GitSource {
    /// Parses `url[#ref[:subdir]]`.
    pub fn parse(url: &str) -> Result<GitSource, GitError> {
        let bad = |why: &str| GitError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        if !is_git_url(url) {
            return Err(bad(
                "not a git URL (git@…, git://, ssh://, or https://….git)",
            ));
        }
        let (remote, fragment) = match url.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (url, None),
        };
        let remote = if remote.starts_with("github.com/") {
            format!("https://{remote}")
        } else {
            remote.to_string()
        };
        let (reference, subdir) = match fragment {
            None => (None, None),
            Some(f) => match f.split_once(':') {
                Some((r, d)) => (Some(r), Some(d)),
                None => (Some(f), None),
            },
        };
        let nonempty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        let (reference, subdir) = (nonempty(reference), nonempty(subdir));
        if reference.as_deref().is_some_and(|r| r.starts_with('-')) {
            return Err(bad("a ref cannot start with '-'"));
        }
        if let Some(d) = &subdir {
            let p = Path::new(d);
            if p.components().any(|c| matches!(c, Component::ParentDir)) || p.is_absolute() {
                return Err(bad(
                    "the subdirectory must be a relative path inside the repository",
                ));
            }
        }
        if remote.starts_with('-') {
            return Err(bad("a URL cannot start with '-'"));
        }
        Ok(GitSource {
            remote,
            reference,
            subdir,
        })
    }

    /// The URL with its fragment, as written in provenance.
    pub fn display(&self) -> String {
        let mut s = self.remote.clone();
        if let Some(r) = &self.reference {
            s.push('#');
            s.push_str(r);
        }
        if let Some(d) = &self.subdir {
            if self.reference.is_none() {
                s.push('#');
            }
            s.push(':');
            s.push_str(d);
        }
        s
    }
}

/// How to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Keep the `.git` directory in the result.
    pub keep_git_dir: bool,
    /// A token sent as HTTP basic auth (`x-access-token:<token>`), as
    /// BuildKit's `GIT_AUTH_TOKEN` secret.
    pub auth_token: Option<String>,
}

/// A fetched checkout.
#[derive(Debug)]
pub struct Checkout {
    /// The commit checked out (hex).
    pub commit: String,
    /// The directory to use: the checkout, or its subdirectory.
    pub dir: PathBuf,
}

/// Fetches `src` into the empty directory `into` (which must exist).
pub fn fetch(src: &GitSource, into: &Path, opts: &FetchOptions) -> Result<Checkout, GitError> {
    let url = src.display();
    let git = |step: &'static str, args: &[&str]| run_git(&url, into, step, args, opts);
    git("init", &["init", "-q"])?;
    git("remote", &["remote", "add", "origin", &src.remote])?;
    let want = src.reference.as_deref().unwrap_or("HEAD");
    // A shallow fetch of the ref; a commit id some servers refuse shallow,
    // so fall back to the whole history and look it up.
    if git(
        "fetch",
        &["fetch", "-q", "--depth=1", "--no-tags", "origin", want],
    )
    .is_err()
    {
        git("fetch", &["fetch", "-q", "--tags", "origin"])?;
        git("checkout", &["checkout", "-q", "--detach", want])?;
    } else {
        git("checkout", &["checkout", "-q", "--detach", "FETCH_HEAD"])?;
    }
    git(
        "submodule",
        &[
            "submodule",
            "update",
            "-q",
            "--init",
            "--recursive",
            "--depth=1",
        ],
    )?;
    let commit = String::from_utf8_lossy(&git("rev-parse", &["rev-parse", "HEAD"])?)
        .trim()
        .to_string();
    if !opts.keep_git_dir {
        let dot_git = into.join(".git");
        std::fs::remove_dir_all(&dot_git).map_err(|source| GitError::Io {
            path: dot_git,
            source,
        })?;
    }
    let dir = match &src.subdir {
        None => into.to_path_buf(),
        Some(d) => inside(into, d).map_err(|why| GitError::Url {
            url: url.clone(),
            why,
        })?,
    };
    Ok(Checkout { commit, dir })
}

/// The commit `src`'s ref names on its remote now (`git ls-remote`), for
/// a cache key that changes when the branch or tag moves; a ref that is
/// already a commit id is its own answer.
///
/// Asked once per remote and ref in a process (a build): the step's key,
/// its early-cutoff key and the clone that runs it all see the same
/// commit, and the remote is not asked three times.
pub fn resolve_commit(src: &GitSource, opts: &FetchOptions) -> Result<String, GitError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static RESOLVED: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let want = src.reference.as_deref().unwrap_or("HEAD");
    if (want.len() == 40 || want.len() == 64) && want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(want.to_ascii_lowercase());
    }
    let memo = RESOLVED.get_or_init(Default::default);
    let at = (src.remote.clone(), want.to_string());
    if let Some(commit) = memo.lock().ok().and_then(|m| m.get(&at).cloned()) {
        return Ok(commit);
    }
    let commit = ls_remote(src, want, opts)?;
    if let Ok(mut m) = memo.lock() {
        m.insert(at, commit.clone());
    }
    Ok(commit)
}

fn ls_remote(src: &GitSource, want: &str, opts: &FetchOptions) -> Result<String, GitError> {
    let url = src.display();
    let out = run_git(
        &url,
        Path::new("/"),
        "ls-remote",
        &["ls-remote", "--", &src.remote, want],
        opts,
    )?;
    let text = String::from_utf8_lossy(&out);
    // An annotated tag lists its object, then the commit (`^{}`): take the
    // commit where there is one.
    let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    lines
        .iter()
        .find(|(_, r)| r.ends_with("^{}"))
        .or_else(|| lines.first())
        .map(|(hash, _)| hash.to_string())
        .ok_or_else(|| GitError::Git {
            url,
            step: "ls-remote",
            stderr: format!("no ref {want} on the remote"),
        })
}

/// `root/sub`, refusing a subdirectory that is missing, not a directory,
/// or reached through a symlink out of the checkout.
fn inside(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let real_root = root.canonicalize().map_err(|e| e.to_string())?;
    let real = root
        .join(sub)
        .canonicalize()
        .map_err(|e| format!("subdirectory {sub:?}: {e}"))?;
    if !real.starts_with(&real_root) {
        return Err(format!("subdirectory {sub:?} leads out of the repository"));
    }
    if !real.is_dir() {
        return Err(format!("subdirectory {sub:?} is not a directory"));
    }
    Ok(real)
}

fn run_git(
    url: &str,
    dir: &Path,
    step: &'static str,
    args: &[&str],
    opts: &FetchOptions,
) -> Result<Vec<u8>, GitError> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        // network transports only, for submodules too
        .args(["-c", "protocol.allow=never"])
        .args([
            "-c",
            "protocol.https.allow=always",
            "-c",
            "protocol.http.allow=always",
        ])
        .args([
            "-c",
            "protocol.ssh.allow=always",
            "-c",
            "protocol.git.allow=always",
        ])
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    if let Some(token) = &opts.auth_token {
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        cmd.args([
            "-c",
            &format!("http.extraHeader=Authorization: basic {basic}"),
        ]);
    }
    let out = cmd.args(args).output().map_err(|source| GitError::NoGit {
        url: url.to_string(),
        source,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(GitError::Git {
            url: url.to_string(),
            step,
            stderr,
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_remote_ref_and_subdir() {
        let g = GitSource::parse("https://example.test/org/app.git#v1.2:docker/img").unwrap();
        assert_eq!(g.remote, "https://example.test/org/app.git");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir.as_deref(), Some("docker/img"));
        assert_eq!(
            g.display(),
            "https://example.test/org/app.git#v1.2:docker/img"
        );
        let g = GitSource::parse("git@example.test:org/app.git").unwrap();
        assert_eq!((g.reference, g.subdir), (None, None));
        let g = GitSource::parse("github.com/org/app#:sub").unwrap();
        assert_eq!(g.remote, "https://github.com/org/app");
        assert_eq!(g.subdir.as_deref(), Some("sub"));
        assert_eq!(g.display(), "https://github.com/org/app#:sub");
    }

    #[test]
    fn git_urls_are_told_from_other_sources() {
        assert!(is_git_url("git@github.com:moby/buildkit.git"));
        assert!(is_git_url("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git_url("git://example.com/repo"));
        assert!(!is_git_url("https://example.com/file.tar.gz"));
        assert!(!is_git_url("local.git"));
    }

    #[test]
    fn escapes_and_local_transports_are_refused() {
        for bad in [
            "https://example.test/a.git#main:../../etc",
            "https://example.test/a.git#main:/etc",
            "https://example.test/a.git#--upload-pack=touch",
            "file:///srv/repo.git",
            "ext::sh -c touch% /tmp/x",
            "/srv/repo.git",
            "https://example.test/archive.tar.gz",
        ] {
            assert!(GitSource::parse(bad).is_err(), "{bad}");
        }
    }
}
