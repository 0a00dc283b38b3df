//! How errors reach the user: one line per cause, and for a failed build
//! step, where it is in its Dockerfile with the line itself and a caret.

use rbk_scheduler::BuildError;

/// The whole text of `e` as printed on stderr (without a final newline).
pub fn render(e: &anyhow::Error) -> String {
    if let Some(step) = e.downcast_ref::<BuildError>() {
        if let BuildError::Step { .. } = step {
            return render_step(step);
        }
    }
    let mut msg = format!("rbk: {e}");
    for cause in e.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    msg
}

/// A failed step: its label and instruction, its place in the Dockerfile
/// (the line shown with a caret), then why, cause by cause.
fn render_step(e: &BuildError) -> String {
    let BuildError::Step {
        label,
        text,
        file,
        line,
        stage,
        error,
    } = e
    else {
        return format!("rbk: {e}");
    };
    let first = text.lines().next().unwrap_or("");
    let mut out = format!("rbk: {label} {first}\n  --> {file}:{line} (stage {stage})");
    if let Some(src) = source_line(file, *line) {
        let indent = src.len() - src.trim_start().len();
        let num = line.to_string();
        out.push_str(&format!(
            "\n{num} | {src}\n{} | {}^",
            " ".repeat(num.len()),
            " ".repeat(indent)
        ));
    }
    out.push('\n');
    out.push_str(&rbk_scheduler::error_chain(error.as_ref()));
    out
}

/// Line `line` (1-based) of `file`, if it can be read.
fn source_line(file: &str, line: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    text.lines().nth(idx).map(|l| l.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_shows_its_line_with_a_caret_and_every_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("Dockerfile");
        std::fs::write(&file, "FROM x\n  RUN false\n").expect("write");
        let err = BuildError::Step {
            label: "app 2/2".into(),
            text: "RUN false".into(),
            file: file.display().to_string(),
            line: 2,
            stage: "0".into(),
            error: Box::new(rbk_scheduler::StepError::Exit {
                command: "[\"false\"]".into(),
                code: 1,
                tail: vec![],
            }),
        };
        let text = render(&anyhow::Error::new(err));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "rbk: app 2/2 RUN false");
        assert!(lines[1].ends_with("Dockerfile:2 (stage 0)"), "{text}");
        assert_eq!(lines[2], "2 |   RUN false");
        assert_eq!(lines[3], "  |   ^");
        assert_eq!(lines[4], "command [\"false\"] exited with code 1");
    }
}
