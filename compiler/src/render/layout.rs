//! Where the HTML page draws each box: a layered, top-down layout of
//! clustered nodes, computed here (at render time) so the page only pans
//! and zooms and a 1,000-vertex graph costs the browser nothing to place.
//!
//! Nodes belong to clusters (a stage of an image, or the steps several
//! images share). Each cluster is laid out on its own — a row per
//! longest-path layer of its internal edges, boxes ordered by barycenter —
//! and becomes one rectangle; the clusters are then layered the same way
//! over the edges between them (longest path, barycenter sweeps), and each
//! cluster layer is wrapped into as many rows as keep the drawing near the
//! shape of a window. Every edge therefore points downward: inside a
//! cluster to a later row, between clusters to a later cluster layer.
//! Clusters on a cycle of cluster edges (which the build graph can make
//! only through oddly named stages) are merged into one.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// Width of a node's box.
pub(crate) const BOX_W: f64 = 250.0;
/// Height of a node's box.
pub(crate) const BOX_H: f64 = 40.0;
/// Horizontal room between boxes of a cluster.
const GAP_X: f64 = 16.0;
/// Vertical distance between the tops of two rows of a cluster.
const ROW_H: f64 = 58.0;
/// A cluster's inner margin.
const PAD: f64 = 10.0;
/// Room above a cluster's first row for its label.
pub(crate) const HEADER: f64 = 24.0;
/// Room between clusters side by side.
const CLUSTER_GAP_X: f64 = 36.0;
/// Room between rows of clusters.
const CLUSTER_GAP_Y: f64 = 48.0;
/// Margin around the drawing.
const MARGIN: f64 = 20.0;
/// The shape aimed at (a landscape window).
const ASPECT: f64 = 1.6;
/// Barycenter sweeps (each one down and one up).
const SWEEPS: usize = 4;

/// What to lay out: nodes numbered in a dependency order (every edge goes
/// from a lower to a higher number), each in a cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    /// The cluster of each node (`0..clusters`).
    pub cluster: Vec<usize>,
    /// Number of clusters.
    pub clusters: usize,
    /// Edges `(from, to)`, `from < to`.
    pub edges: Vec<(usize, usize)>,
}

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    /// True when the two overlap (touching edges do not).
    #[cfg(test)]
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    #[cfg(test)]
    fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x
            && o.y >= self.y
            && o.x + o.w <= self.x + self.w
            && o.y + o.h <= self.y + self.h
    }
}

/// The result: a box per node, a box per drawn cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// Each node's box.
    pub nodes: Vec<Rect>,
    /// The drawn clusters: their box and the input clusters they hold
    /// (several when a cycle merged them).
    pub clusters: Vec<(Rect, Vec<usize>)>,
    /// Size of the whole drawing.
    pub width: f64,
    pub height: f64,
}

/// A cluster laid out on its own: its members (row by row) and its size.
struct Inner {
    members: Vec<usize>,
    w: f64,
    h: f64,
}

/// Lays out `input`.
pub(crate) fn layout(input: &Input) -> Layout {
    let n = input.cluster.len();
    let (merged, groups) = merge_cycles(input);
    let mut nodes = vec![Rect::default(); n];
    let inner = place_inside(input, &merged, groups.len(), &mut nodes);
    let cedges = cluster_edges(input, &merged);
    let rank = longest_path(groups.len(), &cedges, |c| c);
    let order = order_layers(&rank, &cedges, &inner);
    let (origins, width, height) = wrap(&order, &inner);
    for (c, inn) in inner.iter().enumerate() {
        let (cx, cy) = origins[c];
        for &m in &inn.members {
            nodes[m].x += cx;
            nodes[m].y += cy;
        }
    }
    let clusters = groups
        .into_iter()
        .enumerate()
        .filter(|(c, _)| !inner[*c].members.is_empty())
        .map(|(c, g)| {
            let (x, y) = origins[c];
            let r = Rect {
                x,
                y,
                w: inner[c].w,
                h: inner[c].h,
            };
            (r, g)
        })
        .collect();
    Layout {
        nodes,
        clusters,
        width,
        height,
    }
}

