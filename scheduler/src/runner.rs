//! The second pass of a build: each needed vertex is served from the cache
//! (the first pass found its record) or run, once across every build on the
//! store, and recorded.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rbk_compiler::graph::Op;
use rbk_store::cache::CacheRecord;

use crate::explain;
use crate::plan::Plan;
use crate::progress::Step;
use crate::sandbox::{CancelToken, OutputStream};
use crate::session::BuildSession;
use crate::solve::Ops;
use crate::state::{now_rfc3339, State};
use crate::step::{self, StepError};

/// Ops of the second pass: serve hits, run misses, following the plans.
pub(crate) struct Runner<'x, 'a> {
    pub session: &'x BuildSession<'a>,
    pub plans: &'x [Option<Plan>],
}

impl Ops for Runner<'_, '_> {
    type Out = State;
    type Err = StepError;

    fn run(&self, v: usize, inputs: &[&State], cancel: &CancelToken) -> Result<State, StepError> {
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
            Op::Exec(_) | Op::File(_) => {
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
        let started = Instant::now();
        s.reporter.on_start(&step);
        if let Some(state) = plan
            .hit
            .as_ref()
            .and_then(|rec| self.serve(rec, parent, &step, started))
        {
            return Ok(state);
        }
        // A miss. One build at a time runs a given step (other processes
        // too): others wait, then take its result from the cache, so
        // identical steps of concurrent builds run once and give one image id.
        let _running = self.lock(&plan.key, &step, cancel)?;
        if let Some(rec) = s.lookup(&plan.key).hit {
            if let Some(state) = self.serve(&rec, parent, &step, started) {
                return Ok(state);
            }
        }
        let why = s.options.explain.then(|| {
            let nearest = s.cache.nearest(&s.families[v], &plan.key);
            explain::explain(
                nearest.as_ref().map(|r| &r.inputs),
                &plan.inputs,
                s.options.no_cache,
            )
        });
        let selection = plan.selection.as_deref().cloned();
        let result = step::execute(&s.env, s.vertex(v), &step, parent, extra, selection, cancel);
        let layer = match result {
            Ok(layer) => layer,
            Err(e) => {
                s.finish(&step, started, false, why, true);
                return Err(e);
            }
        };
        let state = parent.with_layer(
            plan.key.clone(),
            layer.clone(),
            now_rfc3339(s.options.source_date_epoch),
        );
        s.cache.put(&CacheRecord {
            key: plan.key.clone(),
            family: s.families[v].clone(),
            layer: Some(layer.blob),
            diff_id: Some(layer.diff_id),
            chain_id: state.chain_id(),
            config: None,
            inputs: (*plan.inputs).clone(),
            created: state.created.clone(),
        })?;
        s.ran.fetch_add(1, Ordering::SeqCst);
        s.finish(&step, started, false, why, false);
        Ok(state)
    }

    /// The state a cache record gives on top of `parent`, reported as
    /// cached; `None` for a record without a layer (not a layer step's).
    fn serve(
        &self,
        rec: &CacheRecord,
        parent: &State,
        step: &Step,
        started: Instant,
    ) -> Option<State> {
        let s = self.session;
        let layer = crate::backend::Layer {
            blob: rec.layer.clone()?,
            diff_id: rec.diff_id.clone()?,
        };
        s.cached.fetch_add(1, Ordering::SeqCst);
        s.finish(step, started, true, None, false);
        Some(parent.with_layer(rec.key.clone(), layer, rec.created.clone()))
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
        if s.options.no_cache {
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
