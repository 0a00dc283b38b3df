//! Integration tests of rbk-store: one binary, one module per area.

mod content;
mod layer;
mod layer_snapshot;
mod layer_interop;
mod content_archive;
mod content_interop;
mod registry;
