//! `rbk build`'s shared caches: the `--cache-to` / `--cache-from` values
//! (and the targets' own), imported before the build and listed for the
//! export after it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use rbk_compiler::targets::ResolvedTarget;
use rbk_scheduler::shared_cache::{CacheDest, CacheExport, MountExport};
use rbk_store::images::Store;
use rbk_store::registry::cache::RemoteCache;

use super::cache_spec::{parse_cache_spec, CachePlace, CacheSpec};
use super::resolver::LazyClient;
use super::settings::BuildSettings;

/// Imports the `--cache-from` caches, each place once; one that cannot be
/// imported is a warning, as in BuildKit: the build still works, only
/// slower.
fn import_caches(
    store: &Store,
    client: &LazyClient<'_>,
    from: &[(CacheSpec, Option<&str>)],
) -> Result<Vec<Arc<RemoteCache>>> {
    let mut imported: Vec<Arc<RemoteCache>> = Vec::new();
    let mut seen: Vec<CachePlace> = Vec::new();
    for (spec, _) in from {
        if seen.contains(&spec.place) {
            continue;
        }
        seen.push(spec.place.clone());
        let result = match &spec.place {
            CachePlace::Inline => continue,
            CachePlace::Registry(r) => {
                RemoteCache::import(client.get()?, store, r.clone(), &|_| {})
                    .map_err(anyhow::Error::from)
            }
            CachePlace::Local(dir) => RemoteCache::import_local(dir).map_err(anyhow::Error::from),
        };
        match result {
            Ok(c) => {
                eprintln!(
                    "importing cache from {}: {} record{}{}",
                    c.source(),
                    c.len(),
                    if c.len() == 1 { "" } else { "s" },
                    if c.by_key() {
                        " listed, others looked up by key"
                    } else {
                        ""
                    }
                );
                imported.push(Arc::new(c));
            }
            // As in BuildKit: the build still works, only slower.
            Err(e) => eprintln!("warning: cannot import cache from {}: {e:#}", spec.place),
        }
    }
    Ok(imported)
}

/// Restores, from the first of `caches` that has it, each cache mount of
/// `ids` whose directory under `cache_mounts` is missing or empty (a
/// store's own cache mount is never replaced). One that cannot be
/// restored is a warning: the build runs without it.
pub(crate) fn restore_mounts(
    store: &Store,
    cache_mounts: &std::path::Path,
    caches: &[Arc<RemoteCache>],
    ids: &[String],
) {
    use rbk_store::registry::cache::mounts::{mount_key, unpack_mount};
    for id in ids {
        let dir = rbk_scheduler::shared_cache::cache_mount_dir(cache_mounts, id);
        if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            continue;
        }
        let Some((cache, entry)) = caches
            .iter()
            .find_map(|c| c.get(&mount_key(id)).map(|e| (c, e)))
        else {
            continue;
        };
        let Some(layer) = &entry.record.layer else {
            continue;
        };
        let restored = cache
            .fetch_layer(store, &entry)
            .map_err(anyhow::Error::from)
            .and_then(|_| Ok(unpack_mount(store, layer, &dir)?));
        match restored {
            Ok(()) => eprintln!("restored cache mount {id:?} from {}", cache.source()),
            Err(e) => eprintln!(
                "warning: cannot restore cache mount {id:?} from {}: {e:#}",
                cache.source()
            ),
        }
    }
}

/// How the lookups by key of each imported cache went, one line each.
pub(crate) fn print_lookups(caches: &[Arc<RemoteCache>]) {
    for c in caches {
        let st = c.stats();
        if st.asked == 0 {
            continue;
        }
        eprintln!(
            "cache {}: {} looked up, {} found",
            c.source(),
            if st.asked == 1 {
                "1 key".to_string()
            } else {
                format!("{} keys", st.asked)
            },
            st.found
        );
        if let Some(e) = st.error {
            eprintln!(
                "warning: cache {}: a lookup failed (a miss): {e}",
                c.source()
            );
        }
    }
}

/// The command line's cache specs (parsed with the other flags), then
/// each target's (`pick` says which of its lists), parsed here: an error
/// names the target and its file.
fn with_targets<'t>(
    flag: &str,
    cli: &[CacheSpec],
    targets: &'t [ResolvedTarget],
    path: &Path,
    pick: impl Fn(&ResolvedTarget) -> &Vec<String>,
) -> Result<Vec<(CacheSpec, Option<&'t str>)>> {
    let mut out: Vec<(CacheSpec, Option<&str>)> = cli.iter().map(|s| (s.clone(), None)).collect();
    for t in targets {
        for s in pick(t) {
            let spec = parse_cache_spec(flag, s)
                .with_context(|| format!("target {:?} in {}", t.name, path.display()))?;
            out.push((spec, Some(t.name.as_str())));
        }
    }
    Ok(out)
}

/// The caches of a build: imported, exported, and carried inline.
pub(crate) struct SharedCaches {
    pub(crate) from: Vec<Arc<RemoteCache>>,
    pub(crate) to: Vec<CacheExport>,
    /// Targets whose images carry their cache inline (`type=inline`).
    pub(crate) inline: BTreeSet<String>,
}

/// Imports the `--cache-from` caches (the command line's and the targets')
/// and lists the `--cache-to` exports. A cache that cannot be imported is
/// a warning, as in BuildKit: the build still works, only slower.
/// `images` names every image of the build (what a command-line
/// `type=inline` applies to).
pub(crate) fn shared_caches(
    store: &Store,
    client: &LazyClient<'_>,
    settings: &BuildSettings,
    targets: &[ResolvedTarget],
    images: &[String],
    mount_ids: &[String],
) -> Result<SharedCaches> {
    let path = &settings.input.path;
    let from = with_targets("--cache-from", &settings.cache_from, targets, path, |t| {
        &t.cache_from
    })?;
    let imported = import_caches(store, client, &from)?;
    let to = with_targets("--cache-to", &settings.cache_to, targets, path, |t| {
        &t.cache_to
    })?;
    let mut exports = Vec::new();
    let mut inline = BTreeSet::new();
    for (spec, target) in to {
        let dest = match spec.place {
            CachePlace::Inline => {
                match target {
                    Some(t) => inline.insert(t.to_string()),
                    None => {
                        inline.extend(images.iter().cloned());
                        true
                    }
                };
                continue;
            }
            CachePlace::Registry(reference) => CacheDest::Registry {
                client: client.get()?,
                reference,
            },
            CachePlace::Local(dir) => CacheDest::Local(dir),
        };
        exports.push(CacheExport {
            dest,
            mode: spec.mode,
            images: target.map(|t| vec![t.to_string()]),
            mounts: spec.mounts.map(|max| MountExport {
                ids: mount_ids.to_vec(),
                max,
            }),
        });
    }
    Ok(SharedCaches {
        from: imported,
        to: exports,
        inline,
    })
}
