//! `rbk manifest merge`: the platform images that several builds (the
//! shards of one build, each on its own machine) pushed by digest, joined
//! into one OCI index per tag. Only their metadata files and the small
//! manifests are read: no layer is downloaded.
//!
//! Each metadata file (`rbk build --metadata-file`) holds one entry per
//! target (or, for a one-image build, the entry itself). An entry's
//! platforms are its `containerimage.descriptors`, else its
//! `containerimage.descriptor`; a descriptor of an index stands for each
//! platform the index lists, and the index is taken over the list when
//! there is one. Attestation manifests listed beside a platform's image
//! go into the merged index after the images (pushed to a registry; a merge
//! in the store keeps the images only). Its tags are `rbk.tags`, else
//! `image.name`.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rbk_store::images::is_index_media_type;
use rbk_store::oci::{Descriptor, Index, PlatformSpec, MEDIA_TYPE_OCI_INDEX};
use rbk_store::registry::Client;
use rbk_store::{Digest, Image, Reference, Store};
use serde_json::Value;

/// One platform image a metadata file names, and where it was named.
#[derive(Debug, Clone)]
struct Member {
    /// The manifest (or, until expanded, an index), with its platform.
    desc: Descriptor,
    /// The metadata file.
    file: PathBuf,
    /// The target's key in it (empty for a one-image build's file).
    target: String,
}

impl Member {
    /// Where it was named, for errors.
    fn origin(&self) -> String {
        origin(&self.file, &self.target)
    }

    /// Its platform, `os/arch[/variant]`.
    fn platform(&self) -> Option<String> {
        let p = self.desc.platform.as_ref()?;
        Some(PlatformSpec::of_platform(p).to_string())
    }
}

/// Where the platform images are: pushed to registries, or in the store.
pub enum Source<'a> {
    /// Each in its tag's repository.
    Registry(&'a Client),
    /// In the local store.
    Store(&'a Store),
}

/// Reads `files` and merges their platform images into one index per tag:
/// pushed to the registry (`Source::Registry`) or committed to the store;
/// with `dry_run` only checked and described. Prints each index's name and
/// digest.
pub fn merge(files: &[PathBuf], source: &Source<'_>, dry_run: bool) -> Result<()> {
    let mut groups: BTreeMap<Reference, Vec<Member>> = BTreeMap::new();
    for file in files {
        for (tags, members) in read_file(file)? {
            for t in tags {
                groups.entry(t).or_default().extend(members.iter().cloned());
            }
        }
    }
    if groups.is_empty() {
        bail!("no image to merge in {}", names(files));
    }
    let mut resolved = Resolved::new();
    for (tag, members) in &groups {
        let mut found = Vec::new();
        for m in members {
            found.extend(resolve_once(source, tag, m, &mut resolved)?);
        }
        let (attestations, found): (Vec<_>, Vec<_>) = found
            .into_iter()
            .partition(|(m, _)| m.desc.attests().is_some());
        let found = one_per_platform(tag, found)?;
        let mut manifests: Vec<Descriptor> = found.iter().map(|(m, _)| m.desc.clone()).collect();
        manifests.extend(attestations_of(&found, &attestations));
        let index = Index {
            manifests,
            ..Index::default()
        };
        let bytes = serde_json::to_vec(&index)?;
        let digest = Digest::of(&bytes);
        let platforms: Vec<String> = found.iter().filter_map(|(m, _)| m.platform()).collect();
        eprintln!("{}: {}", tag.familiar(), platforms.join(", "));
        if !dry_run {
            publish(source, tag, &bytes, &found, &digest)?;
        }
        println!("{} {digest}", tag.familiar());
    }
    Ok(())
}

/// A metadata file's entry, for errors: `a.json` or `a.json (target app)`.
fn origin(file: &Path, target: &str) -> String {
    match target {
        "" => file.display().to_string(),
        t => format!("{} (target {t})", file.display()),
    }
}

fn names(files: &[PathBuf]) -> String {
    let v: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    v.join(", ")
}

/// Pushes (or commits) the index of `found` as `tag`; its digest must be
/// `digest`, the one computed (so a dry run says what a run makes).
fn publish(
    source: &Source<'_>,
    tag: &Reference,
    bytes: &[u8],
    found: &[(Member, Option<Image>)],
    digest: &Digest,
) -> Result<()> {
    let made = match source {
        Source::Registry(client) => client
            .put_manifest(tag, MEDIA_TYPE_OCI_INDEX, bytes, &|_| {})
            .with_context(|| format!("cannot push the index {}", tag.familiar()))?,
        Source::Store(store) => {
            let images: Vec<Image> = found.iter().filter_map(|(_, i)| i.clone()).collect();
            let index = store
                .commit_index(&images, std::slice::from_ref(tag), &BTreeMap::new())
                .with_context(|| format!("cannot make the index {}", tag.familiar()))?;
            index.entry_digest().clone()
        }
    };
    if &made != digest {
        bail!(
            "the index {} came out as {made}, not the {digest} computed",
            tag.familiar()
        );
    }
    Ok(())
}

/// The members sorted by platform, one each: a platform named twice with
/// the same digest counts once; with different digests it is an error
/// naming both places.
fn one_per_platform(
    tag: &Reference,
    found: Vec<(Member, Option<Image>)>,
) -> Result<Vec<(Member, Option<Image>)>> {
    let mut by_platform: BTreeMap<String, (Member, Option<Image>)> = BTreeMap::new();
    for (m, image) in found {
        let Some(p) = m.platform() else {
            bail!(
                "{}: image {} states no platform; an index needs one per image",
                m.origin(),
                m.desc.digest
            );
        };
        match by_platform.get(&p) {
            Some((first, _)) if first.desc.digest != m.desc.digest => bail!(
                "{}: platform {p} is {} in {} and {} in {}",
                tag.familiar(),
                first.desc.digest,
                first.origin(),
                m.desc.digest,
                m.origin()
            ),
            Some(_) => {}
            None => {
                by_platform.insert(p, (m, image));
            }
        }
    }
    Ok(by_platform.into_values().collect())
}

/// The attestation manifests among `attestations` about the images of
/// `found`, each once, in the order of the images they are about.
fn attestations_of(
    found: &[(Member, Option<Image>)],
    attestations: &[(Member, Option<Image>)],
) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = Vec::new();
    for (image, _) in found {
        for (a, _) in attestations {
            let about = a.desc.attests();
            if about.as_ref() == Some(&image.desc.digest)
                && !out.iter().any(|d| d.digest == a.desc.digest)
            {
                out.push(a.desc.clone());
            }
        }
    }
    out
}

