//! Layer diff/apply and snapshotters.
