//! The second pass of a build: each needed vertex is served from the cache
//! (the first pass found its record) or run, once across every build on the
//! store, and recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use rbk_store::cache::CacheRecord;

use super::dag::Node;
use super::plan::{Plan, RunDag};
use super::BuildSession;
use crate::explain;
use crate::progress::{Outcome, Step};
use crate::solve::Ops;
use crate::state::{now_rfc3339, State};
use crate::step::{self, LayerPolicy, StepError};
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::OutputStream;

/// Ops of the second pass: serve hits, run misses, following the plans.
pub(crate) struct Runner<'x, 'a> {
    pub session: &'x BuildSession<'a>,
    pub plans: &'x [Option<Plan>],
    /// The dag solved: the graph's vertices, then the making of each
    /// running linked step's layer.
    pub run: &'x RunDag,
    /// For each linked step that runs, by vertex: when it started (made
    /// in two vertices, it is reported started once).
    pub started: Vec<OnceLock<Instant>>,
    /// For each linked step, by vertex: whether it was reported finished.
    pub finished: Vec<AtomicBool>,
}

impl Ops for Runner<'_, '_> {
    type Out = State;
    type Err = StepError;

    fn priority(&self, v: usize) -> u64 {
        let fleet = self.session.options.fleet.as_ref();
        fleet.and_then(|f| f.priority.get(v)).copied().unwrap_or(0)
    }

    fn run(&self, d: usize, inputs: &[&State], cancel: &CancelToken) -> Result<State, StepError> {
        let _place = self.session.permits.as_ref().map(|p| {
            p.acquire();
            crate::fleet::Held(p)
        });
        let v = match self.run.links.node(d) {
            Node::Added(v) => return self.link_layer(v, inputs, cancel),
            Node::Step(v) => v,
        };
        let s = self.session;
        let vx = s.vertex(v);
        let plan = self.plans[v]
            .as_ref()
            .ok_or(StepError::Internal("a vertex without a plan"))?;
        let (parent, extra) = match vx.parent {
            Some(_) => (inputs.first().copied(), inputs.get(1..).unwrap_or_default()),
            None => (None, inputs),
        };
        match s.kind(v).policy() {
            LayerPolicy::Base => plan
                .source
                .clone()
                .ok_or(StepError::Internal("a base image without a state")),
            LayerPolicy::Config => {
                let p = parent.ok_or(StepError::Internal("config step without parent"))?;
                Ok(State {
                    key: plan.key.clone(),
                    ..p.clone()
                })
            }
            LayerPolicy::Layer | LayerPolicy::LayerIfChanged => {
                let p = parent.ok_or(StepError::Internal("step without parent"))?;
                self.layer_step(v, plan, p, extra, cancel)
            }
        }
    }
}

impl Runner<'_, '_> {
    /// A step that runs on a filesystem: served from the cache, or run
    /// and recorded.
    fn layer_step(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let step = s.step(v);
        if self.run.links.has(v) {
            return self.stack(v, plan, parent, extra, cancel);
        }
        let started = Instant::now();
        s.reporter.on_start(&step);
        if let (true, Some(rec)) = (plan.rebased(), &plan.hit) {
            return self.rebase(v, plan, rec, parent, &step, started, cancel);
        }
        if let Some(state) = plan
            .hit
            .as_ref()
            .and_then(|rec| self.serve(v, rec, parent, &step, started))
        {
            self.publish(&[&plan.key])?;
            return Ok(state);
        }
        // A miss. One build at a time runs a given step (other processes
        // too): others wait, then take its result from the cache, so
        // identical steps of concurrent builds run once and give one image id.
        let _running = self.lock(&plan.key, &step, cancel)?;
        if let Some(rec) = s.lookup(v, &plan.key).hit {
            if let Some(state) = self.serve(v, &rec, parent, &step, started) {
                self.publish(&[&plan.key])?;
                return Ok(state);
            }
        }
        if let Some(state) = self.cut_off(v, plan, parent, extra, &step, started, cancel)? {
            self.publish(&[&plan.key])?;
            return Ok(state);
        }
        if let Some(state) = self.await_other_shard(v, plan, parent, &step, started, cancel)? {
            return Ok(state);
        }
        // Made once: for a COPY of a large context it lists every file.
        let plaintext = s.plaintext(v, plan);
        let why = self.why(v, plan, &plaintext);
        let result = step::execute(&s.env, &*s.kind(v), &step, parent, extra, cancel);
        let layer = match result {
            Ok(layer) => layer,
            Err(e) => {
                s.finish(&step, started, e.outcome(), why);
                return Err(e);
            }
        };
        // No layer: a step that changed nothing (a WORKDIR whose directory
        // was there already).
        let state = match &layer {
            Some(layer) => parent.with_layer(
                plan.key.clone(),
                layer.clone(),
                now_rfc3339(s.options.source_date_epoch),
            ),
            None => State {
                key: plan.key.clone(),
                ..parent.clone()
            },
        };
        self.record(v, plan, &state, layer.clone(), plaintext.clone())?;
        match s.result_keys[v].get() {
            Some(rk) => {
                self.record_as(v, rk, &state, layer, plaintext)?;
                self.publish(&[&plan.key, rk])?;
            }
            None => self.publish(&[&plan.key])?,
        }
        s.ran.fetch_add(1, Ordering::SeqCst);
        s.finish(&step, started, Outcome::Ran, why);
        Ok(state)
    }

