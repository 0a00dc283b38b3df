//! RUN: its cache key (argv, environment, user, working directory and the
//! stages it mounts), its `--mount`s, and running it in the sandbox.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_compiler::graph::{ExecOp, Mount, MountKind, Network, Source};
use serde_json::json;

use super::{
    Change, Entitlement, Execution, LayerPolicy, StepEnv, StepError, StepInputs, StepKind,
};
use crate::backend::Mounted;
use crate::context::Selected;
use crate::progress::Step;
use crate::state::State;
use rbk_runtime::sandbox::{
    BindMount, CancelToken, ExecSpec, NetworkMode, OutputStream, SandboxError, StdinMode,
};

/// RUN: a command in the sandbox, its change a layer.
pub(crate) struct RunStep<'g>(pub &'g ExecOp);

impl StepKind for RunStep<'_> {
    fn policy(&self) -> LayerPolicy {
        LayerPolicy::Layer
    }

    fn inputs(&self, env: &StepEnv<'_>, from_keys: &[&str]) -> Result<StepInputs, StepError> {
        inputs(env, self.0, from_keys)
    }

    fn execute(
        &self,
        env: &StepEnv<'_>,
        run: &Execution<'_>,
        rootfs: &Path,
    ) -> Result<Change, StepError> {
        execute(env, self.0, run.step, rootfs, run.extra, run.cancel)?;
        Ok(Change::Changed)
    }

    /// Its context bind mounts' digests (as the first pass keyed them), and
    /// for each mount of a stage what it shows: the digest of the source a
    /// bind mount selects, a cache mount's seed stage's chain id.
    fn result_inputs(
        &self,
        env: &StepEnv<'_>,
        extra: &[&State],
        cancel: &CancelToken,
    ) -> Result<Option<Vec<String>>, StepError> {
        let binds = bind_selections(env, self.0)?;
        let mut parts: Vec<String> = binds.iter().map(|b| b.digest.hex.clone()).collect();
        let mut states = extra.iter();
        for m in &self.0.mounts {
            let source = match &m.kind {
                MountKind::Bind {
                    from: Source::Vertex(_),
                    source,
                    ..
                } => Some(source),
                MountKind::Cache {
                    from: Some(Source::Vertex(_)),
                    ..
                } => None,
                _ => continue,
            };
            let state = states
                .next()
                .ok_or(StepError::Internal("a mount without its input"))?;
            parts.push(match source {
                Some(src) => {
                    super::cutoff::selected(env, state, std::slice::from_ref(src), &[], cancel)?
                }
                None => state.chain_id().map(|c| c.to_string()).unwrap_or_default(),
            });
        }
        Ok(Some(parts))
    }

    fn needs_sandbox(&self) -> bool {
        true
    }

    fn entitlements(&self) -> Vec<(&'static str, Entitlement)> {
        let mut needs = Vec::new();
        if self.0.insecure {
            needs.push(("RUN --security=insecure", Entitlement::SecurityInsecure));
        }
        if self.0.network == Network::Host {
            needs.push(("RUN --network=host", Entitlement::NetworkHost));
        }
        needs
    }
}

/// Lines of output kept to show when a command fails.
const TAIL_LINES: usize = 20;

/// The key of a RUN: its definition covers the command; what it mounts from
/// other stages comes in through their keys, what it mounts from a build
/// context through the digest of all that the mount shows.
pub(crate) fn inputs(
    env: &StepEnv<'_>,
    e: &ExecOp,
    from_keys: &[&str],
) -> Result<StepInputs, StepError> {
    let mut key = from_keys.join(",");
    let binds = bind_selections(env, e)?;
    for b in &binds {
        key.push_str(";bind:");
        key.push_str(&b.digest.hex);
    }
    let mut plaintext = json!({
        "args": e.args,
        "env": e.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "user": e.user,
        "cwd": e.cwd,
        "inputs": from_keys,
    });
    if let (false, Some(obj)) = (binds.is_empty(), plaintext.as_object_mut()) {
        let digests: Vec<&str> = binds.iter().map(|b| b.digest.hex.as_str()).collect();
        obj.insert("context_binds".into(), json!(digests));
    }
    Ok(StepInputs::plain(key, plaintext))
}

/// What a RUN's bind mounts of build contexts show, in mount order: made
/// once a build by the context module (the key's and the check's are one).
fn bind_selections(env: &StepEnv<'_>, e: &ExecOp) -> Result<Vec<Arc<Selected>>, StepError> {
    context_binds(e)
        .map(|(context, source)| Ok(env.contexts.select_visible(context, source)?))
        .collect()
}

