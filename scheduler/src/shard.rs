//! Splitting one build graph over several builders (shards) that share a
//! registry cache: which builder builds which image (a target for one
//! platform, a *unit*), and so which builder owns each step.
//!
//! The split is a list schedule simulated on the graph's steps, each
//! costing what earlier runs recorded for its op ([`Timings`]; a step
//! counts 1 when nothing was recorded). Units are placed most urgent first
//! (the longest chain of work still hanging on them), each on the builder
//! where it would finish soonest: a builder pays for the steps no unit
//! placed before needed, and waits for steps another builder owns, whose
//! results it will take from the registry. A unit whose expensive
//! ancestors a builder already owns therefore tends to land there.
//!
//! Every builder computes the same split (the same graph and timings, or
//! the plan read from a file); [`owners`] replays the placement order to
//! say who makes each step, so a builder knows which steps to wait for
//! instead of running them.

use std::collections::BTreeMap;

use rbk_compiler::graph::Op;
use rbk_compiler::BuildGraph;
use serde::{Deserialize, Serialize};

/// Step durations recorded by earlier runs, by op ([`op_id`]): the same
/// command costs about the same wherever it sits in a graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Op digest → seconds (the latest run's).
    pub steps: BTreeMap<String, f64>,
}

impl Timings {
    /// Adds `other`'s figures, which win over these.
    pub fn merge(&mut self, other: Timings) {
        self.steps.extend(other.steps);
    }
}

/// What names a step's op in recorded durations: its kind and its
/// instruction as the image history shows it (build args included). Not
/// its cache definition, which holds the base image's environment: a
/// planner that has not pulled the bases names steps as the builders do.
pub fn op_id(v: &rbk_compiler::graph::Vertex) -> String {
    let mut h = blake3::Hasher::new();
    h.update(v.op.kind().as_bytes());
    h.update(&[0]);
    h.update(v.created_by.as_bytes());
    h.finalize().to_hex().to_string()
}

/// Whether vertex `op` is a step with a layer (what costs time).
fn is_step(op: &Op) -> bool {
    crate::step::resolve(op).policy().runs()
}

/// Each vertex's expected cost, and whether the figures are seconds
/// (something was recorded) or step counts.
pub fn costs(graph: &BuildGraph, timings: &Timings) -> (Vec<f64>, bool) {
    let vertices: Vec<_> = graph.topo_order();
    let known: Vec<f64> = vertices
        .iter()
        .map(|&id| graph.vertex(id))
        .filter(|v| is_step(&v.op))
        .filter_map(|v| timings.steps.get(&op_id(v)).copied())
        .collect();
    let seconds = !known.is_empty();
    // Unknown steps cost the median of the known ones.
    let fallback = if seconds {
        let mut k = known.clone();
        k.sort_by(f64::total_cmp);
        k[k.len() / 2]
    } else {
        1.0
    };
    let mut out = vec![0.0; graph.len()];
    for id in vertices {
        let v = graph.vertex(id);
        if is_step(&v.op) {
            out[id.index()] = timings
                .steps
                .get(&op_id(v))
                .copied()
                .unwrap_or(fallback)
                .max(0.0);
        }
    }
    (out, seconds)
}

/// One unit as placed.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedUnit {
    /// Its index in `graph.images`.
    pub image: usize,
    /// The shard that builds it, 0-based.
    pub shard: usize,
    /// Steps (with a layer) no unit placed before it needed.
    pub steps: usize,
    /// Their cost.
    pub cost: f64,
    /// Expected start and finish.
    pub start: f64,
    /// See `start`.
    pub finish: f64,
    /// The units (image indexes) it is built on.
    pub needs: Vec<usize>,
}

/// A split of a graph's units over shards.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardPlan {
    /// How many shards.
    pub shards: usize,
    /// Whether the costs are seconds (else step counts).
    pub seconds: bool,
    /// The units in the order they were placed.
    pub units: Vec<PlacedUnit>,
    /// When the last shard is expected to finish.
    pub makespan: f64,
    /// The longest chain of dependent steps.
    pub critical_path: f64,
    /// The cost of all steps.
    pub total: f64,
    /// The units (image indexes) on the critical path, first to last.
    pub critical: Vec<usize>,
}

/// The vertices each image needs (itself and all it reads), as flags.
fn ancestors(graph: &BuildGraph) -> Vec<Vec<bool>> {
    graph
        .images
        .iter()
        .map(|img| graph.needed_by(img.vertex))
        .collect()
}

