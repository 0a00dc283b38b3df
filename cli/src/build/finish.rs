//! The end of a build: its outputs exported, the result files written
//! (`--iidfile`, `--metadata-file`, `--graph-out`), and the summary.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use rbk_scheduler::{BuildSummary, BuiltImage};
use rbk_store::images::Store;
use rbk_store::registry::Client;

use super::settings::BuildSettings;
use super::targets::TargetOptions;
use crate::outputs::{self, Output, PushRecord};
use crate::progress::ProgressMode;

/// What is left once the images are built.
pub(crate) struct Done<'a> {
    pub(crate) store: &'a Store,
    pub(crate) client: &'a dyn Fn() -> Result<Arc<Client>>,
    pub(crate) targets: &'a TargetOptions,
    pub(crate) graph: &'a rbk_compiler::BuildGraph,
    /// A fleet build's report on its shard, for the metadata file.
    pub(crate) shard: Option<crate::plan_doc::ShardReport>,
}

impl Done<'_> {
    /// Exports the outputs (the build's and each target's), writes the
    /// result files and the graph page, and reports.
    pub(crate) fn finish(
        &self,
        settings: &BuildSettings,
        summary: &BuildSummary,
        started: Instant,
    ) -> Result<i32> {
        let mut pushed = self.export_all(settings, summary)?;
        for (name, outs) in &self.targets.outputs {
            let image: Vec<_> = summary
                .images
                .iter()
                .filter(|i| &i.name == name)
                .cloned()
                .collect();
            // Converted only: the build's outputs add the push if none.
            let outs: Vec<Output> = match settings.push_by_digest.contains(name) {
                true => outs.iter().cloned().map(Output::by_digest).collect(),
                false => outs.clone(),
            };
            pushed.extend(
                outputs::export(self.store, self.client, &outs, &image)
                    .with_context(|| format!("target {name:?}: output"))?,
            );
        }
        write_result_files(self.store, settings, summary, &pushed, self.shard.as_ref())?;
        if let Some(path) = &settings.graph_out {
            let marks = crate::graph_out::after_build(self.graph, summary);
            crate::graph_out::write(path, self.graph, &marks)?;
        }
        if settings.progress_mode() == ProgressMode::Quiet {
            // Nothing but the ids (as `docker build -q`), each after its
            // target's name when there are several.
            let named = summary.images.len() > 1;
            for img in &summary.images {
                match named {
                    true => println!("{} {}", img.name, img.id),
                    false => println!("{}", img.id),
                }
            }
        } else {
            // Standard output may carry an exported tarball; rawjson keeps
            // stderr to JSON lines.
            let to_stdout = settings.outputs.iter().any(Output::writes_stdout);
            print_summary(summary, started, settings.progress, to_stdout);
        }
        Ok(0)
    }
}

impl Done<'_> {
    /// Exports the build's outputs: those of the targets pushed by digest
    /// only (`BuildSettings::push_by_digest`) as such, the others as given.
    fn export_all(
        &self,
        settings: &BuildSettings,
        summary: &BuildSummary,
    ) -> Result<Vec<PushRecord>> {
        let all = &summary.images;
        if !all
            .iter()
            .any(|i| settings.push_by_digest.contains(&i.name))
        {
            return outputs::export(self.store, self.client, &settings.outputs, all);
        }
        // Archives and the like get every image at once; pushes are split.
        let (pushes, others): (Vec<Output>, Vec<Output>) =
            settings.outputs.iter().cloned().partition(Output::pushes);
        let (digest_images, images): (Vec<BuiltImage>, Vec<BuiltImage>) = all
            .iter()
            .cloned()
            .partition(|i| settings.push_by_digest.contains(&i.name));
        let mut pushed = outputs::export(self.store, self.client, &others, all)?;
        pushed.extend(outputs::export(self.store, self.client, &pushes, &images)?);
        let pushes = digest_only(&pushes, true);
        pushed.extend(outputs::export(
            self.store,
            self.client,
            &pushes,
            &digest_images,
        )?);
        Ok(pushed)
    }
}

/// `outputs` with every push by digest when `only` (and one push by digest
/// added when none pushes); as they are otherwise.
fn digest_only(outputs: &[Output], only: bool) -> Vec<Output> {
    if !only {
        return outputs.to_vec();
    }
    let mut outs: Vec<Output> = outputs.iter().cloned().map(Output::by_digest).collect();
    if !outs.iter().any(Output::pushes) {
        outs.push(outputs::push_by_digest());
    }
    outs
}