/// Each node's drawn cluster after merging the clusters on cycles, and the
/// input clusters each drawn one holds.
fn merge_cycles(input: &Input) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut g: DiGraph<(), ()> = DiGraph::with_capacity(input.clusters, input.edges.len());
    for _ in 0..input.clusters {
        g.add_node(());
    }
    for &(a, b) in &input.edges {
        let (ca, cb) = (input.cluster[a], input.cluster[b]);
        if ca != cb {
            g.update_edge(NodeIndex::new(ca), NodeIndex::new(cb), ());
        }
    }
    let mut to = vec![0; input.clusters];
    let mut sccs = tarjan_scc(&g);
    // Keep the clusters' own order: the first member names the group.
    for s in &mut sccs {
        s.sort();
    }
    sccs.sort_by_key(|s| s[0]);
    let groups: Vec<Vec<usize>> = sccs
        .iter()
        .map(|s| s.iter().map(|i| i.index()).collect())
        .collect();
    for (gi, s) in groups.iter().enumerate() {
        for &c in s {
            to[c] = gi;
        }
    }
    let merged = input.cluster.iter().map(|&c| to[c]).collect();
    (merged, groups)
}

/// Longest-path layers of `0..n` over `edges` (`key` maps an edge end to
/// a node), every edge `(a, b)` giving `layer(b) > layer(a)`. The graph
/// must be acyclic; it is walked in a topological order found by Kahn's
/// algorithm.
fn longest_path(n: usize, edges: &[(usize, usize)], key: impl Fn(usize) -> usize) -> Vec<usize> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in edges {
        out[key(a)].push(key(b));
        indeg[key(b)] += 1;
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indeg[i] == 0).collect();
    let mut layer = vec![0usize; n];
    while let Some(a) = ready.pop() {
        for &b in &out[a] {
            layer[b] = layer[b].max(layer[a] + 1);
            indeg[b] -= 1;
            if indeg[b] == 0 {
                ready.push(b);
            }
        }
    }
    layer
}

/// The distinct edges between drawn clusters.
fn cluster_edges(input: &Input, merged: &[usize]) -> Vec<(usize, usize)> {
    let mut e: Vec<(usize, usize)> = input
        .edges
        .iter()
        .map(|&(a, b)| (merged[a], merged[b]))
        .filter(|(a, b)| a != b)
        .collect();
    e.sort_unstable();
    e.dedup();
    e
}

/// Lays out each cluster alone: rows by longest path over its internal
/// edges, slots by barycenter; sets each node's offset within its cluster.
fn place_inside(input: &Input, merged: &[usize], k: usize, nodes: &mut [Rect]) -> Vec<Inner> {
    let internal: Vec<(usize, usize)> = input
        .edges
        .iter()
        .copied()
        .filter(|&(a, b)| merged[a] == merged[b])
        .collect();
    let row = longest_path(merged.len(), &internal, |i| i);
    // rows[c][r]: the members of cluster c in its row r, in node order.
    let mut rows: Vec<Vec<Vec<usize>>> = vec![Vec::new(); k];
    for (node, &c) in merged.iter().enumerate() {
        let r = row[node];
        if rows[c].len() <= r {
            rows[c].resize(r + 1, Vec::new());
        }
        rows[c][r].push(node);
    }
    let preds = predecessors(merged.len(), &internal);
    let mut slot = vec![0.0f64; merged.len()];
    rows.iter_mut()
        .map(|crows| {
            for r in crows.iter_mut() {
                barycenter_sort(r, &preds, &mut slot);
            }
            let widest = crows.iter().map(Vec::len).max().unwrap_or(0);
            let w = widest as f64 * (BOX_W + GAP_X) - GAP_X + 2.0 * PAD;
            for (ri, r) in crows.iter().enumerate() {
                // Narrower rows are centred.
                let shift = (widest - r.len()) as f64 * (BOX_W + GAP_X) / 2.0;
                for (si, &m) in r.iter().enumerate() {
                    nodes[m] = Rect {
                        x: PAD + shift + si as f64 * (BOX_W + GAP_X),
                        y: HEADER + ri as f64 * ROW_H,
                        w: BOX_W,
                        h: BOX_H,
                    };
                }
            }
            let h = HEADER + (crows.len().max(1) - 1) as f64 * ROW_H + BOX_H + PAD;
            Inner {
                members: crows.iter().flatten().copied().collect(),
                w: w.max(BOX_W + 2.0 * PAD),
                h,
            }
        })
        .collect()
}

/// For each node, the nodes with an edge to it.
fn predecessors(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut p = vec![Vec::new(); n];
    for &(a, b) in edges {
        p[b].push(a);
    }
    p
}

/// Orders `row` by the mean slot of each member's predecessors (members
/// without any keep their place), then records the members' new slots.
fn barycenter_sort(row: &mut [usize], preds: &[Vec<usize>], slot: &mut [f64]) {
    let mut keyed: Vec<(f64, usize)> = row
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let p = &preds[m];
            let key = if p.is_empty() {
                i as f64
            } else {
                p.iter().map(|&q| slot[q]).sum::<f64>() / p.len() as f64
            };
            (key, m)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (i, (_, m)) in keyed.into_iter().enumerate() {
        row[i] = m;
        slot[m] = i as f64;
    }
}

