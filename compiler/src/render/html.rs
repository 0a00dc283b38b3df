//! `rbk graph --format html` and `rbk build --graph-out`: one page, no
//! network, nothing fetched. The graph is laid out here, top-down
//! ([`super::layout`]): base images at the top, images at the bottom, the
//! steps of each stage of each image in a labelled box, the steps several
//! images share in a box of their own, each step titled by its
//! instruction. The page's script only fits, pans, zooms, searches and
//! shows details, so a graph of a thousand steps opens at once.
//!
//! Colour says what the cache holds or how a build went, a thick brown
//! border marks a step several images share, and after a build the
//! longest chain of durations (the critical path) is outlined in purple.

mod assets;

use std::collections::HashMap;
use std::fmt::Write as _;

use super::layout::{self, Rect, BOX_H, BOX_W, HEADER};
use super::{label, MarkState, Marks};
use crate::graph::{BuildGraph, Op, VertexId};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// A drawn group: the steps of one stage of one image, or those a set of
/// images shares.
struct Cluster {
    /// What the box says.
    label: String,
    /// The images whose steps it holds.
    images: Vec<String>,
    /// The stages they come from.
    stages: Vec<String>,
    /// An image's own box, closing no stage's box.
    lone: bool,
}

/// The clusters of the page and the cluster of each layout node: the
/// vertices (by index), then one node per image. A vertex goes with the
/// steps of the same users: one stage of one image, several stages of one
/// image (a base several stages start from), or a set of images, whatever
/// each Dockerfile calls the stage.
fn clusters(g: &BuildGraph) -> (Vec<usize>, Vec<Cluster>) {
    let mut keys: HashMap<(Vec<String>, Vec<String>), usize> = HashMap::new();
    let mut found: Vec<Cluster> = Vec::new();
    let mut of = Vec::with_capacity(g.len() + g.images.len());
    for id in g.topo_order() {
        let v = g.vertex(id);
        let mut images: Vec<String> = v.origins.iter().map(|o| o.image.clone()).collect();
        images.sort();
        images.dedup();
        let mut stages: Vec<String> = Vec::new();
        for o in &v.origins {
            if !stages.contains(&o.stage) {
                stages.push(o.stage.clone());
            }
        }
        let key = match images.len() {
            1 => (images.clone(), stages.clone()),
            _ => (images.clone(), Vec::new()),
        };
        let at = *keys.entry(key).or_insert_with(|| {
            let label = match (images.as_slice(), stages.as_slice()) {
                ([one], [stage]) => format!("{one} · stage {stage}"),
                ([one], many) => format!("{one} · stages {}", many.join(", ")),
                ([], _) => "steps of no image".to_string(),
                (many, _) => format!("shared by {} images: {}", many.len(), many.join(", ")),
            };
            found.push(Cluster {
                label,
                images,
                stages: Vec::new(),
                lone: false,
            });
            found.len() - 1
        });
        for s in stages {
            if !found[at].stages.contains(&s) {
                found[at].stages.push(s);
            }
        }
        of.push(at);
    }
    for img in &g.images {
        // An image closes its last stage's box when that box is its own.
        let last = of[img.vertex.index()];
        let c = if found[last].images == [img.name.clone()] {
            last
        } else {
            let label = format!("image {}", img.name);
            found.push(Cluster {
                label,
                images: vec![img.name.clone()],
                stages: vec![img.stage.clone()],
                lone: true,
            });
            found.len() - 1
        };
        of.push(c);
    }
    (of, found)
}

/// The layout input: vertices then images, an edge per input and one
/// from each image's last step to the image.
fn layout_input(g: &BuildGraph, cluster: Vec<usize>, clusters: usize) -> layout::Input {
    let mut edges = Vec::new();
    for id in g.topo_order() {
        let v = g.vertex(id);
        for p in v.parent.iter().chain(&v.inputs) {
            edges.push((p.index(), id.index()));
        }
    }
    for (n, img) in g.images.iter().enumerate() {
        edges.push((img.vertex.index(), g.len() + n));
    }
    edges.sort_unstable();
    edges.dedup();
    layout::Input {
        cluster,
        clusters,
        edges,
    }
}

