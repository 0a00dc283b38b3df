//! `.dockerignore` rules, matched the way Docker and BuildKit match them.
//!
//! Reading the file (Docker's `ignorefile.ReadAll`): a UTF-8 BOM is dropped,
//! every line is trimmed, lines *starting* with `#` are comments, blank lines
//! are skipped, a leading `!` makes an exception, and each pattern is cleaned
//! like Go's `filepath.Clean` with one leading `/` removed, so `/a`, `./a` and
//! `a/` all mean `a`.
//!
//! Matching (Docker's `patternmatcher`): patterns are Go `filepath.Match`
//! globs (`*` and `?` never cross `/`, `[...]` classes, `\` escapes) plus
//! `**`, which spans any number of directories. A pattern that matches a
//! parent directory matches everything below it. Patterns are tried in order
//! and the last one that matches wins, so `!keep.txt` after `*.txt` brings
//! `keep.txt` back.
//!
//! Docker keeps a few quirks of its matcher and so do we: a pattern starting
//! with `**` and otherwise literal (such as `**foo`) is a plain suffix test
//! (it matches `xfoo`), and one ending in `/**` is a plain prefix test.
//!
//! `Dockerfile` and `.dockerignore` get no special treatment: as in
//! BuildKit, the Dockerfile is read separately, and if `.dockerignore` lists
//! them, `COPY` cannot copy them.

use std::fmt;

/// An error in a `.dockerignore` pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line that is only `!`.
    #[error("line {line}: illegal exclusion pattern: \"!\"")]
    BareExclamation {
        /// 1-based line number in `.dockerignore`.
        line: usize,
    },
    /// A malformed glob (an unclosed `[`, an empty class, a trailing `\`).
    #[error("line {line}: syntax error in pattern {pattern:?}: {why}")]
    BadPattern {
        /// 1-based line number (or index for patterns given as a list).
        line: usize,
        /// The pattern as written, after cleaning.
        pattern: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// A compiled list of `.dockerignore` patterns.
#[derive(Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl fmt::Debug for IgnoreMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self
            .patterns
            .iter()
            .map(|p| {
                if p.exclusion {
                    format!("!{}", p.text)
                } else {
                    p.text.clone()
                }
            })
            .collect();
        f.debug_struct("IgnoreMatcher")
            .field("patterns", &texts)
            .finish()
    }
}

impl IgnoreMatcher {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            lines.push((i + 1, line));
        }
        Self::build(lines)
    }

    /// Compiles a list of patterns, one per entry, with the same syntax as
    /// the lines of `.dockerignore` (used for `COPY --exclude`).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        let lines = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.as_ref().trim()))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        Self::build(lines)
    }

    fn build(lines: Vec<(usize, &str)>) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::with_capacity(lines.len());
        for (line, text) in lines {
            let (exclusion, body) = match text.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, text),
            };
            if exclusion && body.is_empty() {
                return Err(IgnoreError::BareExclamation { line });
            }
            let mut cleaned = clean_path(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let tokens = compile(&cleaned).map_err(|why| IgnoreError::BadPattern {
                line,
                pattern: cleaned.clone(),
                why,
            })?;
            patterns.push(Pattern::new(cleaned, exclusion, tokens));
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// True when there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern starts with `!`: then an ignored directory may
    /// still contain files that are not ignored, and walkers must descend.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// ignored. `is_dir` is accepted for API symmetry with gitignore-style
    /// matchers; Docker's rules do not depend on it (a trailing `/` in a
    /// pattern is cleaned away).
    pub fn matches(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        if self.patterns.is_empty() {
            return false;
        }
        let path = clean_path(rel_path);
        let path = path.trim_start_matches('/');
        // Parent directories, outermost first: "a", "a/b" for "a/b/c".
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // Once matched only an exception can change the answer, and
            // before that only an inclusion can.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(path) || parents.iter().any(|p| pattern.matches(p));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

/// How a pattern is tested, mirroring Docker's matcher so its quirks carry over.
#[derive(Clone, Debug, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Glob,
}

#[derive(Clone)]
struct Pattern {
    text: String,
    exclusion: bool,
    kind: MatchType,
    tokens: Vec<Token>,
}

impl Pattern {
    fn new(text: String, exclusion: bool, compiled: (MatchType, Vec<Token>)) -> Self {
        Pattern {
            text,
            exclusion,
            kind: compiled.0,
            tokens: compiled.1,
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchType::Exact => path == self.text,
            MatchType::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchType::Glob => glob_match(&self.tokens, path),
        }
    }
}

/// One element of a compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    /// A literal character.
    Lit(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `?`: one character other than `/`.
    Any,
    /// `**/` or an inner `**`: nothing, or anything ending in `/`.
    Dirs,
    /// A trailing `**`: anything at all.
    Rest,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Compiles a cleaned `.dockerignore` pattern into tokens and the match type
/// Docker would pick for it.
fn compile(pattern: &str) -> Result<(MatchType, Vec<Token>), &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut kind = MatchType::Exact;
    let mut i = 0;
    while i < chars.len() {
        let first = i == 0;
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        kind = MatchType::Glob;
                    }
                    tokens.push(Token::Rest);
                } else {
                    kind = MatchType::Glob;
                    tokens.push(Token::Dirs);
                }
                if first {
                    kind = MatchType::Suffix;
                }
            }
            '*' => {
                kind = MatchType::Glob;
                tokens.push(Token::Star);
            }
            '?' => {
                kind = MatchType::Glob;
                tokens.push(Token::Any);
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    kind = MatchType::Glob;
                    tokens.push(Token::Lit(next));
                }
                None => return Err("trailing backslash"),
            },
            '[' => {
                kind = MatchType::Glob;
                let (token, next) = parse_class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            ']' => {
                kind = MatchType::Glob;
                tokens.push(Token::Lit(']'));
            }
            other => tokens.push(Token::Lit(other)),
        }
    }
    Ok((kind, tokens))
}