/// The units each unit is built on: those whose final vertex it needs.
fn unit_needs(graph: &BuildGraph, anc: &[Vec<bool>]) -> Vec<Vec<usize>> {
    (0..graph.images.len())
        .map(|u| {
            let own = graph.images[u].vertex;
            (0..graph.images.len())
                .filter(|&w| {
                    let top = graph.images[w].vertex;
                    w != u && top != own && anc[u][top.index()]
                })
                .collect()
        })
        .collect()
}

/// Splits `graph`'s images over `shards` builders.
pub fn plan(graph: &BuildGraph, shards: usize, timings: &Timings) -> ShardPlan {
    let shards = shards.max(1);
    let (cost, seconds) = costs(graph, timings);
    let anc = ancestors(graph);
    let needs = unit_needs(graph, &anc);
    let rank = ranks(graph, &cost, &anc, &needs);
    let order = graph.topo_order();
    let mut step = vec![false; graph.len()];
    for id in &order {
        step[id.index()] = is_step(&graph.vertex(*id).op);
    }
    let mut owner: Vec<Option<usize>> = vec![None; graph.len()];
    let mut done = vec![0.0_f64; graph.len()];
    let mut busy: Vec<Vec<(f64, f64)>> = vec![Vec::new(); shards];
    let mut placed: Vec<PlacedUnit> = Vec::new();
    let mut is_placed = vec![false; graph.images.len()];
    while placed.len() < graph.images.len() {
        // The most urgent unit whose units below are placed.
        let Some(u) = (0..graph.images.len())
            .filter(|&u| !is_placed[u] && needs[u].iter().all(|&w| is_placed[w]))
            .max_by(|&a, &b| rank[a].total_cmp(&rank[b]).then(b.cmp(&a)))
        else {
            break;
        };
        let new: Vec<usize> = order
            .iter()
            .map(|id| id.index())
            .filter(|&v| anc[u][v] && owner[v].is_none())
            .collect();
        let work: f64 = new.iter().map(|&v| cost[v]).sum();
        let need = Need {
            needed: &anc[u],
            owner: &owner,
            done: &done,
            cost: &cost,
        };
        let (s, start) = need.best_shard(&busy, work);
        let mut t = start;
        for &v in &new {
            t += cost[v];
            done[v] = t;
            owner[v] = Some(s);
        }
        if work > 0.0 {
            busy[s].push((start, t));
            busy[s].sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        is_placed[u] = true;
        // Done when all it needs is, wherever it is made.
        let finish = (0..graph.len())
            .filter(|&v| anc[u][v])
            .map(|v| done[v])
            .fold(t, f64::max);
        placed.push(PlacedUnit {
            image: u,
            shard: s,
            steps: new.iter().filter(|&&v| step[v]).count(),
            cost: work,
            start,
            finish,
            needs: needs[u].clone(),
        });
    }
    let (critical_path, critical) = critical_path(graph, &cost);
    ShardPlan {
        shards,
        seconds,
        makespan: placed.iter().map(|p| p.finish).fold(0.0, f64::max),
        total: cost.iter().sum(),
        critical_path,
        critical,
        units: placed,
    }
}

/// What a unit needs, against what is placed so far.
struct Need<'a> {
    /// The vertices it needs.
    needed: &'a [bool],
    /// Who makes each vertex placed so far.
    owner: &'a [Option<usize>],
    /// When each is expected to be done.
    done: &'a [f64],
    cost: &'a [f64],
}

