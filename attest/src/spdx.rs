//! An SPDX 2.3 JSON document of an image's inventory: the image as the
//! described package, every installed package as a package it contains,
//! each with its package URL (`pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12`),
//! and an annotation naming the layer that installed it when known.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::sbom::{Inventory, Manager, Package};

/// The predicate type of an SPDX document in an in-toto statement.
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";

/// What the document describes.
#[derive(Debug, Clone)]
pub struct Described {
    /// The image's name (`app:1`).
    pub name: String,
    /// The image's manifest digest, when known, for a unique namespace.
    pub digest: Option<String>,
    /// Unix seconds for `creationInfo.created` (`SOURCE_DATE_EPOCH` when
    /// set, so the document is reproducible).
    pub created: i64,
    /// The tool, as `rbk-<version>`.
    pub tool: String,
}

/// The SPDX document of `inv`; `layer_of` maps a package to the digest of
/// the layer that installed it, recorded as an annotation.
pub fn document(
    described: &Described,
    inv: &Inventory,
    layer_of: &BTreeMap<&Package, String>,
) -> Value {
    let ns_seed = format!(
        "{}\0{}\0{}",
        described.name,
        described.digest.as_deref().unwrap_or(""),
        inv.packages.len()
    );
    let namespace = format!(
        "https://spdx.org/spdxdocs/rbk/{}-{}",
        sanitize(&described.name),
        &blake3::hash(ns_seed.as_bytes()).to_hex()[..32]
    );
    let created = crate::rfc3339(described.created);
    let root_id = "SPDXRef-Image".to_string();
    let mut packages = vec![json!({
        "name": described.name,
        "SPDXID": root_id,
        "versionInfo": described.digest.clone().unwrap_or_else(|| "NOASSERTION".into()),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": root_id,
    })];
    let mut annotations = Vec::new();
    for (i, p) in inv.packages.iter().enumerate() {
        let id = format!(
            "SPDXRef-Package-{}-{}-{i}",
            p.manager.purl_type(),
            sanitize(&p.name)
        );
        packages.push(package(p, &id, inv));
        relationships.push(json!({
            "spdxElementId": root_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
        if let Some(layer) = layer_of.get(p) {
            annotations.push((id, layer.clone()));
        }
    }
    for (id, layer) in annotations {
        if let Some(pkg) = packages.iter_mut().find(|v| v["SPDXID"] == id.as_str()) {
            pkg["annotations"] = json!([{
                "annotator": format!("Tool: {}", described.tool),
                "annotationDate": created,
                "annotationType": "OTHER",
                "comment": format!("layer {layer}"),
            }]);
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{}", described.name),
        "documentNamespace": namespace,
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: {}", described.tool)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn package(p: &Package, id: &str, inv: &Inventory) -> Value {
    let supplier = p
        .supplier
        .as_ref()
        .map(|s| format!("Organization: {s}"))
        .unwrap_or_else(|| "NOASSERTION".into());
    let mut v = json!({
        "name": p.name,
        "SPDXID": id,
        "versionInfo": p.version,
        "supplier": supplier,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(p, inv),
        }],
    });
    if let Some(src) = &p.source {
        v["sourceInfo"] = json!(format!("built from source package {src}"));
    }
    if let Some(l) = &p.license {
        // a license string from a package database is not always a valid
        // SPDX expression: keep it as a comment rather than claim it
        v["licenseComments"] = json!(format!("declared by the package database: {l}"));
    }
    v
}

/// The package URL of an installed package (purl-spec's deb, apk and rpm
/// types: namespace = distribution id, `arch` and `distro` qualifiers).
pub fn purl(p: &Package, inv: &Inventory) -> String {
    let ns = inv
        .os
        .as_ref()
        .map(|o| o.id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| match p.manager {
            Manager::Deb => "debian".into(),
            Manager::Apk => "alpine".into(),
            Manager::Rpm => "rpm".into(),
        });
    let mut s = format!(
        "pkg:{}/{}/{}@{}",
        p.manager.purl_type(),
        encode(&ns),
        encode(&p.name),
        encode(&p.version)
    );
    let mut q = Vec::new();
    if let Some(a) = &p.arch {
        q.push(format!("arch={}", encode(a)));
    }
    if let Some(os) = &inv.os {
        if let Some(v) = &os.version_id {
            q.push(format!("distro={}-{}", encode(&os.id), encode(v)));
        }
    }
    if !q.is_empty() {
        s.push('?');
        s.push_str(&q.join("&"));
    }
    s
}

/// Percent-encodes what purl-spec reserves.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SPDX ids take letters, digits, `.` and `-` only.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::OsRelease;

    fn inv() -> Inventory {
        Inventory {
            os: Some(OsRelease {
                id: "debian".into(),
                version_id: Some("12".into()),
                pretty_name: None,
            }),
            packages: vec![Package {
                manager: Manager::Deb,
                name: "libstdc++6".into(),
                version: "12.2.0-14".into(),
                arch: Some("amd64".into()),
                source: Some("gcc-12".into()),
                supplier: Some("Debian GCC Maintainers <debian-gcc@lists.debian.org>".into()),
                license: None,
            }],
        }
    }

    #[test]
    fn purls_encode_and_qualify() {
        let i = inv();
        assert_eq!(
            purl(&i.packages[0], &i),
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn the_document_describes_the_image_containing_each_package() {
        let i = inv();
        let d = Described {
            name: "app:1".into(),
            digest: Some("sha256:00".into()),
            created: 0,
            tool: "rbk-0.1.0".into(),
        };
        let layers = [(&i.packages[0], "sha256:11".to_string())].into();
        let doc = document(&d, &i, &layers);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"].as_array().map(Vec::len), Some(2));
        let id = doc["packages"][1]["SPDXID"].as_str().unwrap();
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "{id}"
        );
        assert_eq!(doc["relationships"][1]["relatedSpdxElement"], id);
        assert_eq!(
            doc["packages"][1]["annotations"][0]["comment"],
            "layer sha256:11"
        );
        assert_eq!(doc, document(&d, &i, &layers), "deterministic");
    }
}
