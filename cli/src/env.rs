//! The environment variables rbk reads, all here: the libraries read none,
//! the CLI passes values down.

use std::path::PathBuf;

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `$HOME`.
pub fn home() -> Option<PathBuf> {
    var("HOME")
}

/// `$RBK_ROOT` (clap reads it for `--root`; shell completion, which
/// parses no flags, asks here).
pub fn rbk_root() -> Option<PathBuf> {
    var("RBK_ROOT")
}

/// `$XDG_DATA_HOME` (the rootless store lives in its `rbk/`).
pub fn xdg_data_home() -> Option<PathBuf> {
    var("XDG_DATA_HOME")
}

/// rbk's credentials file when `--authfile`/`$RBK_AUTH_FILE` is not given:
/// `$RBK_ROOT/auth.json`, else `$XDG_CONFIG_HOME/rbk/auth.json`
/// (`~/.config/rbk/auth.json`).
pub fn default_auth_file() -> Option<PathBuf> {
    if let Some(root) = var("RBK_ROOT") {
        return Some(root.join("auth.json"));
    }
    let config = var("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config")))?;
    Some(config.join("rbk").join("auth.json"))
}

/// Docker's `config.json`: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config() -> Option<PathBuf> {
    var("DOCKER_CONFIG")
        .map(|d| d.join("config.json"))
        .or_else(|| home().map(|h| h.join(".docker").join("config.json")))
}

/// `$SOURCE_DATE_EPOCH` as seconds since the epoch, when set and valid.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

/// `BUILDX_NO_DEFAULT_ATTESTATIONS`: set (to anything but `0`/`false`),
/// builds attach no provenance unless asked, as buildx.
pub fn no_default_attestations() -> bool {
    std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
        .map(|v| !matches!(v.trim(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// The environment variable `name` (`--build-arg NAME`, `--secret`, `--ssh`), if set and
/// valid text.
pub fn text(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `$PATH`, where the CLI looks for the helper programs it runs.
pub fn path() -> Option<std::ffi::OsString> {
    std::env::var_os("PATH")
}

/// The whole environment, for a process rbk starts as itself (rootless
/// re-execution keeps the caller's environment).
pub fn all() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os().collect()
}
