//! Shell-word expansion with BuildKit's semantics (its `shell.Lex`).
//!
//! A Dockerfile word such as `"${BASE:-alpine}":$TAG` goes through quote
//! removal, escapes and `$VAR` / `${VAR…}` expansion. BuildKit does this with
//! its own small lexer, not a real shell, and Dockerfiles depend on its exact
//! quirks, so this module reproduces that lexer's behaviour rather than
//! POSIX's. Checked against BuildKit's own vectors in
//! `tests/conformance/buildkit` (see `tests/it/shell.rs`).
//!
//! What is supported, as in BuildKit:
//! - `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?w}`,
//!   `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`,
//!   `${V//p/r}`; patterns know `*`, `?` and `\`-escapes, not brackets.
//! - single quotes (literal), double quotes (expansion inside; the escape
//!   character escapes only `"`, `$` and itself), the escape character
//!   (`\` or `` ` ``) outside quotes.
//! - names are Unicode letters, digits and `_`; a name that starts with a
//!   digit takes only digits; `@ * # ? - $ !` are one-character names.
//!   Nothing sets positional or special parameters, so they expand to "".

mod pattern;
mod unicode;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// Variable lookup for expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is unset. A variable set to
    /// the empty string is `Some("")`, which `${V?}` and `${V-w}` tell apart
    /// from unset.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs in definition order: later entries win,
/// as a later `ENV` or `ARG` replaces an earlier one.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Same as the slice: later entries win.
impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// An environment in which every variable is unset (for example for the
/// parser, which splits words before any `ARG` or `ENV` is known).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Expansion failed: unbalanced quotes or braces, a bad `${…}` form, a
/// `${V:?msg}` whose variable is unset, or an invalid pattern.
///
/// The message follows BuildKit's wording, e.g.
/// `failed to process "${V:?need V}": V: need V`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    /// What went wrong, naming the word.
    pub message: String,
}

/// The result of [`ShellLex::process_word_with_matches`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded {
    /// The expanded word.
    pub value: String,
    /// Names that were looked up and found set (possibly to "").
    pub matched: BTreeSet<String>,
    /// Names that were looked up and found unset.
    pub unmatched: BTreeSet<String>,
    /// Every variable reference the lexer met, in the order they are
    /// written (`${V:-$W}`: `V`, then `W`), repeats included. The lint
    /// rules read this: which references can come out empty.
    pub references: Vec<Reference>,
}

/// One variable reference of a word, as [`Expanded::references`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The variable's name as written (a letter name, digits, or one of
    /// the special parameters `@ * # ? - $ !`).
    pub name: String,
    /// Whether the environment had it set.
    pub set: bool,
    /// Whether the form supplies a value of its own when the variable is
    /// unset or stops with an error: `${V-w}`, `${V+w}`, `${V?w}` and their
    /// `:` forms. `$V`, `${V}`, `${V#p}` and `${V/p/r}` are not.
    pub has_fallback: bool,
}

impl Reference {
    /// Whether the name is one a Dockerfile can define: it starts with a
    /// letter or `_`. Positional (`$1`) and special (`$@`) parameters are
    /// never set by anything, so the lint rules leave them alone.
    pub fn is_definable(&self) -> bool {
        self.name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
    }
}

/// How deep `${…}` expansions may nest inside each other. BuildKit has no
/// limit; ours keeps the recursion far from the end of the stack (100
/// levels need well under 256 KiB). Real Dockerfiles nest two or three.
pub const MAX_DEPTH: usize = 100;

/// How many bytes expansion may add to one word. Without a bound,
/// `ENV V=$V$V` repeated 30 times asks for gigabytes from a few hundred
/// bytes of Dockerfile. Real words grow by a few kilobytes at most.
pub const MAX_GROWTH: usize = 1 << 20;

/// BuildKit's shell-word processor, configured with an escape character and
/// the lexer options some callers (heredoc detection) need.
///
/// Cheap to copy; holds no state between calls, so one value may be shared
/// by threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellLex {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Default for ShellLex {
    fn default() -> Self {
        ShellLex::new('\\')
    }
}