    /// Early cutoff: before step `v` runs, its result key (see
    /// [`step::result_key`]) asked of the cache. A hit is served and
    /// recorded under the plan's key too, so the next build finds it in
    /// its first pass.
    #[allow(clippy::too_many_arguments)]
    fn cut_off(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        extra: &[&State],
        step: &Step,
        started: Instant,
        cancel: &CancelToken,
    ) -> Result<Option<State>, StepError> {
        let s = self.session;
        if s.uncached(v) {
            return Ok(None);
        }
        let epoch = s.options.source_date_epoch;
        let (kind, vx) = (s.kind(v), s.vertex(v));
        let Some(rk) = step::result_key(&s.env, &*kind, vx, parent, extra, epoch, cancel)? else {
            return Ok(None);
        };
        let rk = s.result_keys[v].get_or_init(|| rk);
        let Some(rec) = s.lookup(v, rk).hit else {
            return Ok(None);
        };
        self.serve_as_planned(v, plan, rec, parent, step, started)
    }

    /// A record found by step `v`'s result key, served, and recorded under
    /// the plan's key too (so the next build finds it in its first pass);
    /// `None` when the record cannot be served.
    pub(crate) fn serve_as_planned(
        &self,
        v: usize,
        plan: &Plan,
        rec: CacheRecord,
        parent: &State,
        step: &Step,
        started: Instant,
    ) -> Result<Option<State>, StepError> {
        let s = self.session;
        let Some(state) = self.serve(v, &rec, parent, step, started) else {
            return Ok(None);
        };
        s.cache.put(&CacheRecord {
            key: plan.key.clone(),
            family: s.families[v].clone(),
            inputs: s.plaintext(v, plan),
            ..rec
        })?;
        Ok(Some(State {
            key: plan.key.clone(),
            ..state
        }))
    }

    /// With `--explain`, why step `v` missed: what differs from the
    /// nearest earlier record of its family.
    pub(crate) fn why(
        &self,
        v: usize,
        plan: &Plan,
        plaintext: &serde_json::Value,
    ) -> Option<String> {
        let s = self.session;
        s.options.explain.then(|| {
            let nearest = s.cache.nearest(&s.families[v], &plan.key);
            explain::explain(
                nearest.as_ref().map(|r| &r.inputs),
                plaintext,
                s.uncached(v),
            )
        })
    }

    /// Records step `v`'s result `state` (its top layer `layer`, if any).
    pub(crate) fn record(
        &self,
        v: usize,
        plan: &Plan,
        state: &State,
        layer: Option<crate::backend::Layer>,
        inputs: serde_json::Value,
    ) -> Result<(), StepError> {
        self.record_as(v, &plan.key, state, layer, inputs)
    }

    /// Records step `v`'s result `state` under `key`.
    fn record_as(
        &self,
        v: usize,
        key: &str,
        state: &State,
        layer: Option<crate::backend::Layer>,
        inputs: serde_json::Value,
    ) -> Result<(), StepError> {
        let s = self.session;
        let (blob, diff_id) = layer.map(|l| (l.blob, l.diff_id)).unzip();
        s.cache.put(&CacheRecord {
            key: key.to_string(),
            family: s.families[v].clone(),
            layer: blob,
            diff_id,
            chain_id: state.chain_id(),
            config: None,
            inputs,
            created: state.created.clone(),
        })?;
        Ok(())
    }

    /// The state a cache record gives on top of `parent`, reported as
    /// cached; `None` for a record without a layer, unless the step's
    /// policy is [`LayerPolicy::LayerIfChanged`] (then no layer is the
    /// result: a WORKDIR that found its directory).
    pub(crate) fn serve(
        &self,
        v: usize,
        rec: &CacheRecord,
        parent: &State,
        step: &Step,
        started: Instant,
    ) -> Option<State> {
        let s = self.session;
        let state = match (rec.layer.clone(), rec.diff_id.clone()) {
            (Some(blob), Some(diff_id)) => parent.with_layer(
                rec.key.clone(),
                crate::backend::Layer { blob, diff_id },
                rec.created.clone(),
            ),
            (None, None) if s.kind(v).policy() == LayerPolicy::LayerIfChanged => State {
                key: rec.key.clone(),
                ..parent.clone()
            },
            _ => return None,
        };
        s.cached.fetch_add(1, Ordering::SeqCst);
        s.finish(step, started, Outcome::Cached, None);
        Some(state)
    }

    /// The lock on running step `key` (none with `--no-cache`, which asks
    /// to run every step regardless). Waiting is said once.
    pub(crate) fn lock(
        &self,
        key: &str,
        step: &Step,
        cancel: &CancelToken,
    ) -> Result<Option<crate::backend::StepGuard>, StepError> {
        let s = self.session;
        if s.uncached(step.vertex) {
            return Ok(None);
        }
        let mut on_wait = || {
            s.reporter.on_log(
                step,
                OutputStream::Stderr,
                b"waiting for another rbk process running the same step\n",
            )
        };
        match s.cache.lock(key, &mut on_wait, cancel)? {
            Some(guard) => Ok(Some(guard)),
            None => Err(StepError::Cancelled),
        }
    }
}
