//! `rbk build URL`: a context that is a git repository
//! (`https://host/org/repo.git#ref:subdir`, `git@host:org/repo.git`) or a
//! tarball/Dockerfile over HTTP(S), fetched into a private temporary
//! directory that then serves as the local context. What was fetched (the
//! URL and its commit or digest) goes into the build's provenance.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::secrets::SecretSource;
use crate::inputs::BuildInputArgs;
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

/// `rbk build URL`: the input arguments with the fetched context in the
/// URL's place (`-f` then names a file inside it), or `None` for a local
/// context. `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` among the build args keeps
/// `.git`; a `GIT_AUTH_TOKEN` secret authenticates the fetch.
pub fn resolve(
    args: &BuildInputArgs,
    tmp: &Path,
    secrets: &[(String, SecretSource)],
) -> anyhow::Result<Option<(BuildInputArgs, Fetched)>> {
    let arg = args.path.to_string_lossy();
    if !is_remote(&arg) {
        return Ok(None);
    }
    let keep = args.build_args.iter().any(|a| {
        matches!(
            a.as_str(),
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1" | "BUILDKIT_CONTEXT_KEEP_GIT_DIR=true"
        )
    });
    let token = match secrets.iter().find(|(id, _)| id == "GIT_AUTH_TOKEN") {
        None => None,
        Some((_, SecretSource::Env { value, .. })) => Some(value.trim().to_string()),
        Some((_, SecretSource::File(f))) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the GIT_AUTH_TOKEN secret {}", f.display()))?
                .trim()
                .to_string(),
        ),
    };
    let fetched = fetch(&arg, tmp, keep, token)?;
    let mut out = args.clone();
    out.path = fetched.context.clone();
    out.file = match (&args.file, fetched.dockerfile_only) {
        (_, true) => Some(fetched.context.join("Dockerfile")),
        (Some(f), false) => Some(fetched.context.join(f.strip_prefix("/").unwrap_or(f))),
        (None, false) => None,
    };
    Ok(Some((out, fetched)))
}
