//! A hostile registry: a loopback HTTP server whose every answer a test
//! scripts (status, headers, a body sent whole, trickled, cut off, or not
//! at all, and a Content-Length that may lie), recording every request it
//! sees (with its Authorization header). It serves each connection on its
//! own thread and stops when dropped, or after two minutes whatever
//! happens. The tests here are about credentials: where they go and where
//! they must not; `hostile_transfer` has the lies about bytes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbk_store::registry::{Client, Credentials, RegistryError, RegistryOptions};
use rbk_store::{Reference, Store};

use super::faults::routes_for;
use super::{make_image, options, quiet};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    /// Header names lower-cased.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Req {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a body goes out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pace {
    /// All at once.
    Whole,
    /// One byte at a time, this far apart.
    Trickle(Duration),
    /// The first N bytes, then the connection is closed.
    CutAfter(usize),
    /// Headers, then nothing for this long.
    Silent(Duration),
    /// Not even headers, for this long.
    Mute(Duration),
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) pace: Pace,
    /// A Content-Length other than the body's (a lie).
    pub(super) length: Option<usize>,
}

impl Reply {
    pub(super) fn new(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
            pace: Pace::Whole,
            length: None,
        }
    }

    pub(super) fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub(super) fn pace(mut self, pace: Pace) -> Self {
        self.pace = pace;
        self
    }

    pub(super) fn length(mut self, n: usize) -> Self {
        self.length = Some(n);
        self
    }
}

/// A running hostile registry.
pub(super) struct Hostile {
    pub(super) host: String,
    log: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Hostile {
    /// Every request so far.
    pub(super) fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    /// The Authorization headers of the requests so far, in order.
    pub(super) fn authorizations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(str::to_string))
            .collect()
    }
}

/// How long any server lives at most.
const LIFETIME: Duration = Duration::from_secs(120);

