//! One shard of a fleet build (`rbk build FILE --shard I/N`): several
//! builders split one graph ([`crate::shard`]) and share a registry cache.
//! A step another shard makes is waited for — asked of the shared cache
//! again and again until that shard has pushed its result — and made here
//! only when it does not come in time. Every step this shard resolves is
//! pushed to the shared cache as soon as it is done, so the shards waiting
//! on it go on at once instead of at the end of this shard's build.

//!
//! This module holds the plain parts (the shard's settings, the places for
//! working steps); the waiting is the session's (`session/wait.rs`).

use std::time::Duration;

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
