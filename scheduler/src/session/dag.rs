//! The dags the two passes solve: the graph's vertices, and vertices a
//! pass adds, each doing part of one step's work (a COPY's context hashing
//! in the first pass, a linked COPY's layer in the second). The solver
//! numbers them all alike; [`Added`] tells which is which, as a [`Node`].

/// What a vertex of a pass's dag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// Vertex `.0` of the build graph.
    Step(usize),
    /// The vertex the pass added for step `.0` (a graph vertex): at most
    /// one a step in each pass.
    Added(usize),
}

/// The vertices a pass adds after the graph's own.
#[derive(Debug)]
pub(crate) struct Added {
    /// Vertices of the graph; the dag numbers added ones from here.
    n: usize,
    /// For each added vertex, in order, the step it works for.
    of: Vec<usize>,
    /// For each step, the dag number of its added vertex.
    index: Vec<Option<usize>>,
}

impl Added {
    /// No added vertices yet, after a graph of `n`.
    pub fn new(n: usize) -> Self {
        Added {
            n,
            of: Vec::new(),
            index: vec![None; n],
        }
    }

    /// Adds a vertex working for step `v`; its number in the dag.
    pub fn add(&mut self, v: usize) -> usize {
        let d = self.n + self.of.len();
        self.of.push(v);
        if let Some(slot) = self.index.get_mut(v) {
            *slot = Some(d);
        }
        d
    }

    /// Vertices of the graph (the dag's first ones).
    pub fn graph_len(&self) -> usize {
        self.n
    }

    /// What dag vertex `d` is.
    pub fn node(&self, d: usize) -> Node {
        match d.checked_sub(self.n).and_then(|k| self.of.get(k)) {
            Some(&v) => Node::Added(v),
            None => Node::Step(d),
        }
    }

    /// Whether step `v` has an added vertex.
    pub fn has(&self, v: usize) -> bool {
        self.index.get(v).is_some_and(Option::is_some)
    }

    /// The step dag vertex `d` stands for: itself, or the one it works for.
    pub fn step(&self, d: usize) -> usize {
        match self.node(d) {
            Node::Step(v) | Node::Added(v) => v,
        }
    }

    /// The steps with an added vertex, in the order they were added.
    pub fn steps(&self) -> impl Iterator<Item = usize> + '_ {
        self.of.iter().copied()
    }
}
