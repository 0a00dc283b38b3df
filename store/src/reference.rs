//! Image references with Docker's normalisation: `nginx` is
//! `docker.io/library/nginx:latest`, `host:5000/team/app:v1` keeps its
//! registry, `name@sha256:…` pins a manifest.
//!
//! The full form is what `index.json` stores; [`Reference::familiar`] is what
//! users see, as `docker images` shows it.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::StoreError;

/// The registry a name without one belongs to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag a name without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: domain, path, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(text: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidReference {
        text: text.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parses and normalises `text`. A name without tag or digest gets
    /// `:latest`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let mut r = Self::parse_bare(text)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises `text` without adding a default tag (for
    /// `rbk images NAME`-style repository filters).
    pub fn parse_bare(text: &str) -> Result<Self, StoreError> {
        if text.is_empty() {
            return Err(invalid(text, "the name is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((name, d)) => {
                let d = d
                    .parse::<Digest>()
                    .map_err(|_| invalid(text, format!("{d:?} is not a sha256:<64 hex> digest")))?;
                (name, Some(d))
            }
            None => (text, None),
        };
        // The tag follows the last ':' after the last '/', so that a
        // registry port (`host:5000/app`) is not mistaken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(text, tag)?;
        }
        if name.is_empty() {
            return Err(invalid(text, "the repository name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(
                text,
                format!("the repository name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if digest.is_none() && tag.is_none() && is_full_hex_id(name) {
            return Err(invalid(
                text,
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }
        let (domain, path) = split_domain(name);
        check_domain(text, domain)?;
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        for component in path.split('/') {
            check_component(text, component)?;
        }
        Ok(Reference {
            domain: domain.to_string(),
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, e.g. `docker.io/library/nginx`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as users write it: `nginx`, `user/app`,
    /// `localhost/busybox`, `quay.io/x/y`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// This repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, StoreError> {
        check_tag(tag, tag)?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// This repository pinned to `digest` (and no tag): a RepoDigest.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The short form for display: `nginx:latest`,
    /// `localhost/busybox:latest`, `user/app@sha256:…`.
    pub fn familiar(&self) -> String {
        self.render(&self.familiar_repository())
    }

    fn render(&self, repo: &str) -> String {
        let mut s = repo.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

/// Docker's rule: the first component is a registry if it has a '.' or a
/// ':' or is `localhost` (and is not upper-case, which a host never is in a
/// reference); otherwise the name is on Docker Hub.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if (first.contains('.') || first.contains(':') || first == "localhost")
                && first.to_lowercase() == first =>
        {
            let domain = if first == "index.docker.io" {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// tag := [\w][\w.-]{0,127}
fn check_tag(text: &str, tag: &str) -> Result<(), StoreError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            text,
            format!("invalid tag {tag:?}: up to {MAX_TAG_LEN} letters, digits, '_', '.', '-', not starting with '.' or '-'"),
        ))
    }
}

/// domain := host-component ('.' host-component)* (':' port)?
/// host-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
/// (an IPv6 literal in brackets is accepted too)
fn check_domain(text: &str, domain: &str) -> Result<(), StoreError> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after))
                if !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') =>
            {
                (None, after.strip_prefix(':'))
            }
            _ => return Err(invalid(text, format!("invalid registry {domain:?}"))),
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                text,
                format!("invalid port in registry {domain:?}"),
            ));
        }
    }
    if let Some(host) = host {
        for c in host.split('.') {
            let b = c.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-');
            if !ok {
                return Err(invalid(text, format!("invalid registry host {host:?}")));
            }
        }
    }
    Ok(())
}

/// path-component := [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
fn check_component(text: &str, c: &str) -> Result<(), StoreError> {
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            text,
            format!("repository name {c:?} must be lower-case"),
        ));
    }
    let bad = || {
        invalid(text, format!("invalid repository name component {c:?}: use lower-case letters and digits separated by '.', '_', '__' or '-'"))
    };
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

impl fmt::Display for Reference {
    /// The full, normalised form: `docker.io/library/nginx:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&self.repository()))
    }
}

impl FromStr for Reference {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalisation_table() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
            (
                "library/nginx",
                "docker.io/library/nginx:latest",
                "nginx:latest",
            ),
            (
                "docker.io/nginx",
                "docker.io/library/nginx:latest",
                "nginx:latest",
            ),
            (
                "index.docker.io/nginx",
                "docker.io/library/nginx:latest",
                "nginx:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "localhost/busybox",
                "localhost/busybox:latest",
                "localhost/busybox:latest",
            ),
            (
                "localhost:5000/a/b:c",
                "localhost:5000/a/b:c",
                "localhost:5000/a/b:c",
            ),
            ("quay.io/x/y", "quay.io/x/y:latest", "quay.io/x/y:latest"),
            (
                "a.b-c.d:443/x__y.z-w/q",
                "a.b-c.d:443/x__y.z-w/q:latest",
                "a.b-c.d:443/x__y.z-w/q:latest",
            ),
            (
                &format!("nginx@{D}"),
                &format!("docker.io/library/nginx@{D}"),
                &format!("nginx@{D}"),
            ),
            (
                &format!("nginx:t@{D}"),
                &format!("docker.io/library/nginx:t@{D}"),
                &format!("nginx:t@{D}"),
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(
                Reference::parse(&r.to_string()).unwrap(),
                r,
                "{input} round trip"
            );
        }
    }

    #[test]
    fn rejects_with_the_offending_text() {
        let cases = [
            ("", "empty"),
            ("Nginx", "lower-case"),
            ("nginx:", "invalid tag"),
            ("nginx:-x", "invalid tag"),
            ("a//b", "component"),
            ("a/b-/c", "component"),
            ("a...b", "component"),
            ("nginx@sha256:abc", "digest"),
            ("host:port/x", "port"),
            ("-host.io/x", "registry host"),
            (&"a".repeat(256), "longer"),
            (&"a".repeat(64), "image id"),
            ("nginx:has space", "invalid tag"),
        ];
        for (input, needle) in cases {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input}: {err}");
        }
    }

    #[test]
    fn uppercase_first_component_is_not_a_host() {
        // `Foo.com/x` would be a host if lower-case; upper-case makes it a
        // (bad) repository path instead, as in Docker.
        let err = Reference::parse("Foo.com/x").unwrap_err().to_string();
        assert!(err.contains("lower-case"), "{err}");
    }
}
