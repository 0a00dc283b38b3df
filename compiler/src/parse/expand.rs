//! Shell-word expansion with BuildKit's semantics (being written).
