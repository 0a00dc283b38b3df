//! JSON ("exec") form: `["a", "b"]`, decoded the way Go's `encoding/json`
//! decodes into `[]any`.
//!
//! Three outcomes matter: a valid array of strings (exec form), anything
//! that is not valid JSON (the line quietly stays shell form), and a valid
//! array holding a non-string element (a hard error). Like Go, a number too
//! large for an `f64` makes decoding fail, which also means shell form.
//! Nesting is tracked with an explicit stack so deep input cannot overflow
//! ours; Go's scanner gives up past 10000 levels, and so do we.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char as ch, one_of};
use nom::combinator::{opt, recognize};
use nom::sequence::pair;
use nom::{IResult, Parser};

use super::Input;

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

/// What a JSON-form attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonForm {
    /// A valid array of strings.
    Strings(Vec<String>),
    /// Not a JSON array (or not valid JSON): use shell form.
    NotJson,
    /// A valid array with a non-string element at this byte offset of the
    /// text that was passed in.
    NotStringArray(usize),
}

/// Tries to read `text` (leading whitespace allowed) as a JSON array of strings.
pub fn parse_json_array(text: &str) -> JsonForm {
    let body = text.trim_start();
    if !body.starts_with('[') {
        return JsonForm::NotJson;
    }
    let base = text.len() - body.len();
    match array_of_strings(body) {
        Ok(Outcome::Strings(v)) => JsonForm::Strings(v),
        Ok(Outcome::BadElement(at)) => JsonForm::NotStringArray(base + at),
        Ok(Outcome::Undecodable) | Err(()) => JsonForm::NotJson,
    }
}

enum Outcome {
    Strings(Vec<String>),
    BadElement(usize),
    /// Syntactically valid, but Go's decoder would fail (number overflow).
    Undecodable,
}

// ws = { " " | "\t" | "\n" | "\r" }
fn ws(i: Input<'_>) -> Input<'_> {
    i.trim_start_matches([' ', '\t', '\n', '\r'])
}

// number = [ "-" ] ( "0" | digit1-9 { digit } ) [ "." digit { digit } ]
//          [ ( "e" | "E" ) [ "+" | "-" ] digit { digit } ]
fn number(i: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    let digits = || take_while1(|c: char| c.is_ascii_digit());
    recognize((
        opt(ch('-')),
        alt((
            tag("0"),
            recognize(pair(
                one_of("123456789"),
                take_while(|c: char| c.is_ascii_digit()),
            )),
        )),
        opt(pair(ch('.'), digits())),
        opt((one_of("eE"), opt(one_of("+-")), digits())),
    ))
    .parse(i)
}

// literal = "true" | "false" | "null"
fn literal(i: Input<'_>) -> IResult<Input<'_>, Input<'_>> {
    alt((tag("true"), tag("false"), tag("null"))).parse(i)
}

// string = '"' { unescaped | "\" ( ["\/bfnrt] | "u" hex4 ) } '"'
// unescaped = any character from U+0020 except '"' and '\'
//
// Returns the decoded text and the input after the closing quote. Lone or
// mismatched UTF-16 surrogates decode to U+FFFD, as in Go.
fn string(i: Input<'_>) -> Result<(String, Input<'_>), ()> {
    let mut rest = i.strip_prefix('"').ok_or(())?;
    let mut out = String::new();
    loop {
        let plain = rest
            .find(|c: char| c == '"' || c == '\\' || c < ' ')
            .ok_or(())?;
        out.push_str(&rest[..plain]);
        rest = &rest[plain..];
        let mut chars = rest.chars();
        match chars.next() {
            Some('"') => return Ok((out, chars.as_str())),
            Some('\\') => {}
            _ => return Err(()),
        }
        let esc = chars.next().ok_or(())?;
        rest = chars.as_str();
        match esc {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let (hi, r) = hex4(rest).ok_or(())?;
                rest = r;
                if (0xD800..0xE000).contains(&hi) {
                    // A high surrogate followed by `\u` + low surrogate is one
                    // character; anything else leaves the next escape alone.
                    let pair = rest.strip_prefix("\\u").and_then(hex4).filter(|(lo, _)| {
                        (0xD800..0xDC00).contains(&hi) && (0xDC00..0xE000).contains(lo)
                    });
                    match pair {
                        Some((lo, r)) => {
                            rest = r;
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                        None => out.push('\u{FFFD}'),
                    }
                } else {
                    out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                }
            }
            _ => return Err(()),
        }
    }
}

fn hex4(i: Input<'_>) -> Option<(u32, Input<'_>)> {
    let h = i.get(..4)?;
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u32::from_str_radix(h, 16).ok()?, &i[4..]))
}

