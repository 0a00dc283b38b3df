//! The first pass of a build: every vertex's cache key and whether the
//! cache can serve it, before anything runs. Keys depend only on
//! definitions, context files and other keys, never on results, so they are
//! all known up front; the second pass then runs only what is needed.
//!
//! What is needed, from the images down: a step is needed when an image
//! contains its layer (its child in the chain is needed), and a step's
//! `--from` inputs are needed only when that step must run. So when
//! `COPY --from=build …` is served by the cache, the `build` stage is not
//! touched at all: nothing runs there and none of its layers is unpacked
//! or fetched from a registry cache.

use std::sync::{Arc, Mutex};

use rbk_compiler::BuildGraph;
use rbk_store::cache::CacheRecord;
use serde_json::json;

use super::dag::{Added, Node};
use super::BuildSession;
use crate::context::Selected;
use crate::solve::Dag;
use crate::solve::Ops;
use crate::state::State;
use crate::step::{self, metadata, LayerPolicy, StepError, StepInputs};
use rbk_runtime::cancel::CancelToken;

/// What the first pass learned of a vertex.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The cache key.
    pub key: String,
    /// A record the build can use (its layer is local or can be fetched),
    /// unless `--no-cache`.
    pub hit: Option<CacheRecord>,
    /// Whether any record exists for the key, usable or not (a layer
    /// pruned since): reported as cached when the step is not needed.
    pub recorded: bool,
    /// The plaintext of the key, for `--explain` and the record, without
    /// `files` (see [`Plan::plaintext`]).
    pub inputs: Arc<serde_json::Value>,
    /// For a base image: its state.
    pub source: Option<State>,
    /// For `COPY --link`: the key of its layer alone, which does not depend
    /// on the parent (see [`link_key`]).
    pub link_key: Option<String>,
}

impl Plan {
    fn with_key(key: String) -> Plan {
        Plan {
            key,
            hit: None,
            recorded: false,
            inputs: Arc::new(serde_json::Value::Null),
            source: None,
            link_key: None,
        }
    }

    /// Whether `hit` is the record of `link_key`, not of `key`: the layer
    /// was made over another parent, and stacking it here runs nothing.
    pub fn rebased(&self) -> bool {
        self.hit
            .as_ref()
            .is_some_and(|r| Some(&r.key) == self.link_key.as_ref())
    }

    /// The keys a cache export carries for this step: its own, and a
    /// `COPY --link`'s layer key, so another machine reuses the layer over
    /// another parent too.
    pub fn exported_keys(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.key).chain(&self.link_key)
    }

    /// The whole plaintext of the key: `inputs` with the context `files`
    /// it was made of (path → blake3 hex), made now — only a step that runs
    /// or is explained needs it.
    pub fn plaintext(&self, files: Option<&Selected>) -> serde_json::Value {
        let mut v = (*self.inputs).clone();
        if let (Some(files), Some(obj)) = (files, v.as_object_mut()) {
            let map: serde_json::Map<String, serde_json::Value> = files
                .named()
                .map(|(p, h)| (p, blake3::Hash::from(*h).to_hex().to_string().into()))
                .collect();
            obj.insert("files".into(), serde_json::Value::Object(map));
        }
        v
    }
}

/// Ops of the first pass: keys and lookups only.
///
/// What a COPY or ADD reads from a build context does not depend on the
/// steps before it, so its selection and digest get a vertex of their own
/// with no dependencies (an [`Added`] vertex, one per such step, in
/// `early`): the contexts of all of a build's COPYs are walked and hashed
/// at once, each step then only adds its parent's key.
pub(crate) struct Planner<'x, 'a> {
    pub session: &'x BuildSession<'a>,
    /// The early vertices: each computes a step's inputs.
    pub early: Added,
    /// Their results by step, taken by the step (an error is the step's
    /// error).
    done: Vec<Mutex<Option<Result<StepInputs, StepError>>>>,
}

