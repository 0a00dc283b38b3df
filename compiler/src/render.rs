//! Renders a [`BuildGraph`] as a readable tree, Graphviz dot, Mermaid,
//! JSON (schema `rbk.graph/v1`, documented in `docs/graph.md`) or one
//! self-contained HTML page; each optionally marked with what the cache
//! holds or how a build went ([`Mark`]).

mod html;
mod layout;

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::{BuildGraph, ImageOutput, Vertex, VertexId};

/// Output formats of `rbk graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tree of images, stages and steps.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// JSON, schema `rbk.graph/v1`.
    Json,
    /// One self-contained HTML page with the graph laid out.
    Html,
}

/// What is known of a vertex besides the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Its state.
    pub state: MarkState,
    /// Why it runs (as `--explain` says), for a step that does.
    pub reason: Option<String>,
    /// How long it took, after a build.
    pub seconds: Option<f64>,
}

/// A vertex's state against the store, or in a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkState {
    /// A base image.
    Base,
    /// The cache has (or served) its result.
    Cached,
    /// It would run (before a build) or ran (after one).
    Run,
    /// It ran and failed (after a build).
    Failed,
    /// It was stopped before it finished: the build was interrupted, or
    /// another step failed (after a build).
    Cancelled,
}

impl MarkState {
    pub(crate) fn word(self) -> &'static str {
        match self {
            MarkState::Base => "base",
            MarkState::Cached => "cached",
            MarkState::Run => "run",
            MarkState::Failed => "failed",
            MarkState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "dot" => Ok(Format::Dot),
            "mermaid" => Ok(Format::Mermaid),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown format {other:?} (use text, dot, mermaid, json or html)"
            )),
        }
    }
}

/// Renders `g` in `format`.
pub fn render(g: &BuildGraph, format: Format) -> String {
    render_marked(g, format, &[])
}

/// Renders `g` in `format` with `marks` (by vertex index; may be shorter
/// than the graph, or empty).
pub fn render_marked(g: &BuildGraph, format: Format, marks: &[Option<Mark>]) -> String {
    let m = Marks(marks);
    match format {
        Format::Text => text(g, &m),
        Format::Dot => dot(g),
        Format::Mermaid => mermaid(g),
        Format::Json => json(g, &m),
        Format::Html => html::page(g, &m),
    }
}

/// Marks by vertex.
struct Marks<'a>(&'a [Option<Mark>]);

impl Marks<'_> {
    fn of(&self, id: VertexId) -> Option<&Mark> {
        self.0.get(id.index()).and_then(Option::as_ref)
    }
}

/// The instruction text of a vertex: its first line, shortened.
fn label(g: &BuildGraph, id: VertexId, max: usize) -> String {
    let v = g.vertex(id);
    let text = v
        .origins
        .first()
        .map(|o| o.text.as_str())
        .unwrap_or(v.created_by.as_str());
    let first = text.lines().next().unwrap_or("");
    let one: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    let more = text.lines().nth(1).is_some();
    if one.chars().count() > max {
        let cut: String = one.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else if more {
        format!("{one} …")
    } else {
        one
    }
}

fn text(g: &BuildGraph, marks: &Marks<'_>) -> String {
    let shared = g
        .graph
        .node_indices()
        .filter(|&id| g.image_users(id) > 1)
        .count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} image{}, {} vertices ({} shared)",
        g.images.len(),
        if g.images.len() == 1 { "" } else { "s" },
        g.len(),
        shared
    );
    for img in &g.images {
        image_text(&mut out, g, img, marks);
    }
    for w in &g.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out
}

/// One image's tree: its stages, each with its steps.
fn image_text(out: &mut String, g: &BuildGraph, img: &ImageOutput, marks: &Marks<'_>) {
    let tags = if img.tags.is_empty() {
        String::new()
    } else {
        format!(" → {}", img.tags.join(", "))
    };
    let on = if img.built_on.is_empty() {
        String::new()
    } else {
        format!(", built on {}", img.built_on.join(", "))
    };
    let _ = writeln!(
        out,
        "\nimage {}{tags}  ({}, stage {}{on})",
        img.name, img.file, img.stage
    );
    let stages = stages_of(g, img);
    let n = stages.len();
    for (si, (stage, list)) in stages.iter().enumerate() {
        let last_stage = si + 1 == n;
        let _ = writeln!(
            out,
            "  {} stage {stage}",
            if last_stage { "└─" } else { "├─" }
        );
        let bar = if last_stage { "   " } else { "│  " };
        for (vi, &id) in list.iter().enumerate() {
            let branch = if vi + 1 == list.len() {
                "└─"
            } else {
                "├─"
            };
            let v = g.vertex(id);
            let _ = writeln!(
                out,
                "  {bar}{branch} {} {:<7} {}{}",
                v.digest.short(),
                v.op.kind(),
                label(g, id, 64),
                notes(g, img, id, marks)
            );
        }
    }
}

