//! Table-driven unit tests for the tricky corners; the full BuildKit
//! vectors run in `tests/it/shell.rs`.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strs(got: &Result<Vec<String>, ExpandError>) -> Result<Vec<&str>, &ExpandError> {
    got.as_ref().map(|w| w.iter().map(String::as_str).collect())
}

fn word(input: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
    ShellLex::new('\\').process_word(input, &env(pairs))
}

#[test]
fn single_words() {
    let vars = [
        ("A", "x y"),
        ("E", ""),
        ("P", "/a/b.tar.gz"),
        ("NL", "a\nb"),
    ];
    let cases: &[(&str, &str)] = &[
        // escapes outside quotes
        ("a\\ b", "a b"),
        ("a\\", "a"),
        ("\\$A", "$A"),
        // double quotes keep unknown escapes
        ("\"a\\nb\"", "a\\nb"),
        ("\"a\\\"b\"", "a\"b"),
        ("\"\\$A\"", "$A"),
        ("'\\$A'", "\\$A"),
        // lone and odd dollars
        ("$", "$"),
        ("a$", "a$"),
        ("$/x", "$/x"),
        ("\"$\"", "$"),
        ("$A$", "x y$"),
        // name rules
        ("$A_1b", ""),
        ("${A}_1b", "x y_1b"),
        ("$12x", "x"),
        ("$@x", "x"),
        ("$$$A", "x y"),
        // set-but-empty versus unset
        ("${E-d}", ""),
        ("${E:-d}", "d"),
        ("${E+d}", "d"),
        ("${E:+d}", ""),
        ("${U-d}", "d"),
        ("${U+d}", ""),
        // nested words keep quotes and escapes processed
        ("${U:-'a}b'}", "a}b"),
        ("${U:-\"$A\"}", "x y"),
        ("${U:-a\\}b}", "a}b"),
        // patterns
        ("${P#*/}", "a/b.tar.gz"),
        ("${P##*/}", "b.tar.gz"),
        ("${P%.*}", "/a/b.tar"),
        ("${P%%.*}", "/a/b"),
        ("${P/a/z}", "/z/b.tar.gz"),
        ("${P//\\//_}", "_a_b.tar.gz"),
        ("${P/#/x}", "/a/b.tar.gz"),
        ("${U#x}", ""),
        ("${P#nomatch}", "/a/b.tar.gz"),
        // `*` and `?` do not cross newlines (Go's `.`)
        ("${NL#*}", "a\nb"),
        ("${NL##*}", "\nb"),
        ("${NL#a?}", "a\nb"),
        ("${NL/*/-}", "-\nb"),
        ("${NL//*/-}", "-\n-"),
        // Go's ReplaceAll template: `$0` (written `\$0`) is the match
        ("${P//a/<\\$0>}", "/<\\a>/b.t<\\a>r.gz"),
        ("${P/a/<\\$0>}", "/<\\$0>/b.tar.gz"),
        // empty matches: Go's ReplaceAll rules
        ("${E//*/x}", "x"),
        ("${A//*/-}", "-"),
        // heredoc marker text is unchanged in a single word
        ("a<< b", "a<< b"),
        // leading byte-order mark is dropped (Go's text/scanner)
        ("\u{feff}a", "a"),
        ("a\u{feff}", "a\u{feff}"),
        // non-ASCII names: letters and Nd digits only
        ("$A\u{00b2}", "x y\u{00b2}"),
        ("$\u{0663}x", "x"),
        ("${\u{d55c}\u{ad6d}:-k}", "k"),
    ];
    for (input, want) in cases {
        assert_eq!(word(input, &vars).as_deref(), Ok(*want), "input {input:?}");
    }
}

#[test]
fn errors() {
    let vars = [("E", ""), ("V", "v")];
    let cases: &[(&str, &str)] = &[
        ("${}", "bad substitution"),
        ("${:}", "bad substitution"),
        ("${{a}", "bad substitution"),
        ("${", "missing '}'"),
        ("${a", "missing '}'"),
        ("${a:", "missing '}'"),
        ("${a:-b", "missing '}'"),
        ("${V/a", "missing '/' in ${}"),
        ("${V/a/b", "missing '}'"),
        ("${a.}", "unsupported modifier (.) in substitution"),
        ("${a:=b}", "unsupported modifier (:=) in substitution"),
        ("${V:#a}", "unsupported modifier (:#) in substitution"),
        ("${U?}", "U: is not allowed to be unset"),
        ("${E:?}", "E: is not allowed to be empty"),
        ("${E:?say $V}", "E: say v"),
        ("'a", "matching single-quote"),
        ("\"a", "matching double-quote"),
        ("\"a\\", "matching double-quote"),
        (
            "${V#\\a}",
            "invalid pattern (\\a) in substitution: invalid escape",
        ),
        ("${V%a\\}", "missing '}'"),
        ("${V/a\\/}", "missing '/' in ${}"),
    ];
    for (input, want) in cases {
        let err = word(input, &vars).expect_err(input);
        assert!(
            err.message.contains(want),
            "input {input:?}: {:?} lacks {want:?}",
            err.message
        );
        assert!(err.message.starts_with("failed to process \""), "{err}");
    }
}

