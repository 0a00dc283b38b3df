//! `rbk check`: BuildKit's Dockerfile lint rules over every Dockerfile of
//! a build (the rules run in [`crate::build::lint`]).

use anyhow::Result;
use rbk_compiler::lower::ImageResolver;

use crate::inputs::{self, BuildInputArgs};

/// `rbk check`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbk check .                                   # the Dockerfile of a context
  rbk check -f docker/Dockerfile.prod .
  rbk check examples/debian/rbk.toml            # every Dockerfile of the file
In a Dockerfile, `# check=skip=JSONArgsRecommended,StageNameCasing` turns rules off
(`skip=all`: every rule) and `# check=error=true` makes findings an error (exit 1).")]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: BuildInputArgs,
}

/// `rbk check`.
pub fn run(args: &CheckArgs, resolver: &dyn ImageResolver) -> Result<i32> {
    let inputs = inputs::load(&args.input)?;
    crate::build::lint::check_inputs(&inputs, resolver)
}
