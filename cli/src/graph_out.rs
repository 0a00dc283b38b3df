//! `rbk build --graph-out FILE.html`: the graph page marked with how the
//! build went — after a success from its summary, after a failure from
//! what the progress reporter saw (the failed step, the steps stopped
//! with it, and those the build never reached).

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use rbk_compiler::graph::Op;
use rbk_compiler::render::{self, Mark, MarkState};
use rbk_compiler::BuildGraph;
use rbk_scheduler::progress::{Finish, Outcome, OutputStream, Reporter, Step};
use rbk_scheduler::BuildSummary;

/// How a step ended: its vertex, outcome, seconds and why it ran.
type Ended = (usize, Outcome, f64, Option<String>);

/// A reporter that passes everything on and keeps how each step ended.
pub(crate) struct Recorder<'a> {
    inner: &'a dyn Reporter,
    ended: Mutex<Vec<Ended>>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(inner: &'a dyn Reporter) -> Self {
        Recorder {
            inner,
            ended: Mutex::new(Vec::new()),
        }
    }
}

impl Reporter for Recorder<'_> {
    fn on_start(&self, step: &Step) {
        self.inner.on_start(step);
    }
    fn on_log(&self, step: &Step, stream: OutputStream, data: &[u8]) {
        self.inner.on_log(step, stream, data);
    }
    fn on_finish(&self, step: &Step, finish: &Finish) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.push((
                step.vertex,
                finish.outcome,
                finish.duration.as_secs_f64(),
                finish.explain.clone(),
            ));
        }
        self.inner.on_finish(step, finish);
    }
}

fn mark(state: MarkState, reason: Option<String>, seconds: Option<f64>) -> Option<Mark> {
    Some(Mark {
        state,
        reason,
        seconds,
    })
}

/// Base images marked as such, every other vertex unmarked.
fn bases(graph: &BuildGraph) -> Vec<Option<Mark>> {
    graph
        .topo_order()
        .into_iter()
        .map(|id| match graph.vertex(id).op {
            Op::Source { .. } => mark(MarkState::Base, None, None),
            _ => None,
        })
        .collect()
}

/// Metadata steps are not reported: each is as its parent when that ran
/// or was cached, else (after a failure) it never ran; `stopped` marks
/// what is still unmarked then.
fn fill_in(graph: &BuildGraph, marks: &mut [Option<Mark>], stopped: Option<&str>) {
    for id in graph.topo_order() {
        if marks[id.index()].is_some() {
            continue;
        }
        let parent = graph
            .vertex(id)
            .parent
            .and_then(|p| marks[p.index()].as_ref())
            .map(|m| m.state);
        marks[id.index()] = match (parent, stopped) {
            (Some(s @ (MarkState::Run | MarkState::Cached)), _) => mark(s, None, None),
            (_, Some(why)) => mark(MarkState::Cancelled, Some(why.to_string()), None),
            (Some(s), None) => mark(s, None, None),
            (None, None) => None,
        };
    }
}

/// How a successful build went, per vertex.
pub(crate) fn after_build(graph: &BuildGraph, summary: &BuildSummary) -> Vec<Option<Mark>> {
    let mut marks = bases(graph);
    for s in &summary.steps {
        if let Some(m) = marks.get_mut(s.vertex) {
            let state = match s.cached {
                true => MarkState::Cached,
                false => MarkState::Run,
            };
            *m = mark(state, None, Some(s.seconds));
        }
    }
    fill_in(graph, &mut marks, None);
    marks
}

/// How a failed build went, per vertex: `error` is why it failed.
pub(crate) fn after_failure(
    graph: &BuildGraph,
    recorder: &Recorder<'_>,
    error: &str,
) -> Vec<Option<Mark>> {
    let mut marks = bases(graph);
    let ended = recorder.ended.lock().map(|e| e.clone()).unwrap_or_default();
    for (vertex, outcome, seconds, explain) in ended {
        let Some(m) = marks.get_mut(vertex) else {
            continue;
        };
        *m = match outcome {
            Outcome::Ran => mark(MarkState::Run, explain, Some(seconds)),
            Outcome::Cached => mark(MarkState::Cached, None, Some(seconds)),
            Outcome::Failed => mark(MarkState::Failed, Some(error.to_string()), Some(seconds)),
            Outcome::Canceled => mark(
                MarkState::Cancelled,
                Some("stopped when the build failed or was interrupted".into()),
                Some(seconds),
            ),
        };
    }
    fill_in(graph, &mut marks, Some("not run: the build stopped first"));
    marks
}

/// Before a build (`rbk graph --format html` against a store): each step
/// that would run gets what it took when this store last ran it, if it
/// did, so the page shows the critical path the next build would take.
/// Durations are named by instruction, so an edited step has none.
pub(crate) fn with_last_durations(root: &Path, graph: &BuildGraph, marks: &mut [Option<Mark>]) {
    let timings = crate::timings::local(root);
    for id in graph.topo_order() {
        let Some(Some(m)) = marks.get_mut(id.index()) else {
            continue;
        };
        let op = rbk_scheduler::shard::op_id(graph.vertex(id));
        if let (MarkState::Run, Some(&s)) = (m.state, timings.steps.get(&op)) {
            m.seconds = Some(s);
            let took = format!("(it took {s:.2} s when it last ran)");
            m.reason = Some(match m.reason.take() {
                Some(why) => format!("{why}\n{took}"),
                None => took,
            });
        }
    }
}

/// Writes the page for `graph` with `marks` to `path`.
pub(crate) fn write(path: &Path, graph: &BuildGraph, marks: &[Option<Mark>]) -> Result<()> {
    let page = render::render_marked(graph, render::Format::Html, marks);
    crate::outputs::write_file_atomically(path, |w| {
        Ok(std::io::Write::write_all(w, page.as_bytes())?)
    })
    .with_context(|| format!("--graph-out {}", path.display()))
}
