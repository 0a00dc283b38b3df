//! `rbk history`: an image's layers, newest first, as `docker history`
//! shows them (table, `-q`, `--format`).

use std::io::Write;

use rbk_store::Store;
use serde_json::{json, Value};

use crate::format::Format;
use crate::human::{created_at, human_size, since};
use crate::table::print_table;

/// The fields of a row, with the header of a `--format 'table …'` column
/// that is not the field's name in capitals.
const HEADERS: &[(&str, Option<&str>)] = &[
    ("Comment", None),
    ("CreatedAt", None),
    ("CreatedBy", None),
    ("CreatedSince", Some("CREATED")),
    ("ID", Some("IMAGE")),
    ("Size", None),
];

pub(super) fn history(
    store: &Store,
    out: &mut dyn Write,
    name: &str,
    no_trunc: bool,
    quiet: bool,
    format: Option<&str>,
) -> anyhow::Result<i32> {
    let format = format.map(Format::parse).transpose()?.flatten();
    let rows = rows(store, name, no_trunc)?;
    if quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or_default())?;
        }
        return Ok(0);
    }
    if let Some(f) = format {
        f.write(out, &rows, HEADERS)?;
        return Ok(0);
    }
    let cell = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
                .iter()
                .map(|k| cell(r, k))
                .collect()
        })
        .collect();
    print_table(
        out,
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        &table,
    )?;
    Ok(0)
}

/// One object per history entry, newest first, with Docker's field names.
fn rows(store: &Store, name: &str, no_trunc: bool) -> anyhow::Result<Vec<Value>> {
    let image = store.resolve(name)?;
    let mut layers = image.manifest.layers.iter();
    let history = if image.config.history.is_empty() {
        // No history recorded: one made-up entry per layer.
        image
            .manifest
            .layers
            .iter()
            .map(|_| Default::default())
            .collect()
    } else {
        image.config.history.clone()
    };
    let mut rows = Vec::new();
    for h in &history {
        let size = if h.empty_layer {
            0
        } else {
            // What the layer holds, as Docker counts it (an empty RUN is
            // 0B), not its tar's bytes.
            layers
                .next()
                .map_or(0, |l| store.layer_content_size(l).unwrap_or(l.size))
        };
        let mut by = h.created_by.clone().unwrap_or_default();
        if !no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        let created = h.created.clone().unwrap_or_default();
        rows.push(json!({
            "Comment": h.comment.clone().unwrap_or_default(),
            "CreatedAt": created_at(&created),
            "CreatedBy": by,
            "CreatedSince": since(&created),
            "ID": "<missing>",
            "Size": human_size(size),
        }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = Value::String(if no_trunc {
            image.id.to_string()
        } else {
            image.id.short().to_string()
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd_image::tests::store;

    fn formatted(store: &Store, format: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        history(store, &mut out, "busybox", false, false, Some(format))?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn history_format_fields_and_table() {
        let (_d, store, img) = store();
        let text = formatted(&store, "{{.ID}} {{.Size}}").unwrap();
        // An empty layer (a 1 KiB tar) holds nothing: 0B, as Docker says.
        assert_eq!(
            text.lines().next(),
            Some(&*format!("{} 0B", img.id.short())),
            "{text}"
        );
        let text = formatted(&store, r"table {{.ID}}\t{{.CreatedBy}}").unwrap();
        assert!(text.starts_with("IMAGE          CREATED BY\n"), "{text:?}");
        assert!(text.contains("rbk import"), "{text}");
        let text = formatted(&store, "{{json .}}").unwrap();
        let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for k in [
            "ID",
            "CreatedSince",
            "CreatedAt",
            "CreatedBy",
            "Size",
            "Comment",
        ] {
            assert!(row.get(k).is_some(), "{k}: {text}");
        }
        let e = format!("{:#}", formatted(&store, "{{.Nope}}").unwrap_err());
        assert!(e.contains("can't evaluate field Nope"), "{e}");
    }
}
