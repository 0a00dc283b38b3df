//! `pull`: resolve a reference to a manifest (picking a platform out of an
//! index), fetch the config and layers in parallel into the store, verified,
//! then store the manifest and tag it — last, so a failed pull tags nothing.

use std::io::{Read, Write};

use super::http::{Answer, Body, Client, Session};
use super::transfer::Paced;
use super::{Progress, RegistryError};
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::StoreError;
use crate::images::{Image, Store};
use crate::oci::{
    Descriptor, Index, Manifest, PlatformSpec, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;

/// The manifest types rbk asks for, most preferred first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image now in the store.
    pub image: Image,
    /// The digest of the image index the reference named, if it named one.
    pub index_digest: Option<Digest>,
    /// The manifests pulled: one per platform, and their attestations.
    pub platforms: Vec<Digest>,
    /// Blobs that were downloaded (the others were already in the store).
    pub downloaded: Vec<Digest>,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// A fetched manifest or index, with its digest and media type.
struct Document {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: String,
}

/// The registry, repository and scopes one pull talks to, and the image's
/// name for messages.
struct Where<'a> {
    s: &'a Session,
    repo: &'a str,
    scopes: &'a [String],
    name: &'a str,
}

/// The error for a blob GET answered with `status` (not 200).
fn blob_error(
    s: &Session,
    repo: &str,
    path: &str,
    desc: &Descriptor,
    status: u16,
    message: String,
) -> RegistryError {
    if status == 404 {
        RegistryError::NotFound {
            registry: s.registry.clone(),
            reference: format!("blob {} of {repo}", desc.digest),
        }
    } else {
        RegistryError::Status {
            registry: s.registry.clone(),
            method: "GET",
            url: s.url(path),
            status,
            message,
        }
    }
}

/// Stores a downloaded blob once its size and digest are what `desc` says.
fn commit_blob(
    s: &Session,
    repo: &str,
    desc: &Descriptor,
    w: crate::content::BlobWriter,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<u64, RegistryError> {
    let written = w.written();
    if written != desc.size {
        return Err(RegistryError::SizeMismatch {
            registry: s.registry.clone(),
            what: format!("blob {} of {repo}", desc.digest),
            expected: desc.size,
            actual: written,
        });
    }
    match w.commit(Some(&desc.digest)) {
        Ok(_) => {
            progress(&Progress::Done {
                digest: desc.digest.clone(),
            });
            Ok(written)
        }
        Err(StoreError::Corrupt { expected, actual }) => Err(RegistryError::DigestMismatch {
            registry: s.registry.clone(),
            what: format!("blob of {repo}"),
            expected,
            actual,
        }),
        Err(e) => Err(e.into()),
    }
}

/// An image manifest document, checked to be one.
fn parse_manifest(at: &Where<'_>, doc: &Document) -> Result<Manifest, RegistryError> {
    if doc.media_type != MEDIA_TYPE_OCI_MANIFEST && doc.media_type != MEDIA_TYPE_DOCKER_MANIFEST {
        return Err(RegistryError::UnsupportedManifest {
            reference: at.name.to_string(),
            media_type: doc.media_type.clone(),
        });
    }
    serde_json::from_slice(&doc.bytes).map_err(|e| RegistryError::Json {
        registry: at.s.registry.clone(),
        what: format!("manifest {}", doc.digest),
        source: e,
    })
}

/// The config and layers of `manifest` the store lacks, each once.
fn missing_blobs<'m>(
    store: &Store,
    manifest: &'m Manifest,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Vec<&'m Descriptor>, RegistryError> {
    let mut wanted: Vec<&Descriptor> = Vec::new();
    for d in manifest.blobs() {
        if wanted.iter().any(|w| w.digest == d.digest) {
            continue;
        }
        if store.content.has_local_leased(&d.digest)? {
            progress(&Progress::Exists {
                digest: d.digest.clone(),
            });
        } else {
            wanted.push(d);
        }
    }
    Ok(wanted)
}

/// Which platforms of a multi-platform image to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// These (the first is the one the report shows).
    Some(Vec<PlatformSpec>),
    /// Every platform the index lists.
    All,
}