/// Starts a server answering every request with `handler`.
pub(super) fn serve(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let log: Arc<Mutex<Vec<Req>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(handler);
    let (l, st) = (log.clone(), stop.clone());
    std::thread::spawn(move || {
        let deadline = Instant::now() + LIFETIME;
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => {
                    let (h, l, st) = (handler.clone(), l.clone(), st.clone());
                    std::thread::spawn(move || answer(conn, &*h, &l, &st));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Hostile { host, log, stop }
}

/// Reads one request; `None` for anything that is not HTTP/1.1 (rbk's TLS
/// probe of a local registry).
fn read_request(conn: &TcpStream) -> Option<Req> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    if !first.ends_with(" HTTP/1.1\r\n") {
        return None;
    }
    let mut parts = first.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

fn answer(
    mut conn: TcpStream,
    handler: &(dyn Fn(&Req) -> Reply + Send + Sync),
    log: &Mutex<Vec<Req>>,
    stop: &AtomicBool,
) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let Some(req) = read_request(&conn) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    if let Pace::Mute(d) = reply.pace {
        wait(d, stop);
        return;
    }
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.length.unwrap_or(reply.body.len())
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let until = Instant::now() + LIFETIME;
    match reply.pace {
        Pace::Whole => {
            let _ = conn.write_all(&reply.body);
        }
        Pace::CutAfter(n) => {
            let _ = conn.write_all(&reply.body[..n.min(reply.body.len())]);
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
        Pace::Trickle(every) => {
            for b in &reply.body {
                if stop.load(Ordering::SeqCst) || Instant::now() > until {
                    return;
                }
                if conn.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        }
        Pace::Silent(d) | Pace::Mute(d) => {
            wait(d, stop);
            return;
        }
    }
    let _ = conn.flush();
    // Let the client close first.
    let _ = conn.read(&mut [0u8; 1]);
}

/// Sleeps for `d`, or until the server stops.
fn wait(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A handler serving `routes` (path → (content type, bytes)) to GET, 404
/// for the rest.
pub(super) fn serve_routes(routes: &HashMap<String, (String, Vec<u8>)>, req: &Req) -> Reply {
    if req.path == "/v2/" {
        return Reply::new(200, Vec::new());
    }
    match routes.get(&req.path) {
        Some((ctype, body)) => Reply::new(200, body.clone()).header("Content-Type", ctype),
        None => Reply::new(404, Vec::new()),
    }
}

/// Options with `creds` stored (in a Docker config.json) for `host`.
pub(super) fn options_with_creds(
    dir: &std::path::Path,
    host: &str,
    creds: &Credentials,
) -> RegistryOptions {
    let docker = dir.join(format!("docker-{}.json", host.replace(':', "_")));
    let auth = rbk_store::registry::base64_encode(
        format!("{}:{}", creds.username, creds.password).as_bytes(),
    );
    std::fs::write(
        &docker,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let mut opts = options(dir);
    opts.docker_config = Some(docker);
    opts
}

fn alice() -> Credentials {
    Credentials {
        username: "alice".to_string(),
        password: "s3cret".to_string(),
    }
}

/// A basic-auth gate: the answer to a request lacking `basic`, else None.
fn gate(req: &Req, basic: &str) -> Option<Reply> {
    (req.header("authorization") != Some(basic))
        .then(|| Reply::new(401, Vec::new()).header("WWW-Authenticate", "Basic realm=\"r\""))
}

#[test]
fn push_sends_no_credentials_to_an_upload_location_on_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&store, "x:v1", "lure", 5_000, "amd64");
    let basic = alice().basic_header();
    for elsewhere_asks in [false, true] {
        // The other host takes the blobs, or asks for credentials.
        let other = serve(move |req| match req.method.as_str() {
            "PUT" if elsewhere_asks => {
                Reply::new(401, Vec::new()).header("WWW-Authenticate", "Basic realm=\"x\"")
            }
            "PUT" => Reply::new(201, Vec::new()),
            _ => Reply::new(404, Vec::new()),
        });
        let elsewhere = format!("http://{}/upload/1", other.host);
        let b = basic.clone();
        let registry = serve(move |req| {
            if let Some(no) = gate(req, &b) {
                return no;
            }
            match req.method.as_str() {
                "GET" => Reply::new(200, Vec::new()),
                "HEAD" => Reply::new(404, Vec::new()),
                "POST" => Reply::new(202, Vec::new()).header("Location", &elsewhere),
                _ => Reply::new(201, Vec::new()),
            }
        });
        let opts = options_with_creds(tmp.path(), &registry.host, &alice());
        let client = Client::new(opts).unwrap();
        let dest = Reference::parse(&format!("{}/x:v1", registry.host)).unwrap();
        let res = client.push(&store, "x:v1", &dest, &quiet);
        // The registry itself got its credentials, the other host none.
        assert!(registry.authorizations().contains(&basic));
        let puts: Vec<Req> = other.requests();
        assert!(
            puts.iter().any(|r| !r.body.is_empty()),
            "the blobs went there"
        );
        assert!(
            puts.iter().all(|r| r.header("authorization").is_none()),
            "{puts:?}"
        );
        if elsewhere_asks {
            let err = res.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
            assert!(
                msg.contains(&other.host) && msg.contains("no other host"),
                "{msg}"
            );
        } else {
            assert_eq!(res.unwrap(), img.manifest_digest);
        }
    }
}

#[test]
fn a_blob_redirect_to_another_host_carries_no_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&src, "x:v1", "cdn", 5_000, "amd64");
    let routes = routes_for(&src, &img, "x", false);
    let cdn_routes = routes.clone();
    let cdn = serve(move |req| serve_routes(&cdn_routes, req));
    let cdn_host = cdn.host.clone();
    let basic = alice().basic_header();
    let b = basic.clone();
    let registry = serve(move |req| {
        if let Some(no) = gate(req, &b) {
            return no;
        }
        if req.path.contains("/blobs/") {
            let to = format!("http://{cdn_host}{}", req.path);
            return Reply::new(307, Vec::new()).header("Location", &to);
        }
        serve_routes(&routes, req)
    });
    let client = Client::new(options_with_creds(tmp.path(), &registry.host, &alice())).unwrap();
    let store = Store::open(&tmp.path().join("dst")).unwrap();
    let r = Reference::parse(&format!("{}/x:v1", registry.host)).unwrap();
    let report = client.pull(&store, &r, None, &quiet).unwrap();
    assert_eq!(report.image.manifest_digest, img.manifest_digest);
    assert_eq!(cdn.requests().len(), 2, "config and layer");
    assert!(cdn.authorizations().is_empty(), "{:?}", cdn.requests());
}

/// The documented choice (see `Client::token`): like Docker, the
/// registry's credentials go to the token realm its challenge names, even
/// on another host; the token goes to the registry only, and the
/// registry never sees the password.
#[test]
fn a_token_realm_on_another_host_gets_the_registry_credentials_like_docker() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Store::open(&tmp.path().join("src")).unwrap();
    let img = make_image(&src, "x:v1", "realm", 5_000, "amd64");
    let basic = alice().basic_header();
    let b = basic.clone();
    let auth = serve(move |req| {
        if req.path.starts_with("/token?") && req.header("authorization") == Some(b.as_str()) {
            Reply::new(200, br#"{"token":"T"}"#.to_vec())
        } else {
            Reply::new(401, Vec::new())
        }
    });
    let realm = format!("http://{}/token", auth.host);
    let routes = routes_for(&src, &img, "x", false);
    let registry = serve(move |req| {
        if req.header("authorization") != Some("Bearer T") {
            let challenge = format!("Bearer realm=\"{realm}\",service=\"reg\"");
            return Reply::new(401, Vec::new()).header("WWW-Authenticate", &challenge);
        }
        serve_routes(&routes, req)
    });
    let client = Client::new(options_with_creds(tmp.path(), &registry.host, &alice())).unwrap();
    let store = Store::open(&tmp.path().join("dst")).unwrap();
    let r = Reference::parse(&format!("{}/x:v1", registry.host)).unwrap();
    let report = client.pull(&store, &r, None, &quiet).unwrap();
    assert_eq!(report.image.manifest_digest, img.manifest_digest);
    assert!(auth.authorizations().iter().all(|a| a == &basic));
    assert!(!auth.authorizations().is_empty());
    let seen = registry.authorizations();
    assert!(seen.iter().all(|a| a == "Bearer T"), "{seen:?}");
}
