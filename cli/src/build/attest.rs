//! Attestations attached to the images a build made, as buildx attaches
//! them: for each platform's image an attestation manifest of in-toto
//! statements (SLSA provenance, an SPDX SBOM) about that image's manifest,
//! listed beside it in an image index that the image's tags then name.
//! Exports re-encode layers and so change the manifest's digest; the store
//! makes the attestations anew for the manifest that leaves
//! (`Store::rebind_attachment`), so a pushed or archived image's
//! attestations always name what was pushed.
//!
//! Provenance is on by default (`mode=min`) for images the build pushes or
//! exports as an OCI archive, as buildx; an SBOM only when asked.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use rbk_attest::manifest::{attach, Attachment as Made};
use rbk_attest::provenance::{self, BuildRecord, ConfigSource, Dependency, Step};
use rbk_attest::statement::{image_purl, Statement, Subject};
use rbk_compiler::graph::{ImageOutput, Op, VertexId};
use rbk_compiler::BuildGraph;
use rbk_scheduler::{BuildSummary, BuiltImage};
use rbk_store::attested::Attachment;
use rbk_store::images::{Image, Store};
use rbk_store::oci::{Descriptor, PlatformSpec};
use rbk_store::Reference;

use super::attest_spec::{ProvenanceSpec, Wanted};
use super::remote::Fetched;
use super::settings::BuildSettings;
use super::targets::TargetOptions;
use crate::outputs::Output;

/// What the attestations of a build are made from.
pub(crate) struct Attester<'a> {
    pub(crate) root: &'a Path,
    pub(crate) store: &'a Store,
    pub(crate) graph: &'a BuildGraph,
    pub(crate) settings: &'a BuildSettings,
    pub(crate) targets: &'a TargetOptions,
    /// A context fetched from a URL.
    pub(crate) remote: Option<&'a Fetched>,
    /// Unix seconds the build started.
    pub(crate) started: i64,
}

/// The attestations one image gets.
struct Wants {
    provenance: Option<ProvenanceSpec>,
    sbom: bool,
}

