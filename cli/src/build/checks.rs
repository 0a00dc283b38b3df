//! What is checked of a build once its files are read and before any
//! base is pulled or step run: its outputs and tags against the images it
//! makes, its `--no-cache-filter` against its stages.

use anyhow::{bail, Context as _, Result};
use rbk_store::Reference;

use super::settings::BuildSettings;
use super::targets::TargetOptions;
use crate::outputs::{self, Output};

/// The outputs and the tags, before any base is pulled: one image per
/// input (several platforms of one name make one image, an index).
pub(crate) fn check_names(
    settings: &BuildSettings,
    targets: &TargetOptions,
    inputs: &[rbk_compiler::Input],
) -> Result<()> {
    let mut names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    names.dedup();
    check_outputs(settings, targets, names.len())?;
    check_tags(inputs)
}

/// The outputs against what the build makes, before any base is pulled.
fn check_outputs(settings: &BuildSettings, targets: &TargetOptions, images: usize) -> Result<()> {
    let outputs = &settings.outputs;
    outputs::check(outputs, images)?;
    for (_, outs) in &targets.outputs {
        outputs::check(outs, 1)?;
    }
    if !settings.options.annotations.is_empty() && outputs.iter().any(Output::docker_media_types) {
        bail!("--annotation needs OCI media types: Docker's schema 2 manifest has no annotations (drop oci-mediatypes=false)");
    }
    if images != 1 && settings.iidfile.is_some() {
        bail!(
            "--iidfile needs exactly one image, and this build makes {images}; use --metadata-file"
        );
    }
    Ok(())
}

/// Every `--no-cache-filter` names a stage of the build.
pub(crate) fn check_no_cache_filter(
    settings: &BuildSettings,
    graph: &rbk_compiler::BuildGraph,
) -> Result<()> {
    for stage in &settings.options.no_cache_stages {
        let known = graph.graph.node_weights().any(|v| {
            v.origins
                .iter()
                .any(|o| o.stage.eq_ignore_ascii_case(stage))
        });
        if !known {
            bail!("--no-cache-filter {stage}: no stage of that name or index in the build");
        }
    }
    Ok(())
}

/// Every tag is a valid reference, checked before any work (a bad `-t`
/// once failed only after the whole build had run).
fn check_tags(inputs: &[rbk_compiler::Input]) -> Result<()> {
    for input in inputs {
        for t in &input.tags {
            let of = match input.name == *t {
                true => String::new(),
                false => format!(" of {}", input.name),
            };
            Reference::parse(t).with_context(|| format!("invalid tag {t:?}{of}"))?;
        }
    }
    Ok(())
}
