//! `rbk graph --format html` and `rbk build --graph-out`: one page, no
//! network, nothing fetched. Vertices are laid out in columns by depth
//! (sources left, images right) as an inline SVG; colour says what the cache
//! holds (or how a build went), a thick border marks a vertex several images
//! share, and hovering a vertex shows its instruction, Dockerfile line and,
//! for a step that runs, why.

use std::fmt::Write as _;

use super::{label, MarkState, Marks};
use crate::graph::{BuildGraph, Op, VertexId};

const BOX_W: usize = 240;
const BOX_H: usize = 46;
const COL_W: usize = 290;
const ROW_H: usize = 62;
const PAD: usize = 24;

/// The page's style.
const STYLE: &str = r#"body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 10px 16px; border-bottom: 1px solid #ddd; display: flex; gap: 24px; align-items: center; flex-wrap: wrap; }
h1 { font-size: 15px; margin: 0; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #888; border-radius: 3px; }
#details { position: fixed; right: 12px; bottom: 12px; max-width: 46em; white-space: pre-wrap; background: #fffef4; border: 1px solid #bbb; padding: 8px 10px; font-family: ui-monospace, monospace; font-size: 12px; display: none; }
svg text { font-family: ui-monospace, monospace; font-size: 11px; pointer-events: none; }
svg .kind { font-weight: 600; }
.vertex rect, .image rect { stroke: #666; stroke-width: 1; fill: #fff; }
.vertex.shared rect { stroke-width: 3; stroke: #8a6d00; }
.vertex.base rect, .legend .base { fill: #dde6f3; background: #dde6f3; }
.vertex.cached rect, .legend .cached { fill: #cfead0; background: #cfead0; }
.vertex.run rect, .legend .run { fill: #ffd8a8; background: #ffd8a8; }
.image rect { fill: #eee; stroke-dasharray: 4 2; }
.vertex:hover rect, .image:hover rect { stroke: #000; stroke-width: 2; }
path { fill: none; stroke: #999; stroke-width: 1.2; }
path.from { stroke-dasharray: 5 3; stroke: #5a7fb5; }
path.image { stroke: #bbb; }
"#;

/// Details on hover, and a count of what was drawn (which a test reads
/// back from a real browser).
const SCRIPT: &str = r#"(function () {
  var details = document.getElementById('details');
  var shown = document.querySelectorAll('g.vertex, g.image');
  shown.forEach(function (g) {
    g.addEventListener('mouseenter', function () { details.textContent = g.getAttribute('data-info'); details.style.display = 'block'; });
    g.addEventListener('mouseleave', function () { details.style.display = 'none'; });
  });
  document.body.setAttribute('data-rendered', String(document.querySelectorAll('g.vertex').length));
})();
"#;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where each vertex goes: a column per depth (one more than its deepest
/// input), a row per vertex within it. Returns the positions, the images'
/// column and the drawing's height.
fn layout(g: &BuildGraph, order: &[VertexId]) -> (Vec<(usize, usize)>, usize, usize) {
    let mut depth = vec![0usize; g.len()];
    for &id in order {
        let v = g.vertex(id);
        depth[id.index()] = v
            .parent
            .iter()
            .chain(&v.inputs)
            .map(|p| depth[p.index()] + 1)
            .max()
            .unwrap_or(0);
    }
    let columns = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut rows = vec![0usize; columns + 1];
    let mut at = vec![(0usize, 0usize); g.len()];
    for &id in order {
        let d = depth[id.index()];
        at[id.index()] = (PAD + d * COL_W, PAD + rows[d] * ROW_H);
        rows[d] += 1;
    }
    let image_col = PAD + columns * COL_W;
    let height = PAD * 2 + rows.iter().copied().max().unwrap_or(1).max(g.images.len()) * ROW_H;
    (at, image_col, height)
}

/// The box of image `n` in the images' column, and its edge.
fn image_box(
    g: &BuildGraph,
    n: usize,
    at: &[(usize, usize)],
    image_col: usize,
) -> (String, String) {
    let img = &g.images[n];
    let (vx, vy) = at[img.vertex.index()];
    let y = PAD + n * ROW_H;
    let edge = curve(
        vx + BOX_W,
        vy + BOX_H / 2,
        image_col,
        y + BOX_H / 2,
        " image",
    );
    let tags = if img.tags.is_empty() {
        "(no tags)".to_string()
    } else {
        img.tags.join(", ")
    };
    let on = if img.built_on.is_empty() {
        String::new()
    } else {
        format!("\nbuilt on {}", img.built_on.join(", "))
    };
    let info = format!(
        "image {}\n{}\n{} (stage {}){on}",
        img.name, tags, img.file, img.stage
    );
    let node = format!(
        r#"<g class="image" data-info="{info}"><rect x="{image_col}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="2"/><text x="{tx}" y="{ty1}" class="kind">image {name}</text><text x="{tx}" y="{ty2}">{tags_short}</text><title>{info}</title></g>"#,
        info = esc(&info),
        tx = image_col + 8,
        ty1 = y + 18,
        ty2 = y + 36,
        name = esc(&img.name),
        tags_short = esc(&shorten(&tags, 34)),
    );
    (edge, node)
}

/// The page for `g`.
pub(super) fn page(g: &BuildGraph, marks: &Marks<'_>) -> String {
    let order = g.topo_order();
    let (at, image_col, height) = layout(g, &order);
    let width = image_col + BOX_W + PAD;
    let mut edges = String::new();
    let mut nodes = String::new();
    for &id in &order {
        let v = g.vertex(id);
        let (x, y) = at[id.index()];
        for (n, p) in v.parent.iter().chain(&v.inputs).enumerate() {
            let (px, py) = at[p.index()];
            let class = if n == 0 && v.parent.is_some() {
                ""
            } else {
                " from"
            };
            edges.push_str(&curve(px + BOX_W, py + BOX_H / 2, x, y + BOX_H / 2, class));
        }
        nodes.push_str(&vertex(g, id, x, y, marks));
    }
    for n in 0..g.images.len() {
        let (edge, node) = image_box(g, n, &at, image_col);
        edges.push_str(&edge);
        nodes.push_str(&node);
    }
    let summary = format!(
        "{} image{}, {} vertices ({} shared)",
        g.images.len(),
        if g.images.len() == 1 { "" } else { "s" },
        g.len(),
        order.iter().filter(|&&id| g.image_users(id) > 1).count()
    );
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rbk build graph</title>
<style>
{STYLE}</style></head>
<body>
<header><h1>rbk build graph</h1><span id="summary">{summary}</span>
<span class="legend"><span class="base">base image</span><span class="cached">cached</span><span class="run">runs</span><span style="border-width:3px">shared</span></span></header>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
<g class="edges">{edges}</g>
<g class="nodes">{nodes}</g>
</svg>
<div id="details"></div>
<script>
{SCRIPT}</script>
</body></html>
"##
    )
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

/// An edge from the right side of one box to the left side of another.
fn curve(x1: usize, y1: usize, x2: usize, y2: usize, class: &str) -> String {
    let mid = (x1 + x2) / 2;
    format!(r#"<path class="edge{class}" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"/>"#)
}

/// One vertex's box, its state as a class, its details for hovering.
fn vertex(g: &BuildGraph, id: VertexId, x: usize, y: usize, marks: &Marks<'_>) -> String {
    let v = g.vertex(id);
    let mark = marks.of(id);
    let mut classes = vec!["vertex"];
    if let Some(m) = mark {
        classes.push(m.state.word());
    } else if matches!(v.op, Op::Source { .. }) {
        classes.push("base");
    }
    let users = g.image_users(id);
    if users > 1 {
        classes.push("shared");
    }
    let mut info = String::new();
    let _ = writeln!(info, "{} {}", v.op.kind(), v.digest.short());
    for o in &v.origins {
        let _ = writeln!(
            info,
            "{}:{} (image {}, stage {})",
            o.file, o.line, o.image, o.stage
        );
    }
    if let Some(o) = v.origins.first() {
        let _ = writeln!(info, "{}", o.text);
    }
    if users > 1 {
        let _ = writeln!(info, "shared by {users} images");
    }
    if let Some(m) = mark {
        let state = match m.state {
            MarkState::Base => "base image",
            MarkState::Cached => "cached",
            MarkState::Run => "runs",
        };
        let _ = write!(info, "{state}");
        if let Some(s) = m.seconds {
            let _ = write!(info, " in {s:.2} s");
        }
        if let Some(r) = &m.reason {
            let _ = write!(info, "\n{r}");
        }
    }
    let info = esc(info.trim_end());
    let line = v
        .origins
        .first()
        .map(|o| format!(":{}", o.line))
        .unwrap_or_default();
    let secs = mark
        .and_then(|m| m.seconds)
        .map(|s| format!("  {s:.1}s"))
        .unwrap_or_default();
    format!(
        r#"<g class="{classes}" data-id="v{n}" data-info="{info}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4"/><text x="{tx}" y="{ty1}" class="kind">{kind} {digest}{line}{secs}</text><text x="{tx}" y="{ty2}">{text}</text><title>{info}</title></g>"#,
        classes = classes.join(" "),
        n = id.index(),
        tx = x + 8,
        ty1 = y + 18,
        ty2 = y + 36,
        kind = v.op.kind(),
        digest = v.digest.short(),
        text = esc(&label(g, id, 32)),
    )
}
