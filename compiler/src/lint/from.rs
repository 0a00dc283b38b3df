//! The FROM rules: stage names, the ARGs a FROM may use, `--platform`, and
//! the base image's platform. A FROM also starts the scope UndefinedVar
//! checks the stage against.

use std::collections::{BTreeMap, HashSet};

use crate::ast::Node;
use crate::lower::normalize_image;
use crate::parse::expand::ShellLex;
use crate::platform::Platform;
use crate::suggest::did_you_mean;
use crate::vars::Vars;

use super::{references, Linter};

/// The ARGs every build has at the global scope.
pub(super) const PLATFORM_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// What ARG defaults make of a FROM's image name: `word` expanded with
/// the global ARGs that have a value (the platform ARGs empty), `None`
/// when it does not expand at all.
pub(super) fn image_from_defaults(
    word: &str,
    escape: char,
    globals: &BTreeMap<String, Option<String>>,
) -> Option<String> {
    let mut env: BTreeMap<String, String> = globals
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
        .collect();
    for p in PLATFORM_ARGS {
        env.entry(p.to_string()).or_default();
    }
    ShellLex::new(escape).process_word(word, &env).ok()
}

impl Linter<'_, '_> {
    /// A FROM: stage name rules, UndefinedArgInFrom, InvalidDefaultArgInFrom,
    /// the --platform rules, InvalidBaseImagePlatform. Returns the stage's
    /// starting scope and its name.
    pub(super) fn from(
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
        // Declared names, their values beside the point.
        let declared: BTreeMap<String, String> = globals
            .keys()
            .map(String::as_str)
            .chain(PLATFORM_ARGS.iter().copied())
            .map(|k| (k.to_string(), String::new()))
            .collect();
        for word in std::iter::once(image).chain(platform) {
            for r in references(word, escape, &declared) {
                if r.set || !r.is_definable() {
                    continue;
                }
                let v = r.name;
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
        if image.contains('$') {
            // A word the lexer rejects makes no image name either.
            let expanded = image_from_defaults(image, escape, globals).unwrap_or_default();
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
}
