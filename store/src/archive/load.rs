//! `load`: images into the store from a docker-archive or an OCI archive.
//! Everything is staged in `tmp/` and verified first; blobs are published
//! and tags set only when the whole archive was good.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use super::{
    blob_path, clean_entry_path, decompressed, read_err, DockerManifestEntry,
    ANNOTATION_CONTAINERD_NAME, MAX_JSON,
};
use crate::content::{BlobWriter, StagedBlob};
use crate::digest::Digest;
use crate::error::{ArchiveError, IoResultExt, StoreError};
use crate::images::{Image, Store};
use crate::oci::{
    Descriptor, ImageConfig, Index, LayerCompression, Manifest, PlatformSpec,
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

/// A layer blob and the diff id its config claims for it.
type LayerCheck = (Digest, Digest);

/// Copies an archive's entry into a blob: a failed read is the archive's
/// (truncated, damaged), a failed write the store's (its disk full).
fn copy_to_store(from: &mut impl Read, to: &mut BlobWriter) -> Result<u64, StoreError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let staging = to.staging_path().to_path_buf();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| StoreError::from_io("write", &staging, e))?;
        total += n as u64;
    }
}

/// Resolves a symlink target relative to the link's directory, refusing
/// targets that leave the archive.
fn resolve_link(entry: &str, link_dir: &str, target: &Path) -> Result<String, StoreError> {
    let unsafe_link = || {
        StoreError::Archive(ArchiveError::UnsafeEntry {
            entry: entry.to_string(),
            reason: "its link target leaves the archive",
        })
    };
    if target.is_absolute() {
        return Err(unsafe_link());
    }
    let mut parts: Vec<String> = link_dir
        .split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for c in target.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(unsafe_link)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_link()),
        }
    }
    Ok(parts.join("/"))
}

/// The staged contents of an archive being loaded.
struct Staging {
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
    blobs: HashMap<Digest, StagedBlob>,
}

impl Staging {
    fn resolve(&self, path: &str) -> Result<(Digest, u64), StoreError> {
        let mut p = path.trim_start_matches("./").to_string();
        // Bounded, so a link cycle is an error rather than a hang.
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Ok(f.clone());
            }
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        Err(StoreError::Archive(ArchiveError::Missing {
            path: path.to_string(),
        }))
    }

    fn blob(&self, d: &Digest, expected_size: Option<u64>) -> Result<&StagedBlob, StoreError> {
        let (digest, size) = self.resolve(&blob_path(d))?;
        if let Some(expected) = expected_size {
            if expected != size {
                return Err(StoreError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual: size,
                });
            }
        }
        self.blobs
            .get(&digest)
            .ok_or_else(|| StoreError::Archive(ArchiveError::Missing { path: blob_path(d) }))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StoreError> {
        let (digest, size) = self.resolve(path)?;
        self.read_blob(&digest, size)
    }

    fn read_blob(&self, digest: &Digest, size: u64) -> Result<Vec<u8>, StoreError> {
        let staged = self.blobs.get(digest).ok_or_else(|| {
            StoreError::Archive(ArchiveError::Missing {
                path: digest.to_string(),
            })
        })?;
        if size > MAX_JSON {
            return Err(StoreError::SizeMismatch {
                digest: digest.clone(),
                expected: MAX_JSON,
                actual: size,
            });
        }
        fs::read(staged.path()).at("read", staged.path())
    }

    fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, StoreError> {
        serde_json::from_slice(&self.read(path)?)
            .map_err(|e| StoreError::json(format!("{path} in the archive"), e))
    }
}

/// Reads every entry of the tar into staged blobs.
fn stage_archive(store: &Store, reader: impl Read) -> Result<Staging, StoreError> {
    let mut st = Staging {
        files: HashMap::new(),
        links: HashMap::new(),
        blobs: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path().map_err(read_err)?.into_owned();
        let path = clean_entry_path(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(read_err)?
                .ok_or_else(|| {
                    StoreError::Archive(ArchiveError::UnsafeEntry {
                        entry: path.clone(),
                        reason: "it is a link without a target",
                    })
                })?
                .into_owned();
            let resolved = if kind.is_symlink() {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                resolve_link(&path, dir, &target)?
            } else {
                clean_entry_path(&target)?
            };
            st.links.insert(path, resolved);
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) || path.is_empty() {
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::from_hex(hex).ok());
        let mut w = store.content.writer()?;
        let want = entry.size();
        let got = copy_to_store(&mut entry, &mut w)?;
        if got != want {
            return Err(StoreError::Archive(ArchiveError::Truncated { entry: path }));
        }
        let staged = w.stage(expected.as_ref())?;
        st.files
            .insert(path, (staged.digest().clone(), staged.size()));
        st.blobs.entry(staged.digest().clone()).or_insert(staged);
    }
    Ok(st)
}

