//! Parser directives (`# escape=`, `# syntax=`, `# check=`).
//!
//! Directives are only recognised in the unbroken run of directive lines at
//! the very top of a file: the first line that is not a known directive ends
//! the run for good. Besides the `#` form used while parsing, front-end
//! selection also accepts `//` directives, a JSON object with a `"syntax"`
//! key, and skips a `#!` first line.

use nom::bytes::complete::take_while;
use nom::character::complete::{char as ch, satisfy};
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::{IResult, Parser};

use super::Input;
use crate::ast::Span;
use crate::error::ParseError;

/// The directive names BuildKit knows; any other key ends the directive run.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// One recognised parser directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, trimmed of surrounding blanks.
    pub value: String,
    /// 1-based line (a skipped `#!` line counts).
    pub line: u32,
    /// 1-based character column where the value starts.
    pub value_col: u32,
}

/// A directive found by [`detect_syntax`] or [`parse_directive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDirective {
    /// The value up to its first space (`docker/dockerfile:1` in
    /// `# syntax=docker/dockerfile:1 // opts`).
    pub reference: String,
    /// The whole value.
    pub cmdline: String,
    /// 1-based line where it was found (0 for the JSON form without shebang).
    pub line: u32,
}

/// Reads directive lines one at a time, enforcing BuildKit's rules: first
/// non-directive ends the run, each name at most once.
#[derive(Debug)]
pub(crate) struct DirectiveScanner {
    prefix: &'static str,
    line: u32,
    seen: [bool; 3],
    done: bool,
}

impl DirectiveScanner {
    /// A scanner for `prefix` directives (`#` or `//`), whose first line will
    /// be numbered `first_line + 1`.
    pub fn new(prefix: &'static str, first_line: u32) -> Self {
        DirectiveScanner {
            prefix,
            line: first_line,
            seen: [false; 3],
            done: false,
        }
    }

    /// True once a non-directive line was seen.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Looks at the next line (without line ending). Returns the directive
    /// it holds, `None` (and ends the run) if it holds none, or an error for
    /// a repeated directive.
    pub fn parse_line(&mut self, text: Input<'_>) -> Result<Option<Directive>, ParseError> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some(body) = text.strip_prefix(self.prefix) else {
            self.done = true;
            return Ok(None);
        };
        let body = body.trim_start();
        let Ok((_, (key, value))) = directive(body) else {
            self.done = true;
            return Ok(None);
        };
        let name = key.to_ascii_lowercase();
        let Some(idx) = KNOWN.iter().position(|k| *k == name) else {
            self.done = true;
            return Ok(None);
        };
        let value_col = text
            .get(..super::line::offset_in(text, value))
            .map_or(0, |p| p.chars().count()) as u32
            + 1;
        if self.seen[idx] {
            let col = text
                .get(..super::line::offset_in(text, key))
                .map_or(0, |p| p.chars().count()) as u32
                + 1;
            return Err(ParseError::new(
                Span::new(self.line, col),
                format!("only one {name} parser directive can be used"),
            ));
        }
        self.seen[idx] = true;
        Ok(Some(Directive {
            name,
            value: value.to_string(),
            line: self.line,
            value_col,
        }))
    }
}

// ws = " " | "\t" | "\n" | "\f" | "\r"          -- Go's regexp \s (no \v)
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

