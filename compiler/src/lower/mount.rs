//! `RUN --mount=…` options → typed mounts, and their part of a digest.

use crate::graph::{BuildGraph, Canons, Mount, MountKind, Sharing, Source};

use super::util::join_path;

pub(super) fn canon_mount(c: &mut Canons, m: &Mount, graph: &BuildGraph) {
    c.str("mount.target", &m.target);
    let src = |c: &mut Canons, s: &Source| match s {
        Source::Context { path, name } => {
            c.context("mount.context", path, name);
        }
        Source::Vertex(v) => {
            c.vertex("mount.from", graph.vertex(*v));
        }
    };
    match &m.kind {
        MountKind::Bind {
            from,
            source,
            readwrite,
        } => {
            c.str("mount.type", "bind");
            src(c, from);
            c.str("mount.source", source)
                .num("mount.rw", *readwrite as u64);
        }
        MountKind::Cache {
            id,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly,
        } => {
            c.str("mount.type", "cache").str("mount.id", id);
            c.str("mount.sharing", &format!("{sharing:?}"));
            if let Some(f) = from {
                src(c, f);
            }
            c.str("mount.source", source)
                .num("mount.mode", *mode as u64)
                .num("mount.uid", *uid as u64)
                .num("mount.gid", *gid as u64)
                .num("mount.ro", *readonly as u64);
        }
        MountKind::Tmpfs { size } => {
            c.str("mount.type", "tmpfs").num("mount.size", *size);
        }
        // Secrets never enter a key: only that one is mounted, and where.
        MountKind::Secret { id, env, .. } => {
            c.str("mount.type", "secret").str("mount.id", id);
            c.str("mount.env", env.as_deref().unwrap_or(""));
        }
        MountKind::Ssh { id, .. } => {
            c.str("mount.type", "ssh").str("mount.id", id);
        }
    }
}

#[derive(Default)]
pub(super) struct MountSpec {
    kind: String,
    target: Option<String>,
    source: Option<String>,
    pub(super) from: Option<String>,
    id: Option<String>,
    sharing: Option<String>,
    mode: Option<String>,
    uid: Option<String>,
    gid: Option<String>,
    readonly: Option<bool>,
    required: bool,
    size: Option<String>,
    env: Option<String>,
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("invalid value {other:?} for mount option {key}")),
    }
}

/// `type=cache,target=/x,id=y,…`
pub(super) fn parse_mount(spec: &str) -> Result<MountSpec, String> {
    let mut m = MountSpec {
        kind: "bind".to_string(),
        ..Default::default()
    };
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| v.ok_or_else(|| format!("mount option {key} needs a value"));
        match key.as_str() {
            "type" => m.kind = need(value)?.to_ascii_lowercase(),
            "target" | "dst" | "destination" => m.target = Some(need(value)?),
            "source" | "src" => m.source = Some(need(value)?),
            "from" => m.from = Some(need(value)?),
            "id" => m.id = Some(need(value)?),
            "sharing" => m.sharing = Some(need(value)?),
            "mode" => m.mode = Some(need(value)?),
            "uid" => m.uid = Some(need(value)?),
            "gid" => m.gid = Some(need(value)?),
            "size" => m.size = Some(need(value)?),
            "env" => m.env = Some(need(value)?),
            "readonly" | "ro" => m.readonly = Some(parse_bool(&key, value.as_deref())?),
            "readwrite" | "rw" => m.readonly = Some(!parse_bool(&key, value.as_deref())?),
            "required" => m.required = parse_bool(&key, value.as_deref())?,
            _ => return Err(format!("unknown mount option {key:?}")),
        }
    }
    if !matches!(
        m.kind.as_str(),
        "bind" | "cache" | "tmpfs" | "secret" | "ssh"
    ) {
        return Err(format!(
            "unsupported mount type {:?} (use bind, cache, tmpfs, secret or ssh)",
            m.kind
        ));
    }
    Ok(m)
}

fn parse_num(key: &str, v: Option<&str>, radix: u32, default: u32) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(s) => u32::from_str_radix(s, radix)
            .map_err(|_| format!("invalid value {s:?} for mount option {key}")),
    }
}

