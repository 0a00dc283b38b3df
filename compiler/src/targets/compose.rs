//! compose.yaml / docker-compose.yml as targets: every service with a
//! `build:` section (short form: the context; long form: context,
//! dockerfile, args, target, labels, cache_from, cache_to, secrets, tags,
//! ssh, platforms, no_cache, pull, additional_contexts) becomes a target of
//! that name, tagged with the service's `image:`. Compose's own `${VAR}`,
//! `${VAR:-default}` and `${VAR-default}` are read from the environment.

use serde_json::{json, Map, Value};

/// A compose file as a bake document (`{"target": …, "group": …}`), or an
/// error with its line and column (0 when unknown).
pub fn to_bake(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, (usize, usize, String)> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        (line, col, e.to_string())
    })?;
    let doc = interpolate(&doc, env).map_err(|m| (0, 0, m))?;
    let top_secrets = doc
        .get("secrets")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let services = doc.get("services").and_then(Value::as_object).ok_or((
        0,
        0,
        "no services: section".to_string(),
    ))?;
    let mut targets = Map::new();
    for (name, svc) in services {
        let Some(build) = svc.get("build") else {
            continue;
        };
        let mut t = build_target(name, build, &top_secrets).map_err(|m| (0, 0, m))?;
        if !t.contains_key("context") {
            t.insert("context".into(), json!("."));
        }
        if let Some(image) = svc.get("image").and_then(Value::as_str) {
            let tags = t.entry("tags").or_insert_with(|| json!([]));
            if let Some(a) = tags.as_array_mut() {
                a.insert(0, json!(image));
            }
        }
        targets.insert(name.clone(), Value::Object(t));
    }
    if targets.is_empty() {
        return Err((0, 0, "no service has a build: section".to_string()));
    }
    let names: Vec<Value> = targets.keys().map(|k| json!(k)).collect();
    // Compose has interpolated already: what is left is literal for bake.
    Ok(literal(
        &json!({"target": targets, "group": {"default": {"targets": names}}}),
    ))
}

/// Every `${` escaped as bake's `$${`.
fn literal(v: &Value) -> Value {
    super::bake::map_strings(v, true, &|s| Ok(s.replace("${", "$${"))).unwrap_or_else(|_| v.clone())
}

/// A service's `build:` section as target keys.
fn build_target(
    name: &str,
    build: &Value,
    top_secrets: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let err = |m: String| format!("service {name:?}: {m}");
    let mut t = Map::new();
    match build {
        Value::String(ctx) => {
            t.insert("context".into(), json!(ctx));
        }
        Value::Object(b) => {
            for (k, v) in b {
                match k.as_str() {
                    "context" | "dockerfile" | "target" => {
                        t.insert(k.clone(), v.clone());
                    }
                    "args" | "labels" => {
                        t.insert(
                            k.clone(),
                            table(v).map_err(|m| err(format!("build.{k}: {m}")))?,
                        );
                    }
                    "additional_contexts" => {
                        t.insert(
                            "contexts".into(),
                            table(v).map_err(|m| err(format!("build.{k}: {m}")))?,
                        );
                    }
                    "cache_from" | "cache_to" | "tags" | "platforms" | "ssh" => {
                        let key = k.replace('_', "-");
                        t.insert(key, list(v).map_err(|m| err(format!("build.{k}: {m}")))?);
                    }
                    "no_cache" | "pull" => {
                        t.insert(k.replace('_', "-"), v.clone());
                    }
                    "secrets" => {
                        let specs = secrets(v, top_secrets)
                            .map_err(|m| err(format!("build.secrets: {m}")))?;
                        t.insert("secret".into(), Value::Array(specs));
                    }
                    // What does not change the image (network, shm_size,
                    // extra_hosts, isolation, privileged …) is ignored,
                    // as bake does.
                    _ => {}
                }
            }
        }
        _ => return Err(err("build: must be a path or a table".into())),
    }
    Ok(t)
}

