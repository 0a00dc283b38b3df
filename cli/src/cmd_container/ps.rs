//! `rbk ps`: the containers on record, as `docker ps` lists them (table,
//! `-q`, `--format`).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use super::PsArgs;
use crate::format::Format;
use crate::human::since;
use rbk_runtime::container::{self, State};

/// The fields of a row, with the header of a `--format 'table …'` column
/// that is not the field's name in capitals.
const HEADERS: &[(&str, Option<&str>)] = &[
    ("Command", None),
    ("CreatedAt", None),
    ("ID", Some("CONTAINER ID")),
    ("Image", None),
    ("Labels", None),
    ("Mounts", None),
    ("Names", None),
    ("Networks", None),
    ("Ports", None),
    ("RunningFor", Some("CREATED")),
    ("State", None),
    ("Status", None),
];

/// The default table's columns: (header, field).
const COLUMNS: &[(&str, &str)] = &[
    ("CONTAINER ID", "ID"),
    ("IMAGE", "Image"),
    ("COMMAND", "Command"),
    ("CREATED", "RunningFor"),
    ("STATUS", "Status"),
    ("PORTS", "Ports"),
    ("NAMES", "Names"),
];

pub(super) fn ps(root: &Path, a: &PsArgs, out: &mut dyn Write) -> Result<i32> {
    let format = a
        .format
        .as_deref()
        .map(Format::parse)
        .transpose()?
        .flatten();
    let rows: Vec<State> = container::list(root)
        .into_iter()
        .filter(|s| a.all || container::running(root, &s.id))
        .collect();
    if a.quiet {
        for s in rows {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(0);
    }
    let rows: Vec<Value> = rows.iter().map(|s| row(root, s, a.no_trunc)).collect();
    if let Some(f) = format {
        f.write(out, &rows, HEADERS)?;
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            COLUMNS
                .iter()
                .map(|(_, k)| r[*k].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    let header: Vec<&str> = COLUMNS.iter().map(|(h, _)| *h).collect();
    crate::table::print_table(out, &header, &table)?;
    Ok(0)
}

/// A container's fields, by Docker's names.
fn row(root: &Path, s: &State, no_trunc: bool) -> Value {
    let mut cmd = s.command.join(" ");
    if !no_trunc && cmd.chars().count() > 30 {
        cmd = cmd.chars().take(29).collect::<String>() + "…";
    }
    let running = container::running(root, &s.id);
    json!({
        "Command": format!("\"{cmd}\""),
        "CreatedAt": crate::human::created_at(&s.created),
        "ID": s.id,
        "Image": s.image,
        "Labels": "",
        "Mounts": "",
        "Names": s.name,
        "Networks": "",
        "Ports": s
            .ports
            .iter()
            .map(|p| crate::ports::docker_text(p))
            .collect::<Vec<_>>()
            .join(", "),
        "RunningFor": since(&s.created),
        "State": if running { "running" } else { "exited" },
        "Status": status_text(root, s),
    })
}

/// "Up 3 minutes", "Exited (0) 2 seconds ago", as `docker ps` says it.
fn status_text(root: &Path, s: &State) -> String {
    if container::running(root, &s.id) {
        return format!(
            "Up {}",
            crate::human::since(&s.created).trim_end_matches(" ago")
        );
    }
    match (s.exit_code, &s.finished) {
        (Some(code), Some(t)) => format!("Exited ({code}) {}", crate::human::since(t)),
        _ => "Exited (unknown)".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(format: Option<&str>, quiet: bool) -> PsArgs {
        PsArgs {
            all: true,
            quiet,
            no_trunc: false,
            format: format.map(String::from),
        }
    }

    fn record(root: &Path, id: &str, name: &str) {
        let s = State {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            created: "2024-05-01T10:20:30Z".into(),
            ports: vec!["8080:80".into()],
            detached: true,
            stop_signal: "SIGTERM".into(),
            supervisor: 0,
            status: "exited".into(),
            exit_code: Some(0),
            finished: Some("2024-05-01T10:20:31Z".into()),
            restarts: 0,
            run_args: Vec::new(),
            volumes: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            workdir: String::new(),
        };
        container::write(root, &s).unwrap();
    }

    fn run(root: &Path, a: &PsArgs) -> Result<String> {
        let mut out = Vec::new();
        ps(root, a, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn ps_format_quiet_and_table() {
        let d = tempfile::tempdir().unwrap();
        record(d.path(), "0123456789ab", "web");
        let text = run(
            d.path(),
            &args(Some("{{.Names}} {{.Image}} {{.Command}} {{.Ports}}"), false),
        );
        assert_eq!(
            text.unwrap(),
            "web busybox \"sh -c echo hi\" 0.0.0.0:8080->80/tcp\n"
        );
        let text = run(d.path(), &args(Some(r"table {{.ID}}\t{{.Status}}"), false)).unwrap();
        assert!(
            text.starts_with("CONTAINER ID   STATUS\n0123456789ab   Exited (0) "),
            "{text:?}"
        );
        let text = run(d.path(), &args(Some("{{json .}}"), false)).unwrap();
        let row: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(row["State"], "exited");
        assert_eq!(row["CreatedAt"], "2024-05-01 10:20:30 +0000 UTC");
        let e = format!(
            "{:#}",
            run(d.path(), &args(Some("{{.Foo}}"), false)).unwrap_err()
        );
        assert!(e.contains("can't evaluate field Foo"), "{e}");
        assert_eq!(run(d.path(), &args(None, true)).unwrap(), "0123456789ab\n");
        let text = run(d.path(), &args(None, false)).unwrap();
        assert!(text.starts_with("CONTAINER ID   IMAGE"), "{text}");
    }
}
