//! Base images for the compiler: from the store, pulled first when
//! `--pull` says so; and, when one cannot be had, the error that shows
//! where it is named.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use rbk_compiler::lower::{BaseImage, ImageResolver};
use rbk_compiler::platform::Platform;
use rbk_scheduler::step::from::BaseImages;
use rbk_store::images::Store;
use rbk_store::registry::{Client, PlatformSpec, RegistryError, RegistryOptions};
use rbk_store::Reference;

use super::args::PullPolicy;
use super::compile::StoreResolver;

/// The registry client, made when first needed.
pub(crate) struct LazyClient<'a> {
    options: &'a RegistryOptions,
    client: std::sync::OnceLock<Result<Arc<Client>, Arc<RegistryError>>>,
}

impl<'a> LazyClient<'a> {
    /// A client with `options`, not made yet.
    pub(crate) fn new(options: &'a RegistryOptions) -> Self {
        LazyClient {
            options,
            client: std::sync::OnceLock::new(),
        }
    }
}

impl LazyClient<'_> {
    pub(crate) fn get(&self) -> Result<Arc<Client>> {
        self.client
            .get_or_init(|| {
                Client::new(self.options.clone())
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
            .map_err(anyhow::Error::from)
    }
}

/// Base images come from the store, pulled first when `--pull` says so.
pub(crate) struct PullingResolver<'a> {
    store: &'a Store,
    bases: &'a BaseImages<'a>,
    policy: PullPolicy,
    client: &'a LazyClient<'a>,
    /// Images pulled (or tried) in this build, by (name, platform), with
    /// the failure if any.
    tried: Mutex<BTreeMap<(String, String), Option<String>>>,
}

impl<'a> PullingResolver<'a> {
    /// Resolves from `store`'s `bases`, pulling by `policy` with `client`.
    pub(crate) fn new(
        store: &'a Store,
        bases: &'a BaseImages<'a>,
        policy: PullPolicy,
        client: &'a LazyClient<'a>,
    ) -> Self {
        PullingResolver {
            store,
            bases,
            policy,
            client,
            tried: Mutex::new(BTreeMap::new()),
        }
    }
}

impl PullingResolver<'_> {
    fn pull(&self, image: &str, platform: &Platform) {
        let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        let key = (image.to_string(), platform.to_string());
        if tried.contains_key(&key) {
            return;
        }
        let outcome = self
            .try_pull(image, platform)
            .err()
            .map(|e| format!("{e:#}"));
        tried.insert(key, outcome);
        // Whatever was resolved before the pull is stale now.
        self.bases.forget(image);
    }

    fn try_pull(&self, image: &str, platform: &Platform) -> Result<()> {
        let client = self.client.get()?;
        let reference = Reference::parse(image)?;
        let spec: PlatformSpec = platform.to_string().parse()?;
        eprintln!("pulling {image} ({spec})");
        let report = client.pull(self.store, &reference, Some(&spec), &|_| {})?;
        eprintln!(
            "pulled {image}: {} ({} blob{} downloaded)",
            report.image.manifest_digest,
            report.downloaded.len(),
            if report.downloaded.len() == 1 {
                ""
            } else {
                "s"
            }
        );
        Ok(())
    }

    /// The pulls that failed, as (image, why), for images the store still
    /// lacks (or all failures under `--pull=always`).
    fn failures(&self) -> Vec<(String, String)> {
        let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
        tried
            .iter()
            .filter_map(|((image, platform), err)| {
                let err = err.as_ref()?;
                if let Err(missing) = self.bases.resolve(image, platform) {
                    // In the store without this platform, or not at all.
                    let lacks_platform = matches!(&missing,
                        rbk_scheduler::backend::BackendError::Store(e)
                            if matches!(**e, rbk_store::StoreError::PlatformNotInImage { .. }));
                    Some((
                        image.clone(),
                        if lacks_platform {
                            format!("base {missing}, and it cannot be pulled: {err}")
                        } else {
                            format!(
                                "base image {} is not in the store and cannot be pulled: {err}",
                                resolved_name(image)
                            )
                        },
                    ))
                } else if self.policy == PullPolicy::Always {
                    Some((
                        image.clone(),
                        format!("cannot pull base image {image} (--pull=always): {err}"),
                    ))
                } else {
                    None
                }
            })
            .collect()
    }
}

