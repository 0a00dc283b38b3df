//! UndefinedVar: a word uses a variable that nothing in its stage (nor
//! the base image's environment) defined before it.

use std::collections::BTreeMap;

use crate::ast::Node;
use crate::suggest::did_you_mean;
use crate::vars::Vars;

use super::{references, Linter};

/// A stage's scope for UndefinedVar: what is defined so far.
pub(super) struct Scope {
    /// Names only; shared with the stages built on this one (a chain of
    /// stages that each add an ENV stays linear).
    pub(super) defined: Vars,
    /// False when the base image's environment is unknown: then nothing
    /// can be called undefined.
    pub(super) known: bool,
}

impl Linter<'_, '_> {
    /// UndefinedVar on the words of `node`.
    pub(super) fn undefined(
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
            for r in references(word, escape, &scope.defined) {
                // `${V:-w}` and its kin have a value of their own.
                if r.has_fallback || !r.is_definable() {
                    continue;
                }
                let v = r.name;
                if scope.defined.contains(&v) || v == "PATH" {
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
}
