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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_file_and_a_good_one_the_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.tar");
        let failed: Result<(), ExportError> = write_file_atomically(&path, |w| {
            w.write_all(b"half").unwrap();
            Err(ExportError::NoName {
                target: "app".into(),
            })
        });
        assert!(matches!(failed, Err(ExportError::NoName { .. })));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        write_file_atomically::<ExportError>(&path, |w| {
            w.write_all(b"whole").map_err(|source| ExportError::Io {
                op: "write",
                path: path.clone(),
                source,
            })
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let path = Path::new("/nonexistent-rbk-dir/out");
        let e = write_file_atomically::<ExportError>(path, |_| Ok(())).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot create /nonexistent-rbk-dir/out.rbk-partial-"),
            "{e}"
        );
    }
}
