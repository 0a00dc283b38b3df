//! `--explain`: why a step missed the cache, found by comparing what went
//! into its key with the nearest earlier record of the same step.

use serde_json::Value;

/// At most this many changed files are named.
const MAX_FILES: usize = 5;

/// A one-line (or few-line) reason for a cache miss.
pub fn explain(previous: Option<&Value>, now: &Value, no_cache: bool) -> String {
    if no_cache {
        return "--no-cache".to_string();
    }
    let Some(prev) = previous else {
        return "no earlier build of this step in the store or the given caches".to_string();
    };
    let mut why = Vec::new();
    if prev.get("step") != now.get("step") {
        why.push(format!(
            "instruction changed: {} → {}",
            text(prev.get("step")),
            text(now.get("step"))
        ));
    }
    why.extend(list_changes(
        "env",
        prev.get("env"),
        now.get("env"),
        "ENV/ARG",
    ));
    if prev.get("args") != now.get("args") && prev.get("step") == now.get("step") {
        why.push("command changed (SHELL or heredoc)".to_string());
    }
    for field in ["user", "cwd", "dest"] {
        if prev.get(field) != now.get(field) {
            why.push(format!(
                "{field} changed: {} → {}",
                text(prev.get(field)),
                text(now.get(field))
            ));
        }
    }
    why.extend(file_changes(prev.get("files"), now.get("files")));
    if prev.get("inputs") != now.get("inputs") {
        why.push("a stage it copies or mounts from changed".to_string());
    }
    if why.is_empty() && prev.get("parent") != now.get("parent") {
        why.push("the step before it changed".to_string());
    }
    if why.is_empty() && prev.get("source_date_epoch") != now.get("source_date_epoch") {
        why.push(format!(
            "SOURCE_DATE_EPOCH changed: {} → {}",
            text(prev.get("source_date_epoch")),
            text(now.get("source_date_epoch"))
        ));
    }
    if why.is_empty() && prev.get("definition") != now.get("definition") {
        why.push("its definition changed (a flag, or the rbk version's key scheme)".to_string());
    }
    if why.is_empty() {
        why.push(
            "no record of this very step in the store or the given caches (pruned, or never built here)"
                .to_string(),
        );
    }
    why.join("; ")
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
        None => "nothing".to_string(),
    }
}

/// `KEY=value` lists: which keys were added, removed or changed.
fn list_changes(
    _field: &str,
    prev: Option<&Value>,
    now: Option<&Value>,
    what: &str,
) -> Vec<String> {
    let pairs = |v: Option<&Value>| -> Vec<(String, String)> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (kv.to_string(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (p, n) = (pairs(prev), pairs(now));
    let mut out = Vec::new();
    for (k, v) in &n {
        match p.iter().find(|(pk, _)| pk == k) {
            None => out.push(format!("{what} {k} added ({k}={v})")),
            Some((_, pv)) if pv != v => out.push(format!("{what} {k} changed: {pv:?} → {v:?}")),
            _ => {}
        }
    }
    for (k, _) in &p {
        if !n.iter().any(|(nk, _)| nk == k) {
            out.push(format!("{what} {k} removed"));
        }
    }
    out
}

fn file_changes(prev: Option<&Value>, now: Option<&Value>) -> Vec<String> {
    let (Some(Value::Object(p)), Some(Value::Object(n))) = (prev, now) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for (path, h) in n {
        match p.get(path) {
            None => changed.push(format!("{path} (added)")),
            Some(ph) if ph != h => changed.push(path.clone()),
            _ => {}
        }
    }
    for path in p.keys() {
        if !n.contains_key(path) {
            changed.push(format!("{path} (removed)"));
        }
    }
    if changed.is_empty() {
        return Vec::new();
    }
    let total = changed.len();
    let mut shown: Vec<String> = changed.into_iter().take(MAX_FILES).collect();
    if total > MAX_FILES {
        shown.push(format!("and {} more", total - MAX_FILES));
    }
    vec![format!(
        "{} changed: {}",
        if total == 1 { "file" } else { "files" },
        shown.join(", ")
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_what_changed() {
        let base = json!({"step": "RUN make", "parent": "p1", "env": ["A=1", "B=2"],
                          "files": {"src/a.c": "h1", "src/b.c": "h2"}});
        assert_eq!(
            explain(None, &base, false),
            "no earlier build of this step in the store or the given caches"
        );
        assert_eq!(explain(Some(&base), &base, true), "--no-cache");
        let mut file = base.clone();
        file["files"]["src/a.c"] = json!("h9");
        assert_eq!(explain(Some(&base), &file, false), "file changed: src/a.c");
        let mut env = base.clone();
        env["env"] = json!(["A=1", "B=3", "C=0"]);
        let why = explain(Some(&base), &env, false);
        assert!(why.contains("ENV/ARG B changed: \"2\" → \"3\""), "{why}");
        assert!(why.contains("ENV/ARG C added"), "{why}");
        let mut parent = base.clone();
        parent["parent"] = json!("p2");
        assert_eq!(
            explain(Some(&base), &parent, false),
            "the step before it changed"
        );
        let mut cmd = base.clone();
        cmd["step"] = json!("RUN make all");
        assert!(explain(Some(&base), &cmd, false).starts_with("instruction changed"));
    }

    #[test]
    fn many_files_are_summarised() {
        let p = json!({"files": {}});
        let mut files = serde_json::Map::new();
        for i in 0..8 {
            files.insert(format!("f{i}"), json!("h"));
        }
        let n = json!({"files": files});
        let why = explain(Some(&p), &n, false);
        assert!(why.starts_with("files changed: f0 (added)"), "{why}");
        assert!(why.ends_with("and 3 more"), "{why}");
    }
}