/// A RUN's bind mounts of a build context: the context and the source.
fn context_binds(e: &ExecOp) -> impl Iterator<Item = (&str, &str)> {
    e.mounts.iter().filter_map(|m| match &m.kind {
        MountKind::Bind {
            from: Source::Context { path: context, .. },
            source,
            ..
        } => Some((context.as_str(), source.as_str())),
        _ => None,
    })
}

/// After the command: every context bind mount still shows what its key
/// was made of, so the result is of that content (a file changed while
/// the command could read it fails the step).
fn check_binds(env: &StepEnv<'_>, e: &ExecOp) -> Result<(), StepError> {
    let binds = bind_selections(env, e)?;
    for ((context, source), keyed) in context_binds(e).zip(&binds) {
        let c = env.contexts.get(context, None)?;
        c.check_unchanged(source, &keyed.selection, &keyed.digest)?;
    }
    Ok(())
}

/// Runs `exec` in the sandbox over the mounted `rootfs`.
pub(crate) fn execute(
    env: &StepEnv<'_>,
    exec: &ExecOp,
    step: &Step,
    rootfs: &Path,
    extra: &[&State],
    cancel: &CancelToken,
) -> Result<(), StepError> {
    // Held until the command ends: temp files, tmpfs dirs, stage views.
    let mut held = Held::default();
    let mut vars = exec.env.to_vec();
    let mut mounts = Vec::new();
    let mut from_states = extra.iter();
    for m in &exec.mounts {
        if let Some(bind) = mount(env, m, &mut from_states, &mut vars, &mut held, cancel)? {
            mounts.push(bind);
        }
    }
    let spec = ExecSpec {
        args: exec.args.clone(),
        env: vars,
        cwd: exec.cwd.clone(),
        user: exec.user.clone(),
        hostname: "rbk".to_string(),
        network: match exec.network {
            Network::Default => env.network,
            Network::Host => NetworkMode::Host,
            Network::None => NetworkMode::None,
        },
        mounts,
        publish: Vec::new(),
        stdin: StdinMode::Null,
        tty: false,
        insecure: exec.insecure,
        scratch: Some(env.dirs.tmp.clone()),
    };
    if cancel.is_cancelled() {
        return Err(StepError::Cancelled);
    }
    let mut tail = Tail::default();
    let mut output = |stream: OutputStream, data: &[u8]| {
        env.reporter.on_log(step, stream, data);
        tail.push(data);
    };
    let result = env.executor.run(rootfs, &spec, &mut output, cancel);
    drop(held);
    let command = || serde_json::to_string(&exec.args).unwrap_or_default();
    let code = result.map_err(|e| {
        if matches!(e, SandboxError::Cancelled) || cancel.is_cancelled() {
            return StepError::Cancelled;
        }
        match e.exit_code() {
            // A command that cannot be found or run fails like a shell would.
            Some(code) => StepError::Exit {
                command: command(),
                code,
                tail: vec![crate::error_chain(&e)],
            },
            None => StepError::Sandbox(e),
        }
    })?;
    if code != 0 {
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        return Err(StepError::Exit {
            command: command(),
            code,
            tail: tail.lines(),
        });
    }
    check_binds(env, exec)
}

/// What a RUN's mounts hold on to until the command ends.
#[derive(Default)]
struct Held<'a> {
    files: Vec<tempfile::NamedTempFile>,
    dirs: Vec<tempfile::TempDir>,
    views: Vec<Box<dyn Mounted + 'a>>,
}

