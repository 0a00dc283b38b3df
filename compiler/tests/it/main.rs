//! Integration tests of rbk-compiler: one binary, one module per area.

mod check;
mod instructions;
mod limits;
mod lower;
mod parser;
mod shell;

/// The repository's `tests/` folder, which holds BuildKit's conformance
/// data under `conformance/`.
pub fn tests_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}