impl Platforms {
    /// One platform, or this machine's.
    pub fn one(platform: Option<&PlatformSpec>) -> Self {
        Platforms::Some(vec![platform.cloned().unwrap_or_else(PlatformSpec::host)])
    }
}

impl Client {
    /// Pulls `reference` into `store` and tags it (when it names a tag).
    /// From an index, the image for `platform` (default: this machine) is
    /// fetched, and the tag names the index (see [`Client::pull_platforms`]).
    /// Blobs already in the store are not downloaded.
    pub fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: Option<&PlatformSpec>,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<PullReport, RegistryError> {
        self.pull_platforms(store, reference, &Platforms::one(platform), progress)
    }

    /// Pulls `reference`: a single image as it is; from a multi-platform
    /// index the images of `platforms`, keeping the index whole (the
    /// store knows which of its platforms it holds), so the tag names the
    /// same index as in the registry and pulls of more platforms add to it.
    /// A platform the index lacks is an error naming those it has.
    pub fn pull_platforms(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: &Platforms,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<PullReport, RegistryError> {
        let s = self.session(reference.domain())?;
        let repo = reference.path();
        let scopes = vec![format!("repository:{repo}:pull")];
        let name = reference.familiar();
        let at = Where {
            s: &s,
            repo,
            scopes: &scopes,
            name: &name,
        };
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        let top = self.manifest(
            &s,
            repo,
            &target,
            reference.digest(),
            &scopes,
            &name,
            progress,
        )?;
        let (images, index) = if crate::images::is_index_media_type(&top.media_type) {
            let chosen = self.index_images(&at, &top, platforms, progress)?;
            (chosen, Some(top))
        } else {
            (vec![top], None)
        };
        let (wanted, bytes) = self.fetch_images(&at, store, &images, progress)?;

        let Some(entry) = index.as_ref().or(images.first()) else {
            return Err(RegistryError::NoPlatform {
                reference: name.clone(),
                platform: "any".to_string(),
                available: "none".to_string(),
            });
        };
        let desc = Descriptor::new(
            &entry.media_type,
            entry.digest.clone(),
            entry.bytes.len() as u64,
        );
        let tags: Vec<Reference> = match reference.tag() {
            Some(t) => vec![reference.with_tag(t)?],
            None => Vec::new(),
        };
        store.add_to_index_after(&[(desc, tags.clone())], || {
            for doc in images.iter().chain(index.as_ref()) {
                store.content.put(&doc.bytes)?;
            }
            Ok(())
        })?;
        let first = match platforms {
            Platforms::Some(list) => list.first(),
            Platforms::All => None,
        };
        let image = if index.is_some() {
            store.image_by_entry(&entry.digest, tags, first)?
        } else {
            store.image_by_manifest(&entry.digest, tags)?
        };
        Ok(PullReport {
            image,
            index_digest: index.map(|d| d.digest),
            platforms: images.iter().map(|doc| doc.digest.clone()).collect(),
            downloaded: wanted.iter().map(|d| d.digest.clone()).collect(),
            bytes,
        })
    }

    /// Downloads the configs and layers of the image manifests `images`
    /// that `store` lacks, each once: what was fetched and its bytes.
    fn fetch_images(
        &self,
        at: &Where<'_>,
        store: &Store,
        images: &[Document],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(Vec<Descriptor>, u64), RegistryError> {
        let mut wanted: Vec<Descriptor> = Vec::new();
        let mut manifests: Vec<Manifest> = Vec::new();
        for doc in images {
            let manifest = parse_manifest(at, doc)?;
            progress(&Progress::Manifest {
                digest: doc.digest.clone(),
            });
            for d in missing_blobs(store, &manifest, progress)? {
                if !wanted.iter().any(|w| w.digest == d.digest) {
                    wanted.push(d.clone());
                }
            }
            manifests.push(manifest);
        }
        let refs: Vec<&Descriptor> = wanted.iter().collect();
        let bytes = self.fetch_blobs(at.s, store, at.repo, &refs, at.scopes, progress)?;
        // Every blob is in and verified; a config that is not one would
        // make a tag that no listing can read: refuse it now, untagged.
        for m in &manifests {
            let data = store.content.read(&m.config.digest)?;
            serde_json::from_slice::<crate::oci::ImageConfig>(&data).map_err(|e| {
                RegistryError::Json {
                    registry: at.s.registry.clone(),
                    what: format!("image config {} of {}", m.config.digest, at.name),
                    source: e,
                }
            })?;
        }
        Ok((wanted, bytes))
    }

    /// The image manifests of index `doc` for `platforms`, fetched and
    /// verified.
    fn index_images(
        &self,
        at: &Where<'_>,
        doc: &Document,
        platforms: &Platforms,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Vec<Document>, RegistryError> {
        let (s, repo, scopes, name) = (at.s, at.repo, at.scopes, at.name);
        let index: Index = serde_json::from_slice(&doc.bytes).map_err(|e| RegistryError::Json {
            registry: s.registry.clone(),
            what: format!("index {}", doc.digest),
            source: e,
        })?;
        let entries: Vec<&Descriptor> = match platforms {
            Platforms::All => index.images().collect(),
            Platforms::Some(list) => list
                .iter()
                .map(|want| {
                    index
                        .image_for(want)
                        .ok_or_else(|| RegistryError::NoPlatform {
                            reference: name.to_string(),
                            platform: want.to_string(),
                            available: available_platforms(&index),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        // An index listing no platform's image (empty, or attestations
        // only) has nothing to pull.
        if entries.is_empty() {
            return Err(RegistryError::NoPlatform {
                reference: name.to_string(),
                platform: "any".to_string(),
                available: available_platforms(&index),
            });
        }
        let mut out: Vec<Document> = Vec::new();
        for e in entries {
            if out.iter().any(|d| d.digest == e.digest) {
                continue;
            }
            let d = e.digest.clone();
            let inner = self.manifest(s, repo, d.as_str(), Some(&d), scopes, name, progress)?;
            if crate::images::is_index_media_type(&inner.media_type) {
                return Err(RegistryError::UnsupportedManifest {
                    reference: name.to_string(),
                    media_type: format!("{} (an index inside an index)", inner.media_type),
                });
            }
            out.push(inner);
        }
        // The attestations of the images pulled (BuildKit's provenance and
        // SBOM manifests), so the index leaves the store as it came; one
        // the registry cannot serve is left out, as it would be if absent.
        let chosen: Vec<Digest> = out.iter().map(|d| d.digest.clone()).collect();
        for e in index
            .manifests
            .iter()
            .filter(|m| m.attests().is_some_and(|d| chosen.contains(&d)))
        {
            let d = e.digest.clone();
            if let Ok(doc) = self.manifest(s, repo, d.as_str(), Some(&d), scopes, name, progress) {
                if crate::images::is_manifest_media_type(&doc.media_type) {
                    out.push(doc);
                }
            }
        }
        Ok(out)
    }

    /// Fetches the manifest or index `reference` names, verified against
    /// the digest it pins or the registry announces: its bytes, media type
    /// and digest. For artifacts (such as a shared build cache) that
    /// [`Client::pull`] would not store as an image.
    pub fn get_manifest(
        &self,
        reference: &Reference,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let s = self.session(reference.domain())?;
        let repo = reference.path();
        let target = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        let scopes = vec![format!("repository:{repo}:pull")];
        let doc = self.manifest(
            &s,
            repo,
            &target,
            reference.digest(),
            &scopes,
            &reference.familiar(),
            progress,
        )?;
        Ok((doc.bytes, doc.media_type, doc.digest))
    }

    /// Downloads those of `blobs` that `store` lacks from `reference`'s
    /// repository, in parallel and verified; returns the bytes downloaded.
    pub fn fetch_blobs_into(
        &self,
        store: &Store,
        reference: &Reference,
        blobs: &[Descriptor],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<u64, RegistryError> {
        let s = self.session(reference.domain())?;
        let repo = reference.path();
        let scopes = vec![format!("repository:{repo}:pull")];
        let mut wanted: Vec<&Descriptor> = Vec::new();
        for d in blobs {
            if !store.content.has_local(&d.digest) && !wanted.iter().any(|w| w.digest == d.digest) {
                wanted.push(d);
            }
        }
        self.fetch_blobs(&s, store, repo, &wanted, &scopes, progress)
    }

    /// GETs a manifest or index and checks its digest against what was
    /// asked for and what the registry says it is.
    #[allow(clippy::too_many_arguments)]
    fn manifest(
        &self,
        s: &Session,
        repo: &str,
        target: &str,
        expected: Option<&Digest>,
        scopes: &[String],
        name: &str,
        progress: &dyn Fn(&Progress),
    ) -> Result<Document, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{target}");
        let a: Answer = self.fetch(
            s,
            "GET",
            &path,
            &[("Accept", MANIFEST_ACCEPT)],
            &Body::Empty,
            scopes,
            progress,
        )?;
        if a.status == 404 {
            return Err(RegistryError::NotFound {
                registry: s.registry.clone(),
                reference: name.to_string(),
            });
        }
        if a.status != 200 {
            return Err(RegistryError::Status {
                registry: s.registry.clone(),
                method: "GET",
                url: s.url(&path),
                status: a.status,
                message: super::error_body::describe_error_body(a.status, &a.body),
            });
        }
        let digest = Digest::of(&a.body);
        let claimed = a
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(want) = expected.or(claimed.as_ref()) {
            if want != &digest {
                return Err(RegistryError::DigestMismatch {
                    registry: s.registry.clone(),
                    what: format!("manifest {name}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        let content_type = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let media_type = sniff_media_type(&a.body)
            .or(content_type)
            .unwrap_or_default();
        Ok(Document {
            bytes: a.body,
            digest,
            media_type,
        })
    }

    /// Downloads `blobs` with up to `parallel` at a time; the first error
    /// stops the others from starting.
    fn fetch_blobs(
        &self,
        s: &Session,
        store: &Store,
        repo: &str,
        blobs: &[&Descriptor],
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<u64, RegistryError> {
        let sizes = super::for_each_parallel(blobs, self.opts.parallel, |desc| {
            self.fetch_blob(s, &store.content, repo, desc, scopes, progress)
        })?;
        Ok(sizes.into_iter().sum())
    }

    /// Streams one blob into the store, verifying its digest and size. A
    /// connection that drops mid-body is tried again, within the client's
    /// attempt bound, asking for the rest (`Range: bytes=N-`): a 206 whose
    /// `Content-Range` starts at N continues the same file, anything else
    /// starts it over. The digest is checked over the whole blob either way.
    pub(super) fn fetch_blob(
        &self,
        s: &Session,
        content: &ContentStore,
        repo: &str,
        desc: &Descriptor,
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<u64, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{}", desc.digest);
        progress(&Progress::Started {
            digest: desc.digest.clone(),
            size: desc.size,
        });
        let mut w = content.writer()?;
        let mut attempt = 1;
        loop {
            let from = w.written();
            let failure = match self.blob_body(s, repo, &path, desc, from, scopes, progress)? {
                Some(r) => {
                    if from > 0 && r.status() != 206 {
                        // The registry sends the whole blob again.
                        w = content.writer()?;
                    }
                    let url = s.url(&path);
                    let host = super::transfer::host_of(&url);
                    let remaining = desc.size.saturating_sub(w.written());
                    // One byte more than announced is enough to know it is wrong.
                    let mut body =
                        Paced::new(r.into_body().into_reader(), host, self.opts.min_speed)
                            .take(remaining.saturating_add(1));
                    let start = w.written();
                    match copy_with_progress(&mut body, &mut w, desc, start, progress) {
                        Ok(_) => return commit_blob(s, repo, desc, w, progress),
                        Err(CopyError::Write(e)) => {
                            return Err(StoreError::from_io("write", w.staging_path(), e).into())
                        }
                        Err(CopyError::Read(e)) => e,
                    }
                }
                None => {
                    w = content.writer()?;
                    std::io::Error::other(format!(
                        "the registry answered a request for bytes {from}- of a {}-byte blob \
                         with another range",
                        desc.size
                    ))
                }
            };
            // The body broke off: try again, up to the configured attempts.
            if attempt >= self.opts.attempts.max(1) {
                return Err(RegistryError::Connect {
                    registry: s.registry.clone(),
                    method: "GET",
                    url: s.url(&path),
                    attempts: attempt,
                    source: Box::new(super::Transport::Io(failure)),
                });
            }
            attempt += 1;
            progress(&Progress::Retrying {
                what: format!("GET {path}"),
                attempt,
                reason: failure.to_string(),
            });
            std::thread::sleep(self.opts.backoff * 2u32.saturating_pow(attempt - 2));
        }
    }

    /// GETs a blob from byte `from` on: the answer to read (200, or a 206
    /// for exactly the range asked), `None` for a 206 of another range.
    #[allow(clippy::too_many_arguments)]
    fn blob_body(
        &self,
        s: &Session,
        repo: &str,
        path: &str,
        desc: &Descriptor,
        from: u64,
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Option<ureq::http::Response<ureq::Body>>, RegistryError> {
        let range = format!("bytes={from}-");
        let headers: &[(&str, &str)] = if from > 0 {
            &[("Range", range.as_str())]
        } else {
            &[]
        };
        let r = self.send(s, "GET", path, headers, &Body::Empty, scopes, progress)?;
        match r.status().as_u16() {
            200 => Ok(Some(r)),
            206 if super::transfer::range_matches(r.headers(), from, desc.size) => Ok(Some(r)),
            206 => Ok(None),
            status => {
                let message = super::error_body::error_message(r);
                Err(blob_error(s, repo, path, desc, status, message))
            }
        }
    }
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

fn copy_with_progress(
    from: &mut impl Read,
    to: &mut impl Write,
    desc: &Descriptor,
    start: u64,
    progress: &dyn Fn(&Progress),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 << 10];
    // A resumed blob counts what it already has.
    let mut done = start;
    let mut reported = start;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        done += n as u64;
        // Reports every 4 MiB keep the callback cheap on fast links.
        if done - reported >= 4 << 20 {
            reported = done;
            progress(&Progress::Bytes {
                digest: desc.digest.clone(),
                done,
                total: desc.size,
            });
        }
    }
    Ok(done)
}

/// The media type a manifest names itself, or that its shape implies.
fn sniff_media_type(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(body).ok()?;
    if let Some(mt) = p.media_type {
        return Some(mt);
    }
    if p.schema_version == Some(1) {
        return Some("application/vnd.docker.distribution.manifest.v1+json".to_string());
    }
    if p.manifests.is_some() {
        return Some(MEDIA_TYPE_OCI_INDEX.to_string());
    }
    p.config.map(|_| MEDIA_TYPE_OCI_MANIFEST.to_string())
}

fn available_platforms(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .map(|p| crate::oci::PlatformSpec::of_platform(p).to_string())
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p: PlatformSpec = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<PlatformSpec>().is_err());
        assert!("linux//x".parse::<PlatformSpec>().is_err());
        let plat = crate::oci::Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: vec![],
            variant: None,
        };
        assert!(p.matches(&plat));
        assert!(!"linux/amd64"
            .parse::<PlatformSpec>()
            .unwrap()
            .matches(&plat));
    }

    #[test]
    fn media_types_are_sniffed() {
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"mediaType":"x","config":{}}"#).unwrap(),
            "x"
        );
        assert!(sniff_media_type(b"nope").is_none());
    }
}
