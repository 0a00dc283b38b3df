//! `rbk check` / `rbk build --check`: BuildKit's Dockerfile lint rules.
//!
//! Each rule looks at the parsed instructions (their original spelling
//! included) and, where it needs them, the base images' configs and the
//! context's `.dockerignore`. Findings carry the rule's name and the
//! position of the instruction; the `# check=skip=…;error=true` directive
//! turns rules off or makes findings fatal, as in BuildKit.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::ast::{Node, Span};
use crate::lower::{normalize_image, CompileError, ImageResolver, Input};
use crate::platform::Platform;
use crate::suggest::did_you_mean;
use crate::vars::Vars;

/// The rules, by name, with what each looks for.
pub const RULES: &[(&str, &str)] = &[
    ("StageNameCasing", "stage names should be lowercase"),
    (
        "FromAsCasing",
        "FROM and AS keywords should have the same casing",
    ),
    (
        "NoEmptyContinuation",
        "empty continuation lines will become errors",
    ),
    (
        "ConsistentInstructionCasing",
        "instructions should all have the same casing",
    ),
    ("DuplicateStageName", "stage names should be unique"),
    (
        "ReservedStageName",
        "reserved words should not be stage names",
    ),
    (
        "JSONArgsRecommended",
        "JSON arguments recommended for ENTRYPOINT and CMD",
    ),
    (
        "MaintainerDeprecated",
        "MAINTAINER is deprecated: use a label",
    ),
    (
        "UndefinedArgInFrom",
        "FROM uses an ARG that is not declared",
    ),
    (
        "WorkdirRelativePath",
        "a relative WORKDIR depends on the base image's",
    ),
    ("UndefinedVar", "a variable is used before it is defined"),
    (
        "MultipleInstructionsDisallowed",
        "only the last CMD, ENTRYPOINT or HEALTHCHECK of a stage counts",
    ),
    ("LegacyKeyValueFormat", "ENV and LABEL should use key=value"),
    (
        "InvalidDefaultArgInFrom",
        "ARG defaults should give FROM a valid image name",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform should not be a constant",
    ),
    (
        "CopyIgnoredFile",
        "COPY and ADD sources should not be excluded by .dockerignore",
    ),
    (
        "SecretsUsedInArgOrEnv",
        "ARG and ENV should not carry secrets",
    ),
    (
        "RedundantTargetPlatform",
        "FROM --platform=$TARGETPLATFORM is the default",
    ),
    (
        "InvalidBaseImagePlatform",
        "the base image should be of the build's platform",
    ),
    ("ExposeProtoCasing", "EXPOSE protocols should be lowercase"),
    (
        "ExposeInvalidFormat",
        "EXPOSE takes ports, not addresses or port mappings",
    ),
];

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule's name (one of [`RULES`]).
    pub rule: &'static str,
    /// Where.
    pub span: Span,
    /// What, as BuildKit words it.
    pub message: String,
}

/// The findings of one Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The Dockerfile, as shown.
    pub file: String,
    /// Findings in source order, skipped rules left out.
    pub findings: Vec<Finding>,
    /// `# check=error=true`: findings fail the build.
    pub error: bool,
}

impl Report {
    /// One line per finding: `FILE:LINE:COL RuleName: message`.
    pub fn lines(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{}:{}:{} {}: {}",
                    self.file, f.span.line, f.span.col, f.rule, f.message
                )
            })
            .collect()
    }
}

/// What the rules may look up besides the Dockerfile.
pub struct CheckEnv<'a> {
    /// Base images' configs and platforms (a [`crate::NoResolver`] knows
    /// none; rules needing one then stay quiet).
    pub resolver: &'a dyn ImageResolver,
    /// Whether a context path (relative, cleaned) is excluded by the
    /// context's `.dockerignore`.
    pub ignored: &'a dyn Fn(&str) -> bool,
}

