//! `rbk parse` and `rbk graph`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use rbk_compiler::lower::{Compiler, ImageResolver};
use rbk_compiler::render::{self, Format};

use crate::inputs::{self, BuildInputArgs};

/// `rbk parse FILE`
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  rbk parse examples/nginx/Dockerfile")]
pub struct ParseArgs {
    /// The Dockerfile
    pub file: PathBuf,
}

/// Prints BuildKit's AST dump of a Dockerfile, or its first error.
pub fn parse(args: &ParseArgs) -> Result<i32> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    match rbk_compiler::parse(&text) {
        Ok(df) => {
            print!("{}", rbk_compiler::parse::dump(&df));
            for w in &df.warnings {
                eprintln!("{}:{}: warning: {}", args.file.display(), w.span, w.message);
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("{}", e.render(&args.file.display().to_string(), &text));
            Ok(1)
        }
    }
}

/// `rbk graph`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rbk graph examples/nginx\n  rbk graph examples/rbk.toml\n  rbk graph --format dot examples/rbk.toml | dot -Tsvg > graph.svg"
)]
pub struct GraphArgs {
    /// Output format: text, dot, mermaid or json
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub input: BuildInputArgs,
}

/// Compiles every input into one graph.
pub fn compile_all(
    inputs: &[rbk_compiler::Input],
    resolver: &dyn ImageResolver,
) -> Result<rbk_compiler::BuildGraph> {
    let mut c = Compiler::new(resolver);
    c.add_all(inputs)?;
    Ok(c.finish())
}

/// Prints the build graph.
pub fn graph(args: &GraphArgs, resolver: &dyn ImageResolver) -> Result<i32> {
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let inputs = inputs::load(&args.input)?;
    let g = compile_all(&inputs, resolver)?;
    print!("{}", render::render(&g, format));
    Ok(0)
}