/// The longest chain of durations: the vertices on it (flags by index)
/// and its total, when the marks hold durations.
fn critical_path(g: &BuildGraph, marks: &Marks<'_>) -> Option<(Vec<bool>, f64, usize)> {
    let secs = |id: VertexId| marks.of(id).and_then(|m| m.seconds).unwrap_or(0.0);
    if !g.topo_order().into_iter().any(|id| secs(id) > 0.0) {
        return None;
    }
    let mut best = vec![0.0f64; g.len()];
    let mut via: Vec<Option<VertexId>> = vec![None; g.len()];
    for id in g.topo_order() {
        let v = g.vertex(id);
        let before = v
            .parent
            .iter()
            .chain(&v.inputs)
            .max_by(|a, b| best[a.index()].total_cmp(&best[b.index()]).then(b.cmp(a)));
        best[id.index()] = secs(id) + before.map_or(0.0, |p| best[p.index()]);
        via[id.index()] = before.copied();
    }
    let end = g
        .topo_order()
        .into_iter()
        // On a tie, the later vertex: the chain runs on to the image.
        .max_by(|a, b| best[a.index()].total_cmp(&best[b.index()]).then(a.cmp(b)))?;
    let mut on = vec![false; g.len()];
    let mut at = Some(end);
    let mut steps = 0;
    while let Some(id) = at {
        on[id.index()] = true;
        steps += 1;
        at = via[id.index()];
    }
    Some((on, best[end.index()], steps))
}

/// Everything the page shows for a vertex beyond its box: the details
/// panel's text.
fn info(g: &BuildGraph, id: VertexId, users: usize, marks: &Marks<'_>, critical: bool) -> String {
    let v = g.vertex(id);
    let mut out = String::new();
    let text = v.origins.first().map_or(v.created_by.as_str(), |o| &o.text);
    let _ = writeln!(out, "{}", shorten(text, 600));
    let _ = writeln!(out, "{} · {}", v.op.kind(), v.digest);
    for o in &v.origins {
        let _ = writeln!(
            out,
            "{}:{} (image {}, stage {})",
            o.file, o.line, o.image, o.stage
        );
    }
    if users > 1 {
        let _ = writeln!(out, "shared by {users} images");
    }
    if let Some(m) = marks.of(id) {
        let _ = write!(out, "{}", state_words(m.state));
        if let Some(s) = m.seconds {
            let _ = write!(out, " in {s:.2} s");
        }
        out.push('\n');
        if let Some(r) = &m.reason {
            let _ = writeln!(out, "why: {r}");
        }
    }
    if critical {
        out.push_str("on the critical path\n");
    }
    out.trim_end().to_string()
}

fn state_words(s: MarkState) -> &'static str {
    match s {
        MarkState::Base => "base image",
        MarkState::Cached => "cached",
        MarkState::Run => "runs",
        MarkState::Failed => "failed",
        MarkState::Cancelled => "cancelled",
    }
}