/// An image found in the archive, verified but not yet in the store.
struct Found {
    manifest: Descriptor,
    /// Set when the manifest was made up from a docker-archive entry.
    manifest_bytes: Option<Vec<u8>>,
    needs: Vec<Digest>,
    names: Vec<Reference>,
    config_digest: Digest,
    /// (layer blob, the diff id the config claims for it).
    checks: Vec<LayerCheck>,
}

/// Names from an index entry: the containerd annotation, else a ref.name
/// that is a full reference (a bare tag names no repository).
fn names_of(desc: &Descriptor) -> Result<Vec<Reference>, StoreError> {
    if let Some(n) = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(vec![Reference::parse(n)?]);
    }
    match desc.ref_name() {
        Some(n) if n.contains('/') || n.contains(':') => Ok(vec![Reference::parse(n)?]),
        _ => Ok(Vec::new()),
    }
}

/// Checks one manifest and everything it references.
fn check_manifest(
    st: &Staging,
    desc: &Descriptor,
) -> Result<(Manifest, Vec<Digest>, Vec<LayerCheck>), StoreError> {
    let blob = st.blob(&desc.digest, Some(desc.size))?;
    let manifest: Manifest = serde_json::from_slice(&st.read_blob(blob.digest(), blob.size())?)
        .map_err(|e| StoreError::json(format!("manifest {}", desc.digest), e))?;
    st.blob(&manifest.config.digest, Some(manifest.config.size))?;
    let config: ImageConfig =
        serde_json::from_slice(&st.read_blob(&manifest.config.digest, manifest.config.size)?)
            .map_err(|e| StoreError::json(format!("config {}", manifest.config.digest), e))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(StoreError::LayerCountMismatch {
            image: manifest.config.digest.clone(),
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        });
    }
    // Before any layer is checked or published.
    crate::images::check_layer_count(&manifest.config.digest.to_string(), manifest.layers.len())?;
    let mut needs = vec![desc.digest.clone(), manifest.config.digest.clone()];
    let mut checks = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        st.blob(&layer.digest, Some(layer.size))?;
        needs.push(layer.digest.clone());
        checks.push((layer.digest.clone(), diff_id.clone()));
    }
    Ok((manifest, needs, checks))
}

fn find_oci(st: &Staging) -> Result<Vec<Found>, StoreError> {
    let index: Index = st.json("index.json")?;
    let mut out: Vec<Found> = Vec::new();
    for entry in &index.manifests {
        let mt = entry.media_type.as_str();
        let (config_digest, needs, checks) = if crate::images::is_index_media_type(mt) {
            check_index(st, entry)?
        } else {
            let (manifest, needs, checks) = check_manifest(st, entry)?;
            (manifest.config.digest, needs, checks)
        };
        let names = names_of(entry)?;
        match out.iter_mut().find(|f| f.manifest.digest == entry.digest) {
            Some(f) => f.names.extend(names),
            None => out.push(Found {
                manifest: entry.clone(),
                manifest_bytes: None,
                needs,
                names,
                config_digest,
                checks,
            }),
        }
    }
    Ok(out)
}

