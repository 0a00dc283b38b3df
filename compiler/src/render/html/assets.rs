//! The page around the drawing: its style, its controls, and the script
//! that fits, pans, zooms, searches and shows details. Everything is
//! inline; the page fetches nothing.

/// The page's style. Text is dark on light fills (and white on the dark
/// image boxes) for contrast; dimmed boxes are the only faint ones.
const STYLE: &str = r#"* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { font: 13px/1.4 system-ui, sans-serif; color: #1b1b1b; background: #fff; display: flex; flex-direction: column; }
header { padding: 8px 12px; border-bottom: 1px solid #c8ccd0; background: #f8f9fa; display: flex; gap: 8px 18px; align-items: center; flex-wrap: wrap; }
h1 { font-size: 15px; margin: 0; }
#summary, #matches, #help { color: #3d4449; }
.controls { display: flex; gap: 6px; align-items: center; }
#q { width: 24em; padding: 3px 6px; font: inherit; border: 1px solid #6b7378; border-radius: 4px; }
button, select { font: inherit; padding: 2px 9px; border: 1px solid #6b7378; border-radius: 4px; background: #fff; color: #1b1b1b; cursor: pointer; }
button:focus-visible, select:focus-visible, #q:focus-visible { outline: 2px solid #1a56db; outline-offset: 1px; }
.legend { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; }
.legend span { padding: 0 7px; border: 1px solid #6b7378; border-radius: 3px; background: #fff; }
.legend .base { background: #dbe7f7; } .legend .cached { background: #d3ecd4; } .legend .run { background: #ffe0b8; }
.legend .failed { background: #ffd6d6; border: 2px solid #b3261e; } .legend .cancelled { background: #ececec; border-style: dashed; }
.legend .shared { border: 3px solid #8a6d00; } .legend .crit { border: 3px solid #6a1b9a; }
.legend .img { background: #263238; color: #fff; border-color: #263238; }
main { flex: 1; position: relative; min-height: 0; overflow: hidden; }
#canvas { position: absolute; inset: 0; width: 100%; height: 100%; cursor: grab; touch-action: none; user-select: none; }
#canvas.dragging { cursor: grabbing; }
#details { position: absolute; right: 12px; bottom: 12px; max-width: min(48em, 60%); max-height: 45%; overflow: auto; white-space: pre-wrap; background: #fff; border: 1px solid #6b7378; border-radius: 6px; box-shadow: 0 2px 8px rgba(0,0,0,.15); padding: 8px 10px; font: 12px/1.45 ui-monospace, monospace; display: none; }
#details.shown { display: block; }
#help { position: absolute; left: 12px; bottom: 8px; font-size: 12px; background: rgba(255,255,255,.9); padding: 2px 6px; border-radius: 4px; }
svg text { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; fill: #1b1b1b; pointer-events: none; }
svg text.t { font-weight: 600; }
svg text.m { fill: #3d4449; font-size: 11px; }
.cluster rect { fill: #f3f5f7; stroke: #9aa4ad; stroke-width: 1; }
.cluster.common rect { fill: #fbf6e6; stroke: #b59a3c; }
.cluster.lone rect { fill: #eef1f4; stroke-dasharray: 5 3; }
.cluster text { font: 600 12px system-ui, sans-serif; fill: #2b3035; }
.vertex rect { fill: #fff; stroke: #6b7378; stroke-width: 1; }
.vertex.base rect { fill: #dbe7f7; } .vertex.cached rect { fill: #d3ecd4; } .vertex.run rect { fill: #ffe0b8; }
.vertex.failed rect { fill: #ffd6d6; stroke: #b3261e; stroke-width: 2; }
.vertex.cancelled rect { fill: #ececec; stroke-dasharray: 4 3; }
.vertex.shared rect { stroke: #8a6d00; stroke-width: 3; }
.vertex[data-critical] rect { stroke: #6a1b9a; stroke-width: 4; }
.image rect { fill: #263238; stroke: #263238; }
.image text.t { fill: #fff; } .image text.m { fill: #dfe6ea; }
.vertex, .image { cursor: pointer; outline: none; }
.vertex:hover rect, .image:hover rect, .vertex:focus rect, .image:focus rect { stroke: #1a56db; stroke-width: 3; }
.picked rect { stroke: #1a56db !important; stroke-width: 4 !important; }
.edge { fill: none; stroke: #8a939b; stroke-width: 1.3; }
.edge.from { stroke: #3f6fb5; stroke-dasharray: 6 3; }
.edge.image { stroke: #263238; }
.edge[data-critical] { stroke: #6a1b9a; stroke-width: 3.5; }
svg.focus .vertex, svg.focus .image, svg.focus .edge { opacity: .15; }
svg.focus .hl { opacity: 1; }
"#;

/// The page's behaviour: fit at load, pan (drag, arrows), zoom (wheel,
/// buttons, +/−), fit (button, 0), search (/), focus an image and its
/// ancestors, details on hover, focus and click. It also leaves what it
/// did on <body> as data attributes, which tests read from a real browser.
const SCRIPT: &str = r#"'use strict';
var svg = document.getElementById('canvas'), world = document.getElementById('world');
var details = document.getElementById('details'), q = document.getElementById('q');
var pick = document.getElementById('pick'), matches = document.getElementById('matches');
var W = +svg.dataset.width, H = +svg.dataset.height, BW = +svg.dataset.boxW, BH = +svg.dataset.boxH;
var view = { x: 0, y: 0, k: 1 }, fitK = 1, pinned = null, drag = null;
var all = document.querySelectorAll('g.vertex, g.image'), edges = document.querySelectorAll('path.edge');
var nodes = {}, pos = {};

function apply() { world.setAttribute('transform', 'translate(' + view.x + ',' + view.y + ') scale(' + view.k + ')'); }
function size() { var r = svg.getBoundingClientRect(); return { w: r.width, h: r.height }; }
function fitTo(x, y, w, h, max) {
  var s = size(), pad = 16;
  var k = Math.min((s.w - 2 * pad) / w, (s.h - 2 * pad) / h, max);
  view = { k: k, x: (s.w - w * k) / 2 - x * k, y: (s.h - h * k) / 2 - y * k };
  apply();
  return k;
}
function fit() { fitK = fitTo(0, 0, W, H, 1.5); }
function zoom(f, cx, cy) {
  var s = size();
  if (cx === undefined) { cx = s.w / 2; cy = s.h / 2; }
  var k = Math.max(0.02, Math.min(4, view.k * f));
  view.x = cx - (cx - view.x) * k / view.k;
  view.y = cy - (cy - view.y) * k / view.k;
  view.k = k;
  apply();
}
function pan(dx, dy) { view.x += dx; view.y += dy; apply(); }

// A node and everything it is built from.
function ancestors(id) {
  var seen = {}, stack = [id];
  while (stack.length) {
    var n = stack.pop();
    if (seen[n] || !nodes[n]) continue;
    seen[n] = true;
    (nodes[n].dataset.in || '').split(' ').forEach(function (p) { if (p) stack.push(p); });
  }
  return seen;
}
// Dims everything but `set` (nothing when null).
function highlight(set) {
  svg.classList.toggle('focus', !!set);
  all.forEach(function (g) { g.classList.toggle('hl', !!set && !!set[g.id]); });
  edges.forEach(function (e) { e.classList.toggle('hl', !!set && !!set[e.dataset.from] && !!set[e.dataset.to]); });
}
function fitSet(set) {
  var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  Object.keys(set).forEach(function (id) {
    var p = pos[id];
    x0 = Math.min(x0, p.x); y0 = Math.min(y0, p.y); x1 = Math.max(x1, p.x + BW); y1 = Math.max(y1, p.y + BH);
  });
  if (x0 < Infinity) fitTo(x0 - 20, y0 - 30, x1 - x0 + 40, y1 - y0 + 50, 1);
}
function show(g) {
  if (g) { details.textContent = g.dataset.info; details.classList.add('shown'); }
  else if (pinned) { details.textContent = pinned.dataset.info; }
  else { details.classList.remove('shown'); }
}
function select(g) {
  if (pinned) pinned.classList.remove('picked');
  pinned = g;
  if (g) { g.classList.add('picked'); highlight(ancestors(g.id)); } else { highlight(null); }
  show(g);
}
function clear() { q.value = ''; pick.value = ''; matches.textContent = ''; select(null); }
// Steps whose instruction holds the text, and those of the images whose
// names hold it.
function search() {
  var text = q.value.trim().toLowerCase();
  pick.value = '';
  if (!text) { matches.textContent = ''; highlight(null); return null; }
  var set = {}, n = 0;
  all.forEach(function (g) {
    var title = (g.dataset.info || '').split('\n')[0].toLowerCase();
    var images = (g.dataset.images || '').toLowerCase();
    if (title.indexOf(text) >= 0 || images.indexOf(text) >= 0) { set[g.id] = true; n++; }
  });
  matches.textContent = n + (n === 1 ? ' match' : ' matches');
  highlight(set);
  return set;
}
function onPick() {
  q.value = ''; matches.textContent = '';
  if (!pick.value) { select(null); fit(); return; }
  select(nodes[pick.value]);
  fitSet(ancestors(pick.value));
}
function wireControls() {
  q.addEventListener('input', search);
  q.addEventListener('keydown', function (e) {
    if (e.key === 'Enter') { var set = search(); if (set) fitSet(set); }
    if (e.key === 'Escape') { clear(); q.blur(); }
  });
  pick.addEventListener('change', onPick);
  document.getElementById('zoom-in').addEventListener('click', function () { zoom(1.25); });
  document.getElementById('zoom-out').addEventListener('click', function () { zoom(0.8); });
  document.getElementById('fit').addEventListener('click', fit);
  all.forEach(function (g) {
    g.addEventListener('mouseenter', function () { show(g); });
    g.addEventListener('mouseleave', function () { show(null); });
    g.addEventListener('focus', function () { show(g); });
    g.addEventListener('blur', function () { show(null); });
    g.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(g); } });
  });
}
// Drag pans; a click without a drag picks the step under it (or clears).
function wirePointer() {
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = svg.getBoundingClientRect();
    zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  svg.addEventListener('pointerdown', function (e) {
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false, on: e.target.closest('g.vertex, g.image') };
  });
  window.addEventListener('pointermove', function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true;
    svg.classList.add('dragging');
    view.x = drag.vx + dx; view.y = drag.vy + dy;
    apply();
  });
  window.addEventListener('pointerup', function () {
    if (drag && !drag.moved) select(drag.on === pinned ? null : drag.on);
    drag = null;
    svg.classList.remove('dragging');
  });
}
function onKey(e) {
  var t = e.target.tagName;
  if (t === 'INPUT' || t === 'SELECT' || e.ctrlKey || e.metaKey || e.altKey) return;
  var keys = {
    '/': function () { e.preventDefault(); q.focus(); },
    '+': function () { zoom(1.25); }, '=': function () { zoom(1.25); },
    '-': function () { zoom(0.8); }, '_': function () { zoom(0.8); },
    '0': fit, 'f': fit, 'Escape': clear,
    'ArrowLeft': function () { pan(80, 0); }, 'ArrowRight': function () { pan(-80, 0); },
    'ArrowUp': function () { pan(0, 80); }, 'ArrowDown': function () { pan(0, -80); }
  };
  if (keys[e.key]) { keys[e.key](); }
}
// What a test reads back from a real browser: counts, the fit, and
// whether it holds.
function report() {
  var b = world.getBoundingClientRect(), v = svg.getBoundingClientRect(), down = 0;
  edges.forEach(function (e) {
    var a = pos[e.dataset.from], z = pos[e.dataset.to];
    if (a && z && z.y >= a.y + BH) down++;
  });
  var inside = b.left >= v.left - 1 && b.top >= v.top - 1 && b.right <= v.right + 1 && b.bottom <= v.bottom + 1;
  var d = document.body.dataset;
  d.rendered = String(document.querySelectorAll('g.vertex').length);
  d.images = String(document.querySelectorAll('g.image').length);
  d.clusters = String(document.querySelectorAll('g.cluster').length);
  d.edges = String(edges.length);
  d.edgesDown = String(down);
  d.fitScale = fitK.toFixed(4);
  d.viewport = [v.left, v.top, v.right, v.bottom].map(Math.round).join(' ');
  d.contentBox = [b.left, b.top, b.right, b.bottom].map(Math.round).join(' ');
  d.fits = inside ? 'yes' : 'no';
}
// `#search=TEXT` or `#image=NAME` in the address starts there: a link
// to a view of the graph.
function fromHash() {
  var h = decodeURIComponent(location.hash.slice(1)), m;
  if ((m = /^search=(.*)$/.exec(h))) { q.value = m[1]; search(); }
  if ((m = /^image=(.*)$/.exec(h))) {
    Array.prototype.forEach.call(pick.options, function (o) { if (o.value && o.textContent === m[1]) pick.value = o.value; });
    if (pick.value) onPick();
  }
  document.body.dataset.highlighted = String(document.querySelectorAll('g.hl').length);
}

all.forEach(function (g) {
  nodes[g.id] = g;
  var m = /translate\(([-\d.]+),([-\d.]+)\)/.exec(g.getAttribute('transform'));
  pos[g.id] = { x: +m[1], y: +m[2] };
});
wireControls();
wirePointer();
document.addEventListener('keydown', onKey);
window.addEventListener('resize', fit);
fit();
report();
fromHash();
window.addEventListener('hashchange', fromHash);
"#;

/// The whole document: `summary` in the header, `options` for the image
/// picker, the drawing `svg` of `size` (width, height).
pub(super) fn document(summary: &str, options: &str, size: (f64, f64), svg: &str) -> String {
    let (w, h) = size;
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rbk build graph</title>
<style>
{STYLE}</style></head>
<body>
<header><h1>rbk build graph</h1><span id="summary">{summary}</span>
<div class="controls" role="toolbar" aria-label="Graph controls">
<input id="q" type="search" placeholder="Search images and instructions ( / )" aria-label="Search images and instructions">
<span id="matches" aria-live="polite"></span>
<select id="pick" aria-label="Focus an image and what it is built from"><option value="">All images</option>{options}</select>
<button id="zoom-out" title="Zoom out (−)" aria-label="Zoom out">−</button><button id="zoom-in" title="Zoom in (+)" aria-label="Zoom in">+</button><button id="fit" title="Fit the graph to the window (0)">Fit</button>
</div>
<div class="legend" aria-label="Legend"><span class="base">base image</span><span class="cached">cached</span><span class="run">runs</span><span class="failed">failed</span><span class="cancelled">cancelled</span><span class="shared">shared</span><span class="crit">critical path</span><span class="img">image</span></div>
</header>
<main>
<svg id="canvas" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="The build graph, top-down: base images at the top, images at the bottom" data-width="{w:.0}" data-height="{h:.0}" data-box-w="{bw}" data-box-h="{bh}"><g id="world">{svg}</g></svg>
<aside id="details" aria-live="polite"></aside>
<div id="help">drag to pan · wheel or + − to zoom · 0 fits · / searches · click or Enter on a step: details and what it is built from · Esc clears</div>
</main>
<script>
{SCRIPT}</script>
</body></html>
"##,
        bw = super::BOX_W,
        bh = super::BOX_H,
    )
}
