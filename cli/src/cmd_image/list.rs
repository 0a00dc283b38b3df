//! `rbk images`: one row per tag. An image whose blobs cannot be read (a
//! config that is not JSON, a missing manifest) is listed too, marked
//! `<broken>`, with what is wrong on stderr: it never hides the others, and
//! the listing still exits 0.

use std::io::Write;

use rbk_store::{BrokenImage, Image, Reference, Store};
use serde_json::{Map, Value};

use super::filter::ImageFilter;
use crate::format::Format;
use crate::human::{created_at, human_size, since};
use crate::table::print_table;

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

/// What `rbk images` was asked for.
#[derive(Default)]
pub(crate) struct ListOptions<'a> {
    pub quiet: bool,
    pub format: Option<&'a str>,
    pub no_trunc: bool,
    pub repository: Option<&'a str>,
    pub filters: &'a [String],
}

/// The fields of a row, with the header of a `--format 'table …'` column
/// that is not the field's name in capitals.
const HEADERS: &[(&str, Option<&str>)] = &[
    ("Broken", None),
    ("Containers", None),
    ("CreatedAt", None),
    ("CreatedSince", Some("CREATED")),
    ("Digest", None),
    ("ID", Some("IMAGE ID")),
    ("Platform", None),
    ("Repository", None),
    ("SharedSize", Some("SHARED SIZE")),
    ("Size", None),
    ("Tag", None),
    ("UniqueSize", Some("UNIQUE SIZE")),
    ("VirtualSize", Some("VIRTUAL SIZE")),
];

pub(super) fn images(store: &Store, out: &mut dyn Write, o: &ListOptions) -> anyhow::Result<i32> {
    let format = o.format.map(Format::parse).transpose()?.flatten();
    let filter = ImageFilter::parse(o.filters)?;
    let repo = o.repository.map(Reference::parse_bare).transpose()?;
    let (mut all, broken) = store.list_all()?;
    if !o.quiet {
        // SIZE as Docker shows it: what the layers hold (counted once per
        // layer and kept), not the stored bytes.
        for img in &mut all {
            img.size = img
                .manifest
                .layers
                .iter()
                .map(|l| store.layer_content_size(l).unwrap_or(l.size))
                .sum();
        }
    }
    let rows = image_rows(&all, repo.as_ref(), &filter);
    let broken = broken_rows(&broken, repo.as_ref(), &filter);
    for b in &broken {
        eprintln!(
            "rbk: warning: image {}:{} is broken: {} (`rbk image inspect` says more, \
             `rbk rmi` removes it)",
            b.repository, b.tag, b.reason
        );
    }
    let id = |i: &Image| {
        if o.no_trunc {
            i.id.to_string()
        } else {
            i.id.short().to_string()
        }
    };
    if o.quiet {
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
        Some(f) => {
            let values: Vec<Value> = fields.into_iter().map(to_object).collect();
            f.write(out, &values, HEADERS)?;
        }
        None => table(out, &fields)?,
    }
    Ok(0)
}

