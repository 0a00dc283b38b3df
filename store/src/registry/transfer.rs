//! Rules every transfer follows, whatever the registry does: a floor on
//! progress (a registry that trickles or goes silent is left, and the
//! error names it), `Retry-After` honoured within a cap, credentials sent
//! only to the origin they belong to, and `Content-Range` checked before a
//! blob download resumes; and the URL helpers they use.

use std::io::Read;
use std::time::{Duration, Instant};

use ureq::http::{self, Uri};

/// The least progress a transfer must make: `bytes` in every `window`
/// (averaged over it), like curl's `--speed-limit`/`--speed-time`. Written
/// `BYTES/SECONDS` (`$RBK_REGISTRY_MIN_SPEED`, `--min-speed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinSpeed {
    /// Bytes that must move in each window.
    pub bytes: u64,
    /// The window.
    pub window: Duration,
}

impl Default for MinSpeed {
    /// 64 KiB a minute: any working link does far better; a registry that
    /// trickles or stalls is left within about a minute.
    fn default() -> Self {
        MinSpeed {
            bytes: 64 << 10,
            window: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Display for MinSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.window.as_secs_f64();
        write!(f, "{}/{}", self.bytes, secs)
    }
}

impl std::str::FromStr for MinSpeed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid minimum speed {s:?}: expected BYTES/SECONDS, e.g. 65536/60 \
                 (at least 65536 bytes every 60 s)"
            )
        };
        let (bytes, secs) = s.trim().split_once('/').ok_or_else(bad)?;
        let bytes: u64 = bytes.trim().parse().map_err(|_| bad())?;
        let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
        if !secs.is_finite() || !(0.05..=86_400.0).contains(&secs) {
            return Err(bad());
        }
        Ok(MinSpeed {
            bytes,
            window: Duration::from_secs_f64(secs),
        })
    }
}

/// The error a reader gives when the registry `host` is below `floor`.
pub(crate) fn too_slow(host: &str, floor: MinSpeed, got: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "registry {host} is too slow: {got} bytes in {:.1} s, below the floor of {} bytes \
             per {:.1} s (set RBK_REGISTRY_MIN_SPEED=BYTES/SECONDS to change it)",
            floor.window.as_secs_f64(),
            floor.bytes,
            floor.window.as_secs_f64()
        ),
    )
}

/// A reader (a response body, or a file being uploaded) that fails once a
/// whole window passes with fewer than the floor's bytes, and turns the
/// client's read timeout (set to the window) into the same error.
pub(crate) struct Paced<'a, R> {
    inner: R,
    host: &'a str,
    floor: MinSpeed,
    window_start: Instant,
    in_window: u64,
    /// Bytes read in all.
    pub(crate) done: u64,
}

impl<'a, R> Paced<'a, R> {
    pub(crate) fn new(inner: R, host: &'a str, floor: MinSpeed) -> Self {
        Paced {
            inner,
            host,
            floor,
            window_start: Instant::now(),
            in_window: 0,
            done: 0,
        }
    }
}

impl<R: Read> Read for Paced<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => return Err(too_slow(self.host, self.floor, 0)),
            Err(e) => return Err(e),
        };
        self.done += n as u64;
        self.in_window += n as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= self.floor.window {
            // Averaged over the window that just ended.
            let needed =
                self.floor.bytes as f64 * elapsed.as_secs_f64() / self.floor.window.as_secs_f64();
            if n > 0 && (self.in_window as f64) < needed {
                return Err(too_slow(self.host, self.floor, self.in_window));
            }
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        Ok(n)
    }
}

/// Whether an I/O error is the client's read timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    e.kind() == std::io::ErrorKind::TimedOut
        || text.contains("timeout")
        || text.contains("timed out")
}

/// The longest wait a `Retry-After` is honoured for; a registry asking for
/// more is given up on (the error says what it asked).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How long a 429 or 503 answer asks to wait (`Retry-After`: seconds or
/// an HTTP date), if it says.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let now = time::OffsetDateTime::now_utc();
    let wait = (when - now).whole_milliseconds().max(0);
    Some(Duration::from_millis(
        u64::try_from(wait).unwrap_or(u64::MAX),
    ))
}

