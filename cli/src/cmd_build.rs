//! `rbk build`: the flags resolved into settings, then the build (in
//! [`crate::build`]) run with them.

use std::path::Path;

use anyhow::Result;

pub use crate::build::args::BuildArgs;
use crate::build::settings::BuildSettings;

/// Runs a build; returns the exit code.
pub fn build(root: &Path, args: &BuildArgs) -> Result<i32> {
    if args.print {
        // The targets as resolved, and nothing built: no other flag counts.
        let doc = crate::inputs::print_targets(&args.input)?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    // Every flag is checked before any work (compile, pull, cache import).
    let settings = BuildSettings::resolve(args)?;
    crate::build::run(root, &settings)
}
