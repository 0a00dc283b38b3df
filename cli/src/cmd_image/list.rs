//! `rbk images`: one row per tag. An image whose blobs cannot be read (a
//! config that is not JSON, a missing manifest) is listed too, marked
//! `<broken>`, with what is wrong on stderr: it never hides the others, and
//! the listing still exits 0.

use std::io::Write;

use rbk_store::{BrokenImage, Image, Reference, Store};
use serde_json::{Map, Value};

use super::{human_size, print_table, since};

/// One row of `rbk images`: an image under one of its tags (or none).
struct Row<'a> {
    image: &'a Image,
    repository: String,
    tag: String,
}

/// A row for an image that cannot be read.
struct BrokenRow {
    repository: String,
    tag: String,
    digest: String,
    reason: String,
}

pub(super) fn images(
    store: &Store,
    out: &mut dyn Write,
    quiet: bool,
    format: Option<&str>,
    no_trunc: bool,
    repository: Option<&str>,
) -> anyhow::Result<i32> {
    let filter = repository.map(Reference::parse_bare).transpose()?;
    let (all, broken) = store.list_all()?;
    let rows = image_rows(&all, filter.as_ref());
    let broken = broken_rows(&broken, filter.as_ref());
    for b in &broken {
        eprintln!(
            "rbk: warning: image {}:{} is broken: {} (`rbk image inspect` says more, \
             `rbk rmi` removes it)",
            b.repository, b.tag, b.reason
        );
    }
    let id = |i: &Image| {
        if no_trunc {
            i.id.to_string()
        } else {
            i.id.short().to_string()
        }
    };
    if quiet {
        let mut seen = Vec::new();
        for r in &rows {
            if !seen.contains(&r.image.id) {
                seen.push(r.image.id.clone());
                writeln!(out, "{}", id(r.image))?;
            }
        }
        return Ok(0);
    }
    let mut fields: Vec<Vec<(&'static str, String)>> =
        rows.iter().map(|r| row_fields(r, &id)).collect();
    fields.extend(broken.iter().map(broken_fields));
    match format {
        Some("json") => {
            for f in fields {
                let obj: Map<String, Value> = f
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v)))
                    .collect();
                writeln!(out, "{}", Value::Object(obj))?;
            }
        }
        Some(t) if t != "table" => {
            let t = t.replace("\\t", "\t").replace("\\n", "\n");
            for f in fields {
                let mut line = t.clone();
                for (k, v) in f {
                    line = line.replace(&format!("{{{{.{k}}}}}"), &v);
                }
                writeln!(out, "{line}")?;
            }
        }
        _ => table(out, &fields)?,
    }
    Ok(0)
}

fn table(out: &mut dyn Write, fields: &[Vec<(&'static str, String)>]) -> std::io::Result<()> {
    let columns = [
        ("REPOSITORY", "Repository"),
        ("TAG", "Tag"),
        ("IMAGE ID", "ID"),
        ("CREATED", "CreatedSince"),
        ("SIZE", "Size"),
        ("PLATFORM", "Platform"),
    ];
    let rows: Vec<Vec<String>> = fields
        .iter()
        .map(|f| {
            columns
                .iter()
                .map(|(_, key)| {
                    f.iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    print_table(out, &header, &rows)
}

/// One row per tag (and one `<none>` row per untagged image when there is
/// no repository filter), like `docker images`.
fn image_rows<'a>(all: &'a [Image], filter: Option<&Reference>) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    for image in all {
        for (repository, tag) in names(&image.tags, filter) {
            rows.push(Row {
                image,
                repository,
                tag,
            });
        }
    }
    rows
}

/// The broken images' rows, as [`image_rows`] makes them.
fn broken_rows(broken: &[BrokenImage], filter: Option<&Reference>) -> Vec<BrokenRow> {
    let mut rows = Vec::new();
    for b in broken {
        let reason = rbk_scheduler::error_chain(&b.error);
        for (repository, tag) in names(&b.tags, filter) {
            rows.push(BrokenRow {
                repository,
                tag,
                digest: b.digest.to_string(),
                reason: reason.clone(),
            });
        }
    }
    rows
}

/// (repository, tag) of each of `tags` that passes `filter`, or
/// `<none>`/`<none>` for an untagged image when there is no filter.
fn names(tags: &[Reference], filter: Option<&Reference>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if tags.is_empty() && filter.is_none() {
        out.push(("<none>".into(), "<none>".into()));
    }
    for t in tags {
        if let Some(f) = filter {
            if f.repository() != t.repository() || f.tag().is_some_and(|ft| Some(ft) != t.tag()) {
                continue;
            }
        }
        out.push((
            t.familiar_repository(),
            t.tag().unwrap_or("<none>").to_string(),
        ));
    }
    out
}

/// The platforms of an image here, comma-separated: those its index holds
/// in the store, or its own.
fn platforms(image: &Image) -> String {
    match &image.index {
        Some(index) => index.present_platforms().join(","),
        None => image.platform().map(|p| p.to_string()).unwrap_or_default(),
    }
}

/// A row's fields by their `--format` names (`{{.Repository}}` …); `Broken`
/// is empty for a readable image.
fn row_fields(r: &Row, id: &dyn Fn(&Image) -> String) -> Vec<(&'static str, String)> {
    let created = r.image.config.created.clone().unwrap_or_default();
    vec![
        ("Repository", r.repository.clone()),
        ("Tag", r.tag.clone()),
        ("ID", id(r.image)),
        ("Digest", r.image.entry_digest().to_string()),
        ("Platform", platforms(r.image)),
        ("CreatedSince", since(&created)),
        ("CreatedAt", created),
        ("Size", human_size(r.image.size)),
        ("Broken", String::new()),
    ]
}

/// A broken image's fields: `<broken>` for its id, `Broken` says why.
fn broken_fields(b: &BrokenRow) -> Vec<(&'static str, String)> {
    vec![
        ("Repository", b.repository.clone()),
        ("Tag", b.tag.clone()),
        ("ID", "<broken>".to_string()),
        ("Digest", b.digest.clone()),
        ("Platform", String::new()),
        ("CreatedSince", String::new()),
        ("CreatedAt", String::new()),
        ("Size", String::new()),
        ("Broken", b.reason.clone()),
    ]
}
