//! (owned by the store-content work; being written)