impl MountSpec {
    pub(super) fn build(
        self,
        from: Option<Source>,
        context: Source,
        workdir: &str,
    ) -> Result<Mount, String> {
        let target = self.target.as_deref().map(|t| join_path(workdir, t));
        let kind = match self.kind.as_str() {
            "bind" => MountKind::Bind {
                from: from.unwrap_or(context),
                source: self.source.clone().unwrap_or_else(|| "/".to_string()),
                readwrite: self.readonly == Some(false),
            },
            "cache" => self.cache(from, target.as_deref())?,
            "tmpfs" => MountKind::Tmpfs {
                size: match self.size.as_deref() {
                    None => 0,
                    Some(s) => s
                        .parse()
                        .map_err(|_| format!("invalid tmpfs size {s:?}: expected bytes"))?,
                },
            },
            "secret" => return self.secret(target),
            _ => return Ok(self.ssh(target)),
        };
        Ok(Mount {
            target: target.ok_or_else(|| self.no_target())?,
            kind,
        })
    }

    fn no_target(&self) -> String {
        format!("mount type={} needs a target", self.kind)
    }

    /// `type=cache`: its id defaults to the target.
    fn cache(&self, from: Option<Source>, target: Option<&str>) -> Result<MountKind, String> {
        let t = target.ok_or_else(|| self.no_target())?;
        Ok(MountKind::Cache {
            id: self.id.clone().unwrap_or_else(|| t.to_string()),
            sharing: match self.sharing.as_deref() {
                None | Some("shared") => Sharing::Shared,
                Some("private") => Sharing::Private,
                Some("locked") => Sharing::Locked,
                Some(o) => return Err(format!("invalid sharing mode {o:?}")),
            },
            from,
            source: self.source.clone().unwrap_or_else(|| "/".to_string()),
            mode: parse_num("mode", self.mode.as_deref(), 8, 0o755)?,
            uid: parse_num("uid", self.uid.as_deref(), 10, 0)?,
            gid: parse_num("gid", self.gid.as_deref(), 10, 0)?,
            readonly: self.readonly.unwrap_or(false),
        })
    }

    /// `type=secret`: the id defaults to the target's file name (or the env
    /// name); the target to `/run/secrets/<id>` unless only `env=` is given.
    fn secret(&self, target: Option<String>) -> Result<Mount, String> {
        let id = match (&self.id, &target, &self.env) {
            (Some(id), _, _) => id.clone(),
            (None, Some(t), _) => t.rsplit('/').next().unwrap_or(t).to_string(),
            (None, None, Some(e)) => e.clone(),
            (None, None, None) => return Err("secret mount needs an id or a target".into()),
        };
        let t = match (&target, &self.env) {
            (Some(t), _) => t.clone(),
            (None, Some(_)) => String::new(),
            (None, None) => format!("/run/secrets/{id}"),
        };
        Ok(Mount {
            target: t,
            kind: MountKind::Secret {
                id,
                required: self.required,
                mode: parse_num("mode", self.mode.as_deref(), 8, 0o400)?,
                uid: parse_num("uid", self.uid.as_deref(), 10, 0)?,
                gid: parse_num("gid", self.gid.as_deref(), 10, 0)?,
                env: self.env.clone(),
            },
        })
    }

    /// `type=ssh`: BuildKit's default socket path and id.
    fn ssh(&self, target: Option<String>) -> Mount {
        Mount {
            target: target.unwrap_or_else(|| "/run/buildkit/ssh_agent.0".to_string()),
            kind: MountKind::Ssh {
                id: self.id.clone().unwrap_or_else(|| "default".to_string()),
                required: self.required,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Source {
        Source::Context {
            path: "/ctx".into(),
            name: "context".into(),
        }
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked").ok();
        assert!(m.is_some());
        assert!(parse_mount("type=weird,target=/x").is_err());
        assert!(parse_mount("type=cache,bogus=1").is_err());
        let built =
            parse_mount("type=cache,target=cache").and_then(|m| m.build(None, ctx(), "/app"));
        match built {
            Ok(Mount {
                target,
                kind: MountKind::Cache { id, .. },
            }) => {
                assert_eq!(target, "/app/cache");
                assert_eq!(id, "/app/cache");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
