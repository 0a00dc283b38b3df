//! `rbk check` / `rbk build --check`: BuildKit's Dockerfile lint rules.
//!
//! Each rule looks at the parsed instructions (their original spelling
//! included) and, where it needs them, the base images' configs and the
//! context's `.dockerignore`. Findings carry the rule's name and the
//! position of the instruction; the `# check=skip=…;error=true` directive
//! turns rules off or makes findings fatal, as in BuildKit.
//!
//! The rules read a word's variables from the shell-word lexer
//! ([`ShellLex::process_word_with_matches`]), as BuildKit's do, so a lint
//! sees `$VAR` exactly where expansion will. One file per rule family:
//! this one walks the stages and holds the casing and repetition rules,
//! `from.rs` the FROM rules, `instruction.rs` the per-instruction ones,
//! `undefined.rs` UndefinedVar.

mod from;
mod instruction;
mod undefined;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::ast::{Node, Span};
use crate::lower::{CompileError, ImageResolver, Input};
use crate::parse::expand::{Env, Reference, ShellLex};
use crate::vars::Vars;

use self::undefined::Scope;

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
    let mut c = Linter {
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

/// One run of the rules over one Dockerfile: what they may look up, and
/// the findings so far.
struct Linter<'a, 'e> {
    input: &'a Input,
    env: &'a CheckEnv<'e>,
    findings: Vec<Finding>,
}

/// The variable references of `word` as the lexer meets them, with `env`
/// saying which are set. Unset references stay as written rather than
/// fail (`${V?}`), so only a word that cannot be lexed at all (an open
/// quote or brace, which a build reports anyway) yields none.
fn references(word: &str, escape: char, env: &dyn Env) -> Vec<Reference> {
    ShellLex::new(escape)
        .with_skip_unset_env(true)
        .process_word_with_matches(word, env)
        .map(|e| e.references)
        .unwrap_or_default()
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

impl Linter<'_, '_> {
    /// Records one finding.
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
    fn references_and_defaults() {
        let names = |word: &str| -> Vec<(String, bool)> {
            references(word, '\\', &crate::parse::expand::EmptyEnv)
                .into_iter()
                .map(|r| (r.name, r.has_fallback))
                .collect()
        };
        let owned = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, f)| (n.to_string(), *f)).collect()
        };
        assert_eq!(
            names("$A ${B} '$C' \\$D ${E:-x} ${F?} $A"),
            owned(&[
                ("A", false),
                ("B", false),
                ("E", true),
                ("F", true),
                ("A", false)
            ])
        );
        assert_eq!(names("${V:-$W}"), owned(&[("V", true), ("W", false)]));
        assert!(names("'open").is_empty());
        let mut vals = BTreeMap::new();
        vals.insert("V".to_string(), Some("3".to_string()));
        vals.insert("EMPTY".to_string(), None);
        let image = |w: &str| from::image_from_defaults(w, '\\', &vals);
        assert_eq!(image("alpine:$V").as_deref(), Some("alpine:3"));
        assert_eq!(image("img:${EMPTY}").as_deref(), Some("img:"));
        assert_eq!(image("img:${EMPTY:-1}").as_deref(), Some("img:1"));
        assert_eq!(image("img:${TARGETARCH}").as_deref(), Some("img:"));
        use instruction::secret_name;
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
