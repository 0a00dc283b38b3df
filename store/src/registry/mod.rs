//! A client of the OCI distribution protocol: `pull`, `push`, `login`,
//! and a build cache shared through a registry ([`cache`]).
//!
//! It talks HTTPS (rustls) to registries, and plain HTTP to `localhost`,
//! `127.0.0.1` and registries named insecure when they do not speak TLS.
//! Anonymous, basic and bearer-token auth are handled the way Docker does:
//! a request answered 401 is retried with what its `WWW-Authenticate`
//! challenge asks for. Connection errors and 5xx answers are retried with
//! exponential backoff (or after the `Retry-After` a 429 or 503 asks
//! for, within a cap); a transfer slower than a floor is left
//! ([`MinSpeed`]); a blob download that breaks off resumes with a `Range`
//! request where the registry allows; credentials go to the registry's own
//! origin only. Blobs are verified against their digests before they
//! enter the store, and a pulled image is tagged only once all its blobs are
//! in.

mod auth;
pub mod cache;
mod error_body;
mod http;
mod manage;
mod pull;
mod push;
mod push_stream;
mod remote_blobs;
mod transfer;

use std::path::PathBuf;

use crate::digest::Digest;

/// Why a request to a registry failed on the way (not by its answer).
#[derive(Debug, thiserror::Error)]
pub enum Transport {
    /// The HTTP client's error (connection, TLS, protocol, timeout).
    #[error(transparent)]
    Http(#[from] ureq::Error),
    /// Reading the body broke off.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The registry kept answering with a server error or 429.
    #[error("HTTP {0}")]
    Status(u16),
    /// A 429 or 503 whose `Retry-After` asks for a longer wait than rbk
    /// gives a registry.
    #[error(
        "HTTP {status}, asking to retry after {asked} s, longer than rbk waits ({} s)",
        transfer::MAX_RETRY_AFTER.as_secs()
    )]
    RetryTooLate {
        /// The status.
        status: u16,
        /// The seconds it asked for.
        asked: u64,
    },
    /// A certificate the client does not trust.
    #[error(
        "its TLS certificate is not trusted (trust its CA with --ca-cert or \
         $RBK_REGISTRY_CA, or skip checks with --tls-verify=false)"
    )]
    Certificate(#[source] ureq::Error),
}

impl Transport {
    /// Whether the registry's host name does not resolve at all (no such
    /// name, as opposed to a resolver that failed for now): asking again
    /// gives the same answer, so it is not retried.
    pub fn is_unknown_host(&self) -> bool {
        let text = match self {
            Transport::Http(ureq::Error::HostNotFound) => return true,
            Transport::Http(ureq::Error::Io(e)) | Transport::Io(e) => e.to_string(),
            _ => return false,
        };
        text.contains("Name or service not known")
            || text.contains("No address associated with hostname")
            || text.contains("nodename nor servname")
    }
}

/// `, gave up after N attempts` when there were retries.
fn gave_up(attempts: u32) -> String {
    if attempts > 1 {
        format!(", gave up after {attempts} attempts")
    } else {
        String::new()
    }
}
use crate::error::StoreError;

pub use crate::oci::PlatformSpec;
pub(crate) use auth::base64_decode;
pub use auth::{base64_encode, Credentials, CredentialsFile};
pub use http::Client;
pub use pull::{Platforms, PullReport};
pub use push::Pushed;
pub use remote_blobs::ClientFetcher;
pub use transfer::MinSpeed;

/// Where Docker Hub's API is, as opposed to its name in references.
pub(crate) const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (host or host:port) that may be reached over plain HTTP
    /// or with an unverified certificate.
    pub insecure_registries: Vec<String>,
    /// Verify TLS certificates (`--tls-verify=false` turns it off for all).
    pub tls_verify: bool,
    /// Extra PEM file of CA certificates to trust (self-signed registries).
    pub ca_cert: Option<PathBuf>,
    /// rbk's own credentials file (written by `rbk login`).
    pub auth_file: Option<PathBuf>,
    /// Docker's `config.json`, whose `auths` are read too.
    pub docker_config: Option<PathBuf>,
    /// Attempts per request when the connection fails or the registry
    /// answers 5xx (at least 1).
    pub attempts: u32,
    /// First backoff delay; it doubles at each retry.
    pub backoff: std::time::Duration,
    /// Blobs transferred at the same time.
    pub parallel: usize,
    /// The least progress a transfer must make (a registry that trickles
    /// or goes silent is left).
    pub min_speed: MinSpeed,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            tls_verify: true,
            ca_cert: None,
            auth_file: None,
            docker_config: None,
            attempts: 4,
            backoff: std::time::Duration::from_millis(500),
            parallel: 4,
            min_speed: MinSpeed::default(),
        }
    }
}

