//! Integration tests of rbk-compiler: one binary, one module per area.

mod parser;
mod shell;