impl<'x, 'a> Planner<'x, 'a> {
    /// The planner of `session`, and the dependencies of the first pass:
    /// every vertex's parent and inputs, and an early vertex for each step
    /// whose inputs are early ([`crate::step::StepKind::inputs_are_early`]).
    pub fn new(session: &'x BuildSession<'a>) -> (Self, crate::solve::Dag) {
        let graph = session.graph;
        let n = graph.len();
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut early = Added::new(n);
        for id in graph.topo_order() {
            let v = graph.vertex(id);
            let i = id.index();
            deps[i] = v
                .parent
                .iter()
                .chain(&v.inputs)
                .map(|d| d.index())
                .collect();
            if session.kind(i).inputs_are_early() {
                deps[i].push(early.add(i));
            }
        }
        deps.extend(early.steps().map(|_| Vec::new()));
        let done = (0..n).map(|_| Mutex::new(None)).collect();
        let planner = Planner {
            session,
            early,
            done,
        };
        (planner, Dag { deps })
    }

    /// The early vertex of step `v`: its inputs, kept for the step, which
    /// reports a failure as its own. Its plan is a placeholder.
    fn run_early(&self, v: usize) -> Plan {
        let s = self.session;
        let result = s.kind(v).inputs(&s.env, &[]);
        if let Some(mut slot) = self.done.get(v).and_then(|m| m.lock().ok()) {
            *slot = Some(result);
        }
        Plan::with_key(String::new())
    }

    /// The inputs of step `v`: computed by its early vertex if it has one.
    fn inputs(&self, v: usize, from_keys: &[&str]) -> Result<StepInputs, StepError> {
        let s = self.session;
        let computed = self.done.get(v).and_then(|m| m.lock().ok()?.take());
        match computed {
            Some(result) => result,
            None => s.kind(v).inputs(&s.env, from_keys),
        }
    }

    /// The plan of step `v` (one that runs on a filesystem) over the plan
    /// of its `parent`, reading the stages of `from_keys`.
    fn layer_step(
        &self,
        v: usize,
        parent_key: &str,
        from_keys: &[&str],
    ) -> Result<Plan, StepError> {
        let s = self.session;
        let kind = s.kind(v);
        let def = s.vertex(v).key.hex();
        let StepInputs {
            key: content_key,
            plaintext,
        } = self.inputs(v, from_keys)?;
        let mut parts = vec![
            def.as_bytes(),
            parent_key.as_bytes(),
            content_key.as_bytes(),
        ];
        // With SOURCE_DATE_EPOCH the layer's mtimes depend on it
        // (clamped): another epoch is another result.
        let epoch = s.options.source_date_epoch.map(|e| e.to_string());
        if let Some(e) = &epoch {
            parts.extend([b"source_date_epoch".as_slice(), e.as_bytes()]);
        }
        let key = step::key_of(&parts);
        let link_key = kind
            .link_definition()
            .map(|def| link_key(&def, &content_key, epoch.as_deref()));
        let mut inputs_json = json!({
            "step": s.step(v).text,
            "definition": def,
            "parent": parent_key,
        });
        if let (Some(e), Some(obj)) = (&epoch, inputs_json.as_object_mut()) {
            obj.insert("source_date_epoch".into(), e.clone().into());
        }
        if let (Some(obj), serde_json::Value::Object(extra)) =
            (inputs_json.as_object_mut(), plaintext)
        {
            obj.extend(extra);
        }
        let (hit, recorded) = usable_hit(s, v, &key, link_key.as_deref());
        Ok(Plan {
            key,
            hit,
            recorded,
            inputs: Arc::new(inputs_json),
            source: None,
            link_key,
        })
    }
}

impl Ops for Planner<'_, '_> {
    type Out = Plan;
    type Err = StepError;

