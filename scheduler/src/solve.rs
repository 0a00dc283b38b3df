//! A generic parallel DAG solver: every vertex whose inputs are done starts
//! at once on a rayon pool. It knows nothing of containers: what a vertex
//! does (cache lookup, execution) is the [`Ops`] implementation's business,
//! which is how the tests drive it with synthetic ops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rbk_runtime::cancel::CancelToken;

/// The dependency structure: `deps[v]` are the vertices `v` reads, in the
/// order their outputs are handed to [`Ops::run`].
#[derive(Debug, Clone, Default)]
pub struct Dag {
    /// Inputs of each vertex.
    pub deps: Vec<Vec<usize>>,
}

/// What a vertex does.
pub trait Ops: Sync {
    /// A vertex's result, handed to its users.
    type Out: Clone + Send + Sync;
    /// A vertex's failure.
    type Err: Send;
    /// Which ready vertex goes first: lower first, then the lower vertex
    /// number (the graph's order). All equal by default.
    fn priority(&self, v: usize) -> u64 {
        let _ = v;
        0
    }
    /// Computes vertex `v` from its inputs' results. Long work should watch
    /// `cancel` and stop early when it is set.
    fn run(
        &self,
        v: usize,
        inputs: &[&Self::Out],
        cancel: &CancelToken,
    ) -> Result<Self::Out, Self::Err>;
}

/// Why a solve stopped.
#[derive(Debug)]
pub enum SolveError<E> {
    /// A vertex failed (the first failure; others were cancelled).
    Failed {
        /// The vertex.
        vertex: usize,
        /// Its error.
        error: E,
    },
    /// The caller cancelled (Ctrl-C).
    Cancelled,
    /// `deps` names a vertex that does not exist or forms a cycle.
    Invalid(String),
}

struct Shared<O: Ops> {
    results: Vec<Mutex<Option<O::Out>>>,
    pending: Vec<AtomicUsize>,
    users: Vec<Vec<usize>>,
    failure: Mutex<Option<(usize, O::Err)>>,
    /// Vertices whose inputs are done, by priority: each task the pool
    /// starts takes the first (so the pool's own order does not decide).
    ready: Mutex<std::collections::BinaryHeap<std::cmp::Reverse<(u64, usize)>>>,
}

/// Which vertices `roots` need: themselves and everything they read,
/// transitively. An error names a root or dependency that does not exist.
pub fn reachable(dag: &Dag, roots: &[usize]) -> Result<Vec<bool>, String> {
    let n = dag.deps.len();
    let mut needed = vec![false; n];
    let mut stack: Vec<usize> = roots.to_vec();
    while let Some(v) = stack.pop() {
        if v >= n {
            return Err(format!("vertex {v} does not exist"));
        }
        if !needed[v] {
            needed[v] = true;
            stack.extend(dag.deps[v].iter().copied());
        }
    }
    Ok(needed)
}

/// Solves the vertices `roots` need, in parallel on `pool`. Returns every
/// vertex's output (None for vertices no root needs).
pub fn solve<O: Ops>(
    dag: &Dag,
    roots: &[usize],
    ops: &O,
    pool: &rayon::ThreadPool,
    cancel: &CancelToken,
) -> Result<Vec<Option<O::Out>>, SolveError<O::Err>> {
    let needed = reachable(dag, roots).map_err(SolveError::Invalid)?;
    solve_needed(dag, &needed, roots, ops, pool, cancel)
}

