//! The build DAG: vertices are ops with content-derived definition digests,
//! edges are data dependencies. Identical steps (same op, same parents) share
//! one vertex, whichever Dockerfile or image they came from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::OnceLock;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::config::RuntimeConfig;
use crate::vars::Vars;

/// A vertex handle.
pub type VertexId = NodeIndex<u32>;

/// A blake3 definition digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexDigest(pub [u8; 32]);

impl VertexDigest {
    /// Lower-case hex, without a prefix.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The first 12 hex digits.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VertexDigest({})", self.short())
    }
}

/// Network mode of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The builder's default (`--network` of `rbk build`).
    #[default]
    Default,
    /// The host's network.
    Host,
    /// An isolated network namespace with only loopback.
    None,
}

/// Where a bind, cache or COPY source reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A build context: where it lives (the absolute path the caller
    /// gave), and its role — `context` for the build's own, else the
    /// `--build-context` name. Cache keys name it by its role only, so the
    /// same checkout at another path has the same keys.
    Context {
        /// The directory.
        path: String,
        /// `context`, or the `--build-context` name.
        name: String,
    },
    /// The result of another vertex (a stage or an image).
    Vertex(VertexId),
}

/// Sharing mode of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Many steps may use it at once.
    Shared,
    /// Each concurrent user gets its own copy.
    Private,
    /// One user at a time.
    Locked,
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MountKind {
    /// A read-only (unless `rw`) view of a context or stage path.
    Bind {
        /// What to bind from.
        from: Source,
        /// Path inside the source.
        source: String,
        /// Whether writes are allowed (they are discarded).
        readwrite: bool,
    },
    /// A persistent cache directory, never part of a layer.
    Cache {
        /// Cache id (defaults to the target path).
        id: String,
        /// Sharing mode.
        sharing: Sharing,
        /// Seed content.
        from: Option<Source>,
        /// Path inside `from`.
        source: String,
        /// Directory mode.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// Read-only.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Size limit in bytes (0: none).
        size: u64,
    },
    /// A secret file from `--secret id=…`, never in a layer or a key.
    Secret {
        /// Secret id.
        id: String,
        /// Fail when the secret was not given.
        required: bool,
        /// File mode.
        mode: u32,
        /// Owner uid.
        uid: u32,
        /// Owner gid.
        gid: u32,
        /// Also expose it as this environment variable.
        env: Option<String>,
    },
    /// An SSH agent socket.
    Ssh {
        /// Agent id.
        id: String,
        /// Fail when none was given.
        required: bool,
    },
}

/// One `RUN --mount`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    /// Absolute path inside the container (empty: no file mount, e.g. env-only secret).
    pub target: String,
    /// What is mounted.
    pub kind: MountKind,
}

/// The environment of a RUN step: the image's `ENV`, then the `ARG`s in
/// scope that `ENV` does not override, each in definition order.
///
/// Steps share the maps their environments were built from, so a stage
/// chain that grows its `ENV` stays linear in size; the flat list is built
/// on first use ([`Deref`](std::ops::Deref) to `Vec<(String, String)>`).
///
/// Deliberately not `Clone`: `env.clone()` resolves through `Deref` to the
/// list's own `clone()` and yields an owned `Vec<(String, String)>` a caller
/// can extend (as the sandbox does with secret variables).
/// [`ExecEnv::share`] copies the shared form.
pub struct ExecEnv {
    env: Vars,
    args: Vars,
    flat: OnceLock<Vec<(String, String)>>,
}

impl ExecEnv {
    /// The environment of a step that sees `env` and the `args` in scope.
    pub(crate) fn new(env: Vars, args: Vars) -> Self {
        ExecEnv {
            env,
            args,
            flat: OnceLock::new(),
        }
    }

    /// Another handle on the same environment (O(1)).
    pub fn share(&self) -> Self {
        ExecEnv {
            env: self.env.clone(),
            args: self.args.clone(),
            flat: self.flat.clone(),
        }
    }

