//! Heredoc detection (`<<EOF`, `<<-EOF`, `3<<'EOF'`) on RUN, COPY and ADD.
//!
//! BuildKit finds heredocs by running its shell lexer over the whole line
//! with quotes and escapes kept and unset variables left alone, then testing
//! each resulting word against `^(\d*)<<(-?)\s*([^<]*)$`. The lexer treats
//! `<<` plus following blanks as part of a word, which is why `<< EOF` is a
//! heredoc while `<<- EOF` is not. This module carries a small copy of that
//! lexer with an empty environment (full expansion lives in `expand.rs`).

use nom::bytes::complete::{tag, take_while};
use nom::combinator::opt;
use nom::{IResult, Parser};

use super::Input;
use crate::ast::Heredoc;

/// Deepest `${…}` nesting the heredoc lexer follows before giving up.
const MAX_NESTING: usize = 256;

/// Most heredocs one instruction may open. Real ones open one or two; the
/// limit keeps a hostile line from asking for unbounded work.
pub const MAX_HEREDOCS: usize = 128;

/// Why a heredoc word could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {reason}")]
pub struct HeredocError {
    /// The word being processed.
    pub word: String,
    /// What went wrong (unbalanced quote, bad `${}`…).
    pub reason: String,
}

// heredoc-word = { DIGIT } "<<" [ "-" ] { ws } name      -- name has no '<'
fn heredoc_word(i: Input<'_>) -> IResult<Input<'_>, (Input<'_>, bool, Input<'_>)> {
    let (i, fd) = take_while(|c: char| c.is_ascii_digit()).parse(i)?;
    let (i, _) = tag("<<").parse(i)?;
    let (i, chomp) = opt(tag("-")).parse(i)?;
    let (i, _) = take_while(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')).parse(i)?;
    if i.contains('<') {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok(("", (fd, chomp.is_some(), i)))
}

/// Parses one shell word as a heredoc marker. Returns `Ok(None)` when the
/// word is no heredoc (`EOF`, `<<`, `<<EOF sh`), and an error when its name
/// is malformed (unbalanced quotes). The content is left empty.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, HeredocError> {
    let Ok((_, (fd, chomp, rest))) = heredoc_word(word) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let fail = |reason: String| HeredocError {
        word: rest.to_string(),
        reason,
    };
    let words = Lexer::new(false, false).words(rest).map_err(fail)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer::new(true, false).words(rest).map_err(fail)?;
    if raw.len() != words.len() {
        return Err(fail(
            "internal lexing of heredoc produced inconsistent results".into(),
        ));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    // Quote removal changed something: part of the name was quoted.
    let expand = quotes(name) == quotes(&raw[0]);
    let file_descriptor = if fd.is_empty() {
        0
    } else {
        fd.parse::<u64>()
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// All heredoc markers on an instruction line, in order, contents empty.
/// A line the lexer cannot split (unbalanced quotes) has none.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocError> {
    let words = Lexer::new(true, true).words(line).unwrap_or_default();
    let mut docs = Vec::new();
    for w in &words {
        if let Some(doc) = parse_heredoc(w)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Removes the leading tabs of every line (`<<-` heredocs).
pub fn chomp(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for piece in content.split_inclusive('\n') {
        out.push_str(piece.trim_start_matches('\t'));
    }
    out
}

/// The accumulated words of one lexer pass. The pending word buffer lives in
/// the lexer and is shared by nested passes, as in BuildKit.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, c: char) {
        if c.is_whitespace() {
            if self.in_word && !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buf, c);
        }
    }
    fn add_raw_char(&mut self, buf: &mut String, c: char) {
        buf.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, buf: &mut String, s: &str) {
        for c in s.chars() {
            self.add_char(buf, c);
        }
    }
    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
            self.in_word = false;
        }
        self.words
    }
}

/// BuildKit's shell lexer with escape `\`, an empty environment and unset
/// variables kept as written.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    raw_quotes: bool,
    raw_escapes: bool,
    buf: String,
    depth: usize,
}

type Lexed = Result<(String, Vec<String>), String>;

impl<'a> Lexer<'a> {
    fn new(raw_quotes: bool, raw_escapes: bool) -> Self {
        Lexer {
            chars: "".chars().peekable(),
            raw_quotes,
            raw_escapes,
            buf: String::new(),
            depth: 0,
        }
    }

    fn words(mut self, src: &'a str) -> Result<Vec<String>, String> {
        // text/scanner skips a leading byte-order mark.
        self.chars = src
            .strip_prefix('\u{feff}')
            .unwrap_or(src)
            .chars()
            .peekable();
        let raw = self.raw_escapes;
        self.stop_on(None, raw).map(|(_, w)| w)
    }

