//! (owned by the store-layer work; being written)
