//! §6.10 of tests/conformance/README.md: typed instructions after parsing.

use rbk_compiler::instructions::{convert, Command, Instruction};
use serde_json::Value;

use crate::tests_dir;

fn load(name: &str) -> Vec<Value> {
    let path = tests_dir()
        .join("conformance/buildkit/extracted/instructions")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("conformance data {} is missing: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    v["cases"].as_array().expect("cases").clone()
}

fn first(dockerfile: &str) -> Result<Instruction, String> {
    let df = rbk_compiler::parse(dockerfile).map_err(|e| e.message)?;
    let node = df.nodes.first().ok_or("no instruction")?;
    convert(node).map_err(|e| e.message)
}

#[test]
fn error_cases() {
    let cases = load("error_cases.json");
    let mut failed = Vec::new();
    for c in &cases {
        let df = c["dockerfile"].as_str().expect("dockerfile");
        let name = c["name"].as_str().unwrap_or("?");
        match first(df) {
            Ok(i) => failed.push(format!("{name}: expected an error, got {i:?}")),
            Err(msg) => {
                if let Some(want) = c["error_contains"].as_str() {
                    if !msg.contains(want) {
                        failed.push(format!("{name}: {msg:?} does not contain {want:?}"));
                    }
                }
                if let Some(want) = c["error_equals"].as_str() {
                    if msg != want {
                        failed.push(format!("{name}: {msg:?} != {want:?}"));
                    }
                }
            }
        }
    }
    eprintln!(
        "instructions error_cases: {}/{} passed",
        cases.len() - failed.len(),
        cases.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(cases.len(), 19);
}

#[test]
fn copy_heredocs() {
    let cases = load("copy_heredoc.json");
    let mut failed = Vec::new();
    for c in &cases {
        let df = c["dockerfile"].as_str().expect("dockerfile");
        let want = &c["expected"];
        match first(df) {
            Ok(Instruction::Copy(copy)) => {
                let want_sources: Vec<String> = want["SourcePaths"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let want_contents: Vec<(String, String, bool)> = want["SourceContents"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| {
                                (
                                    s["Path"].as_str().unwrap_or("").to_string(),
                                    s["Data"].as_str().unwrap_or("").to_string(),
                                    s["Expand"].as_bool().unwrap_or(false),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let got_contents: Vec<(String, String, bool)> = copy
                    .contents
                    .iter()
                    .map(|s| (s.path.clone(), s.data.clone(), s.expand))
                    .collect();
                if copy.dest != want["DestPath"].as_str().unwrap_or("")
                    || copy.sources != want_sources
                    || got_contents != want_contents
                {
                    failed.push(format!("{df:?}: got {copy:?}"));
                }
            }
            other => failed.push(format!("{df:?}: got {other:?}")),
        }
    }
    eprintln!(
        "copy_heredoc: {}/{} passed",
        cases.len() - failed.len(),
        cases.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(cases.len(), 8);
}

#[test]
fn run_heredocs() {
    let cases = load("run_heredoc.json");
    let mut failed = Vec::new();
    for c in &cases {
        let df = c["dockerfile"].as_str().expect("dockerfile");
        let want_cmd: Vec<String> = c["cmd_line"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let shell = c["prepend_shell"].as_bool().unwrap_or(false);
        let want_files: Vec<(String, String, bool)> = c["files"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["Name"].as_str().unwrap_or("").to_string(),
                            f["Data"].as_str().unwrap_or("").to_string(),
                            f["Chomp"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        match first(df) {
            Ok(Instruction::Run(run)) => {
                let (got_shell, got_cmd) = match &run.command {
                    Command::Shell(s) => (true, vec![s.clone()]),
                    Command::Exec(v) => (false, v.clone()),
                };
                let got_files: Vec<(String, String, bool)> = run
                    .heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.content.clone(), h.chomp))
                    .collect();
                if got_shell != shell || got_cmd != want_cmd || got_files != want_files {
                    failed.push(format!("{df:?}: got {run:?}"));
                }
            }
            other => failed.push(format!("{df:?}: got {other:?}")),
        }
    }
    eprintln!(
        "run_heredoc: {}/{} passed",
        cases.len() - failed.len(),
        cases.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(cases.len(), 6);
}
