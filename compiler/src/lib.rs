//! `rbk-compiler` turns Dockerfile text into a content-hashed build DAG.
//!
//! It owns the nom parser (text → raw [`ast::Node`]s with spans, checked byte
//! for byte against BuildKit's dump format), shell-word expansion, typed
//! instructions, lowering to a [`graph::BuildGraph`] with blake3 definition
//! digests, the `rbk.toml` target file, and the graph renderers.
//!
//! It never knows about files on disk beyond the Dockerfile text it is handed,
//! the image store, or processes.

#![deny(missing_docs)]

pub mod ast;
pub mod chmod;
pub mod config;
pub mod error;
pub mod graph;
pub mod instructions;
pub mod lint;
pub mod lower;
pub mod parse;
pub mod platform;
pub mod render;
pub mod suggest;
pub mod targets;
mod vars;

pub use ast::{Directives, Dockerfile, Heredoc, Node, Span, Warning};
pub use error::ParseError;
pub use graph::{BuildGraph, Op, Vertex, VertexDigest, VertexId};
pub use lower::{compile, CompileError, Compiler, ImageResolver, Input, NoResolver};
pub use parse::{parse, parse_bytes};
