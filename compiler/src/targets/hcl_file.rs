//! docker-bake.hcl: hcl-rs parses it and evaluates its expressions with
//! the variables (their defaults, or the environment's values) and the
//! functions bake files use most; what stays unevaluated (a matrix value
//! such as `${flavor}`) is left as `${…}` text for the bake language to
//! fill in, as for docker-bake.json.

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Body, Value};

/// Rounds of evaluation for variables whose defaults use other variables.
const MAX_ROUNDS: usize = 64;

/// The HCL file as a bake document, or an error message.
pub fn to_bake(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<serde_json::Value, String> {
    let mut body: Body = hcl::parse(text).map_err(|e| e.to_string())?;
    let mut ctx = Context::new();
    declare_functions(&mut ctx);
    // Variables: the environment's value, else the default evaluated with
    // the variables known so far (in rounds: defaults may use each other).
    let mut pending: Vec<(String, Option<hcl::Expression>)> = Vec::new();
    for block in body.blocks() {
        if block.identifier() != "variable" {
            continue;
        }
        let Some(name) = block.labels().first().map(|l| l.as_str().to_string()) else {
            return Err("a variable block needs a name: variable \"NAME\" { … }".into());
        };
        if let Some(v) = env(&name) {
            ctx.declare_var(name.clone(), v);
            continue;
        }
        let default = block
            .body()
            .attributes()
            .find(|a| a.key() == "default")
            .map(|a| a.expr().clone());
        pending.push((name, default));
    }
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let before = pending.len();
        pending.retain(|(name, default)| match default {
            None => {
                ctx.declare_var(name.clone(), "");
                false
            }
            Some(expr) => match expr.evaluate(&ctx) {
                Ok(v) => {
                    ctx.declare_var(name.clone(), v);
                    false
                }
                Err(_) => true,
            },
        });
        if pending.len() == before {
            break;
        }
    }
    if let Some((name, Some(expr))) = pending.first() {
        let why = expr
            .evaluate(&ctx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(format!("variable {name:?}: {why}"));
    }
    // Everything else: what refers to a matrix value stays for later; any
    // other failure (an unknown function, a type error) is an error.
    if let Err(errors) = body.evaluate_in_place(&ctx) {
        for e in errors.into_iter() {
            let text = e.to_string();
            if !text.contains("undefined variable") {
                return Err(text);
            }
        }
    }
    hcl::from_body(body).map_err(|e| e.to_string())
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The functions bake files use most (HCL's standard library names).
fn declare_functions(ctx: &mut Context<'_>) {
    let one_string = |f: fn(FuncArgs) -> Result<Value, String>| {
        FuncDef::builder().param(ParamType::String).build(f)
    };
    ctx.declare_func(
        "upper",
        one_string(|a| Ok(Value::String(string(&a[0]).to_uppercase()))),
    );
    ctx.declare_func(
        "lower",
        one_string(|a| Ok(Value::String(string(&a[0]).to_lowercase()))),
    );
    ctx.declare_func(
        "trimspace",
        one_string(|a| Ok(Value::String(string(&a[0]).trim().to_string()))),
    );
    declare_logic_functions(ctx);
}

/// `equal`, `notequal`, `and`, `or`.
fn declare_logic_functions(ctx: &mut Context<'_>) {
    ctx.declare_func(
        "equal",
        FuncDef::builder()
            .params([ParamType::Any, ParamType::Any])
            .build(|a: FuncArgs| Ok(Value::Bool(a[0] == a[1]))),
    );
    ctx.declare_func(
        "notequal",
        FuncDef::builder()
            .params([ParamType::Any, ParamType::Any])
            .build(|a: FuncArgs| Ok(Value::Bool(a[0] != a[1]))),
    );
    ctx.declare_func(
        "and",
        FuncDef::builder()
            .params([ParamType::Bool, ParamType::Bool])
            .build(|a: FuncArgs| {
                Ok(Value::Bool(
                    a[0] == Value::Bool(true) && a[1] == Value::Bool(true),
                ))
            }),
    );
    ctx.declare_func(
        "or",
        FuncDef::builder()
            .params([ParamType::Bool, ParamType::Bool])
            .build(|a: FuncArgs| {
                Ok(Value::Bool(
                    a[0] == Value::Bool(true) || a[1] == Value::Bool(true),
                ))
            }),
    );
    declare_list_functions(ctx);
}

/// `replace`, `join`, `split`, `coalesce`, `length`.
fn declare_list_functions(ctx: &mut Context<'_>) {
    ctx.declare_func(
        "replace",
        FuncDef::builder()
            .params([ParamType::String, ParamType::String, ParamType::String])
            .build(|a: FuncArgs| {
                Ok(Value::String(
                    string(&a[0]).replace(&string(&a[1]), &string(&a[2])),
                ))
            }),
    );
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .params([ParamType::String, ParamType::array_of(ParamType::Any)])
            .build(|a: FuncArgs| {
                let sep = string(&a[0]);
                let items: Vec<String> = match &a[1] {
                    Value::Array(v) => v.iter().map(string).collect(),
                    other => vec![string(other)],
                };
                Ok(Value::String(items.join(&sep)))
            }),
    );
    ctx.declare_func(
        "split",
        FuncDef::builder()
            .params([ParamType::String, ParamType::String])
            .build(|a: FuncArgs| {
                let sep = string(&a[0]);
                Ok(Value::Array(
                    string(&a[1])
                        .split(sep.as_str())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }),
    );
    ctx.declare_func(
        "coalesce",
        FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(|a: FuncArgs| {
                Ok(a.iter()
                    .find(|v| !matches!(v, Value::Null) && !string(v).is_empty())
                    .cloned()
                    .unwrap_or(Value::Null))
            }),
    );
    ctx.declare_func(
        "length",
        FuncDef::builder()
            .param(ParamType::Any)
            .build(|a: FuncArgs| {
                let n = match &a[0] {
                    Value::Array(v) => v.len(),
                    Value::Object(m) => m.len(),
                    other => string(other).chars().count(),
                };
                Ok(Value::from(n as u64))
            }),
    );
}
