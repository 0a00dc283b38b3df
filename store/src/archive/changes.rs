//! `import --change` lines: the metadata-only Dockerfile instructions
//! (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL`,
//! `STOPSIGNAL`, `VOLUME`, `ONBUILD`, `SHELL`) applied to an image config,
//! as `docker import --change` does. A small parser of its own: the store
//! knows nothing of the Dockerfile compiler.

use std::collections::BTreeMap;

use crate::error::{ArchiveError, StoreError};
use crate::oci::{ContainerConfig, Empty};

fn bad(line: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Archive(ArchiveError::InvalidChange {
        line: line.to_string(),
        reason: reason.into(),
    })
}

/// Applies one `--change` line to `config`.
pub fn apply_change(config: &mut ContainerConfig, line: &str) -> Result<(), StoreError> {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (trimmed, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(bad(line, format!("{keyword} needs an argument")));
    }
    match keyword.as_str() {
        "CMD" => config.cmd = Some(command(rest, config)),
        "ENTRYPOINT" => {
            config.entrypoint = Some(command(rest, config));
            // As in Docker: a new entrypoint drops the inherited CMD.
            config.cmd = None;
        }
        "SHELL" => config.shell = Some(json_array(line, rest)?),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(line, rest)? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs(line, rest)? {
                labels.insert(k, v);
            }
        }
        "WORKDIR" => {
            let dir = unquote(line, rest)?;
            config.working_dir = Some(if dir.starts_with('/') {
                dir
            } else {
                let base = config.working_dir.as_deref().unwrap_or("/");
                format!("{}/{dir}", base.trim_end_matches('/'))
            });
        }
        "USER" => config.user = Some(unquote(line, rest)?),
        "STOPSIGNAL" => config.stop_signal = Some(unquote(line, rest)?),
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in words(line, rest)? {
                ports.insert(port(line, &p)?, Empty {});
            }
        }
        "VOLUME" => {
            let list = if rest.starts_with('[') {
                json_array(line, rest)?
            } else {
                words(line, rest)?
            };
            let vols = config.volumes.get_or_insert_with(BTreeMap::new);
            for v in list {
                vols.insert(v, Empty {});
            }
        }
        "ONBUILD" => config.on_build.get_or_insert_with(Vec::new).push(rest.to_string()),
        other => {
            return Err(bad(
                line,
                format!("{other} cannot be applied; use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, SHELL, STOPSIGNAL, USER, VOLUME or WORKDIR"),
            ))
        }
    }
    Ok(())
}

/// Exec form (`["a", "b"]`) or shell form (run through the image's
/// `SHELL`, default `/bin/sh -c`).
fn command(rest: &str, config: &ContainerConfig) -> Vec<String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return v;
        }
        // Like Docker: text that is not a valid JSON array is shell form.
    }
    let mut cmd = config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
    cmd.push(rest.to_string());
    cmd
}

fn json_array(line: &str, rest: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(rest).map_err(|source| {
        StoreError::Archive(ArchiveError::ChangeNotJsonArray {
            line: line.to_string(),
            source,
        })
    })
}

/// Splits on unquoted whitespace, honouring "double", 'single' quotes and
/// backslash escapes.
fn words(line: &str, rest: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                has = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| bad(line, "a trailing backslash escapes nothing"))?;
                cur.push(next);
                has = true;
            }
            (_, c) => {
                cur.push(c);
                has = true;
            }
        }
    }
    if quote.is_some() {
        return Err(bad(line, "unterminated quote"));
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

fn unquote(line: &str, rest: &str) -> Result<String, StoreError> {
    let w = words(line, rest)?;
    match w.as_slice() {
        [one] => Ok(one.clone()),
        _ => Ok(rest.to_string()),
    }
}

/// `k=v k2="v 2"`, or the legacy one-pair form `k v with spaces`.
fn pairs(line: &str, rest: &str) -> Result<Vec<(String, String)>, StoreError> {
    let ws = words(line, rest)?;
    if ws.first().is_some_and(|w| !w.contains('=')) {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(line, "expected NAME=VALUE or NAME VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(line, format!("{w:?} is not NAME=VALUE"))),
        })
        .collect()
}

/// `80`, `80/tcp`, `53/udp`, `8000-8001/tcp` → with the protocol spelled
/// out, as Docker stores exposed ports.
fn port(line: &str, p: &str) -> Result<String, StoreError> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid_num = |n: &str| n.parse::<u16>().is_ok_and(|x| x > 0);
    let ok_num = match num.split_once('-') {
        Some((a, b)) => valid_num(a) && valid_num(b),
        None => valid_num(num),
    };
    if !ok_num || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(
            line,
            format!("invalid port {p:?}: expected PORT[/tcp|udp|sctp]"),
        ));
    }
    Ok(format!("{num}/{proto}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for l in lines {
            apply_change(&mut c, l).unwrap_or_else(|e| panic!("{l}: {e}"));
        }
        c
    }

    #[test]
    fn applies_each_instruction() {
        let c = apply(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENV A=1 B=\"two words\"",
            "env A 3 and more",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER nobody",
            "EXPOSE 80 53/udp",
            "LABEL org.x=y \"k 2\"=v",
            "STOPSIGNAL SIGTERM",
            "VOLUME /data /logs",
            "ONBUILD RUN make",
        ]);
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), ["B=two words", "A=3 and more"]);
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.user.unwrap(), "nobody");
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        assert_eq!(c.labels.as_ref().unwrap()["k 2"], "v");
        assert_eq!(c.labels.unwrap()["org.x"], "y");
        assert_eq!(c.stop_signal.unwrap(), "SIGTERM");
        assert_eq!(c.volumes.unwrap().len(), 2);
        assert_eq!(c.on_build.unwrap(), ["RUN make"]);
    }

    #[test]
    fn shell_form_and_entrypoint_reset_cmd() {
        let c = apply(&["CMD echo hi", "ENTRYPOINT [\"/bin/busybox\"]"]);
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/busybox"]);
        let c = apply(&["SHELL [\"/bin/ash\", \"-c\"]", "CMD echo hi"]);
        assert_eq!(c.cmd.unwrap(), ["/bin/ash", "-c", "echo hi"]);
    }

    #[test]
    fn rejects_with_the_line() {
        for (line, needle) in [
            ("RUN make", "cannot be applied"),
            ("CMD", "needs an argument"),
            ("EXPOSE 99999", "invalid port"),
            ("EXPOSE 80/xyz", "invalid port"),
            ("ENV \"A=1", "unterminated quote"),
            ("LABEL =x y=z", "NAME=VALUE"),
            ("SHELL sh -c", "JSON array"),
        ] {
            let err = apply_change(&mut ContainerConfig::default(), line)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(needle) && err.contains(&format!("{line:?}")),
                "{line}: {err}"
            );
        }
        // The JSON error is the cause, not part of the message.
        let err = apply_change(&mut ContainerConfig::default(), "SHELL sh -c").unwrap_err();
        let cause = std::error::Error::source(&err).unwrap();
        assert!(cause.is::<serde_json::Error>(), "{cause:?}");
        assert!(!err.to_string().contains(&cause.to_string()), "{err}");
    }
}
