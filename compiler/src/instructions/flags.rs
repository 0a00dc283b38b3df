//! `--name[=value]` flags of one instruction, checked against the flags
//! that instruction accepts, and the positions errors about them point at.

use crate::ast::{Node, Span};
use crate::error::ParseError;

/// Parsed `--name[=value]` flags of one instruction, checked against the
/// flags that instruction accepts.
pub(super) struct Flags<'a> {
    node: &'a Node,
    keyword: &'static str,
    values: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Flags<'a> {
    pub(super) fn parse(
        node: &'a Node,
        keyword: &'static str,
        allowed: &[&str],
    ) -> Result<Self, ParseError> {
        let mut values = Vec::with_capacity(node.flags.len());
        for raw in &node.flags {
            let body = raw.strip_prefix("--").unwrap_or(raw);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            if !allowed.contains(&name) {
                return Err(flag_error(
                    node,
                    raw,
                    format!(
                        "unknown flag: --{name} for {keyword}{}",
                        crate::suggest::did_you_mean(name, allowed.iter().copied())
                            .map(|f| format!(" (did you mean --{f}?)"))
                            .unwrap_or_default()
                    ),
                ));
            }
            values.push((name, value));
        }
        Ok(Flags {
            node,
            keyword,
            values,
        })
    }

    /// The last value of a string flag; `--name` without `=` is an error.
    pub(super) fn string(&self, name: &str) -> Result<Option<String>, ParseError> {
        Ok(self.strings(name)?.pop())
    }

    /// Every value of a repeatable string flag, in order.
    pub(super) fn strings(&self, name: &str) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        for (n, v) in &self.values {
            if *n != name {
                continue;
            }
            let Some(v) = v else {
                return Err(flag_error(
                    self.node,
                    &format!("--{name}"),
                    format!("missing a value on flag: --{name} for {}", self.keyword),
                ));
            };
            out.push((*v).to_string());
        }
        Ok(out)
    }

    /// A boolean flag: `--name`, `--name=true` or `--name=false`.
    pub(super) fn bool(&self, name: &str) -> Result<bool, ParseError> {
        let mut out = false;
        for (n, v) in &self.values {
            if *n == name {
                out = match v.map(|s| s.to_ascii_lowercase()) {
                    None => true,
                    Some(s) if s == "true" || s == "1" => true,
                    Some(s) if s == "false" || s == "0" || s.is_empty() => false,
                    Some(s) => {
                        return Err(flag_error(
                            self.node,
                            &format!("--{name}"),
                            format!("expecting boolean value for flag --{name}, not: {s}"),
                        ))
                    }
                };
            }
        }
        Ok(out)
    }
}

/// An error pointing at `needle` in the instruction's first line when it can
/// be found there, else at the keyword.
pub(super) fn flag_error(node: &Node, needle: &str, message: String) -> ParseError {
    ParseError::new(locate(node, needle), message)
}

/// The span of `needle` within the node's original text, if on its first line.
pub(crate) fn locate(node: &Node, needle: &str) -> Span {
    let first = node.original.lines().next().unwrap_or("");
    match first.find(needle) {
        Some(byte) => {
            let chars = first[..byte].chars().count() as u32;
            // `original` starts at the keyword, which sits at `span.col`.
            Span::new(node.span.line, node.span.col + chars)
        }
        None => node.span,
    }
}
