//! Credentials: rbk's own file (written by `rbk login`, Docker's format so
//! either tool's file can be read by the other), Docker's `config.json`, and
//! the parsing of `WWW-Authenticate` challenges.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RegistryError;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` header value.
    pub fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.username, self.password).as_bytes())
        )
    }
}

/// One `auths` entry of a Docker-format credentials file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// Fields we do not use (identitytoken, email...), kept when rewriting.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// A Docker-format credentials file: `{"auths": {"host": {"auth": b64}}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CredentialsFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    /// Other settings of a Docker config, kept when rewriting.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// The keys a registry may be filed under: Docker Hub is filed under its
/// legacy index URL by `docker login`.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == crate::reference::DEFAULT_DOMAIN || registry == super::DOCKER_HUB_API {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
        keys.push("docker.io".to_string());
    }
    keys
}

/// An error of `op` on the credentials file (or its directory or temporary
/// copy) `path`.
fn file_error<E>(op: &'static str, path: &Path) -> impl FnOnce(E) -> RegistryError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let path = path.to_path_buf();
    move |e| RegistryError::CredentialsFile {
        op,
        path,
        source: Box::new(e),
    }
}

impl CredentialsFile {
    /// Reads a credentials file; a missing file is empty.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        match fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(file_error("parse", path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(file_error("read", path)(e)),
        }
    }

    /// Writes the file atomically with mode 0600 (it holds passwords).
    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(file_error("create the directory of", dir))?;
        let data = serde_json::to_vec_pretty(self).map_err(file_error("encode", path))?;
        let tmp = path.with_extension("json.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(file_error("create", &tmp))?;
        f.write_all(&data)
            .and_then(|()| f.sync_all())
            .map_err(file_error("write", &tmp))?;
        fs::rename(&tmp, path).map_err(file_error("replace", path))
    }

    /// The credentials stored for `registry`, if any: an `auths` entry, or
    /// else what Docker's credential helper for it (`credHelpers`, then
    /// `credsStore`) answers.
    pub fn get(&self, registry: &str) -> Option<Credentials> {
        let keys = keys_for(registry);
        if let Some(c) = keys
            .iter()
            .find_map(|k| self.auths.get(k))
            .and_then(decode_entry)
        {
            return Some(c);
        }
        let helpers = self.extra.get("credHelpers").and_then(|v| v.as_object());
        let helper = keys
            .iter()
            .find_map(|k| helpers.and_then(|h| h.get(k)))
            .or_else(|| self.extra.get("credsStore"))
            .and_then(|v| v.as_str())?;
        // Only a plain name: it becomes part of a program name.
        if helper.is_empty()
            || !helper
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return None;
        }
        // Docker files Docker Hub under its legacy index URL.
        let server = if keys.len() > 3 {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        from_helper(Path::new(&format!("docker-credential-{helper}")), server)
    }

    /// Stores credentials for `registry`.
    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        let entry = self.auths.entry(registry.to_string()).or_default();
        entry.auth = Some(base64_encode(
            format!("{}:{}", creds.username, creds.password).as_bytes(),
        ));
        entry.username = None;
        entry.password = None;
    }

    /// Forgets `registry`; false when nothing was stored for it.
    pub fn remove(&mut self, registry: &str) -> bool {
        let mut removed = false;
        for k in keys_for(registry) {
            removed |= self.auths.remove(&k).is_some();
        }
        removed
    }
}

fn decode_entry(e: &AuthEntry) -> Option<Credentials> {
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64_decode(auth)?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':')?;
        return Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => None,
    }
}

/// Asks a Docker credential helper (`PROGRAM get`, server on stdin) for
/// `server`'s credentials. A missing helper, or an identity token (which
/// needs an OAuth exchange rbk does not do), gives none.
fn from_helper(program: &Path, server: &str) -> Option<Credentials> {
    let mut child = std::process::Command::new(program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout).ok()?;
    if a.username == "<token>" {
        return None;
    }
    Some(Credentials {
        username: a.username,
        password: a.secret,
    })
}

/// Finds credentials for `registry` in rbk's file, then Docker's. Files
/// that cannot be read are skipped: a broken Docker config must not stop an
/// anonymous pull.
pub(super) fn lookup(files: &[&Path], registry: &str) -> Option<Credentials> {
    files
        .iter()
        .filter_map(|p| CredentialsFile::load(p).ok())
        .find_map(|f| f.get(registry))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (as HTTP basic auth and Docker use).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// `Basic realm="…"`.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a challenge header; `None` for schemes rbk does not speak.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key=value` pairs; quoted values may contain commas (as
/// scopes with several actions do).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_known_values() {
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        for s in [&b""[..], b"a", b"ab", b"abc", b"\xff\x00\x10hello"] {
            assert_eq!(base64_decode(&base64_encode(s)).unwrap(), s);
        }
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn credentials_file_round_trip_and_docker_hub_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        let mut f = CredentialsFile::load(&path).unwrap();
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        f.set("localhost:5000", &c);
        f.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = CredentialsFile::load(&path).unwrap();
        assert_eq!(back.get("localhost:5000"), Some(c));
        let docker: CredentialsFile = serde_json::from_str(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"}},"credsStore":"x"}"#,
        )
        .unwrap();
        assert_eq!(docker.get("docker.io").unwrap().username, "user");
        assert!(serde_json::to_string(&docker)
            .unwrap()
            .contains("credsStore"));
    }

    #[test]
    fn credential_helpers_are_asked() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-rbktest");
        fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nprintf '{\"Username\":\"u-%s\",\"Secret\":\"s\"}' \"$server\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread forking while the script was open for
        // writing can make exec fail with ETXTBSY for a moment.
        let got = (0..20)
            .find_map(|_| {
                let got = from_helper(&helper, "reg.example");
                if got.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                got
            })
            .unwrap();
        assert_eq!(got.username, "u-reg.example");
        assert_eq!(got.password, "s");
        // A helper that does not exist gives no credentials, and no error.
        let f: CredentialsFile =
            serde_json::from_str(r#"{"credsStore":"rbk-no-such-helper"}"#).unwrap();
        assert_eq!(f.get("reg.example"), None);
        let f: CredentialsFile = serde_json::from_str(r#"{"credsStore":"../evil"}"#).unwrap();
        assert_eq!(f.get("reg.example"), None);
    }
}