/// What a pull or push reports as it goes, for progress display.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The manifest to pull or push is known.
    Manifest {
        /// Its digest.
        digest: Digest,
    },
    /// A blob is already where it needs to be (in the store for a pull, in
    /// the registry for a push).
    Exists {
        /// The blob.
        digest: Digest,
    },
    /// A blob was mounted from another repository of the same registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// A blob transfer starts.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size from its descriptor.
        size: u64,
    },
    /// Bytes moved so far for a blob.
    Bytes {
        /// The blob.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// A transfer failed and is tried again.
    Retrying {
        /// What is retried (a URL path).
        what: String,
        /// Attempt number about to start (2 = first retry).
        attempt: u32,
        /// Why the previous attempt failed.
        reason: String,
    },
    /// A blob is complete (and verified).
    Done {
        /// The blob.
        digest: Digest,
    },
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry} ({method} {url}){}", gave_up(*.attempts))]
    Connect {
        /// The registry host.
        registry: String,
        /// HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// What went wrong the last time.
        #[source]
        source: Box<Transport>,
    },
    /// The registry refused our credentials or we have none.
    #[error("authentication to registry {registry} failed: {reason}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Why (the registry's own message when it gave one).
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered {status} to {method} {url}: {message}")]
    Status {
        /// The registry host.
        registry: String,
        /// HTTP method.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error message (from its JSON error body).
        message: String,
    },
    /// The manifest or tag does not exist in the registry.
    #[error("{reference}: not found in registry {registry}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// What was asked for.
        reference: String,
    },
    /// Content whose digest is not what was asked for.
    #[error("registry {registry} sent {what} with digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// What was fetched ("manifest", "blob").
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A blob whose length is not what its descriptor says.
    #[error(
        "registry {registry} sent {} for {what}, its descriptor says {expected} bytes",
        if .actual > .expected { format!("more than {expected} bytes") } else { format!("{actual} bytes") }
    )]
    SizeMismatch {
        /// The registry host.
        registry: String,
        /// What was fetched.
        what: String,
        /// The size the descriptor gives.
        expected: u64,
        /// The bytes that arrived (one more than expected at most: the
        /// rest is not read).
        actual: u64,
    },
    /// An image index lists no manifest for the requested platform.
    #[error("{reference}: no image for platform {platform} (available: {available})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A manifest of a type rbk cannot store (e.g. Docker schema 1).
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        /// The image.
        reference: String,
        /// The media type received.
        media_type: String,
    },
    /// A manifest or token that is not valid JSON.
    #[error("invalid {what} from registry {registry}")]
    Json {
        /// The registry host.
        registry: String,
        /// What was parsed.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A CA file that cannot be read or parsed.
    #[error("cannot use CA certificates from {}", .path.display())]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A CA file without any certificate.
    #[error("cannot use CA certificates from {}: it holds no PEM certificate", .path.display())]
    CaCertEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The credentials file cannot be read or written.
    #[error("cannot {op} the credentials file {}", .path.display())]
    CredentialsFile {
        /// What was being done: `read`, `parse`, `write`…
        op: &'static str,
        /// The file (or its directory, or its temporary copy).
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry refuses to delete manifests (a `DELETE` answered 405).
    #[error(
        "registry {registry} does not allow deleting from {repository} ({message}); \
         deletion must be enabled on the registry (distribution: `storage: delete: enabled: true`)"
    )]
    DeleteDisabled {
        /// The registry host.
        registry: String,
        /// The repository.
        repository: String,
        /// The registry's own message.
        message: String,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs `job` on every item on at most `workers` threads (blob transfers
/// mostly wait on the network). The first error stops the handing out of
/// further items and is returned; otherwise the results, in no set order.
pub(crate) fn for_each_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    job: impl Fn(&T) -> Result<R, RegistryError> + Sync,
) -> Result<Vec<R>, RegistryError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let results: Mutex<Vec<R>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        return;
                    };
                    match job(item) {
                        Ok(r) => {
                            if let Ok(mut v) = results.lock() {
                                v.push(r);
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner().ok().flatten() {
        Some(e) => Err(e),
        None => Ok(results.into_inner().unwrap_or_default()),
    }
}

/// The API host of a registry named in a reference (Docker Hub's names are
/// not its API host).
pub(crate) fn api_host(domain: &str) -> &str {
    if domain == crate::reference::DEFAULT_DOMAIN {
        DOCKER_HUB_API
    } else {
        domain
    }
}

/// Whether `host` (with optional port) is this machine, which Docker lets
/// speak plain HTTP without configuration.
pub(crate) fn is_local(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("[::1]:5000"));
        assert!(!is_local("registry.example.com"));
        assert_eq!(api_host("docker.io"), DOCKER_HUB_API);
        assert_eq!(api_host("quay.io"), "quay.io");
    }
}
