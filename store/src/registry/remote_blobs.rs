//! The registry client as the content store's [`Fetcher`]: how a layer
//! kept in a registry (see [`crate::content::remote`]) is fetched when
//! something first reads it, with the credentials a pull would use.

use std::sync::{Arc, OnceLock};

use super::http::Client;
use super::RegistryOptions;
use crate::content::remote::Fetcher;
use crate::content::ContentStore;
use crate::oci::Descriptor;

/// Fetches remote layers through a registry [`Client`], made on first use
/// (a command that fetches nothing never reads the registry settings).
pub struct ClientFetcher {
    options: RegistryOptions,
    client: OnceLock<Result<Arc<Client>, String>>,
}

impl ClientFetcher {
    /// Fetches with a client of `options` (TLS settings, credentials).
    pub fn new(options: RegistryOptions) -> Self {
        ClientFetcher {
            options,
            client: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<Arc<Client>, String> {
        self.client
            .get_or_init(|| {
                Client::new(self.options.clone())
                    .map(Arc::new)
                    .map_err(|e| crate::error::error_chain(&e))
            })
            .clone()
    }
}

impl Fetcher for ClientFetcher {
    fn fetch(
        &self,
        content: &ContentStore,
        repository: &str,
        blob: &Descriptor,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let (domain, repo) = repository
            .split_once('/')
            .ok_or_else(|| format!("{repository:?} names no repository of a registry"))?;
        let client = self.client()?;
        let s = client.session(domain)?;
        let scopes = vec![format!("repository:{repo}:pull")];
        client.fetch_blob(&s, content, repo, blob, &scopes, &|_| {})?;
        Ok(())
    }
}