    fn run(&self, d: usize, inputs: &[&Plan], _: &CancelToken) -> Result<Plan, StepError> {
        let s = self.session;
        let v = match self.early.node(d) {
            Node::Added(v) => return Ok(self.run_early(v)),
            Node::Step(v) => v,
        };
        let vx = s.vertex(v);
        let def = vx.key.hex();
        let parent = vx.parent.and_then(|_| inputs.first().copied());
        let from_keys: Vec<&str> = inputs[usize::from(vx.parent.is_some()).min(inputs.len())..]
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        let parent_key = || {
            parent
                .map(|p| p.key.as_str())
                .ok_or(StepError::Internal("step without parent"))
        };
        match s.kind(v).policy() {
            LayerPolicy::Base => {
                let state = s.kind(v).base(s.bases, &def)?;
                let mut p = Plan::with_key(state.key.clone());
                p.source = Some(state);
                Ok(p)
            }
            LayerPolicy::Config => Ok(Plan::with_key(metadata::key(&def, parent_key()?))),
            LayerPolicy::Layer | LayerPolicy::LayerIfChanged => {
                self.layer_step(v, parent_key()?, &from_keys)
            }
        }
    }
}

/// What the cache gives step `v` (`key`, or a linked step's `link_key`),
/// and whether anything is recorded for it. A hit must give a layer (a
/// [`LayerPolicy::LayerIfChanged`] step's may say it changed nothing): a
/// record without one serves nothing, and the step's other inputs are then
/// needed to run it. A linked layer made over another parent is as good as
/// the step's own.
fn usable_hit(
    s: &BuildSession<'_>,
    v: usize,
    key: &str,
    link_key: Option<&str>,
) -> (Option<CacheRecord>, bool) {
    let no_layer_serves = s.kind(v).policy() == LayerPolicy::LayerIfChanged;
    let usable = |r: &CacheRecord| no_layer_serves || r.layer.is_some();
    let lookup = s.lookup(v, key);
    let hit = lookup.hit.filter(usable);
    let rebase = match (&hit, link_key) {
        (None, Some(lk)) => s.lookup(v, lk).hit.filter(usable),
        _ => None,
    };
    let recorded = lookup.recorded || rebase.is_some();
    (hit.or(rebase), recorded)
}

/// The key of a linked layer (`COPY --link`): its definition without the
/// parent (`def`), and what it reads (context files, or the keys of the
/// stages it copies from). The same step over another parent has the same
/// key, so a changed base reuses the layer, as BuildKit's `--link` does.
fn link_key(def: &str, content_key: &str, epoch: Option<&str>) -> String {
    let mut parts = vec![b"link".as_slice(), def.as_bytes(), content_key.as_bytes()];
    if let Some(e) = epoch {
        parts.extend([b"source_date_epoch".as_slice(), e.as_bytes()]);
    }
    step::key_of(&parts)
}

/// Whether vertex `v` is a step the cache serves (only steps that run on
/// a filesystem have hits): then it needs only its parent (for the layers
/// under its own), not its other inputs.
fn served(plans: &[Option<Plan>], v: usize) -> bool {
    plans[v].as_ref().is_some_and(|p| p.hit.is_some())
}

/// Which vertices the second pass must produce for `roots`, given the
/// plans: see the module's documentation. (What [`run_deps`] reaches; the
/// build computes it from the same dag it solves.)
#[cfg(test)]
pub(crate) fn needed(graph: &BuildGraph, plans: &[Option<Plan>], roots: &[usize]) -> Vec<bool> {
    let dag = run_deps(graph, plans).dag;
    crate::solve::reachable(&dag, roots).unwrap_or_else(|_| vec![false; plans.len()])
}

/// The second pass's graph: the graph's vertices, then one more per
/// `COPY --link` that runs — the making of its layer, which reads what the
/// copy reads but not the parent, so it runs while the steps before it do.
pub(crate) struct RunDag {
    /// Dependencies of every vertex, the added ones last.
    pub dag: crate::solve::Dag,
    /// The added vertices: each makes a linked COPY's layer.
    pub links: Added,
}

/// The second pass's dependencies: the parent always, the other inputs
/// only for steps that run (a linked COPY's through the vertex making its
/// layer).
pub(crate) fn run_deps(graph: &BuildGraph, plans: &[Option<Plan>]) -> RunDag {
    let n = plans.len();
    let mut deps = vec![Vec::new(); n];
    let mut links = Added::new(n);
    for id in graph.topo_order() {
        let v = id.index();
        deps[v] = run_deps_of(graph, plans, id);
        let linked = plans[v].as_ref().is_some_and(|p| p.link_key.is_some());
        if linked && !served(plans, v) {
            let layer = links.add(v);
            // The parent, then the layer; its inputs move to the layer.
            let inputs = deps[v].split_off(1);
            deps[v].push(layer);
            deps.push(inputs);
        }
    }
    RunDag {
        dag: Dag { deps },
        links,
    }
}

