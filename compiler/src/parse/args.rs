//! Per-instruction argument shapes (BuildKit's dispatch table of line parsers).
//!
//! | instruction                     | argument nodes                                  |
//! |---------------------------------|-------------------------------------------------|
//! | FROM, EXPOSE                    | fields split on `[ \t\v\f\r]+`                  |
//! | ADD, COPY, VOLUME               | JSON strings, else fields                       |
//! | RUN, CMD, ENTRYPOINT, SHELL     | JSON strings, else the whole rest               |
//! | ENV, LABEL                      | key, value, separator triples                   |
//! | ARG                             | quote-aware words                               |
//! | MAINTAINER, USER, WORKDIR, STOPSIGNAL | the whole rest                            |
//! | HEALTHCHECK                     | first word, then as RUN                         |
//! | ONBUILD                         | the nested instruction                          |
//! | anything else                   | one empty string                                |

use super::dump::{go_lower, go_quote};
use super::flags::split_command;
use super::json::{parse_json_array, JsonForm};
use super::line::offset_in;
use super::words::{split2_ascii_space, split_ascii_space, split_words};
use super::Input;
use crate::ast::{Node, Span};
use crate::error::ParseError;

/// How deep `ONBUILD ONBUILD …` may nest. BuildKit's parser has no limit
/// (its instruction layer then rejects any nesting); ours keeps recursion
/// bounded on hostile input.
const MAX_ONBUILD_DEPTH: usize = 32;

/// What node construction needs besides the text.
pub(crate) struct Ctx<'a> {
    /// The escape character.
    pub escape: char,
    /// The whole logical line, which every slice handed around borrows from.
    pub line: Input<'a>,
    /// Maps a byte offset of `line` to a source position.
    pub span_of: &'a dyn Fn(usize) -> Span,
}

impl Ctx<'_> {
    fn span(&self, part: Input<'_>) -> Span {
        (self.span_of)(offset_in(self.line, part))
    }
}

/// Arguments of one instruction.
#[derive(Default)]
struct Args {
    args: Vec<String>,
    json: bool,
    sub: Option<Box<Node>>,
}

// instruction = command   -- see flags.rs; arguments shaped by keyword
pub(crate) fn node_from_line(
    text: Input<'_>,
    ctx: &Ctx<'_>,
    depth: usize,
) -> Result<Node, ParseError> {
    let cmd = split_command(text, ctx.escape);
    let keyword = go_lower(cmd.keyword);
    let span = ctx.span(cmd.keyword);
    let rest = cmd.rest;
    let args = match keyword.as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(rest, ctx)?,
        "run" | "cmd" | "entrypoint" | "shell" => maybe_json(rest, ctx)?,
        "from" | "expose" => fields(rest),
        "env" | "label" => name_val(rest, &keyword, span, ctx)?,
        "arg" => Args {
            args: split_words(rest, ctx.escape),
            ..Args::default()
        },
        "maintainer" | "user" | "workdir" | "stopsignal" => whole(rest),
        "healthcheck" => health_config(rest, ctx)?,
        "onbuild" => sub_command(rest, ctx, depth, span)?,
        _ => Args {
            args: vec![String::new()],
            ..Args::default()
        },
    };
    Ok(Node {
        keyword,
        flags: cmd.flags,
        args: args.args,
        json: args.json,
        sub: args.sub,
        heredocs: Vec::new(),
        original: text.to_string(),
        span,
        start_line: span.line,
        end_line: span.line,
    })
}

// whole = rest        -- one node, absent when empty
fn whole(rest: Input<'_>) -> Args {
    Args {
        args: if rest.is_empty() {
            Vec::new()
        } else {
            vec![rest.to_string()]
        },
        ..Args::default()
    }
}

// fields = field { ascii-space+ field }
fn fields(rest: Input<'_>) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args {
        args: split_ascii_space(rest).map(str::to_string).collect(),
        ..Args::default()
    }
}