/// The `# check=` directive: `skip=Rule1,Rule2` (or `all`), `error=true`.
fn directive(text: Option<&str>) -> (BTreeSet<String>, bool) {
    let mut skip = BTreeSet::new();
    let mut error = false;
    for part in text.unwrap_or("").split(';') {
        match part.trim().split_once('=') {
            Some(("skip", v)) => skip.extend(v.split(',').map(|r| r.trim().to_string())),
            Some(("error", v)) => error = v.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    (skip, error)
}

/// Checks `input`'s Dockerfile. A Dockerfile that does not parse is an
/// error, as for a build.
pub fn check(input: &Input, env: &CheckEnv<'_>) -> Result<Report, CompileError> {
    let df = crate::parse::parse(&input.source).map_err(|e| CompileError::new(input, e))?;
    let (skip, error) = directive(df.directives.check.as_deref());
    let mut c = Checker {
        input,
        env,
        findings: Vec::new(),
    };
    for w in &df.warnings {
        if w.message
            .to_ascii_lowercase()
            .contains("empty continuation")
        {
            c.add(
                "NoEmptyContinuation",
                w.span,
                "Empty continuation line".to_string(),
            );
        }
    }
    c.casing(&df.nodes);
    c.stages(&df.nodes, df.directives.escape);
    let all = skip.contains("all");
    let mut findings: Vec<Finding> = c
        .findings
        .into_iter()
        .filter(|f| !all && !skip.contains(f.rule))
        .collect();
    findings.sort_by_key(|f| (f.span.line, f.span.col));
    findings.dedup();
    Ok(Report {
        file: input.file.clone(),
        findings,
        error,
    })
}

struct Checker<'a, 'e> {
    input: &'a Input,
    env: &'a CheckEnv<'e>,
    findings: Vec<Finding>,
}

/// The first word of a node as written (its keyword's spelling).
fn keyword_as_written(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or("")
}

fn is_upper(s: &str) -> bool {
    s.chars().all(|c| !c.is_ascii_lowercase())
}

fn is_lower(s: &str) -> bool {
    s.chars().all(|c| !c.is_ascii_uppercase())
}

/// The ARGs every build has at the global scope.
const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// The variables a word expands: `$NAME` and `${NAME…}` outside single
/// quotes and escapes. `${NAME:-x}`-style forms, which supply a value when
/// it is unset, count only with `required` false.
pub(crate) fn variables(word: &str, escape: char, with_defaults: bool) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut single = false;
    while i < chars.len() {
        let c = chars[i];
        if c == escape && !single {
            i += 2;
            continue;
        }
        if c == '\'' {
            single = !single;
        } else if c == '$' && !single {
            if chars.get(i + 1) == Some(&'{') {
                let start = i + 2;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                let has_default = matches!(chars.get(end), Some(':' | '-' | '+' | '?'));
                if !name.is_empty() && (with_defaults || !has_default) {
                    out.push(name);
                }
                i = end;
                continue;
            }
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end > start && !chars[start].is_ascii_digit() {
                out.push(chars[start..end].iter().collect());
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

/// `word` with `${X}`/`$X` replaced from `vals` (unset: empty; `${X:-d}`:
/// `d` when unset or empty), for what ARG defaults make of a FROM.
fn expand_defaults(word: &str, vals: &BTreeMap<String, Option<String>>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                out.push_str(&rest[at..]);
                return out;
            };
            let inner = &body[..close];
            let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let v = vals.get(name).cloned().flatten().unwrap_or_default();
            match default {
                Some(d) if v.is_empty() => out.push_str(d),
                _ => out.push_str(&v),
            }
            rest = &body[close + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let v = vals
                .get(&after[..end])
                .cloned()
                .flatten()
                .unwrap_or_default();
            out.push_str(&v);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether an ARG/ENV name looks like it carries a secret (BuildKit's
/// word list), `PUBLIC` ones excepted.
fn secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "passwd",
        "pword",
        "secret",
        "token",
    ];
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-']).collect();
    !words.contains(&"public") && words.iter().any(|w| WORDS.contains(w))
}

/// A stage's scope for UndefinedVar: what is defined so far.
struct Scope {
    /// Names only; shared with the stages built on this one (a chain of
    /// stages that each add an ENV stays linear).
    defined: Vars,
    /// False when the base image's environment is unknown: then nothing
    /// can be called undefined.
    known: bool,
}

impl Checker<'_, '_> {
    fn add(&mut self, rule: &'static str, span: Span, message: String) {
        self.findings.push(Finding {
            rule,
            span,
            message,
        });
    }

    /// ConsistentInstructionCasing, FromAsCasing.
    fn casing(&mut self, nodes: &[Node]) {
        let words: Vec<&str> = nodes.iter().map(keyword_as_written).collect();
        let upper = words.iter().filter(|w| is_upper(w)).count();
        let lower = words.iter().filter(|w| is_lower(w) && !is_upper(w)).count();
        let majority_upper = upper >= lower;
        for (node, w) in nodes.iter().zip(&words) {
            let fits = if majority_upper {
                is_upper(w)
            } else {
                is_lower(w)
            };
            if !fits {
                self.add(
                    "ConsistentInstructionCasing",
                    node.span,
                    format!(
                        "Command '{w}' should match the case of the command majority ({})",
                        if majority_upper {
                            "uppercase"
                        } else {
                            "lowercase"
                        }
                    ),
                );
            }
            if node.keyword == "from" && node.args.len() == 3 {
                let as_word = node.args[1].as_str();
                if (is_upper(w) && !is_upper(as_word)) || (is_lower(w) && !is_lower(as_word)) {
                    self.add(
                        "FromAsCasing",
                        node.span,
                        format!("'{as_word}' and '{w}' keywords' casing do not match"),
                    );
                }
            }
        }
    }

    /// The rules that follow the stages: names, FROM, scopes, and the
    /// per-instruction rules.
    fn stages(&mut self, nodes: &[Node], escape: char) {
        // Global ARGs: name → default.
        let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut stage_env: BTreeMap<String, Vars> = BTreeMap::new();
        let mut scope: Option<Scope> = None;
        let mut stage_name: Option<String> = None;
        let mut counts: Vec<(&'static str, Span)> = Vec::new();
        let mut absolute_workdir = false;
        for node in nodes {
            match node.keyword.as_str() {
                "from" => {
                    self.flush_multiple(&mut counts);
                    if let (Some(name), Some(s)) = (&stage_name, &scope) {
                        stage_env.insert(name.to_ascii_lowercase(), s.defined.clone());
                    }
                    let (defined, known, name) =
                        self.from(node, &globals, &names, &stage_env, escape);
                    if let Some(n) = &name {
                        names.insert(n.to_ascii_lowercase());
                    }
                    stage_name = name;
                    scope = Some(Scope { defined, known });
                    absolute_workdir = false;
                }
                "arg" if scope.is_none() => {
                    for pair in node.args.iter() {
                        let (k, v) = match pair.split_once('=') {
                            Some((k, v)) => (k.to_string(), Some(v.to_string())),
                            None => (pair.clone(), None),
                        };
                        self.secret("ARG", &k, node);
                        globals.insert(k, v);
                    }
                }
                _ => {
                    let Some(s) = scope.as_mut() else { continue };
                    self.instruction(
                        node,
                        s,
                        &globals,
                        escape,
                        &mut counts,
                        &mut absolute_workdir,
                    );
                }
            }
        }
        self.flush_multiple(&mut counts);
    }

    /// A FROM: stage name rules, UndefinedArgInFrom, InvalidDefaultArgInFrom,
    /// the --platform rules, InvalidBaseImagePlatform. Returns the stage's
    /// starting scope and its name.
    fn from(
        &mut self,
        node: &Node,
        globals: &BTreeMap<String, Option<String>>,
        names: &HashSet<String>,
        stage_env: &BTreeMap<String, Vars>,
        escape: char,
    ) -> (Vars, bool, Option<String>) {
        let image = node.args.first().cloned().unwrap_or_default();
        let name = (node.args.len() == 3).then(|| node.args[2].clone());
        let platform = node
            .flags
            .iter()
            .find_map(|f| f.strip_prefix("--platform="));
        self.stage_name(node, name.as_deref(), names);
        self.args_in_from(node, &image, platform, globals, escape);
        self.platform_flag(node, platform, name.as_deref());
        let (env, known) = self.base_scope(node, &image, platform, stage_env);
        (env, known, name)
    }

    /// StageNameCasing, DuplicateStageName, ReservedStageName.
    fn stage_name(&mut self, node: &Node, name: Option<&str>, names: &HashSet<String>) {
        if let Some(n) = name {
            if n.to_ascii_lowercase() != n {
                self.add(
                    "StageNameCasing",
                    node.span,
                    format!("Stage name '{n}' should be lowercase"),
                );
            }
            let lower = n.to_ascii_lowercase();
            if names.contains(&lower) {
                self.add(
                    "DuplicateStageName",
                    node.span,
                    format!("Duplicate stage name {lower:?}, stage names should be unique"),
                );
            }
            if ["scratch", "context"].contains(&lower.as_str()) {
                self.add(
                    "ReservedStageName",
                    node.span,
                    format!("Stage name should not use the same name as reserved stage {lower:?}"),
                );
            }
        }
    }

    /// UndefinedArgInFrom, InvalidDefaultArgInFrom.
    fn args_in_from(
        &mut self,
        node: &Node,
        image: &str,
        platform: Option<&str>,
        globals: &BTreeMap<String, Option<String>>,
        escape: char,
    ) {
        let declared = |v: &str| globals.contains_key(v) || PLATFORM_ARGS.contains(&v);
        for word in std::iter::once(image).chain(platform) {
            for v in variables(word, escape, true) {
                if !declared(&v) {
                    let known: Vec<&str> = globals.keys().map(String::as_str).collect();
                    let hint = did_you_mean(&v, known)
                        .map(|c| format!(" (did you mean {c}?)"))
                        .unwrap_or_default();
                    self.add(
                        "UndefinedArgInFrom",
                        node.span,
                        format!("FROM argument '{v}' is not declared{hint}"),
                    );
                }
            }
        }
        if image.contains('$') {
            let mut defaults = globals.clone();
            for p in PLATFORM_ARGS {
                defaults.entry(p.to_string()).or_insert(Some(String::new()));
            }
            let expanded = expand_defaults(image, &defaults);
            let bad = expanded.is_empty()
                || expanded.starts_with(':')
                || expanded.ends_with(':')
                || expanded.contains("::")
                || expanded.contains(char::is_whitespace);
            if bad {
                self.add(
                    "InvalidDefaultArgInFrom",
                    node.span,
                    format!(
                        "Default value for ARG {image} results in empty or invalid base image name"
                    ),
                );
            }
        }
    }

    /// RedundantTargetPlatform, FromPlatformFlagConstDisallowed.
    fn platform_flag(&mut self, node: &Node, platform: Option<&str>, name: Option<&str>) {
        if let Some(p) = platform {
            if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
                self.add(
                    "RedundantTargetPlatform",
                    node.span,
                    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior".to_string(),
                );
            } else if !p.contains('$') {
                // A stage named for its platform (build-arm64) is allowed.
                let arch = Platform::parse(p).map(|pl| pl.arch).unwrap_or_default();
                let named_for_it = name
                    .is_some_and(|n| !arch.is_empty() && n.to_ascii_lowercase().contains(&arch));
                if !named_for_it {
                    self.add(
                        "FromPlatformFlagConstDisallowed",
                        node.span,
                        format!("FROM --platform flag should not use constant value {p:?}"),
                    );
                }
            }
        }
    }

    /// The stage's starting scope — an earlier stage's ENV, or the base
    /// image's when known — and InvalidBaseImagePlatform.
    fn base_scope(
        &mut self,
        node: &Node,
        image: &str,
        platform: Option<&str>,
        stage_env: &BTreeMap<String, Vars>,
    ) -> (Vars, bool) {
        // The stage's starting scope: an earlier stage's ENV, or the base
        // image's, when known.
        let base = image.to_ascii_lowercase();
        if let Some(env) = stage_env.get(&base) {
            return (env.clone(), true);
        }
        if base == "scratch" {
            return (Vars::untracked(), true);
        }
        if image.contains('$') {
            return (Vars::untracked(), false);
        }
        let want = match platform {
            Some(p) if !p.contains('$') => Platform::parse(p).ok(),
            _ => None,
        }
        .or_else(|| {
            self.input
                .platform
                .as_deref()
                .and_then(|p| Platform::parse(p).ok())
        })
        .unwrap_or_else(Platform::host);
        let reference = normalize_image(image);
        match self.env.resolver.resolve(&reference, &want) {
            Some(b) => {
                if let Some(have) = b.platform.as_deref().and_then(|p| Platform::parse(p).ok()) {
                    if have.os != want.os || have.arch != want.arch {
                        self.add(
                            "InvalidBaseImagePlatform",
                            node.span,
                            format!(
                                "Base image {image} was pulled with platform \"{have}\", expected \"{want}\" for current build"
                            ),
                        );
                    }
                }
                let mut env = Vars::untracked();
                for kv in &b.config.env {
                    env.set(kv.split_once('=').map_or(kv.as_str(), |(k, _)| k), "");
                }
                (env, true)
            }
            None => (Vars::untracked(), false),
        }
    }

    /// The rules on one instruction inside a stage.
    fn instruction(
        &mut self,
        node: &Node,
        scope: &mut Scope,
        globals: &BTreeMap<String, Option<String>>,
        escape: char,
        counts: &mut Vec<(&'static str, Span)>,
        absolute_workdir: &mut bool,
    ) {
        let kw = node.keyword.as_str();
        // Words are expanded before the instruction defines anything.
        if matches!(
            kw,
            "add"
                | "copy"
                | "env"
                | "expose"
                | "label"
                | "stopsignal"
                | "user"
                | "volume"
                | "workdir"
                | "arg"
        ) {
            self.undefined(node, scope, globals, escape);
        }
        match kw {
            "arg" => {
                for pair in &node.args {
                    let k = pair.split_once('=').map_or(pair.as_str(), |(k, _)| k);
                    self.secret("ARG", k, node);
                    scope.defined.set(k, "");
                }
            }
            "env" | "label" => self.key_values(node, kw, scope),
            "cmd" | "entrypoint" => self.exec_form(node, kw, counts),
            "healthcheck" => counts.push(("HEALTHCHECK", node.span)),
            "maintainer" => self.add(
                "MaintainerDeprecated",
                node.span,
                "Maintainer instruction is deprecated in favor of using label".to_string(),
            ),
            "workdir" => {
                let dir = node.args.first().map(String::as_str).unwrap_or("");
                let absolute = dir.starts_with('/') || dir.starts_with('$');
                if !absolute && !*absolute_workdir {
                    self.add(
                        "WorkdirRelativePath",
                        node.span,
                        format!("Relative workdir {dir:?} can have unexpected results if the base image changes"),
                    );
                }
                *absolute_workdir |= absolute;
            }
            "expose" => self.expose(node),
            "copy" | "add" => self.copy_ignored(node, kw),
            _ => {}
        }
    }

    /// SecretsUsedInArgOrEnv (ENV) and LegacyKeyValueFormat.
    fn key_values(&mut self, node: &Node, kw: &str, scope: &mut Scope) {
        for triple in node.args.chunks(3) {
            if let [k, _, sep] = triple {
                if kw == "env" {
                    self.secret("ENV", k, node);
                    scope.defined.set(k, "");
                }
                if sep.is_empty() {
                    let up = kw.to_ascii_uppercase();
                    self.add(
                        "LegacyKeyValueFormat",
                        node.span,
                        format!(
                            "\"{up} key=value\" should be used instead of legacy \"{up} key value\" format"
                        ),
                    );
                }
            }
        }
    }

    /// JSONArgsRecommended, and the count for MultipleInstructionsDisallowed.
    fn exec_form(&mut self, node: &Node, kw: &str, counts: &mut Vec<(&'static str, Span)>) {
        let up = kw.to_ascii_uppercase();
        counts.push((if kw == "cmd" { "CMD" } else { "ENTRYPOINT" }, node.span));
        if !node.json {
            let text = node.args.join(" ");
            let message = if text.trim_start().starts_with('[') {
                format!(
                    "{up} {text} looks like a JSON array but is not valid JSON, so it runs through a shell as one command; quote each element: [\"a\", \"b\"]"
                )
            } else {
                "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals".to_string()
            };
            self.add("JSONArgsRecommended", node.span, message);
        }
    }

    /// ExposeInvalidFormat and ExposeProtoCasing.
    fn expose(&mut self, node: &Node) {
        for word in &node.args {
            if word.contains(':') {
                self.add(
                    "ExposeInvalidFormat",
                    node.span,
                    format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{word}'"),
                );
            }
            if let Some((_, proto)) = word.split_once('/') {
                if proto != proto.to_ascii_lowercase() {
                    self.add(
                        "ExposeProtoCasing",
                        node.span,
                        format!(
                            "Defined protocol '{proto}' in EXPOSE instruction should be lowercase"
                        ),
                    );
                }
            }
        }
    }

    /// UndefinedVar on the words of `node`.
    fn undefined(
        &mut self,
        node: &Node,
        scope: &Scope,
        globals: &BTreeMap<String, Option<String>>,
        escape: char,
    ) {
        if !scope.known {
            return;
        }
        let words: Vec<&str> = match node.keyword.as_str() {
            // Keys are not expanded; values are.
            "env" | "label" => node
                .args
                .chunks(3)
                .filter_map(|t| t.get(1))
                .map(String::as_str)
                .collect(),
            "arg" => node
                .args
                .iter()
                .filter_map(|a| a.split_once('=').map(|(_, v)| v))
                .collect(),
            _ => node
                .args
                .iter()
                .map(String::as_str)
                .chain(node.flags.iter().map(String::as_str))
                .collect(),
        };
        for word in words {
            for v in variables(word, escape, false) {
                let defined = scope.defined.contains(&v) || v == "PATH";
                if defined {
                    continue;
                }
                let entries = scope.defined.entries();
                let mut candidates: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
                candidates.sort_unstable();
                let hint = match did_you_mean(&v, candidates) {
                    Some(c) => format!(" (did you mean ${c}?)"),
                    None if globals.contains_key(&v) => {
                        format!(" (the global ARG {v} needs `ARG {v}` in this stage)")
                    }
                    None => String::new(),
                };
                self.add(
                    "UndefinedVar",
                    node.span,
                    format!("Usage of undefined variable '${v}'{hint}"),
                );
            }
        }
    }

    /// SecretsUsedInArgOrEnv.
    fn secret(&mut self, what: &str, name: &str, node: &Node) {
        if secret_name(name) {
            self.add(
                "SecretsUsedInArgOrEnv",
                node.span,
                format!("Do not use ARG or ENV instructions for sensitive data ({what} {name:?})"),
            );
        }
    }

    /// CopyIgnoredFile: sources from the context that `.dockerignore`
    /// excludes (COPY --from and ADD of URLs read elsewhere).
    fn copy_ignored(&mut self, node: &Node, kw: &str) {
        if node.flags.iter().any(|f| f.starts_with("--from=")) {
            return;
        }
        let n = node.args.len();
        if n < 2 {
            return;
        }
        let heredocs: Vec<String> = node
            .heredocs
            .iter()
            .map(|h| format!("<<{}", h.name))
            .collect();
        for src in &node.args[..n - 1] {
            let is_url = src.contains("://");
            let glob = src.contains(['*', '?', '[']);
            if is_url
                || glob
                || src.starts_with("<<")
                || heredocs.contains(src)
                || src.contains('$')
            {
                continue;
            }
            let rel = src
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if !rel.is_empty() && rel != "." && (self.env.ignored)(rel) {
                let up = if kw == "add" { "Add" } else { "Copy" };
                self.add(
                    "CopyIgnoredFile",
                    node.span,
                    format!("Attempting to {up} file {src:?} that is excluded by .dockerignore"),
                );
            }
        }
    }

    /// MultipleInstructionsDisallowed for the stage that just ended: every
    /// CMD, ENTRYPOINT or HEALTHCHECK but the last of its kind.
    fn flush_multiple(&mut self, counts: &mut Vec<(&'static str, Span)>) {
        for kind in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let spans: Vec<Span> = counts
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, s)| *s)
                .collect();
            if let Some((_, earlier)) = spans.split_last() {
                for s in earlier {
                    self.add(
                        "MultipleInstructionsDisallowed",
                        *s,
                        format!("Multiple {kind} instructions should not be used in the same stage because only the last one will be used"),
                    );
                }
            }
        }
        counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_defaults() {
        assert_eq!(
            variables("$A ${B} '$C' \\$D ${E:-x}", '\\', false),
            ["A", "B"]
        );
        assert_eq!(variables("${E:-x}", '\\', true), ["E"]);
        let mut vals = BTreeMap::new();
        vals.insert("V".to_string(), Some("3".to_string()));
        vals.insert("EMPTY".to_string(), None);
        assert_eq!(expand_defaults("alpine:$V", &vals), "alpine:3");
        assert_eq!(expand_defaults("img:${EMPTY}", &vals), "img:");
        assert_eq!(expand_defaults("img:${EMPTY:-1}", &vals), "img:1");
        assert!(secret_name("API_TOKEN") && secret_name("db-password"));
        assert!(!secret_name("PUBLIC_KEY") && !secret_name("KEYBOARD") && !secret_name("MONKEY"));
    }

    #[test]
    fn the_directive_skips_and_makes_errors() {
        let (skip, error) = directive(Some("skip=JSONArgsRecommended,StageNameCasing;error=true"));
        assert!(skip.contains("JSONArgsRecommended") && skip.contains("StageNameCasing"));
        assert!(error);
        assert_eq!(directive(None), (BTreeSet::new(), false));
    }
}
