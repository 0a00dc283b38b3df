//! Fuzz target: parse → lower → graph → render must never panic or
//! overflow the stack, whatever the Dockerfile, target or build args.
//!
//! The first line of the input, if it starts with `#!`, holds options:
//! `#!target=NAME` and `#!arg=K=V` (repeatable), so the fuzzer can reach
//! `--target` and build-arg paths; the rest is the Dockerfile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbk_compiler::graph::Op;
use rbk_compiler::render::{render, Format};
use rbk_compiler::{compile, Input, NoResolver};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut input = Input {
        name: "fuzz".into(),
        file: "Dockerfile".into(),
        context: "/ctx".into(),
        ..Default::default()
    };
    let mut source = text.as_ref();
    if let Some(rest) = source.strip_prefix("#!") {
        let (opts, body) = rest.split_once('\n').unwrap_or((rest, ""));
        for opt in opts.split(' ') {
            if let Some(t) = opt.strip_prefix("target=") {
                input.target = Some(t.to_string());
            } else if let Some((k, v)) = opt.strip_prefix("arg=").and_then(|a| a.split_once('=')) {
                input.build_args.insert(k.to_string(), v.to_string());
            }
        }
        source = body;
    }
    input.source = source.to_string();
    match compile(&input, &NoResolver) {
        Ok(g) => {
            assert_eq!(g.images.len(), 1);
            for id in g.topo_order() {
                let v = g.vertex(id);
                // Dependencies come first (the scheduler relies on it).
                for d in v.parent.iter().chain(&v.inputs) {
                    assert!(d.index() < id.index());
                }
                if let Op::Exec(e) = &v.op {
                    let _ = e.env.len();
                }
            }
            for f in [Format::Text, Format::Dot, Format::Mermaid, Format::Json] {
                let _ = render(&g, f);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