/// The vertices `img` needs, grouped by the stage they belong to for it,
/// in order of appearance.
fn stages_of(g: &BuildGraph, img: &ImageOutput) -> Vec<(String, Vec<VertexId>)> {
    let mut stages: Vec<(String, Vec<VertexId>)> = Vec::new();
    let mut stage_at: HashMap<String, usize> = HashMap::new();
    for id in g.ancestors(img.vertex) {
        let v = g.vertex(id);
        let own = v.origins.iter().any(|o| o.image == img.name);
        let stage = match (own, v.origins.first()) {
            // A step of another image this one is built on.
            (false, Some(o)) => format!("{} of image {}", o.stage, o.image),
            _ => stage_for(v, img).map(str::to_string).unwrap_or_default(),
        };
        match stage_at.get(&stage) {
            Some(&at) => stages[at].1.push(id),
            None => {
                stage_at.insert(stage.clone(), stages.len());
                stages.push((stage, vec![id]));
            }
        }
    }
    stages
}

/// The stage `v` belongs to for `img` (or for its first user).
fn stage_for<'g>(v: &'g Vertex, img: &ImageOutput) -> Option<&'g str> {
    v.origins
        .iter()
        .find(|o| o.image == img.name)
        .or(v.origins.first())
        .map(|o| o.stage.as_str())
}

