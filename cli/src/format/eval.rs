//! Executing a parsed template against JSON data, with Go's printing of
//! values and the functions Docker's templates have.

use serde_json::Value;

use super::parse::{Arg, Cmd, Node, Pipe, Pos, TemplateError};

/// The most spaces `pad` adds on a side.
const MAX_PAD: i64 = 4096;

/// Runs `nodes` with `data` as dot, appending the text to `out`.
pub fn execute(nodes: &[Node], data: &Value, out: &mut String) -> Result<(), TemplateError> {
    Exec { root: data }.walk(nodes, data, out)
}

struct Exec<'a> {
    root: &'a Value,
}

/// An error while executing the command at `pos`, in Go's words.
fn exec_err(pos: &Pos, text: &str, msg: &str) -> TemplateError {
    TemplateError(format!(
        "template: :{}:{}: executing \"\" at <{text}>: {msg}",
        pos.line, pos.col
    ))
}

impl Exec<'_> {
    fn walk(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Output(p) => out.push_str(&show(&self.pipe(p, dot)?)),
                Node::If(p, then, els) => {
                    let branch = if truthy(&self.pipe(p, dot)?) {
                        then
                    } else {
                        els
                    };
                    self.walk(branch, dot, out)?;
                }
                Node::With(p, then, els) => {
                    let v = self.pipe(p, dot)?;
                    if truthy(&v) {
                        self.walk(then, &v, out)?;
                    } else {
                        self.walk(els, dot, out)?;
                    }
                }
                Node::Range(p, body, els) => self.range(p, body, els, dot, out)?,
            }
        }
        Ok(())
    }

    fn range(
        &self,
        p: &Pipe,
        body: &[Node],
        els: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let v = self.pipe(p, dot)?;
        let items: Vec<Value> = match v {
            Value::Array(a) => a,
            // Go ranges over a map in key order.
            Value::Object(m) => {
                let mut kv: Vec<(String, Value)> = m.into_iter().collect();
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                kv.into_iter().map(|(_, v)| v).collect()
            }
            Value::Null => Vec::new(),
            other => {
                let c = &p.cmds[0];
                return Err(exec_err(
                    &c.pos,
                    &c.text,
                    &format!("range can't iterate over {}", show(&other)),
                ));
            }
        };
        if items.is_empty() {
            return self.walk(els, dot, out);
        }
        for item in &items {
            self.walk(body, item, out)?;
        }
        Ok(())
    }

    fn pipe(&self, p: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut prev = None;
        for c in &p.cmds {
            prev = Some(self.cmd(c, dot, prev)?);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    fn cmd(&self, c: &Cmd, dot: &Value, prev: Option<Value>) -> Result<Value, TemplateError> {
        if let Some(Arg::Func(name)) = c.args.first() {
            let mut args = Vec::with_capacity(c.args.len());
            for a in &c.args[1..] {
                args.push(self.arg(a, dot)?);
            }
            args.extend(prev);
            return call(name, &args)
                .map_err(|e| exec_err(&c.pos, &c.text, &format!("error calling {name}: {e}")));
        }
        if c.args.len() > 1 || prev.is_some() {
            return Err(exec_err(
                &c.pos,
                &c.text,
                "can't give argument to non-function",
            ));
        }
        self.arg(&c.args[0], dot)
    }

    fn arg(&self, a: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        Ok(match a {
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(n) => Value::from(*n),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Sub(p) => self.pipe(p, dot)?,
            Arg::Func(name) => call(name, &[]).map_err(|e| {
                TemplateError(format!(
                    "template: executing \"\": error calling {name}: {e}"
                ))
            })?,
            Arg::Field {
                path,
                from_root,
                pos,
                text,
            } => {
                let mut v = if *from_root { self.root } else { dot };
                for name in path {
                    v = field(v, name).map_err(|e| exec_err(pos, text, &e))?;
                }
                v.clone()
            }
        })
    }
}

static NULL: Value = Value::Null;

/// Field `name` of `v`: an unknown one is an error, as Go's for a struct.
fn field<'v>(v: &'v Value, name: &str) -> Result<&'v Value, String> {
    match v {
        Value::Object(m) => m
            .get(name)
            .ok_or_else(|| format!("can't evaluate field {name}")),
        Value::Null => Ok(&NULL),
        other => Err(format!(
            "can't evaluate field {name} in type {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// Go's truth: false, 0, nil and empty things are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `{{.}}` prints it: `[a b]` for a list, `map[k:v]` for a
/// map (keys sorted), `<nil>` for null.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut kv: Vec<(&String, &Value)> = m.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = kv.iter().map(|(k, v)| format!("{k}:{}", show(v))).collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn want_args(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!("wrong number of args: want {n} got {}", args.len()))
    }
}

fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("{} is not a string", show(v)))
}

