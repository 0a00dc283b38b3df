//! The build cache index: cache key → the layer a step produced, plus the
//! plaintext of what went into the key, so a miss can be explained by
//! comparing with the nearest earlier record of the same step.
//!
//! Layout under `cache/`:
//! - `records/<key>.json`: one record per key, written atomically;
//! - `families/<family>/<key>`: empty markers listing the records of one
//!   family (one step definition), so `nearest` reads only those.
//!
//! Keys and families that are not plain file names are hashed first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::write_atomic;
use crate::digest::Digest;
use crate::error::{IoResultExt, StoreError};
use crate::layout::Layout;
use crate::oci::Descriptor;

/// What a cached step produced and why it has the key it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The cache key (definition digest + input digests).
    pub key: String,
    /// The step's definition digest: records of one family are versions of
    /// the same step, and the nearest one explains a miss.
    pub family: String,
    /// The layer blob the step committed (none for metadata-only steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<Descriptor>,
    /// The layer's uncompressed digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// The chain id of the stack the step's result sits on, which names its
    /// snapshot (`snapshots/<chain-id-hex>`); kept alive by `prune`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<Digest>,
    /// The image config after the step, for metadata steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The plaintext of what went into the key, for `--explain`.
    #[serde(default)]
    pub inputs: serde_json::Value,
    /// When the record was written, RFC 3339.
    pub created: String,
}

/// The capability the scheduler needs from a build cache.
pub trait BuildCache: Send + Sync {
    /// The record for `key`, if any. A record that cannot be read is a miss.
    fn get(&self, key: &str) -> Option<CacheRecord>;
    /// Stores (or replaces) a record.
    fn put(&self, record: &CacheRecord) -> Result<(), StoreError>;
    /// The most recent record of `family` other than `key`.
    fn nearest(&self, family: &str, key: &str) -> Option<CacheRecord>;
}

/// The on-disk cache index under `<root>/cache`.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    records: PathBuf,
    families: PathBuf,
    tmp: PathBuf,
}

/// A key or family as a file name: itself when it is a harmless name,
/// otherwise its sha256, so no key can reach outside the cache directory.
fn file_name(s: &str) -> String {
    let plain = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain {
        s.to_string()
    } else {
        format!("h-{}", Digest::of(s.as_bytes()).hex())
    }
}

impl CacheIndex {
    /// Opens (creating if needed) the cache index of the store at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let layout = Layout::new(root);
        let dir = layout.cache();
        let records = dir.join("records");
        let families = dir.join("families");
        let tmp = layout.tmp();
        // A read-only store (an older one may lack these) is read as it is.
        if !crate::lock::read_only_fs(root) {
            for d in [&records, &families, &tmp] {
                fs::create_dir_all(d).at("create directory", d)?;
            }
        }
        Ok(CacheIndex {
            records,
            families,
            tmp,
        })
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.records.join(format!("{}.json", file_name(key)))
    }

    fn read_record(path: &Path) -> Result<CacheRecord, StoreError> {
        let data = fs::read(path).at("read", path)?;
        serde_json::from_slice(&data)
            .map_err(|e| StoreError::json(format!("cache record {}", path.display()), e))
    }

    /// A record without its `inputs` (left `Null`): what a cache hit, prune
    /// and an export need. The plaintext of a COPY of a large context lists
    /// every file (megabytes of JSON); only `--explain` reads it, through
    /// `nearest`.
    fn read_lean(path: &Path) -> Result<CacheRecord, StoreError> {
        #[derive(Deserialize)]
        struct Lean {
            key: String,
            family: String,
            #[serde(default)]
            layer: Option<Descriptor>,
            #[serde(default)]
            diff_id: Option<Digest>,
            #[serde(default)]
            chain_id: Option<Digest>,
            #[serde(default)]
            config: Option<serde_json::Value>,
            created: String,
        }
        let data = fs::read(path).at("read", path)?;
        let l: Lean = serde_json::from_slice(&data)
            .map_err(|e| StoreError::json(format!("cache record {}", path.display()), e))?;
        Ok(CacheRecord {
            key: l.key,
            family: l.family,
            layer: l.layer,
            diff_id: l.diff_id,
            chain_id: l.chain_id,
            config: l.config,
            inputs: serde_json::Value::Null,
            created: l.created,
        })
    }

    /// Every record (unreadable ones are skipped: they are misses anyway).
    pub fn list(&self) -> Result<Vec<CacheRecord>, StoreError> {
        use rayon::prelude::*;
        let mut paths = Vec::new();
        for entry in fs::read_dir(&self.records).at("list", &self.records)? {
            paths.push(entry.at("list", &self.records)?.path());
        }
        // Thousands of small files: read on the pool.
        let mut out: Vec<CacheRecord> = paths
            .par_iter()
            .filter_map(|p| Self::read_lean(p).ok())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Every record file, read: the sound records, and the files that do
    /// not parse or are filed under another key's name, with why.
    #[allow(clippy::type_complexity)]
    pub fn scan(&self) -> Result<(Vec<CacheRecord>, Vec<(PathBuf, String)>), StoreError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for entry in fs::read_dir(&self.records).at("list", &self.records)? {
            let path = entry.at("list", &self.records)?.path();
            match Self::read_record(&path) {
                Ok(r) if path == self.record_path(&r.key) => good.push(r),
                Ok(r) => bad.push((path, format!("it holds the record of key {:?}", r.key))),
                // Deleted meanwhile.
                Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => bad.push((path, crate::error::error_chain(&e))),
            }
        }
        Ok((good, bad))
    }

    /// Deletes the record for `key` (a missing record is not an error).
    pub fn remove(&self, key: &str) -> Result<(), StoreError> {
        if let Some(rec) = self.get(key) {
            let marker = self
                .families
                .join(file_name(&rec.family))
                .join(file_name(key));
            let _ = fs::remove_file(marker);
        }
        let path = self.record_path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at("delete", &path),
            _ => Ok(()),
        }
    }

    /// Deletes every record; returns how many there were.
    /// The directories stay, so a build writing a record meanwhile never
    /// finds them missing.
    pub fn clear(&self) -> Result<usize, StoreError> {
        let n = self.list()?.len();
        for d in [&self.records, &self.families] {
            for entry in fs::read_dir(d).at("list", d)? {
                let path = entry.at("list", d)?.path();
                let res = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                match res {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(e).at("delete", &path)
                    }
                    _ => {}
                }
            }
        }
        Ok(n)
    }
}

