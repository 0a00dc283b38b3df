//! FROM: the state a stage starts from — `scratch`, or a base image keyed
//! by its id (its config digest, which covers its layers' uncompressed
//! digests), as BuildKit keys it: the same image pulled with another
//! compression hits the same cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{key_of, LayerPolicy, StepError, StepKind};
use crate::backend::{BaseImage, Images};
use crate::state::{epoch, State};

/// FROM: a base image, or `scratch`.
pub(crate) struct FromImage<'g> {
    /// The reference.
    pub image: &'g str,
    /// `os/arch[/variant]`.
    pub platform: &'g str,
}

impl StepKind for FromImage<'_> {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::Base
    }

    fn base_image(&self) -> Option<(&str, &str)> {
        (self.image != "scratch").then_some((self.image, self.platform))
    }

    fn base(&self, bases: &BaseImages<'_>, def: &str) -> Result<State, StepError> {
        state(bases, self.image, self.platform, def)
    }
}

/// The state of `FROM image` for `platform` (`os/arch[/variant]`) and the
/// vertex of definition digest `def`. A base of another platform is an
/// error, never used instead.
pub(crate) fn state(
    bases: &BaseImages<'_>,
    image: &str,
    platform: &str,
    def: &str,
) -> Result<State, StepError> {
    if image == "scratch" {
        return Ok(State {
            key: key_of(&[def.as_bytes()]),
            layers: Arc::new(Vec::new()),
            base: None,
            created: epoch(),
        });
    }
    let img = bases
        .resolve(image, platform)
        .map_err(|source| StepError::BaseImage {
            image: image.to_string(),
            source,
        })?;
    check_platform(image, &img.config, platform)?;
    Ok(State {
        key: key_of(&[def.as_bytes(), img.id.as_str().as_bytes()]),
        layers: Arc::new(img.layers.clone()),
        created: img.config.created.clone().unwrap_or_else(epoch),
        base: Some(Arc::new(img.config.clone())),
    })
}

/// Whether `config` is of `platform` (see `PlatformSpec::accepts`). An
/// image that does not state its platform is taken as any.
fn check_platform(
    image: &str,
    config: &rbk_store::oci::ImageConfig,
    platform: &str,
) -> Result<(), StepError> {
    use rbk_store::oci::PlatformSpec;
    let (Ok(want), Some(have)) = (
        platform.parse::<PlatformSpec>(),
        PlatformSpec::of_config(config),
    ) else {
        return Ok(());
    };
    if want.accepts(&have) {
        return Ok(());
    }
    Err(StepError::BasePlatform {
        image: image.to_string(),
        wanted: platform.to_string(),
        have: have.to_string(),
    })
}

/// Base images resolved once per build: the compiler asks for their
/// configs, the build for their layers, and both get the same answer.
pub struct BaseImages<'a> {
    images: &'a dyn Images,
    /// By (name, platform).
    resolved: Mutex<HashMap<(String, String), Arc<BaseImage>>>,
}

impl<'a> BaseImages<'a> {
    /// Resolves through `images`.
    pub fn new(images: &'a dyn Images) -> Self {
        BaseImages {
            images,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The image `name` for `platform` (`os/arch[/variant]`), resolved on
    /// first use (a failure is not kept: the next call tries again).
    pub fn resolve(
        &self,
        name: &str,
        platform: &str,
    ) -> Result<Arc<BaseImage>, crate::backend::BackendError> {
        let key = (name.to_string(), platform.to_string());
        if let Some(img) = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(img.clone());
        }
        let img = Arc::new(self.images.resolve(name, platform)?);
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, img.clone());
        Ok(img)
    }

    /// Forgets `name` (it was just pulled: resolve it afresh).
    pub fn forget(&self, name: &str) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _), _| n != name);
    }
}
