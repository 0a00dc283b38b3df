//! `--secret` values (parsed with the other flags) and, once the build
//! sets up, the secrets staged and the SSH agents started for it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use rbk_scheduler::BuildOptions;
use rbk_store::images::Store;

/// Where a `--secret` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (`src=`).
    File(PathBuf),
    /// The value of an environment variable (`env=`), taken now.
    Env { var: String, value: String },
}

/// Parses `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as buildx:
/// with neither `src` nor `env`, the environment variable named ID if it
/// is set, else the file named ID.
pub(crate) fn parse_secret(s: &str) -> Result<(String, SecretSource)> {
    const FORMS: &str = "expected id=ID[,src=FILE|,env=VAR]";
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) if !v.is_empty() => id = Some(v.to_string()),
            Some(("src" | "source", v)) if !v.is_empty() => src = Some(PathBuf::from(v)),
            Some(("env", v)) if !v.is_empty() => env = Some(v.to_string()),
            Some(("type", t @ ("file" | "env"))) => kind = Some(t),
            _ => bail!("invalid --secret {s:?}: {FORMS}"),
        }
    }
    let Some(id) = id else {
        bail!("invalid --secret {s:?}: id= is required; {FORMS}");
    };
    let from_env = |var: String| -> Result<SecretSource> {
        match crate::env::text(&var) {
            Some(value) => Ok(SecretSource::Env { var, value }),
            None => bail!("--secret id={id}: the environment variable {var} is not set"),
        }
    };
    let from_file = |path: PathBuf| -> Result<SecretSource> {
        if !path.is_file() {
            bail!(
                "--secret id={id}: {} is not a readable file",
                path.display()
            );
        }
        Ok(SecretSource::File(path))
    };
    let source = match (src, env, kind) {
        (Some(_), Some(_), _) => bail!("--secret id={id}: give src= or env=, not both"),
        (Some(p), None, Some("env")) => from_env(p.display().to_string()),
        (Some(p), None, _) => from_file(p),
        (None, Some(v), Some("file")) => from_file(PathBuf::from(v)),
        (None, Some(v), _) => from_env(v),
        (None, None, Some("file")) => from_file(PathBuf::from(&id)),
        (None, None, Some(_)) => from_env(id.clone()),
        (None, None, None) if crate::env::text(&id).is_some() => from_env(id.clone()),
        (None, None, None) => from_file(PathBuf::from(&id)).with_context(|| {
            format!("--secret id={id}: no src= or env=, no environment variable {id}, no file {id}")
        }),
    }?;
    Ok((id, source))
}

/// Secrets from environment variables, written to private files in the
/// store's staging area for the build (removed when it ends, however it
/// ends), then handed to the build like file secrets.
fn env_secret_files(
    store: &Store,
    secrets: &[(String, SecretSource)],
    options: &mut BuildOptions,
) -> Result<Vec<tempfile::TempPath>> {
    let mut held = Vec::new();
    for (id, source) in secrets {
        let SecretSource::Env { value, .. } = source else {
            continue;
        };
        let dir = store.root().join("tmp");
        let mut f = tempfile::Builder::new()
            .prefix("secret-")
            .tempfile_in(&dir)
            .with_context(|| format!("cannot stage secret {id} in {}", dir.display()))?;
        std::io::Write::write_all(&mut f, value.as_bytes())
            .with_context(|| format!("cannot stage secret {id}"))?;
        let path = f.into_temp_path();
        options.secrets.insert(id.clone(), path.to_path_buf());
        held.push(path);
    }
    Ok(held)
}

/// Stages the secrets (the command line's and the targets') and starts
/// the SSH agents asked for; both must live until the build ends.
pub(crate) fn secrets_and_agents(
    store: &Store,
    secrets: &[(String, SecretSource)],
    ssh: &BTreeMap<String, crate::ssh::SshSpec>,
    options: &mut BuildOptions,
) -> Result<(Vec<tempfile::TempPath>, crate::ssh::Agents)> {
    for (id, source) in secrets {
        if let SecretSource::File(path) = source {
            options.secrets.insert(id.clone(), path.clone());
        }
    }
    let held = env_secret_files(store, secrets, options)?;
    let agents = crate::ssh::start(ssh, &store.root().join("tmp"))?;
    options.ssh = agents.sockets.clone();
    Ok((held, agents))
}