/// The clusters of each layer, ordered to reduce crossings: barycenter
/// sweeps down (by the clusters above) and up (by those below), on the
/// centres of the clusters as if each layer were one line.
fn order_layers(rank: &[usize], edges: &[(usize, usize)], inner: &[Inner]) -> Vec<Vec<usize>> {
    let layers = rank.iter().copied().max().map_or(0, |m| m + 1);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (c, &r) in rank.iter().enumerate() {
        if !inner[c].members.is_empty() {
            order[r].push(c);
        }
    }
    let up = predecessors(rank.len(), edges);
    let flipped: Vec<(usize, usize)> = edges.iter().map(|&(a, b)| (b, a)).collect();
    let down = predecessors(rank.len(), &flipped);
    let mut centre = vec![0.0f64; rank.len()];
    let set_centres = |layer: &[usize], centre: &mut [f64]| {
        let mut x = 0.0;
        for &c in layer {
            centre[c] = x + inner[c].w / 2.0;
            x += inner[c].w + CLUSTER_GAP_X;
        }
    };
    for layer in &order {
        set_centres(layer, &mut centre);
    }
    for _ in 0..SWEEPS {
        for layer in order.iter_mut().skip(1) {
            sort_by_neighbours(layer, &up, &centre);
            set_centres(layer, &mut centre);
        }
        for layer in order.iter_mut().rev().skip(1) {
            sort_by_neighbours(layer, &down, &centre);
            set_centres(layer, &mut centre);
        }
    }
    order
}