/// Checks a multi-platform index and each platform's image the archive
/// holds (an archive may carry some platforms only; the index is kept
/// whole, its other platforms absent); at least one must be there. Returns
/// the config digest of this machine's platform (else the first), what to
/// publish and the layers to verify.
fn check_index(
    st: &Staging,
    desc: &Descriptor,
) -> Result<(Digest, Vec<Digest>, Vec<LayerCheck>), StoreError> {
    let blob = st.blob(&desc.digest, Some(desc.size))?;
    let index: Index = serde_json::from_slice(&st.read_blob(blob.digest(), blob.size())?)
        .map_err(|e| StoreError::json(format!("index {}", desc.digest), e))?;
    let host = PlatformSpec::host();
    let mut needs = vec![desc.digest.clone()];
    let mut checks = Vec::new();
    let mut chosen: Option<(bool, Digest)> = None;
    for m in &index.manifests {
        let Some(p) = m.platform.as_ref().filter(|_| m.is_platform_image()) else {
            // An attestation comes in with its blobs when the archive has
            // them all; it is not an image to check.
            needs.extend(attachment_blobs(st, m));
            continue;
        };
        if !st.blobs.contains_key(&m.digest) {
            continue;
        }
        if crate::images::is_index_media_type(&m.media_type) {
            return Err(StoreError::UnsupportedMediaType {
                media_type: m.media_type.clone(),
                what: format!("index {} (an index inside an index)", desc.digest),
            });
        }
        let (manifest, n, c) = check_manifest(st, m)?;
        needs.extend(n);
        checks.extend(c);
        let native = host.matches(p);
        if chosen
            .as_ref()
            .is_none_or(|(was_native, _)| native && !was_native)
        {
            chosen = Some((native, manifest.config.digest));
        }
    }
    let Some((_, config)) = chosen else {
        return Err(StoreError::UnsupportedMediaType {
            media_type: format!("{} with none of its images in the archive", desc.media_type),
            what: format!("index {}", desc.digest),
        });
    };
    Ok((config, needs, checks))
}

/// The blobs of index entry `m` that is no platform's image (an
/// attestation): its manifest and what it names, when the archive holds
/// every one of them; nothing otherwise.
fn attachment_blobs(st: &Staging, m: &Descriptor) -> Vec<Digest> {
    let Some(staged) = st.blobs.get(&m.digest) else {
        return Vec::new();
    };
    let Ok(manifest) = st.read_blob(&m.digest, staged.size()).and_then(|b| {
        serde_json::from_slice::<Manifest>(&b).map_err(|e| StoreError::json("attestation", e))
    }) else {
        return Vec::new();
    };
    let named: Vec<Digest> = manifest.blobs().map(|d| d.digest.clone()).collect();
    if named.iter().all(|d| st.blobs.contains_key(d)) {
        std::iter::once(m.digest.clone()).chain(named).collect()
    } else {
        Vec::new()
    }
}

fn find_docker(st: &Staging) -> Result<Vec<Found>, StoreError> {
    let entries: Vec<DockerManifestEntry> = st.json("manifest.json")?;
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, config_size) = st.resolve(&e.config)?;
        let config: ImageConfig =
            serde_json::from_slice(&st.read_blob(&config_digest, config_size)?)
                .map_err(|err| StoreError::json(format!("config {}", e.config), err))?;
        if config.rootfs.diff_ids.len() != e.layers.len() {
            return Err(StoreError::LayerCountMismatch {
                image: config_digest,
                diff_ids: config.rootfs.diff_ids.len(),
                layers: e.layers.len(),
            });
        }
        let mut layers = Vec::new();
        let mut checks = Vec::new();
        for (path, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
            let (digest, size) = st.resolve(path)?;
            let staged = st
                .blobs
                .get(&digest)
                .ok_or_else(|| StoreError::Archive(ArchiveError::Missing { path: path.clone() }))?;
            let mut head = [0u8; 4];
            let n = fs::File::open(staged.path())
                .and_then(|mut f| f.read(&mut head))
                .at("read", staged.path())?;
            let compression = LayerCompression::sniff(&head[..n]);
            checks.push((digest.clone(), diff_id.clone()));
            layers.push(Descriptor::new(compression.oci_media_type(), digest, size));
        }
        let mut needs = vec![config_digest.clone()];
        needs.extend(layers.iter().map(|l| l.digest.clone()));
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_string()),
            config: Descriptor::new(MEDIA_TYPE_OCI_CONFIG, config_digest.clone(), config_size),
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|err| StoreError::json("manifest", err))?;
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<_, _>>()?;
        out.push(Found {
            manifest: Descriptor::new(
                MEDIA_TYPE_OCI_MANIFEST,
                Digest::of(&bytes),
                bytes.len() as u64,
            ),
            manifest_bytes: Some(bytes),
            needs,
            names,
            config_digest,
            checks,
        });
    }
    Ok(out)
}

