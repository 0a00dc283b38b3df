//! Step durations for planning a fleet's split (`rbk plan`, `rbk build
//! --shard`): those this store measured (`timings.json` in the store,
//! rewritten after each build) and those recorded beside a shared registry
//! cache (`rbk_store::registry::cache::timings`), the registry's winning.

use std::collections::BTreeMap;
use std::path::Path;

use rbk_compiler::BuildGraph;
use rbk_scheduler::shard::Timings;
use rbk_scheduler::BuildSummary;
use rbk_store::images::Store;
use rbk_store::registry::cache::timings as shared;
use rbk_store::registry::{Client, RegistryOptions};
use rbk_store::Reference;

const FILE: &str = "timings.json";

/// The figures this store measured (none when it has not any, or the file
/// is unreadable: figures only balance a plan).
pub fn local(root: &Path) -> Timings {
    std::fs::read(root.join(FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The figures to plan with: the store's, then the shared cache's at
/// `cache_ref` (a registry that cannot be read is said, and planning goes
/// on without its figures).
pub fn load(root: &Path, cache_ref: Option<&str>, registry: &RegistryOptions) -> Timings {
    let mut timings = local(root);
    let Some(cache_ref) = cache_ref else {
        return timings;
    };
    match read_shared(root, cache_ref, registry) {
        Ok(steps) => timings.merge(Timings { steps }),
        Err(e) => eprintln!(
            "rbk: warning: no step durations from {cache_ref} (the split counts steps instead): {e:#}"
        ),
    }
    timings
}

fn read_shared(
    root: &Path,
    cache_ref: &str,
    registry: &RegistryOptions,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let reference = Reference::parse(cache_ref)?;
    let client = Client::new(registry.clone())?;
    let store = Store::open(root)?;
    Ok(shared::read_timings(&client, &store, &reference)?)
}

/// What the steps that ran in `summary` took, by op.
pub fn measured(graph: &BuildGraph, summary: &BuildSummary) -> BTreeMap<String, f64> {
    summary
        .steps
        .iter()
        .filter(|s| !s.cached && s.vertex < graph.len())
        .map(|s| {
            let v = graph.vertex(rbk_compiler::graph::VertexId::new(s.vertex));
            (
                rbk_scheduler::shard::op_id(v),
                (s.seconds * 1000.0).round() / 1000.0,
            )
        })
        .collect()
}

/// Adds what `summary`'s steps took to the store's figures. Best effort:
/// figures only balance a plan.
pub fn save_local(root: &Path, graph: &BuildGraph, summary: &BuildSummary) {
    let steps = measured(graph, summary);
    if steps.is_empty() {
        return;
    }
    let mut t = local(root);
    t.merge(Timings { steps });
    let path = root.join(FILE);
    let tmp = root.join(format!("{FILE}.{}", std::process::id()));
    if let Ok(bytes) = serde_json::to_vec(&t) {
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

/// Records what `summary`'s steps took beside the registry cache
/// `cache`, in slot `slot` (one per shard).
pub fn publish(
    client: &Client,
    store: &Store,
    cache: &Reference,
    slot: &str,
    graph: &BuildGraph,
    summary: &BuildSummary,
) -> anyhow::Result<()> {
    let steps = measured(graph, summary);
    if steps.is_empty() {
        return Ok(());
    }
    shared::write_timings(client, store, cache, slot, &steps)?;
    Ok(())
}