impl Attester<'_> {
    /// Attaches the attestations each image of `summary` gets, and points
    /// its entry at the index that holds them.
    pub(crate) fn attach_all(&self, summary: &mut BuildSummary) -> Result<()> {
        let epoch = crate::env::source_date_epoch();
        let invocation = self.invocation_id(epoch);
        for built in &mut summary.images {
            let wants = self.wants(&built.name);
            if wants.provenance.is_none() && !wants.sbom {
                continue;
            }
            self.attach_one(built, &wants, &invocation, epoch)
                .with_context(|| format!("cannot attest {}", built.name))?;
        }
        Ok(())
    }

    fn wants(&self, name: &str) -> Wants {
        let spec = &self.settings.attest;
        let provenance = match &spec.provenance {
            Wanted::On(p) => Some(p.clone()),
            Wanted::Off => None,
            Wanted::Default => (self.exported(name) && !crate::env::no_default_attestations())
                .then(ProvenanceSpec::default),
        };
        Wants {
            provenance,
            sbom: matches!(spec.sbom, Wanted::On(())),
        }
    }

    /// Whether image `name` gets provenance by default: it leaves the
    /// store (pushed, also by digest as a shard pushes, or written as an
    /// OCI archive) and no output asks Docker's media types for it
    /// (`type=docker`, `oci-mediatypes=false`), which attestations would
    /// turn into OCI's; buildx's docker exporter has none by default either.
    fn exported(&self, name: &str) -> bool {
        let own = self
            .targets
            .outputs
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, o)| o);
        let outputs: Vec<&Output> = self.settings.outputs.iter().chain(own).collect();
        let docker = outputs
            .iter()
            .any(|o| o.docker_media_types() || matches!(o, Output::Archive { kind: "docker", .. }));
        let leaves = self.settings.push_by_digest.iter().any(|n| n == name)
            || outputs
                .iter()
                .any(|o| o.pushes() || matches!(o, Output::Archive { kind: "oci", .. }));
        leaves && !docker
    }

    /// One id for every image of this invocation: made from the inputs
    /// when `SOURCE_DATE_EPOCH` makes the build reproducible, else unique.
    fn invocation_id(&self, epoch: Option<i64>) -> String {
        let mut parts: Vec<String> = self
            .graph
            .images
            .iter()
            .map(|i| format!("{}\0{}\0{}", i.name, i.platform, i.file))
            .collect();
        parts.extend(self.settings.input.build_args.iter().cloned());
        match epoch {
            Some(e) => parts.push(e.to_string()),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                parts.push(format!("{}-{nanos}", std::process::id()));
            }
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        provenance::invocation_id(&parts)
    }

    fn attach_one(
        &self,
        built: &mut BuiltImage,
        wants: &Wants,
        invocation: &str,
        epoch: Option<i64>,
    ) -> Result<()> {
        let store = self.store;
        let image = store.image_by_entry(&built.manifest, Vec::new(), None)?;
        let platforms = store.index_images(&image)?;
        let mut attachments = Vec::new();
        for p in &platforms {
            let subjects = subjects(built, p);
            let mut statements = Vec::new();
            if let Some(spec) = &wants.provenance {
                let record = self.record(built, p, spec, invocation, epoch)?;
                statements.push(record.statement(subjects.clone()));
            }
            if wants.sbom {
                let created = epoch.unwrap_or_else(crate::cmd_sbom::now);
                let doc = crate::cmd_sbom::document(self.root, store, p, &built.name, created)?;
                statements.push(Statement::new(
                    subjects,
                    rbk_attest::spdx::PREDICATE_TYPE,
                    doc,
                ));
            }
            attachments.push(to_store(attach(p.manifest_digest.as_str(), &statements))?);
        }
        let tags = built
            .tags
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let annotations = image
            .index
            .as_ref()
            .map(|i| i.index.annotations.clone())
            .unwrap_or_default();
        let index = store.commit_attested_index(&platforms, &attachments, &tags, &annotations)?;
        let digest = index.entry_digest().clone();
        if image.index.is_some() {
            // A multi-platform image is known by its index's digest.
            built.id = digest.clone();
        }
        built.manifest = digest;
        Ok(())
    }

    /// The provenance of platform image `image` of `built`.
    fn record(
        &self,
        built: &BuiltImage,
        image: &Image,
        spec: &ProvenanceSpec,
        invocation: &str,
        epoch: Option<i64>,
    ) -> Result<BuildRecord> {
        let platform = image.platform().map(|p| p.to_string()).unwrap_or_default();
        let output = self
            .graph
            .images
            .iter()
            .find(|i| i.name == built.name && (i.platform == platform || platform.is_empty()))
            .with_context(|| format!("no target {} for {platform}", built.name))?;
        let steps = self.graph.ancestors(output.vertex);
        let max = spec.mode == provenance::Mode::Max;
        let network_none = self.settings.options.network == rbk_runtime::sandbox::NetworkMode::None;
        Ok(BuildRecord {
            mode: spec.mode,
            builder_id: spec.builder_id.clone(),
            config: self.config_source(output),
            args: self.args(),
            locals: match self.remote {
                Some(_) => Vec::new(),
                None => vec!["context".into(), "dockerfile".into()],
            },
            secrets: self
                .targets
                .secrets
                .iter()
                .map(|(id, _)| id.clone())
                .collect(),
            ssh: self.targets.ssh.keys().cloned().collect(),
            builder_platform: PlatformSpec::host().to_string(),
            dependencies: self.dependencies(&steps),
            steps: if max {
                graph_steps(self.graph, &steps)
            } else {
                Vec::new()
            },
            dockerfile: max
                .then(|| std::fs::read_to_string(&output.file).ok())
                .flatten(),
            invocation_id: invocation.to_string(),
            started: epoch.unwrap_or(self.started),
            finished: epoch.unwrap_or_else(crate::cmd_sbom::now),
            hermetic: hermetic(self.graph, &steps, network_none),
            reproducible: epoch.is_some(),
        })
    }

    /// Where the Dockerfile came from: the fetched URL, or the context
    /// (a fetched context is a local directory by now, so the Dockerfile's
    /// path is relative to it either way).
    fn config_source(&self, output: &ImageOutput) -> ConfigSource {
        let file = Path::new(&output.file);
        let path = file.strip_prefix(&self.settings.input.path).unwrap_or(file);
        let path = path.display().to_string();
        match self.remote {
            Some(Fetched { uri, digest, .. }) if rbk_scheduler::fileop::git::is_git_url(uri) => {
                ConfigSource::Git {
                    uri: uri.clone(),
                    commit: digest
                        .split_once(':')
                        .map_or(digest.as_str(), |(_, h)| h)
                        .into(),
                    path,
                }
            }
            Some(Fetched { uri, digest, .. }) => ConfigSource::Url {
                uri: uri.clone(),
                digest: digest.clone(),
                path,
            },
            None => ConfigSource::Local { path },
        }
    }

    /// The frontend's arguments as BuildKit records them.
    fn args(&self) -> BTreeMap<String, String> {
        let input = &self.settings.input;
        let mut args = BTreeMap::new();
        for a in &input.build_args {
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (a.clone(), crate::env::text(a).unwrap_or_default()),
            };
            args.insert(format!("build-arg:{k}"), v);
        }
        for l in &input.labels {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            args.insert(format!("label:{k}"), v.to_string());
        }
        if let Some(t) = &input.target {
            args.insert("target".into(), t.clone());
        }
        if let Some(p) = &input.platform {
            args.insert("platform".into(), p.clone());
        }
        args
    }

    /// The base images, repositories and URLs the steps `steps` read.
    fn dependencies(&self, steps: &[VertexId]) -> Vec<Dependency> {
        let mut deps = Vec::new();
        if let Some(f) = self.remote {
            deps.push(Dependency::new(f.uri.clone(), &f.digest));
        }
        for &v in steps {
            match &self.graph.graph[v].op {
                Op::Source { image, platform } if image != "scratch" => {
                    if let Ok(found) = self.store.resolve(image) {
                        let purl = image_purl(image, Some(platform));
                        deps.push(Dependency::new(purl, found.entry_digest().as_str()));
                    }
                }
                Op::File(f) if f.add => deps.extend(remote_sources(f)),
                _ => {}
            }
        }
        deps
    }
}

