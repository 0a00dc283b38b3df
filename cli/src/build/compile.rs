//! Loading and compiling a build's Dockerfiles or targets into one graph,
//! with base images from the store: shared by `rbk build`, `rbk check`,
//! `rbk graph`, `rbk plan` and `rbk bake`.

use std::path::Path;

use anyhow::Result;
use rbk_compiler::lower::{BaseImage, Compiler, ImageResolver};
use rbk_compiler::platform::Platform;
use rbk_compiler::BuildGraph;
use rbk_scheduler::step::from::BaseImages;
use rbk_store::registry::PlatformSpec;

use crate::inputs::{self, BuildInputArgs};

/// Base images come from the store, each resolved once.
pub struct StoreResolver<'a>(pub &'a BaseImages<'a>);

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, image: &str, platform: &Platform) -> Option<BaseImage> {
        let img = self.0.resolve(image, &platform.to_string()).ok()?;
        let config = rbk_scheduler::image::from_oci(img.config.config.as_ref()?).ok()?;
        Some(BaseImage {
            config,
            platform: PlatformSpec::of_config(&img.config).map(|p| p.to_string()),
        })
    }
}

/// Compiles every input into one graph, in their order: [`inputs::load`]
/// gives each input after those it is built on (so ordering them again,
/// as `Compiler::add_all` would, is not needed).
pub fn compile_all(
    inputs: &[rbk_compiler::Input],
    resolver: &dyn ImageResolver,
) -> Result<BuildGraph> {
    let mut c = Compiler::new(resolver);
    for i in inputs {
        c.add(i)?;
    }
    Ok(c.finish())
}

/// Compiles the target file (or Dockerfile) as `rbk build` would (base
/// images from the store when it has them; nothing pulled).
pub fn compile(root: &Path, input: &BuildInputArgs) -> Result<BuildGraph> {
    let inputs = inputs::load(input)?;
    with_resolver(root, |r| compile_all(&inputs, r))
}

/// Runs `f` with base image configs from the store when there is one
/// (without creating one as a side effect), else with none.
pub fn with_resolver<T>(root: &Path, f: impl FnOnce(&dyn ImageResolver) -> Result<T>) -> Result<T> {
    match crate::existing_store(root) {
        Some(store) => {
            let bases = BaseImages::new(&store);
            f(&StoreResolver(&bases))
        }
        None => f(&rbk_compiler::NoResolver),
    }
}
