//! `rbk.toml` and `docker-bake.json`: many images declared at once, in
//! `docker buildx bake`'s schema (TOML for rbk.toml, JSON as bake writes
//! it). See `docs/rbk-toml.md`. This module only interprets the text; the
//! caller reads the file and the Dockerfiles it names.

mod bake;
mod compose;
mod hcl_file;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings a target can have; `[defaults]` has the same shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Build context directory, relative to the rbk.toml file.
    pub context: Option<String>,
    /// Dockerfile path, relative to the context.
    pub dockerfile: Option<String>,
    /// Tags to apply.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Build args.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Stage to build.
    pub target: Option<String>,
    /// Labels added to the image.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `os/arch`.
    pub platform: Option<String>,
    /// Where to export this target's build cache, as for `--cache-to`
    /// (`type=registry,ref=HOST/NAME:TAG[,mode=min|max]`).
    #[serde(default, rename = "cache-to")]
    pub cache_to: Vec<String>,
    /// Caches to import, as for `--cache-from`.
    #[serde(default, rename = "cache-from")]
    pub cache_from: Vec<String>,
    /// Named contexts, as `--build-context` (`target:NAME` for another
    /// target's image, as bake).
    #[serde(default)]
    pub contexts: BTreeMap<String, String>,
    /// Platforms (bake's list; rbk builds one per target today).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Outputs, as `-o`.
    #[serde(default)]
    pub output: Vec<String>,
    /// Secrets, as `--secret`.
    #[serde(default)]
    pub secret: Vec<String>,
    /// SSH agents, as `--ssh`.
    #[serde(default)]
    pub ssh: Vec<String>,
    /// Run every step of the target whatever the cache has.
    #[serde(default, rename = "no-cache")]
    pub no_cache: Option<bool>,
    /// Pull the target's base images even when stored.
    #[serde(default)]
    pub pull: Option<bool>,
    /// Targets whose settings this one starts from (bake's `inherits`).
    #[serde(default)]
    pub inherits: Vec<String>,
    /// Bake's `matrix`: one target per combination of the values.
    #[serde(default)]
    pub matrix: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    /// A matrix target's name template (`app-${flavor}`).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A `[variable.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Its value unless the environment sets NAME.
    pub default: Option<serde_json::Value>,
    /// Free text.
    pub description: Option<String>,
}

/// A named set of targets (or other groups).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Target or group names.
    pub targets: Vec<String>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    /// Defaults for every target.
    #[serde(default)]
    pub defaults: TargetSpec,
    /// Targets by name.
    #[serde(default, rename = "target")]
    pub targets: BTreeMap<String, TargetSpec>,
    /// Groups by name; `default` is built when no name is given.
    #[serde(default, rename = "group")]
    pub groups: BTreeMap<String, Group>,
    /// Variables, for `${NAME}` in every string.
    #[serde(default, rename = "variable")]
    pub variables: BTreeMap<String, Variable>,
    /// A matrix target's name → the targets it made.
    #[serde(skip)]
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// How a target file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// rbk.toml.
    Toml,
    /// docker-bake.json.
    Json,
    /// compose.yaml: services with a `build:` section.
    Compose,
    /// docker-bake.hcl: blocks as bake writes them, evaluated (variables,
    /// the functions bake files use most).
    Hcl,
}

/// A target with defaults applied and paths made relative to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// Target name.
    pub name: String,
    /// Context directory.
    pub context: PathBuf,
    /// Dockerfile path.
    pub dockerfile: PathBuf,
    /// Tags.
    pub tags: Vec<String>,
    /// Build args (defaults' merged under the target's).
    pub args: BTreeMap<String, String>,
    /// Stage to build.
    pub target: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `cache-to` entries (the target's, else the defaults').
    pub cache_to: Vec<String>,
    /// `cache-from` entries (the target's, else the defaults').
    pub cache_from: Vec<String>,
    /// Named contexts (the defaults' merged under the target's).
    pub contexts: BTreeMap<String, String>,
    /// Platforms (`platforms`, else `platform`).
    pub platforms: Vec<String>,
    /// Outputs, as `-o`.
    pub output: Vec<String>,
    /// Secrets, as `--secret`.
    pub secret: Vec<String>,
    /// SSH agents, as `--ssh`.
    pub ssh: Vec<String>,
    /// Ignore the cache for this target.
    pub no_cache: bool,
    /// Pull its bases.
    pub pull: bool,
}