impl Need<'_> {
    /// The shard where `work` of its own starts soonest, and when: the
    /// first gap of that shard's schedule long enough, once what it needs
    /// from other shards is expected to be done (in the registry; a shard
    /// waiting on another runs other work meanwhile). On a tie, the shard
    /// owning most of what it needs, then the least loaded, then the first.
    fn best_shard(&self, busy: &[Vec<(f64, f64)>], work: f64) -> (usize, f64) {
        let n = busy.len();
        // One pass: per shard, when what it owns of this is done, and what
        // that costs.
        let mut done_by = vec![0.0_f64; n];
        let mut owned = vec![0.0_f64; n];
        for v in (0..self.needed.len()).filter(|&v| self.needed[v]) {
            if let Some(o) = self.owner[v].filter(|&o| o < n) {
                done_by[o] = done_by[o].max(self.done[v]);
                owned[o] += self.cost[v];
            }
        }
        let key = |s: usize| {
            let ready = (0..n)
                .filter(|&o| o != s)
                .map(|o| done_by[o])
                .fold(0.0, f64::max);
            let load: f64 = busy[s].iter().map(|(a, b)| b - a).sum();
            (earliest_gap(&busy[s], ready, work), owned[s], load)
        };
        let keys: Vec<(f64, f64, f64)> = (0..n).map(key).collect();
        let best = (0..n)
            .min_by(|&a, &b| {
                let (x, y) = (keys[a], keys[b]);
                x.0.total_cmp(&y.0)
                    .then(y.1.total_cmp(&x.1))
                    .then(x.2.total_cmp(&y.2))
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        (best, keys.get(best).map_or(0.0, |k| k.0))
    }
}

/// The earliest time at or after `from` when `busy` (sorted intervals)
/// leaves `work` free.
fn earliest_gap(busy: &[(f64, f64)], from: f64, work: f64) -> f64 {
    let mut t = from;
    for &(a, b) in busy {
        if t + work <= a {
            return t;
        }
        t = t.max(b);
    }
    t
}

/// Each unit's urgency: the cost of its own part plus the most urgent unit
/// built on it (the work that still hangs on it: HEFT's upward rank,
/// over units).
fn ranks(graph: &BuildGraph, cost: &[f64], anc: &[Vec<bool>], needs: &[Vec<usize>]) -> Vec<f64> {
    let n = graph.images.len();
    // A unit's own part: what it needs beyond the units it is built on.
    let own: Vec<f64> = (0..n)
        .map(|u| {
            (0..graph.len())
                .filter(|&v| anc[u][v] && !needs[u].iter().any(|&w| anc[w][v]))
                .map(|v| cost[v])
                .sum()
        })
        .collect();
    // Units built on others need strictly more vertices: by size, the
    // units above come first.
    let mut by_size: Vec<usize> = (0..n).collect();
    by_size.sort_by_key(|&u| std::cmp::Reverse(anc[u].iter().filter(|&&b| b).count()));
    let mut rank = vec![0.0_f64; n];
    for &u in &by_size {
        let above = (0..n)
            .filter(|&w| needs[w].contains(&u))
            .map(|w| rank[w])
            .fold(0.0, f64::max);
        rank[u] = own[u] + above;
    }
    rank
}

/// The longest chain of dependent steps (by cost) and the units whose
/// images lie on it, first to last.
fn critical_path(graph: &BuildGraph, cost: &[f64]) -> (f64, Vec<usize>) {
    let mut best = vec![0.0_f64; graph.len()];
    let mut from: Vec<Option<usize>> = vec![None; graph.len()];
    for id in graph.topo_order() {
        let v = graph.vertex(id);
        let i = id.index();
        let prev = v
            .parent
            .iter()
            .chain(&v.inputs)
            .map(|p| p.index())
            .max_by(|&a, &b| best[a].total_cmp(&best[b]));
        best[i] = cost[i] + prev.map_or(0.0, |p| best[p]);
        from[i] = prev;
    }
    let Some(end) = graph
        .images
        .iter()
        .map(|img| img.vertex.index())
        .max_by(|&a, &b| best[a].total_cmp(&best[b]))
    else {
        return (0.0, Vec::new());
    };
    let mut on_path = vec![false; graph.len()];
    let mut cur = Some(end);
    while let Some(v) = cur {
        on_path[v] = true;
        cur = from[v];
    }
    let mut units: Vec<usize> = (0..graph.images.len())
        .filter(|&u| on_path[graph.images[u].vertex.index()])
        .collect();
    units.sort_by(|&a, &b| {
        let (x, y) = (
            graph.images[a].vertex.index(),
            graph.images[b].vertex.index(),
        );
        best[x].total_cmp(&best[y])
    });
    (best[end], units)
}

/// Who makes each vertex when units are placed in `placed`'s order, each
/// on its shard: the shard of the first unit that needs it (`None`: no
/// unit does).
pub fn owners(graph: &BuildGraph, placed: &[(usize, usize)]) -> Vec<Option<usize>> {
    let anc = ancestors(graph);
    let mut owner = vec![None; graph.len()];
    for &(u, s) in placed {
        let Some(needed) = anc.get(u) else { continue };
        for (v, o) in owner.iter_mut().enumerate() {
            if needed[v] && o.is_none() {
                *o = Some(s);
            }
        }
    }
    owner
}

/// The digest of what a split depends on: each unit's name and platform
/// and the steps it needs ([`op_id`]s, in order). Not the contexts' files
/// (a plan stays good for other sources) nor the base images' configs (a
/// planner that has not pulled them gets the digest the builders get).
pub fn graph_digest(graph: &BuildGraph) -> String {
    let anc = ancestors(graph);
    let order = graph.topo_order();
    let mut h = blake3::Hasher::new();
    for (u, img) in graph.images.iter().enumerate() {
        h.update(img.name.as_bytes());
        h.update(&[0]);
        h.update(img.platform.as_bytes());
        h.update(&[0]);
        for id in order.iter().filter(|id| anc[u][id.index()]) {
            h.update(op_id(graph.vertex(*id)).as_bytes());
        }
        h.update(&[1]);
    }
    format!("blake3:{}", h.finalize().to_hex())
}
