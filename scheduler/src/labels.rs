//! What a step is called: its label in progress output (`[stage 2/4]`,
//! `[app build 2/4]` when several targets are built, as BuildKit and
//! buildx bake name steps) and its cache family (what `--explain` compares
//! it with).

use std::collections::BTreeSet;

use rbk_compiler::graph::{Op, VertexId};
use rbk_compiler::BuildGraph;

/// Each vertex's label, BuildKit's scheme: the stage (its name, `stage-N`
/// when unnamed among several, nothing for a one-stage Dockerfile) and the
/// step's place in it (`FROM` is 1), after the target when the build has
/// several (`app build 2/4`; with its platform when the target is built
/// for several: `app linux/arm64 build 2/4`; the platform alone for one
/// target's platforms). A step the Dockerfiles of several targets share
/// names them all (`api,web base 2/3`, or `api,web +3 base 2/3`); what a
/// target is built on from another target is labelled as that one's.
pub(crate) fn labels(graph: &BuildGraph) -> Vec<String> {
    let n = graph.len();
    let units = unit_names(graph);
    let order = graph.topo_order();
    let mut label: Vec<Option<String>> = vec![None; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (u, img) in graph.images.iter().enumerate() {
        let needed = graph.needed_by(img.vertex);
        // The vertices of each stage of this image's own Dockerfile (what
        // it is built on from another target is that target's), in order.
        let mut stages: Vec<(String, Vec<usize>)> = Vec::new();
        for id in order.iter().filter(|id| needed[id.index()]) {
            let v = id.index();
            let Some(origin) = graph
                .vertex(*id)
                .origins
                .iter()
                .find(|o| o.image == img.name)
            else {
                continue;
            };
            users[v].push(u);
            match stages.iter_mut().find(|(s, _)| *s == origin.stage) {
                Some((_, vs)) => vs.push(v),
                None => stages.push((origin.stage.clone(), vec![v])),
            }
        }
        let several = stages.len() > 1;
        for (stage, vs) in &stages {
            // A stage built on another has its FROM as step 1 too.
            let from = usize::from(
                !vs.first()
                    .is_some_and(|&v| is_base(&graph.vertex(VertexId::new(v)).op)),
            );
            for (k, &v) in vs.iter().enumerate() {
                if label[v].is_none() {
                    let place = format!("{}/{}", k + 1 + from, vs.len() + from);
                    label[v] = Some(match stage_name(stage, several) {
                        Some(name) => format!("{name} {place}"),
                        None => place,
                    });
                }
            }
        }
    }
    (0..n)
        .map(|v| {
            let own = label[v].clone().unwrap_or_else(|| {
                let o = graph.vertex(VertexId::new(v)).origins.first();
                stage_name(o.map_or("", |o| o.stage.as_str()), true).unwrap_or_default()
            });
            match prefix(&users[v], &units) {
                Some(p) => format!("{p} {own}"),
                None => own,
            }
        })
        .collect()
}

/// A stage as BuildKit names it: its name, or `stage-N` for the N-th
/// (from 0) when it has none and the Dockerfile has `several` stages
/// (`None`: a Dockerfile's one unnamed stage goes unnamed, `[2/3]`).
fn stage_name(stage: &str, several: bool) -> Option<String> {
    if !stage.is_empty() && !stage.chars().all(|c| c.is_ascii_digit()) {
        return Some(stage.to_string());
    }
    several.then(|| format!("stage-{}", if stage.is_empty() { "0" } else { stage }))
}

/// How each image (target × platform) is named in labels: by its target
/// when the build has several targets, with its platform when the target
/// is built for several; empty for a one-target, one-platform build.
fn unit_names(graph: &BuildGraph) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let multi_platform: BTreeSet<&str> = graph
        .images
        .iter()
        .filter(|i| !seen.insert(i.name.as_str()))
        .map(|i| i.name.as_str())
        .collect();
    let targets = seen.len();
    graph
        .images
        .iter()
        .map(
            |img| match (targets > 1, multi_platform.contains(img.name.as_str())) {
                (true, true) => format!("{} {}", img.name, img.platform),
                (true, false) => img.name.clone(),
                (false, true) => img.platform.clone(),
                (false, false) => String::new(),
            },
        )
        .collect()
}

