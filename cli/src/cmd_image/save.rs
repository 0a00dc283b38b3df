//! `rbk save`: images to a `docker save` archive, to a file or a pipe.

use std::io::{self, IsTerminal};
use std::path::Path;

use anyhow::bail;
use rbk_store::{archive, Store};

/// `rbk save`.
pub(super) fn save(store: &Store, names: &[String], output: Option<&Path>) -> anyhow::Result<i32> {
    let items = archive::save_items(store, names)?;
    match output {
        Some(path) => {
            crate::outputs::write_file_atomically(path, |out| {
                archive::save(store, &items, out)?;
                Ok(())
            })?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect the output");
            }
            archive::save(store, &items, crate::pipe::stdout())?;
        }
    }
    Ok(0)
}