impl ShellLex {
    /// A lexer with escape character `escape` (`\` by default, `` ` `` after
    /// `# escape=``) and default options.
    pub fn new(escape: char) -> Self {
        ShellLex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit's `RawQuotes`).
    pub fn with_raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`).
    pub fn with_raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`).
    pub fn with_skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written, e.g. `$X` or
    /// `${X:-d}` (BuildKit's `SkipUnsetEnv`).
    pub fn with_skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Expands `word` as one word, without splitting (BuildKit's
    /// `ProcessWord`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        if self.is_literal(word) {
            return Ok(word.to_string());
        }
        let mut lexer = Lexer::new(*self, word, env, false, false);
        lexer.run().map_err(|e| wrap(word, e))
    }

    /// Expands `word` and splits the result into words (BuildKit's
    /// `ProcessWords`).
    ///
    /// Splitting happens at unquoted, unescaped whitespace, including
    /// whitespace that comes out of an unquoted `$V`; quotes are removed and
    /// empty words dropped. Two BuildKit quirks are kept for parity: text
    /// of the current word that precedes a `${V<op>…}` form (or a `$` inside
    /// double quotes followed by one) is dropped from the word list, because
    /// BuildKit's nested lexer resets the shared word buffer; and blanks
    /// right after `<<` do not split, so `<< EOF` stays one word.
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        let mut lexer = Lexer::new(*self, word, env, false, true);
        lexer.run().map_err(|e| wrap(word, e))?;
        Ok(lexer.words)
    }

    /// Expands `word` as one word and reports which variables it looked up
    /// (BuildKit's `ProcessWordWithMatches`). The lint rules use this to
    /// find references to variables nothing defined.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Env,
    ) -> Result<Expanded, ExpandError> {
        if self.is_literal(word) {
            return Ok(Expanded {
                value: word.to_string(),
                ..Expanded::default()
            });
        }
        let mut lexer = Lexer::new(*self, word, env, true, false);
        let value = lexer.run().map_err(|e| wrap(word, e))?;
        Ok(Expanded {
            value,
            matched: lexer.matched,
            unmatched: lexer.unmatched,
            references: lexer.references,
        })
    }
}

impl ShellLex {
    /// True when expansion cannot change `word`: most words hold no `$`,
    /// quote or escape, and skip the lexer.
    fn is_literal(&self, word: &str) -> bool {
        !word.starts_with('\u{feff}') && !word.contains(['$', '\'', '"', self.escape])
    }
}

/// BuildKit prefixes every error with the word, Go-quoted.
fn wrap(word: &str, message: String) -> ExpandError {
    ExpandError {
        message: format!("failed to process {}: {message}", go_quote(word)),
    }
}

/// Go's `%q` for the error prefix: close enough for messages (control
/// characters escaped, printable text kept).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An error message before the `failed to process` prefix is added.
type Fail = String;

const MISSING_BRACE: &str = "syntax error: missing '}'";

/// One expansion run over one word. Mirrors BuildKit's `shellWord`: a
/// cursor over the characters, the options, and what was looked up.
struct Lexer<'s, 'e> {
    opts: ShellLex,
    src: &'s str,
    pos: usize,
    env: &'e dyn Env,
    /// Escapes are kept inside `${V#…}`, `${V%…}` and `${V/…/…}`, so the
    /// pattern code sees `\*`; this tracks the current setting.
    raw_escapes: bool,
    depth: usize,
    /// The longest any text built from this word may get.
    limit: usize,
    capture: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    references: Vec<Reference>,
    split: bool,
    words: Vec<String>,
    word_buf: String,
    in_word: bool,
}