#[test]
fn words_split() {
    let vars = [("S", " a  b "), ("E", "")];
    let cases: &[(&str, &[&str])] = &[
        ("a b", &["a", "b"]),
        ("  a\t\nb  ", &["a", "b"]),
        ("x$S", &["x", "a", "b"]),
        ("\"$S\"", &[" a  b "]),
        ("a\\ b", &["a b"]),
        ("'' a", &["a"]),
        ("\"\"", &[]),
        ("$E", &[]),
        ("", &[]),
        // blanks right after `<<` stay in the word (BuildKit heredocs)
        ("cat << EOF", &["cat", "<< EOF"]),
        ("a < b", &["a", "<", "b"]),
        // BuildKit's shared word buffer: the unfinished word before a
        // nested `${V:-…}` is dropped; text after it stays.
        ("ab${U:-c}d e", &["cd", "e"]),
        ("a b${U:-}", &["a"]),
        ("x\"${U:-y}\"", &["y"]),
        ("x${S}y", &["x", "a", "b", "y"]),
    ];
    for (input, want) in cases {
        let got = ShellLex::default().process_words(input, &env(&vars));
        assert_eq!(strs(&got), Ok(want.to_vec()), "input {input:?}");
    }
}

#[test]
fn backtick_escape() {
    let lex = ShellLex::new('`');
    let vars = env(&[("V", "v")]);
    let cases: &[(&str, &str)] = &[
        ("a`$V", "a$V"),
        ("a\\$V", "a\\v"),
        ("\"`\"`$`x\"", "\"$`x"),
        ("\"\\$V\"", "\\v"),
        ("${U:-`}}", "}"),
    ];
    for (input, want) in cases {
        assert_eq!(
            lex.process_word(input, &vars).as_deref(),
            Ok(*want),
            "input {input:?}"
        );
    }
}

#[test]
fn options() {
    let none = EmptyEnv;
    let raw = ShellLex::default()
        .with_raw_quotes(true)
        .with_raw_escapes(true)
        .with_skip_unset_env(true);
    let cases: &[(&str, &[&str])] = &[
        ("'a b' \"c\"", &["'a b'", "\"c\""]),
        ("a\\ b", &["a\\ b"]),
        (
            "$X ${Y} ${Z:-d} ${W/p/r}",
            &["$X", "${Y}", "${Z:-d}", "${W/p/r}"],
        ),
        ("<<'EOF'", &["<<'EOF'"]),
    ];
    for (input, want) in cases {
        assert_eq!(
            strs(&raw.process_words(input, &none)),
            Ok(want.to_vec()),
            "input {input:?}"
        );
    }
    let plain = ShellLex::default().with_skip_process_quotes(true);
    assert_eq!(plain.process_word("'a\"", &none).as_deref(), Ok("'a\""));
}

/// BuildKit finds heredocs by splitting the line with raw quotes, raw
/// escapes and unset variables kept (vectors from heredoc_words.json).
#[test]
fn heredoc_detection_words() {
    let lex = ShellLex::default()
        .with_raw_quotes(true)
        .with_raw_escapes(true)
        .with_skip_unset_env(true);
    let cases: &[(&str, &[&str])] = &[
        ("RUN <<EOF", &["RUN", "<<EOF"]),
        ("RUN <<- EOF", &["RUN", "<<-", "EOF"]),
        ("RUN << -EOF", &["RUN", "<< -EOF"]),
        ("RUN <<'EOF'", &["RUN", "<<'EOF'"]),
        ("RUN 4<<EOF", &["RUN", "4<<EOF"]),
        ("RUN <<EOF <<EOF2", &["RUN", "<<EOF", "<<EOF2"]),
        ("RUN '<<EOF'", &["RUN", "'<<EOF'"]),
        ("RUN \"<<EOF\"", &["RUN", "\"<<EOF\""]),
        ("RUN cat $X<<\tEOF", &["RUN", "cat", "$X<<\tEOF"]),
    ];
    for (input, want) in cases {
        assert_eq!(
            strs(&lex.process_words(input, &EmptyEnv)),
            Ok(want.to_vec()),
            "input {input:?}"
        );
    }
}