/// A compose map or `KEY=VALUE` list as a table of strings.
fn table(v: &Value) -> Result<Value, String> {
    let mut out = Map::new();
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let s = match x {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), json!(s));
            }
        }
        Value::Array(a) => {
            for x in a {
                let s = x.as_str().ok_or("list entries must be KEY=VALUE strings")?;
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                out.insert(k.to_string(), json!(v));
            }
        }
        _ => return Err("must be a map or a list of KEY=VALUE".into()),
    }
    Ok(Value::Object(out))
}

/// A list of strings (a single string stands for a list of one).
fn list(v: &Value) -> Result<Value, String> {
    match v {
        Value::String(s) => Ok(json!([s])),
        Value::Array(a) if a.iter().all(Value::is_string) => Ok(v.clone()),
        _ => Err("must be a list of strings".into()),
    }
}

/// A service's build secrets as `--secret` values, from the top-level
/// `secrets:` (`file:` or `environment:`).
fn secrets(v: &Value, top: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let items = v.as_array().ok_or("must be a list")?;
    let mut out = Vec::new();
    for item in items {
        let (source, id) = match item {
            Value::String(s) => (s.clone(), s.clone()),
            Value::Object(m) => {
                let source = m
                    .get("source")
                    .and_then(Value::as_str)
                    .ok_or("an entry needs source:")?;
                let id = m.get("target").and_then(Value::as_str).unwrap_or(source);
                (source.to_string(), id.to_string())
            }
            _ => return Err("entries must be names or tables".into()),
        };
        let def = top
            .get(&source)
            .ok_or_else(|| format!("{source:?} is not in the top-level secrets:"))?;
        let spec = if let Some(f) = def.get("file").and_then(Value::as_str) {
            format!("id={id},src={f}")
        } else if let Some(e) = def.get("environment").and_then(Value::as_str) {
            format!("id={id},env={e}")
        } else {
            return Err(format!("secret {source:?} needs file: or environment:"));
        };
        out.push(json!(spec));
    }
    Ok(out)
}

/// Compose's interpolation over every string: `$VAR`, `${VAR}`,
/// `${VAR:-default}`, `${VAR-default}`, `$$` for `$`.
fn interpolate(v: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Value, String> {
    super::bake::map_strings(v, false, &|s| expand(s, env))
}

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let inner = &body[..close];
            let value = if let Some((name, d)) = inner.split_once(":-") {
                env(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| d.to_string())
            } else if let Some((name, d)) = inner.split_once('-') {
                env(name).unwrap_or_else(|| d.to_string())
            } else {
                env(inner).unwrap_or_default()
            };
            out.push_str(&value);
            rest = &body[close + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                out.push('$');
            } else {
                out.push_str(&env(&after[..end]).unwrap_or_default());
            }
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_with_builds_become_targets() {
        let text = r#"
services:
  web:
    image: example/web:${TAG:-dev}
    build:
      context: ./web
      dockerfile: Dockerfile.prod
      args:
        VERSION: 2
      labels: ["team=core"]
      target: runtime
      cache_from: ["type=local,src=/c"]
      secrets: [token]
      tags: ["example/web:extra"]
  worker:
    build: ./worker
  db:
    image: mariadb:10
secrets:
  token:
    environment: CI_TOKEN
"#;
        let env = |n: &str| (n == "TAG").then(|| "1.2".to_string());
        let doc = to_bake(text, &env).unwrap();
        let web = &doc["target"]["web"];
        assert_eq!(web["context"], "./web");
        assert_eq!(web["dockerfile"], "Dockerfile.prod");
        assert_eq!(web["args"]["VERSION"], "2");
        assert_eq!(web["labels"]["team"], "core");
        assert_eq!(web["tags"], json!(["example/web:1.2", "example/web:extra"]));
        assert_eq!(web["cache-from"], json!(["type=local,src=/c"]));
        assert_eq!(web["secret"], json!(["id=token,env=CI_TOKEN"]));
        assert_eq!(doc["target"]["worker"]["context"], "./worker");
        assert!(doc["target"].get("db").is_none());
        assert_eq!(doc["group"]["default"]["targets"], json!(["web", "worker"]));
        let e = to_bake("services:\n  a: [\n", &|_| None).unwrap_err();
        assert!(e.0 > 0, "{e:?}");
    }
}
