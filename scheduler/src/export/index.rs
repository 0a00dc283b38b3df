//! Multi-platform builds: an image name built for several platforms (one
//! input per platform, compiled into the one graph) ends as one OCI index
//! holding each platform's image, and the tags name the index.

use std::collections::BTreeMap;

use rbk_compiler::BuildGraph;
use rbk_store::images::Store;
use rbk_store::reference::Reference;

use super::ExportError;
use crate::{BuildSummary, BuiltImage};

/// The image names built for several platforms, with the tags held back
/// from each platform's image for their index.
#[derive(Debug, Default)]
pub struct Groups(Vec<(String, Vec<String>)>);

/// Finds the names `graph` builds for several platforms and takes their
/// tags off each platform's image (the index gets them): a tag never
/// names one platform of a multi-platform image, not even for a moment.
pub fn hold_tags(graph: &mut BuildGraph) -> Groups {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for img in &graph.images {
        *counts.entry(img.name.as_str()).or_default() += 1;
    }
    let multi: Vec<String> = counts
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(name, _)| name.to_string())
        .collect();
    let mut groups = Vec::new();
    for name in multi {
        let mut tags = Vec::new();
        for img in graph.images.iter_mut().filter(|i| i.name == name) {
            for t in std::mem::take(&mut img.tags) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }
        groups.push((name, tags));
    }
    Groups(groups)
}

/// Commits an index over each group's platform images, tagged with the
/// group's tags, and puts it in `summary` in their place (its id and
/// manifest are the index's digest, as buildx reports a multi-platform
/// image).
pub fn commit_indexes(
    store: &Store,
    groups: &Groups,
    summary: &mut BuildSummary,
) -> Result<(), ExportError> {
    for (name, tags) in &groups.0 {
        let members: Vec<&BuiltImage> = summary.images.iter().filter(|i| &i.name == name).collect();
        let Some(first) = members.first() else {
            continue;
        };
        let images = members
            .iter()
            .map(|b| store.image_by_manifest(&b.manifest, Vec::new()))
            .collect::<Result<Vec<_>, _>>()?;
        let refs = tags
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let index = store
            .commit_index(&images, &refs, &BTreeMap::new())
            .map_err(|source| ExportError::Index {
                name: name.clone(),
                source,
            })?;
        let digest = index.entry_digest().clone();
        let built = BuiltImage {
            name: name.clone(),
            id: digest.clone(),
            manifest: digest,
            tags: tags.clone(),
            layers: first.layers,
            platform: members
                .iter()
                .map(|b| b.platform.as_str())
                .collect::<Vec<_>>()
                .join(","),
        };
        // In the place of its first platform's image (which exists: `first`).
        let at = summary
            .images
            .iter()
            .position(|i| &i.name == name)
            .unwrap_or_default();
        summary.images.retain(|i| &i.name != name);
        summary.images.insert(at, built);
    }
    Ok(())
}
