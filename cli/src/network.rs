//! The default network of RUN steps and containers.

use anyhow::Result;
use rbk_runtime::sandbox::NetworkMode;

/// The default network: the container's own, through user-mode
/// networking. Where that cannot be had (slirp4netns missing, or a
/// rootless user who may not open /dev/net/tun) the build stops before
/// any step and names the two ways on: no network, or the host's when the
/// user allows it. Never a silent fall back to the host's network.
/// `what` names who gets the network, `host` the flags that give the
/// host's network.
pub(crate) fn default_network(what: &str, host: &str) -> Result<NetworkMode> {
    rbk_runtime::sandbox::net::available().map_err(|e| {
        anyhow::anyhow!(
            "the default network of {what} cannot be set up here: {}; \
             use --network none (no network), or {host} (the host's network); \
             `rbk system info` shows what this host has",
            rbk_scheduler::error_chain(&e)
        )
    })?;
    Ok(NetworkMode::Private)
}
