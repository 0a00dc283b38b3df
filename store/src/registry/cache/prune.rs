//! `rbk cache prune`: deletes old records of a registry cache through the
//! distribution API, by age and then by size.

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::records::{self, is_record_tag, ANNOTATION_CREATED};
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{for_each_parallel, Client, Progress, RegistryError};

/// What to keep.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Records exported longer ago than this are deleted.
    pub keep_duration: Option<Duration>,
    /// Then the oldest records are deleted until the rest take no more
    /// than this many bytes (each blob counted once).
    pub keep_storage: Option<u64>,
}

/// One record of the cache, as `prune` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedRecord {
    /// Its tag.
    pub tag: String,
    /// Its manifest's digest.
    pub digest: Digest,
    /// When it was exported (RFC 3339, as the record says).
    pub created: String,
    /// Its layer and config, in bytes.
    pub size: u64,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Records deleted, oldest first.
    pub deleted: Vec<PrunedRecord>,
    /// Records kept, oldest first.
    pub kept: Vec<PrunedRecord>,
    /// Bytes the kept records take (each blob once).
    pub kept_bytes: u64,
}

/// A record with what prune needs to weigh it.
struct Seen {
    record: PrunedRecord,
    when: OffsetDateTime,
    blobs: Vec<(Digest, u64)>,
}

/// Deletes the records of the cache `reference` that `opts` does not keep:
/// those exported longer ago than `keep_duration`, then the oldest until
/// the rest fit in `keep_storage`. Records are found by listing the
/// repository's tags; each is deleted by its manifest's digest (the
/// registry frees the blobs no manifest holds at its next garbage
/// collection). Among records of the same age the largest go first. The
/// index the cache ref names is left alone.
pub fn prune(
    client: &Client,
    reference: &Reference,
    opts: &PruneOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<PruneReport, RegistryError> {
    let cache_tag = reference.tag().unwrap_or(crate::reference::DEFAULT_TAG);
    let tags: Vec<String> = client
        .list_tags(reference, progress)?
        .into_iter()
        .filter(|t| is_record_tag(cache_tag, t))
        .collect();
    let workers = client.options().parallel.max(1) * 2;
    let seen = for_each_parallel(&tags, workers, |tag| read_record(client, reference, tag))?;
    let mut seen: Vec<Seen> = seen.into_iter().flatten().collect();
    // Oldest first; among records of one export, the largest first, so
    // fewer go to get under the size.
    seen.sort_by(|a, b| {
        let key = |s: &Seen| (s.when, std::cmp::Reverse(s.record.size));
        key(a)
            .cmp(&key(b))
            .then_with(|| a.record.tag.cmp(&b.record.tag))
    });
    let (doomed, kept, kept_bytes) = choose(seen, opts, OffsetDateTime::now_utc());
    for_each_parallel(&doomed, workers, |r| {
        client.delete_manifest(reference, &r.digest, progress)
    })?;
    Ok(PruneReport {
        deleted: doomed,
        kept,
        kept_bytes,
    })
}

/// The record tagged `tag`, or `None` when it is gone (another prune) or
/// is not a record.
fn read_record(
    client: &Client,
    reference: &Reference,
    tag: &str,
) -> Result<Option<Seen>, RegistryError> {
    let at = reference.with_tag(tag)?;
    let (bytes, _, digest) = match client.get_manifest(&at, &|_| {}) {
        Ok(m) => m,
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(m) = records::parse_manifest(&bytes) else {
        return Ok(None);
    };
    let created = m
        .annotations
        .get(ANNOTATION_CREATED)
        .cloned()
        .unwrap_or_default();
    // Undated: the oldest of all.
    let when = OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut blobs = vec![(m.config.desc.digest.clone(), m.config.desc.size)];
    blobs.extend(m.layers.iter().map(|l| (l.digest.clone(), l.size)));
    Ok(Some(Seen {
        record: PrunedRecord {
            tag: tag.to_string(),
            digest,
            created,
            size: blobs.iter().map(|(_, s)| s).sum(),
        },
        when,
        blobs,
    }))
}

/// Splits `seen` (oldest first) into the records to delete and those to
/// keep, with the bytes kept.
fn choose(
    seen: Vec<Seen>,
    opts: &PruneOptions,
    now: OffsetDateTime,
) -> (Vec<PrunedRecord>, Vec<PrunedRecord>, u64) {
    let cutoff = opts.keep_duration.and_then(|d| {
        time::Duration::try_from(d)
            .ok()
            .and_then(|d| now.checked_sub(d))
    });
    let (old, mut rest): (Vec<Seen>, Vec<Seen>) = seen
        .into_iter()
        .partition(|s| cutoff.is_some_and(|c| s.when < c));
    let mut doomed: Vec<PrunedRecord> = old.into_iter().map(|s| s.record).collect();
    // Each blob counted once, however many records hold it.
    let mut holders: HashMap<Digest, (u64, usize)> = HashMap::new();
    for s in &rest {
        for (d, size) in &s.blobs {
            holders.entry(d.clone()).or_insert((*size, 0)).1 += 1;
        }
    }
    let mut total: u64 = holders.values().map(|(s, _)| s).sum();
    if let Some(limit) = opts.keep_storage {
        let mut i = 0;
        while total > limit && i < rest.len() {
            for (d, _) in &rest[i].blobs {
                if let Some((size, n)) = holders.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        total -= *size;
                    }
                }
            }
            i += 1;
        }
        doomed.extend(rest.drain(..i).map(|s| s.record));
    }
    (doomed, rest.into_iter().map(|s| s.record).collect(), total)
}

