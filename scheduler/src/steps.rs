//! The two kinds of layer steps: RUN in the sandbox and COPY/ADD as file
//! operations, plus what each reads beyond its definition (for cache keys).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbk_compiler::graph::{ExecOp, FileOp, MountKind, Network, Op, Source};
use serde_json::json;

use crate::build::{GraphOps as Ctx, State};
use crate::context::{BuildContext, Selection, StatCache};
use crate::progress::Step;
use crate::sandbox::{BindMount, CancelToken, ExecSpec, NetworkMode, OutputStream, StdinMode};

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The command exited non-zero.
    #[error("command {command} exited with code {code}{}", tail_text(.tail))]
    Exit {
        /// The argv, shown as a JSON list.
        command: String,
        /// Exit code.
        code: i32,
        /// Its last output lines.
        tail: Vec<String>,
    },
    /// The sandbox could not run it.
    #[error("{0}")]
    Sandbox(String),
    /// A COPY/ADD failed.
    #[error("{0}")]
    File(String),
    /// The build context could not be read.
    #[error("{0}")]
    Context(String),
    /// A base image is missing or unreadable.
    #[error(
        "base image {image}: {message} (bring it in with `rbk load`, `rbk import` or `rbk pull`)"
    )]
    BaseImage {
        /// The reference.
        image: String,
        /// Why.
        message: String,
    },
    /// A secret the step requires was not given.
    #[error("secret {0:?} is required: pass --secret id={0},src=FILE")]
    MissingSecret(String),
    /// The store failed.
    #[error("{0}")]
    Store(String),
    /// A layer could not be unpacked (the message carries its causes).
    #[error("{}", error_chain(.0))]
    Unpack(#[source] rbk_store::unpack::UnpackError),
    /// Local I/O failed.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Stopped because another step failed or the user interrupted.
    #[error("cancelled")]
    Cancelled,
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl StepError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StepError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<rbk_store::unpack::UnpackError> for StepError {
    fn from(e: rbk_store::unpack::UnpackError) -> Self {
        match e {
            rbk_store::unpack::UnpackError::Cancelled => StepError::Cancelled,
            e => StepError::Unpack(e),
        }
    }
}

/// An error and its sources on one line, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n  | {}", tail.join("\n  | "))
    }
}

/// Build contexts opened once per build, with their stat caches.
pub struct Contexts {
    dir: PathBuf,
    open: Mutex<BTreeMap<String, Arc<BuildContext>>>,
}