/// One vertex's box: titled by its instruction, its kind, line, duration
/// and sharing (`users`: the images that need it) under it; its state as
/// a class.
fn vertex(
    g: &BuildGraph,
    id: VertexId,
    r: Rect,
    users: usize,
    marks: &Marks<'_>,
    critical: bool,
) -> String {
    let v = g.vertex(id);
    let mark = marks.of(id);
    let mut classes = vec!["vertex"];
    if let Some(m) = mark {
        classes.push(m.state.word());
    } else if matches!(v.op, Op::Source { .. }) {
        classes.push("base");
    }
    if users > 1 {
        classes.push("shared");
    }
    let mut meta = v.op.kind().to_string();
    if let Some(o) = v.origins.first().filter(|o| o.line > 0) {
        let _ = write!(meta, " · line {}", o.line);
    }
    if let Some(s) = mark.and_then(|m| m.seconds) {
        let _ = write!(meta, " · {s:.1}s");
    }
    if users > 1 {
        let _ = write!(meta, " · shared ×{users}");
    }
    let inputs: Vec<String> = v
        .parent
        .iter()
        .chain(&v.inputs)
        .map(|p| format!("v{}", p.index()))
        .collect();
    let mut search: Vec<&str> = v.origins.iter().map(|o| o.image.as_str()).collect();
    search.dedup();
    format!(
        r#"<g class="{classes}" id="v{n}" data-in="{inputs}" data-images="{images}"{crit} data-info="{info}" tabindex="0" transform="translate({x:.0},{y:.0})"><rect width="{BOX_W}" height="{BOX_H}" rx="5"/><text x="8" y="16" class="t">{title}</text><text x="8" y="32" class="m">{meta}</text></g>"#,
        classes = classes.join(" "),
        n = id.index(),
        inputs = inputs.join(" "),
        images = esc(&search.join(" ")),
        crit = if critical {
            r#" data-critical="1""#
        } else {
            ""
        },
        info = esc(&info(g, id, users, marks, critical)),
        x = r.x,
        y = r.y,
        title = esc(&label(g, id, 32)),
        meta = esc(&shorten(&meta, 36)),
    )
}

/// Image `n`'s box at the bottom of its last stage (or alone).
fn image(g: &BuildGraph, n: usize, r: Rect) -> String {
    let img = &g.images[n];
    let tags = if img.tags.is_empty() {
        "(no tags)".to_string()
    } else {
        img.tags.join(", ")
    };
    let mut info = format!(
        "image {}\n{tags}\n{} (stage {}) · {}",
        img.name, img.file, img.stage, img.platform
    );
    if !img.built_on.is_empty() {
        let _ = write!(info, "\nbuilt on {}", img.built_on.join(", "));
    }
    format!(
        r#"<g class="image" id="i{n}" data-in="v{last}" data-images="{name}" data-name="{name}" data-info="{info}" tabindex="0" transform="translate({x:.0},{y:.0})"><rect width="{BOX_W}" height="{BOX_H}" rx="5"/><text x="8" y="16" class="t">image {short}</text><text x="8" y="32" class="m">{tags_short}</text></g>"#,
        last = img.vertex.index(),
        name = esc(&img.name),
        info = esc(&info),
        x = r.x,
        y = r.y,
        short = esc(&shorten(&img.name, 26)),
        tags_short = esc(&shorten(&tags, 36)),
    )
}

/// A cluster's label in `fits` characters: a long image name (a
/// Dockerfile's path) loses its start, so the stage stays readable.
fn fit_label(c: &Cluster, fits: usize) -> String {
    let n = c.label.chars().count();
    match c.images.as_slice() {
        [one] if n > fits && c.label.starts_with(one.as_str()) => {
            let tail = &c.label[one.len()..];
            let room = fits.saturating_sub(tail.chars().count() + 1);
            if room < 6 {
                return shorten(&c.label, fits);
            }
            let skip = one.chars().count().saturating_sub(room);
            let end: String = one.chars().skip(skip).collect();
            format!("…{end}{tail}")
        }
        _ => shorten(&c.label, fits),
    }
}

/// A cluster's box and label.
fn cluster(c: &Cluster, r: Rect) -> String {
    let fits = ((r.w - 16.0) / 7.0).max(8.0) as usize;
    let shared = c.images.len() > 1;
    let class = match (c.lone, shared) {
        (true, _) => "cluster lone",
        (_, true) => "cluster common",
        _ => "cluster",
    };
    let title = format!("{} (stages: {})", c.label, c.stages.join(", "));
    format!(
        r#"<g class="{class}" data-label="{label}" data-images="{images}" transform="translate({x:.0},{y:.0})"><title>{title}</title><rect width="{w:.0}" height="{h:.0}" rx="8"/><text x="10" y="{ty:.0}">{short}</text></g>"#,
        label = esc(&c.label),
        images = esc(&c.images.join(" ")),
        title = esc(&title),
        x = r.x,
        y = r.y,
        w = r.w,
        h = r.h,
        ty = HEADER - 8.0,
        short = esc(&fit_label(c, fits)),
    )
}