/// Prepares one `RUN --mount`: the bind mount it becomes, if any (a secret
/// given as an environment variable only adds to `vars`).
fn mount<'e, 's>(
    env: &'e StepEnv<'_>,
    m: &Mount,
    from_states: &mut impl Iterator<Item = &'s &'s State>,
    vars: &mut Vec<(String, String)>,
    held: &mut Held<'e>,
    cancel: &CancelToken,
) -> Result<Option<BindMount>, StepError> {
    let bind = |source: PathBuf, readonly: bool| BindMount {
        source,
        target: m.target.clone(),
        readonly,
    };
    match &m.kind {
        MountKind::Cache {
            id,
            mode,
            uid,
            gid,
            readonly,
            ..
        } => Ok(Some(bind(
            cache_dir(env, id, *mode, *uid, *gid)?,
            *readonly,
        ))),
        MountKind::Secret { .. } => secret_mount(env, m, vars, held),
        MountKind::Bind {
            from,
            source,
            readwrite,
        } => {
            if *readwrite {
                return Err(StepError::Unsupported(
                    "RUN --mount=type=bind,rw (writes would reach the source)",
                ));
            }
            let root = match from {
                Source::Context { path, .. } => PathBuf::from(path),
                Source::Vertex(_) => {
                    let state = from_states
                        .next()
                        .ok_or(StepError::Internal("bind mount without its input"))?;
                    let view = env.view(state, cancel)?;
                    let p = view.path().to_path_buf();
                    held.views.push(view);
                    p
                }
            };
            Ok(Some(bind(bind_source(&root, source)?, true)))
        }
        MountKind::Tmpfs { .. } => {
            let dir = tempfile::Builder::new()
                .prefix("tmpfs-")
                .tempdir_in(&env.dirs.tmp)
                .map_err(|e| StepError::io("create", &env.dirs.tmp, e))?;
            let path = dir.path().to_path_buf();
            held.dirs.push(dir);
            Ok(Some(bind(path, false)))
        }
        MountKind::Ssh { id, required } => match env.ssh.get(id) {
            // The agent's socket, bound where the step looks for it.
            Some(socket) => {
                vars.push(("SSH_AUTH_SOCK".to_string(), m.target.clone()));
                Ok(Some(bind(socket.clone(), false)))
            }
            None if *required => Err(StepError::MissingSsh(id.clone())),
            None => Ok(None),
        },
    }
}

/// A `RUN --mount=type=secret`: the secret as an environment variable
/// and/or a private copy mounted read-only; nothing when an optional
/// secret was not given.
fn secret_mount<'e>(
    env: &'e StepEnv<'_>,
    m: &Mount,
    vars: &mut Vec<(String, String)>,
    held: &mut Held<'e>,
) -> Result<Option<BindMount>, StepError> {
    let MountKind::Secret {
        id,
        required,
        mode,
        uid,
        gid,
        env: env_name,
    } = &m.kind
    else {
        return Err(StepError::Internal("not a secret mount"));
    };
    let Some(src) = env.secrets.get(id) else {
        return match required {
            true => Err(StepError::MissingSecret(id.clone())),
            false => Ok(None),
        };
    };
    if let Some(name) = env_name {
        let value =
            std::fs::read_to_string(src).map_err(|e| StepError::io("read secret", src, e))?;
        vars.push((name.clone(), value.trim_end_matches('\n').to_string()));
    }
    if m.target.is_empty() {
        return Ok(None);
    }
    let file = secret_copy(env, src, *mode, *uid, *gid)?;
    let source = file.path().to_path_buf();
    held.files.push(file);
    Ok(Some(BindMount {
        source,
        target: m.target.clone(),
        readonly: true,
    }))
}

/// The host path a `RUN --mount=type=bind,source=…` mounts: `source`
/// inside `root` (the context or a stage), never outside it.
fn bind_source(root: &std::path::Path, source: &str) -> Result<PathBuf, StepError> {
    crate::context::resolve_in_root(root, source, true).map_err(|e| StepError::BindSource {
        path: source.to_string(),
        source: e,
    })
}

/// The directory of cache mount `id`, made on first use with the owner
/// and mode asked for; it stays between builds.
fn cache_dir(
    env: &StepEnv<'_>,
    id: &str,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, StepError> {
    let name = blake3::hash(id.as_bytes()).to_hex();
    let dir = env.dirs.cache_mounts.join(&name[..32]);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| StepError::io("create", &dir, e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
    }
    Ok(dir)
}

/// A private copy of a secret with the owner and mode asked for; removed
/// when the step ends, never in a layer.
fn secret_copy(
    env: &StepEnv<'_>,
    src: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<tempfile::NamedTempFile, StepError> {
    let tmp = tempfile::Builder::new()
        .prefix("secret-")
        .tempfile_in(&env.dirs.tmp)
        .map_err(|e| StepError::io("create", &env.dirs.tmp, e))?;
    std::fs::copy(src, tmp.path()).map_err(|e| StepError::io("read secret", src, e))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode));
    let _ = std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid));
    Ok(tmp)
}

/// The last lines of a command's output, to show when it fails.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(pos) = self.partial.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            self.lines
                .push_back(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn lines(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines
                .push_back(String::from_utf8_lossy(&self.partial).into_owned());
        }
        self.lines.into_iter().collect()
    }
}