// key = ALPHA { ALPHA | DIGIT }
fn key(i: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    recognize(pair(
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(i)
}

// directive = key { ws } "=" value-part
// value-part: BuildKit's regex is `\s*(.+?)\s*$`, so the value is the rest
// trimmed of blanks, except that a rest made only of blanks (at least one)
// yields its last blank as the value (the regex backtracks into it).
fn directive(i: Input<'_>) -> IResult<Input<'_>, (Input<'_>, Input<'_>)> {
    let (i, k) = key(i)?;
    let (i, _) = take_while(is_ws).parse(i)?;
    let (i, _) = ch('=').parse(i)?;
    let value = match i.trim_start_matches(is_ws).trim_end_matches(is_ws) {
        "" => match i.char_indices().last() {
            Some((at, _)) => &i[at..],
            None => {
                return Err(nom::Err::Error(nom::error::Error::new(
                    i,
                    nom::error::ErrorKind::NonEmpty,
                )))
            }
        },
        v => v,
    };
    Ok(("", (k, value)))
}

/// Lines as Go's `bufio.ScanLines` yields them: split on `\n`, one trailing
/// `\r` dropped, no empty last line.
fn scan_lines(src: Input<'_>) -> impl Iterator<Item = Input<'_>> {
    let body = src.strip_suffix('\n').unwrap_or(src);
    let mut parts = body.split('\n');
    if src.is_empty() {
        parts.next();
    }
    parts.map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Scans the leading directive lines of `src` (`#` form) and returns the
/// directives found, in order. A repeated directive is an error.
pub fn parse_all(src: &str) -> Result<Vec<Directive>, ParseError> {
    parse_all_with(src, DirectiveScanner::new("#", 0))
}

fn parse_all_with(src: &str, mut scanner: DirectiveScanner) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    for line in scan_lines(src) {
        if scanner.done() {
            break;
        }
        if let Some(d) = scanner.parse_line(line)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// Finds the `syntax` directive the way front-end selection does: skip a
/// BOM and a `#!` first line, then try `#` directives, `//` directives and
/// finally the whole text as a JSON object with a string `"syntax"` key.
pub fn detect_syntax(src: &[u8]) -> Option<FoundDirective> {
    find_directive("syntax", src, true)
}

/// Finds directive `key` (`check`, `syntax`, …) among the `#` directives
/// only, after skipping a BOM and a `#!` first line.
pub fn parse_directive(key: &str, src: &[u8]) -> Option<FoundDirective> {
    find_directive(key, src, false)
}

fn find_directive(key: &str, src: &[u8], any_format: bool) -> Option<FoundDirective> {
    let src = src.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(src);
    let text = String::from_utf8_lossy(src);
    let (body, first_line) = discard_shebang(&text);
    let from_scanner = |prefix| {
        // Errors (a repeated directive) end the scan; what came before counts.
        let mut scanner = DirectiveScanner::new(prefix, first_line);
        let mut found = None;
        for line in scan_lines(body) {
            if scanner.done() {
                break;
            }
            match scanner.parse_line(line) {
                Ok(Some(d)) if d.name == key && found.is_none() => found = Some(d),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        found.map(|d| FoundDirective {
            reference: d.value.split(' ').next().unwrap_or("").to_string(),
            cmdline: d.value,
            line: d.line,
        })
    };
    if let Some(found) = from_scanner("#") {
        return Some(found);
    }
    if !any_format {
        return None;
    }
    if let Some(found) = from_scanner("//") {
        return Some(found);
    }
    let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).ok()?;
    let value = obj.get(key)?.as_str()?;
    Some(FoundDirective {
        reference: value.to_string(),
        cmdline: value.to_string(),
        line: first_line,
    })
}

// shebang = "#!" { any but LF } [ LF ]
fn discard_shebang(text: &str) -> (&str, u32) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    if first.starts_with("#!") {
        (rest, 1)
    } else {
        (text, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_lines() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("# escape=`", Some(("escape", "`"))),
            ("#escape = \\", Some(("escape", "\\"))),
            (
                "# SYNTAX = docker/dockerfile:1 ",
                Some(("syntax", "docker/dockerfile:1")),
            ),
            ("# check = skip=all // x", Some(("check", "skip=all // x"))),
            ("# escape=  ", Some(("escape", " "))),
            ("# escape=", None),
            ("# key = FOO bar", None),
            ("# just a comment", None),
            ("FROM x", None),
            ("", None),
        ];
        for (line, want) in cases {
            let mut s = DirectiveScanner::new("#", 0);
            let got = s.parse_line(line).expect("no error");
            let got = got.as_ref().map(|d| (d.name.as_str(), d.value.as_str()));
            assert_eq!(got, *want, "{line:?}");
        }
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let err = parse_all("# escape=`\n# Escape=\\\n").expect_err("repeat");
        assert_eq!(err.span, Span::new(2, 3));
        assert!(err.message.contains("only one escape"));
    }

    #[test]
    fn run_ends_at_first_other_line() {
        let d = parse_all("# syntax=a\n\n# escape=`\n").expect("ok");
        assert_eq!(d.len(), 1);
    }
}
