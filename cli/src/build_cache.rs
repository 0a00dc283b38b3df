//! `rbk build`'s shared caches: the `--cache-to` / `--cache-from` values
//! (and the targets' own), imported before the build and listed for the
//! export after it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use rbk_scheduler::shared_cache::{CacheDest, CacheExport, CacheMode, MountExport};
use rbk_store::images::Store;
use rbk_store::registry::cache::RemoteCache;
use rbk_store::Reference;

use crate::cmd_build::{BuildArgs, LazyClient};

/// One `--cache-to`/`--cache-from` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheSpec {
    pub(crate) place: CachePlace,
    pub(crate) mode: CacheMode,
    /// `cache-mounts=true`: the cache mounts go too, each up to this many
    /// bytes (`cache-mounts-max`, 1GiB by default).
    pub(crate) mounts: Option<u64>,
}

/// The largest cache mount exported unless `cache-mounts-max` says.
const DEFAULT_MOUNTS_MAX: u64 = 1 << 30;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CachePlace {
    /// `type=registry,ref=…`.
    Registry(Reference),
    /// `type=local,dest=DIR` (`src=DIR` to import): an OCI layout directory.
    Local(PathBuf),
    /// `type=inline` (export only): in the image's config.
    Inline,
}

impl std::fmt::Display for CachePlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CachePlace::Registry(r) => write!(f, "{r}"),
            CachePlace::Local(dir) => write!(f, "local:{}", dir.display()),
            CachePlace::Inline => f.write_str("inline"),
        }
    }
}

/// Parses `type=registry,ref=R[,mode=min|max]`, `type=local,dest=DIR` (to)
/// or `type=local,src=DIR` (from), or a bare reference, as buildx does.
pub(crate) fn parse_cache_spec(flag: &str, s: &str) -> Result<CacheSpec> {
    let to = flag == "--cache-to";
    let forms = if to {
        "type=registry,ref=HOST/NAME:TAG[,mode=min|max], type=local,dest=DIR[,mode=min|max] or type=inline"
    } else {
        "type=registry,ref=HOST/NAME:TAG, a bare reference, or type=local,src=DIR"
    };
    if !s.contains('=') {
        let reference = Reference::parse(s).with_context(|| format!("{flag} {s:?}"))?;
        return Ok(CacheSpec {
            place: CachePlace::Registry(reference),
            mode: CacheMode::Min,
            mounts: None,
        });
    }
    let mut kind = "registry";
    let mut mounts = false;
    let mut mounts_max = None;
    let mut reference = None;
    let mut dir = None;
    let mut mode = CacheMode::Min;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("type", t @ ("registry" | "local"))) => kind = t,
            Some(("type", "inline")) if to => kind = "inline",
            Some(("type", "inline")) => bail!(
                "{flag} {s:?}: an inline cache is read from its image: give the image as type=registry,ref=IMAGE"
            ),
            Some(("type", other)) => bail!("{flag} {s:?}: cache type {other:?} is not supported; expected {forms}"),
            Some(("ref", r)) => reference = Some(r.to_string()),
            Some(("dest", d)) if to => dir = Some(PathBuf::from(d)),
            Some(("src", d)) if !to => dir = Some(PathBuf::from(d)),
            Some(("mode", m)) if to => {
                mode = m.parse().map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"))?
            }
            Some(("cache-mounts", v)) if to => {
                mounts = match v {
                    "true" => true,
                    "false" => false,
                    _ => bail!("{flag} {s:?}: cache-mounts={v}: use true or false"),
                }
            }
            Some(("cache-mounts-max", v)) if to => {
                mounts_max = Some(
                    rbk_store::registry::cache::parse_size(v)
                        .map_err(|e| anyhow::anyhow!("{flag} {s:?}: cache-mounts-max: {e}"))?,
                )
            }
            _ => bail!("{flag} {s:?}: unknown part {part:?}; expected {forms}"),
        }
    }
    let place = match kind {
        "inline" => {
            if mode == CacheMode::Max {
                bail!("{flag} {s:?}: type=inline supports mode=min only (the image holds the layers of its own steps); use type=registry or type=local for mode=max");
            }
            if reference.is_some() || dir.is_some() {
                bail!("{flag} {s:?}: type=inline takes no ref= or dest=: the cache goes in the image itself");
            }
            CachePlace::Inline
        }
        "local" => {
            let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) else {
                bail!(
                    "{flag} {s:?}: type=local needs {}=DIR",
                    if to { "dest" } else { "src" }
                );
            };
            CachePlace::Local(dir)
        }
        _ => {
            let Some(r) = reference.filter(|r| !r.is_empty()) else {
                bail!("{flag} {s:?}: ref=HOST/NAME:TAG is required");
            };
            CachePlace::Registry(Reference::parse(&r).with_context(|| format!("{flag} {s:?}"))?)
        }
    };
    if (mounts || mounts_max.is_some()) && place == CachePlace::Inline {
        bail!("{flag} {s:?}: cache mounts travel with type=registry or type=local, not inline");
    }
    let mounts = mounts.then(|| mounts_max.unwrap_or(DEFAULT_MOUNTS_MAX));
    Ok(CacheSpec {
        place,
        mode,
        mounts,
    })
}

