//! ENV, CMD, ENTRYPOINT, LABEL, EXPOSE, USER, WORKDIR's config part and the
//! other instructions that only change the image config: no layer, no
//! execution. Their key is their definition over their parent's; the config
//! itself is the compiler's, carried by the graph.

use super::{key_of, LayerPolicy, StepKind};

/// A step that only changes the image config.
pub(crate) struct Metadata;

impl StepKind for Metadata {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::Config
    }
}

/// The key of a metadata step of definition digest `def` over `parent`.
pub(crate) fn key(def: &str, parent: &str) -> String {
    key_of(&[def.as_bytes(), parent.as_bytes()])
}
