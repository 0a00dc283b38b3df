//! The second pass of a build: each needed vertex is served from the cache
//! (the first pass found its record) or run, once across every build on the
//! store, and recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rbk_compiler::graph::Op;
use rbk_store::cache::CacheRecord;

use super::plan::{Plan, RunDag};
use super::BuildSession;
use crate::explain;
use crate::progress::{Outcome, Step};
use crate::solve::Ops;
use crate::state::{epoch, now_rfc3339, State};
use crate::step::{self, StepError};
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::OutputStream;

/// Ops of the second pass: serve hits, run misses, following the plans.
pub(crate) struct Runner<'x, 'a> {
    pub session: &'x BuildSession<'a>,
    pub plans: &'x [Option<Plan>],
    /// The dag solved: the graph's vertices, then the making of each
    /// running `COPY --link`'s layer.
    pub run: &'x RunDag,
    /// When each of those started (the step's start, reported once).
    pub started: Vec<OnceLock<Instant>>,
    /// Whether each of those steps was reported finished.
    pub finished: Vec<AtomicBool>,
}

impl Ops for Runner<'_, '_> {
    type Out = State;
    type Err = StepError;

    fn priority(&self, v: usize) -> u64 {
        let fleet = self.session.options.fleet.as_ref();
        fleet.and_then(|f| f.priority.get(v)).copied().unwrap_or(0)
    }

    fn run(&self, v: usize, inputs: &[&State], cancel: &CancelToken) -> Result<State, StepError> {
        let _place = self.session.permits.as_ref().map(|p| {
            p.acquire();
            crate::fleet::Held(p)
        });
        if let Some(k) = self.run.links.added(v) {
            return self.link_layer(k, inputs, cancel);
        }
        let s = self.session;
        let vx = s.vertex(v);
        let plan = self.plans[v]
            .as_ref()
            .ok_or(StepError::Internal("a vertex without a plan"))?;
        let (parent, extra) = match vx.parent {
            Some(_) => (inputs.first().copied(), inputs.get(1..).unwrap_or_default()),
            None => (None, inputs),
        };
        match &vx.op {
            Op::Source { .. } => plan
                .source
                .clone()
                .ok_or(StepError::Internal("a base image without a state")),
            Op::Config { .. } => {
                let p = parent.ok_or(StepError::Internal("config step without parent"))?;
                Ok(State {
                    key: plan.key.clone(),
                    ..p.clone()
                })
            }
            Op::Exec(_) | Op::File(_) | Op::Workdir { .. } => {
                let p = parent.ok_or(StepError::Internal("step without parent"))?;
                self.layer_step(v, plan, p, extra, cancel)
            }
        }
    }
}