/// Parses a duration such as `24h`, `7d`, `90m`, `1h30m` or `3600s`
/// (units s, m, h, d, w).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}: use a number and a unit, as in 24h, 7d, 90m");
    let mut secs: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (n, tail) = rest.split_at(digits);
        let n: u64 = n.parse().map_err(|_| bad())?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let per = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(bad()),
        };
        secs = n
            .checked_mul(per)
            .and_then(|v| secs.checked_add(v))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(Duration::from_secs(secs))
}

/// Parses a size such as `10GB`, `512MB`, `1.5G` or `4096`: as Docker's
/// `--keep-storage`, the units (B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
/// T/TB/TiB, any case) are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?}: use a number and a unit, as in 10GB, 512MB");
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return Err(bad()),
    };
    let bytes = n * 1024f64.powi(power);
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seen(tag: &str, age_h: i64, blobs: &[(&str, u64)], now: OffsetDateTime) -> Seen {
        let blobs: Vec<(Digest, u64)> = blobs
            .iter()
            .map(|(b, s)| (Digest::of(b.as_bytes()), *s))
            .collect();
        Seen {
            record: PrunedRecord {
                tag: tag.into(),
                digest: Digest::of(tag.as_bytes()),
                created: String::new(),
                size: blobs.iter().map(|(_, s)| s).sum(),
            },
            when: now - time::Duration::hours(age_h),
            blobs,
        }
    }

    #[test]
    fn by_age_then_oldest_first_counting_shared_blobs_once() {
        let now = OffsetDateTime::now_utc();
        let all = || {
            vec![
                seen("a", 50, &[("x", 100)], now),
                seen("b", 30, &[("y", 100), ("shared", 50)], now),
                seen("c", 20, &[("shared", 50)], now),
                seen("d", 1, &[("z", 100)], now),
            ]
        };
        let tags = |v: &[PrunedRecord]| v.iter().map(|r| r.tag.clone()).collect::<Vec<_>>();
        let opts = PruneOptions {
            keep_duration: Some(Duration::from_secs(40 * 3600)),
            keep_storage: None,
        };
        let (d, k, bytes) = choose(all(), &opts, now);
        assert_eq!(
            (tags(&d), tags(&k), bytes),
            (
                vec!["a".into()],
                vec!["b".into(), "c".into(), "d".into()],
                250
            )
        );
        // Deleting b frees only y (100): shared stays with c, so 150 is
        // still over 120 and c goes too.
        let opts = PruneOptions {
            keep_duration: None,
            keep_storage: Some(120),
        };
        let (d, k, bytes) = choose(all(), &opts, now);
        assert_eq!(tags(&d), vec!["a", "b", "c"]);
        assert_eq!((tags(&k), bytes), (vec!["d".into()], 100));
        let opts = PruneOptions {
            keep_duration: None,
            keep_storage: Some(250),
        };
        assert_eq!(tags(&choose(all(), &opts, now).0), vec!["a"]);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "h", "24", "24x", "-1h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5K").unwrap(), 1536);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "GB", "10XB", "-1GB", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