/// A problem in an rbk.toml file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not valid TOML or not the schema.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// A name on the command line or in a group names nothing.
    #[error("{file}: no target or group named {name:?} (targets: {known})")]
    Unknown {
        /// The file.
        file: String,
        /// The unknown name.
        name: String,
        /// Known target names.
        known: String,
    },
    /// Groups that include each other.
    #[error("{file}: group {name:?} includes itself")]
    Cycle {
        /// The file.
        file: String,
        /// The group.
        name: String,
    },
    /// The file declares no target.
    #[error("{file}: no [target.NAME] tables")]
    Empty {
        /// The file.
        file: String,
    },
    /// Bake's language: a variable, `inherits`, `matrix` or `--set`.
    #[error("{file}: {message}")]
    Language {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

impl TargetFile {
    /// Parses rbk.toml text; `file` is used in messages. No environment,
    /// no `--set` (see [`TargetFile::parse_with`]).
    pub fn parse(text: &str, file: &str) -> Result<Self, TargetError> {
        Self::parse_with(text, file, Syntax::Toml, &|_| None, &[])
    }

    /// Parses a target file: checks it against the schema (errors with
    /// line and column), then applies bake's language — variables (`env`
    /// overrides their defaults), `${NAME}`, `inherits`, `matrix` — and the
    /// `--set` overrides.
    pub fn parse_with(
        text: &str,
        file: &str,
        syntax: Syntax,
        env: &dyn Fn(&str) -> Option<String>,
        set: &[String],
    ) -> Result<Self, TargetError> {
        let syntax_error = |line: usize, col: usize, message: String| TargetError::Syntax {
            file: file.to_string(),
            line,
            col,
            message,
        };
        let (checked, doc): (TargetFile, serde_json::Value) = match syntax {
            Syntax::Toml => {
                let checked: TargetFile = toml::from_str(text).map_err(|e| {
                    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                    syntax_error(line, col, e.message().to_string())
                })?;
                let value: toml::Value = toml::from_str(text)
                    .map_err(|e| syntax_error(1, 1, e.message().to_string()))?;
                let doc =
                    serde_json::to_value(value).map_err(|e| syntax_error(1, 1, e.to_string()))?;
                (checked, doc)
            }
            Syntax::Json => {
                let at = |e: serde_json::Error| syntax_error(e.line(), e.column(), e.to_string());
                let checked: TargetFile = serde_json::from_str(text).map_err(at)?;
                let doc: serde_json::Value = serde_json::from_str(text).map_err(at)?;
                (checked, doc)
            }
            Syntax::Hcl => {
                let doc = hcl_file::to_bake(text, env).map_err(|m| syntax_error(1, 1, m))?;
                let checked: TargetFile = serde_json::from_value(doc.clone())
                    .map_err(|e| syntax_error(1, 1, e.to_string()))?;
                (checked, doc)
            }
            Syntax::Compose => {
                let doc = compose::to_bake(text, env)
                    .map_err(|(line, col, m)| syntax_error(line.max(1), col.max(1), m))?;
                let checked: TargetFile = serde_json::from_value(doc.clone())
                    .map_err(|e| syntax_error(1, 1, e.to_string()))?;
                (checked, doc)
            }
        };
        if checked.targets.is_empty() {
            return Err(TargetError::Empty {
                file: file.to_string(),
            });
        }
        let language = |message: String| TargetError::Language {
            file: file.to_string(),
            message,
        };
        let resolved = bake::resolve(&doc, env, set).map_err(language)?;
        let spec = |what: &str, v: serde_json::Value| -> Result<TargetSpec, TargetError> {
            serde_json::from_value(v).map_err(|e| language(format!("{what}: {e}")))
        };
        let mut targets = BTreeMap::new();
        for (name, v) in resolved.targets {
            let t = spec(&format!("target {name:?}"), v)?;
            targets.insert(name, t);
        }
        Ok(TargetFile {
            defaults: spec("[defaults]", resolved.defaults)?,
            targets,
            groups: resolved
                .groups
                .into_iter()
                .map(|(g, targets)| (g, Group { targets }))
                .collect(),
            variables: checked.variables,
            aliases: resolved.aliases,
        })
    }

    /// The targets `names` select (targets or groups), in a stable order and
    /// without repeats. No names: the `default` group, else every target.
    pub fn select(
        &self,
        names: &[String],
        base_dir: &Path,
        file: &str,
    ) -> Result<Vec<ResolvedTarget>, TargetError> {
        let mut wanted: Vec<String> = Vec::new();
        let roots: Vec<String> = if !names.is_empty() {
            names.to_vec()
        } else if self.groups.contains_key("default") {
            vec!["default".to_string()]
        } else {
            self.targets.keys().cloned().collect()
        };
        let mut seen = HashSet::new();
        for n in &roots {
            self.expand(n, file, &mut seen, &mut wanted)?;
        }
        Ok(wanted
            .into_iter()
            .filter_map(|n| self.targets.get(&n).map(|t| (n, t)))
            .map(|(n, t)| self.resolve(&n, t, base_dir))
            .collect())
    }

    /// Appends the targets `root` names (itself, or a group's members, in
    /// order) to `out`, skipping those already `seen`. Groups are walked
    /// with an explicit stack, so deep nesting cannot overflow.
    fn expand<'a>(
        &'a self,
        root: &'a str,
        file: &str,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<String>,
    ) -> Result<(), TargetError> {
        // Open groups, each with the index of its next member.
        let mut path: Vec<(&'a str, &'a Group, usize)> = Vec::new();
        let mut on_path: HashSet<&'a str> = HashSet::new();
        let mut pending = Some(root);
        loop {
            if let Some(name) = pending.take() {
                if let Some(made) = self.aliases.get(name) {
                    for m in made {
                        if seen.insert(m.as_str()) {
                            out.push(m.clone());
                        }
                    }
                } else if self.targets.contains_key(name) {
                    if seen.insert(name) {
                        out.push(name.to_string());
                    }
                } else {
                    let Some(group) = self.groups.get(name) else {
                        return Err(TargetError::Unknown {
                            file: file.to_string(),
                            name: name.to_string(),
                            known: self.targets.keys().cloned().collect::<Vec<_>>().join(", "),
                        });
                    };
                    if !on_path.insert(name) {
                        return Err(TargetError::Cycle {
                            file: file.to_string(),
                            name: name.to_string(),
                        });
                    }
                    path.push((name, group, 0));
                }
            }
            let Some((name, group, next)) = path.last_mut() else {
                return Ok(());
            };
            match group.targets.get(*next) {
                Some(member) => {
                    *next += 1;
                    pending = Some(member);
                }
                None => {
                    on_path.remove(*name);
                    path.pop();
                }
            }
        }
    }

    fn resolve(&self, name: &str, t: &TargetSpec, base: &Path) -> ResolvedTarget {
        let d = &self.defaults;
        let context = base.join(t.context.as_deref().or(d.context.as_deref()).unwrap_or("."));
        let dockerfile = context.join(
            t.dockerfile
                .as_deref()
                .or(d.dockerfile.as_deref())
                .unwrap_or("Dockerfile"),
        );
        let mut args = d.args.clone();
        args.extend(t.args.clone());
        let mut labels = d.labels.clone();
        labels.extend(t.labels.clone());
        let mut contexts = d.contexts.clone();
        contexts.extend(t.contexts.clone());
        let platforms = match (&t.platforms, &t.platform) {
            (p, _) if !p.is_empty() => p.clone(),
            (_, Some(p)) => vec![p.clone()],
            _ if !d.platforms.is_empty() => d.platforms.clone(),
            _ => d.platform.iter().cloned().collect(),
        };
        ResolvedTarget {
            name: name.to_string(),
            context,
            dockerfile,
            tags: pick(&t.tags, &d.tags),
            args,
            target: t.target.clone().or_else(|| d.target.clone()),
            labels,
            cache_to: pick(&t.cache_to, &d.cache_to),
            cache_from: pick(&t.cache_from, &d.cache_from),
            contexts,
            platforms,
            output: pick(&t.output, &d.output),
            secret: pick(&t.secret, &d.secret),
            ssh: pick(&t.ssh, &d.ssh),
            no_cache: t.no_cache.or(d.no_cache).unwrap_or(false),
            pull: t.pull.or(d.pull).unwrap_or(false),
        }
    }

    /// Every target, resolved, in name order.
    pub fn all(&self, base_dir: &Path) -> Vec<ResolvedTarget> {
        self.targets
            .iter()
            .map(|(n, t)| self.resolve(n, t, base_dir))
            .collect()
    }
}

