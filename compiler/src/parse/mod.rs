//! Text → raw [`Node`](crate::Node)s. One file per grammar area.
//!
//! The layering follows BuildKit's frontend: physical lines ([`line`]) are
//! joined into logical lines (escape-character continuations, comments and
//! blank lines skipped), the leading comment run may hold parser
//! [`directives`], each logical line is cut into keyword, [`flags`] and
//! arguments shaped per instruction (`args`, [`json`], [`words`]), and RUN,
//! COPY and ADD lines may pull following lines in as [`heredoc`] bodies.
//! [`dump()`] renders the result in BuildKit's test format.

pub mod expand;

mod args;
pub mod directives;
pub mod dump;
mod flags;
mod goprint;
pub mod heredoc;
pub mod json;
mod line;
pub mod words;

pub use directives::{detect_syntax, parse_all, parse_directive, Directive, FoundDirective};
pub use dump::{dump, go_quote};
pub use heredoc::{chomp, heredocs_from_line, parse_heredoc, HeredocError, MAX_HEREDOCS};
pub use json::{parse_json_array, JsonForm};
pub use line::MAX_LINE_LEN;
pub use words::split_words;

use crate::ast::{Directives, Dockerfile, Heredoc, Node, Span, Warning};
use crate::error::ParseError;
use directives::DirectiveScanner;
use line::{is_comment, is_empty_continuation, trim_continuation, trim_newline, LineMap, Lines};

/// The parser's input type: borrowed source text.
pub(crate) type Input<'a> = &'a str;

/// Parses Dockerfile text.
///
/// Fails on an empty file (or one with only comments), an invalid or
/// repeated parser directive, a physical line longer than
/// [`MAX_LINE_LEN`] bytes, malformed arguments (`ENV` without value, a JSON
/// array with a non-string element) and an unterminated heredoc.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let (src, bom) = match src.strip_prefix('\u{feff}') {
        Some(rest) => (rest, '\u{feff}'.len_utf8()),
        None => (src, 0),
    };
    let mut lines = Lines::with_first_extra(src, bom);
    // Real instructions average 40-60 bytes; sizing the node list up front
    // spares re-allocating (and copying) it as it grows.
    let nodes_hint = (src.len() / 32 + 1).min(1 << 16);
    let mut parser = Parser {
        directives: Directives::default(),
        scanner: DirectiveScanner::new("#", 0),
        nodes: Vec::with_capacity(nodes_hint),
        warnings: Vec::new(),
        buf: String::new(),
        map: LineMap::default(),
    };
    parser.run(&mut lines)?;
    if parser.nodes.is_empty() {
        return Err(ParseError::new(
            Span::new(lines.consumed().max(1), 1),
            "file with no instructions",
        ));
    }
    if let Some(no) = lines.too_long {
        return Err(ParseError::new(
            Span::new(no, 1),
            format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
        ));
    }
    Ok(Dockerfile {
        directives: parser.directives,
        nodes: parser.nodes,
        warnings: parser.warnings,
    })
}

/// Parses raw bytes; invalid UTF-8 is replaced by U+FFFD first.
pub fn parse_bytes(src: &[u8]) -> Result<Dockerfile, ParseError> {
    parse(&String::from_utf8_lossy(src))
}

struct Parser<'a> {
    directives: Directives,
    scanner: DirectiveScanner,
    nodes: Vec<Node>,
    warnings: Vec<Warning>,
    /// The logical line being assembled (reused between instructions).
    buf: String,
    map: LineMap<'a>,
}

impl<'a> Parser<'a> {
    // dockerfile = { directive-line } { blank | comment | instruction }
    fn run(&mut self, lines: &mut Lines<'a>) -> Result<(), ParseError> {
        while let Some(first) = lines.next() {
            let text = trim_newline(first.raw);
            let stripped = text.trim_start();
            if !self.scanner.done() {
                self.directive(stripped).map_err(|mut e| {
                    // Columns were counted from the first non-blank character.
                    let lead = text.len() - stripped.len();
                    e.span.col += text.get(..lead).map_or(0, |p| p.chars().count()) as u32;
                    e
                })?;
            }
            if stripped.starts_with('#') {
                continue;
            }
            let (piece, eol) = trim_continuation(stripped, self.directives.escape);
            if eol && piece.is_empty() {
                continue;
            }
            self.instruction(lines, first.no, text, stripped, piece, eol)?;
        }
        Ok(())
    }

