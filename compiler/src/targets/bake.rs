//! Bake's configuration language over a parsed rbk.toml or
//! docker-bake.json: `variable` blocks (their defaults overridden from the
//! environment), `${NAME}` interpolation in every string, `inherits`,
//! `matrix` with `name` templates, and `--set` overrides. The result is
//! plain target and group tables.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Most targets a matrix may make, and most levels of `inherits`.
const MAX_MATRIX: usize = 1_000;
const MAX_INHERITS: usize = 64;

/// Keys whose tables merge (an inheriting target's entries over its
/// parents'); every other key is replaced.
const MAP_KEYS: &[&str] = &["args", "labels", "contexts", "annotations"];

/// Keys that hold lists (for `--set`).
const LIST_KEYS: &[&str] = &[
    "tags",
    "platforms",
    "output",
    "cache-from",
    "cache-to",
    "secret",
    "ssh",
];

/// The file after the language is applied.
#[derive(Debug, Default)]
pub struct Resolved {
    /// `[defaults]` (rbk's), interpolated.
    pub defaults: Value,
    /// Targets by (generated) name, with `inherits`, `matrix` and `name`
    /// consumed.
    pub targets: BTreeMap<String, Value>,
    /// Groups, interpolated, each member a target or group name.
    pub groups: BTreeMap<String, Vec<String>>,
    /// A matrix target's name → the names of the targets it made.
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// Applies the language to `doc`; `env` looks up environment variables;
/// `set` holds `--set PATTERN.KEY=VALUE` overrides. Errors are messages
/// naming the target, group or variable.
pub fn resolve(
    doc: &Value,
    env: &dyn Fn(&str) -> Option<String>,
    set: &[String],
) -> Result<Resolved, String> {
    let vars = variables(doc, env)?;
    let raw = object(doc, "target");
    let mut out = Resolved::default();
    for name in raw.keys() {
        let merged = inherited(&raw, name, &mut Vec::new())?;
        expand_matrix(name, merged, &vars, &mut out)?;
    }
    out.defaults = match doc.get("defaults") {
        Some(d) => interpolate(d, &vars).map_err(|e| format!("[defaults]: {e}"))?,
        None => Value::Object(Map::new()),
    };
    for (g, body) in object(doc, "group") {
        let members = body
            .get("targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut names = Vec::with_capacity(members.len());
        for m in members {
            let m = interpolate(&m, &vars).map_err(|e| format!("group {g:?}: {e}"))?;
            let m = m.as_str().unwrap_or_default().to_string();
            match out.aliases.get(&m) {
                Some(made) => names.extend(made.iter().cloned()),
                None => names.push(m),
            }
        }
        out.groups.insert(g.clone(), names);
    }
    for s in set {
        apply_set(&mut out.targets, s)?;
    }
    Ok(out)
}

fn object(doc: &Value, key: &str) -> Map<String, Value> {
    doc.get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The variables: each `variable.NAME`'s default, or the environment's
/// value of NAME when set; defaults may use other variables.
fn variables(
    doc: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, String> {
    let defs = object(doc, "variable");
    // The environment's values are taken as they are; defaults may name
    // other variables and are resolved once each, on first use.
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    for (name, def) in &defs {
        if let Some(v) = env(name) {
            resolved.insert(name.clone(), v);
            continue;
        }
        let v = match def.get("default") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        defaults.insert(name.clone(), v);
    }
    let names: Vec<String> = defs.keys().cloned().collect();
    let mut vars = Variables {
        defaults: &defaults,
        names: &names,
        resolved,
        resolving: Vec::new(),
    };
    for name in defaults.keys() {
        vars.resolve(name)?;
    }
    Ok(vars.resolved)
}

/// Variables being resolved: each default expanded once (a resolved value
/// is never expanded again, so `$${X}` stays `${X}`), a cycle an error.
struct Variables<'v> {
    defaults: &'v BTreeMap<String, String>,
    names: &'v [String],
    resolved: BTreeMap<String, String>,
    /// The chain being resolved, to name a cycle.
    resolving: Vec<String>,
}

impl Variables<'_> {
    fn resolve(&mut self, name: &str) -> Result<Option<String>, String> {
        if let Some(v) = self.resolved.get(name) {
            return Ok(Some(v.clone()));
        }
        let Some(default) = self.defaults.get(name) else {
            return Ok(None);
        };
        if self.resolving.iter().any(|n| n == name) {
            self.resolving.push(name.to_string());
            return Err(format!(
                "variables refer to each other: {}",
                self.resolving.join(" → ")
            ));
        }
        if self.resolving.len() >= MAX_VARIABLE_DEPTH {
            return Err(format!(
                "variable {name:?}: more than {MAX_VARIABLE_DEPTH} variables refer one to the next"
            ));
        }
        self.resolving.push(name.to_string());
        let names = self.names;
        let v = substitute_with(default, names, &mut |n| self.resolve(n))
            .map_err(|e| format!("variable {name:?}: {e}"))?;
        self.resolving.pop();
        self.resolved.insert(name.to_string(), v.clone());
        Ok(Some(v))
    }
}

/// How long a chain of variables naming the next may be.
const MAX_VARIABLE_DEPTH: usize = 256;

/// Target `name` with what it inherits merged under it.
fn inherited(
    raw: &Map<String, Value>,
    name: &str,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    if path.iter().any(|p| p == name) {
        path.push(name.to_string());
        return Err(format!(
            "targets inherit from each other: {}",
            path.join(" → ")
        ));
    }
    if path.len() >= MAX_INHERITS {
        return Err(format!(
            "target {name:?}: inherits nested deeper than {MAX_INHERITS}"
        ));
    }
    let Some(own) = raw.get(name).and_then(Value::as_object) else {
        let from = path.last().cloned().unwrap_or_default();
        return Err(format!(
            "target {from:?} inherits {name:?}, which is not a target"
        ));
    };
    path.push(name.to_string());
    let mut merged = Map::new();
    let parents: Vec<String> = own
        .get("inherits")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for p in parents {
        let parent = inherited(raw, &p, path)?;
        merge(&mut merged, &parent);
    }
    path.pop();
    let mut own = own.clone();
    own.remove("inherits");
    // A parent's matrix and name template are its own.
    merged.remove("matrix");
    merged.remove("name");
    merge(&mut merged, &own);
    Ok(merged)
}

/// `over`'s keys onto `into`: tables merged, everything else replaced.
fn merge(into: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) if MAP_KEYS.contains(&k.as_str()) => {
                for (bk, bv) in b {
                    a.insert(bk.clone(), bv.clone());
                }
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One target (or, with a `matrix`, one per combination of its values),
/// interpolated, into `out`.
fn expand_matrix(
    name: &str,
    mut target: Map<String, Value>,
    vars: &BTreeMap<String, String>,
    out: &mut Resolved,
) -> Result<(), String> {
    let matrix = target.remove("matrix");
    let template = target.remove("name");
    target.remove("description");
    let Some(matrix) = matrix else {
        let t = interpolate(&Value::Object(target), vars)
            .map_err(|e| format!("target {name:?}: {e}"))?;
        out.targets.insert(name.to_string(), t);
        return Ok(());
    };
    let axes: Vec<(String, Vec<String>)> = matrix
        .as_object()
        .ok_or_else(|| format!("target {name:?}: matrix must be a table of lists"))?
        .iter()
        .map(|(k, v)| {
            let values = v
                .as_array()
                .ok_or_else(|| format!("target {name:?}: matrix.{k} must be a list"))?
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            Ok((k.clone(), values))
        })
        .collect::<Result<_, String>>()?;
    let total = axes
        .iter()
        .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
        .filter(|&n| n <= MAX_MATRIX)
        .ok_or_else(|| {
            format!("target {name:?}: the matrix makes more than {MAX_MATRIX} targets")
        })?;
    let mut made = Vec::with_capacity(total);
    for i in 0..total {
        let mut scope = vars.clone();
        let mut rest = i;
        let mut parts = Vec::new();
        for (k, values) in axes.iter().rev() {
            let v = &values[rest % values.len()];
            rest /= values.len();
            scope.insert(k.clone(), v.clone());
            parts.push(v.clone());
        }
        parts.reverse();
        let generated = match &template {
            Some(t) => interpolate(t, &scope)
                .map_err(|e| format!("target {name:?}: name: {e}"))?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => format!("{name}-{}", parts.join("-")),
        };
        if generated.is_empty() || made.contains(&generated) {
            return Err(format!(
                "target {name:?}: the matrix's name template gives {generated:?} twice or empty; use every matrix key in name"
            ));
        }
        let t = interpolate(&Value::Object(target.clone()), &scope)
            .map_err(|e| format!("target {generated:?}: {e}"))?;
        out.targets.insert(generated.clone(), t);
        made.push(generated);
    }
    out.aliases.insert(name.to_string(), made);
    Ok(())
}

/// `v` with `${NAME}` replaced in every string (keys of tables too).
fn interpolate(v: &Value, vars: &BTreeMap<String, String>) -> Result<Value, String> {
    map_strings(v, true, &|s| substitute(s, vars))
}

/// `v` with `f` applied to every string in it (and to the keys of its
/// tables, with `keys`).
pub(super) fn map_strings(
    v: &Value,
    keys: bool,
    f: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(f(s)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| map_strings(x, keys, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                let k = if keys { f(k)? } else { k.clone() };
                out.insert(k, map_strings(x, keys, f)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// `s` with `${NAME}` replaced; `$${` stands for a literal `${`.
pub(crate) fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let names: Vec<String> = vars.keys().cloned().collect();
    substitute_with(s, &names, &mut |n| Ok(vars.get(n).cloned()))
}

/// [`substitute`] with each variable's value from `lookup` (`None`: not a
/// variable; `names` are the known ones, for the suggestion).
fn substitute_with(
    s: &str,
    names: &[String],
    lookup: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            return Err(format!("unclosed ${{ in {s:?}"));
        };
        let name = body[..close].trim();
        if let Some(func) = name.split_once('(').map(|(f, _)| f.trim()) {
            return Err(format!(
                "${{{name}}}: functions are not evaluated ({func}); give the value, or a variable"
            ));
        }
        match lookup(name)? {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "${{{name}}} is not a variable{}",
                    crate::suggest::did_you_mean(name, names.iter().map(String::as_str))
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_else(|| format!(
                            " (declare it: [variable.{name}] default = \"…\")"
                        ))
                ));
            }
        }
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `--set PATTERN.KEY=VALUE` (PATTERN may use `*`).
fn apply_set(targets: &mut BTreeMap<String, Value>, spec: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!("--set {spec:?}: {why}; expected TARGET.KEY=VALUE (TARGET may be * or use *)")
    };
    let (lhs, value) = spec.split_once('=').ok_or_else(|| bad("no ="))?;
    let (pattern, key) = lhs.split_once('.').ok_or_else(|| bad("no TARGET."))?;
    let names: Vec<String> = targets
        .keys()
        .filter(|n| glob(pattern, n))
        .cloned()
        .collect();
    if names.is_empty() {
        return Err(bad(&format!("no target matches {pattern:?}")));
    }
    let (key, sub) = match key.split_once('.') {
        Some((k, s)) => (k, Some(s)),
        None => (key, None),
    };
    let new: Value = match (key, sub) {
        (k, Some(_)) if MAP_KEYS.contains(&k) => Value::String(value.to_string()),
        (k, None) if LIST_KEYS.contains(&k) || k == "platform" => {
            let items: Vec<Value> = if k.starts_with("platform") {
                value
                    .split(',')
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            } else {
                vec![Value::String(value.to_string())]
            };
            Value::Array(items)
        }
        ("context" | "dockerfile" | "target", None) => Value::String(value.to_string()),
        ("no-cache" | "pull", None) => Value::Bool(match value {
            "true" | "1" | "" => true,
            "false" | "0" => false,
            _ => return Err(bad("expected true or false")),
        }),
        _ => return Err(bad(&format!("{key:?} cannot be set"))),
    };
    for n in names {
        let Some(t) = targets.get_mut(&n).and_then(Value::as_object_mut) else {
            continue;
        };
        match sub {
            Some(s) => {
                let table = t
                    .entry(key.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = table.as_object_mut() {
                    m.insert(s.to_string(), new.clone());
                }
            }
            // `platform=` sets the list rbk reads.
            None if key == "platform" => {
                t.remove("platform");
                t.insert("platforms".into(), new.clone());
            }
            None => {
                t.insert(key.to_string(), new.clone());
            }
        }
    }
    Ok(())
}

/// `*`-only globbing.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head) && {
                let rest = &name[head.len()..];
                (0..=rest.len())
                    .filter(|&i| rest.is_char_boundary(i))
                    .any(|i| glob(tail, &rest[i..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn variables_inherits_and_matrix() {
        let doc = json!({
            "variable": {"TAG": {"default": "1.0"}, "REG": {"default": "reg.example/${TAG}"}},
            "target": {
                "base": {"args": {"A": "1", "B": "1"}, "tags": ["x"], "matrix": {"z": ["q"]}},
                "app": {"inherits": ["base"], "args": {"B": "2"}, "tags": ["${REG}/app:${TAG}"]},
                "multi": {
                    "inherits": ["app"],
                    "matrix": {"flavor": ["slim", "full"], "n": [1, 2]},
                    "name": "multi-${flavor}-${n}",
                    "tags": ["m:${flavor}-${n}"]
                }
            },
            "group": {"default": {"targets": ["multi", "app"]}}
        });
        let env = |n: &str| (n == "TAG").then(|| "2.0".to_string());
        let r = resolve(&doc, &env, &[]).unwrap();
        let app = &r.targets["app"];
        assert_eq!(app["args"], json!({"A": "1", "B": "2"}));
        assert_eq!(app["tags"], json!(["reg.example/2.0/app:2.0"]));
        assert!(app.get("matrix").is_none());
        assert_eq!(r.aliases["multi"].len(), 4);
        assert_eq!(r.targets["multi-slim-2"]["tags"], json!(["m:slim-2"]));
        assert_eq!(r.groups["default"].len(), 5);
    }

    #[test]
    fn errors_and_set() {
        let doc = json!({"target": {"a": {"inherits": ["b"]}, "b": {"inherits": ["a"]}}});
        let e = resolve(&doc, &none, &[]).unwrap_err();
        assert!(e.contains("inherit from each other"), "{e}");
        let doc = json!({"target": {"a": {"tags": ["${NOPE}"]}}});
        let e = resolve(&doc, &none, &[]).unwrap_err();
        assert!(e.contains("${NOPE} is not a variable"), "{e}");
        let doc = json!({"target": {"app": {"tags": ["t"]}, "api": {}}});
        let set = [
            "a*.args.X=1".to_string(),
            "app.tags=r/app:2".to_string(),
            "*.no-cache=true".to_string(),
            "api.platform=linux/amd64".to_string(),
        ];
        let r = resolve(&doc, &none, &set).unwrap();
        assert_eq!(r.targets["app"]["args"]["X"], "1");
        assert_eq!(r.targets["api"]["args"]["X"], "1");
        assert_eq!(r.targets["app"]["tags"], json!(["r/app:2"]));
        assert_eq!(r.targets["api"]["no-cache"], true);
        assert_eq!(r.targets["api"]["platforms"], json!(["linux/amd64"]));
        let e = resolve(&doc, &none, &["zzz.tags=x".into()]).unwrap_err();
        assert!(e.contains("no target matches"), "{e}");
        assert_eq!(substitute("a$${b}", &BTreeMap::new()).unwrap(), "a${b}");
    }

    #[test]
    fn variables_are_expanded_once() {
        // `$${` in a default is a literal `${`, and stays one when another
        // variable uses it; an environment value is taken as it is.
        let doc = json!({
            "variable": {
                "LIT": {"default": "$${HOME}"},
                "USES": {"default": "x-${LIT}"},
                "FROM_ENV": {"default": "d"},
                "AFTER": {"default": "${FROM_ENV}"},
            },
            "target": {"t": {"tags": ["${USES}", "${AFTER}"]}}
        });
        let env = |n: &str| (n == "FROM_ENV").then(|| "${LIT}".to_string());
        let r = resolve(&doc, &env, &[]).unwrap();
        assert_eq!(r.targets["t"]["tags"], json!(["x-${HOME}", "${LIT}"]));
        let doc = json!({
            "variable": {"A": {"default": "${B}"}, "B": {"default": "${A}"}},
            "target": {"t": {}}
        });
        let e = resolve(&doc, &none, &[]).unwrap_err();
        assert!(
            e.contains("variables refer to each other: A → B → A"),
            "{e}"
        );
    }
}