// value = string | number | literal | array | object
// array = "[" ws [ value ws { "," ws value ws } ] "]"
// object = "{" ws [ string ws ":" ws value ws { "," ws string ws ":" ws value ws } ] "}"
// document = ws array ws EOF
//
// Walks the document iteratively. Only top-level elements are collected;
// nested values are validated and dropped.
fn array_of_strings(doc: Input<'_>) -> Result<Outcome, ()> {
    let mut s = Scanner {
        doc,
        rest: ws(doc),
        stack: Vec::new(),
        top: Vec::new(),
        first_bad: None,
        overflow: false,
        just_opened: false,
    };
    // Expect a value next (true) or a separator / closing bracket (false).
    let mut want_value = true;
    loop {
        let done = if want_value {
            s.value()?
        } else {
            s.after_value()?
        };
        match done {
            Step::Finished => break,
            Step::Value => want_value = true,
            Step::Separator => want_value = false,
        }
    }
    if !s.rest.is_empty() {
        return Err(());
    }
    if s.overflow {
        return Ok(Outcome::Undecodable);
    }
    Ok(match s.first_bad {
        Some(at) => Outcome::BadElement(at),
        None => Outcome::Strings(s.top),
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Frame {
    Array,
    Object,
}

/// What the scanner expects after a step.
enum Step {
    /// A value (after an opening bracket or a comma).
    Value,
    /// A comma or a closing bracket.
    Separator,
    /// The outermost array closed.
    Finished,
}

/// The state of [`array_of_strings`]' walk.
struct Scanner<'a> {
    doc: Input<'a>,
    rest: Input<'a>,
    stack: Vec<Frame>,
    /// The top-level array's string elements.
    top: Vec<String>,
    /// Where the first top-level element that is not a string starts.
    first_bad: Option<usize>,
    /// A number too large for a float (Go's decoder fails on it).
    overflow: bool,
    /// Right after an opening bracket, where a closing one is allowed.
    just_opened: bool,
}

impl<'a> Scanner<'a> {
    /// Reads a value (or the closing bracket of an empty container).
    fn value(&mut self) -> Result<Step, ()> {
        if self.just_opened {
            self.just_opened = false;
            let closer = match self.stack.last() {
                Some(Frame::Array) => ']',
                _ => '}',
            };
            if let Some(r) = self.rest.strip_prefix(closer) {
                return Ok(self.close(r));
            }
        }
        if self.stack.last() == Some(&Frame::Object) {
            let (_, r) = string(self.rest)?;
            self.rest = ws(ws(r).strip_prefix(':').ok_or(())?);
        }
        let at = self.doc.len() - self.rest.len();
        let element_of_top = self.stack.len() == 1;
        let first = self.rest.chars().next().ok_or(())?;
        match first {
            '[' | '{' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(());
                }
                self.stack.push(if first == '[' {
                    Frame::Array
                } else {
                    Frame::Object
                });
                self.rest = ws(&self.rest[1..]);
                self.just_opened = true;
                self.note_bad(element_of_top, at);
                return Ok(Step::Value);
            }
            '"' => {
                let (s, r) = string(self.rest)?;
                self.rest = ws(r);
                if element_of_top {
                    self.top.push(s);
                }
            }
            _ => {
                let (r, tok) = alt((number, literal)).parse(self.rest).map_err(|_| ())?;
                if tok.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
                    && tok.parse::<f64>().map_or(true, f64::is_infinite)
                {
                    self.overflow = true;
                }
                self.note_bad(element_of_top, at);
                self.rest = ws(r);
            }
        }
        if self.stack.is_empty() {
            // A bare top-level scalar cannot happen: doc starts with '['.
            return Err(());
        }
        Ok(Step::Separator)
    }

    /// Reads a comma or the closing bracket after a value.
    fn after_value(&mut self) -> Result<Step, ()> {
        let closer = match self.stack.last() {
            Some(Frame::Array) => ']',
            Some(Frame::Object) => '}',
            None => return Err(()),
        };
        if let Some(r) = self.rest.strip_prefix(',') {
            self.rest = ws(r);
            Ok(Step::Value)
        } else if let Some(r) = self.rest.strip_prefix(closer) {
            Ok(self.close(r))
        } else {
            Err(())
        }
    }

    /// Closes the innermost container; `rest` is what follows its bracket.
    fn close(&mut self, rest: Input<'a>) -> Step {
        self.stack.pop();
        self.rest = ws(rest);
        if self.stack.is_empty() {
            Step::Finished
        } else {
            Step::Separator
        }
    }

    fn note_bad(&mut self, element_of_top: bool, at: usize) {
        if element_of_top && self.first_bad.is_none() {
            self.first_bad = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonForm {
        JsonForm::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn json_table() {
        let cases: Vec<(&str, JsonForm)> = vec![
            ("[]", strings(&[])),
            ("[ ]", strings(&[])),
            (" [\"a\", \"b\"] ", strings(&["a", "b"])),
            (
                "[\"\\u00e9\\ud83d\\ude00\\ud800x\"]",
                strings(&["\u{e9}\u{1F600}\u{FFFD}x"]),
            ),
            ("[\"a\",]", JsonForm::NotJson),
            ("[\"a\"] x", JsonForm::NotJson),
            ("['a']", JsonForm::NotJson),
            ("[\"a\tb\"]", JsonForm::NotJson),
            ("[\"a\", 1]", JsonForm::NotStringArray(6)),
            ("[\"a\", {\"b\": [1, null]}]", JsonForm::NotStringArray(6)),
            ("[\"a\", 1e999]", JsonForm::NotJson),
            ("[[1e999], \"a\"]", JsonForm::NotJson),
            ("[01]", JsonForm::NotJson),
            ("[1.]", JsonForm::NotJson),
            ("[-0.5e+3, true]", JsonForm::NotStringArray(1)),
            ("[{}]", JsonForm::NotStringArray(1)),
            ("[{\"a\" 1}]", JsonForm::NotJson),
            ("[\"a\"", JsonForm::NotJson),
            ("x", JsonForm::NotJson),
        ];
        for (input, want) in cases {
            assert_eq!(parse_json_array(input), want, "{input:?}");
        }
    }

    #[test]
    fn deep_nesting_is_not_json() {
        let deep = format!("[{}{}]", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(parse_json_array(&deep), JsonForm::NotJson);
        let ok = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_json_array(&ok), JsonForm::NotStringArray(1));
    }
}
