//! BuildKit's Dockerfile lint rules over every Dockerfile of a build
//! (`rbk check`, `rbk build --check`), the brief warnings a normal build
//! prints, and the emulators a build's platforms need.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;
use rbk_compiler::lint::{self, CheckEnv, Report};
use rbk_compiler::lower::{ImageResolver, Input};
use rbk_scheduler::context::{clean_path, IgnoreMatcher};
use rbk_scheduler::step::from::BaseImages;

use super::compile::StoreResolver;
use super::settings::BuildSettings;

/// Lints each Dockerfile of `inputs` once (inputs sharing one file share
/// its report).
pub fn lint(inputs: &[Input], resolver: &dyn ImageResolver) -> Result<Vec<Report>> {
    let mut reports: Vec<Report> = Vec::new();
    for input in inputs {
        if reports.iter().any(|r| r.file == input.file) {
            continue;
        }
        let matcher = ignore_matcher(input);
        let ignored = |p: &str| {
            matcher
                .as_ref()
                .is_some_and(|m| m.matches(&clean_path(p), false))
        };
        let env = CheckEnv {
            resolver,
            ignored: &ignored,
        };
        reports.push(lint::check(input, &env)?);
    }
    Ok(reports)
}

/// The `.dockerignore` that applies to `input`'s COPY and ADD, if any.
fn ignore_matcher(input: &Input) -> Option<IgnoreMatcher> {
    let path = match &input.ignore_file {
        Some(f) => Path::new(f).to_path_buf(),
        None => Path::new(&input.context).join(".dockerignore"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    IgnoreMatcher::parse(&text).ok()
}

/// Prints every finding on standard output and a summary on standard
/// error; the exit code: 1 when a Dockerfile with findings asks for
/// errors (`# check=error=true`).
pub fn print(reports: &[Report]) -> i32 {
    let mut total = 0;
    let mut code = 0;
    for r in reports {
        for line in r.lines() {
            println!("{line}");
        }
        total += r.findings.len();
        if r.error && !r.findings.is_empty() {
            code = 1;
        }
    }
    let files = reports.len();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    eprintln!(
        "{} in {}{}",
        plural(total, "finding"),
        plural(files, "Dockerfile"),
        if code == 1 {
            " (check=error=true: failing)"
        } else {
            ""
        }
    );
    code
}

/// What a normal build says of the findings: one line each on standard
/// error; an error when a Dockerfile asks for one.
pub fn warn(reports: &[Report], show: bool) -> Result<()> {
    if show {
        for r in reports {
            for line in r.lines() {
                eprintln!("warning: {line}");
            }
        }
    }
    for r in reports {
        if r.error && !r.findings.is_empty() {
            anyhow::bail!(
                "{}: {} lint finding{} and `# check=error=true`{}",
                r.file,
                r.findings.len(),
                if r.findings.len() == 1 { "" } else { "s" },
                if show {
                    String::new()
                } else {
                    format!(": {}", r.lines().join("; "))
                }
            );
        }
    }
    Ok(())
}

/// The lint findings of `inputs`, printed, then what would stop a build (a
/// duplicate stage, a cycle, an ARG without value in FROM …): `rbk check`
/// and `rbk build --check` alike. The exit code: 1 with findings.
pub fn check_inputs(inputs: &[Input], resolver: &dyn ImageResolver) -> Result<i32> {
    let code = print(&lint(inputs, resolver)?);
    super::compile::compile_all(inputs, resolver)?;
    Ok(code)
}

/// The lint (its findings printed, and with `--check` the exit code) and
/// QEMU for stages of another architecture (registered now if Debian's
/// qemu-user-static is there and the handler is missing).
pub(crate) fn lint_and_emulate(
    settings: &BuildSettings,
    inputs: &[rbk_compiler::Input],
    bases: &BaseImages<'_>,
    graph: &rbk_compiler::BuildGraph,
) -> Result<Option<i32>> {
    // The bases the build needs were pulled while compiling: the lint only
    // reads the store (another platform of a base is not pulled for it).
    let lint = lint(inputs, &StoreResolver(bases))?;
    let chatty = settings.chatty();
    warn(&lint, chatty)?;
    // Only RUN executes the image's binaries: the platforms of the stages
    // that have one may need an emulator.
    let platforms: BTreeSet<&str> = graph
        .graph
        .node_indices()
        .filter(|&id| matches!(graph.vertex(id).op, rbk_compiler::graph::Op::Exec(_)))
        .filter_map(|id| {
            let root = *graph.chain(id).first()?;
            match &graph.vertex(root).op {
                rbk_compiler::graph::Op::Source { platform, .. } => Some(platform.as_str()),
                _ => None,
            }
        })
        .collect();
    for p in platforms {
        if let Some(done) = crate::emulation::ensure(p)? {
            if chatty {
                eprintln!("{done}");
            }
        }
    }
    Ok(None)
}
