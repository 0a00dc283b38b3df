//! The commit of a build's images: each image's OCI config (its compiled
//! config, its base's history plus one entry per step, its platform), its
//! layers fetched where a registry cache served them, and the commit of
//! config, manifest and tags.

use rbk_compiler::graph::ImageOutput;
use rbk_store::oci::{History, ImageConfig as OciConfig, RootFs};
use rbk_store::reference::Reference;

use rbk_store::cache::CacheRecord;
use rbk_store::registry::cache::{inline_cache, INLINE_CACHE_FIELD};

use super::plan::Plan;
use super::{BuildError, BuildSession, BuiltImage};
use crate::image::to_oci;
use crate::shared_cache::{exported_vertices, CacheMode};
use crate::state::{epoch, State};
use crate::step::LayerPolicy;

/// Commits every image of the session's graph from the second pass's
/// `results`.
pub(crate) fn commit_all(
    s: &BuildSession<'_>,
    plans: &[Option<Plan>],
    results: &[Option<State>],
) -> Result<Vec<BuiltImage>, BuildError> {
    let mut images = Vec::with_capacity(s.graph.images.len());
    for img in &s.graph.images {
        let state = results[img.vertex.index()]
            .as_ref()
            .ok_or_else(|| BuildError::Internal(format!("image {} was not built", img.name)))?;
        let mut config = oci_config(s, img, state, results)?;
        if s.options.inline_cache.contains(&img.name) {
            let records = inline_records(s, img, plans);
            config
                .extra
                .insert(INLINE_CACHE_FIELD.to_string(), inline_cache(&records));
        }
        images.push(commit(s, img, state, &config)?);
    }
    Ok(images)
}

/// The cache records of `img`'s own steps (those whose layers it holds:
/// inline caches are `mode=min`), for `--cache-to type=inline`.
fn inline_records(
    s: &BuildSession<'_>,
    img: &ImageOutput,
    plans: &[Option<Plan>],
) -> Vec<CacheRecord> {
    exported_vertices(
        s.graph,
        Some(std::slice::from_ref(&img.name)),
        CacheMode::Min,
    )
    .into_iter()
    .filter_map(|v| plans[v].as_ref())
    // First-pass keys only: the config must be the same whether a step ran
    // (and has a result key) or was served (and has none).
    .flat_map(|p| p.exported_keys())
    .filter_map(|k| s.cache.lookup(k).hit)
    .collect()
}

fn commit(
    s: &BuildSession<'_>,
    img: &ImageOutput,
    state: &State,
    config: &OciConfig,
) -> Result<BuiltImage, BuildError> {
    let mut tags = Vec::with_capacity(img.tags.len());
    for t in &img.tags {
        tags.push(Reference::parse(t).map_err(|source| BuildError::Tag {
            tag: t.clone(),
            source,
        })?);
    }
    let layers: Vec<_> = state.layers.iter().map(|l| l.blob.clone()).collect();
    // Layers served by a registry cache are made present (recorded as
    // remote: their bytes come when something reads them), and only those
    // an image holds.
    for l in &layers {
        s.env.layers.fetch(l).map_err(|source| BuildError::Commit {
            name: img.name.clone(),
            source,
        })?;
    }
    let committed = s
        .images
        .commit(config, &layers, &tags, &s.options.annotations)
        .map_err(|source| BuildError::Commit {
            name: img.name.clone(),
            source,
        })?;
    Ok(BuiltImage {
        name: img.name.clone(),
        id: committed.id,
        manifest: committed.manifest,
        tags: img.tags.clone(),
        layers: layers.len(),
        platform: img.platform.clone(),
    })
}

/// The OCI config of `img`: its compiled config, its base's history plus a
/// history entry per step, its layers' diff ids and its platform.
fn oci_config(
    s: &BuildSession<'_>,
    img: &ImageOutput,
    state: &State,
    results: &[Option<State>],
) -> Result<OciConfig, BuildError> {
    let mut history: Vec<History> = state
        .base
        .as_ref()
        .map(|b| b.history.clone())
        .unwrap_or_default();
    for id in s.graph.chain(img.vertex) {
        let v = s.graph.vertex(id);
        let policy = s.kind(id.index()).policy();
        if policy == LayerPolicy::Base {
            continue;
        }
        let result = results[id.index()].as_ref();
        let created = result.map_or_else(epoch, |st| st.created.clone());
        // A step adds a layer when its state has more than its parent's (a
        // WORKDIR whose directory existed adds none).
        let parent = v.parent.and_then(|p| results[p.index()].as_ref());
        let empty_layer = match (result, parent) {
            (Some(st), Some(p)) => st.layers.len() == p.layers.len(),
            _ => !policy.runs(),
        };
        history.push(History {
            created: Some(created),
            created_by: Some(v.created_by.clone()),
            empty_layer,
            ..Default::default()
        });
    }
    let container = to_oci(&img.config)?;
    let (os, rest) = img.platform.split_once('/').unwrap_or(("linux", "amd64"));
    let (arch, variant) = match rest.split_once('/') {
        Some((a, v)) => (a, Some(v.to_string())),
        None => (rest, None),
    };
    Ok(OciConfig {
        created: Some(state.created.clone()),
        author: img.author.clone(),
        architecture: arch.to_string(),
        os: os.to_string(),
        variant,
        config: Some(container),
        rootfs: RootFs {
            kind: "layers".to_string(),
            diff_ids: state.layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        history,
        ..Default::default()
    })
}