fn run_deps_of(
    graph: &BuildGraph,
    plans: &[Option<Plan>],
    id: petgraph::graph::NodeIndex,
) -> Vec<usize> {
    let vx = graph.vertex(id);
    let mut deps: Vec<usize> = vx.parent.iter().map(|p| p.index()).collect();
    if !served(plans, id.index()) {
        deps.extend(vx.inputs.iter().map(|i| i.index()));
    }
    deps
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rbk_compiler::lower::{compile, Input, NoResolver};

    const DOCKERFILE: &str = "FROM base AS build\n\
        RUN make\n\
        FROM base\n\
        COPY --from=build /out /out\n\
        RUN test\n\
        CMD [\"/out\"]\n";

    fn graph() -> BuildGraph {
        let input = Input {
            name: "app".into(),
            file: "Dockerfile".into(),
            source: DOCKERFILE.into(),
            context: "/ctx".into(),
            ..Default::default()
        };
        compile(&input, &NoResolver).unwrap()
    }

    /// Plans where the steps whose instruction starts with one of `hits`
    /// are served by the cache.
    fn plans(g: &BuildGraph, hits: &[&str]) -> Vec<Option<Plan>> {
        (0..g.len())
            .map(|v| {
                let vx = g.vertex(petgraph::graph::NodeIndex::new(v));
                let text = vx
                    .origins
                    .first()
                    .map(|o| o.text.clone())
                    .unwrap_or_default();
                let hit = hits.iter().any(|h| text.starts_with(h));
                Some(Plan {
                    key: format!("k{v}"),
                    hit: hit.then(|| CacheRecord {
                        key: format!("k{v}"),
                        family: String::new(),
                        layer: None,
                        diff_id: None,
                        chain_id: None,
                        config: None,
                        inputs: serde_json::Value::Null,
                        created: String::new(),
                    }),
                    recorded: hit,
                    inputs: Arc::new(serde_json::Value::Null),
                    source: None,
                    link_key: None,
                })
            })
            .collect()
    }

    fn needed_texts(g: &BuildGraph, plans: &[Option<Plan>]) -> Vec<String> {
        let roots: Vec<usize> = g.images.iter().map(|i| i.vertex.index()).collect();
        let needed = needed(g, plans, &roots);
        (0..g.len())
            .filter(|&v| needed[v])
            .filter_map(|v| {
                let vx = g.vertex(petgraph::graph::NodeIndex::new(v));
                vx.origins.first().map(|o| o.text.clone())
            })
            .collect()
    }

    #[test]
    fn a_served_copy_from_leaves_its_stage_alone() {
        let g = graph();
        let texts = needed_texts(&g, &plans(&g, &["COPY --from", "RUN test"]));
        assert!(!texts.iter().any(|t| t == "RUN make"), "{texts:?}");
        assert!(
            texts.iter().any(|t| t.starts_with("COPY --from")),
            "{texts:?}"
        );
        // The served step reads its parent only.
        let deps = run_deps(&g, &plans(&g, &["COPY --from"])).dag.deps;
        let copy = (0..g.len())
            .find(|&v| {
                g.vertex(petgraph::graph::NodeIndex::new(v))
                    .origins
                    .first()
                    .is_some_and(|o| o.text.starts_with("COPY --from"))
            })
            .unwrap();
        assert_eq!(deps[copy].len(), 1);
    }

    #[test]
    fn a_copy_from_that_runs_needs_its_stage() {
        let g = graph();
        for hits in [&[][..], &["RUN test"][..], &["RUN make"][..]] {
            let texts = needed_texts(&g, &plans(&g, hits));
            assert!(texts.iter().any(|t| t == "RUN make"), "{hits:?}: {texts:?}");
        }
    }
}