/// An edge from the bottom of one box to the top of another.
fn edge(from: (&str, Rect), to: (&str, Rect), class: &str, critical: bool) -> String {
    let (x1, y1) = (from.1.x + from.1.w / 2.0, from.1.y + from.1.h);
    let (x2, y2) = (to.1.x + to.1.w / 2.0, to.1.y);
    let bend = ((y2 - y1) / 2.0).max(12.0);
    format!(
        r#"<path class="edge{class}" data-from="{f}" data-to="{t}"{crit} d="M{x1:.0},{y1:.0} C{x1:.0},{c1:.0} {x2:.0},{c2:.0} {x2:.0},{y2:.0}"/>"#,
        f = from.0,
        t = to.0,
        crit = if critical {
            r#" data-critical="1""#
        } else {
            ""
        },
        c1 = y1 + bend,
        c2 = y2 - bend,
    )
}

/// The page for `g`.
pub(super) fn page(g: &BuildGraph, marks: &Marks<'_>) -> String {
    let (of, found) = clusters(g);
    let input = layout_input(g, of, found.len());
    let l = layout::layout(&input);
    let critical = critical_path(g, marks);
    let on = |i: usize| critical.as_ref().is_some_and(|c| c.0.get(i) == Some(&true));
    let mut boxes = String::new();
    for (r, members) in &l.clusters {
        boxes.push_str(&cluster(&found[members[0]], *r));
    }
    let name = |i: usize| match i.checked_sub(g.len()) {
        Some(n) => format!("i{n}"),
        None => format!("v{i}"),
    };
    let mut edges = String::new();
    for &(a, b) in &input.edges {
        let class = if b >= g.len() {
            " image"
        } else if g.vertex(VertexId::new(b)).parent.map(|p| p.index()) == Some(a) {
            ""
        } else {
            " from"
        };
        let crit = b < g.len() && on(a) && on(b);
        edges.push_str(&edge(
            (&name(a), l.nodes[a]),
            (&name(b), l.nodes[b]),
            class,
            crit,
        ));
    }
    // Each vertex's image users, found once: the box, its details and
    // the summary all show them, and each count walks every image.
    let users: Vec<usize> = g
        .topo_order()
        .into_iter()
        .map(|id| g.image_users(id))
        .collect();
    let mut nodes = String::new();
    for id in g.topo_order() {
        let i = id.index();
        nodes.push_str(&vertex(g, id, l.nodes[i], users[i], marks, on(i)));
    }
    for n in 0..g.images.len() {
        nodes.push_str(&image(g, n, l.nodes[g.len() + n]));
    }
    let shared = users.iter().filter(|&&u| u > 1).count();
    let mut summary = format!(
        "{} image{}, {} vertices ({shared} shared)",
        g.images.len(),
        if g.images.len() == 1 { "" } else { "s" },
        g.len(),
    );
    if let Some((_, total, steps)) = &critical {
        let _ = write!(summary, " · critical path {total:.1} s over {steps} steps");
    }
    let svg = format!(
        r#"<g class="clusters">{boxes}</g><g class="edges">{edges}</g><g class="nodes">{nodes}</g>"#
    );
    assets::document(&summary, &image_options(g), (l.width, l.height), &svg)
}

/// The image picker's options.
fn image_options(g: &BuildGraph) -> String {
    let mut out = String::new();
    for (n, img) in g.images.iter().enumerate() {
        let _ = write!(out, r#"<option value="i{n}">{}</option>"#, esc(&img.name));
    }
    out
}
