//! One shard of a fleet build (`rbk build FILE --shard I/N`): several
//! builders split one graph ([`crate::shard`]) and share a registry cache.
//! A step another shard makes is waited for — asked of the shared cache
//! again and again until that shard has pushed its result — and made here
//! only when it does not come in time. Every step this shard resolves is
//! pushed to the shared cache as soon as it is done, so the shards waiting
//! on it go on at once instead of at the end of this shard's build.

use std::time::{Duration, Instant};

use crate::plan::Plan;
use crate::progress::Step;
use crate::runner::Runner;
use crate::state::State;
use crate::step::StepError;
use rbk_runtime::cancel::CancelToken;
use rbk_runtime::sandbox::OutputStream;

/// This builder's part in a fleet build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// This shard, 1-based.
    pub shard: usize,
    /// How many shards.
    pub shards: usize,
    /// For each vertex of the graph: the shard (1-based) that makes it,
    /// when it is another one.
    pub others: Vec<Option<usize>>,
    /// How long a step another shard makes is waited for before it is
    /// made here.
    pub wait: Duration,
    /// For each vertex: which goes first when several are ready (lower
    /// first): the plan's order of this shard's units, so what other
    /// shards wait on is made when the plan expects it.
    pub priority: Vec<u64>,
}

/// At most `jobs` steps work at once; a step waiting on another shard
/// gives its place up while it waits (the pool has threads beyond `jobs`
/// for the waiting ones), so waiting never idles this shard.
#[derive(Debug)]
pub(crate) struct Permits {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Permits {
    pub(crate) fn new(n: usize) -> Self {
        Permits {
            free: std::sync::Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Takes a place, waiting for one.
    pub(crate) fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    /// Gives a place back.
    pub(crate) fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// A place held until dropped.
pub(crate) struct Held<'p>(pub(crate) &'p Permits);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

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