impl Runner<'_, '_> {
    /// A RUN/COPY/ADD: served from the cache, or run and recorded.
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
        if let Some(k) = self.run.links.for_vertex(v) {
            return self.stack(k, v, plan, parent, extra, cancel);
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
        let plaintext = plan.plaintext();
        let why = self.why(v, plan, &plaintext);
        let keyed = plan.keyed();
        let result = step::execute(&s.env, s.vertex(v), &step, parent, extra, keyed, cancel);
        let layer = match result {
            Ok(layer) => layer,
            Err(e) => {
                s.finish(&step, started, e.outcome(), why);
                return Err(e);
            }
        };
        // No layer: a WORKDIR whose directory was there already.
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
        let keyed = plan.keyed();
        let Some(rk) = step::result_key(&s.env, s.vertex(v), &keyed, parent, extra, epoch, cancel)?
        else {
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
            inputs: plan.plaintext(),
            ..rec
        })?;
        Ok(Some(State {
            key: plan.key.clone(),
            ..state
        }))
    }

    /// With `--explain`, why step `v` missed: what differs from the
    /// nearest earlier record of its family.
    fn why(&self, v: usize, plan: &Plan, plaintext: &serde_json::Value) -> Option<String> {
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
    fn record(
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

    /// Records a `COPY --link` layer under its own key, for a later build
    /// over another parent.
    fn record_link(
        &self,
        v: usize,
        link_key: &str,
        layer: &crate::backend::Layer,
        inputs: &serde_json::Value,
    ) -> Result<(), StepError> {
        let s = self.session;
        s.cache.put(&CacheRecord {
            key: link_key.to_string(),
            family: format!("{}/link", s.families[v]),
            layer: Some(layer.blob.clone()),
            diff_id: Some(layer.diff_id.clone()),
            // The chain of a layer on nothing is its diff id.
            chain_id: Some(layer.diff_id.clone()),
            config: None,
            inputs: inputs.clone(),
            created: now_rfc3339(s.options.source_date_epoch),
        })?;
        Ok(())
    }

    /// Reports as failed the linked COPY steps whose layer was being made
    /// or was made when the build stopped, and which were never stacked.
    pub(crate) fn finish_unstacked(&self) {
        let s = self.session;
        for (k, v) in self.run.links.iter() {
            if let (Some(&started), false) = (
                self.started[k].get(),
                self.finished[k].swap(true, Ordering::SeqCst),
            ) {
                s.finish(&s.step(v), started, Outcome::Canceled, None);
            }
        }
    }

    /// Makes the layer of the `k`th running `COPY --link` (on nothing, from
    /// its `inputs`: the stages it copies from), or takes it from the
    /// cache if another build made it meanwhile. Its step starts here.
    fn link_layer(
        &self,
        k: usize,
        inputs: &[&State],
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let v = self
            .run
            .links
            .of(k)
            .ok_or(StepError::Internal("no such link"))?;
        let plan = self.plans[v]
            .as_ref()
            .ok_or(StepError::Internal("a vertex without a plan"))?;
        let key = plan
            .link_key
            .as_ref()
            .ok_or(StepError::Internal("a linked layer without its key"))?;
        let step = s.step(v);
        let started = *self.started[k].get_or_init(Instant::now);
        s.reporter.on_start(&step);
        let made = |layer: crate::backend::Layer, created: String| State {
            key: key.clone(),
            layers: Arc::new(vec![layer]),
            base: None,
            created,
        };
        let _running = self.lock(key, &step, cancel)?;
        if let Some(rec) = s.lookup(v, key).hit {
            if let (Some(blob), Some(diff_id)) = (rec.layer, rec.diff_id) {
                return Ok(made(crate::backend::Layer { blob, diff_id }, rec.created));
            }
        }
        let nothing = State {
            key: String::new(),
            layers: Arc::new(Vec::new()),
            base: None,
            created: epoch(),
        };
        let keyed = plan.keyed();
        let result = step::execute(&s.env, s.vertex(v), &step, &nothing, inputs, keyed, cancel);
        match result {
            Ok(Some(layer)) => {
                self.record_link(v, key, &layer, &plan.plaintext())?;
                Ok(made(layer, now_rfc3339(s.options.source_date_epoch)))
            }
            Ok(None) => Err(StepError::Internal("a COPY without a layer")),
            Err(e) => {
                self.finished[k].store(true, Ordering::SeqCst);
                s.finish(&step, started, e.outcome(), None);
                Err(e)
            }
        }
    }

    /// A running `COPY --link`, once its parent and its layer (`extra[0]`,
    /// made by [`Runner::link_layer`]) are done: the layer stacked on the
    /// parent and recorded.
    fn stack(
        &self,
        k: usize,
        v: usize,
        plan: &Plan,
        parent: &State,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let step = s.step(v);
        let started = *self.started[k].get_or_init(Instant::now);
        let (layer, created) = extra
            .first()
            .and_then(|made| Some((made.layers.first()?.clone(), made.created.clone())))
            .ok_or(StepError::Internal("a linked COPY without its layer"))?;
        let plaintext = plan.plaintext();
        let why = self.why(v, plan, &plaintext);
        let stacked = self.stack_layer(v, plan, parent, layer, created, plaintext, cancel);
        self.finished[k].store(true, Ordering::SeqCst);
        s.finish(&step, started, crate::step::outcome_of(&stacked), why);
        if stacked.is_ok() {
            s.ran.fetch_add(1, Ordering::SeqCst);
        }
        stacked
    }

    /// `layer` on top of `parent` as step `v`'s result: stacked now (by
    /// links where its own snapshot is here), so the image's own chain
    /// holds its files, and recorded under the step's key.
    #[allow(clippy::too_many_arguments)]
    fn stack_layer(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        layer: crate::backend::Layer,
        created: String,
        inputs: serde_json::Value,
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let state = parent.with_layer(plan.key.clone(), layer.clone(), created);
        self.session.env.layers.unpack(&state.layers, cancel)?;
        self.record(v, plan, &state, Some(layer), inputs)?;
        Ok(state)
    }

    /// A `COPY --link` whose layer was made over another parent: stacked on
    /// this one and recorded under this step's key; nothing runs.
    #[allow(clippy::too_many_arguments)]
    fn rebase(
        &self,
        v: usize,
        plan: &Plan,
        rec: &CacheRecord,
        parent: &State,
        step: &Step,
        started: Instant,
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let (Some(blob), Some(diff_id)) = (rec.layer.clone(), rec.diff_id.clone()) else {
            return Err(StepError::Internal(
                "a linked layer's record without a layer",
            ));
        };
        let layer = crate::backend::Layer { blob, diff_id };
        let created = rec.created.clone();
        let stacked = self.stack_layer(v, plan, parent, layer, created, plan.plaintext(), cancel);
        match &stacked {
            Ok(_) => {
                s.cached.fetch_add(1, Ordering::SeqCst);
                s.finish(step, started, Outcome::Cached, None);
            }
            Err(e) => s.finish(step, started, e.outcome(), None),
        }
        stacked
    }

    /// The state a cache record gives on top of `parent`, reported as
    /// cached; `None` for a record without a layer, unless it is a
    /// WORKDIR's that found its directory (then no layer is the result).
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
            (None, None) if matches!(s.vertex(v).op, Op::Workdir { .. }) => State {
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
    fn lock(
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