impl ImageResolver for PullingResolver<'_> {
    fn resolve(&self, image: &str, platform: &Platform) -> Option<BaseImage> {
        match self.policy {
            PullPolicy::Always => self.pull(image, platform),
            PullPolicy::Missing if self.bases.resolve(image, &platform.to_string()).is_err() => {
                self.pull(image, platform)
            }
            _ => {}
        }
        StoreResolver(self.bases).resolve(image, platform)
    }
}

/// Every base image resolved (pulled when asked), or one error saying,
/// for each that is not, where it is used and what the store has like it.
pub(crate) fn check_bases(
    resolver: &PullingResolver<'_>,
    graph: &rbk_compiler::BuildGraph,
    inputs: &[rbk_compiler::Input],
    store: &Store,
) -> Result<()> {
    let failures = resolver.failures();
    if failures.is_empty() {
        return Ok(());
    }
    let said: Vec<String> = failures
        .iter()
        .map(|(image, why)| base_failure(graph, inputs, store, image, why))
        .collect();
    bail!("{}", said.join("\n"))
}

/// `busybox:latest` as the registry sees it: `busybox:latest
/// (docker.io/library/busybox:latest)`; other names as they are.
fn resolved_name(image: &str) -> String {
    match Reference::parse(image) {
        Ok(r) if r.familiar_repository() != r.repository() => {
            let tag = r.tag().map(|t| format!(":{t}")).unwrap_or_default();
            format!("{image} ({}{tag})", r.repository())
        }
        _ => image.to_string(),
    }
}

/// A base image that could not be had, said at the FROM that names it
/// (file, line, column, caret), with the stored images of a similar name.
fn base_failure(
    graph: &rbk_compiler::BuildGraph,
    inputs: &[rbk_compiler::Input],
    store: &Store,
    image: &str,
    why: &str,
) -> String {
    let mut said = why.to_string();
    let origin = graph.graph.node_indices().find_map(|id| {
        let v = graph.vertex(id);
        match &v.op {
            rbk_compiler::graph::Op::Source { image: i, .. } if i == image => v.origins.first(),
            _ => None,
        }
    });
    if let Some(o) = origin.filter(|o| o.line > 0) {
        if let Some(input) = inputs.iter().find(|i| i.file == o.file) {
            let line = input.source.lines().nth(o.line as usize - 1).unwrap_or("");
            // The image word: the first after FROM that is not a flag.
            let col = line
                .split_whitespace()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .and_then(|w| line.find(w))
                .map_or(1, |b| line[..b].chars().count() as u32 + 1);
            let e = rbk_compiler::ParseError::new(rbk_compiler::Span::new(o.line, col), why);
            said = e.render(&o.file, &input.source);
        }
    }
    let similar = similar_images(store, image);
    if !similar.is_empty() {
        said.push_str(&format!(
            "\nthe store has images of a similar name: {} (write that name in FROM, or `rbk tag {} {image}`)",
            similar.join(", "),
            similar[0]
        ));
    }
    said
}

/// Stored image names whose last path component is `image`'s, or close to
/// it (a typo).
fn similar_images(store: &Store, image: &str) -> Vec<String> {
    let Ok(want) = Reference::parse(image) else {
        return Vec::new();
    };
    let last = |r: &Reference| r.path().rsplit('/').next().unwrap_or("").to_string();
    let want_last = last(&want);
    let mut names: Vec<String> = Vec::new();
    for img in store.list().unwrap_or_default() {
        for t in &img.tags {
            let l = last(t);
            let close = l == want_last
                || rbk_compiler::suggest::did_you_mean(&want_last, [l.as_str()]).is_some();
            if close && t.to_string() != image {
                names.push(t.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names.truncate(5);
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_hub_names_are_shown_as_the_registry_sees_them() {
        assert_eq!(
            super::resolved_name("busybox:latest"),
            "busybox:latest (docker.io/library/busybox:latest)"
        );
        assert_eq!(
            super::resolved_name("localhost/busybox:latest"),
            "localhost/busybox:latest"
        );
    }
}
