//! Word splitting used while building nodes (no expansion, no quote removal).

use super::Input;

// ascii-space = " " | "\t" | "\v" | "\f" | "\r"      -- BuildKit's `[\t\v\f\r ]+`
pub(crate) fn is_ascii_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

// fields = field { ascii-space+ field }
/// Splits `s` on runs of `[ \t\v\f\r]`, like BuildKit's `reWhitespace.Split(s, -1)`.
/// Leading or trailing runs give empty fields, as in Go.
pub(crate) fn split_ascii_space(s: Input<'_>) -> impl Iterator<Item = Input<'_>> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let cur = rest?;
        match cur.find(is_ascii_space) {
            Some(i) => {
                let after = cur[i..].trim_start_matches(is_ascii_space);
                rest = Some(after);
                Some(&cur[..i])
            }
            None => {
                rest = None;
                Some(cur)
            }
        }
    })
}

// split2 = field [ ascii-space+ rest ]
/// Splits off the first field: `reWhitespace.Split(s, 2)`.
pub(crate) fn split2_ascii_space(s: Input<'_>) -> (Input<'_>, Option<Input<'_>>) {
    match s.find(is_ascii_space) {
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_ascii_space))),
        None => (s, None),
    }
}

// words  = { space } [ word { space+ word } ] { space }
// word   = { escape any | quoted | any-but-space }
// quoted = "'" { any } "'" | '"' { escape any | any } '"'
//
/// Splits `s` into words at unquoted Unicode whitespace, keeping quotes and
/// escape characters in the words (BuildKit's `parseWords`, used for `ARG`
/// and to tell `ENV`/`LABEL`'s two forms apart). An escape character at the
/// very end is dropped. An empty quoted word (`""`) is kept.
pub fn split_words(s: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    // Every character of a word is kept (only a lone escape at the very end
    // is dropped), so a word is the slice `start..end` of `s`: one exact
    // allocation per word instead of growing a buffer character by character.
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let (mut start, mut end) = (0, 0);
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            (start, end) = (i, i);
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if c.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || end > start {
                        words.push(s[start..end].to_string());
                    }
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                }
                if c == escape {
                    match chars.next() {
                        // A lone escape at the end is dropped.
                        None => continue,
                        Some((j, next)) => {
                            end = j + next.len_utf8();
                            continue;
                        }
                    }
                }
                end = i + c.len_utf8();
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                }
                if c == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                        Some((j, next)) => {
                            end = j + next.len_utf8();
                            continue;
                        }
                    }
                }
                end = i + c.len_utf8();
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || end > start) {
        words.push(s[start..end].to_string());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_words_table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  a  b ", &["a", "b"]),
            ("a\\ b", &["a\\ b"]),
            ("'a b' \"c d\"", &["'a b'", "\"c d\""]),
            ("\"\"", &["\"\""]),
            ("a\\", &["a"]),
            ("\"a\\\" b\" c", &["\"a\\\" b\"", "c"]),
            ("'a\\' b'", &["'a\\'", "b'"]),
            ("a\u{a0}b", &["a", "b"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_words(input, '\\'), *want, "{input:?}");
        }
    }

    #[test]
    fn ascii_split_table() {
        let got: Vec<_> = split_ascii_space("a \t b\x0bc").collect();
        assert_eq!(got, vec!["a", "b", "c"]);
        let got: Vec<_> = split_ascii_space("a\u{a0}b c").collect();
        assert_eq!(got, vec!["a\u{a0}b", "c"]);
        assert_eq!(split2_ascii_space("ENV  a b"), ("ENV", Some("a b")));
        assert_eq!(split2_ascii_space("ENV"), ("ENV", None));
    }
}
