//! Content store, image index, archives (save/load/import).
