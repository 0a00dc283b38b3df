//! Hostile and huge inputs: long stage chains, deep nesting, many heredocs.
//! Each runs on a thread with a 2 MiB stack (a main thread's is 8 MiB), so
//! recursion on the input's shape fails here before it fails a user.

use rbk_compiler::graph::Op;
use rbk_compiler::parse::expand::MAX_DEPTH;
use rbk_compiler::parse::MAX_HEREDOCS;
use rbk_compiler::render::{render, Format};
use rbk_compiler::{compile, BuildGraph, CompileError, Input, NoResolver};

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
    {
        Ok(v) => v,
        Err(_) => panic!("the thread panicked (see above)"),
    }
}

fn input(src: String) -> Input {
    Input {
        name: "chain".into(),
        file: "Dockerfile".into(),
        source: src,
        context: "/ctx".into(),
        ..Default::default()
    }
}

fn compile_small_stack(src: String) -> Result<BuildGraph, CompileError> {
    on_small_stack(move || compile(&input(src), &NoResolver))
}

/// `FROM s{i-1} AS s{i}` with an ARG, ENV, RUN and COPY --from in each.
fn full_chain(n: usize) -> String {
    let mut s = String::from("FROM scratch AS s0\n");
    for i in 1..n {
        let p = i - 1;
        s.push_str(&format!(
            "FROM s{p} AS s{i}\nARG A{i}=x\nENV E{i}=$A{i}\nRUN echo $E{i}\nCOPY --from=s{p} /a /b{i}\n"
        ));
    }
    s
}

fn count(g: &BuildGraph, kind: &str) -> usize {
    g.stats().get(kind).copied().unwrap_or(0)
}

fn renders_all(g: BuildGraph) -> Vec<String> {
    on_small_stack(move || {
        [Format::Text, Format::Dot, Format::Mermaid, Format::Json]
            .into_iter()
            .map(|f| render(&g, f))
            .collect()
    })
}

