//! `rbk parse` and `rbk graph`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rbk_compiler::render::{self, Format};

use crate::build::compile::{compile_all, StoreResolver};
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
    after_help = "Examples:\n  rbk graph examples/nginx\n  rbk graph examples/rbk.toml\n  rbk graph --format dot examples/rbk.toml | dot -Tsvg > graph.svg\n  rbk graph --format html examples/debian/rbk.toml > graph.html\nWith a store, every step is marked cached or to run (and why), as the next build would find it."
)]
pub struct GraphArgs {
    /// Output format: text, dot, mermaid, json or html (one self-contained page)
    #[arg(long, default_value = "text")]
    pub format: String,
    #[command(flatten)]
    pub input: BuildInputArgs,
}

/// Prints the build graph; with a store at `root`, each vertex marked with
/// what the cache holds for it.
pub fn graph(root: &Path, args: &GraphArgs) -> Result<i32> {
    let format: Format = args.format.parse().map_err(anyhow::Error::msg)?;
    let inputs = inputs::load(&args.input)?;
    let Some(store) = crate::existing_store(root) else {
        let g = compile_all(&inputs, &rbk_compiler::NoResolver)?;
        print!("{}", render::render(&g, format));
        return Ok(0);
    };
    let bases = rbk_scheduler::step::from::BaseImages::new(&store);
    let g = compile_all(&inputs, &StoreResolver(&bases))?;
    let mut marks = match crate::build::session::plan_marks(root, &store, &bases, &g) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("rbk: the graph is not marked against the store: {e:#}");
            Vec::new()
        }
    };
    if format == Format::Html {
        crate::graph_out::with_last_durations(root, &g, &mut marks);
    }
    print!("{}", render::render_marked(&g, format, &marks));
    Ok(0)
}
