//! Image configs: the compiler's [`CompilerConfig`] and the store's
//! [`ContainerConfig`]. (The commit of a build's images is the session's,
//! in `session/commit.rs`.)
//!
//! The compiler's [`CompilerConfig`] and the store's [`ContainerConfig`]
//! spell the same Docker fields; they are converted here, and only here,
//! in both directions.

use rbk_compiler::config::RuntimeConfig as CompilerConfig;
use rbk_store::oci::ContainerConfig;

/// A config that does not convert (a bug: both types spell the same
/// fields).
#[derive(Debug, thiserror::Error)]
#[error("image config does not convert between the compiler's and the store's form")]
pub struct ConfigError(#[source] serde_json::Error);

/// The compiler's config as the store writes it.
pub fn to_oci(config: &CompilerConfig) -> Result<ContainerConfig, ConfigError> {
    serde_json::to_value(config)
        .and_then(serde_json::from_value)
        .map_err(ConfigError)
}

/// A stored image's config as the compiler starts a stage from it.
pub fn from_oci(config: &ContainerConfig) -> Result<CompilerConfig, ConfigError> {
    serde_json::to_value(config)
        .and_then(serde_json::from_value)
        .map_err(ConfigError)
}