fn as_int(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{} is not an integer", show(v)))
}

/// Calls function `name` (one of [`FUNCS`](super::parse::FUNCS)).
fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| as_str(&args[i]).map(str::to_string);
    Ok(match name {
        "json" => {
            want_args(args, 1)?;
            Value::String(serde_json::to_string(&args[0]).map_err(|e| e.to_string())?)
        }
        "index" => index(args)?,
        "len" => {
            want_args(args, 1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => return Err(format!("len of {}", type_name(other))),
            })
        }
        "lower" | "upper" | "title" => {
            want_args(args, 1)?;
            let t = s(0)?;
            Value::String(match name {
                "lower" => t.to_lowercase(),
                "upper" => t.to_uppercase(),
                _ => title(&t),
            })
        }
        "split" => {
            want_args(args, 2)?;
            let (t, sep) = (s(0)?, s(1)?);
            Value::from(t.split(sep.as_str()).collect::<Vec<_>>())
        }
        "join" => {
            want_args(args, 2)?;
            let list = args[0]
                .as_array()
                .ok_or_else(|| format!("{} is not a list", show(&args[0])))?;
            Value::String(list.iter().map(show).collect::<Vec<_>>().join(&s(1)?))
        }
        "pad" => {
            want_args(args, 3)?;
            let width = |v| as_int(v).map(|n| n.clamp(0, MAX_PAD) as usize);
            let (l, r) = (width(&args[1])?, width(&args[2])?);
            Value::String(format!("{}{}{}", " ".repeat(l), s(0)?, " ".repeat(r)))
        }
        "truncate" => {
            want_args(args, 2)?;
            let n = as_int(&args[1])?.max(0) as usize;
            Value::String(s(0)?.chars().take(n).collect())
        }
        _ => return logic(name, args),
    })
}

/// `print`, `println`, `printf`, comparisons and boolean functions.
fn logic(name: &str, args: &[Value]) -> Result<Value, String> {
    Ok(match name {
        "print" => Value::String(args.iter().map(show).collect()),
        "println" => Value::String(args.iter().map(show).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            let f = args.first().ok_or("printf needs a format")?;
            Value::String(printf(as_str(f)?, &args[1..]))
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let eq = args[1..].iter().any(|b| *b == args[0]);
            Value::Bool(if name == "eq" { eq } else { !eq })
        }
        "not" => {
            want_args(args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" | "or" => {
            let stop = |v: &&Value| if name == "and" { !truthy(v) } else { truthy(v) };
            args.iter()
                .find(stop)
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

fn index(args: &[Value]) -> Result<Value, String> {
    let (first, keys) = args.split_first().ok_or("index of nothing")?;
    let mut v = first.clone();
    for k in keys {
        v = match (&v, k) {
            (Value::Array(a), Value::Number(_)) => {
                let i = as_int(k)?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| a.get(i))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or(Value::Null),
            (Value::Null, _) => return Err("index of untyped nil".into()),
            (v, k) => return Err(format!("can't index {} with {}", type_name(v), show(k))),
        };
    }
    Ok(v)
}

/// Each word's first letter upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// A small `printf`: `%s`, `%v`, `%d` print a value as `{{.}}` does, `%q`
/// quotes it, `%%` is a percent sign.
fn printf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => match args.next() {
                Some(a) if verb == 'q' => out.push_str(&Value::String(show(a)).to_string()),
                Some(a) => out.push_str(&show(a)),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => out.push_str(&format!("%!{other}(unsupported)")),
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}
