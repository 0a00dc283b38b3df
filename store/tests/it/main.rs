//! Integration tests of rbk-store: one binary, one module per area.

mod content;
mod content_archive;
mod content_interop;
mod deep_image;
mod layer;
mod layer_interop;
mod layer_snapshot;
mod lazy;
mod parallel_unpack;
mod registry;
mod snapshot_hostile;
mod variant;