/// `  [shared ×2, ← stage build]`: how many images share the vertex and
/// which stages it reads from; empty when neither.
fn notes(g: &BuildGraph, img: &ImageOutput, id: VertexId, marks: &Marks<'_>) -> String {
    let users = g.image_users(id);
    let mut notes = Vec::new();
    match marks.of(id) {
        Some(Mark {
            state: MarkState::Cached,
            ..
        }) => notes.push("cached".to_string()),
        Some(Mark {
            state: MarkState::Run,
            reason,
            ..
        }) => notes.push(match reason {
            Some(r) => format!("to run: {}", r.lines().next().unwrap_or("")),
            None => "to run".to_string(),
        }),
        _ => {}
    }
    if users > 1 {
        notes.push(format!("shared ×{users}"));
    }
    for input in &g.vertex(id).inputs {
        let src = stage_for(g.vertex(*input), img)
            .map(|s| format!("stage {s}"))
            .unwrap_or_default();
        notes.push(format!("← {src}"));
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("  [{}]", notes.join(", "))
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(g: &BuildGraph) -> String {
    let mut out = String::from(
        "digraph rbk {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    for id in g.topo_order() {
        let v = g.vertex(id);
        let style = match (v.op.kind(), g.image_users(id) > 1) {
            (_, true) => ", style=filled, fillcolor=\"#ffe9a8\"",
            ("config", _) => ", style=dashed",
            ("source", _) => ", shape=cylinder",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  v{} [label=\"{} {}\\n{}\"{style}];",
            id.index(),
            v.op.kind(),
            v.digest.short(),
            dot_escape(&label(g, id, 48))
        );
    }
    for id in g.topo_order() {
        let v = g.vertex(id);
        if let Some(p) = v.parent {
            let _ = writeln!(out, "  v{} -> v{};", p.index(), id.index());
        }
        for i in &v.inputs {
            let _ = writeln!(
                out,
                "  v{} -> v{} [style=dashed, label=\"from\"];",
                i.index(),
                id.index()
            );
        }
    }
    for (n, img) in g.images.iter().enumerate() {
        let tags = if img.tags.is_empty() {
            img.name.clone()
        } else {
            img.tags.join("\\n")
        };
        let _ = writeln!(
            out,
            "  img{n} [label=\"{}\\n{}\", shape=folder, style=bold];\n  v{} -> img{n};",
            dot_escape(&img.name),
            dot_escape(&tags),
            img.vertex.index()
        );
    }
    for (n, img) in g.images.iter().enumerate() {
        for on in &img.built_on {
            if let Some(m) = g.images.iter().position(|i| &i.name == on) {
                let _ = writeln!(
                    out,
                    "  img{m} -> img{n} [style=dotted, label=\"built on\"];"
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn mermaid(g: &BuildGraph) -> String {
    let mut out = String::from("flowchart TD\n");
    for id in g.topo_order() {
        let v = g.vertex(id);
        let text = format!(
            "{} {}<br/>{}",
            v.op.kind(),
            v.digest.short(),
            mermaid_escape(&label(g, id, 48))
        );
        let _ = match v.op.kind() {
            "source" => writeln!(out, "  v{}[(\"{text}\")]", id.index()),
            _ => writeln!(out, "  v{}[\"{text}\"]", id.index()),
        };
        if g.image_users(id) > 1 {
            let _ = writeln!(out, "  class v{} shared", id.index());
        }
    }
    for id in g.topo_order() {
        let v = g.vertex(id);
        if let Some(p) = v.parent {
            let _ = writeln!(out, "  v{} --> v{}", p.index(), id.index());
        }
        for i in &v.inputs {
            let _ = writeln!(out, "  v{} -.->|from| v{}", i.index(), id.index());
        }
    }
    for (n, img) in g.images.iter().enumerate() {
        let tags = if img.tags.is_empty() {
            img.name.clone()
        } else {
            img.tags.join(", ")
        };
        let _ = writeln!(
            out,
            "  img{n}[/\"{}: {}\"/]\n  v{} --> img{n}",
            mermaid_escape(&img.name),
            mermaid_escape(&tags),
            img.vertex.index()
        );
    }
    out.push_str("  classDef shared fill:#ffe9a8\n");
    out
}

#[derive(Serialize)]
struct JsonGraph<'a> {
    schema: &'static str,
    vertices: Vec<JsonVertex<'a>>,
    images: Vec<JsonImage<'a>>,
    warnings: &'a [String],
}

#[derive(Serialize)]
struct JsonOrigin<'a> {
    image: &'a str,
    stage: &'a str,
    file: &'a str,
    line: u32,
}

#[derive(Serialize)]
struct JsonVertex<'a> {
    id: String,
    digest: String,
    kind: &'static str,
    stage: &'a str,
    instruction: &'a str,
    file: &'a str,
    line: u32,
    parent: Option<String>,
    inputs: Vec<String>,
    shared: bool,
    origins: Vec<JsonOrigin<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
}

#[derive(Serialize)]
struct JsonImage<'a> {
    name: &'a str,
    tags: &'a [String],
    file: &'a str,
    stage: &'a str,
    platform: &'a str,
    #[serde(rename = "final")]
    final_vertex: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    built_on: &'a [String],
}

fn vid(id: VertexId) -> String {
    format!("v{}", id.index())
}

fn json(g: &BuildGraph, marks: &Marks<'_>) -> String {
    let vertices = g
        .topo_order()
        .into_iter()
        .map(|id| {
            let v = g.vertex(id);
            let first = v.origins.first();
            JsonVertex {
                id: vid(id),
                digest: v.digest.to_string(),
                kind: v.op.kind(),
                stage: first.map(|o| o.stage.as_str()).unwrap_or(""),
                instruction: first.map(|o| o.text.as_str()).unwrap_or(""),
                file: first.map(|o| o.file.as_str()).unwrap_or(""),
                line: first.map(|o| o.line).unwrap_or(0),
                parent: v.parent.map(vid),
                inputs: v.parent.iter().chain(&v.inputs).map(|&i| vid(i)).collect(),
                shared: g.image_users(id) > 1,
                origins: v
                    .origins
                    .iter()
                    .map(|o| JsonOrigin {
                        image: &o.image,
                        stage: &o.stage,
                        file: &o.file,
                        line: o.line,
                    })
                    .collect(),
                state: marks.of(id).map(|m| m.state.word()),
                reason: marks.of(id).and_then(|m| m.reason.as_deref()),
                seconds: marks.of(id).and_then(|m| m.seconds),
            }
        })
        .collect();
    let images = g
        .images
        .iter()
        .map(|i| JsonImage {
            name: &i.name,
            tags: &i.tags,
            file: &i.file,
            stage: &i.stage,
            platform: &i.platform,
            final_vertex: vid(i.vertex),
            built_on: &i.built_on,
        })
        .collect();
    let doc = JsonGraph {
        schema: "rbk.graph/v1",
        vertices,
        images,
        warnings: &g.warnings,
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}
