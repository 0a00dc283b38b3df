//! Integration tests of rbk-compiler: one binary, one module per area.

mod instructions;
mod lower;
mod parser;
mod shell;

/// The shared/ folder beside the checkout (CI lays it out there), or
/// `$RBK_SHARED`.
pub fn shared_dir() -> std::path::PathBuf {
    match std::env::var_os("RBK_SHARED") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}