impl BuildCache for CacheIndex {
    fn get(&self, key: &str) -> Option<CacheRecord> {
        let rec = Self::read_lean(&self.record_path(key)).ok()?;
        // A hashed file name could in theory collide; the key inside decides.
        (rec.key == key).then_some(rec)
    }

    fn put(&self, record: &CacheRecord) -> Result<(), StoreError> {
        let data = serde_json::to_vec_pretty(record)
            .map_err(|e| StoreError::json(format!("cache record {}", record.key), e))?;
        write_atomic(&self.tmp, &self.record_path(&record.key), &data)?;
        let fam = self.families.join(file_name(&record.family));
        let marker = fam.join(file_name(&record.key));
        // A concurrent `prune --all` may remove the family directory
        // between the two calls: try again once.
        let mut tries = 0;
        loop {
            fs::create_dir_all(&fam).at("create directory", &fam)?;
            match fs::write(&marker, b"") {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries == 0 => tries += 1,
                Err(e) => return Err(e).at("write", &marker),
            }
        }
    }

    fn nearest(&self, family: &str, key: &str) -> Option<CacheRecord> {
        let fam = self.families.join(file_name(family));
        let mut best: Option<(time::OffsetDateTime, CacheRecord)> = None;
        for entry in fs::read_dir(fam).ok()?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(rec) = Self::read_record(&self.records.join(format!("{name}.json"))) else {
                continue;
            };
            if rec.key == key || rec.family != family {
                continue;
            }
            let when = time::OffsetDateTime::parse(
                &rec.created,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let better = match &best {
                None => true,
                Some((t, b)) => (when, &rec.key) > (*t, &b.key),
            };
            if better {
                best = Some((when, rec));
            }
        }
        best.map(|(_, r)| r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(key: &str, family: &str, created: &str) -> CacheRecord {
        CacheRecord {
            key: key.to_string(),
            family: family.to_string(),
            layer: None,
            diff_id: Some(Digest::of(key.as_bytes())),
            chain_id: None,
            config: None,
            inputs: serde_json::json!({"args": {"A": key}}),
            created: created.to_string(),
        }
    }

    #[test]
    fn get_put_and_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let c = CacheIndex::open(dir.path()).unwrap();
        assert!(c.get("k1").is_none());
        c.put(&rec("k1", "fam", "2024-01-01T00:00:00Z")).unwrap();
        c.put(&rec("k2", "fam", "2024-01-02T00:00:00Z")).unwrap();
        c.put(&rec("../../evil key", "fam", "2024-01-03T00:00:00Z"))
            .unwrap();
        c.put(&rec("k4", "other", "2025-01-01T00:00:00Z")).unwrap();
        // A hit is read without its plaintext; nearest (for --explain) has it.
        assert_eq!(c.get("k1").unwrap().inputs, serde_json::Value::Null);
        assert_eq!(
            c.nearest("fam", "../../evil key").unwrap().inputs["args"]["A"],
            "k2"
        );
        assert_eq!(c.nearest("fam", "new").unwrap().key, "../../evil key");
        assert_eq!(c.nearest("fam", "../../evil key").unwrap().key, "k2");
        assert!(c.nearest("none", "x").is_none());
        assert_eq!(c.list().unwrap().len(), 4);
        c.remove("k2").unwrap();
        assert!(c.get("k2").is_none());
        assert_eq!(c.nearest("fam", "../../evil key").unwrap().key, "k1");
        assert_eq!(c.clear().unwrap(), 3);
        assert!(c.list().unwrap().is_empty());
        // Nothing escaped the cache directory.
        assert!(!dir.path().join("evil key.json").exists());
    }
}
