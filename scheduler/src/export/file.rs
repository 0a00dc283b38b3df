//! Files written whole or not at all: through a file beside the place,
//! renamed into it once complete.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use super::ExportError;

/// What a file being written to `<dest>` is called beside it, before the
/// writer's `<pid>-<start time>`.
const PARTIAL: &str = ".rbk-partial-";

/// Deletes the `<dest>.rbk-partial-<pid>-<start>` files that killed
/// writers left beside `dest` (their process is gone, or its pid now
/// names another process). A live writer's is left alone.
fn sweep_partials(dest: &Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_os_string();
    prefix.push(PARTIAL);
    let Some(prefix) = prefix.to_str() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(tag) = file.to_str().and_then(|f| f.strip_prefix(prefix)) else {
            continue;
        };
        if rbk_store::sys::tag_is_dead(tag) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `path` through a file beside it that is renamed into place, so a
/// failed write never leaves half a file under the requested name; what a
/// killed writer left there is deleted first. `write`'s own errors come
/// back as they are.
pub fn write_file_atomically<E: From<ExportError>>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), E> {
    sweep_partials(path);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{PARTIAL}{}", rbk_store::sys::process_tag()));
    let tmp = path.with_file_name(name);
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| ExportError::Io { op, path, source }
    };
    let result = (|| -> Result<(), E> {
        let mut f = io::BufWriter::new(File::create(&tmp).map_err(io("create", &tmp))?);
        write(&mut f)?;
        let f = f
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("write", path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