/// Heredoc bodies are expanded as BuildKit does: escape `\` whatever the
/// file's escape directive, quotes left alone, escapes consumed.
#[test]
fn heredoc_body_expansion() {
    let lex = ShellLex::new('\\').with_skip_process_quotes(true);
    let vars = env(&[("V", "v")]);
    let got = lex.process_word("echo \"$V\" '${V}' a\\nb \\$V\n", &vars);
    assert_eq!(got.as_deref(), Ok("echo \"v\" 'v' anb $V\n"));
}

#[test]
fn matches_are_recorded() {
    let vars = env(&[("A", "1"), ("B", "")]);
    let got = ShellLex::default()
        .process_word_with_matches("$A ${B:-$C} ${D#$A} '$E' \"$F\"", &vars)
        .expect("expands");
    assert_eq!(got.value, "1   $E ");
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(got.matched, names(&["A", "B"]));
    assert_eq!(got.unmatched, names(&["C", "D", "F"]));
}

#[test]
fn references_are_recorded_in_source_order() {
    let vars = env(&[("A", "1")]);
    // Unset references stay as written, so `${E?}` does not fail.
    let got = ShellLex::default()
        .with_skip_unset_env(true)
        .process_word_with_matches("$A ${B:-$C} ${D#x} ${E?} $A $1", &vars)
        .expect("expands");
    let seen: Vec<(&str, bool, bool)> = got
        .references
        .iter()
        .map(|r| (r.name.as_str(), r.set, r.has_fallback))
        .collect();
    assert_eq!(
        seen,
        [
            ("A", true, false),
            ("B", false, true),
            ("C", false, false),
            ("D", false, false),
            ("E", false, true),
            ("A", true, false),
            ("1", false, false),
        ]
    );
    assert!(!got.references[6].is_definable() && got.references[0].is_definable());
}

#[test]
fn env_impls_agree() {
    let list = env(&[("K", "old"), ("K", "new")]);
    assert_eq!(list.lookup("K"), Some("new"));
    assert_eq!(list.as_slice().lookup("K"), Some("new"));
    let map: HashMap<String, String> = list.iter().cloned().collect();
    assert_eq!(map.lookup("K"), Some("new"));
    let tree: BTreeMap<String, String> = list.iter().cloned().collect();
    assert_eq!(tree.lookup("K"), Some("new"));
    assert_eq!(tree.lookup("k"), None);
    assert_eq!(EmptyEnv.lookup("K"), None);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "${a:-".repeat(100_000) + &"}".repeat(100_000);
    let err = word(&deep, &[]).expect_err("too deep");
    assert!(err.message.contains("nested"), "{err}");
    let ok = "${a:-".repeat(50) + "x" + &"}".repeat(50);
    assert_eq!(word(&ok, &[]).as_deref(), Ok("x"));
    let quoted = "\"${a:-".repeat(100_000);
    assert!(word(&quoted, &[]).is_err());
}

#[test]
fn pattern_match_is_not_exponential() {
    let value = "a".repeat(2000);
    let input = format!("${{V#{}b}}", "*a".repeat(200));
    assert_eq!(
        word(&input, &[("V", &value)]).as_deref(),
        Ok(value.as_str())
    );
    let input = format!("${{V//{}b/x}}", "*a".repeat(50));
    assert_eq!(
        word(&input, &[("V", &value)]).as_deref(),
        Ok(value.as_str())
    );
}

#[test]
fn name_classes_follow_go() {
    use super::unicode::{is_digit, is_letter};
    for c in [
        'a', 'Z', '\u{aa}', '\u{b5}', '\u{d55c}', '\u{3042}', '\u{4e00}',
    ] {
        assert!(is_letter(c), "{c:?} is a letter");
    }
    // vowel sign, Roman numeral, circled letter, digit, underscore
    for c in ['\u{947}', '\u{216b}', '\u{24b6}', '1', '_', ' ', '\u{b2}'] {
        assert!(!is_letter(c), "{c:?} is not a letter");
    }
    for c in ['0', '9', '\u{663}', '\u{ff11}', '\u{1d7ce}'] {
        assert!(is_digit(c), "{c:?} is a digit");
    }
    for c in ['\u{b2}', '\u{bd}', '\u{216b}', 'a', '\u{2460}'] {
        assert!(!is_digit(c), "{c:?} is not a digit");
    }
}

#[test]
fn tables_are_sorted_and_disjoint() {
    for table in [
        super::unicode::ALPHABETIC_NON_LETTERS,
        super::unicode::NUMERIC_NON_DIGITS,
    ] {
        for pair in table.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
    }
}
