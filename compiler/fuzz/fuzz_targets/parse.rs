//! Fuzz target: the parser must never panic (or overflow its stack) on any
//! bytes, and whatever it accepts must dump and re-render errors cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match rbk_compiler::parse::parse(&text) {
        Ok(df) => {
            let dump = rbk_compiler::parse::dump(&df);
            assert_eq!(dump.lines().count(), df.nodes.len());
            for node in &df.nodes {
                assert!(node.start_line <= node.end_line);
            }
        }
        Err(e) => {
            let _ = e.render("Dockerfile", &text);
        }
    }
    let _ = rbk_compiler::parse::detect_syntax(data);
    let _ = rbk_compiler::parse::heredocs_from_line(&text);
    let _ = rbk_compiler::parse::parse_json_array(&text);
});
