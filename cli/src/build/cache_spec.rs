//! One `--cache-to` / `--cache-from` value, parsed: where the cache
//! lives, its mode, and whether the cache mounts travel with it.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use rbk_scheduler::shared_cache::CacheMode;
use rbk_store::Reference;

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
    if !s.contains('=') {
        let reference = Reference::parse(s).with_context(|| format!("{flag} {s:?}"))?;
        return Ok(CacheSpec {
            place: CachePlace::Registry(reference),
            mode: CacheMode::Min,
            mounts: None,
        });
    }
    let parts = SpecParts::parse(flag, s)?;
    let place = parts.place(flag, s)?;
    if (parts.mounts || parts.mounts_max.is_some()) && place == CachePlace::Inline {
        bail!("{flag} {s:?}: cache mounts travel with type=registry or type=local, not inline");
    }
    let mounts = parts
        .mounts
        .then(|| parts.mounts_max.unwrap_or(DEFAULT_MOUNTS_MAX));
    Ok(CacheSpec {
        place,
        mode: parts.mode,
        mounts,
    })
}

/// The `KEY=VALUE` parts of a cache spec, each checked on its own.
struct SpecParts {
    to: bool,
    kind: &'static str,
    mounts: bool,
    mounts_max: Option<u64>,
    reference: Option<String>,
    dir: Option<PathBuf>,
    mode: CacheMode,
}

impl SpecParts {
    /// Reads the parts of `s`, the value of `flag`.
    fn parse(flag: &str, s: &str) -> Result<SpecParts> {
        let to = flag == "--cache-to";
        let mut parts = SpecParts {
            to,
            kind: "registry",
            mounts: false,
            mounts_max: None,
            reference: None,
            dir: None,
            mode: CacheMode::Min,
        };
        for part in s.split(',') {
            parts.part(flag, s, part)?;
        }
        Ok(parts)
    }

    /// The forms the flag takes, for its errors.
    fn forms(&self) -> &'static str {
        if self.to {
            "type=registry,ref=HOST/NAME:TAG[,mode=min|max], type=local,dest=DIR[,mode=min|max] or type=inline"
        } else {
            "type=registry,ref=HOST/NAME:TAG, a bare reference, or type=local,src=DIR"
        }
    }

    /// One `KEY=VALUE` part.
    fn part(&mut self, flag: &str, s: &str, part: &str) -> Result<()> {
        let to = self.to;
        match part.split_once('=') {
            Some(("type", "registry")) => self.kind = "registry",
            Some(("type", "local")) => self.kind = "local",
            Some(("type", "inline")) if to => self.kind = "inline",
            Some(("type", "inline")) => bail!(
                "{flag} {s:?}: an inline cache is read from its image: give the image as type=registry,ref=IMAGE"
            ),
            Some(("type", other)) => bail!(
                "{flag} {s:?}: cache type {other:?} is not supported; expected {}",
                self.forms()
            ),
            Some(("ref", r)) => self.reference = Some(r.to_string()),
            Some(("dest", d)) if to => self.dir = Some(PathBuf::from(d)),
            Some(("src", d)) if !to => self.dir = Some(PathBuf::from(d)),
            Some(("mode", m)) if to => {
                self.mode = m.parse().map_err(|e| anyhow::anyhow!("{flag} {s:?}: {e}"))?
            }
            Some(("cache-mounts", v)) if to => {
                self.mounts = match v {
                    "true" => true,
                    "false" => false,
                    _ => bail!("{flag} {s:?}: cache-mounts={v}: use true or false"),
                }
            }
            Some(("cache-mounts-max", v)) if to => {
                self.mounts_max = Some(
                    rbk_store::registry::cache::parse_size(v)
                        .map_err(|e| anyhow::anyhow!("{flag} {s:?}: cache-mounts-max: {e}"))?,
                )
            }
            _ => bail!(
                "{flag} {s:?}: unknown part {part:?}; expected {}",
                self.forms()
            ),
        }
        Ok(())
    }

    /// Where the parts say the cache lives.
    fn place(&self, flag: &str, s: &str) -> Result<CachePlace> {
        Ok(match self.kind {
            "inline" => {
                if self.mode == CacheMode::Max {
                    bail!("{flag} {s:?}: type=inline supports mode=min only (the image holds the layers of its own steps); use type=registry or type=local for mode=max");
                }
                if self.reference.is_some() || self.dir.is_some() {
                    bail!("{flag} {s:?}: type=inline takes no ref= or dest=: the cache goes in the image itself");
                }
                CachePlace::Inline
            }
            "local" => {
                let Some(dir) = self.dir.clone().filter(|d| !d.as_os_str().is_empty()) else {
                    bail!(
                        "{flag} {s:?}: type=local needs {}=DIR",
                        if self.to { "dest" } else { "src" }
                    );
                };
                CachePlace::Local(dir)
            }
            _ => {
                let Some(r) = self.reference.as_ref().filter(|r| !r.is_empty()) else {
                    bail!("{flag} {s:?}: ref=HOST/NAME:TAG is required");
                };
                CachePlace::Registry(Reference::parse(r).with_context(|| format!("{flag} {s:?}"))?)
            }
        })
    }
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