    // stop-on(c) = { dollar | heredoc-op | single | double | escape any | any } c
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Lexed {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err("substitutions nested too deeply".into());
        }
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Lexed {
        let mut result = String::new();
        self.buf.clear();
        let mut words = Words::default();
        while let Some(&c) = self.chars.peek() {
            if Some(c) == stop {
                self.chars.next();
                return Ok((result, words.finish(&mut self.buf)));
            }
            match c {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&mut self.buf, &tmp);
                }
                '<' => {
                    let tmp = self.possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                '\'' => {
                    let tmp = self.single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                '"' => {
                    let tmp = self.double_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&mut self.buf, &tmp);
                }
                _ => {
                    self.chars.next();
                    if c == '\\' {
                        if self.raw_escapes {
                            words.add_raw_char(&mut self.buf, c);
                            result.push(c);
                        }
                        let Some(next) = self.chars.next() else {
                            break;
                        };
                        words.add_raw_char(&mut self.buf, next);
                        result.push(next);
                    } else {
                        words.add_char(&mut self.buf, c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish(&mut self.buf)))
    }

    // single = "'" { any } "'"
    fn single_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let open = self.chars.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.chars.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    // double = '"' { dollar | escape ( '"' | "$" | escape ) | any } '"'
    fn double_quote(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let open = self.chars.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.chars.peek().copied() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.chars.next();
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut c = self.chars.next().unwrap_or_default();
                    if c == '\\' {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.chars.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => c = self.chars.next().unwrap_or_default(),
                            // BuildKit writes the escape again here (twice
                            // in raw mode); kept for identical names.
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    // heredoc-op = "<<" { " " | "\t" | "\r" } | "<"
    fn possible_heredoc(&mut self) -> String {
        self.chars.next();
        if self.chars.peek() != Some(&'<') {
            return "<".into();
        }
        self.chars.next();
        let mut out = String::from("<<");
        while let Some(&c @ (' ' | '\t' | '\r')) = self.chars.peek() {
            out.push(c);
            self.chars.next();
        }
        out
    }

    // name = digit { digit } | special | ( letter | "_" ) { letter | digit | "_" }
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(&d) = self.chars.peek().filter(|d| is_digit(**d)) {
                    name.push(d);
                    self.chars.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.chars.next();
                name.push(c);
                return name;
            }
            if !c.is_alphabetic() && !is_digit(c) && c != '_' {
                break;
            }
            name.push(c);
            self.chars.next();
        }
        name
    }

    // dollar = "$" name | "${" name ( "}" | [":"] op word "}" | "/" ["/"] pat "/" word "}" )
    //
    // Every variable is unset, so a reference comes back as written (with
    // its word processed), as BuildKit's SkipUnsetEnv does.
    fn dollar(&mut self) -> Result<String, String> {
        self.chars.next();
        if self.chars.peek() != Some(&'{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.chars.next();
        match self.chars.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let first = self.chars.next();
        let mut chs: String = first.map_or('\u{FFFD}', |c| c).to_string();
        match first {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(op @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let mut op = Some(op);
                let null_is_unset = op == Some(':');
                if null_is_unset {
                    op = self.chars.next();
                    chs.push(op.map_or('\u{FFFD}', |c| c));
                }
                let raw = matches!(op, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let (word, _) = self
                    .stop_on(Some('}'), raw)
                    .map_err(|e| self.missing(e, '}'))?;
                Ok(format!("${{{name}{chs}{word}}}"))
            }
            Some('/') => {
                if self.chars.peek() == Some(&'/') {
                    self.chars.next();
                }
                let (pattern, _) = self
                    .stop_on(Some('/'), true)
                    .map_err(|e| self.missing(e, '/'))?;
                let (repl, _) = self
                    .stop_on(Some('}'), true)
                    .map_err(|e| self.missing(e, '}'))?;
                Ok(format!("${{{name}/{pattern}/{repl}}}"))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn missing(&mut self, err: String, what: char) -> String {
        if self.chars.peek().is_none() {
            if what == '/' {
                "syntax error: missing '/' in ${}".into()
            } else {
                "syntax error: missing '}'".into()
            }
        } else {
            err
        }
    }
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name, file descriptor, expand, chomp.
    type Want = Option<(&'static str, u32, bool, bool)>;

    #[test]
    fn heredoc_words_table() {
        let cases: &[(&str, Want)] = &[
            ("<<EOF", Some(("EOF", 0, true, false))),
            ("<<-'EOF'", Some(("EOF", 0, false, true))),
            ("3<<\"EOF\"", Some(("EOF", 3, false, false))),
            ("<< EOF", Some(("EOF", 0, true, false))),
            ("<<EO\"F\"", Some(("EOF", 0, false, false))),
            ("<<eo\\'f", Some(("eo'f", 0, true, false))),
            ("<<$EOF", Some(("$EOF", 0, true, false))),
            ("<<", None),
            ("<<<EOF", None),
            ("<<EOF sh", None),
            ("EOF", None),
        ];
        for (word, want) in cases {
            let got = parse_heredoc(word).expect("no error");
            let got = got
                .as_ref()
                .map(|h| (h.name.as_str(), h.file_descriptor, h.expand, h.chomp));
            assert_eq!(got, *want, "{word:?}");
        }
        assert!(parse_heredoc("<<'EOF").is_err());
    }

    #[test]
    fn line_table() {
        let cases: &[(&str, &[&str])] = &[
            ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
            ("RUN <<- EOF", &[]),
            ("RUN << -EOF", &["-EOF"]),
            ("RUN '<<EOF'", &[]),
            ("COPY <<a <<b /dst", &["a", "b"]),
            ("RUN \"unbalanced <<EOF", &[]),
        ];
        for (line, want) in cases {
            let got: Vec<_> = heredocs_from_line(line)
                .expect("no error")
                .into_iter()
                .map(|h| h.name)
                .collect();
            assert_eq!(got, *want, "{line:?}");
        }
    }

    #[test]
    fn chomp_table() {
        assert_eq!(chomp("\thello\n\t\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp("a\t\n\tb"), "a\t\nb");
    }
}