impl<'s, 'e> Lexer<'s, 'e> {
    fn new(opts: ShellLex, src: &'s str, env: &'e dyn Env, capture: bool, split: bool) -> Self {
        // Go's text/scanner, which BuildKit reads the word with, drops a
        // byte-order mark at the very start.
        let pos = if src.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        Lexer {
            opts,
            src,
            pos,
            env,
            raw_escapes: opts.raw_escapes,
            depth: 0,
            limit: src.len().saturating_add(MAX_GROWTH),
            capture,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            references: Vec::new(),
            split,
            words: Vec::new(),
            word_buf: String::new(),
            in_word: false,
        }
    }

    fn run(&mut self) -> Result<String, Fail> {
        let out = self.stop_on(None, self.opts.raw_escapes)?;
        if !self.word_buf.is_empty() {
            self.words.push(std::mem::take(&mut self.word_buf));
        }
        Ok(out)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    // word = { stop-char-free part } [ stop ]
    //
    // Reads until `stop` (consumed) or, when `stop` is None, the end of the
    // word. Nested calls (inside `${…}`) return only the text; the top call
    // also feeds the word splitter.
    fn stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<String, Fail> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<String, Fail> {
        // BuildKit shares one word buffer between the top-level call and the
        // nested ones and clears it on entry, so a nested `${V:-…}` drops
        // the unfinished word before it from the split result. Kept for
        // parity (see `process_words`).
        self.word_buf.clear();
        let top = stop.is_none() && self.split;
        let mut out = String::with_capacity(if stop.is_none() { self.src.len() } else { 0 });
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.pos += ch.len_utf8();
                return Ok(out);
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                    self.check_len(&out)?;
                    if top {
                        // Unquoted expansions split at their whitespace.
                        for c in value.chars() {
                            self.add_char(c);
                        }
                    }
                }
                '<' => {
                    let start = out.len();
                    self.possible_heredoc(&mut out);
                    if top {
                        self.add_raw_str_from(&out, start);
                    }
                }
                '\'' | '"' if !self.opts.skip_process_quotes => {
                    let start = out.len();
                    if ch == '\'' {
                        self.single_quote(&mut out)?;
                    } else {
                        self.double_quote(&mut out)?;
                    }
                    if top {
                        self.add_raw_str_from(&out, start);
                    }
                }
                _ => {
                    self.pos += ch.len_utf8();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            out.push(ch);
                            if top {
                                self.add_raw_char(ch);
                            }
                        }
                        // An escape at the very end is dropped.
                        let Some(next) = self.bump() else { break };
                        out.push(next);
                        if top {
                            self.add_raw_char(next);
                        }
                    } else {
                        out.push(ch);
                        if top {
                            self.add_char(ch);
                        }
                    }
                }
            }
        }
        match stop {
            Some(c) => Err(format!(
                "unexpected end of statement while looking for matching {c}"
            )),
            None => Ok(out),
        }
    }

    /// Word splitting: unquoted whitespace ends the current word.
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word_buf.is_empty() {
                self.words.push(std::mem::take(&mut self.word_buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word_buf.push(c);
        self.in_word = true;
    }

    fn add_raw_str_from(&mut self, out: &str, start: usize) {
        self.word_buf.push_str(&out[start..]);
        self.in_word = true;
    }

    // heredoc-start = "<<" { " " | "\t" | "\r" }
    //
    // BuildKit's lexer takes blanks after `<<` together with it, so the
    // splitter keeps `<< EOF` as one word for heredoc detection. The text
    // itself is unchanged.
    fn possible_heredoc(&mut self, out: &mut String) {
        self.pos += 1;
        out.push('<');
        if self.peek() != Some('<') {
            return;
        }
        self.pos += 1;
        out.push('<');
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            self.pos += 1;
            out.push(c);
        }
    }

    // single-quoted = "'" { any but "'" } "'"    -- no escapes at all
    fn single_quote(&mut self, out: &mut String) -> Result<(), Fail> {
        self.pos += 1;
        if self.opts.raw_quotes {
            out.push('\'');
        }
        let rest = &self.src[self.pos..];
        let Some(len) = rest.find('\'') else {
            return Err(
                "unexpected end of statement while looking for matching single-quote".into(),
            );
        };
        out.push_str(&rest[..len]);
        self.pos += len + 1;
        if self.opts.raw_quotes {
            out.push('\'');
        }
        Ok(())
    }

    // double-quoted = '"' { expansion | escape ( '"' | "$" | escape ) | any } '"'
    //
    // Any other escaped character keeps its escape character. With raw
    // escapes on, BuildKit writes the escape character twice before a
    // character it does not escape (`\t` gives `\\t`); kept for parity.
    fn double_quote(&mut self, out: &mut String) -> Result<(), Fail> {
        self.pos += 1;
        if self.opts.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    if self.opts.raw_quotes {
                        out.push('"');
                    }
                    return Ok(());
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                    self.check_len(out)?;
                }
                Some(mut ch) => {
                    self.pos += ch.len_utf8();
                    if ch == self.opts.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // The loop then reports the missing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.opts.escape => {
                                self.pos += n.len_utf8();
                                ch = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    // expansion = "$" name | "${" name [ modifier ] "}" | "$"
    fn dollar(&mut self) -> Result<Cow<'e, str>, Fail> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok(Cow::Borrowed("$"));
            }
            return Ok(match self.get_env(name) {
                Some(v) => Cow::Borrowed(v),
                None if self.opts.skip_unset_env => Cow::Owned(format!("${name}")),
                None => Cow::Borrowed(""),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(MISSING_BRACE.into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        if self.depth >= MAX_DEPTH {
            return Err(format!(
                "expansions nested more than {MAX_DEPTH} levels deep"
            ));
        }
        self.depth += 1;
        let result = self.braced();
        self.depth -= 1;
        result
    }

    // braced = name ( "}" | [":"] ("-"|"+"|"?") word "}" | ("#"|"##"|"%"|"%%") pattern "}"
    //               | ("/"|"//") pattern "/" replacement "}" )
    fn braced(&mut self) -> Result<Cow<'e, str>, Fail> {
        let name = self.name();
        // BuildKit reports a word that ends here as an unsupported modifier
        // (U+FFFD); a missing brace is what actually happened.
        let Some(ch) = self.bump() else {
            return Err(MISSING_BRACE.into());
        };
        match ch {
            '}' => Ok(match self.get_env(name) {
                Some(v) => Cow::Borrowed(v),
                None if self.opts.skip_unset_env => Cow::Owned(format!("${{{name}}}")),
                None => Cow::Borrowed(""),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' | '/' => {
                let first = self.references.len();
                let value = if ch == '/' {
                    self.substitute(name)
                } else {
                    self.modifier(name, ch)
                }?;
                // The name is looked up after the word inside it; list its
                // reference where it is written, before that word's.
                if let Some(own) = self.references.pop() {
                    self.references.insert(first, own);
                }
                Ok(value)
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    fn modifier(&mut self, name: &str, first: char) -> Result<Cow<'e, str>, Fail> {
        let colon = first == ':';
        let op = if colon {
            match self.bump() {
                Some(c) => c,
                // As in BuildKit: the nested read below hits the end at once.
                None => return Err(MISSING_BRACE.into()),
            }
        } else {
            first
        };
        let written = if colon {
            format!(":{op}")
        } else {
            op.to_string()
        };
        let trims = op == '#' || op == '%';
        if colon && trims {
            return Err(format!("unsupported modifier ({written}) in substitution"));
        }
        let word = self.nested(Some('}'), trims, MISSING_BRACE)?;
        let value = self.lookup(name, matches!(op, '-' | '+' | '?'));
        let Some(value) = value else {
            if self.opts.skip_unset_env {
                return Ok(Cow::Owned(format!("${{{name}{written}{word}}}")));
            }
            return match op {
                '-' => Ok(Cow::Owned(word)),
                '+' => Ok(Cow::Borrowed("")),
                '?' => Err(required(name, &word, "is not allowed to be unset")),
                '#' | '%' => pattern::trim(&word, "", op == '%').map(Cow::Owned),
                _ => Err(format!("unsupported modifier ({written}) in substitution")),
            };
        };
        let null = colon && value.is_empty();
        match op {
            '-' if null => Ok(Cow::Owned(word)),
            '-' => Ok(Cow::Borrowed(value)),
            '+' if null => Ok(Cow::Borrowed("")),
            '+' => Ok(Cow::Owned(word)),
            '?' if null => Err(required(name, &word, "is not allowed to be empty")),
            '?' => Ok(Cow::Borrowed(value)),
            '#' | '%' => pattern::trim(&word, value, op == '%').map(Cow::Owned),
            _ => Err(format!("unsupported modifier ({written}) in substitution")),
        }
    }

    fn substitute(&mut self, name: &str) -> Result<Cow<'e, str>, Fail> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pat = self.nested(Some('/'), true, "syntax error: missing '/' in ${}")?;
        let repl = self.nested(Some('}'), true, MISSING_BRACE)?;
        let value = self.get_env(name);
        if value.is_none() && self.opts.skip_unset_env {
            // BuildKit writes one slash here even for `//`.
            return Ok(Cow::Owned(format!("${{{name}/{pat}/{repl}}}")));
        }
        pattern::replace(&pat, value.unwrap_or(""), &repl, all, self.limit).map(Cow::Owned)
    }

    /// A nested read up to `stop`. Any failure that leaves the cursor at the
    /// end of the word is reported as `at_end` (BuildKit does the same).
    fn nested(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        at_end: &str,
    ) -> Result<String, Fail> {
        self.stop_on(stop, raw_escapes).map_err(|e| {
            if self.pos >= self.src.len() {
                at_end.to_string()
            } else {
                e
            }
        })
    }

    /// Fails once expansion made `text` longer than the limit.
    fn check_len(&self, text: &str) -> Result<(), Fail> {
        if text.len() > self.limit {
            return Err(format!(
                "expansion makes the word longer than {} bytes (at most {MAX_GROWTH} may be added)",
                self.limit
            ));
        }
        Ok(())
    }

    // name = digit { digit } | special | { letter | digit | "_" }
    fn name(&mut self) -> &'s str {
        let src: &'s str = self.src;
        let start = self.pos;
        match self.peek() {
            Some(c) if unicode::is_digit(c) => {
                while let Some(c) = self.peek().filter(|&c| unicode::is_digit(c)) {
                    self.pos += c.len_utf8();
                }
                return &src[start..self.pos];
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.pos += c.len_utf8();
                return &src[start..self.pos];
            }
            _ => {}
        }
        while let Some(c) = self
            .peek()
            .filter(|&c| c == '_' || unicode::is_letter(c) || unicode::is_digit(c))
        {
            self.pos += c.len_utf8();
        }
        &src[start..self.pos]
    }

    fn get_env(&mut self, name: &str) -> Option<&'e str> {
        self.lookup(name, false)
    }

    /// Looks `name` up and, when capturing, records the reference;
    /// `has_fallback` says whether the form has a value of its own.
    fn lookup(&mut self, name: &str, has_fallback: bool) -> Option<&'e str> {
        let env: &'e dyn Env = self.env;
        let value = env.lookup(name);
        if self.capture {
            self.references.push(Reference {
                name: name.to_owned(),
                set: value.is_some(),
                has_fallback,
            });
            let set = if value.is_some() {
                &mut self.matched
            } else {
                &mut self.unmatched
            };
            if !set.contains(name) {
                set.insert(name.to_owned());
            }
        }
        value
    }
}

/// The `${V?msg}` / `${V:?msg}` error: the word if given, else BuildKit's text.
fn required(name: &str, word: &str, default: &str) -> Fail {
    let message = if word.is_empty() { default } else { word };
    format!("{name}: {message}")
}

#[cfg(test)]
mod tests;
