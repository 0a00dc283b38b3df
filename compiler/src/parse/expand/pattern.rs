//! Shell patterns of `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`
//! and `${V//p/r}`.
//!
//! BuildKit turns the pattern into a Go regular expression (`*` → `.*` or
//! `.*?`, `?` → `.`, everything else literal) and lets Go's leftmost-first
//! engine pick the match. We match the same tiny language directly with a
//! memoised backtracking search that explores alternatives in the order a
//! backtracking regex engine would, so the chosen match is the same. Two
//! regex details matter and are kept: `*` and `?` never match a newline
//! (Go's `.`), and `${V//p/r}` expands `$0`/`${0}` in `r` to the match
//! (Go's `ReplaceAllString` template), while `${V/p/r}` does not.

use std::collections::HashSet;

use super::unicode;

type Fail = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than a newline.
    Any,
    /// `*`: any run of characters other than newlines.
    Star,
}

/// A compiled pattern. All stars share one greediness, as in BuildKit.
struct Pattern {
    toks: Vec<Tok>,
    greedy: bool,
}

// pattern = { "*" | "?" | "\" ( "*" | "?" | "\" ) | "\" ( "}" | "/" ) | char }
//
// A backslash before `}` or `/` only protected them from the `${…}` reader
// and is dropped. Any other escape is an error, as in BuildKit.
fn compile(pattern: &str, greedy: bool) -> Result<Pattern, Fail> {
    // Go's text/scanner drops a byte-order mark at the start.
    let pattern = pattern.strip_prefix('\u{feff}').unwrap_or(pattern);
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let tok = match c {
            // `**` matches what `*` matches, in the same preference order.
            '*' if toks.last() == Some(&Tok::Star) => continue,
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => match chars.peek() {
                Some('}' | '/') => continue,
                Some(&e @ ('*' | '?' | '\\')) => {
                    chars.next();
                    Tok::Lit(e)
                }
                Some(&e) => return Err(format!("invalid escape '\\{e}'")),
                None => return Err("invalid escape '\\' at end of pattern".into()),
            },
            c => Tok::Lit(c),
        };
        toks.push(tok);
    }
    Ok(Pattern { toks, greedy })
}

/// Search states already known to fail: (token index, text index).
enum Seen {
    Bits { bits: Vec<u64>, width: usize },
    Set(HashSet<(usize, usize)>),
}

impl Seen {
    fn new(toks: usize, text: usize) -> Self {
        let width = text + 1;
        match (toks + 1).checked_mul(width) {
            Some(n) if n <= 1 << 22 => Seen::Bits {
                bits: vec![0; n.div_ceil(64)],
                width,
            },
            _ => Seen::Set(HashSet::new()),
        }
    }

    /// Marks a state; false if it was marked before.
    fn insert(&mut self, ti: usize, pos: usize) -> bool {
        match self {
            Seen::Bits { bits, width } => {
                let i = ti * *width + pos;
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                match bits.get_mut(word) {
                    Some(w) if *w & bit == 0 => {
                        *w |= bit;
                        true
                    }
                    _ => false,
                }
            }
            Seen::Set(set) => set.insert((ti, pos)),
        }
    }
}

impl Pattern {
    /// The end of the match that starts exactly at `start`, choosing among
    /// possible matches as a backtracking engine would: a greedy star first
    /// tries to take one more character, a lazy one first tries to stop.
    ///
    /// A state that is reached again has already failed (everything pushed
    /// after it was explored first), so memoising failures keeps the order
    /// and bounds the work to tokens × characters.
    fn match_at(&self, text: &[char], start: usize, seen: &mut Seen) -> Option<usize> {
        let mut stack = vec![(0usize, start)];
        while let Some((mut ti, mut pos)) = stack.pop() {
            if !seen.insert(ti, pos) {
                continue;
            }
            loop {
                let Some(&tok) = self.toks.get(ti) else {
                    return Some(pos);
                };
                let here = text.get(pos).copied();
                match tok {
                    Tok::Lit(c) if here == Some(c) => {}
                    Tok::Any if here.is_some_and(|c| c != '\n') => {}
                    Tok::Star => {
                        let more = here.is_some_and(|c| c != '\n');
                        // Pushed last is tried first.
                        if self.greedy {
                            stack.push((ti + 1, pos));
                            if more {
                                stack.push((ti, pos + 1));
                            }
                        } else {
                            if more {
                                stack.push((ti, pos + 1));
                            }
                            stack.push((ti + 1, pos));
                        }
                        break;
                    }
                    _ => break,
                }
                ti += 1;
                pos += 1;
            }
        }
        None
    }

