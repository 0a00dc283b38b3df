//! Build-context hashing (being written).
