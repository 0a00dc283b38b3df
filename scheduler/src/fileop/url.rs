//! ADD of `http://` and `https://` URLs.
//!
//! The body is streamed to an anonymous temporary file while being hashed,
//! so a large download never sits in memory and `--checksum` is verified
//! before anything reaches the rootfs. As in BuildKit, the file is named
//! after the last segment of the URL path (`__unnamed__` when there is
//! none), and its mtime comes from `Last-Modified` when the server sends it.

use std::io::{Read, Seek, Write};

use sha2::Digest as _;

use super::FileOpError;

/// Whether an ADD source is a URL rather than a context path.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// A finished, verified download.
pub(crate) struct Download {
    /// The name the file gets in a destination directory.
    pub file_name: String,
    /// From `Last-Modified`, in nanoseconds since the epoch.
    pub mtime_ns: Option<i64>,
    /// The content, positioned at the start.
    pub body: std::fs::File,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha384(h) => format!("sha384:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// Parses `--checksum`: `algorithm:hex` (a bare 64-digit hex is sha256).
fn parse_checksum(value: &str) -> Result<(Hasher, String), FileOpError> {
    let bad = || FileOpError::BadChecksum {
        value: value.to_string(),
    };
    let (alg, hex) = value.split_once(':').unwrap_or(("sha256", value));
    let (hasher, len) = match alg {
        "sha256" => (Hasher::Sha256(sha2::Sha256::new()), 64),
        "sha384" => (Hasher::Sha384(sha2::Sha384::new()), 96),
        "sha512" => (Hasher::Sha512(sha2::Sha512::new()), 128),
        _ => return Err(bad()),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((hasher, format!("{alg}:{}", hex.to_ascii_lowercase())))
}

/// Downloads `url`, verifying `checksum` when given.
pub(crate) fn download(url: &str, checksum: Option<&str>) -> Result<Download, FileOpError> {
    let (hasher, expected) = match checksum.map(parse_checksum).transpose()? {
        Some((hasher, expected)) => (Some(hasher), Some(expected)),
        None => (None, None),
    };
    let (download, actual) = fetch(url, hasher)?;
    if let (Some(actual), Some(expected)) = (actual, expected) {
        if actual != expected {
            return Err(FileOpError::Checksum {
                url: url.to_string(),
                expected,
                actual,
            });
        }
    }
    Ok(download)
}

/// [`download`], and the `sha256:<hex>` of what arrived, hashed as it
/// streamed in (a remote build context names it in the provenance).
pub(crate) fn download_hashed(url: &str) -> Result<(Download, String), FileOpError> {
    let (download, digest) = fetch(url, Some(Hasher::Sha256(sha2::Sha256::new())))?;
    Ok((download, digest.unwrap_or_default()))
}

/// Streams `url` to a temporary file, hashing it with `hasher` on the way.
fn fetch(url: &str, mut hasher: Option<Hasher>) -> Result<(Download, Option<String>), FileOpError> {
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| FileOpError::Download {
        url: url.to_string(),
        source,
    };
    let io = |op: &'static str| {
        move |source: std::io::Error| FileOpError::DownloadBody {
            url: url.to_string(),
            op,
            source,
        }
    };
    let mut response = ureq::get(url).call().map_err(|e| fail(Box::new(e)))?;
    let mtime_ns = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .map(|secs| secs.saturating_mul(1_000_000_000));
    let mut body = tempfile::tempfile().map_err(io("create a temporary file"))?;
    let mut reader = response.body_mut().as_reader();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(Box::new(e)))?;
        if n == 0 {
            break;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        body.write_all(&buf[..n]).map_err(io("buffer the body"))?;
    }
    body.rewind().map_err(io("rewind the body"))?;
    let download = Download {
        file_name: file_name(url),
        mtime_ns,
        body,
    };
    Ok((download, hasher.map(Hasher::finish)))
}

/// The last segment of the URL's path, percent-decoded.
fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    let last = path.rsplit('/').next().unwrap_or("");
    let name = percent_decode(last);
    if name.is_empty() || name == "." || name == ".." {
        "__unnamed__".to_string()
    } else {
        name
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).replace('/', "%2F")
}

/// Parses an HTTP date in its preferred form, `Sun, 06 Nov 1994 08:49:37
/// GMT`, to seconds since the epoch.
pub(crate) fn parse_http_date(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let _weekday = it.next()?;
    let day: i64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// well-known algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(file_name("https://h/x/y/tool.tar.gz?sig=1"), "tool.tar.gz");
        assert_eq!(file_name("http://h/a%20b"), "a b");
        assert_eq!(file_name("http://h/"), "__unnamed__");
        assert_eq!(file_name("http://h"), "__unnamed__");
    }

    #[test]
    fn checksums_parse() {
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum("md5:00").is_err());
        let hex = "A".repeat(64);
        let (_, norm) = parse_checksum(&format!("sha256:{hex}")).unwrap();
        assert_eq!(norm, format!("sha256:{}", "a".repeat(64)));
    }
}
