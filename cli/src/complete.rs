//! Shell completion that knows the store: image and container names are
//! offered where a command takes them (the targets of a target file are
//! offered by [`crate::inputs`]) (clap_complete's dynamic completion: the
//! shell asks `rbk` itself, through the script `rbk completions SHELL`
//! prints).

use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

/// The store completion reads: `$RBK_ROOT` or the default (a `--root` on
/// the line being completed is not seen).
fn root() -> std::path::PathBuf {
    crate::store_root(crate::env::rbk_root())
}

/// Tagged images (`repo:tag`), then image ids.
pub fn images() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        let Some(store) = crate::existing_store(&root()) else {
            return Vec::new();
        };
        let Ok(images) = store.list() else {
            return Vec::new();
        };
        let mut out: Vec<CompletionCandidate> = Vec::new();
        for img in &images {
            for t in &img.tags {
                out.push(
                    CompletionCandidate::new(t.familiar())
                        .help(Some(img.id.short().to_string().into())),
                );
            }
        }
        out.extend(
            images
                .iter()
                .map(|i| CompletionCandidate::new(i.id.short()).hide(true)),
        );
        out
    })
}

/// Containers by name, then by id.
pub fn containers() -> ArgValueCandidates {
    ArgValueCandidates::new(|| {
        rbk_runtime::container::list(&root())
            .into_iter()
            .flat_map(|c| {
                [
                    CompletionCandidate::new(c.name.clone()).help(Some(c.image.clone().into())),
                    CompletionCandidate::new(c.id.chars().take(12).collect::<String>()).hide(true),
                ]
            })
            .collect()
    })
}
