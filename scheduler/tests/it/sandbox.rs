//! The namespace sandbox (needs root).