    /// The leftmost match at or after `from`, as (start, end).
    fn find(&self, text: &[char], from: usize, seen: &mut Seen) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|s| self.match_at(text, s, seen).map(|e| (s, e)))
    }
}

/// Byte offset of character index `n` in `s`.
fn byte_at(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}

/// `${V#p}`, `${V##p}` (`suffix` false) and `${V%p}`, `${V%%p}` (`suffix`
/// true). `word` is the text after the first `#`/`%`: a second one makes
/// the match longest instead of shortest.
pub(super) fn trim(word: &str, value: &str, suffix: bool) -> Result<String, Fail> {
    let op = if suffix { '%' } else { '#' };
    let (greedy, word) = match word.strip_prefix(op) {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    let invalid = |e: Fail| format!("invalid pattern ({word}) in substitution: {e}");
    let mut text: Vec<char> = value.chars().collect();
    if !suffix {
        let pat = compile(word, greedy).map_err(invalid)?;
        let mut seen = Seen::new(pat.toks.len(), text.len());
        return Ok(match pat.match_at(&text, 0, &mut seen) {
            Some(end) => value[byte_at(value, end)..].to_string(),
            None => value.to_string(),
        });
    }
    // A regex finds the leftmost match, not the rightmost; like BuildKit,
    // match the reversed pattern against the reversed value instead.
    let reversed = reverse_pattern(word);
    let pat = compile(&reversed, greedy).map_err(invalid)?;
    text.reverse();
    let mut seen = Seen::new(pat.toks.len(), text.len());
    Ok(match pat.match_at(&text, 0, &mut seen) {
        Some(end) => value[..byte_at(value, text.len() - end)].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern but keeps each `\x` pair in order, so `a\*c` becomes
/// `c\*a`. A lone trailing backslash stays a lone backslash (at the front).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + len]);
        i += len;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

/// `${V/p/r}` (first match) and `${V//p/r}` (every match). Stars are
/// greedy here.
/// `limit` bounds the result's length (each replacement may be long).
pub(super) fn replace(
    pat: &str,
    value: &str,
    repl: &str,
    all: bool,
    limit: usize,
) -> Result<String, Fail> {
    let pattern =
        compile(pat, true).map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
    let text: Vec<char> = value.chars().collect();
    let mut seen = Seen::new(pattern.toks.len(), text.len());
    // Char index → byte offset, for slicing `value`.
    let offsets: Vec<usize> = value
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(value.len()))
        .collect();
    let at = |n: usize| offsets.get(n).copied().unwrap_or(value.len());
    if !all {
        return Ok(match pattern.find(&text, 0, &mut seen) {
            Some((s, e)) => format!("{}{repl}{}", &value[..at(s)], &value[at(e)..]),
            None => value.to_string(),
        });
    }
    // Go's ReplaceAll loop: after an empty match, move on one character,
    // and skip an empty match right after a previous match.
    let mut out = String::with_capacity(value.len());
    let (mut last_end, mut search) = (0, 0);
    while search <= text.len() {
        let Some((s, e)) = pattern.find(&text, search, &mut seen) else {
            break;
        };
        out.push_str(&value[at(last_end)..at(s)]);
        if e > last_end || s == 0 {
            expand_template(&mut out, repl, &value[at(s)..at(e)]);
        }
        if out.len() > limit {
            return Err(format!(
                "replacing makes the word longer than {limit} bytes"
            ));
        }
        last_end = e;
        search = if e > search { e } else { search + 1 };
    }
    out.push_str(&value[at(last_end)..]);
    Ok(out)
}

/// Go's `Regexp.Expand` for a regex without groups: `$$` is `$`, `$0` and
/// `${0}` are the match, any other `$name` or `${name}` is empty, and a
/// `$` that starts no valid reference is kept.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_ref(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// `name` or `{name}` at the start of `s`; name = letters, digits, `_`.
fn template_ref(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c == '_' || unicode::is_letter(c) || unicode::is_digit(c)))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        return after.strip_prefix('}').map(|a| (name, a));
    }
    Some((name, after))
}