    /// What the definition digest covers: the changes that built the
    /// `ENV` map and the `ARG` map (see `docs/graph.md`).
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&self.env.digest());
        both[32..].copy_from_slice(&self.args.digest());
        *blake3::hash(&both).as_bytes()
    }

    fn flat(&self) -> &Vec<(String, String)> {
        self.flat.get_or_init(|| {
            let mut out: Vec<(String, String)> = self
                .env
                .entries()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.unwrap_or_default().to_string()))
                .collect();
            for (k, v) in self.args.entries() {
                if let Some(v) = v {
                    if !self.env.contains(k) {
                        out.push((k.to_string(), v.to_string()));
                    }
                }
            }
            out
        })
    }
}

impl From<Vec<(String, String)>> for ExecEnv {
    /// An environment given as a list (later duplicates win, in the first's place).
    fn from(pairs: Vec<(String, String)>) -> Self {
        let mut env = Vars::new();
        for (k, v) in &pairs {
            env.set(k, v);
        }
        ExecEnv::new(env, Vars::new())
    }
}

impl std::ops::Deref for ExecEnv {
    type Target = Vec<(String, String)>;
    fn deref(&self) -> &Self::Target {
        self.flat()
    }
}

impl fmt::Debug for ExecEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.flat().fmt(f)
    }
}

impl PartialEq for ExecEnv {
    fn eq(&self, other: &Self) -> bool {
        self.flat() == other.flat()
    }
}

impl Eq for ExecEnv {}

impl std::hash::Hash for ExecEnv {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.flat().hash(state);
    }
}

/// A RUN step.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExecOp {
    /// The final argv (SHELL and heredocs applied).
    pub args: Vec<String>,
    /// Environment: image env plus build args in scope.
    pub env: ExecEnv,
    /// Working directory (absolute).
    pub cwd: String,
    /// User (`name`, `uid`, `user:group`), empty for root.
    pub user: String,
    /// Network mode.
    pub network: Network,
    /// `--security=insecure`.
    pub insecure: bool,
    /// Extra mounts.
    pub mounts: Vec<Mount>,
}

impl Clone for ExecOp {
    fn clone(&self) -> Self {
        ExecOp {
            args: self.args.clone(),
            env: self.env.share(),
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            network: self.network,
            insecure: self.insecure,
            mounts: self.mounts.clone(),
        }
    }
}

/// A heredoc source of COPY.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InlineFile {
    /// File name.
    pub name: String,
    /// Content (variables already expanded where asked).
    pub data: String,
}

/// A COPY or ADD step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileOp {
    /// ADD semantics (unpack local archives, fetch URLs).
    pub add: bool,
    /// Where the sources are read from.
    pub from: Source,
    /// Source paths, globs or URLs (expanded).
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub inline: Vec<InlineFile>,
    /// Destination as written (expanded); relative to `workdir` if not absolute.
    pub dest: String,
    /// The stage's working directory.
    pub workdir: String,
    /// `--chown` (expanded), resolved against the image's passwd at build time.
    pub chown: Option<String>,
    /// `--chmod` (octal digits).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// `ADD --checksum`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// For a context source: the ignore file used instead of the
    /// context's `.dockerignore` (`<Dockerfile>.dockerignore`).
    pub ignore_file: Option<String>,
}

impl FileOp {
    /// The definition of a `COPY --link`'s layer, which does not depend on
    /// the state it is stacked on: every field but the stage it copies from
    /// (whose content key the scheduler adds).
    pub fn link_digest(&self) -> VertexDigest {
        let mut c = Canon::new("file-link");
        c.num("add", self.add as u64);
        if let Source::Context { name, .. } = &self.from {
            c.str("context", name);
        }
        self.canon_fields(&mut c);
        c.finish()
    }