/// `--iidfile` and `--metadata-file`.
fn write_result_files(
    store: &Store,
    settings: &BuildSettings,
    summary: &BuildSummary,
    pushed: &[PushRecord],
    shard: Option<&crate::plan_doc::ShardReport>,
) -> Result<()> {
    if let (Some(path), [img]) = (&settings.iidfile, summary.images.as_slice()) {
        std::fs::write(path, img.id.to_string())
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    let Some(path) = &settings.metadata_file else {
        return Ok(());
    };
    let entry = |img: &BuiltImage| {
        let pushed = pushed.iter().rev().find(|p| p.target == img.name);
        metadata_entry(store, img, pushed)
    };
    // One image: its fields at the top, as `docker buildx build`; several
    // (an rbk.toml): one object per target, as `docker buildx bake`.
    let mut doc = match summary.images.as_slice() {
        [one] if shard.is_none() => entry(one)?,
        many => {
            let mut map = serde_json::Map::new();
            for img in many {
                map.insert(img.name.clone(), entry(img)?);
            }
            serde_json::Value::Object(map)
        }
    };
    // A shard's report, beside its targets (as bake's own `buildx.build.*`
    // keys sit beside them).
    if let (Some(report), Some(map)) = (shard, doc.as_object_mut()) {
        map.insert(
            crate::plan_doc::SHARD_REPORT_KEY.to_string(),
            serde_json::to_value(report)?,
        );
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write --metadata-file {}", path.display()))
}

/// One image's `--metadata-file` entry: buildx's keys, the descriptor with
/// its platform when the image is one platform's. Pushed, the manifest (or
/// index) the registry got is described (a push compresses the layers:
/// its digest is not the store's), as buildx does. Pushed by digest,
/// `image.name` is the repositories it went to, and `rbk.push-by-digest`, `rbk.tags` (the
/// names it was meant for) and `containerimage.descriptors` (each
/// platform's pushed manifest, for every push) tell `rbk manifest merge`
/// how to join it.
fn metadata_entry(
    store: &Store,
    img: &BuiltImage,
    pushed: Option<&PushRecord>,
) -> Result<serde_json::Value> {
    let image = store.image_by_entry(&img.manifest, Vec::new(), None)?;
    let desc = store.entry_descriptor(&image)?;
    let platform = image
        .platform()
        .filter(|_| image.index.is_none())
        .map(|p| p.to_platform());
    let (digest, media_type, size) = match pushed {
        Some(p) => (&p.pushed.digest, &p.pushed.media_type, p.pushed.size),
        None => (&img.manifest, &desc.media_type, desc.size),
    };
    let mut descriptor = rbk_store::oci::Descriptor::new(media_type, digest.clone(), size);
    descriptor.platform = platform;
    let mut v = serde_json::json!({
        "containerimage.digest": digest.to_string(),
        "containerimage.config.digest": image.id.to_string(),
        "containerimage.descriptor": descriptor,
    });
    if let Some(p) = pushed {
        // Each platform's image as pushed (under the index its
        // attestations make, when it has some).
        v["containerimage.descriptors"] = serde_json::to_value(&p.pushed.platforms)?;
    }
    match pushed {
        Some(p) if p.by_digest => {
            v["image.name"] = p.repositories.join(",").into();
            v["rbk.push-by-digest"] = true.into();
            v["rbk.tags"] = serde_json::json!(p.tags);
        }
        _ if !img.tags.is_empty() => v["image.name"] = img.tags.join(",").into(),
        _ => {}
    }
    Ok(v)
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The summary on stderr, then one line per image on stdout (on stderr
/// when an output took stdout; as one JSON line under rawjson).
fn print_summary(summary: &BuildSummary, started: Instant, mode: ProgressMode, stdout_taken: bool) {
    let secs = started.elapsed().as_secs_f64();
    if mode == ProgressMode::Rawjson {
        let images: Vec<serde_json::Value> = summary
            .images
            .iter()
            .map(|i| serde_json::json!({ "name": i.name, "id": i.id.to_string(), "tags": i.tags }))
            .collect();
        eprintln!(
            "{}",
            serde_json::json!({
                "status": "built",
                "seconds": secs,
                "ran": summary.ran,
                "cached": summary.cached,
                "images": images,
            })
        );
        return;
    }
    eprintln!(
        "built {} in {secs:.2}s: {} run, {} cached",
        plural(summary.images.len(), "image"),
        plural(summary.ran, "step"),
        summary.cached
    );
    for e in &summary.exported {
        eprintln!(
            "exported cache to {}: {} ({} pushed, {} already there), {} ({})",
            e.reference,
            plural(e.report.records, "record"),
            e.report.pushed,
            e.report.skipped,
            plural(e.report.layers, "layer"),
            e.report.digest
        );
        if e.mounts > 0 {
            eprintln!(
                "exported {} to {}",
                plural(e.mounts, "cache mount"),
                e.reference
            );
        }
        for why in &e.mounts_left {
            eprintln!("warning: not exported to {}: {why}", e.reference);
        }
    }
    for img in &summary.images {
        let tags = if img.tags.is_empty() {
            "(untagged)".to_string()
        } else {
            img.tags.join(", ")
        };
        let line = format!("{}  {}  {}", img.name, &img.id.hex()[..12], tags);
        if stdout_taken {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::outputs::{self, Output};

    #[test]
    fn targets_pushed_by_digest_push_by_digest_only() {
        let parse = |s: &str| outputs::parse(s).unwrap();
        let given = [
            parse("type=registry,name=r.io/a:1"),
            parse("type=oci,dest=x"),
        ];
        let outs = super::digest_only(&given, true);
        assert_eq!(outs.len(), 2);
        assert!(matches!(
            outs[0],
            Output::Image {
                by_digest: true,
                ..
            }
        ));
        assert_eq!(outs[1], given[1]);
        // Nothing pushed: a push by digest is added.
        let outs = super::digest_only(&given[1..], true);
        assert_eq!(outs[1], outputs::push_by_digest());
        assert_eq!(super::digest_only(&given, false), given);
    }
}
