//! Integration tests of rbk-runtime.

mod sandbox;
