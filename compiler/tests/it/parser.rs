//! BuildKit parser conformance (§1–§3, §6.1–§6.8 of
//! `tests/conformance/README.md`), plus never-panic property tests.
//!
//! Missing data is a failure, never a skip.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use rbk_compiler::parse::{
    chomp, detect_syntax, dump, heredocs_from_line, parse, parse_all, parse_bytes, parse_directive,
    parse_heredoc, parse_json_array, split_words, JsonForm,
};
use serde_json::Value;

/// `tests/conformance/buildkit`, or a loud failure.
fn data_dir() -> PathBuf {
    let dir = super::tests_dir().join("conformance/buildkit");
    assert!(
        dir.join("frontend/dockerfile/parser/testfiles").is_dir(),
        "BuildKit conformance data not found at {}",
        dir.display()
    );
    dir
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn json(name: &str) -> Value {
    let path = data_dir().join("extracted/parser").join(name);
    serde_json::from_slice(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

/// Collects named case results so one run reports every failure.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn check(&mut self, name: impl Into<String>, result: Result<(), String>) {
        match result {
            Ok(()) => self.passed += 1,
            Err(why) => self.failed.push(format!("{}: {why}", name.into())),
        }
    }

    fn finish(self, what: &str) {
        let total = self.passed + self.failed.len();
        for f in &self.failed {
            eprintln!("FAILED {f}");
        }
        println!("{what}: {}/{total} cases passed", self.passed);
        eprintln!("{what}: {}/{total} cases passed", self.passed);
        assert!(total > 0, "{what}: no cases found");
        assert!(
            self.failed.is_empty(),
            "{what}: {} case(s) failed",
            self.failed.len()
        );
    }
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// §1: dump of every testfiles case, byte for byte.
fn dump_cases(t: &mut Tally) {
    let root = data_dir().join("frontend/dockerfile/parser/testfiles");
    let dirs = sorted_dirs(&root);
    assert_eq!(
        dirs.len(),
        33,
        "expected 33 testfiles cases in {}",
        root.display()
    );
    for dir in dirs {
        let src = read(&dir.join("Dockerfile"));
        let want = String::from_utf8_lossy(&read(&dir.join("result"))).replace("\r\n", "\n");
        let result = match parse_bytes(&src) {
            Err(e) => Err(format!("parse failed: {e}")),
            Ok(df) => {
                let got = dump(&df);
                if got == want {
                    Ok(())
                } else {
                    Err(format!("dump differs\n--- want\n{want}--- got\n{got}"))
                }
            }
        };
        t.check(format!("testfiles/{}", name_of(&dir)), result);
    }
}

// §2: must-fail cases.
fn negative_cases(t: &mut Tally) {
    let root = data_dir().join("frontend/dockerfile/parser/testfiles-negative");
    let dirs = sorted_dirs(&root);
    assert_eq!(
        dirs.len(),
        4,
        "expected 4 negative cases in {}",
        root.display()
    );
    for dir in dirs {
        let src = read(&dir.join("Dockerfile"));
        let result = match parse_bytes(&src) {
            Ok(df) => Err(format!("parsed, but must fail:\n{}", dump(&df))),
            Err(_) => Ok(()),
        };
        t.check(format!("testfiles-negative/{}", name_of(&dir)), result);
    }
}

// §3: line numbers.
fn line_cases(t: &mut Tally) {
    let path = data_dir().join("frontend/dockerfile/parser/testfile-line/Dockerfile");
    let want = json("line_numbers.json");
    let result = parse_bytes(&read(&path))
        .map_err(|e| e.to_string())
        .and_then(|df| {
            let got: Vec<(u64, u64)> = df
                .nodes
                .iter()
                .map(|n| (u64::from(n.start_line), u64::from(n.end_line)))
                .collect();
            let expected: Vec<(u64, u64)> = arr(&want["children"])
                .iter()
                .map(|c| {
                    (
                        c["start_line"].as_u64().unwrap_or(0),
                        c["end_line"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            let root = (
                got.first().map_or(0, |g| g.0),
                got.last().map_or(0, |g| g.1),
            );
            let want_root = (
                want["root"]["start_line"].as_u64().unwrap_or(0),
                want["root"]["end_line"].as_u64().unwrap_or(0),
            );
            if got == expected && root == want_root {
                Ok(())
            } else {
                Err(format!(
                    "lines {got:?} (root {root:?}), want {expected:?} (root {want_root:?})"
                ))
            }
        });
    t.check("testfile-line", result);
}

fn heredoc_json(h: &rbk_compiler::Heredoc) -> Value {
    serde_json::json!({
        "Name": h.name,
        "FileDescriptor": h.file_descriptor,
        "Expand": h.expand,
        "Chomp": h.chomp,
        "Content": h.content,
    })
}

// §6.1, §6.2: heredocs attached to instructions.
fn heredoc_extract_cases(t: &mut Tally, file: &str) {
    let v = json(file);
    let df = match parse(s(&v["dockerfile"])) {
        Ok(df) => df,
        Err(e) => {
            t.check(file, Err(format!("parse failed: {e}")));
            return;
        }
    };
    for case in arr(&v["expected"]) {
        let idx = case["child_index"].as_u64().unwrap_or(0) as usize;
        let want: Vec<Value> = case["heredocs"].as_array().cloned().unwrap_or_default();
        let result = match df.nodes.get(idx) {
            None => Err(format!("no instruction {idx}")),
            Some(n) => {
                let got: Vec<Value> = n.heredocs.iter().map(heredoc_json).collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!(
                        "heredocs {got:?}, want {want:?} (line {:?})",
                        n.original
                    ))
                }
            }
        };
        t.check(format!("{file}[{idx}]"), result);
    }
}

// §6.3: heredoc helpers.
fn heredoc_word_cases(t: &mut Tally) {
    let v = json("heredoc_words.json");
    let ph = &v["parse_heredoc"];
    for w in arr(&ph["valid_name_EOF"]) {
        let r = match parse_heredoc(s(w)) {
            Ok(Some(h)) if h.name == "EOF" => Ok(()),
            other => Err(format!("{other:?}")),
        };
        t.check(format!("parse_heredoc valid {w}"), r);
    }
    for w in arr(&ph["error"]) {
        let r = match parse_heredoc(s(w)) {
            Err(_) => Ok(()),
            other => Err(format!("{other:?}, want an error")),
        };
        t.check(format!("parse_heredoc error {w}"), r);
    }
    for w in arr(&ph["not_heredoc"]) {
        let r = match parse_heredoc(s(w)) {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}, want no heredoc")),
        };
        t.check(format!("parse_heredoc not_heredoc {w}"), r);
    }
    for case in arr(&v["heredocs_from_line"]) {
        // The known-bad upstream vector carries BuildKit's real answer.
        let want_v = case
            .get("buildkit_actual_names")
            .unwrap_or(&case["heredoc_names"]);
        let want: Vec<&str> = arr(want_v).iter().map(s).collect();
        let line = s(&case["line"]);
        let r = match heredocs_from_line(line) {
            Ok(docs) => {
                let got: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}, want {want:?}"))
                }
            }
            Err(e) => Err(e.to_string()),
        };
        t.check(format!("heredocs_from_line {line:?}"), r);
    }
    for case in arr(&v["chomp"]) {
        let got = chomp(s(&case["input"]));
        let want = s(&case["expected"]);
        let r = if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}, want {want:?}"))
        };
        t.check(format!("chomp {:?}", s(&case["input"])), r);
    }
}

