//! The build session wired to the real services: the store, its backend
//! (layers, cache, the shared caches), the namespace executor, and the
//! progress display.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use rbk_compiler::render::{Mark, MarkState};
use rbk_runtime::sandbox::{CancelToken, NamespaceExecutor};
use rbk_scheduler::backend::store::StoreBackend;
use rbk_scheduler::shared_cache::CacheExport;
use rbk_scheduler::step::from::BaseImages;
use rbk_scheduler::{BuildOptions, BuildSession, BuildSummary, Services, VertexPlan};
use rbk_store::compress::Compression;
use rbk_store::images::Store;
use rbk_store::registry::cache::RemoteCache;

use super::settings::BuildSettings;
use crate::progress::{self, ProgressMode};

/// How the store backend is set up for a build.
pub(crate) struct Backend {
    /// Of the layers kept in the store.
    pub(crate) compression: Compression,
    /// The caches imported.
    pub(crate) from: Vec<Arc<RemoteCache>>,
    /// The caches exported.
    pub(crate) to: Vec<CacheExport>,
}

/// Wires the real services into a session and runs the build (Ctrl-C
/// cancels it).
pub(crate) fn run_session(
    root: &Path,
    store: &Store,
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
    options: BuildOptions,
    setup: Backend,
    settings: &BuildSettings,
) -> Result<BuildSummary> {
    let snapshotter = crate::snapshotter(root)?;
    let imported = setup.from.clone();
    let backend = StoreBackend::new(store, snapshotter.as_ref())
        .with_compression(setup.compression)
        .with_clamped_mtimes(options.source_date_epoch)
        .with_cache_from(setup.from)
        .with_cache_to(setup.to);
    let reporter = progress::reporter(settings.progress_mode());
    let recorder = crate::graph_out::Recorder::new(reporter.as_ref());
    let services = store_services(store, bases, &backend, &recorder);
    let session = BuildSession::new(graph, services, options)?;
    let cancel = CancelToken::new();
    crate::sys::cancel_on_interrupt(&cancel);
    let summary = match session.build(&cancel) {
        Ok(summary) => summary,
        Err(e) => {
            // The page shows what failed, what stopped with it and what
            // never ran; the build's error stays the one reported.
            if let Some(path) = &settings.graph_out {
                let marks = crate::graph_out::after_failure(graph, &recorder, &format!("{e:#}"));
                if let Err(w) = crate::graph_out::write(path, graph, &marks) {
                    eprintln!("warning: {w:#}");
                }
            }
            return Err(e.into());
        }
    };
    if !settings.quiet && settings.progress != ProgressMode::Rawjson {
        super::cache::print_lookups(&imported);
    }
    Ok(summary)
}

/// A build session's services on the store: its images and bases, the
/// store backend's layers and cache, the namespace executor.
fn store_services<'a>(
    store: &'a Store,
    bases: &'a BaseImages<'a>,
    backend: &'a StoreBackend<'a>,
    reporter: &'a dyn rbk_scheduler::progress::Reporter,
) -> Services<'a> {
    Services {
        bases,
        images: store,
        layers: backend,
        cache: backend,
        executor: &NamespaceExecutor,
        reporter,
        dirs: backend.work_dirs(),
    }
}

/// What the cache holds for each vertex of `graph`, as the next build
/// would find it: the first pass of a build, nothing run or fetched.
pub fn plan_marks(
    root: &Path,
    store: &Store,
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
) -> Result<Vec<Option<Mark>>> {
    let snapshotter = crate::snapshotter(root)?;
    let backend = StoreBackend::new(store, snapshotter.as_ref());
    let reporter = progress::reporter(ProgressMode::Quiet);
    let services = store_services(store, bases, &backend, reporter.as_ref());
    let session = BuildSession::new(graph, services, BuildOptions::default())?;
    let plans = session.plan(&CancelToken::new())?;
    Ok(plans
        .into_iter()
        .map(|p| {
            p.map(|p| match p {
                VertexPlan::Base => Mark {
                    state: MarkState::Base,
                    reason: None,
                    seconds: None,
                },
                VertexPlan::Cached => Mark {
                    state: MarkState::Cached,
                    reason: None,
                    seconds: None,
                },
                VertexPlan::Run(why) => Mark {
                    state: MarkState::Run,
                    reason: Some(why),
                    seconds: None,
                },
            })
        })
        .collect())
}