/// A target's list, else the defaults'.
fn pick(own: &[String], defaults: &[String]) -> Vec<String> {
    if own.is_empty() {
        defaults.to_vec()
    } else {
        own.to_vec()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[defaults]
args = { MIRROR = "https://mirror.example" }
labels = { "org.example.team" = "web" }

[target.base]
context = "base"
tags = ["example/base:latest"]

[target.nginx]
context = "nginx"
dockerfile = "Dockerfile.prod"
tags = ["example/nginx:1.24"]
args = { VERSION = "1.24" }

[group.web]
targets = ["nginx", "base"]

[group.default]
targets = ["web"]
"#;

    #[test]
    fn selects_groups_and_applies_defaults() {
        let f = TargetFile::parse(FILE, "rbk.toml").expect("valid");
        let all = f.select(&[], Path::new("/x"), "rbk.toml").expect("select");
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["nginx", "base"]);
        let nginx = &all[0];
        assert_eq!(nginx.dockerfile, Path::new("/x/nginx/Dockerfile.prod"));
        assert_eq!(
            nginx.args.get("MIRROR").map(String::as_str),
            Some("https://mirror.example")
        );
        assert_eq!(nginx.args.get("VERSION").map(String::as_str), Some("1.24"));
        assert_eq!(all[1].dockerfile, Path::new("/x/base/Dockerfile"));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = TargetFile::parse("[target.a]\ncontext = 3\n", "f.toml").unwrap_err();
        assert!(e.to_string().starts_with("f.toml:2:"), "{e}");
        let e = TargetFile::parse("[target.a]\nbogus = 1\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let f = TargetFile::parse(FILE, "f.toml").expect("valid");
        let e = f
            .select(&["nope".into()], Path::new("."), "f.toml")
            .unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let cyc = "[target.a]\n[group.g]\ntargets=[\"h\"]\n[group.h]\ntargets=[\"g\"]\n";
        let f = TargetFile::parse(cyc, "c.toml").expect("valid");
        assert!(matches!(
            f.select(&["g".into()], Path::new("."), "c.toml"),
            Err(TargetError::Cycle { .. })
        ));
    }

    #[test]
    fn bake_language_in_toml_and_json() {
        let toml = r#"
[variable.REG]
default = "reg.example"

[target.base]
context = "base"
args = { A = "1" }
platforms = ["linux/amd64"]

[target.app]
inherits = ["base"]
matrix = { v = ["1", "2"] }
name = "app-v${v}"
tags = ["${REG}/app:${v}"]
no-cache = true
"#;
        let f =
            TargetFile::parse_with(toml, "rbk.toml", Syntax::Toml, &|_| None, &[]).expect("valid");
        let all = f
            .select(&["app".into()], Path::new("/x"), "rbk.toml")
            .expect("select");
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["app-v1", "app-v2"]);
        assert_eq!(all[1].tags, ["reg.example/app:2"]);
        assert_eq!(all[1].context, Path::new("/x/base"));
        assert_eq!(all[1].platforms, ["linux/amd64"]);
        assert!(all[1].no_cache);
        let json = r#"{"target": {"a": {"context": 3}}}"#;
        let e = TargetFile::parse_with(json, "b.json", Syntax::Json, &|_| None, &[]).unwrap_err();
        assert!(e.to_string().starts_with("b.json:1:"), "{e}");
        let e = TargetFile::parse_with(
            "[target.a]
inherits = [\"zz\"]
",
            "c.toml",
            Syntax::Toml,
            &|_| None,
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("\"zz\", which is not a target"),
            "{e}"
        );
    }

    #[test]
    fn hcl_blocks_and_variables() {
        let hcl = r#"
variable "TAG" { default = "1.0" }
variable "LATEST" { default = "${TAG}-latest" }
group "default" { targets = ["app"] }
target "app" {
  context = "app"
  tags = ["example/app:${TAG}", "example/app:v${TAG}", upper("x${LATEST}")]
  args = { V = TAG, ON = notequal(TAG, "") ? "yes" : "no", J = join("-", split(".", TAG)) }
  matrix = { flavor = ["slim"] }
  name = "app-${flavor}"
  labels = { flavor = "${flavor}" }
}
"#;
        let env = |n: &str| (n == "TAG").then(|| "2.0".to_string());
        let f =
            TargetFile::parse_with(hcl, "docker-bake.hcl", Syntax::Hcl, &env, &[]).expect("valid");
        let all = f
            .select(&[], Path::new("/x"), "docker-bake.hcl")
            .expect("select");
        let app = &all[0];
        assert_eq!(app.name, "app-slim");
        assert_eq!(
            app.tags,
            ["example/app:2.0", "example/app:v2.0", "X2.0-LATEST"]
        );
        assert_eq!(app.args.get("V").map(String::as_str), Some("2.0"));
        assert_eq!(app.args.get("ON").map(String::as_str), Some("yes"));
        assert_eq!(app.args.get("J").map(String::as_str), Some("2-0"));
        assert_eq!(app.labels.get("flavor").map(String::as_str), Some("slim"));
        let e = TargetFile::parse_with(
            "target \"a\" {\n tags = [nosuchfn(\"x\")]\n}\n",
            "f.hcl",
            Syntax::Hcl,
            &|_| None,
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("nosuchfn"), "{e}");
    }

    #[test]
    fn deeply_nested_groups_do_not_overflow() {
        // 20,000 groups, each naming the next: a recursive walk overflowed.
        let n = 20_000;
        let mut text = String::from("[target.app]\n");
        for i in 0..n {
            let next = if i + 1 == n {
                "app".to_string()
            } else {
                format!("g{}", i + 1)
            };
            text.push_str(&format!("[group.g{i}]\ntargets = [\"{next}\"]\n"));
        }
        let f = TargetFile::parse(&text, "deep.toml").expect("valid");
        let run = move || f.select(&["g0".into()], Path::new("."), "deep.toml");
        let got = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(run)
            .expect("spawn")
            .join()
            .expect("no overflow");
        let names: Vec<String> = got.expect("selects").into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["app"]);
    }
}