#[test]
fn stage_chain_of_8000_bases_lowers_and_renders() {
    let mut src = String::from("FROM scratch AS s0\n");
    for i in 1..8000 {
        src.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    let g = compile_small_stack(src).unwrap_or_else(|e| panic!("{e}"));
    // FROM a stage adds no vertex: one scratch source for all of them.
    assert_eq!(g.len(), 1);
    assert_eq!(g.images[0].stage, "s7999");
    let out = renders_all(g);
    assert!(out[0].starts_with("1 image, 1 vertices"), "{}", out[0]);
}

#[test]
fn stage_chain_of_8000_with_steps_lowers_and_renders() {
    let g = compile_small_stack(full_chain(8000)).unwrap_or_else(|e| panic!("{e}"));
    // The scratch source, then per stage after the first: ENV, RUN, COPY.
    assert_eq!(g.len(), 1 + 3 * 7999);
    assert_eq!(
        (count(&g, "config"), count(&g, "exec"), count(&g, "file")),
        (7999, 7999, 7999)
    );
    assert_eq!(g.images[0].config.env.len(), 7999 + 1, "E1..E7999 and PATH");
    let out = renders_all(g);
    assert!(out[0].starts_with("1 image, 23998 vertices"), "{}", out[0]);
    assert_eq!(
        out[1].matches("[style=dashed, label=\"from\"]").count(),
        7999
    );
}

#[test]
fn stage_chain_of_2000_keeps_each_steps_environment() {
    let g = compile_small_stack(full_chain(2000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.len(), 1 + 3 * 1999);
    let runs: Vec<_> = g
        .topo_order()
        .into_iter()
        .filter_map(|id| match &g.vertex(id).op {
            Op::Exec(e) => Some(e.env.share()),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 1999);
    // The step of stage i sees PATH, E1..Ei and its own ARG A_i.
    for (n, env) in runs.iter().enumerate().step_by(333) {
        let i = n + 1;
        assert_eq!(env.len(), 1 + i + 1, "stage {i}");
        assert_eq!(env[0].0, "PATH");
        assert_eq!(env[i], (format!("E{i}"), "x".to_string()));
        assert_eq!(env[i + 1], (format!("A{i}"), "x".to_string()));
    }
    // Each COPY reads the previous stage's last step.
    let copies = g
        .topo_order()
        .into_iter()
        .filter(|&id| matches!(g.vertex(id).op, Op::File(_)))
        .count();
    assert_eq!(copies, 1999);
}

#[test]
fn chain_through_copy_from_only_suspends_without_recursion() {
    // No stage is built on another: each one's COPY --from names the
    // previous, so the dependencies are found while lowering.
    let mut src = String::from("FROM scratch AS s0\nCOPY a /a\n");
    for i in 1..8000 {
        src.push_str(&format!(
            "FROM scratch AS s{i}\nCOPY --from=s{} /a /a\n",
            i - 1
        ));
    }
    let g = compile_small_stack(src).unwrap_or_else(|e| panic!("{e}"));
    // One shared scratch source and one COPY per stage.
    assert_eq!(g.len(), 1 + 8000);
}

#[test]
fn copy_from_cycle_is_an_error_not_a_hang() {
    let src = "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\n";
    let e = compile_small_stack(src.to_string()).expect_err("cycle");
    assert!(e.to_string().contains("circular dependency"), "{e}");
}

#[test]
fn too_many_stages_is_an_error() {
    let max = rbk_compiler::lower::MAX_STAGES;
    let mut src = String::new();
    for i in 0..=max {
        src.push_str(&format!("FROM scratch AS s{i}\n"));
    }
    let e = compile_small_stack(src).expect_err("over the limit");
    let text = e.to_string();
    assert!(
        text.contains(&format!("more than {max} build stages")),
        "{text}"
    );
    assert!(
        text.starts_with(&format!("Dockerfile:{}:1:", max + 1)),
        "{text}"
    );
}

#[test]
fn deeply_nested_expansion_is_an_error() {
    // 10,000 levels: the line stays under the 64 KiB line limit.
    let depth = 10_000;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    let src = format!("FROM scratch\nENV B={word}\n");
    let e = compile_small_stack(src)
        .expect_err("too deep")
        .error
        .message;
    assert!(
        e.contains(&format!("nested more than {MAX_DEPTH} levels")),
        "{}",
        &e[e.len().saturating_sub(200)..]
    );
    // Just under the limit is fine.
    let ok = MAX_DEPTH - 1;
    let word = format!("{}x{}", "${A:-".repeat(ok), "}".repeat(ok));
    let g = compile_small_stack(format!("FROM scratch\nENV B={word}\n")).expect("expands");
    assert_eq!(
        g.images[0].config.env.last().map(String::as_str),
        Some("B=x")
    );
}

#[test]
fn deep_nesting_in_run_heredoc_scan_and_json_does_not_overflow() {
    // Each line stays under the 64 KiB line limit, so the nesting is read.
    let depth = 7_000;
    let nested = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    for src in [
        // The heredoc scanner lexes RUN lines that contain `<<`.
        format!("FROM scratch\nRUN cat <<EOF {nested}\nEOF\n"),
        format!("FROM scratch\nCMD {}\n", "[".repeat(depth)),
        format!("FROM scratch\n{}RUN x\n", "ONBUILD ".repeat(depth)),
    ] {
        assert!(src
            .lines()
            .all(|l| l.len() < rbk_compiler::parse::MAX_LINE_LEN));
        // Errors are fine; overflowing the stack is not.
        let _ = compile_small_stack(src);
    }
}

#[test]
fn heredocs_per_instruction_are_limited() {
    let doc = |n: usize| {
        let mut s = String::from("FROM scratch\nRUN cat");
        for i in 0..n {
            s.push_str(&format!(" <<E{i}"));
        }
        s.push('\n');
        for i in 0..n {
            s.push_str(&format!("line\nE{i}\n"));
        }
        s
    };
    let g = compile_small_stack(doc(MAX_HEREDOCS)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&g, "exec"), 1);
    let e = compile_small_stack(doc(MAX_HEREDOCS + 1)).expect_err("over the limit");
    assert!(
        e.to_string().contains(&format!(
            "more than {MAX_HEREDOCS} heredocs in one instruction"
        )),
        "{e}"
    );
}

#[test]
fn exponential_env_growth_is_an_error() {
    // Each line doubles V: 40 lines would ask for 16 TiB.
    let mut src = String::from("FROM scratch\nENV V=0123456789abcdef\n");
    for _ in 0..40 {
        src.push_str("ENV V=$V$V\n");
    }
    let e = compile_small_stack(src).expect_err("too long").error;
    assert!(e.message.contains("longer than"), "{}", e.message);
    // 16 bytes doubled 17 times is 2 MiB: line 2 + 17 fails.
    assert_eq!(e.span.line, 19, "{}", e.message);
}

#[test]
fn replacement_growth_is_an_error() {
    let value = "a".repeat(60_000);
    let repl = "b".repeat(64);
    let src = format!("FROM scratch\nENV V={value}\nENV W=${{V//a/{repl}}}\n");
    let e = compile_small_stack(src).expect_err("too long").error;
    assert!(
        e.message.contains("longer than"),
        "{}",
        &e.message[..200.min(e.message.len())]
    );
    assert_eq!(e.span.line, 3);
    // Within the limit it expands.
    let src = "FROM scratch\nENV V=aaa\nENV W=${V//a/bb}\n".to_string();
    let g = compile_small_stack(src).expect("expands");
    assert_eq!(
        g.images[0].config.env.last().map(String::as_str),
        Some("W=bbbbbb")
    );
}

#[test]
fn expose_ranges_are_limited() {
    // Every port of every protocol is allowed …
    let g =
        compile_small_stack("FROM scratch\nEXPOSE 0-65535 0-65535/udp 0-65535/sctp\n".to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.images[0].config.exposed_ports.len(), 3 * 65_536);
    // … but not a line of ranges that expands to billions of entries.
    let src = format!("FROM scratch\nEXPOSE{}\n", " 1-65535".repeat(8000));
    let e = compile_small_stack(src).expect_err("too many").error;
    assert!(
        e.message.contains(&format!(
            "more than {} ports",
            rbk_compiler::lower::MAX_EXPOSED_PORTS
        )),
        "{}",
        e.message
    );
}

/// Bytes the lint checker allocates for a chain of `n` stages, each built
/// on the one before and adding an ENV.
fn lint_bytes(n: usize) -> u64 {
    let mut src = String::from("FROM scratch AS s0\nENV V0=x\n");
    for i in 1..n {
        src.push_str(&format!("FROM s{} AS s{i}\nENV V{i}=value{i}\n", i - 1));
    }
    on_small_stack(move || {
        let input = input(src);
        let ignored = |_: &str| false;
        let env = rbk_compiler::lint::CheckEnv {
            resolver: &NoResolver,
            ignored: &ignored,
        };
        let before = crate::allocated();
        let report = rbk_compiler::lint::check(&input, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        crate::allocated() - before
    })
}

/// Each stage starts from its base's ENV: shared, not copied (a copy per
/// stage made a 4,000-stage chain allocate gigabytes). Twice the stages
/// must cost about twice the memory, not four times.
#[test]
fn linting_a_chain_of_stages_with_env_is_linear_in_memory() {
    let (small, large) = (lint_bytes(2000), lint_bytes(4000));
    let ratio = large as f64 / small as f64;
    assert!(
        ratio < 2.8,
        "2,000 stages allocated {small} bytes, 4,000 allocated {large} ({ratio:.2}×)"
    );
}