/// The URLs an `ADD` fetched that the graph pins: git repositories at the
/// commit their ref names now (what the step's key holds), and URLs with a
/// `--checksum`.
fn remote_sources(f: &rbk_compiler::graph::FileOp) -> Vec<Dependency> {
    use rbk_scheduler::fileop::git::{self, FetchOptions, GitSource};
    let mut deps = Vec::new();
    for s in &f.sources {
        if git::is_git_url(s) {
            let commit = GitSource::parse(s)
                .ok()
                .and_then(|src| git::resolve_commit(&src, &FetchOptions::default()).ok());
            if let Some(c) = commit {
                let algo = if c.len() == 64 { "sha256" } else { "sha1" };
                deps.push(Dependency::new(s.clone(), &format!("{algo}:{c}")));
            }
        } else if s.starts_with("https://") || s.starts_with("http://") {
            if let Some(sum) = &f.checksum {
                deps.push(Dependency::new(s.clone(), sum));
            }
        }
    }
    deps
}

/// `mode=max`'s steps: each vertex with the ids of those it reads.
fn graph_steps(graph: &BuildGraph, steps: &[VertexId]) -> Vec<Step> {
    let id = |v: VertexId| {
        steps
            .iter()
            .position(|s| *s == v)
            .map(|i| format!("step{i}"))
    };
    steps
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let vertex = &graph.graph[v];
            Step {
                id: format!("step{i}"),
                created_by: vertex.created_by.clone(),
                inputs: vertex
                    .parent
                    .iter()
                    .chain(&vertex.inputs)
                    .filter_map(|&p| id(p))
                    .collect(),
            }
        })
        .collect()
}

/// Whether no RUN among `steps` could reach a network.
fn hermetic(graph: &BuildGraph, steps: &[VertexId], default_none: bool) -> bool {
    use rbk_compiler::graph::Network;
    steps.iter().all(|&v| match &graph.graph[v].op {
        Op::Exec(e) => match e.network {
            Network::None => true,
            Network::Default => default_none,
            Network::Host => false,
        },
        _ => true,
    })
}

/// The subjects of the statements about platform image `p` of `built`:
/// one per name, as BuildKit names them.
fn subjects(built: &BuiltImage, p: &Image) -> Vec<Subject> {
    let platform = p.platform().map(|p| p.to_string());
    let digest = p.manifest_digest.as_str();
    let names: Vec<&str> = match built.tags.is_empty() {
        true => vec![built.name.as_str()],
        false => built.tags.iter().map(String::as_str).collect(),
    };
    names
        .into_iter()
        .map(|n| Subject::sha256(image_purl(n, platform.as_deref()), digest))
        .collect()
}

/// The attestation manifest made by rbk-attest, as the store takes it.
fn to_store(made: Made) -> Result<Attachment> {
    let descriptor: Descriptor =
        serde_json::from_value(made.index_entry).context("attestation manifest descriptor")?;
    // The store checks the manifest's bytes against the descriptor.
    Ok(Attachment {
        descriptor,
        manifest: made.manifest.bytes,
        blobs: made.blobs.into_iter().map(|b| b.bytes).collect(),
    })
}