/// [`solve`] for a caller that has computed the needed set already (with
/// [`reachable`] from `roots`).
pub fn solve_needed<O: Ops>(
    dag: &Dag,
    needed: &[bool],
    roots: &[usize],
    ops: &O,
    pool: &rayon::ThreadPool,
    cancel: &CancelToken,
) -> Result<Vec<Option<O::Out>>, SolveError<O::Err>> {
    let n = dag.deps.len();
    if needed.len() != n {
        return Err(SolveError::Invalid(format!(
            "{} needed flags for {n} vertices",
            needed.len()
        )));
    }
    let mut users = vec![Vec::new(); n];
    let mut pending = Vec::with_capacity(n);
    for (v, deps) in dag.deps.iter().enumerate() {
        let mut distinct = deps.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if needed[v] {
            for &d in &distinct {
                users[d].push(v);
            }
        }
        pending.push(AtomicUsize::new(distinct.len()));
    }
    let shared = Shared::<O> {
        results: (0..n).map(|_| Mutex::new(None)).collect(),
        pending,
        users,
        failure: Mutex::new(None),
        ready: Mutex::new(std::collections::BinaryHeap::new()),
    };
    let ready: Vec<usize> = (0..n)
        .filter(|&v| needed[v] && dag.deps[v].is_empty())
        .collect();
    if ready.is_empty() && needed.iter().any(|&x| x) {
        return Err(SolveError::Invalid("the graph has a cycle".into()));
    }
    pool.scope(|scope| {
        for v in ready {
            push_ready(scope, v, dag, ops, &shared, cancel);
        }
    });
    if let Some((vertex, error)) = shared
        .failure
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(SolveError::Failed { vertex, error });
    }
    if cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    let results: Vec<Option<O::Out>> = shared
        .results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect();
    if roots.iter().any(|&r| results[r].is_none()) {
        return Err(SolveError::Invalid("the graph has a cycle".into()));
    }
    Ok(results)
}

/// Queues ready vertex `v` and starts a task that runs the first of the
/// queue.
fn push_ready<'s, O: Ops>(
    scope: &rayon::Scope<'s>,
    v: usize,
    dag: &'s Dag,
    ops: &'s O,
    shared: &'s Shared<O>,
    cancel: &'s CancelToken,
) {
    lock(&shared.ready).push(std::cmp::Reverse((ops.priority(v), v)));
    scope.spawn(move |s| {
        let next = lock(&shared.ready).pop();
        if let Some(std::cmp::Reverse((_, v))) = next {
            run_vertex(s, v, dag, ops, shared, cancel);
        }
    });
}