/// Parses a `[...]` class starting just after the `[`; returns the token and
/// the index after the closing `]`.
pub(crate) fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize), &'static str> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let c = match chars.get(i) {
            None => return Err("unclosed character class"),
            Some(&']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1))
            }
            Some(&c) => c,
        };
        let (lo, next) = class_char(chars, i, c)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let c = *chars.get(i + 1).ok_or("unclosed character class")?;
            let (h, next) = class_char(chars, i + 1, c)?;
            hi = h;
            i = next;
            if hi < lo {
                return Err("character range is reversed");
            }
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize, c: char) -> Result<(char, usize), &'static str> {
    match c {
        '\\' => chars
            .get(i + 1)
            .map(|&n| (n, i + 2))
            .ok_or("unclosed character class"),
        '-' | ']' => Err("empty or misplaced range in character class"),
        other => Ok((other, i + 1)),
    }
}

/// Whole-string glob match by dynamic programming over (token, char), so
/// many stars cannot make it exponential.
pub(crate) fn glob_match(tokens: &[Token], text: &str) -> bool {
    let s: Vec<char> = text.chars().collect();
    let n = s.len();
    // reach[j]: the tokens so far can consume exactly s[..j].
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match token {
            Token::Lit(c) => {
                for j in 0..n {
                    if reach[j] && s[j] == *c {
                        next[j + 1] = true;
                    }
                }
            }
            Token::Any => {
                for j in 0..n {
                    if reach[j] && s[j] != '/' {
                        next[j + 1] = true;
                    }
                }
            }
            Token::Class { negated, ranges } => {
                for j in 0..n {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= s[j] && s[j] <= hi);
                    if reach[j] && inside != *negated {
                        next[j + 1] = true;
                    }
                }
            }
            Token::Star => {
                for j in 0..=n {
                    if reach[j] || (j > 0 && next[j - 1] && s[j - 1] != '/') {
                        next[j] = true;
                    }
                }
            }
            Token::Rest => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    next[first..].iter_mut().for_each(|x| *x = true);
                }
            }
            Token::Dirs => {
                // Empty, or any string whose last character is '/'.
                let mut seen = false;
                for j in 0..=n {
                    if reach[j] {
                        next[j] = true;
                    }
                    if j > 0 && seen && s[j - 1] == '/' {
                        next[j] = true;
                    }
                    seen |= reach[j];
                }
            }
        }
        reach = next;
    }
    reach[n]
}

/// Lexical cleaning like Go's `filepath.Clean`: collapses `//`, removes `.`
/// components and resolves `..` against earlier components (a rooted path
/// cannot go above `/`). The empty path becomes `.`.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_like_go() {
        for (input, want) in [
            ("", "."),
            ("a/b/", "a/b"),
            ("./a", "a"),
            ("/a//b/./c/..", "/a/b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }

    #[test]
    fn patterns_table() {
        // (patterns, path, ignored)
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", "dir/a.txt", false),
            ("*/*.txt", "dir/a.txt", true),
            ("**/*.txt", "dir/sub/a.txt", true),
            ("**/*.txt", "a.txt", true),
            ("dir", "dir/sub/a.txt", true),
            ("/dir/", "dir/x", true),
            ("./dir", "dir", true),
            ("dir/**", "dir/x/y", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("**foo", "xfoo", true),
            ("**/foo", "foo", true),
            ("**/foo", "a/b/foo", true),
            ("**/foo", "a/bfoo", false),
            ("?.md", "a.md", true),
            ("?.md", "ab.md", false),
            ("[a-c].go", "b.go", true),
            ("[^a-c].go", "b.go", false),
            ("[^a-c].go", "d.go", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a]", "a]", true),
            ("*.txt\n!keep.txt", "keep.txt", false),
            ("*.txt\n!keep.txt", "other.txt", true),
            ("*.txt\n!keep.txt\nkeep*", "keep.txt", true),
            ("dir\n!dir/keep", "dir/keep", false),
            ("dir\n!dir/keep", "dir/other", true),
            ("# comment\n\n  *.log  ", "x.log", true),
            ("#*.log", "x.log", false),
            ("Dockerfile", "Dockerfile", true),
            ("*", ".hidden", true),
            ("**", "anything/at/all", true),
        ];
        for (patterns, path, want) in cases {
            let m = IgnoreMatcher::parse(patterns).unwrap();
            assert_eq!(m.matches(path, false), *want, "{patterns:?} vs {path:?}");
        }
    }

    #[test]
    fn bad_patterns_are_errors() {
        for text in ["!", "[a", "[]", "a\\", "[z-a]"] {
            assert!(IgnoreMatcher::parse(text).is_err(), "{text:?}");
        }
        let err = IgnoreMatcher::parse("ok\n[a").unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
    }

    #[test]
    fn bom_is_dropped() {
        let m = IgnoreMatcher::parse("\u{feff}a.txt").unwrap();
        assert!(m.matches("a.txt", false));
    }
}
