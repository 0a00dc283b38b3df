//! A fleet build's waiting (see [`crate::fleet`]): a step another shard
//! makes is asked of the shared cache again and again until that shard has
//! pushed it, and made here only when it does not come in time; every step
//! this shard resolves is pushed at once.

use std::time::{Duration, Instant};

use super::plan::Plan;
use super::runner::Runner;
use crate::progress::Step;
use crate::state::State;
use crate::step::StepError;
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::OutputStream;

/// The longest pause between two questions to the shared cache.
const MAX_PAUSE: Duration = Duration::from_secs(2);

impl Runner<'_, '_> {
    /// A step another shard makes: its result from the shared cache once
    /// that shard pushed it; `None` (make it here) when it did not come
    /// within the fleet's wait. A cache that stops answering fails the
    /// step at once: waiting on it would hang.
    pub(crate) fn await_other_shard(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        step: &Step,
        started: Instant,
        cancel: &CancelToken,
    ) -> Result<Option<State>, StepError> {
        let s = self.session;
        let Some(fleet) = &s.options.fleet else {
            return Ok(None);
        };
        let Some(other) = fleet.others.get(v).copied().flatten() else {
            return Ok(None);
        };
        if s.uncached(v) {
            return Ok(None);
        }
        let say = |text: String| {
            s.reporter
                .on_log(step, OutputStream::Stderr, text.as_bytes())
        };
        say(format!(
            "waiting for shard {other}/{} to push this step's result (at most {}s, then it is built here)\n",
            fleet.shards,
            fleet.wait.as_secs()
        ));
        let deadline = Instant::now() + fleet.wait;
        let mut pause = Duration::from_millis(100);
        loop {
            if cancel.is_cancelled() {
                return Err(StepError::Cancelled);
            }
            if let Some(state) = self.poll_shared(v, plan, parent, step, started)? {
                s.waited.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Ok(Some(state));
            }
            let now = Instant::now();
            if now >= deadline {
                say(format!(
                    "shard {other}/{} did not push it within {}s: building it here\n",
                    fleet.shards,
                    fleet.wait.as_secs()
                ));
                s.took_over
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Ok(None);
            }
            // Waiting, this step leaves its place to steps that can work.
            if let Some(p) = &s.permits {
                p.release();
            }
            std::thread::sleep(pause.min(deadline - now));
            if let Some(p) = &s.permits {
                p.acquire();
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Asks the shared cache once for step `v`'s result: by the plan's key,
    /// then by its result key (the op over the parent's layers: the same
    /// whatever base image id each builder's store gave the same layers).
    /// A hit by result key is recorded under the plan's key too.
    fn poll_shared(
        &self,
        v: usize,
        plan: &Plan,
        parent: &State,
        step: &Step,
        started: Instant,
    ) -> Result<Option<State>, StepError> {
        let s = self.session;
        if let Some(rec) = s.cache.poll(&plan.key)? {
            return Ok(self.serve(v, &rec, parent, step, started));
        }
        let Some(rk) = s.result_keys[v].get() else {
            return Ok(None);
        };
        let Some(rec) = s.cache.poll(rk)? else {
            return Ok(None);
        };
        self.serve_as_planned(v, plan, rec, parent, step, started)
    }

    /// Pushes the records of `keys` to the shared cache now, in a fleet
    /// build (the other shards may be waiting on them); nothing otherwise.
    pub(crate) fn publish(&self, keys: &[&str]) -> Result<(), StepError> {
        // Another shard's step made here after the wait is pushed too:
        // the same key gives the same result, and a shard still waiting
        // goes on.
        if self.session.options.fleet.is_some() {
            self.session.cache.publish(keys)?;
        }
        Ok(())
    }
}
