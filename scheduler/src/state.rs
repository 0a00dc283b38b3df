//! What a vertex of the build graph produces: a filesystem state (layers)
//! with its cache key.

use std::sync::Arc;

use rbk_store::oci::{self, ImageConfig as OciConfig};
use rbk_store::Digest;

use crate::backend::Layer;

/// The result of a vertex: a filesystem state and its cache key.
#[derive(Debug, Clone)]
pub struct State {
    /// The cache key (hex blake3).
    pub key: String,
    /// Layers bottom to top.
    pub layers: Arc<Vec<Layer>>,
    /// The base image this state grew from (config and history).
    pub base: Option<Arc<OciConfig>>,
    /// When the newest layer of this state was made (RFC 3339): reused from
    /// the cache record on a hit, so a no-op rebuild gives the same image id.
    pub created: String,
}

impl State {
    /// The chain id of the top layer, naming its snapshot.
    pub fn chain_id(&self) -> Option<Digest> {
        let ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        oci::chain_ids(&ids).pop()
    }

    /// This state with `layer` on top, keyed `key`, made at `created`.
    pub fn with_layer(&self, key: String, layer: Layer, created: String) -> State {
        let mut layers = (*self.layers).clone();
        layers.push(layer);
        State {
            key,
            layers: Arc::new(layers),
            base: self.base.clone(),
            created,
        }
    }
}

/// The Unix epoch as RFC 3339 (the date of what has no date).
pub fn epoch() -> String {
    "1970-01-01T00:00:00Z".to_string()
}

/// Now, or `SOURCE_DATE_EPOCH` when given, as RFC 3339.
pub fn now_rfc3339(source_date_epoch: Option<i64>) -> String {
    let t = source_date_epoch
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| epoch())
}
