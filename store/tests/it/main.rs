//! Integration tests of rbk-store: one binary, one module per area.

mod content;
mod layer;
mod content_archive;