/// Sorts `layer` by the mean centre of each cluster's neighbours (those
/// without any keep their current centre).
fn sort_by_neighbours(layer: &mut [usize], nb: &[Vec<usize>], centre: &[f64]) {
    // Each key once, not on every comparison.
    let mut keyed: Vec<(f64, usize)> = layer
        .iter()
        .map(|&c| {
            let n = &nb[c];
            let key = if n.is_empty() {
                centre[c]
            } else {
                n.iter().map(|&o| centre[o]).sum::<f64>() / n.len() as f64
            };
            (key, c)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (at, (_, c)) in layer.iter_mut().zip(keyed) {
        *at = c;
    }
}

/// Places the ordered layers top to bottom, each wrapped into rows no
/// wider than the drawing should be (about `ASPECT` times as wide as
/// tall), rows centred. Returns each
/// cluster's top-left corner and the drawing's size.
fn wrap(order: &[Vec<usize>], inner: &[Inner]) -> (Vec<(f64, f64)>, f64, f64) {
    let area: f64 = order
        .iter()
        .flatten()
        .map(|&c| (inner[c].w + CLUSTER_GAP_X) * (inner[c].h + CLUSTER_GAP_Y))
        .sum();
    let widest = order
        .iter()
        .flatten()
        .map(|&c| inner[c].w)
        .fold(0.0, f64::max);
    // The layers alone already make the drawing this tall: a drawing no
    // wider than that shape asks needs no wrapping.
    let tall: f64 = order
        .iter()
        .map(|l| {
            l.iter()
                .map(|&c| inner[c].h + CLUSTER_GAP_Y)
                .fold(0.0, f64::max)
        })
        .sum();
    let limit = (area * ASPECT).sqrt().max(tall * ASPECT).max(widest);
    // Rows: (clusters, width, height).
    let mut rows: Vec<(Vec<usize>, f64, f64)> = Vec::new();
    for layer in order.iter().filter(|l| !l.is_empty()) {
        rows.push((Vec::new(), 0.0, 0.0));
        for &c in layer {
            let last = rows.len() - 1;
            let (ref cs, w, _) = rows[last];
            if !cs.is_empty() && w + CLUSTER_GAP_X + inner[c].w > limit {
                rows.push((Vec::new(), 0.0, 0.0));
            }
            let (cs, w, h) = rows.last_mut().expect("a row was pushed");
            *w += if cs.is_empty() { 0.0 } else { CLUSTER_GAP_X } + inner[c].w;
            *h = h.max(inner[c].h);
            cs.push(c);
        }
    }
    let width = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let mut at = vec![(0.0, 0.0); inner.len()];
    let mut y = MARGIN;
    for (cs, w, h) in &rows {
        let mut x = MARGIN + (width - w) / 2.0;
        for &c in cs {
            at[c] = (x, y);
            x += inner[c].w + CLUSTER_GAP_X;
        }
        y += h + CLUSTER_GAP_Y;
    }
    let height = y - CLUSTER_GAP_Y + MARGIN;
    (at, width + 2.0 * MARGIN, height.max(2.0 * MARGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images sharing a base and its first step, one copying from a
    /// build stage; a cycle between two clusters; an empty graph; and a
    /// wide fan of 60 clusters off one shared step (which wraps).
    fn cases() -> Vec<(&'static str, Input)> {
        let fan = {
            let mut cluster = vec![0, 0];
            let mut edges = vec![(0, 1)];
            for i in 0..60 {
                let a = cluster.len();
                cluster.extend([i + 1, i + 1, i + 1]);
                edges.extend([(1, a), (a, a + 1), (a + 1, a + 2)]);
                if i % 3 == 0 {
                    edges.push((0, a + 2));
                }
            }
            Input {
                clusters: 61,
                cluster,
                edges,
            }
        };
        vec![
            (
                "two images, a shared trunk, a copy from a build stage",
                Input {
                    // 0,1 shared; 2,3 build stage of a; 4,5 a; 6,7 b.
                    cluster: vec![0, 0, 1, 1, 2, 2, 3, 3],
                    clusters: 4,
                    edges: vec![
                        (0, 1),
                        (0, 2),
                        (2, 3),
                        (1, 4),
                        (3, 5),
                        (4, 5),
                        (1, 6),
                        (6, 7),
                    ],
                },
            ),
            (
                "a cycle between clusters is merged",
                Input {
                    cluster: vec![0, 1, 0, 1],
                    clusters: 2,
                    edges: vec![(0, 1), (1, 2), (2, 3)],
                },
            ),
            ("nothing", Input::default()),
            ("a wide fan wraps", fan),
        ]
    }

    #[test]
    fn layers_increase_along_edges_and_no_boxes_overlap() {
        for (name, input) in cases() {
            let l = layout(&input);
            assert_eq!(l.nodes.len(), input.cluster.len(), "{name}");
            for &(a, b) in &input.edges {
                let (ra, rb) = (l.nodes[a], l.nodes[b]);
                assert!(rb.y >= ra.y + ra.h, "{name}: edge {a}→{b} goes up");
            }
            for (i, a) in l.nodes.iter().enumerate() {
                for b in &l.nodes[i + 1..] {
                    assert!(!a.overlaps(b), "{name}: nodes overlap: {a:?} {b:?}");
                }
            }
            for (i, (a, _)) in l.clusters.iter().enumerate() {
                for (b, _) in &l.clusters[i + 1..] {
                    assert!(!a.overlaps(b), "{name}: clusters overlap");
                }
            }
            let page = Rect {
                x: 0.0,
                y: 0.0,
                w: l.width,
                h: l.height,
            };
            for (node, r) in l.nodes.iter().enumerate() {
                let held = l
                    .clusters
                    .iter()
                    .find(|(_, g)| g.contains(&input.cluster[node]))
                    .expect("every node's cluster is drawn");
                assert!(
                    held.0.contains(r),
                    "{name}: node {node} outside its cluster"
                );
                assert!(page.contains(r), "{name}: node {node} off the page");
            }
        }
    }

    #[test]
    fn a_cycle_merges_clusters_and_a_fan_wraps_into_a_window_shape() {
        let c = cases();
        // Two clusters over the same one sit side by side, not wrapped.
        let two = layout(&c[0].1);
        assert_eq!(two.nodes[2].y, two.nodes[6].y, "{:?}", two.nodes);
        let cycle = layout(&c[1].1);
        assert_eq!(cycle.clusters.len(), 1);
        assert_eq!(cycle.clusters[0].1, vec![0, 1]);
        let fan = layout(&c[3].1);
        assert_eq!(fan.clusters.len(), 61);
        let ratio = fan.width / fan.height;
        assert!(
            (0.8..3.0).contains(&ratio),
            "{} × {}",
            fan.width,
            fan.height
        );
    }

    #[test]
    fn barycenter_ordering_uncrosses_two_chains() {
        // Sources 0 and 1; 0's user is listed first in the next layer
        // after 1's, so the plain order would cross.
        let input = Input {
            cluster: vec![0, 1, 2, 3],
            clusters: 4,
            edges: vec![(1, 2), (0, 3)],
        };
        let l = layout(&input);
        let crosses = (l.nodes[0].x < l.nodes[1].x) != (l.nodes[3].x < l.nodes[2].x);
        assert!(!crosses, "{:?}", l.nodes);
    }
}
