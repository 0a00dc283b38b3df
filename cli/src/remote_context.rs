//! `rbk build URL`: a context that is a git repository
//! (`https://host/org/repo.git#ref:subdir`, `git@host:org/repo.git`) or a
//! tarball/Dockerfile over HTTP(S), fetched into a private temporary
//! directory that then serves as the local context. What was fetched (the
//! URL and its commit or digest) goes into the build's provenance.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rbk_scheduler::fileop::git::{self, FetchOptions, GitSource};
use rbk_scheduler::fileop::remote::{self, RemoteContext};

/// A remote context fetched to disk, removed when dropped.
#[derive(Debug)]
pub struct Fetched {
    _dir: tempfile::TempDir,
    /// The directory to build from.
    pub context: PathBuf,
    /// The URL as given.
    pub uri: String,
    /// `sha1:<commit>` for git, `sha256:<hex>` for a download.
    pub digest: String,
    /// Whether the URL was a bare Dockerfile (the context is empty).
    pub dockerfile_only: bool,
}

/// Whether a build's context argument is remote.
pub fn is_remote(arg: &str) -> bool {
    git::is_git_url(arg) || arg.starts_with("https://") || arg.starts_with("http://")
}

/// Fetches `arg` under `tmp` (the store's temporary directory). `keep_git_dir`
/// is `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`; `token` the `GIT_AUTH_TOKEN` secret.
pub fn fetch(
    arg: &str,
    tmp: &Path,
    keep_git_dir: bool,
    token: Option<String>,
) -> anyhow::Result<Fetched> {
    std::fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("remote-context-")
        .tempdir_in(tmp)
        .with_context(|| format!("cannot create a directory in {}", tmp.display()))?;
    let into = dir.path().join("context");
    std::fs::create_dir(&into).with_context(|| format!("cannot create {}", into.display()))?;
    if git::is_git_url(arg) {
        let src = GitSource::parse(arg)?;
        let opts = FetchOptions {
            keep_git_dir,
            auth_token: token,
        };
        let checkout = git::fetch(&src, &into, &opts)?;
        let algo = if checkout.commit.len() == 64 {
            "sha256"
        } else {
            "sha1"
        };
        return Ok(Fetched {
            context: checkout.dir,
            uri: src.display(),
            digest: format!("{algo}:{}", checkout.commit),
            dockerfile_only: false,
            _dir: dir,
        });
    }
    let got = remote::fetch_context(arg, &into)
        .with_context(|| format!("cannot fetch the context {arg}"))?;
    Ok(Fetched {
        context: into,
        uri: arg.to_string(),
        digest: got.digest().to_string(),
        dockerfile_only: matches!(got, RemoteContext::Dockerfile { .. }),
        _dir: dir,
    })
}
