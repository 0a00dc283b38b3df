//! `--format` as Docker has it: a Go template per row (`{{.Repository}}`,
//! `{{json .}}`, `{{.Name | lower}}` …), `table …` for a header row and
//! tab-aligned columns, and `json` for one JSON object per line. Each row
//! is a JSON object of the command's fields; a field it does not have is
//! an error, never printed as-is. The template engine is in `format/`.

mod eval;
mod parse;

use std::io::Write;

use anyhow::Context;
use serde_json::{Map, Value};

/// A parsed `--format`.
pub struct Format {
    source: String,
    nodes: Vec<parse::Node>,
    table: bool,
}

impl Format {
    /// Parses `--format TEXT`; `None` for the command's default table
    /// (`table` alone). `\t` and `\n` written as two characters are a tab
    /// and a newline, as with Docker.
    pub fn parse(text: &str) -> anyhow::Result<Option<Format>> {
        let trimmed = text.trim();
        if trimmed == "table" || trimmed.is_empty() {
            return Ok(None);
        }
        let (table, body) = match text.strip_prefix("table ") {
            Some(b) => (true, b),
            None if trimmed == "json" => (false, "{{json .}}"),
            None => (false, text),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let nodes = parse::parse(&body).with_context(|| bad(text))?;
        Ok(Some(Format {
            source: text.to_string(),
            nodes,
            table,
        }))
    }

    /// The text of one row.
    pub fn render(&self, row: &Value) -> anyhow::Result<String> {
        let mut out = String::new();
        eval::execute(&self.nodes, row, &mut out).with_context(|| bad(&self.source))?;
        Ok(out)
    }

    /// Prints `rows`, one line each; for `table …`, after a header row
    /// made of `headers`, every field of a row with its header (`None`:
    /// the field's name in capitals, words apart), aligned at the tabs.
    /// Nothing is printed when a row fails; a field none of `headers`
    /// names fails even when there are no rows.
    pub fn write(
        &self,
        out: &mut dyn Write,
        rows: &[Value],
        headers: &[(&str, Option<&str>)],
    ) -> anyhow::Result<()> {
        let mut lines = Vec::with_capacity(rows.len() + 1);
        // Rendered even when it is not printed, so an unknown field is an
        // error with no rows too.
        let header = self.render(&header_row(headers))?;
        if self.table {
            lines.push(header);
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        let text = lines.join("\n");
        if self.table {
            out.write_all(align(&text).as_bytes())?;
        } else {
            for l in &lines {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    }
}

fn bad(text: &str) -> String {
    format!("--format {text:?} is not a valid template")
}

/// The header row: each field mapped to its column header.
fn header_row(headers: &[(&str, Option<&str>)]) -> Value {
    let mut m = Map::new();
    for (field, header) in headers {
        let h = header.map_or_else(|| words_upper(field), str::to_string);
        m.insert(field.to_string(), Value::String(h));
    }
    Value::Object(m)
}

/// `CreatedAt` → `CREATED AT`.
fn words_upper(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.extend(c.to_uppercase());
    }
    out
}

/// Aligns tab-separated cells as Docker's tabwriter does (minimum width
/// 10, 3 spaces of padding); the cell after a line's last tab is left as
/// it is. Every line ends in a newline.
pub fn align(text: &str) -> String {
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    crate::table::aligned(&rows, 10)
}

#[cfg(test)]
mod tests;