// §6.4: quote-preserving word splitter.
fn parse_words_cases(t: &mut Tally) {
    let v = json("parse_words.json");
    let escape = s(&v["escape"]).chars().next().unwrap_or('\\');
    for case in arr(&v["cases"]) {
        let input = s(&case["input"]);
        let want: Vec<&str> = arr(&case["expected"]).iter().map(s).collect();
        let got = split_words(input, escape);
        let r = if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}, want {want:?}"))
        };
        t.check(format!("parse_words {input:?}"), r);
    }
}

// §6.5: JSON arrays.
fn json_array_cases(t: &mut Tally) {
    let v = json("json_arrays.json");
    for case in arr(&v["valid"]) {
        let input = s(&case["input"]);
        let want: Vec<String> = arr(&case["expected"])
            .iter()
            .map(|x| s(x).to_string())
            .collect();
        let r = match parse_json_array(input) {
            JsonForm::Strings(got) if got == want => Ok(()),
            other => Err(format!("{other:?}, want {want:?}")),
        };
        t.check(format!("json valid {input:?}"), r);
    }
    for case in arr(&v["invalid_not_string_array"]) {
        let input = s(case);
        let direct = matches!(parse_json_array(input), JsonForm::NotStringArray(_));
        let through_parser = parse(&format!("CMD {input}\n"));
        let r = match (direct, through_parser) {
            (true, Err(e)) if e.message.contains("strings only") => Ok(()),
            (d, p) => Err(format!("direct={d}, parse={p:?}")),
        };
        t.check(format!("json not-string {input:?}"), r);
    }
}

