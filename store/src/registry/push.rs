//! `push`: upload the blobs the registry lacks (existence check first, a
//! cross-repository mount when another repository of the same registry is
//! known to have the blob), in parallel, then the manifest.
//!
//! Layers are kept uncompressed in the store (as BuildKit and Docker keep
//! them); like `docker push`, a push compresses them (gzip by default), so
//! what is sent is the image's compressed variant: its manifest, and so
//! the pushed manifest digest, differs from the local one, while the config
//! and so the image id are the same. Variants are made once and reused
//! (see [`crate::variant`]); a layer whose variant is made by the push
//! itself goes to the registry while it is compressed (see
//! [`super::push_stream`]). Layers already compressed in the store, and a
//! push with [`Compression::None`], send exactly the stored bytes.

use std::collections::HashMap;

use super::error_body::{describe_error_body, error_message};
use super::http::{Body, Client, Session};
use super::{Progress, RegistryError};
use crate::compress::Compression;
use crate::digest::Digest;
use crate::images::{Image, Store};
use crate::oci::{Descriptor, Manifest, MEDIA_TYPE_OCI_MANIFEST};
use crate::reference::Reference;
use crate::variant::{CompressedManifest, ExportFormat};

/// What [`Client::push_with`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The digest of the manifest in the registry.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The image id (config digest), the same locally and remotely.
    pub id: Digest,
    /// The local manifest's digest; differs from `digest` when layers were
    /// compressed for the push.
    pub local_digest: Digest,
    /// The pushed manifest's (or index's) media type.
    pub media_type: String,
    /// Each platform's pushed manifest, with its platform: the one image's
    /// (when its config states a platform), or each entry of an index.
    pub platforms: Vec<Descriptor>,
}

/// Where a push puts the manifest it ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Under {
    /// The destination's tag (or digest).
    Name,
    /// Its own digest, in the destination's repository: no tag is set.
    Digest,
}

impl Under {
    /// Where the manifest with `digest` goes for a push to `dest`.
    fn at(self, dest: &Reference, digest: &Digest) -> Reference {
        match self {
            Under::Name => dest.clone(),
            Under::Digest => dest.with_digest(digest.clone()),
        }
    }
}

/// The descriptor of `converted`, the manifest `image` leaves the store
/// as, with its platform; `None` when its config states none.
fn platform_manifest(image: &Image, converted: &CompressedManifest) -> Option<Descriptor> {
    let platform = image.platform()?;
    let media_type = converted.manifest.media_type.as_deref();
    let mut d = Descriptor::new(
        media_type.unwrap_or(MEDIA_TYPE_OCI_MANIFEST),
        converted.digest.clone(),
        converted.bytes.len() as u64,
    );
    d.platform = Some(platform.to_platform());
    Some(d)
}