/// Checks that every layer uncompresses to the diff id its config claims.
/// Snapshots are keyed by chain ids computed from diff ids, so a lying
/// config could otherwise plant its content under another image's key.
/// Layers are checked in parallel; each is read once.
fn verify_diff_ids(st: &Staging, found: &[Found]) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let mut checks: Vec<&LayerCheck> = found.iter().flat_map(|f| &f.checks).collect();
    checks.sort();
    checks.dedup();
    checks.into_par_iter().try_for_each(|(layer, diff_id)| {
        if layer == diff_id {
            return Ok(()); // uncompressed: its digest was verified on staging
        }
        let staged = st.blobs.get(layer).ok_or_else(|| {
            StoreError::Archive(ArchiveError::Missing {
                path: blob_path(layer),
            })
        })?;
        let file = fs::File::open(staged.path()).at("read", staged.path())?;
        let mut reader = decompressed(file)?;
        let mut hasher = HashWriter(sha2::Sha256::default());
        io::copy(&mut reader, &mut hasher)
            .map_err(|source| StoreError::Archive(ArchiveError::Read { source }))?;
        let actual = Digest::from_hasher(hasher.0);
        if &actual != diff_id {
            return Err(StoreError::Archive(ArchiveError::DiffIdMismatch {
                layer: layer.clone(),
                expected: diff_id.clone(),
                actual,
            }));
        }
        Ok(())
    })
}

/// An `io::Write` that only hashes.
struct HashWriter(sha2::Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sha2::Digest::update(&mut self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Loads every image in a docker-archive or OCI archive (plain, gzip or
/// zstd). On any error nothing is added to the store's index.
pub fn load(store: &Store, reader: impl Read) -> Result<Vec<Image>, StoreError> {
    let st = stage_archive(store, decompressed(reader)?)?;
    let has = |p: &str| st.resolve(p).is_ok();
    let mut found = if has("index.json") {
        let mut found = find_oci(&st)?;
        // Docker's and rbk's own archives carry names in manifest.json too.
        if has("manifest.json") {
            let docker: Vec<DockerManifestEntry> = st.json("manifest.json")?;
            for f in found.iter_mut().filter(|f| f.names.is_empty()) {
                for e in &docker {
                    if st
                        .resolve(&e.config)
                        .is_ok_and(|(d, _)| d == f.config_digest)
                    {
                        for t in e.repo_tags.iter().flatten() {
                            f.names.push(Reference::parse(t)?);
                        }
                    }
                }
            }
        }
        found
    } else if has("manifest.json") {
        find_docker(&st)?
    } else {
        return Err(StoreError::Archive(ArchiveError::Format));
    };
    if found.is_empty() {
        return Err(StoreError::Archive(ArchiveError::Empty));
    }
    verify_diff_ids(&st, &found)?;
    let mut entries: Vec<(Descriptor, Vec<Reference>)> = Vec::new();
    for f in &mut found {
        f.names.sort();
        f.names.dedup();
        let tagged: Vec<Reference> = f
            .names
            .iter()
            .filter(|n| n.digest().is_none())
            .cloned()
            .collect();
        entries.push((f.manifest.clone(), tagged));
    }
    // Everything checked: publish the blobs and set the tags under one
    // lock, so a concurrent prune cannot collect them in between.
    let Staging { mut blobs, .. } = st;
    store.add_to_index_after(&entries, || {
        for f in &found {
            for d in &f.needs {
                if let Some(b) = blobs.remove(d) {
                    b.publish()?;
                }
            }
            if let Some(bytes) = &f.manifest_bytes {
                store.content.put(bytes)?;
            }
        }
        Ok(())
    })?;
    entries
        .into_iter()
        .map(|(desc, tags)| store.image_by_entry(&desc.digest, tags, None))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_or_refused() {
        assert_eq!(
            clean_entry_path(Path::new("./blobs/sha256/x")).unwrap(),
            "blobs/sha256/x"
        );
        for bad in ["../x", "a/../../x", "/etc/passwd"] {
            let err = clean_entry_path(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(
            resolve_link("a/l", "a", Path::new("../b/layer.tar")).unwrap(),
            "b/layer.tar"
        );
        assert!(resolve_link("l", "", Path::new("../x")).is_err());
        assert!(resolve_link("l", "", Path::new("/x")).is_err());
    }
}