fn opt_u64(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

// §6.6: directives.
fn directive_cases(t: &mut Tally) {
    let v = json("directives.json");
    for case in arr(&v["parse_all"]) {
        let input = s(&case["input"]);
        let want: Vec<(String, String)> = arr(&case["expected"])
            .iter()
            .map(|d| (s(&d["name"]).to_string(), s(&d["value"]).to_string()))
            .collect();
        let r = match parse_all(input) {
            Ok(ds) => {
                let got: Vec<(String, String)> =
                    ds.into_iter().map(|d| (d.name, d.value)).collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}, want {want:?}"))
                }
            }
            Err(e) => Err(e.to_string()),
        };
        t.check(format!("parse_all {input:?}"), r);
    }
    for (key, list, any) in [
        ("syntax", "detect_syntax", true),
        ("check", "parse_directive_check", false),
    ] {
        for case in arr(&v[list]) {
            let mut input = Vec::new();
            if case["prepend_utf8_bom"].as_bool() == Some(true) {
                input.extend_from_slice(b"\xEF\xBB\xBF");
            }
            input.extend_from_slice(s(&case["input"]).as_bytes());
            let found = if any {
                detect_syntax(&input)
            } else {
                parse_directive(key, &input)
            };
            let ok = case["ok"].as_bool().unwrap_or(false);
            let mut problems = Vec::new();
            if found.is_some() != ok {
                problems.push(format!("found {found:?}, want ok={ok}"));
            }
            if let Some(want) = case.get("ref").and_then(Value::as_str) {
                let got = found.as_ref().map_or("", |f| f.reference.as_str());
                if got != want {
                    problems.push(format!("ref {got:?}, want {want:?}"));
                }
            }
            if let Some(want) = case.get("cmdline").and_then(Value::as_str) {
                let got = found.as_ref().map_or("", |f| f.cmdline.as_str());
                if got != want {
                    problems.push(format!("cmdline {got:?}, want {want:?}"));
                }
            }
            if let Some(want) = opt_u64(case, "line") {
                let got = found.as_ref().map_or(0, |f| u64::from(f.line));
                if got != want {
                    problems.push(format!("line {got}, want {want}"));
                }
            }
            let r = if problems.is_empty() {
                Ok(())
            } else {
                Err(problems.join("; "))
            };
            t.check(format!("{list} {:?}", s(&case["input"])), r);
        }
    }
}

// §6.7: empty continuation warnings.
fn warning_cases(t: &mut Tally) {
    let v = json("empty_continuation_warnings.json");
    let r = parse(s(&v["dockerfile"]))
        .map_err(|e| e.to_string())
        .and_then(|df| {
            let want_count = v["expected_warning_count"].as_u64().unwrap_or(0) as usize;
            if df.warnings.len() != want_count {
                return Err(format!(
                    "{} warnings, want {want_count}: {:?}",
                    df.warnings.len(),
                    df.warnings
                ));
            }
            for (w, subs) in df
                .warnings
                .iter()
                .zip(arr(&v["expected_warnings_short_contains"]))
            {
                for sub in arr(subs) {
                    if !w.message.contains(s(sub)) {
                        return Err(format!("warning {:?} lacks {sub}", w.message));
                    }
                }
            }
            let detail = s(&v["expected_warning0_detail0_contains"]);
            if !df.warnings[0].message.contains(detail) {
                return Err(format!(
                    "warning {:?} lacks {detail:?}",
                    df.warnings[0].message
                ));
            }
            Ok(())
        });
    t.check("empty_continuation_warnings", r);
}

// §6.8: 64 KiB line limit.
fn scanner_error_cases(t: &mut Tally) {
    let v = json("scanner_error.json");
    let count = v["repeat_count"].as_u64().unwrap_or(0) as usize;
    let src = format!(
        "{}{}{}",
        s(&v["dockerfile_prefix"]),
        s(&v["repeat_char"]).repeat(count),
        s(&v["dockerfile_suffix"])
    );
    let want = s(&v["error_equals"]);
    let r = match parse(&src) {
        Err(e) if e.message == want => Ok(()),
        other => Err(format!(
            "{:?}, want error {want:?}",
            other.map(|df| df.nodes.len())
        )),
    };
    t.check("scanner_error", r);
}