impl Client {
    /// Pushes the local image `source` (a name or id) as `dest` with its
    /// layers gzip-compressed, as `docker push` does; returns the pushed
    /// manifest's digest. See [`Client::push_with`].
    pub fn push(
        &self,
        store: &Store,
        source: &str,
        dest: &Reference,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Digest, RegistryError> {
        Ok(self
            .push_with(store, source, dest, Compression::Gzip, progress)?
            .digest)
    }

    /// Pushes the local image `source` (a name or id) as `dest`. Its
    /// uncompressed layers are sent compressed with `compression` (the
    /// variant made once, then reused: see
    /// [`Store::manifest_with_compression`]) under a rewritten manifest;
    /// already-compressed layers and `Compression::None` send the stored
    /// bytes, and then the pushed manifest is the stored one.
    pub fn push_with(
        &self,
        store: &Store,
        source: &str,
        dest: &Reference,
        compression: Compression,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Pushed, RegistryError> {
        self.push_as(store, source, dest, &compression.into(), progress)
    }

    /// [`Client::push_with`] for a whole [`ExportFormat`]: the codec, its
    /// level, recompression and Docker's media types (see
    /// [`Store::manifest_for_export`]).
    pub fn push_as(
        &self,
        store: &Store,
        source: &str,
        dest: &Reference,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Pushed, RegistryError> {
        self.push_under(store, source, dest, Under::Name, format, progress)
    }

    /// Pushes the local image `source` into `repository` (its tag or digest,
    /// if any, ignored) under its manifest's digest only, setting no tag:
    /// buildx's `push-by-digest=true`, for builds whose platforms are
    /// joined into one index later (`rbk manifest merge`). A multi-platform
    /// image pushes each platform's manifest and then the index, all by
    /// digest.
    pub fn push_by_digest(
        &self,
        store: &Store,
        source: &str,
        repository: &Reference,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Pushed, RegistryError> {
        self.push_under(store, source, repository, Under::Digest, format, progress)
    }

    fn push_under(
        &self,
        store: &Store,
        source: &str,
        dest: &Reference,
        under: Under,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Pushed, RegistryError> {
        let image = store.resolve_leased(source)?;
        if image.index.is_some() {
            return self.push_index(store, &image, dest, under, format, progress);
        }
        let streamed =
            self.stream_new_layers(store, std::slice::from_ref(&image), dest, format, progress)?;
        let converted = store.manifest_for_export(&image, format)?;
        let media_type = converted
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| MEDIA_TYPE_OCI_MANIFEST.to_string());
        progress(&Progress::Manifest {
            digest: converted.digest.clone(),
        });
        self.push_blobs_with(store, dest, &converted.blobs, &streamed, format, progress)?;
        let at = under.at(dest, &converted.digest);
        let digest = self.put_manifest(&at, &media_type, &converted.bytes, progress)?;
        Ok(Pushed {
            digest,
            size: converted.bytes.len() as u64,
            platforms: platform_manifest(&image, &converted).into_iter().collect(),
            id: image.id,
            local_digest: image.manifest_digest,
            media_type,
        })
    }

    /// Pushes a multi-platform image whole: each platform's image (its
    /// blobs, then its manifest by digest), then the index under `dest`.
    fn push_index(
        &self,
        store: &Store,
        image: &Image,
        dest: &Reference,
        under: Under,
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Pushed, RegistryError> {
        // Every platform's image was leased when `image` was resolved.
        let platforms = store.index_images(image)?;
        let streamed = self.stream_new_layers(store, &platforms, dest, format, progress)?;
        let exported = store.index_for_export(image, format)?;
        progress(&Progress::Manifest {
            digest: exported.digest.clone(),
        });
        let attached = exported.attachments.iter();
        for converted in exported.images.iter().map(|(_, c)| c).chain(attached) {
            self.push_blobs_with(store, dest, &converted.blobs, &streamed, format, progress)?;
            let media_type = converted
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| MEDIA_TYPE_OCI_MANIFEST.to_string());
            let by_digest = dest.with_digest(converted.digest.clone());
            self.put_manifest(&by_digest, &media_type, &converted.bytes, progress)?;
        }
        let platforms = exported
            .images
            .iter()
            .filter_map(|(platform_image, converted)| platform_manifest(platform_image, converted))
            .collect();
        let at = under.at(dest, &exported.digest);
        let digest = self.put_manifest(&at, &exported.media_type, &exported.bytes, progress)?;
        Ok(Pushed {
            digest,
            size: exported.bytes.len() as u64,
            id: image.id.clone(),
            local_digest: image.entry_digest().clone(),
            media_type: exported.media_type.clone(),
            platforms,
        })
    }

    /// Uploads `blobs` (which must be in `store`) to `dest`'s repository,
    /// in parallel, skipping those the registry has and mounting those
    /// another of its repositories is known to have. For artifacts such as
    /// a shared build cache as much as for images.
    pub fn push_blobs(
        &self,
        store: &Store,
        dest: &Reference,
        blobs: &[Descriptor],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        self.push_blobs_with(store, dest, blobs, &[], &Compression::Gzip.into(), progress)
    }

    /// [`Client::push_blobs`], knowing the blobs' layers were compressed
    /// with `compression`: a layer of an image tagged in another repository
    /// of the registry is then mountable through its recorded variant.
    /// Blobs in `streamed` were uploaded by this push already.
    fn push_blobs_with(
        &self,
        store: &Store,
        dest: &Reference,
        blobs: &[Descriptor],
        streamed: &[Digest],
        format: &ExportFormat,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        let s = self.session(dest.domain())?;
        let mut unique: Vec<&Descriptor> = Vec::new();
        for d in blobs {
            if !unique.iter().any(|b| b.digest == d.digest) && !streamed.contains(&d.digest) {
                // Check now: a missing blob must fail before anything is sent.
                store.content.size(&d.digest)?;
                unique.push(d);
            }
        }
        let mounts = mount_sources(store, dest, format);
        self.upload_blobs(&s, store, dest.path(), &unique, &mounts, progress)
    }

    /// Uploads a manifest (or index) under `dest`'s tag (or digest) and
    /// returns its digest; refuses an answer that names another digest.
    /// Its blobs must be in the repository already.
    pub fn put_manifest(
        &self,
        dest: &Reference,
        media_type: &str,
        bytes: &[u8],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Digest, RegistryError> {
        let s = self.session(dest.domain())?;
        let repo = dest.path();
        let digest = Digest::of(bytes);
        let tag_or_digest = match (dest.tag(), dest.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        let path = format!("/v2/{repo}/manifests/{tag_or_digest}");
        let a = self.fetch(
            &s,
            "PUT",
            &path,
            &[("Content-Type", media_type)],
            &Body::Bytes(bytes.to_vec()),
            &push_scopes(repo, None),
            progress,
        )?;
        if a.status != 201 && a.status != 200 {
            return Err(RegistryError::Status {
                registry: s.registry.clone(),
                method: "PUT",
                url: s.url(&path),
                status: a.status,
                message: describe_error_body(a.status, &a.body),
            });
        }
        let claimed = a
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(c) = claimed {
            if c != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: s.registry.clone(),
                    what: format!("the pushed manifest of {}", dest.familiar()),
                    expected: digest,
                    actual: c,
                });
            }
        }
        Ok(digest)
    }

    fn upload_blobs(
        &self,
        s: &Session,
        store: &Store,
        repo: &str,
        blobs: &[&Descriptor],
        mounts: &HashMap<Digest, String>,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        super::for_each_parallel(blobs, self.opts.parallel, |desc| {
            let from = mounts
                .get(&desc.digest)
                .cloned()
                .or_else(|| s.placed_elsewhere(&desc.digest, repo));
            self.upload_blob(s, store, repo, desc, from.as_deref(), progress)?;
            s.placed(&desc.digest, repo);
            Ok(())
        })?;
        Ok(())
    }

    /// Uploads one blob. A PUT that fails after its own retries may have
    /// left a half-written upload behind, which the registry would append
    /// to: the upload is started over once, from a new session.
    pub(super) fn upload_blob(
        &self,
        s: &Session,
        store: &Store,
        repo: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        match self.upload_blob_once(s, store, repo, desc, mount_from, progress) {
            Err(e @ RegistryError::Connect { .. })
            | Err(
                e @ RegistryError::Status {
                    status: 400 | 404 | 500..=599,
                    ..
                },
            ) => {
                progress(&Progress::Retrying {
                    what: format!("upload of {}", desc.digest),
                    attempt: 2,
                    reason: e.to_string(),
                });
                self.upload_blob_once(s, store, repo, desc, mount_from, progress)
            }
            other => other,
        }
    }

    /// HEAD, then mount or POST + monolithic PUT.
    fn upload_blob_once(
        &self,
        s: &Session,
        store: &Store,
        repo: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        let scopes = push_scopes(repo, mount_from);
        let head = format!("/v2/{repo}/blobs/{}", desc.digest);
        let r = self.send(s, "HEAD", &head, &[], &Body::Empty, &scopes, progress)?;
        if r.status() == 200 {
            progress(&Progress::Exists {
                digest: desc.digest.clone(),
            });
            return Ok(());
        }
        let Some(location) = self.start_upload(s, repo, desc, mount_from, &scopes, progress)?
        else {
            return Ok(());
        };
        progress(&Progress::Started {
            digest: desc.digest.clone(),
            size: desc.size,
        });
        // A layer kept only as its snapshot is written out first.
        store.content.ensure(&desc.digest)?;
        let body = Body::File(store.content.path(&desc.digest), &|done| {
            progress(&Progress::Bytes {
                digest: desc.digest.clone(),
                done,
                total: desc.size,
            })
        });
        self.close_upload(s, repo, &location, &desc.digest, &body, &scopes, progress)?;
        progress(&Progress::Done {
            digest: desc.digest.clone(),
        });
        Ok(())
    }

    /// Ends the upload session at `location` as blob `digest` with a PUT of
    /// `body` (its last bytes, or none); the registry checks the digest
    /// against all it got.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn close_upload(
        &self,
        s: &Session,
        repo: &str,
        location: &str,
        digest: &Digest,
        body: &Body,
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let headers: &[(&str, &str)] = match body {
            Body::Empty => &[],
            _ => &[("Content-Type", "application/octet-stream")],
        };
        let r = self.send(s, "PUT", &put, headers, body, scopes, progress)?;
        let status = r.status().as_u16();
        if status == 201 {
            return Ok(());
        }
        Err(RegistryError::Status {
            registry: s.registry.clone(),
            method: "PUT",
            // Not the session's location: it may carry the upload's state.
            url: s.url(&format!("/v2/{repo}/blobs/uploads/")),
            status,
            message: error_message(r),
        })
    }

    /// Starts an upload session (asking the registry to mount the blob from
    /// `mount_from` if given): the location to PUT the blob to, or `None`
    /// when the mount made the upload unnecessary.
    fn start_upload(
        &self,
        s: &Session,
        repo: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        scopes: &[String],
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Option<String>, RegistryError> {
        let uploads = format!("/v2/{repo}/blobs/uploads/");
        let start = match mount_from {
            Some(from) => format!(
                "{uploads}?mount={}&from={}",
                desc.digest,
                super::http::query_escape(from)
            ),
            None => uploads,
        };
        let r = self.send(s, "POST", &start, &[], &Body::Empty, scopes, progress)?;
        let status = r.status().as_u16();
        if let (201, Some(from)) = (status, mount_from) {
            progress(&Progress::Mounted {
                digest: desc.digest.clone(),
                from: from.to_string(),
            });
            return Ok(None);
        }
        accepted_location(s, r, "POST", &start).map(Some)
    }
}

/// The `Location` of a 202 answer (an upload session, where to go on); any
/// other answer is the error of `method` on `url`.
pub(super) fn accepted_location(
    s: &Session,
    r: ureq::http::Response<ureq::Body>,
    method: &'static str,
    url: &str,
) -> Result<String, RegistryError> {
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (status, location) {
        (202, Some(l)) => Ok(l),
        _ => Err(RegistryError::Status {
            registry: s.registry.clone(),
            method,
            url: s.url(url),
            status,
            message: error_message(r),
        }),
    }
}

fn push_scopes(repo: &str, mount_from: Option<&str>) -> Vec<String> {
    let mut v = vec![format!("repository:{repo}:pull,push")];
    if let Some(from) = mount_from {
        v.push(format!("repository:{from}:pull"));
    }
    v
}

/// For each blob, another repository of `dest`'s registry that an image in
/// the store was tagged in (so pulled from or pushed to) and that has it:
/// the registry can then link the blob instead of receiving it again. An
/// uncompressed layer was pushed as its `compression` variant, so the
/// variant (when one is recorded) counts too.
fn mount_sources(
    store: &Store,
    dest: &Reference,
    format: &ExportFormat,
) -> HashMap<Digest, String> {
    let mut out = remote_mount_sources(store, dest);
    let Ok(tagged) = store.tagged_manifests() else {
        return out;
    };
    for (manifest_digest, tags) in tagged {
        let Some(other) = tags
            .iter()
            .find(|t| t.domain() == dest.domain() && t.path() != dest.path())
        else {
            continue;
        };
        let Ok(data) = store.content.read(&manifest_digest) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&data) else {
            continue;
        };
        for d in m.blobs() {
            out.entry(d.digest.clone())
                .or_insert_with(|| other.path().to_string());
            if let Ok(Some(v)) = store.cached_layer_variant(d, format) {
                out.entry(v.digest)
                    .or_insert_with(|| other.path().to_string());
            }
        }
    }
    out
}

/// For each blob kept only in a repository of `dest`'s registry (a layer a
/// build cache served, see [`crate::content::remote`]), that repository:
/// the registry links it, and its bytes never come here.
fn remote_mount_sources(store: &Store, dest: &Reference) -> HashMap<Digest, String> {
    use crate::content::remote::{self, Place};
    let mut out = HashMap::new();
    for d in remote::list(&store.content) {
        let Some(source) = remote::source(&store.content, &d) else {
            continue;
        };
        let Place::Registry { repository } = source.place else {
            continue;
        };
        let Some((domain, path)) = repository.split_once('/') else {
            continue;
        };
        if domain == dest.domain() && path != dest.path() && source.blob.digest == d {
            out.insert(d, path.to_string());
        }
    }
    out
}