    /// The fields after the parent and the source, in the order the
    /// definition digest has always hashed them.
    pub(crate) fn canon_fields(&self, c: &mut Canon) {
        c.strs("sources", &self.sources);
        for f in &self.inline {
            c.str("inline.name", &f.name).str("inline.data", &f.data);
        }
        c.str("dest", &self.dest)
            .str("workdir", &self.workdir)
            .str("chown", self.chown.as_deref().unwrap_or(""))
            .str("chmod", self.chmod.as_deref().unwrap_or(""))
            .num("link", self.link as u64)
            .num("parents", self.parents as u64)
            .strs("excludes", &self.excludes)
            .str("checksum", self.checksum.as_deref().unwrap_or(""))
            .num("keep_git_dir", self.keep_git_dir as u64);
        // Only when set: the digests of every other COPY stay as they were.
        if let Some(f) = &self.ignore_file {
            c.str("ignore_file", f);
        }
    }
}

/// The operation a vertex performs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// A base image (`scratch` for none).
    Source {
        /// Reference as written after expansion, `:latest` added when no tag.
        image: String,
        /// `os/arch[/variant]`.
        platform: String,
    },
    /// RUN.
    Exec(ExecOp),
    /// COPY / ADD.
    File(FileOp),
    /// WORKDIR: sets the working directory and creates it, as BuildKit
    /// does, owned by the stage's USER; a layer only when it was missing.
    Workdir {
        /// The absolute path (expanded, joined onto the previous one).
        path: String,
        /// The USER in effect (`name`, `uid`, `user:group`), empty for root.
        user: String,
    },
    /// A metadata-only instruction (ENV, CMD, LABEL …): no layer.
    Config {
        /// The instruction as Docker records it in history (`ENV A=b`).
        instruction: String,
    },
}

impl Op {
    /// `source`, `exec`, `file` or `config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source { .. } => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Workdir { .. } => "workdir",
            Op::Config { .. } => "config",
        }
    }

    /// Whether the op may produce a filesystem layer (WORKDIR does only
    /// when its directory was missing).
    pub fn has_layer(&self) -> bool {
        matches!(self, Op::Exec(_) | Op::File(_) | Op::Workdir { .. })
    }
}

/// Where a vertex came from, for one of its users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The image (target) name that uses it.
    pub image: String,
    /// Stage name, or its index as text.
    pub stage: String,
    /// Dockerfile path as given.
    pub file: String,
    /// 1-based first line (0 for synthetic vertices).
    pub line: u32,
    /// The instruction text as written.
    pub text: String,
}

/// A step in the graph.
#[derive(Debug, Clone)]
pub struct Vertex {
    /// What it does.
    pub op: Op,
    /// blake3 over the op's canonical encoding and its inputs' digests:
    /// the vertex's identity in the graph (identical steps merge).
    pub digest: VertexDigest,
    /// The cache definition: the same encoding with each build context
    /// named by its role instead of its path, and the inputs' `key`s
    /// instead of their digests. Equal to `digest` for a vertex that reads
    /// no context, directly or through its inputs.
    pub key: VertexDigest,
    /// The op alone: the cache definition without the parent and the
    /// inputs, whose results the scheduler adds once they exist (early
    /// cutoff: a step over an unchanged result hits, whatever reran
    /// before it).
    pub own: VertexDigest,
    /// The filesystem state it starts from (None for sources).
    pub parent: Option<VertexId>,
    /// Other vertices it reads (COPY --from, mounts), in encounter order.
    pub inputs: Vec<VertexId>,
    /// Who uses it; more than one image means a shared vertex.
    pub origins: Vec<Origin>,
    /// The `created_by` history text.
    pub created_by: String,
}

/// An image the graph produces.
#[derive(Debug, Clone)]
pub struct ImageOutput {
    /// Target name (from rbk.toml, or the Dockerfile path).
    pub name: String,
    /// `-t` tags.
    pub tags: Vec<String>,
    /// The last vertex of the target stage.
    pub vertex: VertexId,
    /// The stage built.
    pub stage: String,
    /// The Dockerfile.
    pub file: String,
    /// The final image config.
    pub config: RuntimeConfig,
    /// `MAINTAINER`.
    pub author: Option<String>,
    /// `os/arch`.
    pub platform: String,
    /// Other images of the graph this one is built on (`FROM` one of their
    /// tags, or a `target:` context), by name.
    pub built_on: Vec<String>,
}