fn json_error(at: usize, rest: Input<'_>, ctx: &Ctx<'_>) -> ParseError {
    let element = rest.get(at..).unwrap_or(rest);
    ParseError::new(
        ctx.span(element),
        "when using JSON array syntax, arrays must be comprised of strings only",
    )
}

// maybe-json = json-array | whole
fn maybe_json(rest: Input<'_>, ctx: &Ctx<'_>) -> Result<Args, ParseError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json_array(rest) {
        JsonForm::Strings(args) => Ok(Args {
            args,
            json: true,
            sub: None,
        }),
        JsonForm::NotStringArray(at) => Err(json_error(at, rest, ctx)),
        JsonForm::NotJson => Ok(whole(rest)),
    }
}

// maybe-json-to-list = json-array | fields
fn maybe_json_to_list(rest: Input<'_>, ctx: &Ctx<'_>) -> Result<Args, ParseError> {
    match parse_json_array(rest) {
        JsonForm::Strings(args) => Ok(Args {
            args,
            json: true,
            sub: None,
        }),
        JsonForm::NotStringArray(at) => Err(json_error(at, rest, ctx)),
        JsonForm::NotJson => Ok(fields(rest)),
    }
}

// name-val = key ascii-space+ value          -- old form, first word has no '='
//          | key "=" value { space+ key "=" value }
fn name_val(rest: Input<'_>, keyword: &str, span: Span, ctx: &Ctx<'_>) -> Result<Args, ParseError> {
    let escape = ctx.escape;
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Args::default());
    };
    let upper = keyword.to_ascii_uppercase();
    if !first.contains('=') {
        let (key, value) = split2_ascii_space(rest);
        let Some(value) = value else {
            return Err(ParseError::new(
                span,
                format!("{upper} must have two arguments"),
            ));
        };
        return Ok(Args {
            args: vec![key.to_string(), value.to_string(), String::new()],
            ..Args::default()
        });
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for (n, word) in words.iter().enumerate() {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ParseError::new(
                word_span(rest, &words[..=n]).map_or(span, |w| ctx.span(w)),
                format!(
                    "Syntax error - can't find = in {}. Must be of the form: name=value",
                    go_quote(word)
                ),
            ));
        };
        args.push(k.to_string());
        args.push(v.to_string());
        args.push("=".to_string());
    }
    Ok(Args {
        args,
        ..Args::default()
    })
}

/// Where the last of `words` is in `rest`, for an error. Words keep their
/// raw text, so each is found after the previous one.
fn word_span<'a>(rest: Input<'a>, words: &[String]) -> Option<Input<'a>> {
    let mut cursor = 0;
    let mut at = None;
    for word in words {
        at = rest
            .get(cursor..)
            .and_then(|r| r.find(word.as_str()))
            .map(|i| cursor + i);
        if let Some(a) = at {
            cursor = a + word.len();
        }
    }
    at.and_then(|a| rest.get(a..))
}

// health-config = type [ space+ maybe-json ]
fn health_config(rest: Input<'_>, ctx: &Ctx<'_>) -> Result<Args, ParseError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let cmd = maybe_json(rest[sep..].trim_start(), ctx)?;
    let mut args = Vec::with_capacity(1 + cmd.args.len());
    args.push(rest[..sep].to_string());
    args.extend(cmd.args);
    Ok(Args {
        args,
        json: cmd.json,
        sub: None,
    })
}

// sub-command = instruction
fn sub_command(
    rest: Input<'_>,
    ctx: &Ctx<'_>,
    depth: usize,
    span: Span,
) -> Result<Args, ParseError> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    if depth >= MAX_ONBUILD_DEPTH {
        return Err(ParseError::new(
            span,
            format!("ONBUILD instructions nested more than {MAX_ONBUILD_DEPTH} levels deep"),
        ));
    }
    let sub = node_from_line(rest, ctx, depth + 1)?;
    Ok(Args {
        sub: Some(Box::new(sub)),
        ..Args::default()
    })
}