/// Scheme, lower-cased host and port (default ports filled in) of a URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(p), _) => p,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, _) => return None,
    };
    Some((scheme, host, port))
}

/// Whether `url` is on the same origin (scheme, host and port) as `base`:
/// only then does a request carry the registry's credentials or tokens. A
/// `Location` on another host, or the same host over plain HTTP, gets none.
pub(crate) fn same_origin(base: &str, url: &str) -> bool {
    match (origin(base), origin(url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Whether `url` is plain HTTP.
pub(crate) fn is_plain_http(url: &str) -> bool {
    origin(url).is_some_and(|(scheme, _, _)| scheme == "http")
}

/// Checks a 206 answer's `Content-Range: bytes START-END/TOTAL` against the
/// resumed request: it must start at `from` and the total (when given)
/// must be `size`.
pub(crate) fn range_matches(headers: &http::HeaderMap, from: u64, size: u64) -> bool {
    let Some(v) = headers.get("content-range").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = v.trim().strip_prefix("bytes ") else {
        return false;
    };
    let Some((span, total)) = rest.split_once('/') else {
        return false;
    };
    let Some((start, end)) = span.split_once('-') else {
        return false;
    };
    let (Ok(start), Ok(end)) = (start.trim().parse::<u64>(), end.trim().parse::<u64>()) else {
        return false;
    };
    let total_ok = total.trim() == "*" || total.trim().parse::<u64>() == Ok(size);
    start == from && end >= start && end < size && total_ok
}

/// The host (and port) of a URL, for messages.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// `host/path` of a URL without its query (which may hold upload state),
/// for messages.
pub(crate) fn path_and_host(url: &str) -> String {
    let path = path_of(url);
    let path = path.split('?').next().unwrap_or(path);
    format!("{}{}", host_of(url), if path == url { "" } else { path })
}

/// The path part of a URL, for messages.
pub(crate) fn path_of(url: &str) -> &str {
    url.find("://")
        .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
        .unwrap_or(url)
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn min_speed_parses() {
        let m: MinSpeed = "100/2.5".parse().unwrap();
        assert_eq!(m.bytes, 100);
        assert_eq!(m.window, Duration::from_millis(2500));
        assert!("100".parse::<MinSpeed>().is_err());
        assert!("x/1".parse::<MinSpeed>().is_err());
        assert!("1/0".parse::<MinSpeed>().is_err());
        assert!("1/nan".parse::<MinSpeed>().is_err());
    }

    #[test]
    fn origins() {
        assert!(same_origin("https://r.io", "https://R.io:443/v2/x"));
        assert!(same_origin(
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5000/u?x=1"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5001/u"
        ));
        assert!(!same_origin("https://r.io", "http://r.io/u"));
        assert!(!same_origin("https://r.io", "https://r.io.evil.com/u"));
        assert!(!same_origin("https://r.io", "https://user@evil.com/u"));
        assert!(!same_origin("https://r.io", "not a url"));
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        h.insert("retry-after", later.format(fmt).unwrap().parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn content_ranges() {
        let mut h = http::HeaderMap::new();
        assert!(!range_matches(&h, 10, 100));
        h.insert("content-range", "bytes 10-99/100".parse().unwrap());
        assert!(range_matches(&h, 10, 100));
        assert!(!range_matches(&h, 11, 100));
        assert!(!range_matches(&h, 10, 200));
        h.insert("content-range", "bytes 10-99/*".parse().unwrap());
        assert!(range_matches(&h, 10, 100));
        h.insert("content-range", "bytes 10-100/*".parse().unwrap());
        assert!(!range_matches(&h, 10, 100));
    }

    #[test]
    fn a_trickle_is_too_slow() {
        struct Trickle;
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(30));
                buf[0] = 0;
                Ok(1)
            }
        }
        let floor = MinSpeed {
            bytes: 1000,
            window: Duration::from_millis(200),
        };
        let mut r = Paced::new(Trickle, "slow.example", floor);
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(
            err.to_string().contains("slow.example is too slow"),
            "{err}"
        );
    }
}
