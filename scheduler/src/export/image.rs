//! An image as it leaves the store: its manifest in the format asked for
//! (layers compressed, media types), and its pushes — under its names, or
//! by digest only into their repositories.

use std::collections::BTreeMap;

use rbk_store::compress::Compression;
use rbk_store::images::{Image, Store};
use rbk_store::registry::{Client, Pushed};
use rbk_store::variant::ExportFormat;
use rbk_store::Reference;

use super::ExportError;

/// `image` as `format` has it leave the store: its manifest with the
/// layers compressed and the media types asked for (the config, and so the
/// id, stay).
pub fn for_export(
    store: &Store,
    image: &Image,
    format: &ExportFormat,
) -> Result<Image, ExportError> {
    if *format == ExportFormat::from(Compression::None) {
        return Ok(image.clone());
    }
    if image.index.is_some() {
        let index =
            store
                .index_for_export(image, format)
                .map_err(|source| ExportError::Compress {
                    image: image.entry_digest().clone(),
                    source,
                })?;
        return Ok(store.image_by_entry(
            &index.digest,
            image.tags.clone(),
            image.platform().as_ref(),
        )?);
    }
    let m = store
        .manifest_for_export(image, format)
        .map_err(|source| ExportError::Compress {
            image: image.id.clone(),
            source,
        })?;
    let mut image = image.clone();
    image.manifest = m.manifest;
    image.manifest_digest = m.digest;
    Ok(image)
}

/// An image pushed: what the metadata file records of it.
#[derive(Debug, Clone)]
pub struct PushRecord {
    /// The target (image name) it was built as.
    pub target: String,
    /// The repositories (`HOST/PATH`) it was pushed into, in name order.
    pub repositories: Vec<String>,
    /// The names it was pushed for, in full: the tags `rbk manifest merge`
    /// gives the index it joins it into.
    pub tags: Vec<String>,
    /// What was pushed (the same manifest into every repository).
    pub pushed: Pushed,
    /// Pushed by digest only (else under its names: the metadata still
    /// gives the digest the registry has, not the store's).
    pub by_digest: bool,
}

/// A push done: the name (or, by digest, the repository) and what the
/// registry got.
pub type OnPushed<'a> = &'a dyn Fn(&Reference, &Pushed);

/// Pushes `image` (built as `target`) under each of `names`; `on_pushed`
/// hears of each push. The record describes the first.
pub fn push_by_names(
    store: &Store,
    client: &Client,
    (image, target): (&Image, &str),
    names: &[Reference],
    format: &ExportFormat,
    on_pushed: OnPushed<'_>,
) -> Result<PushRecord, ExportError> {
    let mut first = None;
    for n in names {
        let pushed = client
            .push_as(store, image.entry_digest().as_str(), n, format, &|_| {})
            .map_err(|source| ExportError::Push {
                name: n.familiar(),
                source: Box::new(source),
            })?;
        on_pushed(n, &pushed);
        first.get_or_insert(pushed);
    }
    let Some(pushed) = first else {
        return Err(ExportError::NoName {
            target: target.to_string(),
        });
    };
    Ok(PushRecord {
        target: target.to_string(),
        repositories: names.iter().map(|r| r.repository()).collect(),
        tags: names.iter().map(Reference::to_string).collect(),
        pushed,
        by_digest: false,
    })
}

/// Pushes `image` (built as `target`) by digest into the repository of
/// each of `names`, once per repository; `on_pushed` hears of each push
/// (with the first name of its repository).
pub fn push_by_digest(
    store: &Store,
    client: &Client,
    (image, target): (&Image, &str),
    names: &[Reference],
    format: &ExportFormat,
    on_pushed: OnPushed<'_>,
) -> Result<PushRecord, ExportError> {
    // The first name of each repository, in repository order.
    let mut repos: BTreeMap<String, &Reference> = BTreeMap::new();
    for n in names {
        repos.entry(n.repository()).or_insert(n);
    }
    let mut pushed = None;
    for r in repos.values() {
        let p = client
            .push_by_digest(store, image.entry_digest().as_str(), r, format, &|_| {})
            .map_err(|source| ExportError::PushByDigest {
                repository: r.familiar_repository(),
                source: Box::new(source),
            })?;
        on_pushed(r, &p);
        pushed = Some(p);
    }
    let Some(pushed) = pushed else {
        return Err(ExportError::NoName {
            target: target.to_string(),
        });
    };
    Ok(PushRecord {
        target: target.to_string(),
        repositories: repos.into_keys().collect(),
        tags: names.iter().map(Reference::to_string).collect(),
        pushed,
        by_digest: true,
    })
}
