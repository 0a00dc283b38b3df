use serde_json::json;

use super::*;

fn render(t: &str, data: &Value) -> Result<String, String> {
    let f = Format::parse(t)
        .map_err(|e| format!("{e:#}"))?
        .ok_or("no template")?;
    f.render(data).map_err(|e| format!("{e:#}"))
}

fn image() -> Value {
    json!({
        "Id": "sha256:abc",
        "RepoTags": ["busybox:latest", "localhost/busybox:1"],
        "Size": 4264000,
        "Config": {"Env": ["PATH=/bin", "A=1"], "Labels": {"b": "2", "a": "1"}, "Cmd": null},
    })
}

#[test]
fn fields_and_nested_fields() {
    let d = image();
    assert_eq!(render("{{.Id}}", &d).unwrap(), "sha256:abc");
    assert_eq!(render("{{.Config.Env}}", &d).unwrap(), "[PATH=/bin A=1]");
    assert_eq!(render("{{.Config.Labels}}", &d).unwrap(), "map[a:1 b:2]");
    assert_eq!(render("{{.Config.Cmd}}", &d).unwrap(), "<nil>");
    assert_eq!(render("{{.Size}}", &d).unwrap(), "4264000");
    assert_eq!(render("id={{ .Id }}!", &d).unwrap(), "id=sha256:abc!");
}