#[test]
fn buildkit_parser_conformance() {
    let mut t = Tally::default();
    dump_cases(&mut t);
    negative_cases(&mut t);
    line_cases(&mut t);
    heredoc_extract_cases(&mut t, "heredoc_extract.json");
    heredoc_extract_cases(&mut t, "heredoc_json_form.json");
    heredoc_word_cases(&mut t);
    parse_words_cases(&mut t);
    json_array_cases(&mut t);
    directive_cases(&mut t);
    warning_cases(&mut t);
    scanner_error_cases(&mut t);
    t.finish("parser conformance");
}

/// Every §1 case dumps the same when its lines end in CRLF (as on Windows).
#[test]
fn testfiles_dump_the_same_with_crlf() {
    let root = data_dir().join("frontend/dockerfile/parser/testfiles");
    for dir in sorted_dirs(&root) {
        let src = String::from_utf8_lossy(&read(&dir.join("Dockerfile"))).into_owned();
        let lf = parse(&src).map(|df| dump(&df));
        let crlf = parse(&src.replace('\n', "\r\n")).map(|df| dump(&df));
        assert_eq!(lf, crlf, "{}", name_of(&dir));
    }
}

#[test]
fn heredoc_extract_plain_file_matches_json() {
    let dir = data_dir().join("extracted/parser");
    let plain = read(&dir.join("heredoc_extract.Dockerfile"));
    let v = json("heredoc_extract.json");
    assert_eq!(String::from_utf8_lossy(&plain), s(&v["dockerfile"]));
}

#[test]
fn line_at_limit_is_accepted() {
    let src = format!("FROM a\nLABEL x={}\n", "a".repeat(65535 - "LABEL x=".len()));
    let df = parse(&src).expect("a 65535-byte line is allowed");
    assert_eq!(df.nodes.len(), 2);
}

#[test]
fn byte_order_mark_counts_towards_first_line_limit() {
    let body = format!("FROM {}", "a".repeat(65535 - 5));
    assert!(parse(&body).is_ok());
    let err = parse(&format!("\u{feff}{body}\n")).expect_err("BOM makes it too long");
    assert_eq!(err.message, "file with no instructions");
}

#[test]
fn long_line_before_any_instruction_reports_no_instructions() {
    let src = format!("# {}\n", "a".repeat(70_000));
    let err = parse(&src).expect_err("must fail");
    assert_eq!(err.message, "file with no instructions");
}

#[test]
fn deep_onbuild_nesting_is_an_error_not_a_crash() {
    let src = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(5000));
    assert!(parse(&src).is_err());
}

#[test]
fn crlf_heredoc_keeps_carriage_returns() {
    let df = parse("FROM a\r\nRUN <<EOF\r\necho hi\r\nEOF\r\n").expect("parses");
    assert_eq!(df.nodes[1].heredocs[0].content, "echo hi\r\n");
}

#[test]
fn onbuild_heredoc_attaches_to_onbuild_node() {
    let df = parse("FROM a\nONBUILD RUN <<EOF\nhi\nEOF\n").expect("parses");
    assert_eq!(df.nodes.len(), 2);
    assert_eq!(df.nodes[1].heredocs.len(), 1);
    assert_eq!(dump(&df), "(from \"a\")\n(onbuild (run \"<<EOF\"))\n");
}

/// Dockerfile-ish fragments for the token-soup generator.
const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "LABEL",
    "ARG",
    "ONBUILD",
    "HEALTHCHECK",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "VOLUME",
    "EXPOSE",
    "USER",
    "WORKDIR",
    "MAINTAINER",
    "STOPSIGNAL",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=x\n",
    "\u{feff}",
    "<<",
    "<<-",
    "EOF",
    "'EOF'",
    "\"EOF\"",
    "\nEOF\n",
    "\n\tEOF\n",
    "3<<",
    "[",
    "]",
    "\"",
    "'",
    ",",
    "\"a\"",
    "1",
    "{}",
    "true",
    "\\u0000",
    "--",
    "--from=a",
    "--mount=x",
    "=",
    "a=b",
    "$",
    "${",
    "}",
    "${a:-b}",
    "é",
    "\u{a0}",
    "\u{85}",
    "\u{0}",
    "CMD",
    "NONE",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(df) = parse_bytes(&bytes) {
            let _ = dump(&df);
        }
    }

    #[test]
    fn parse_never_panics_on_token_soup(src in token_soup()) {
        match parse(&src) {
            Ok(df) => {
                let text = dump(&df);
                prop_assert_eq!(text.lines().count(), df.nodes.len());
                for n in &df.nodes {
                    prop_assert!(n.start_line <= n.end_line);
                    prop_assert!(n.span.line >= n.start_line && n.span.line <= n.end_line);
                }
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                let _ = e.render("Dockerfile", &src);
            }
        }
    }
}
