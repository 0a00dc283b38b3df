//! BuildKit's AST dump format (`(run "echo hi")`), for conformance checks
//! and debugging.

use super::goprint::is_printable_non_ascii;
use crate::ast::{Dockerfile, Node};
use std::fmt::Write as _;

/// Quotes `s` exactly as Go's `strconv.Quote` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    go_quote_into(&mut out, s);
    out
}

fn go_quote_into(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let needs = match c {
            ' '..='~' => c == '"' || c == '\\',
            _ if c < ' ' || c == '\x7f' => true,
            _ if (c as u32) < 0xA0 => true,
            _ => !is_printable_non_ascii(c),
        };
        if !needs {
            continue;
        }
        out.push_str(&s[plain..i]);
        plain = i + c.len_utf8();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            _ if c < ' ' || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// Lower-cases like Go's `strings.ToLower`: character by character, so
/// `İ` becomes a plain `i` and no context rules apply.
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

impl Node {
    /// This node in BuildKit's dump format, without the surrounding
    /// parentheses: `run ["--mount=x"] "echo hi"`, `onbuild (run "x")`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        self.dump_into(&mut out);
        let trimmed = out.trim();
        if trimmed.len() == out.len() {
            out
        } else {
            trimmed.to_string()
        }
    }

    fn dump_into(&self, out: &mut String) {
        out.push_str(&go_lower(&self.keyword));
        if !self.flags.is_empty() {
            out.push_str(" [");
            for (i, f) in self.flags.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_quote_into(out, f);
            }
            out.push(']');
        }
        for a in &self.args {
            out.push(' ');
            go_quote_into(out, a);
        }
        if let Some(sub) = &self.sub {
            out.push_str(" (");
            out.push_str(&sub.dump());
            out.push(')');
        }
    }
}

/// The whole file in BuildKit's dump format: one `(node)` line per
/// top-level instruction, each ending in `\n`.
pub fn dump(df: &Dockerfile) -> String {
    let mut out = String::new();
    for n in &df.nodes {
        out.push('(');
        out.push_str(&n.dump());
        out.push_str(")\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_table() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            ("\0\x1b\x7f", r#""\x00\x1b\x7f""#),
            ("\u{85}\u{a0}", r#""\u0085\u00a0""#),
            ("\u{2665} \u{e9}", "\"\u{2665} \u{e9}\""),
            ("\u{200b}\u{feff}", r#""\u200b\ufeff""#),
            ("\u{e0001}", r#""\U000e0001""#),
            ("\u{1F600}", "\"\u{1F600}\""),
            ("\u{3000}", r#""\u3000""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "{input:?}");
        }
    }

    #[test]
    fn go_lower_table() {
        assert_eq!(go_lower("RUN"), "run");
        assert_eq!(go_lower("MA\u{130}NTAINER"), "maintainer");
        assert_eq!(go_lower("\u{3a3}A"), "\u{3c3}a");
    }
}
