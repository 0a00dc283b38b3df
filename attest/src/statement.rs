//! The in-toto attestation statement (v1): what an attestation is about
//! (its subjects, by digest) and what it says (a typed predicate).

use serde::Serialize;
use serde_json::Value;

/// The statement type of in-toto attestation framework v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// The media type of a layer holding an in-toto statement in an
/// attestation manifest.
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// The annotation naming a statement layer's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// One artifact the statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// A name for it: for an image, its package URL
    /// (`pkg:docker/name@tag?platform=linux%2Famd64`).
    pub name: String,
    /// Its digests by algorithm (`{"sha256": "<hex>"}`).
    pub digest: std::collections::BTreeMap<String, String>,
}

impl Subject {
    /// A subject named `name` with a `sha256:<hex>` digest.
    pub fn sha256(name: impl Into<String>, digest: &str) -> Subject {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        Subject {
            name: name.into(),
            digest: [("sha256".to_string(), hex.to_string())].into(),
        }
    }
}

/// An in-toto v1 statement.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    /// Always [`STATEMENT_V1`].
    #[serde(rename = "_type")]
    pub kind: &'static str,
    /// What it is about.
    pub subject: Vec<Subject>,
    /// The predicate's type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Value,
}

impl Statement {
    /// A statement of `predicate` (of type `predicate_type`) about `subject`.
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: Value) -> Statement {
        Statement {
            kind: STATEMENT_V1,
            subject,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// Its JSON bytes: stable for the same statement (keys in the order
    /// written, no whitespace), so two identical builds give identical
    /// attestation blobs.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The package URL of an image (`pkg:docker/…`), as BuildKit names image
/// subjects and base images: `name` is a reference without digest,
/// `platform` like `linux/arm64/v8`.
pub fn image_purl(name: &str, platform: Option<&str>) -> String {
    let (repo, tag) = split_tag(name);
    let mut s = format!("pkg:docker/{repo}");
    if let Some(tag) = tag {
        s.push('@');
        s.push_str(tag);
    }
    if let Some(p) = platform {
        s.push_str("?platform=");
        s.push_str(&p.replace('/', "%2F"));
    }
    s
}

/// `repo[:tag]` → (repo, tag); a port in the registry host is not a tag.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_purls_name_repo_tag_and_platform() {
        assert_eq!(
            image_purl("docker.io/library/alpine:3.17", Some("linux/amd64")),
            "pkg:docker/docker.io/library/alpine@3.17?platform=linux%2Famd64"
        );
        assert_eq!(
            image_purl("localhost:5000/app", None),
            "pkg:docker/localhost:5000/app"
        );
        assert_eq!(
            image_purl("localhost:5000/app:1@sha256:ab", None),
            "pkg:docker/localhost:5000/app@1"
        );
    }

    #[test]
    fn a_statement_serialises_with_the_v1_type_first() {
        let s = Statement::new(
            vec![Subject::sha256("pkg:docker/app@1", "sha256:abc")],
            "https://slsa.dev/provenance/v1",
            serde_json::json!({"x": 1}),
        );
        let text = String::from_utf8(s.to_bytes()).unwrap();
        assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"pkg:docker/app@1","digest":{"sha256":"abc"}}]"#), "{text}");
        assert!(
            text.ends_with(
                r#""predicateType":"https://slsa.dev/provenance/v1","predicate":{"x":1}}"#
            ),
            "{text}"
        );
    }
}