    // directive-line = "#" { space } key { ws } "=" { ws } value
    fn directive(&mut self, text: Input<'_>) -> Result<(), ParseError> {
        let Some(d) = self.scanner.parse_line(text)? else {
            return Ok(());
        };
        match d.name.as_str() {
            "escape" => {
                self.directives.escape = match d.value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(ParseError::new(
                            Span::new(d.line, d.value_col),
                            format!("invalid escape token '{other}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => self.directives.syntax = Some(d.value),
            _ => self.directives.check = Some(d.value),
        }
        Ok(())
    }

    // instruction = line { continuation-line | comment | blank } [ heredoc-bodies ]
    fn instruction(
        &mut self,
        lines: &mut Lines<'a>,
        start_line: u32,
        text: Input<'a>,
        stripped: Input<'a>,
        piece: Input<'a>,
        mut eol: bool,
    ) -> Result<(), ParseError> {
        let escape = self.directives.escape;
        self.buf.clear();
        self.map.clear();
        self.map
            .push(0, start_line, text, text.len() - stripped.len());
        self.buf.push_str(piece);
        let mut end_line = start_line;
        let mut first_empty: Option<u32> = None;
        while !eol {
            let Some(next) = lines.next() else { break };
            end_line = next.no;
            if is_comment(next.raw) {
                continue;
            }
            if is_empty_continuation(next.raw) {
                first_empty.get_or_insert(next.no);
                continue;
            }
            let t = trim_newline(next.raw);
            let (piece, e) = trim_continuation(t, escape);
            eol = e;
            self.map.push(self.buf.len(), next.no, t, 0);
            self.buf.push_str(piece);
        }
        let line = self.buf.as_str();
        let map = &self.map;
        let span_of = |off: usize| map.span(off);
        let ctx = args::Ctx {
            escape,
            line,
            span_of: &span_of,
        };
        let mut node = args::node_from_line(line, &ctx, 0)?;
        if let Some(no) = first_empty {
            self.warnings.push(Warning {
                span: Span::new(no, 1),
                message: format!(
                    "Empty continuation line found in: {line}. \
                     Empty continuation lines will become errors in a future release"
                ),
            });
        }
        if can_contain_heredoc(&node) && has_double_lt(line) {
            self.heredocs(lines, &mut node, &mut end_line)?;
        }
        node.start_line = start_line;
        node.end_line = end_line;
        if let Some(sub) = node.sub.as_deref_mut() {
            sub.start_line = start_line;
            sub.end_line = end_line;
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Reads the bodies of the heredocs `node`'s line opens (after the
    /// line), moving `end_line` past them.
    fn heredocs(
        &self,
        lines: &mut Lines<'a>,
        node: &mut Node,
        end_line: &mut u32,
    ) -> Result<(), ParseError> {
        let line = self.buf.as_str();
        let docs =
            heredocs_from_line(line).map_err(|e| ParseError::new(node.span, e.to_string()))?;
        if docs.len() > MAX_HEREDOCS {
            return Err(ParseError::new(
                node.span,
                format!("more than {MAX_HEREDOCS} heredocs in one instruction"),
            ));
        }
        let mut cursor = 0;
        for doc in docs {
            let span = match marker_offset(line, cursor, &doc.name) {
                Some(at) => {
                    cursor = at + 2;
                    self.map.span(at)
                }
                None => node.span,
            };
            let doc = read_heredoc_body(lines, doc, span, end_line)?;
            node.heredocs.push(doc);
        }
        Ok(())
    }
}

/// RUN, COPY and ADD in shell form (also under ONBUILD) can carry heredocs.
fn can_contain_heredoc(node: &Node) -> bool {
    let n = match (&node.sub, node.keyword.as_str()) {
        (Some(sub), "onbuild") => sub,
        _ => node,
    };
    matches!(n.keyword.as_str(), "run" | "copy" | "add") && !n.json
}

/// Whether `line` contains `<<` (a byte search; `str::contains` builds a
/// substring searcher per call, which showed in the parse profile).
fn has_double_lt(line: &str) -> bool {
    let b = line.as_bytes();
    let mut from = 0;
    while let Some(i) = b
        .get(from..)
        .and_then(|t| t.iter().position(|&c| c == b'<'))
    {
        if b.get(from + i + 1) == Some(&b'<') {
            return true;
        }
        from += i + 1;
    }
    false
}

/// Best-effort byte offset of the `<<` that introduced heredoc `name`, at
/// or after `from`, so an unterminated heredoc can be pointed at.
fn marker_offset(line: &str, from: usize, name: &str) -> Option<usize> {
    let first = name.chars().next()?;
    let tail = line.get(from..)?;
    tail.match_indices("<<").map(|(i, _)| from + i).find(|&at| {
        line.get(at + 2..).is_some_and(|after| {
            after
                .trim_start_matches('-')
                .trim_start_matches([' ', '\t', '\r'])
                .trim_start_matches(['\'', '"'])
                .starts_with(first)
        })
    })
}

// heredoc-body = { line } terminator       -- terminator may be tab-indented for <<-
fn read_heredoc_body(
    lines: &mut Lines<'_>,
    mut doc: Heredoc,
    span: Span,
    end_line: &mut u32,
) -> Result<Heredoc, ParseError> {
    for l in lines.by_ref() {
        *end_line = l.no;
        let mut candidate = trim_newline(l.raw);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Ok(doc);
        }
        doc.content.push_str(l.raw);
    }
    Err(ParseError::new(
        span,
        format!(
            "unterminated heredoc: no line {} closes it before the end of the file",
            go_quote(&doc.name)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_table() {
        let cases: &[(&str, &str)] = &[
            ("FROM a\nRUN echo hi\n", "(from \"a\")\n(run \"echo hi\")\n"),
            (
                "\u{feff}FROM a\r\nRUN x \\\r\n  y\r\n",
                "(from \"a\")\n(run \"x   y\")\n",
            ),
            ("FOO\n", "(foo \"\")\n"),
            ("RUN\n", "(run)\n"),
            (
                "ONBUILD ONBUILD RUN [\"a\"]\n",
                "(onbuild (onbuild (run \"a\")))\n",
            ),
            ("ENV\n", "(env)\n"),
            ("HEALTHCHECK NONE\n", "(healthcheck \"NONE\")\n"),
            ("\\\n", "(\"\")\n"),
        ];
        for (src, want) in cases {
            let df = parse(src).expect("parses");
            assert_eq!(dump(&df), *want, "{src:?}");
        }
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, u32, u32, &str)] = &[
            ("# escape=x\nFROM a\n", 1, 10, "invalid escape token 'x'"),
            (
                "#escape=`\n  # ESCAPE=`\n",
                2,
                5,
                "only one escape parser directive",
            ),
            ("FROM a\nCMD [\"a\", \\\n  1]\n", 3, 3, "strings only"),
            ("FROM a\n  ENV PATH\n", 2, 3, "ENV must have two arguments"),
            (
                "FROM a\nLABEL a=b \\\n \"c d\"\n",
                3,
                2,
                "can't find = in \"\\\"c d\\\"\"",
            ),
            ("FROM a\nRUN <<EOF\nx\n", 2, 5, "unterminated heredoc"),
            (
                "FROM a\nCOPY <<A 3<<-'B' /d\nA\n",
                2,
                11,
                "unterminated heredoc: no line \"B\"",
            ),
            ("\n# c\n", 2, 1, "file with no instructions"),
        ];
        for (src, line, col, msg) in cases {
            let err = parse(src).expect_err(src);
            assert_eq!(
                (err.span.line, err.span.col),
                (*line, *col),
                "{src:?}: {err}"
            );
            assert!(err.message.contains(msg), "{src:?}: {err}");
        }
    }

    #[test]
    fn spans_and_lines() {
        let df = parse("FROM a\n\n  RUN a \\\n# c\n\n b\nCOPY <<X /d\nhi\nX\n").expect("parses");
        let got: Vec<_> = df
            .nodes
            .iter()
            .map(|n| (n.span.line, n.span.col, n.start_line, n.end_line))
            .collect();
        assert_eq!(got, vec![(1, 1, 1, 1), (3, 3, 3, 6), (7, 1, 7, 9)]);
        assert_eq!(df.nodes[2].heredocs[0].content, "hi\n");
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(df.warnings[0].span.line, 5);
    }
}
