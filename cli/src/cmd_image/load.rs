//! `rbk load`: images from a `docker save` archive, from a file or a pipe.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use rbk_store::{archive, Store};

/// `rbk load`.
pub(super) fn load(
    store: &Store,
    out: &mut dyn Write,
    input: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<i32> {
    let images = match input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            archive::load(store, f)?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("no archive given: use -i FILE or pipe one on standard input");
            }
            archive::load(store, io::stdin().lock())?
        }
    };
    if !quiet {
        for image in images {
            if image.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", image.id)?;
            }
            for t in &image.tags {
                writeln!(out, "Loaded image: {}", t.familiar())?;
            }
        }
    }
    Ok(0)
}