/// What [`resolve`] found, by where it looked (the repository, or none for
/// the store), the member's digest and its platform.
type Resolved = HashMap<(String, Digest, Option<String>), Vec<(Descriptor, Option<Image>)>>;

/// [`resolve`], once for each member in each repository: a target with
/// several tags in one repository (or in the store) is looked up once.
fn resolve_once(
    source: &Source<'_>,
    tag: &Reference,
    m: &Member,
    resolved: &mut Resolved,
) -> Result<Vec<(Member, Option<Image>)>> {
    let repository = match source {
        Source::Registry(_) => tag.repository(),
        Source::Store(_) => String::new(),
    };
    let key = (repository, m.desc.digest.clone(), m.platform());
    let found = match resolved.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(resolve(source, tag, m)?),
    };
    Ok(found
        .iter()
        .map(|(desc, image)| (with_desc(m, desc.clone()), image.clone()))
        .collect())
}

/// `m` found where `source` keeps it (for a registry, in `tag`'s
/// repository): its platform images, each with its descriptor as found
/// (and, from the store, the image).
fn resolve(
    source: &Source<'_>,
    tag: &Reference,
    m: &Member,
) -> Result<Vec<(Descriptor, Option<Image>)>> {
    match source {
        Source::Registry(client) => {
            let at = tag.with_digest(m.desc.digest.clone());
            let (bytes, media_type, digest) =
                client.get_manifest(&at, &|_| {}).with_context(|| {
                    format!(
                        "{}: manifest {} is not in {}",
                        m.origin(),
                        m.desc.digest,
                        tag.familiar_repository()
                    )
                })?;
            if !is_index_media_type(&media_type) {
                let mut desc = Descriptor::new(&media_type, digest, bytes.len() as u64);
                desc.platform = m.desc.platform.clone();
                return Ok(vec![(desc, None)]);
            }
            let index: Index = serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: index {digest} is not JSON", m.origin()))?;
            // Its attestations (BuildKit's, or rbk's provenance) go along.
            let attestations = index.manifests.iter().filter(|d| d.attests().is_some());
            Ok(platforms_of(&index)
                .chain(attestations.cloned())
                .map(|d| (d, None))
                .collect())
        }
        Source::Store(store) => {
            let image = store
                .image_by_entry(&m.desc.digest, Vec::new(), None)
                .with_context(|| {
                    format!(
                        "{}: image {} is not in the store (give --push to merge in the registry)",
                        m.origin(),
                        m.desc.digest
                    )
                })?;
            let mut out = Vec::new();
            for i in store.index_images(&image)? {
                let desc = local_descriptor(store, &i)?;
                out.push((desc, Some(i)));
            }
            Ok(out)
        }
    }
}

fn with_desc(m: &Member, desc: Descriptor) -> Member {
    Member {
        desc,
        file: m.file.clone(),
        target: m.target.clone(),
    }
}

/// An index's platform images (not its attestations), with their platform.
fn platforms_of(index: &Index) -> impl Iterator<Item = Descriptor> + '_ {
    index.images().map(|d| {
        let mut desc = Descriptor::new(&d.media_type, d.digest.clone(), d.size);
        desc.platform = d.platform.clone();
        desc
    })
}