fn run_vertex<'s, O: Ops>(
    scope: &rayon::Scope<'s>,
    v: usize,
    dag: &'s Dag,
    ops: &'s O,
    shared: &'s Shared<O>,
    cancel: &'s CancelToken,
) {
    if cancel.is_cancelled() {
        return;
    }
    let inputs: Vec<O::Out> = dag.deps[v]
        .iter()
        .filter_map(|&d| lock(&shared.results[d]).clone())
        .collect();
    if inputs.len() != dag.deps[v].len() {
        return;
    }
    let refs: Vec<&O::Out> = inputs.iter().collect();
    match ops.run(v, &refs, cancel) {
        Ok(out) => {
            *lock(&shared.results[v]) = Some(out);
            for &u in &shared.users[v] {
                if shared.pending[u].fetch_sub(1, Ordering::AcqRel) == 1 {
                    push_ready(scope, u, dag, ops, shared, cancel);
                }
            }
        }
        Err(e) => {
            let mut f = lock(&shared.failure);
            if f.is_none() && !cancel.is_cancelled() {
                *f = Some((v, e));
            }
            // Stop everything else that is running.
            cancel.cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    /// Sums inputs plus the vertex number; vertex `fail` fails; every vertex
    /// sleeps `sleep` and counts its runs.
    struct Sum {
        sleep: Duration,
        fail: Option<usize>,
        runs: Vec<AtomicU64>,
    }

    impl Sum {
        fn new(n: usize, sleep_ms: u64, fail: Option<usize>) -> Self {
            Sum {
                sleep: Duration::from_millis(sleep_ms),
                fail,
                runs: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }
        }
    }

    impl Ops for Sum {
        type Out = u64;
        type Err = String;
        fn run(&self, v: usize, inputs: &[&u64], cancel: &CancelToken) -> Result<u64, String> {
            self.runs[v].fetch_add(1, Ordering::SeqCst);
            let end = Instant::now() + self.sleep;
            while Instant::now() < end {
                if cancel.is_cancelled() {
                    return Err("cancelled".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if self.fail == Some(v) {
                return Err(format!("vertex {v} failed"));
            }
            Ok(inputs.iter().copied().sum::<u64>() + v as u64)
        }
    }

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("pool")
    }

    /// Records the order vertices run in; vertex v's priority is `prio[v]`.
    struct Ordered {
        prio: Vec<u64>,
        order: Mutex<Vec<usize>>,
    }

    impl Ops for Ordered {
        type Out = ();
        type Err = String;
        fn priority(&self, v: usize) -> u64 {
            self.prio[v]
        }
        fn run(&self, v: usize, _: &[&()], _: &CancelToken) -> Result<(), String> {
            self.order.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            Ok(())
        }
    }

    #[test]
    fn one_worker_takes_ready_vertices_by_priority_then_number() {
        // 0, 1, 2, 3 ready at once; 4 after 3.
        let dag = Dag {
            deps: vec![vec![], vec![], vec![], vec![], vec![3]],
        };
        let ops = Ordered {
            prio: vec![2, 0, 1, 0, 0],
            order: Mutex::new(Vec::new()),
        };
        solve(&dag, &[0, 1, 2, 4], &ops, &pool(1), &CancelToken::new()).expect("solves");
        let order = ops.order.into_inner().unwrap_or_default();
        assert_eq!(order, [1, 3, 4, 2, 0]);
    }

    #[test]
    fn diamond_runs_each_vertex_once_with_inputs_in_order() {
        // 0 → 1, 0 → 2, (1, 2) → 3
        let dag = Dag {
            deps: vec![vec![], vec![0], vec![0], vec![1, 2]],
        };
        let ops = Sum::new(4, 0, None);
        let out = solve(&dag, &[3], &ops, &pool(4), &CancelToken::new()).expect("solves");
        assert_eq!(out[3], Some((1) + (2) + 3));
        for r in &ops.runs {
            assert_eq!(r.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn unneeded_vertices_do_not_run() {
        let dag = Dag {
            deps: vec![vec![], vec![0], vec![0]],
        };
        let ops = Sum::new(3, 0, None);
        let out = solve(&dag, &[1], &ops, &pool(2), &CancelToken::new()).expect("solves");
        assert_eq!(out[2], None);
        assert_eq!(ops.runs[2].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn independent_vertices_run_in_parallel() {
        // Four 200 ms branches under one root: about 200 ms, not 800.
        let dag = Dag {
            deps: vec![vec![], vec![], vec![], vec![], vec![0, 1, 2, 3]],
        };
        let ops = Sum::new(5, 200, None);
        let t = Instant::now();
        solve(&dag, &[4], &ops, &pool(4), &CancelToken::new()).expect("solves");
        let took = t.elapsed();
        assert!(took < Duration::from_millis(700), "took {took:?}");
    }

    #[test]
    fn a_failure_cancels_the_rest_and_is_reported() {
        // 1 fails fast; 0 is slow and must be cancelled; 2 depends on both.
        let dag = Dag {
            deps: vec![vec![], vec![], vec![0, 1]],
        };
        let mut ops = Sum::new(3, 0, Some(1));
        ops.sleep = Duration::from_millis(0);
        struct Mixed(Sum);
        impl Ops for Mixed {
            type Out = u64;
            type Err = String;
            fn run(&self, v: usize, i: &[&u64], c: &CancelToken) -> Result<u64, String> {
                if v == 0 {
                    let end = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < end {
                        if c.is_cancelled() {
                            return Err("cancelled".into());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                self.0.run(v, i, c)
            }
        }
        let ops = Mixed(ops);
        let t = Instant::now();
        let err = solve(&dag, &[2], &ops, &pool(4), &CancelToken::new()).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        match err {
            SolveError::Failed { vertex, error } => {
                assert_eq!(vertex, 1);
                assert_eq!(error, "vertex 1 failed");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ops.0.runs[2].load(Ordering::SeqCst),
            0,
            "dependent never ran"
        );
    }

    #[test]
    fn caller_cancel_stops_the_solve() {
        let dag = Dag {
            deps: vec![vec![], vec![0]],
        };
        let ops = Sum::new(2, 2000, None);
        let cancel = CancelToken::new();
        let c2 = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.cancel();
        });
        let err = solve(&dag, &[1], &ops, &pool(2), &cancel).unwrap_err();
        assert!(matches!(err, SolveError::Cancelled), "{err:?}");
        assert_eq!(ops.runs[1].load(Ordering::SeqCst), 0);
    }

    #[test]
    fn bad_graphs_are_errors_not_hangs() {
        let cyclic = Dag {
            deps: vec![vec![1], vec![0]],
        };
        let ops = Sum::new(2, 0, None);
        assert!(matches!(
            solve(&cyclic, &[0], &ops, &pool(2), &CancelToken::new()),
            Err(SolveError::Invalid(_))
        ));
        assert!(matches!(
            solve(&cyclic, &[7], &ops, &pool(2), &CancelToken::new()),
            Err(SolveError::Invalid(_))
        ));
    }
}
