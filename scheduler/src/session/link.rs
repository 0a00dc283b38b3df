//! Linked steps (`COPY --link`, see [`crate::step::StepKind::link_definition`]):
//! the layer is made on nothing, in a vertex of its own that does not wait
//! for the parent, keyed without the parent, then stacked on the parent.
//! A layer made over another parent (found by its own key) is stacked too,
//! and nothing runs: the rebase BuildKit's `--link` allows.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rbk_store::cache::CacheRecord;

use super::plan::Plan;
use super::runner::Runner;
use crate::backend::Layer;
use crate::progress::{Outcome, Step};
use crate::state::{epoch, now_rfc3339, State};
use crate::step::{self, StepError};
use rbk_runtime::cancel::CancelToken;

impl Runner<'_, '_> {
    /// Records a linked layer under its own key, for a later build over
    /// another parent.
    fn record_link(
        &self,
        v: usize,
        link_key: &str,
        layer: &Layer,
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

    /// Reports as failed the linked steps whose layer was being made or
    /// was made when the build stopped, and which were never stacked.
    pub(crate) fn finish_unstacked(&self) {
        let s = self.session;
        for v in self.run.links.steps() {
            if let (Some(&started), false) = (
                self.started[v].get(),
                self.finished[v].swap(true, Ordering::SeqCst),
            ) {
                s.finish(&s.step(v), started, Outcome::Canceled, None);
            }
        }
    }

    /// Makes the layer of linked step `v` (on nothing, from its `inputs`:
    /// the stages it copies from), or takes it from the cache if another
    /// build made it meanwhile. Its step starts here.
    pub(crate) fn link_layer(
        &self,
        v: usize,
        inputs: &[&State],
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let plan = self.plans[v]
            .as_ref()
            .ok_or(StepError::Internal("a vertex without a plan"))?;
        let key = plan
            .link_key
            .as_ref()
            .ok_or(StepError::Internal("a linked layer without its key"))?;
        let step = s.step(v);
        let started = *self.started[v].get_or_init(Instant::now);
        s.reporter.on_start(&step);
        let made = |layer: Layer, created: String| State {
            key: key.clone(),
            layers: Arc::new(vec![layer]),
            base: None,
            created,
        };
        let _running = self.lock(key, &step, cancel)?;
        if let Some(rec) = s.lookup(v, key).hit {
            if let (Some(blob), Some(diff_id)) = (rec.layer, rec.diff_id) {
                return Ok(made(Layer { blob, diff_id }, rec.created));
            }
        }
        let nothing = State {
            key: String::new(),
            layers: Arc::new(Vec::new()),
            base: None,
            created: epoch(),
        };
        let result = step::execute(&s.env, &*s.kind(v), &step, &nothing, inputs, cancel);
        match result {
            Ok(Some(layer)) => {
                self.record_link(v, key, &layer, &s.plaintext(v, plan))?;
                Ok(made(layer, now_rfc3339(s.options.source_date_epoch)))
            }
            Ok(None) => Err(StepError::Internal("a linked step without a layer")),
            Err(e) => {
                self.finished[v].store(true, Ordering::SeqCst);
                s.finish(&step, started, e.outcome(), None);
                Err(e)
            }
        }
    }

    /// A running linked step, once its parent and its layer (`extra[0]`,
    /// made by [`Runner::link_layer`]) are done: the layer stacked on the
    /// parent and recorded.
    pub(crate) fn stack(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let s = self.session;
        let step = s.step(v);
        let started = *self.started[v].get_or_init(Instant::now);
        let (layer, created) = extra
            .first()
            .and_then(|made| Some((made.layers.first()?.clone(), made.created.clone())))
            .ok_or(StepError::Internal("a linked step without its layer"))?;
        let plaintext = s.plaintext(v, plan);
        let why = self.why(v, plan, &plaintext);
        let stacked = self.stack_layer(v, plan, parent, layer, created, plaintext, cancel);
        self.finished[v].store(true, Ordering::SeqCst);
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
        layer: Layer,
        created: String,
        inputs: serde_json::Value,
        cancel: &CancelToken,
    ) -> Result<State, StepError> {
        let state = parent.with_layer(plan.key.clone(), layer.clone(), created);
        self.session.env.layers.unpack(&state.layers, cancel)?;
        self.record(v, plan, &state, Some(layer), inputs)?;
        Ok(state)
    }

    /// A linked step whose layer was made over another parent: stacked on
    /// this one and recorded under this step's key; nothing runs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rebase(
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
        let layer = Layer { blob, diff_id };
        let created = rec.created.clone();
        let stacked = self.stack_layer(
            v,
            plan,
            parent,
            layer,
            created,
            s.plaintext(v, plan),
            cancel,
        );
        match &stacked {
            Ok(_) => {
                s.cached.fetch_add(1, Ordering::SeqCst);
                s.finish(step, started, Outcome::Cached, None);
            }
            Err(e) => s.finish(step, started, e.outcome(), None),
        }
        stacked
    }
}