/// The names of the images `users` a step serves, at most two spelled
/// out; `None` when they have none.
fn prefix(users: &[usize], units: &[String]) -> Option<String> {
    let mut names: Vec<&str> = Vec::new();
    for &u in users {
        let name = units.get(u).map(String::as_str).unwrap_or("");
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    match names.len() {
        0 => None,
        1 | 2 => Some(names.join(",")),
        k => Some(format!("{},{} +{}", names[0], names[1], k - 2)),
    }
}

/// Each vertex's cache family (image/stage/position): records of one
/// family are versions of one step, the nearest of which `--explain`
/// compares with. Kept as they were when labels changed: a family names
/// records already stored.
pub(crate) fn families(graph: &BuildGraph) -> Vec<String> {
    let n = graph.len();
    let mut named_yet = vec![false; n];
    let mut families = vec![String::new(); n];
    let mut seen = BTreeSet::new();
    let multi: BTreeSet<&str> = graph
        .images
        .iter()
        .filter(|i| !seen.insert(i.name.as_str()))
        .map(|i| i.name.as_str())
        .collect();
    let named = |image: &str, id: rbk_compiler::graph::VertexId| -> String {
        if !multi.contains(image) {
            return image.to_string();
        }
        let chain = graph.chain(id);
        match chain.first().map(|&v| &graph.vertex(v).op) {
            Some(Op::Source { platform, .. }) => format!("{image} {platform}"),
            _ => image.to_string(),
        }
    };
    for img in &graph.images {
        let chain = graph.chain(img.vertex);
        let name = if multi.contains(img.name.as_str()) {
            format!("{} {}", img.name, img.platform)
        } else {
            img.name.clone()
        };
        for (pos, id) in chain.iter().enumerate() {
            let i = id.index();
            if !std::mem::replace(&mut named_yet[i], true) {
                let stage = graph
                    .vertex(*id)
                    .origins
                    .iter()
                    .find(|o| o.image == img.name)
                    .map(|o| o.stage.as_str())
                    .unwrap_or("");
                families[i] = format!("{name}/{stage}/{pos}");
            }
        }
    }
    // Vertices only reached through --from (other stages).
    for id in graph.topo_order() {
        let i = id.index();
        if !std::mem::replace(&mut named_yet[i], true) {
            let o = graph.vertex(id).origins.first();
            let img = named(o.map(|o| o.image.as_str()).unwrap_or(""), id);
            let stage = o.map(|o| o.stage.as_str()).unwrap_or("");
            let pos = graph.chain(id).len();
            families[i] = format!("{img}/{stage}/{pos}");
        }
    }
    families
}

/// Whether `op` is a FROM.
fn is_base(op: &Op) -> bool {
    crate::step::resolve(op).policy() == crate::step::LayerPolicy::Base
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use rbk_compiler::lower::{Compiler, Input};
    use rbk_compiler::NoResolver;

    use super::*;

    /// A graph of `(target, Dockerfile, stage)` inputs, contexts in /ctx.
    pub(crate) fn graph_of(inputs: &[(&str, &str, Option<&str>)]) -> BuildGraph {
        let mut c = Compiler::new(&NoResolver);
        for (name, text, target) in inputs {
            c.add(&Input {
                name: (*name).into(),
                file: format!("{name}/Dockerfile"),
                source: (*text).into(),
                context: "/ctx".into(),
                target: target.map(str::to_string),
                ..Default::default()
            })
            .unwrap();
        }
        c.finish()
    }

    /// Each step's label with its instruction, in order.
    fn shown(g: &BuildGraph) -> Vec<String> {
        let l = labels(g);
        g.topo_order()
            .into_iter()
            .filter(|id| !is_base(&g.vertex(*id).op))
            .map(|id| format!("[{}] {}", l[id.index()], g.vertex(id).created_by))
            .collect()
    }

    #[test]
    fn one_stage_is_numbered_alone_and_stages_by_name() {
        let g = graph_of(&[("app", "FROM busybox\nRUN a\nRUN b\n", None)]);
        assert_eq!(
            shown(&g),
            ["[2/3] RUN /bin/sh -c a", "[3/3] RUN /bin/sh -c b"]
        );
        let g = graph_of(&[(
            "app",
            "FROM busybox AS build\nRUN a\nFROM busybox\nCOPY --from=build /a /a\nRUN c\n",
            None,
        )]);
        assert_eq!(
            shown(&g),
            [
                "[build 2/2] RUN /bin/sh -c a",
                "[stage-1 2/3] COPY /a /a",
                "[stage-1 3/3] RUN /bin/sh -c c"
            ]
        );
    }

    #[test]
    fn several_targets_prefix_their_names_and_a_shared_step_names_all() {
        let file = "FROM busybox AS build\nRUN make\nFROM build AS test\nRUN check\n";
        let g = graph_of(&[("app", file, Some("build")), ("ci", file, Some("test"))]);
        assert_eq!(
            shown(&g),
            [
                "[app,ci build 2/2] RUN /bin/sh -c make",
                "[ci test 2/2] RUN /bin/sh -c check"
            ]
        );
    }
}