#[test]
fn unknown_field_is_an_error_like_go() {
    let e = render("{{.Foo}}", &image()).unwrap_err();
    assert!(
        e.contains(r#"template: :1:2: executing "" at <.Foo>: can't evaluate field Foo"#),
        "{e}"
    );
    assert!(e.contains(r#"--format "{{.Foo}}""#), "{e}");
    let e = render("a\n  {{ .Config.Nope }}", &image()).unwrap_err();
    assert!(e.contains(":2:5: executing \"\" at <.Config.Nope>"), "{e}");
}

#[test]
fn functions_and_pipes() {
    let d = image();
    assert_eq!(
        render("{{index .RepoTags 0}}", &d).unwrap(),
        "busybox:latest"
    );
    assert_eq!(
        render("{{json .Config.Env}}", &d).unwrap(),
        r#"["PATH=/bin","A=1"]"#
    );
    assert_eq!(render("{{.Id | upper}}", &d).unwrap(), "SHA256:ABC");
    assert_eq!(
        render("{{index .RepoTags 1 | lower | len}}", &d).unwrap(),
        "19"
    );
    assert_eq!(
        render(r#"{{join .Config.Env ","}}"#, &d).unwrap(),
        "PATH=/bin,A=1"
    );
    assert_eq!(render(r#"{{index .Config.Labels "b"}}"#, &d).unwrap(), "2");
    assert_eq!(
        render(r#"{{printf "%s=%d" .Id .Size}}"#, &d).unwrap(),
        "sha256:abc=4264000"
    );
    assert_eq!(
        render("{{json (index .RepoTags 1)}}", &d).unwrap(),
        r#""localhost/busybox:1""#
    );
    assert_eq!(
        render(r#"{{title "hello big world"}}"#, &d).unwrap(),
        "Hello Big World"
    );
    let e = render("{{index .RepoTags 5}}", &d).unwrap_err();
    assert!(
        e.contains("error calling index: index out of range: 5"),
        "{e}"
    );
}

#[test]
fn json_of_the_whole_row() {
    let d = json!({"ID": "abc", "Tag": "1"});
    assert_eq!(
        render("{{json .}}", &d).unwrap(),
        r#"{"ID":"abc","Tag":"1"}"#
    );
    assert_eq!(render("json", &d).unwrap(), r#"{"ID":"abc","Tag":"1"}"#);
}

#[test]
fn control_flow() {
    let d = image();
    assert_eq!(
        render("{{range .Config.Env}}{{println .}}{{end}}", &d).unwrap(),
        "PATH=/bin\nA=1\n"
    );
    assert_eq!(
        render("{{range .Config.Cmd}}x{{else}}none{{end}}", &d).unwrap(),
        "none"
    );
    assert_eq!(
        render(r#"{{if eq .Id "sha256:abc"}}yes{{else}}no{{end}}"#, &d).unwrap(),
        "yes"
    );
    assert_eq!(
        render("{{with .Config}}{{.Env}}{{end}}", &d).unwrap(),
        "[PATH=/bin A=1]"
    );
    assert_eq!(
        render("{{range $.RepoTags}}{{$.Id}} {{end}}", &d).unwrap(),
        "sha256:abc sha256:abc "
    );
    assert_eq!(render("a  {{- .Id -}}  b", &d).unwrap(), "asha256:abcb");
}

#[test]
fn bad_templates_say_what_is_wrong() {
    let d = image();
    for (t, want) in [
        ("{{.Id", "unclosed action"),
        ("{{nosuch .Id}}", r#"function "nosuch" not defined"#),
        ("{{if .Id}}x", "unexpected EOF"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{.Id .Size}}", "can't give argument to non-function"),
        (r#"{{"abc}}"#, "unclosed action"),
    ] {
        let e = render(t, &d).unwrap_err();
        assert!(e.contains(want), "{t}: {e}");
        assert!(e.contains(&format!("{t:?}")), "{t}: {e}");
    }
}

#[test]
fn text_without_actions_is_printed_as_is() {
    assert_eq!(render("hello", &image()).unwrap(), "hello");
    assert_eq!(render(r"a\tb", &image()).unwrap(), "a\tb");
}

#[test]
fn table_has_a_header_and_aligns() {
    let f = Format::parse(r"table {{.Repository}}\t{{.ID}}\t{{.CreatedSince}}")
        .unwrap()
        .unwrap();
    let rows = [
        json!({"Repository": "busybox", "ID": "0123456789ab", "CreatedSince": "2 days ago"}),
        json!({"Repository": "a/much-longer-name", "ID": "x", "CreatedSince": "N/A"}),
    ];
    let mut out = Vec::new();
    f.write(
        &mut out,
        &rows,
        &[
            ("Repository", None),
            ("ID", Some("IMAGE ID")),
            ("CreatedSince", Some("CREATED")),
        ],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "REPOSITORY           IMAGE ID       CREATED\n\
         busybox              0123456789ab   2 days ago\n\
         a/much-longer-name   x              N/A\n"
    );
}

#[test]
fn plain_table_and_empty_are_the_default() {
    assert!(Format::parse("table").unwrap().is_none());
    assert!(Format::parse("").unwrap().is_none());
}

#[test]
fn header_words() {
    assert_eq!(words_upper("CreatedAt"), "CREATED AT");
    assert_eq!(words_upper("ID"), "ID");
}

#[test]
fn unknown_field_fails_with_no_rows_too() {
    let f = Format::parse("{{.Foo}}").unwrap().unwrap();
    let e = f.write(&mut Vec::new(), &[], &[("ID", None)]).unwrap_err();
    assert!(
        format!("{e:#}").contains("can't evaluate field Foo"),
        "{e:#}"
    );
    let f = Format::parse("{{.ID}}").unwrap().unwrap();
    let mut out = Vec::new();
    f.write(&mut out, &[], &[("ID", None)]).unwrap();
    assert!(out.is_empty());
}

/// Random templates made of template pieces: parsing and running them
/// fails or succeeds, never panics.
#[test]
fn random_templates_never_panic() {
    let pieces = [
        "{{",
        "}}",
        "{{-",
        "-}}",
        " - ",
        " ",
        ".",
        ".Id",
        ".Config",
        ".Env",
        "$",
        "|",
        "(",
        ")",
        "\"",
        "`",
        "\\",
        "if ",
        "end",
        "else",
        "range ",
        "with ",
        "json ",
        "index ",
        "pad ",
        "printf ",
        "%",
        "0",
        "-1",
        "99999999999",
        "\n",
        "x",
        "é",
        "/*",
        "*/",
        "\\t",
        "table ",
    ];
    let data = image();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut t = String::new();
        for _ in 0..(seed % 12) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            t.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        seed = seed.wrapping_add(1);
        if let Ok(Some(f)) = Format::parse(&t) {
            let _ = f.write(
                &mut Vec::new(),
                std::slice::from_ref(&data),
                &[("Id", None)],
            );
        }
    }
    let deep = "(".repeat(5000);
    assert!(Format::parse(&format!("{{{{{deep}}}}}")).is_err());
    let nested = "{{if 1}}".repeat(5000);
    assert!(Format::parse(&nested).is_err());
}
