//! The keyword and the leading `--flag` words of an instruction.

use super::words::split2_ascii_space;
use super::Input;

/// An instruction line cut into its parts, all borrowed from the line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Command<'a> {
    /// The keyword as written.
    pub keyword: Input<'a>,
    /// `--flag` words, quotes and escapes removed, `--` dropped.
    pub flags: Vec<String>,
    /// The arguments after the flags, trimmed.
    pub rest: Input<'a>,
}

// command = { space } keyword [ ascii-space+ flags rest ] { space }
pub(crate) fn split_command(line: Input<'_>, escape: char) -> Command<'_> {
    let (keyword, after) = split2_ascii_space(line.trim());
    let (flags, rest) = match after {
        Some(after) => extract_flags(after, escape),
        None => (Vec::new(), ""),
    };
    Command {
        keyword,
        flags,
        rest: rest.trim(),
    }
}

// flags = { space } { "--" flag-word space+ } [ "--" space+ ]
// flag-word = { escape any | "'" { escape any | any } "'" | '"' { escape any | any } '"' | any-but-space }
//
// Stops at the first word that does not start with `--`, and returns the
// flags and the text from that word on. BuildKit walks bytes here, turning
// non-ASCII text into Latin-1 mojibake; we walk characters instead so that
// `--from=é` means what it says (a deliberate difference).
pub(crate) fn extract_flags(line: Input<'_>, escape: char) -> (Vec<String>, Input<'_>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    while let Some((pos, c)) = chars.next() {
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            if !line[pos..].starts_with("--") {
                return (words, &line[pos..]);
            }
            if word.capacity() == 0 {
                // No flag is longer than the rest of the line: one buffer.
                word.reserve(line.len() - pos);
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if c.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, &line[pos..]);
                    }
                    if blank_ok || !word.is_empty() {
                        // Copy out (exact size) and keep the grown buffer.
                        words.push(word.as_str().to_owned());
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                    continue;
                }
                if c == escape {
                    match chars.next() {
                        None => continue,
                        Some((_, next)) => word.push(next),
                    }
                    continue;
                }
                word.push(c);
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                    continue;
                }
                if c == escape {
                    match chars.next() {
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                        Some((_, next)) => word.push(next),
                    }
                    continue;
                }
                word.push(c);
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (words, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_table() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            ("RUN echo hi", "RUN", &[], "echo hi"),
            (
                "  copy\t--from=a  --chown=\"b c\" x y ",
                "copy",
                &["--from=a", "--chown=b c"],
                "x y",
            ),
            ("COPY --a -- --b c", "COPY", &["--a"], "--b c"),
            ("CMD --doit -- [ ]", "CMD", &["--doit"], "[ ]"),
            ("COPY --", "COPY", &[], ""),
            ("COPY --x=\\\"y", "COPY", &["--x=\"y"], ""),
            ("RUN", "RUN", &[], ""),
            ("COPY --from=\u{e9} a b", "COPY", &["--from=\u{e9}"], "a b"),
            ("X -- y", "X", &[], "y"),
        ];
        for (line, kw, flags, rest) in cases {
            let c = split_command(line, '\\');
            let want: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
            assert_eq!((c.keyword, c.flags, c.rest), (*kw, want, *rest), "{line:?}");
        }
    }
}
