//! `rbk inspect`: images as Docker's `image inspect` JSON documents, or
//! a `--format` template over each.

use std::io::Write;

use anyhow::Context;
use rbk_store::oci::ContainerConfig;
use rbk_store::{Image, Reference, Store};
use serde_json::{json, Map, Value};

/// Docker's `Config` object: every standard key present, null when unset.
fn docker_config(c: Option<&ContainerConfig>) -> Value {
    let c = c.cloned().unwrap_or_default();
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put("Hostname", json!(""));
    put("Domainname", json!(""));
    put("User", json!(c.user.clone().unwrap_or_default()));
    put("AttachStdin", json!(false));
    put("AttachStdout", json!(false));
    put("AttachStderr", json!(false));
    if let Some(p) = &c.exposed_ports {
        put("ExposedPorts", json!(p));
    }
    put("Tty", json!(false));
    put("OpenStdin", json!(false));
    put("StdinOnce", json!(false));
    put("Env", json!(c.env));
    put("Cmd", json!(c.cmd));
    if let Some(h) = &c.healthcheck {
        put("Healthcheck", json!(h));
    }
    if let Some(a) = c.args_escaped {
        put("ArgsEscaped", json!(a));
    }
    put("Image", json!(""));
    put("Volumes", json!(c.volumes));
    put(
        "WorkingDir",
        json!(c.working_dir.clone().unwrap_or_default()),
    );
    put("Entrypoint", json!(c.entrypoint));
    put("OnBuild", json!(c.on_build));
    put("Labels", json!(c.labels));
    if let Some(s) = &c.stop_signal {
        put("StopSignal", json!(s));
    }
    if let Some(s) = &c.shell {
        put("Shell", json!(s));
    }
    Value::Object(m)
}

/// The `docker image inspect` object of one image.
pub fn inspect_json(store: &Store, image: &Image) -> Value {
    let chains = image.chain_ids();
    let fs_dir = |d: &rbk_store::Digest| store.snapshot_dir(d).join("fs").display().to_string();
    let mut data = Map::new();
    if let Some(top) = chains.last() {
        let lower: Vec<String> = chains[..chains.len() - 1]
            .iter()
            .rev()
            .map(fs_dir)
            .collect();
        if !lower.is_empty() {
            data.insert("LowerDir".into(), json!(lower.join(":")));
        }
        data.insert("UpperDir".into(), json!(fs_dir(top)));
        data.insert(
            "WorkDir".into(),
            json!(store.snapshot_dir(top).join("work").display().to_string()),
        );
    }
    let comment = image
        .config
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    let mut v = json!({
        "Id": image.id,
        "RepoTags": image.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
        "RepoDigests": image.tags.iter().map(|t| t.with_digest(image.entry_digest().clone()).familiar()).collect::<std::collections::BTreeSet<_>>(),
        "Parent": "",
        "Comment": comment,
        "Created": image.config.created.clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": image.config.author.clone().unwrap_or_default(),
        "Config": docker_config(image.config.config.as_ref()),
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Size": image.size,
        "GraphDriver": { "Data": data, "Name": "overlay2" },
        "RootFS": { "Type": image.config.rootfs.kind, "Layers": image.config.rootfs.diff_ids },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    });
    if let (Some(variant), Some(obj)) = (&image.config.variant, v.as_object_mut()) {
        obj.insert("Variant".into(), json!(variant));
    }
    // What the name points at, as Docker's containerd store shows it: the
    // index of a multi-platform image, with the platforms held here.
    if let (Ok(desc), Some(obj)) = (store.entry_descriptor(image), v.as_object_mut()) {
        obj.insert(
            "Descriptor".into(),
            json!({"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}),
        );
        if let Some(index) = &image.index {
            obj.insert("Platforms".into(), json!(index.present_platforms()));
        }
    }
    v
}

pub(super) fn inspect(
    store: &Store,
    out: &mut dyn Write,
    names: &[String],
    platform: Option<&str>,
    format: Option<&str>,
) -> anyhow::Result<i32> {
    // `json` is the default document, as with Docker.
    let format = match format {
        Some(f) if f.trim() == "json" => None,
        Some(f) => Some(crate::format::Format::parse(f)?),
        None => None,
    }
    .flatten();
    let want = platform
        .map(|p| p.parse::<rbk_store::oci::PlatformSpec>())
        .transpose()
        .context("--platform")?;
    let mut found = Vec::new();
    let mut code = 0;
    for n in names {
        match store.resolve_for(n, want.as_ref()) {
            Ok(image) => found.push(inspect_json(store, &image)),
            Err(e) => {
                eprintln!("rbk: {}", rbk_scheduler::error_chain(&e));
                code = 1;
            }
        }
    }
    match format {
        Some(f) => {
            for v in &found {
                writeln!(out, "{}", f.render(v)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
    }
    Ok(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cmd_image::tests::store;

    #[test]
    fn inspect_has_docker_fields() {
        let (_d, store, img) = store();
        let v = inspect_json(&store, &img);
        assert_eq!(v["Id"], img.id.to_string());
        assert_eq!(
            v["RepoTags"],
            json!(["busybox:latest", "localhost/busybox:1"])
        );
        assert_eq!(v["Config"]["Cmd"], json!(["/bin/sh"]));
        assert_eq!(v["Config"]["Entrypoint"], Value::Null);
        assert_eq!(v["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(v["RootFS"]["Layers"], json!(img.config.rootfs.diff_ids));
        let upper = v["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
        assert!(
            upper.ends_with(&format!("snapshots/{}/fs", img.chain_ids()[0].hex())),
            "{upper}"
        );
        assert!(v["GraphDriver"]["Data"].get("LowerDir").is_none());
        assert_eq!(v["Os"], "linux");
    }

    #[test]
    fn inspect_format() {
        let (_d, store, img) = store();
        let run = |f: &str| {
            let mut out = Vec::new();
            inspect(&store, &mut out, &["busybox".to_string()], None, Some(f))
                .map(|_| String::from_utf8(out).unwrap())
        };
        assert_eq!(run("{{.Id}}").unwrap(), format!("{}\n", img.id));
        assert_eq!(run("{{index .RepoTags 0}}").unwrap(), "busybox:latest\n");
        assert_eq!(run("{{.Config.Cmd}}").unwrap(), "[/bin/sh]\n");
        let config: Value = serde_json::from_str(&run("{{json .Config}}").unwrap()).unwrap();
        assert_eq!(config["ExposedPorts"], json!({"80/tcp": {}}));
        let e = format!("{:#}", run("{{.Foo}}").unwrap_err());
        assert!(e.contains("at <.Foo>: can't evaluate field Foo"), "{e}");
        let doc: Value = serde_json::from_str(&run("json").unwrap()).unwrap();
        assert_eq!(doc[0]["Id"], img.id.to_string());
    }
}