/// A stored image's index entry: its manifest with its platform.
fn local_descriptor(store: &Store, image: &Image) -> Result<Descriptor> {
    let size = store.content.size(&image.manifest_digest)?;
    let media_type = image
        .manifest
        .media_type
        .as_deref()
        .unwrap_or(rbk_store::oci::MEDIA_TYPE_OCI_MANIFEST);
    let mut desc = Descriptor::new(media_type, image.manifest_digest.clone(), size);
    desc.platform = image.platform().map(|p| p.to_platform());
    Ok(desc)
}

/// The entries of metadata file `file`: each target's tags and platform
/// images.
fn read_file(file: &Path) -> Result<Vec<(Vec<Reference>, Vec<Member>)>> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a metadata file (not JSON)", file.display()))?;
    let Some(map) = doc.as_object() else {
        bail!(
            "{} is not a metadata file (not a JSON object)",
            file.display()
        );
    };
    if map.contains_key("containerimage.digest") {
        return Ok(vec![read_entry(file, "", &doc)?]);
    }
    map.iter()
        .filter(|(_, v)| v.get("containerimage.digest").is_some())
        .map(|(target, v)| read_entry(file, target, v))
        .collect()
}

/// One entry of a metadata file.
fn read_entry(file: &Path, target: &str, v: &Value) -> Result<(Vec<Reference>, Vec<Member>)> {
    let origin = origin(file, target);
    let tags: Vec<String> = match (v.get("rbk.tags"), v.get("image.name")) {
        (Some(tags), _) => serde_json::from_value(tags.clone())
            .with_context(|| format!("{origin}: rbk.tags is not a list of names"))?,
        (None, Some(Value::String(names))) => names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    if tags.is_empty() {
        bail!("{origin}: no name to merge into (rbk.tags or image.name)");
    }
    let tags = tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("{origin}: name {t:?}")))
        .collect::<Result<Vec<_>>>()?;
    let descs: Vec<Descriptor> = match v.get("containerimage.descriptors") {
        Some(list) => serde_json::from_value(list.clone())
            .with_context(|| format!("{origin}: containerimage.descriptors"))?,
        None => Vec::new(),
    };
    let top: Option<Descriptor> = match v.get("containerimage.descriptor") {
        Some(d) => Some(
            serde_json::from_value(d.clone())
                .with_context(|| format!("{origin}: containerimage.descriptor"))?,
        ),
        None => None,
    };
    // An index pushed (an image with its attestations, or several
    // platforms) stands for everything it lists.
    let descs = match top {
        Some(d) if is_index_media_type(&d.media_type) => vec![d],
        _ if !descs.is_empty() => descs,
        Some(d) => vec![d],
        None => bail!("{origin}: no containerimage.descriptor"),
    };
    let members = descs
        .into_iter()
        .map(|desc| Member {
            desc,
            file: file.to_path_buf(),
            target: target.to_string(),
        })
        .collect();
    Ok((tags, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(platform: &str, digest: &Digest, file: &str) -> (Member, Option<Image>) {
        let mut desc = Descriptor::new(rbk_store::oci::MEDIA_TYPE_OCI_MANIFEST, digest.clone(), 1);
        desc.platform = platform
            .parse::<PlatformSpec>()
            .ok()
            .map(|p| p.to_platform());
        let m = Member {
            desc,
            file: PathBuf::from(file),
            target: "app".to_string(),
        };
        (m, None)
    }

    #[test]
    fn platforms_are_sorted_and_deduplicated() {
        let tag = Reference::parse("r.io/app:1").unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let found = vec![
            member("linux/arm64", &b, "b.json"),
            member("linux/amd64", &a, "a.json"),
            member("linux/arm64", &b, "c.json"),
        ];
        let out = one_per_platform(&tag, found).unwrap();
        let platforms: Vec<_> = out.iter().filter_map(|(m, _)| m.platform()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    }

    #[test]
    fn a_platform_with_two_digests_names_both_files() {
        let tag = Reference::parse("r.io/app:1").unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let found = vec![
            member("linux/amd64", &a, "a.json"),
            member("linux/amd64", &b, "b.json"),
        ];
        let e = one_per_platform(&tag, found).unwrap_err().to_string();
        for want in ["a.json", "b.json", a.as_str(), b.as_str(), "linux/amd64"] {
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn entries_take_rbk_tags_then_image_name() {
        let d = Digest::of(b"x");
        let v = serde_json::json!({
            "containerimage.digest": d.to_string(),
            "containerimage.descriptor": {
                "mediaType": rbk_store::oci::MEDIA_TYPE_OCI_MANIFEST,
                "digest": d.to_string(), "size": 3,
                "platform": {"architecture": "arm64", "os": "linux"},
            },
            "image.name": "r.io/app",
            "rbk.tags": ["r.io/app:1", "r.io/app:latest"],
        });
        let (tags, members) = read_entry(Path::new("m.json"), "app", &v).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(members[0].platform().as_deref(), Some("linux/arm64"));
        let e = read_entry(Path::new("m.json"), "app", &serde_json::json!({}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.json (target app)"), "{e}");
    }
}
