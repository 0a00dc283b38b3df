//! BuildKit shell-word conformance (§4, §5, §6.9 of
//! `tests/conformance/README.md`): every vector must pass.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use proptest::prelude::*;
use rbk_compiler::parse::expand::{Env, ShellLex};
use serde_json::Value;

/// The repository's `tests/` folder. Missing data is a failure, never a
/// skip.
fn tests() -> PathBuf {
    let dir = super::tests_dir();
    assert!(
        dir.join("conformance").is_dir(),
        "conformance data not found under {}",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> String {
    let path = tests().join("conformance/buildkit").join(rel);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Prints the count line and every failure, then fails if there was one.
fn report(name: &str, total: usize, failures: &[String]) {
    for failure in failures {
        eprintln!("FAIL {name}: {failure}");
    }
    let passed = total - failures.len();
    println!("{name}: {passed}/{total} passed");
    assert!(failures.is_empty(), "{name}: {} failed", failures.len());
}

#[test]
fn env_var_test() {
    let text = read("frontend/dockerfile/shell/envVarTest");
    let env = pairs(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    let lex = ShellLex::new('\\');
    let (mut total, mut skipped_windows) = (0, 0);
    let mut failures = Vec::new();
    for (n, raw) in text.split_terminator('\n').enumerate() {
        let line_no = n + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            panic!("envVarTest:{line_no}: expected 3 fields in {raw:?}");
        };
        match platform {
            "A" | "U" => {}
            "W" => {
                skipped_windows += 1;
                continue;
            }
            other => panic!("envVarTest:{line_no}: unknown platform {other:?}"),
        }
        total += 1;
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => e != "error" && v == e,
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "line {line_no}: {input:?}: want {expected:?}, got {got:?}"
            ));
        }
    }
    assert_eq!(skipped_windows, 2, "envVarTest should have 2 W lines");
    assert_eq!(total, 228, "envVarTest should have 228 A/U lines");
    report("envVarTest", total, &failures);
}

#[test]
fn words_test() {
    let text = read("frontend/dockerfile/shell/wordsTest");
    let lex = ShellLex::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut total, mut env_lines) = (0, 0);
    let mut failures = Vec::new();
    for (n, line) in text.split_terminator('\n').enumerate() {
        let line_no = n + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            // The value keeps its trailing spaces.
            let def = def.trim_start_matches(' ');
            let (name, value) = def
                .split_once('=')
                .unwrap_or_else(|| panic!("wordsTest:{line_no}: ENV without '=': {line:?}"));
            env.retain(|(k, _)| k != name);
            env.push((name.to_string(), value.to_string()));
            env_lines += 1;
            continue;
        }
        let (input, expected) = line
            .split_once('|')
            .filter(|(_, right)| !right.contains('|'))
            .unwrap_or_else(|| panic!("wordsTest:{line_no}: want exactly one '|': {line:?}"));
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        total += 1;
        let got = match lex.process_words(input, &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!(
                "line {line_no}: {input:?}: want {expected:?}, got {got:?}"
            ));
        }
    }
    assert_eq!(env_lines, 4, "wordsTest should have 4 ENV lines");
    assert_eq!(total, 24, "wordsTest should have 24 test lines");
    report("wordsTest", total, &failures);
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: bad JSON: {e}"))
}

fn str_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one §6.9 file; `with_sets` also checks `matched`/`unmatched`.
fn json_cases(rel: &str, name: &str, want_total: usize, with_sets: bool) {
    let doc = json(rel);
    let escape = doc["escape"]
        .as_str()
        .and_then(|s| s.chars().next())
        .unwrap_or('\\');
    let lex = ShellLex::new(escape);
    let cases = doc["cases"].as_array().expect("cases array");
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let input = case["input"].as_str().expect("input");
        let env: HashMap<String, String> = case["envs"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let got = lex.process_word_with_matches(input, &env as &dyn Env);
        let label = format!("case {i}: {input:?} with {env:?}");
        if case["error"].as_bool() == Some(true) {
            match &got {
                Err(e) => {
                    if let Some(want) = case["error_contains"].as_str() {
                        if !e.message.contains(want) {
                            failures.push(format!("{label}: error {e} lacks {want:?}"));
                        }
                    }
                }
                Ok(v) => failures.push(format!("{label}: want an error, got {v:?}")),
            }
            continue;
        }
        let Ok(got) = got else {
            failures.push(format!("{label}: unexpected {got:?}"));
            continue;
        };
        let want = case["expected"].as_str().expect("expected");
        if got.value != want {
            failures.push(format!("{label}: want {want:?}, got {:?}", got.value));
        }
        if with_sets {
            let (matched, unmatched) = (str_set(&case["matched"]), str_set(&case["unmatched"]));
            if got.matched != matched || got.unmatched != unmatched {
                failures.push(format!(
                    "{label}: want matched {matched:?} unmatched {unmatched:?}, got {:?} {:?}",
                    got.matched, got.unmatched
                ));
            }
        }
    }
    assert_eq!(
        cases.len(),
        want_total,
        "{rel} should have {want_total} cases"
    );
    report(name, cases.len(), &failures);
}

#[test]
fn process_with_matches_json() {
    json_cases(
        "extracted/shell/process_with_matches.json",
        "process_with_matches",
        47,
        true,
    );
}

#[test]
fn process_word_extra_json() {
    json_cases(
        "extracted/shell/process_word_extra.json",
        "process_word_extra",
        9,
        false,
    );
}

/// Pieces the lexer treats specially, plus a few plain and odd characters.
const PIECES: &[&str] = &[
    "$", "${", "}", "{", ":", "-", "+", "?", "#", "%", "/", "*", "'", "\"", "\\", "`", "<", " ",
    "\n", "A", "B", "x", "1", "@", "한", "\u{feff}", "\u{947}",
];

/// Inputs made mostly of the characters the lexer treats specially.
fn tricky() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PIECES), 0..48)
        .prop_map(|parts| parts.concat())
}

fn never_panics(input: &str) {
    let env = pairs(&[("A", "a b*"), ("B", ""), ("x", "\\*/")]);
    for escape in ['\\', '`'] {
        let lex = ShellLex::new(escape);
        let word = lex.process_word(input, &env);
        let words = lex.process_words(input, &env);
        let matches = lex.process_word_with_matches(input, &env);
        // One lexer behind all three entry points: same outcome.
        assert_eq!(word.is_ok(), words.is_ok(), "{input:?}");
        assert_eq!(
            word.as_ref().ok(),
            matches.as_ref().ok().map(|m| &m.value),
            "{input:?}"
        );
        let raw = lex
            .with_raw_quotes(true)
            .with_raw_escapes(true)
            .with_skip_unset_env(true);
        let _ = raw.process_words(input, &env);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_input_never_panics(input in tricky()) {
        never_panics(&input);
    }

    #[test]
    fn arbitrary_unicode_never_panics(input in any::<String>()) {
        never_panics(&input);
    }
}