impl Contexts {
    pub(crate) fn new(store_root: &Path) -> Self {
        Contexts {
            dir: store_root.join("cache").join("stat"),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    fn get(&self, path: &str) -> Result<Arc<BuildContext>, StepError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(path) {
            return Ok(c.clone());
        }
        let root = Path::new(path);
        let cache_path = crate::context::stat_cache_path(&self.dir, root);
        let cache = StatCache::load(&cache_path).unwrap_or_default();
        let ctx = BuildContext::open(root)
            .map_err(|e| StepError::Context(e.to_string()))?
            .with_stat_cache(cache);
        let ctx = Arc::new(ctx);
        open.insert(path.to_string(), ctx.clone());
        Ok(ctx)
    }

    /// Writes the stat caches back (best effort: a lost cache only costs a
    /// re-read next time).
    pub(crate) fn save(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for (path, ctx) in open.iter() {
            if ctx.stat_cache().is_dirty() {
                let _ = std::fs::create_dir_all(&self.dir);
                let _ = ctx
                    .stat_cache()
                    .save(&crate::context::stat_cache_path(&self.dir, Path::new(path)));
            }
        }
    }
}

/// What a step reads beyond its definition and parent.
pub(crate) struct StepInputs {
    /// The content-derived part of the cache key.
    pub key: String,
    /// Its plaintext, for `--explain`.
    pub plaintext: serde_json::Value,
    /// The context files a COPY selected while digesting them, handed to the
    /// copy on a miss so a large context is walked once, not twice.
    pub selection: Option<Selection>,
}

/// What `vx` reads: see [`StepInputs`].
pub(crate) fn input_digest(
    ctx: &Ctx<'_, '_>,
    vx: &rbk_compiler::Vertex,
    from_keys: &[&str],
) -> Result<StepInputs, StepError> {
    let plain = |key: String, plaintext| StepInputs {
        key,
        plaintext,
        selection: None,
    };
    match &vx.op {
        Op::Exec(e) => Ok(plain(
            from_keys.join(","),
            json!({
                "args": e.args,
                "env": e.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "user": e.user,
                "cwd": e.cwd,
                "inputs": from_keys,
            }),
        )),
        Op::File(f) => match &f.from {
            Source::Context(path) => {
                let (local, urls): (Vec<String>, Vec<String>) =
                    f.sources.iter().cloned().partition(|s| !is_url(s));
                let mut files = serde_json::Map::new();
                let mut key = String::new();
                let mut selection = None;
                if !local.is_empty() {
                    let c = ctx.contexts().get(path)?;
                    let sel = c
                        .select(&local, &f.excludes)
                        .map_err(|e| StepError::Context(e.to_string()))?;
                    let d = c
                        .digest(&sel)
                        .map_err(|e| StepError::Context(e.to_string()))?;
                    key.push_str(&d.hex);
                    for (p, h) in d.files {
                        files.insert(p, serde_json::Value::String(h));
                    }
                    // Reusable only when it covers every source.
                    if urls.is_empty() {
                        selection = Some(sel);
                    }
                }
                // A URL without --checksum is keyed by its address only.
                for u in &urls {
                    key.push_str(u);
                }
                Ok(StepInputs {
                    key,
                    plaintext: json!({ "sources": f.sources, "dest": f.dest, "files": files }),
                    selection,
                })
            }
            Source::Vertex(_) => Ok(plain(
                from_keys.join(","),
                json!({ "sources": f.sources, "dest": f.dest, "inputs": from_keys }),
            )),
        },
        _ => Ok(plain(String::new(), json!({}))),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
}

/// Runs a RUN step in the sandbox over the mounted `rootfs`.
pub(crate) fn run_exec(
    ctx: &Ctx<'_, '_>,
    exec: &ExecOp,
    step: &Step,
    rootfs: &Path,
    extra: &[&State],
    cancel: &CancelToken,
) -> Result<(), StepError> {
    let b = ctx.builder();
    let mut env = exec.env.clone();
    let mut mounts = Vec::new();
    // Held until the command ends: temp files, tmpfs dirs, stage views.
    let mut keep_files: Vec<tempfile::NamedTempFile> = Vec::new();
    let mut keep_dirs: Vec<tempfile::TempDir> = Vec::new();
    let mut keep_views: Vec<View<'_>> = Vec::new();
    let mut from_states = extra.iter();
    for m in &exec.mounts {
        match &m.kind {
            MountKind::Cache {
                id,
                mode,
                uid,
                gid,
                readonly,
                ..
            } => {
                let name = blake3::hash(id.as_bytes()).to_hex();
                let dir = b.store.root().join("cache-mounts").join(&name[..32]);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| StepError::io("create", &dir, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(*mode));
                    let _ = std::os::unix::fs::chown(&dir, Some(*uid), Some(*gid));
                }
                mounts.push(BindMount {
                    source: dir,
                    target: m.target.clone(),
                    readonly: *readonly,
                });
            }
            MountKind::Secret {
                id,
                required,
                mode,
                uid,
                gid,
                env: env_name,
            } => {
                let Some(src) = b.options.secrets.get(id) else {
                    if *required {
                        return Err(StepError::MissingSecret(id.clone()));
                    }
                    continue;
                };
                if let Some(name) = env_name {
                    let value = std::fs::read_to_string(src)
                        .map_err(|e| StepError::io("read secret", src, e))?;
                    env.push((name.clone(), value.trim_end_matches('\n').to_string()));
                }
                if !m.target.is_empty() {
                    // A private copy with the requested owner and mode;
                    // removed when the step ends, never in a layer.
                    let tmp = tempfile::Builder::new()
                        .prefix("secret-")
                        .tempfile_in(b.store.root().join("tmp"))
                        .map_err(|e| StepError::io("create", &b.store.root().join("tmp"), e))?;
                    std::fs::copy(src, tmp.path())
                        .map_err(|e| StepError::io("read secret", src, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(
                        tmp.path(),
                        std::fs::Permissions::from_mode(*mode),
                    );
                    let _ = std::os::unix::fs::chown(tmp.path(), Some(*uid), Some(*gid));
                    mounts.push(BindMount {
                        source: tmp.path().to_path_buf(),
                        target: m.target.clone(),
                        readonly: true,
                    });
                    keep_files.push(tmp);
                }
            }
            MountKind::Bind {
                from,
                source,
                readwrite,
            } => {
                let root = match from {
                    Source::Context(p) => PathBuf::from(p),
                    Source::Vertex(_) => {
                        let state = from_states.next().ok_or_else(|| {
                            StepError::Internal("bind mount without its input".into())
                        })?;
                        let view = View::open(ctx, state, cancel)?;
                        let p = view.path.clone();
                        keep_views.push(view);
                        p
                    }
                };
                let src = crate::context::resolve_in_root(&root, source, true).map_err(|e| {
                    StepError::Context(format!("bind mount source {source:?}: {e}"))
                })?;
                if *readwrite {
                    return Err(StepError::Sandbox(
                        "RUN --mount=type=bind,rw is not supported yet: writes would reach the source"
                            .into(),
                    ));
                }
                mounts.push(BindMount {
                    source: src,
                    target: m.target.clone(),
                    readonly: true,
                });
            }
            MountKind::Tmpfs { .. } => {
                let dir = tempfile::Builder::new()
                    .prefix("tmpfs-")
                    .tempdir_in(b.store.root().join("tmp"))
                    .map_err(|e| StepError::io("create", &b.store.root().join("tmp"), e))?;
                mounts.push(BindMount {
                    source: dir.path().to_path_buf(),
                    target: m.target.clone(),
                    readonly: false,
                });
                keep_dirs.push(dir);
            }
            MountKind::Ssh { id, required } => {
                if *required {
                    return Err(StepError::Sandbox(format!(
                        "RUN --mount=type=ssh (id {id}) is not supported yet"
                    )));
                }
            }
        }
    }
    let network = match exec.network {
        Network::Default => b.options.network,
        Network::Host => NetworkMode::Host,
        Network::None => NetworkMode::None,
    };
    let spec = ExecSpec {
        args: exec.args.clone(),
        env,
        cwd: exec.cwd.clone(),
        user: exec.user.clone(),
        hostname: "rbk".to_string(),
        network,
        mounts,
        stdin: StdinMode::Null,
        tty: false,
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut partial = Vec::new();
    let mut output = |stream: OutputStream, data: &[u8]| {
        b.reporter.on_log(step, stream, data);
        partial.extend_from_slice(data);
        while let Some(pos) = partial.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            tail.push_back(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            if tail.len() > 20 {
                tail.pop_front();
            }
        }
    };
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    let code = b
        .executor
        .run(rootfs, &spec, &mut output, cancel)
        .map_err(|e| match (&e, e.exit_code()) {
            (crate::sandbox::SandboxError::Cancelled, _) => StepError::Cancelled,
            _ if cancel.is_cancelled() => StepError::Cancelled,
            // A command that cannot be found or run fails like a shell would.
            (_, Some(code)) => StepError::Exit {
                command: serde_json::to_string(&exec.args).unwrap_or_default(),
                code,
                tail: vec![e.to_string()],
            },
            _ => StepError::Sandbox(e.to_string()),
        })?;
    drop(keep_views);
    drop(keep_dirs);
    drop(keep_files);
    if !partial.is_empty() {
        tail.push_back(String::from_utf8_lossy(&partial).into_owned());
    }
    if code != 0 {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        return Err(StepError::Exit {
            command: serde_json::to_string(&exec.args).unwrap_or_default(),
            code,
            tail: tail.into_iter().collect(),
        });
    }
    Ok(())
}

/// Where a COPY reads from.
pub(crate) enum SourceRoot {
    /// A build context directory, with the selection made for the cache key.
    Context(PathBuf, Option<Selection>),
    /// Another stage's or image's filesystem.
    State(State),
}

/// A read-only mount of a state's snapshot, unmounted on drop.
struct View<'a> {
    path: PathBuf,
    key: String,
    guard: Option<rbk_store::sys::MountGuard>,
    snapshotter: &'a dyn rbk_store::snapshot::Snapshotter,
}

impl<'a> View<'a> {
    fn open(
        ctx: &'a Ctx<'_, '_>,
        state: &State,
        cancel: &CancelToken,
    ) -> Result<View<'a>, StepError> {
        let b = ctx.builder();
        let parent = ctx.unpack(state, cancel)?;
        let key = format!(
            "view-{}-{}",
            std::process::id(),
            blake3::hash(state.key.as_bytes()).to_hex()
        );
        let key = format!("{}-{}", &key[..40.min(key.len())], crate::build::unique());
        let mounts = b
            .snapshotter
            .view(&key, parent.as_deref())
            .map_err(|e| StepError::Store(e.to_string()))?;
        let path = b.store.root().join("tmp").join(format!("{key}-view"));
        std::fs::create_dir_all(&path).map_err(|e| StepError::io("create", &path, e))?;
        let guard = match rbk_store::sys::mount_all(&mounts, &path) {
            Ok(g) => g,
            Err(e) => {
                let _ = b.snapshotter.remove(&key);
                let _ = std::fs::remove_dir(&path);
                return Err(StepError::Store(e.to_string()));
            }
        };
        Ok(View {
            path,
            key,
            guard: Some(guard),
            snapshotter: b.snapshotter,
        })
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let _ = self.snapshotter.remove(&self.key);
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Runs a COPY/ADD into the mounted `rootfs`.
pub(crate) fn run_file(
    ctx: &Ctx<'_, '_>,
    file: &FileOp,
    src: &SourceRoot,
    rootfs: &Path,
    cancel: &CancelToken,
) -> Result<(), StepError> {
    let chown = match &file.chown {
        Some(c) => Some(
            crate::fileop::resolve_chown(rootfs, c).map_err(|e| StepError::File(e.to_string()))?,
        ),
        None => None,
    };
    let chmod = match &file.chmod {
        Some(m) => Some(
            u32::from_str_radix(m, 8)
                .map_err(|_| StepError::File(format!("invalid --chmod={m}")))?,
        ),
        None => None,
    };
    let spec = crate::fileop::CopySpec {
        sources: file.sources.clone(),
        dest: file.dest.clone(),
        workdir: file.workdir.clone(),
        chown,
        chmod,
        excludes: file.excludes.clone(),
        parents: file.parents,
        follow_symlinks_in_sources: true,
        keep_ownership: !matches!(src, SourceRoot::Context(..)),
        add: if file.add {
            Some(crate::fileop::AddOptions {
                unpack: true,
                checksum: file.checksum.clone(),
            })
        } else {
            None
        },
        heredocs: file
            .inline
            .iter()
            .map(|f| (f.name.clone(), f.data.clone().into_bytes()))
            .collect(),
    };
    match src {
        SourceRoot::Context(path, selection) => {
            let c = ctx.contexts().get(&path.display().to_string())?;
            match selection {
                Some(sel) => crate::fileop::copy_selection(c.root(), rootfs, &spec, sel),
                None => crate::fileop::copy(c.root(), rootfs, &spec, Some(c.ignore())),
            }
            .map_err(|e| StepError::File(e.to_string()))?;
        }
        SourceRoot::State(state) => {
            let view = View::open(ctx, state, cancel)?;
            crate::fileop::copy(&view.path, rootfs, &spec, None)
                .map_err(|e| StepError::File(e.to_string()))?;
        }
    }
    Ok(())
}