/// The compiled DAG of one or many images.
#[derive(Debug, Clone, Default)]
pub struct BuildGraph {
    /// Vertices and data-dependency edges (input → user).
    pub graph: DiGraph<Vertex, ()>,
    /// Images to produce.
    pub images: Vec<ImageOutput>,
    /// Warnings found while compiling (unused build args …).
    pub warnings: Vec<String>,
    by_digest: HashMap<VertexDigest, VertexId>,
}

impl BuildGraph {
    /// Adds a vertex, or returns the existing one with the same digest (then
    /// `origin` is recorded on it as another user).
    pub fn add(&mut self, mut vertex: Vertex) -> VertexId {
        if let Some(&id) = self.by_digest.get(&vertex.digest) {
            let v = &mut self.graph[id];
            for o in vertex.origins.drain(..) {
                if !v.origins.contains(&o) {
                    v.origins.push(o);
                }
            }
            return id;
        }
        let deps: Vec<VertexId> = vertex
            .parent
            .iter()
            .chain(&vertex.inputs)
            .copied()
            .collect();
        let digest = vertex.digest;
        let id = self.graph.add_node(vertex);
        for d in deps {
            self.graph.update_edge(d, id, ());
        }
        self.by_digest.insert(digest, id);
        id
    }

    /// The vertex with this digest.
    pub fn find(&self, digest: &VertexDigest) -> Option<VertexId> {
        self.by_digest.get(digest).copied()
    }

    /// A vertex.
    pub fn vertex(&self, id: VertexId) -> &Vertex {
        &self.graph[id]
    }

    /// The vertices `top` is built from (its parent and inputs, theirs, and
    /// so on), itself included, in index order: inputs before their users.
    pub fn ancestors(&self, top: VertexId) -> Vec<VertexId> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![top];
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                let v = self.vertex(id);
                todo.extend(v.parent.iter().chain(&v.inputs));
            }
        }
        seen.into_iter().collect()
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when there are no vertices.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Vertex ids in a dependency order (inputs before users).
    pub fn topo_order(&self) -> Vec<VertexId> {
        // Vertices are only ever added after their inputs, so insertion
        // order is already topological.
        self.graph.node_indices().collect()
    }

    /// What vertex `top` needs: itself and every vertex it reads, directly
    /// or not (parents and inputs), as flags by vertex index.
    pub fn needed_by(&self, top: VertexId) -> Vec<bool> {
        let mut seen = vec![false; self.len()];
        let mut todo = vec![top];
        while let Some(id) = todo.pop() {
            if !std::mem::replace(&mut seen[id.index()], true) {
                let v = &self.graph[id];
                todo.extend(v.parent.iter().chain(&v.inputs).copied());
            }
        }
        seen
    }

    /// The chain of a vertex back to its source: `[source, …, id]`.
    pub fn chain(&self, id: VertexId) -> Vec<VertexId> {
        let mut out = vec![id];
        let mut cur = id;
        while let Some(p) = self.graph[cur].parent {
            out.push(p);
            cur = p;
        }
        out.reverse();
        out
    }

    /// Number of distinct images using vertex `id`: those whose
    /// instructions made it, and every image built on one of those (its
    /// steps hang off that image's).
    pub fn image_users(&self, id: VertexId) -> usize {
        let mut names: std::collections::BTreeSet<&str> = self.graph[id]
            .origins
            .iter()
            .map(|o| o.image.as_str())
            .collect();
        loop {
            let before = names.len();
            for img in &self.images {
                if img.built_on.iter().any(|b| names.contains(b.as_str())) {
                    names.insert(&img.name);
                }
            }
            if names.len() == before {
                return names.len();
            }
        }
    }

    /// Vertices that no image needs are dropped (after several Dockerfiles
    /// were compiled with stages that turned out unused). Returns how many.
    pub fn stats(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for v in self.graph.node_weights() {
            *m.entry(v.op.kind()).or_insert(0) += 1;
        }
        m
    }
}