/// A row's fields as the object a template sees.
fn to_object(fields: Vec<(&'static str, String)>) -> Value {
    let obj: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    Value::Object(obj)
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
fn image_rows<'a>(
    all: &'a [Image],
    repo: Option<&Reference>,
    filter: &ImageFilter,
) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    for image in all {
        let labels = image.config.config.as_ref().and_then(|c| c.labels.as_ref());
        if !filter.keeps_image(!image.tags.is_empty(), labels) {
            continue;
        }
        for (repository, tag) in names(&image.tags, repo) {
            if !filter.keeps_name(&repository, &tag) {
                continue;
            }
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
fn broken_rows(
    broken: &[BrokenImage],
    repo: Option<&Reference>,
    filter: &ImageFilter,
) -> Vec<BrokenRow> {
    let mut rows = Vec::new();
    for b in broken {
        // Its labels cannot be read: a label filter leaves it out.
        if !filter.keeps_image(!b.tags.is_empty(), None) {
            continue;
        }
        let reason = rbk_scheduler::error_chain(&b.error);
        for (repository, tag) in names(&b.tags, repo) {
            if !filter.keeps_name(&repository, &tag) {
                continue;
            }
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

/// A row's fields by their `--format` names, Docker's (`{{.Repository}}`
/// …) and rbk's `Platform` and `Broken` (empty for a readable image), in
/// the order `{{json .}}` prints them.
fn row_fields(r: &Row, id: &dyn Fn(&Image) -> String) -> Vec<(&'static str, String)> {
    let created = r.image.config.created.clone().unwrap_or_default();
    let size = human_size(r.image.size);
    vec![
        ("Broken", String::new()),
        ("Containers", "N/A".to_string()),
        ("CreatedAt", created_at(&created)),
        ("CreatedSince", since(&created)),
        ("Digest", r.image.entry_digest().to_string()),
        ("ID", id(r.image)),
        ("Platform", platforms(r.image)),
        ("Repository", r.repository.clone()),
        ("SharedSize", "N/A".to_string()),
        ("Size", size.clone()),
        ("Tag", r.tag.clone()),
        ("UniqueSize", "N/A".to_string()),
        ("VirtualSize", size),
    ]
}

/// A broken image's fields: `<broken>` for its id, `Broken` says why.
fn broken_fields(b: &BrokenRow) -> Vec<(&'static str, String)> {
    let na = || "N/A".to_string();
    vec![
        ("Broken", b.reason.clone()),
        ("Containers", na()),
        ("CreatedAt", String::new()),
        ("CreatedSince", String::new()),
        ("Digest", b.digest.clone()),
        ("ID", "<broken>".to_string()),
        ("Platform", String::new()),
        ("Repository", b.repository.clone()),
        ("SharedSize", na()),
        ("Size", String::new()),
        ("Tag", b.tag.clone()),
        ("UniqueSize", na()),
        ("VirtualSize", String::new()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd_image::tests::store;

    fn list(store: &Store, o: &ListOptions) -> anyhow::Result<String> {
        let mut out = Vec::new();
        images(store, &mut out, o)?;
        Ok(String::from_utf8(out)?)
    }

    fn formatted(store: &Store, format: &str) -> anyhow::Result<String> {
        list(
            store,
            &ListOptions {
                format: Some(format),
                ..Default::default()
            },
        )
    }

    #[test]
    fn format_json_of_each_row() {
        let (_d, store, img) = store();
        let text = formatted(&store, "{{json .}}").unwrap();
        let rows: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[0]["ID"], img.id.short());
        assert_eq!(rows[0]["Containers"], "N/A");
        let go_time = rows[0]["CreatedAt"].as_str().unwrap();
        assert!(go_time.ends_with(" +0000 UTC"), "{go_time}");
    }

    #[test]
    fn format_table_has_a_header() {
        let (_d, store, _img) = store();
        let text = formatted(&store, r"table {{.Repository}}\t{{.Tag}}").unwrap();
        assert_eq!(
            text,
            "REPOSITORY          TAG\nbusybox             latest\nlocalhost/busybox   1\n"
        );
        let text = formatted(&store, r"table {{.ID}}\t{{.CreatedSince}}").unwrap();
        assert!(text.starts_with("IMAGE ID       CREATED\n"), "{text:?}");
    }

    #[test]
    fn format_unknown_field_is_an_error() {
        let (_d, store, _img) = store();
        let e = format!("{:#}", formatted(&store, "{{.Foo}}").unwrap_err());
        assert!(
            e.contains(r#"template: :1:2: executing "" at <.Foo>: can't evaluate field Foo"#),
            "{e}"
        );
        assert_eq!(formatted(&store, "plain").unwrap(), "plain\nplain\n");
        assert_eq!(
            formatted(&store, "{{.Tag | upper}}").unwrap(),
            "LATEST\n1\n"
        );
    }

    #[test]
    fn filters_by_reference_dangling_and_label() {
        let (_d, store, img) = store();
        let filtered = |f: &[&str]| {
            let filters: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            list(
                &store,
                &ListOptions {
                    format: Some("{{.Repository}}:{{.Tag}}"),
                    filters: &filters,
                    ..Default::default()
                },
            )
        };
        assert_eq!(filtered(&["reference=busy*"]).unwrap(), "busybox:latest\n");
        assert_eq!(
            filtered(&["reference=*/*:1"]).unwrap(),
            "localhost/busybox:1\n"
        );
        assert_eq!(filtered(&["dangling=true"]).unwrap(), "");
        assert_eq!(filtered(&["dangling=false"]).unwrap().lines().count(), 2);
        assert_eq!(filtered(&["label=nope"]).unwrap(), "");
        assert!(filtered(&["before=busybox"]).is_err());

        // An untagged image is dangling.
        store.untag(&Reference::parse("busybox").unwrap()).unwrap();
        store
            .untag(&Reference::parse("localhost/busybox:1").unwrap())
            .unwrap();
        assert_eq!(filtered(&["dangling=true"]).unwrap(), "<none>:<none>\n");
        let _ = img;
    }
}