/// Imports the `--cache-from` caches, each place once; one that cannot be
/// imported is a warning, as in BuildKit: the build still works, only
/// slower.
fn import_caches(
    store: &Store,
    client: &LazyClient<'_>,
    from: &[(String, Option<&str>)],
    context: &dyn Fn(Option<&str>) -> String,
) -> Result<Vec<Arc<RemoteCache>>> {
    let mut imported: Vec<Arc<RemoteCache>> = Vec::new();
    let mut seen: Vec<CachePlace> = Vec::new();
    for (s, target) in from {
        let spec = parse_cache_spec("--cache-from", s).with_context(|| context(*target))?;
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
            .fetch_layer(store, &entry, &|_| {})
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
    args: &BuildArgs,
    targets: &[rbk_compiler::targets::ResolvedTarget],
    images: &[String],
    mount_ids: &[String],
) -> Result<SharedCaches> {
    let mut from: Vec<(String, Option<&str>)> =
        args.cache_from.iter().map(|s| (s.clone(), None)).collect();
    let mut to: Vec<(String, Option<&str>)> =
        args.cache_to.iter().map(|s| (s.clone(), None)).collect();
    for t in targets {
        from.extend(
            t.cache_from
                .iter()
                .map(|s| (s.clone(), Some(t.name.as_str()))),
        );
        to.extend(
            t.cache_to
                .iter()
                .map(|s| (s.clone(), Some(t.name.as_str()))),
        );
    }
    let context = |target: Option<&str>| match target {
        Some(t) => format!("target {t:?} in {}", args.input.path.display()),
        None => "command line".to_string(),
    };
    let imported = import_caches(store, client, &from, &context)?;
    let mut exports = Vec::new();
    let mut inline = BTreeSet::new();
    for (s, target) in &to {
        let spec = parse_cache_spec("--cache-to", s).with_context(|| context(*target))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_specs() {
        let s = parse_cache_spec(
            "--cache-to",
            "type=registry,ref=localhost:5000/c:1,mode=max",
        )
        .unwrap();
        assert!(
            matches!(&s.place, CachePlace::Registry(r) if r.to_string() == "localhost:5000/c:1")
        );
        assert_eq!(s.mode, CacheMode::Max);
        let s = parse_cache_spec("--cache-from", "localhost:5000/c:1").unwrap();
        assert_eq!(s.mode, CacheMode::Min);
        let s = parse_cache_spec("--cache-to", "type=local,dest=/tmp/x,mode=max").unwrap();
        assert_eq!(s.place, CachePlace::Local(PathBuf::from("/tmp/x")));
        assert_eq!(s.mode, CacheMode::Max);
        let s = parse_cache_spec("--cache-from", "type=local,src=/tmp/x").unwrap();
        assert_eq!(s.place, CachePlace::Local(PathBuf::from("/tmp/x")));
        let s = parse_cache_spec("--cache-to", "type=inline").unwrap();
        assert_eq!(s.place, CachePlace::Inline);
        assert_eq!(s.mode, CacheMode::Min);
        for (flag, v, want) in [
            ("--cache-to", "type=local,src=/x", "unknown part"),
            ("--cache-to", "type=local", "needs dest=DIR"),
            ("--cache-to", "type=inline,mode=max", "mode=min only"),
            ("--cache-to", "type=inline,ref=r/c:1", "takes no ref="),
            ("--cache-from", "type=inline", "read from its image"),
            ("--cache-to", "type=gha", "not supported"),
            (
                "--cache-to",
                "type=registry",
                "ref=HOST/NAME:TAG is required",
            ),
            (
                "--cache-from",
                "type=registry,ref=a/b,mode=max",
                "unknown part",
            ),
        ] {
            let e = format!("{:#}", parse_cache_spec(flag, v).unwrap_err());
            assert!(e.contains(want), "{flag} {v}: {e}");
        }
        let s = parse_cache_spec(
            "--cache-to",
            "type=registry,ref=a/b:c,cache-mounts=true,cache-mounts-max=2GB",
        )
        .unwrap();
        assert_eq!(s.mounts, Some(2 << 30));
        let s = parse_cache_spec("--cache-to", "type=local,dest=/d,cache-mounts=true").unwrap();
        assert_eq!(s.mounts, Some(1 << 30));
        for (v, want) in [
            ("type=inline,cache-mounts=true", "not inline"),
            ("type=local,dest=/d,cache-mounts=yes", "use true or false"),
            ("type=local,dest=/d,cache-mounts-max=lots", "invalid size"),
        ] {
            let e = format!("{:#}", parse_cache_spec("--cache-to", v).unwrap_err());
            assert!(e.contains(want), "{v}: {e}");
        }
        let e =
            parse_cache_spec("--cache-from", "type=local,src=/d,cache-mounts=true").unwrap_err();
        assert!(format!("{e:#}").contains("unknown part"), "{e:#}");
        let e = parse_cache_spec("--cache-to", "type=registry,ref=a/b,mode=all").unwrap_err();
        assert!(format!("{e:#}").contains("min or max"), "{e:#}");
    }
}