/// The canonical encoding hashed into a definition digest: a version tag,
/// then for every field `tag` and value, each length-prefixed (u64 LE), so
/// no two different ops can encode the same bytes. Documented in
/// `docs/graph.md`.
///
/// Three encodings written side by side: a vertex's identity
/// ([`Vertex::digest`], where contexts live), its cache definition
/// ([`Vertex::key`], what they are called) and its op alone
/// ([`Vertex::own`], no inputs). Other fields go to all three.
pub(crate) struct Canons {
    id: Canon,
    key: Canon,
    own: Canon,
}

/// What [`Canons`] makes: [`Vertex::digest`], [`Vertex::key`] and
/// [`Vertex::own`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Digests {
    pub id: VertexDigest,
    pub key: VertexDigest,
    pub own: VertexDigest,
}

impl Canons {
    pub(crate) fn new(kind: &str) -> Self {
        Canons {
            id: Canon::new(kind),
            key: Canon::new(kind),
            own: Canon::new(kind),
        }
    }

    pub(crate) fn str(&mut self, tag: &str, v: &str) -> &mut Self {
        self.each(|c| {
            c.str(tag, v);
        })
    }

    pub(crate) fn strs<S: AsRef<str>>(&mut self, tag: &str, v: &[S]) -> &mut Self {
        self.each(|c| {
            c.strs(tag, v);
        })
    }

    pub(crate) fn num(&mut self, tag: &str, v: u64) -> &mut Self {
        self.each(|c| {
            c.num(tag, v);
        })
    }

    pub(crate) fn digest(&mut self, tag: &str, d: &VertexDigest) -> &mut Self {
        self.each(|c| {
            c.digest(tag, d);
        })
    }

    /// An input vertex: its digest in the identity, its key in the key,
    /// only its place in the op alone (its result is added at run time).
    pub(crate) fn vertex(&mut self, tag: &str, v: &Vertex) -> &mut Self {
        self.id.digest(tag, &v.digest);
        self.key.digest(tag, &v.key);
        self.own.str(tag, "");
        self
    }

    /// A build context: its path in the identity, its role elsewhere.
    pub(crate) fn context(&mut self, tag: &str, path: &str, name: &str) -> &mut Self {
        self.id.str(tag, path);
        self.key.str(tag, name);
        self.own.str(tag, name);
        self
    }

    /// Writes the same fields to every encoding.
    pub(crate) fn each(&mut self, f: impl Fn(&mut Canon)) -> &mut Self {
        f(&mut self.id);
        f(&mut self.key);
        f(&mut self.own);
        self
    }

    /// The three digests.
    pub(crate) fn finish(&self) -> Digests {
        Digests {
            id: self.id.finish(),
            key: self.key.finish(),
            own: self.own.finish(),
        }
    }
}

/// The encoding is collected in a buffer and hashed once: fed to the hasher
/// piece by piece (lengths, tags, short values) the per-call overhead was a
/// sixth of lowering's time.
pub(crate) struct Canon(Vec<u8>);

impl Canon {
    pub(crate) fn new(kind: &str) -> Self {
        let mut c = Canon(Vec::with_capacity(256));
        c.str("rbk.op.v2", kind);
        c
    }

    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.0.extend_from_slice(b);
    }

    pub(crate) fn str(&mut self, tag: &str, v: &str) -> &mut Self {
        self.raw(tag.as_bytes());
        self.raw(v.as_bytes());
        self
    }

    pub(crate) fn strs<S: AsRef<str>>(&mut self, tag: &str, v: &[S]) -> &mut Self {
        self.raw(tag.as_bytes());
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for s in v {
            self.raw(s.as_ref().as_bytes());
        }
        self
    }

    pub(crate) fn num(&mut self, tag: &str, v: u64) -> &mut Self {
        self.raw(tag.as_bytes());
        self.raw(&v.to_le_bytes());
        self
    }

    pub(crate) fn digest(&mut self, tag: &str, d: &VertexDigest) -> &mut Self {
        self.raw(tag.as_bytes());
        self.raw(&d.0);
        self
    }

    pub(crate) fn finish(&self) -> VertexDigest {
        VertexDigest(*blake3::hash(&self.0).as_bytes())
    }
}
