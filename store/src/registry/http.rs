//! The HTTP side: one [`Client`] with a session per registry (its scheme,
//! credentials and tokens), requests retried with exponential backoff on
//! connection errors and 5xx, and the 401 challenge → credentials/token →
//! retry dance.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;

use super::auth::{self, Challenge, Credentials};
use super::error_body::{describe_error_body, error_message};
pub(crate) use super::transfer::query_escape;
use super::transfer::{self, host_of, path_and_host, path_of, MinSpeed, Paced};
use super::{api_host, is_local, Progress, RegistryError, RegistryOptions, Transport};

/// What a request carries.
pub(crate) enum Body<'a> {
    /// Nothing.
    Empty,
    /// Bytes in memory (manifests).
    Bytes(Vec<u8>),
    /// A file, streamed (layers), told bytes sent so far as it goes.
    File(PathBuf, &'a (dyn Fn(u64) + Sync)),
    /// Bytes made while the request goes (a layer compressed as it
    /// uploads), sent chunked. They can be read once, so a request with
    /// this body is never retried: its first failure is the answer.
    Stream(Mutex<Option<Box<dyn std::io::Read + Send + 'a>>>),
}

impl Body<'_> {
    /// Whether the body can be sent again, for a retry or after an auth
    /// challenge: all but a stream.
    fn replayable(&self) -> bool {
        !matches!(self, Body::Stream(_))
    }
}

/// A reader of an upload that reports how much has been read, every
/// 4 MiB, and holds the registry to the progress floor (ureq reads it as
/// fast as the socket takes the bytes).
struct Counting<'a, R> {
    inner: Paced<'a, R>,
    reported: u64,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.inner.done - self.reported >= 4 << 20 {
            self.reported = self.inner.done;
            (self.on_bytes)(self.inner.done);
        }
        Ok(n)
    }
}

/// A registry client: holds the HTTP agents and, per registry, the scheme
/// it speaks and the tokens it granted.
pub struct Client {
    pub(crate) opts: RegistryOptions,
    verifying: Agent,
    trusting: Agent,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// One registry as seen by this client.
pub(crate) struct Session {
    /// The registry as named in references (`docker.io`, `localhost:5000`).
    pub(crate) registry: String,
    /// `https://host` or `http://host`.
    base: String,
    agent: Agent,
    creds: Option<Credentials>,
    /// Authorization header per scope string; "" holds basic auth.
    auth: Mutex<HashMap<String, String>>,
    /// Blobs this client pushed to (or found in) a repository of the
    /// registry: a push of the same blob to another repository mounts it
    /// from there (a build's image after its cache export, say).
    placed: Mutex<HashMap<crate::digest::Digest, String>>,
}

impl Session {
    /// Remembers that repository `repo` has blob `digest`.
    pub(crate) fn placed(&self, digest: &crate::digest::Digest, repo: &str) {
        self.placed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), repo.to_string());
    }

    /// A repository other than `repo` known to have blob `digest`.
    pub(crate) fn placed_elsewhere(
        &self,
        digest: &crate::digest::Digest,
        repo: &str,
    ) -> Option<String> {
        self.placed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .filter(|r| r.as_str() != repo)
            .cloned()
    }
}

/// An answer whose body has been read, for small documents.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Small documents (manifests, tokens, error bodies) are read whole, up to
/// this size: a registry cannot make us allocate without bound.
const MAX_DOCUMENT: u64 = 16 << 20;

fn agent(tls: TlsConfig, floor: MinSpeed) -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        // A stalled connection becomes an error (and a retry) instead of a
        // pull that hangs forever: no byte in a whole window is below any
        // floor. A trickle is caught by the `Paced` readers.
        .timeout_per_read(Some(floor.window))
        .timeout_per_write(Some(floor.window))
        // Redirects ureq follows (a blob GET sent to a CDN) never carry
        // the Authorization header; see `transfer::same_origin` for those
        // rbk follows itself.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .user_agent(concat!("rbk/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections_per_host(16)
        .build()
        .new_agent()
}

impl Client {
    /// A client with `opts`; reads the CA file now so a bad path fails
    /// before any transfer.
    pub fn new(opts: RegistryOptions) -> Result<Self, RegistryError> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &opts.ca_cert {
            let ca_error = |e: Box<dyn std::error::Error + Send + Sync>| RegistryError::CaCert {
                path: path.clone(),
                source: e,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(Box::new(e)))?;
            let mut certs: Vec<Certificate<'static>> = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(c) =
                    item.map_err(|e| ca_error(Box::new(e)))?
                {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(RegistryError::CaCertEmpty { path: path.clone() });
            }
            // Like `curl --cacert`: with a CA file, only its CAs are trusted.
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        let floor = opts.min_speed;
        let trusting = agent(
            TlsConfig::builder().disable_verification(true).build(),
            floor,
        );
        let verifying = if opts.tls_verify {
            agent(tls.build(), floor)
        } else {
            trusting.clone()
        };
        Ok(Client {
            opts,
            verifying,
            trusting,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.opts
            .insecure_registries
            .iter()
            .any(|h| h == registry || h == api_host(registry))
    }

    fn credential_files(&self) -> Vec<&std::path::Path> {
        self.opts
            .auth_file
            .iter()
            .chain(self.opts.docker_config.iter())
            .map(PathBuf::as_path)
            .collect()
    }

    /// The session for `registry`, made on first use. Registries that may
    /// speak plain HTTP are probed: HTTPS first, HTTP if TLS fails.
    pub(crate) fn session(&self, registry: &str) -> Result<Arc<Session>, RegistryError> {
        self.session_with(registry, None)
    }

    pub(crate) fn session_with(
        &self,
        registry: &str,
        creds: Option<Credentials>,
    ) -> Result<Arc<Session>, RegistryError> {
        let explicit = creds.is_some();
        if !explicit {
            if let Ok(map) = self.sessions.lock() {
                if let Some(s) = map.get(registry) {
                    return Ok(s.clone());
                }
            }
        }
        let host = api_host(registry);
        let insecure = self.is_insecure(registry);
        let agent = if insecure {
            self.trusting.clone()
        } else {
            self.verifying.clone()
        };
        let creds = creds.or_else(|| auth::lookup(&self.credential_files(), registry));
        let mut base = format!("https://{host}");
        if insecure || is_local(host) {
            let probe = agent.get(format!("{base}/v2/")).call();
            if let Err(tls_err) = probe {
                let plain = format!("http://{host}");
                let ok = matches!(
                    agent.get(format!("{plain}/v2/")).call(),
                    Ok(r) if r.status() == 200 || r.status() == 401
                );
                if !ok {
                    let source = if tls_err.to_string().contains("certificate") {
                        Transport::Certificate(tls_err)
                    } else {
                        Transport::Http(tls_err)
                    };
                    return Err(RegistryError::Connect {
                        registry: registry.to_string(),
                        method: "GET",
                        url: format!("{base}/v2/"),
                        attempts: 1,
                        source: Box::new(source),
                    });
                }
                base = plain;
            }
        }
        let s = Arc::new(Session {
            registry: registry.to_string(),
            base,
            agent,
            creds,
            auth: Mutex::new(HashMap::new()),
            placed: Mutex::new(HashMap::new()),
        });
        // A session with credentials given for one call (login) is not
        // shared: later calls use what is stored.
        if !explicit {
            if let Ok(mut map) = self.sessions.lock() {
                map.insert(registry.to_string(), s.clone());
            }
        }
        Ok(s)
    }

    /// Checks that `registry` accepts `creds` (`GET /v2/` with whatever
    /// auth its challenge asks for). Storing them is the caller's choice.
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let s = self.session_with(registry, Some(creds.clone()))?;
        let a = self.fetch(&s, "GET", "/v2/", &[], &Body::Empty, &[], &|_| {})?;
        if a.status == 200 {
            return Ok(());
        }
        Err(RegistryError::Status {
            registry: s.registry.clone(),
            method: "GET",
            url: s.url("/v2/"),
            status: a.status,
            message: describe_error_body(a.status, &a.body),
        })
    }

    /// Sends a request, retrying transport errors, 5xx and 429 with
    /// backoff and answering auth challenges. `scopes` are the token scopes
    /// the request needs (`repository:NAME:pull`).
    // Each argument is one part of an HTTP request; a builder for a
    // crate-internal call would only move the same list elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &self,
        s: &Session,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        scopes: &[String],
        progress: &dyn Fn(&Progress),
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let url = s.url(url);
        // One rule for every request: the registry's credentials and
        // tokens go to its own origin only, never to a `Location` (upload
        // session, redirect) on another host or scheme.
        let own = transfer::same_origin(&s.base, &url);
        let mut attempt = 1;
        let mut challenged = false;
        loop {
            let auth = if own { s.auth_header(scopes) } else { None };
            let res = s.call(
                self.opts.min_speed,
                method,
                &url,
                headers,
                body,
                auth.as_deref(),
            );
            let (retry_reason, asked) = match res {
                // Nothing for a whole window (an answer that never comes, an
                // upload the registry stops reading) is below any floor.
                Err(ureq::Error::Timeout(ureq::Timeout::PerRead | ureq::Timeout::PerWrite)) => {
                    let slow = transfer::too_slow(host_of(&url), self.opts.min_speed, 0);
                    (Transport::Io(slow), None)
                }
                Err(e) => (Transport::Http(e), None),
                Ok(r) if r.status().is_server_error() || r.status() == 429 => {
                    let status = r.status().as_u16();
                    let asked = match status {
                        429 | 503 => transfer::retry_after(r.headers()),
                        _ => None,
                    };
                    (Transport::Status(status), asked)
                }
                // A body that cannot be sent again takes the 401 as the
                // answer (its caller falls back to one that can).
                Ok(r) if r.status() == 401 && own && !challenged && body.replayable() => {
                    challenged = true;
                    self.challenged(s, r, scopes, auth.is_some())?;
                    continue;
                }
                Ok(r) if r.status() == 401 || r.status() == 403 => {
                    return Err(refused(s, &url, own, r));
                }
                Ok(r) => return Ok(r),
            };
            if !body.replayable() {
                return Err(RegistryError::Connect {
                    registry: s.registry.clone(),
                    method,
                    url,
                    attempts: attempt,
                    source: Box::new(retry_reason),
                });
            }
            self.before_retry(s, method, &url, attempt, retry_reason, asked, progress)?;
            attempt += 1;
        }
    }

    /// After failed `attempt`: the error when it was the last one or the
    /// registry asks to wait longer than rbk waits; else reports the retry
    /// and waits for it.
    #[allow(clippy::too_many_arguments)]
    fn before_retry(
        &self,
        s: &Session,
        method: &'static str,
        url: &str,
        attempt: u32,
        reason: Transport,
        asked: Option<Duration>,
        progress: &dyn Fn(&Progress),
    ) -> Result<(), RegistryError> {
        let give_up = |source: Transport| RegistryError::Connect {
            registry: s.registry.clone(),
            method,
            url: url.to_string(),
            attempts: attempt,
            source: Box::new(source),
        };
        if attempt >= self.opts.attempts.max(1) || reason.is_unknown_host() {
            return Err(give_up(reason));
        }
        let Some(wait) = self.retry_delay(attempt + 1, asked) else {
            let asked = asked.unwrap_or_default().as_secs();
            return Err(give_up(match reason {
                Transport::Status(status) => Transport::RetryTooLate { status, asked },
                other => other,
            }));
        };
        progress(&Progress::Retrying {
            what: format!("{method} {}", path_of(url)),
            attempt: attempt + 1,
            reason: match asked {
                Some(_) => format!("{reason}, retrying after {} ms", wait.as_millis()),
                None => reason.to_string(),
            },
        });
        std::thread::sleep(wait);
        Ok(())
    }

    /// How long to wait before `attempt` (2 = the first retry): the
    /// backoff, or what the registry asked with `Retry-After` if longer;
    /// `None` when it asked for more than [`transfer::MAX_RETRY_AFTER`].
    fn retry_delay(&self, attempt: u32, asked: Option<Duration>) -> Option<Duration> {
        let backoff = self.opts.backoff * 2u32.saturating_pow(attempt.saturating_sub(2));
        match asked {
            Some(a) if a > transfer::MAX_RETRY_AFTER => None,
            Some(a) => Some(a.max(backoff)),
            None => Some(backoff),
        }
    }

    /// Like [`Client::send`], then reads the (small) body.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fetch(
        &self,
        s: &Session,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        scopes: &[String],
        progress: &dyn Fn(&Progress),
    ) -> Result<Answer, RegistryError> {
        let mut attempt = 1;
        loop {
            let r = self.send(s, method, url, headers, body, scopes, progress)?;
            let status = r.status().as_u16();
            let (parts, b) = r.into_parts();
            let full = s.url(url);
            let limited = b.into_with_config().limit(MAX_DOCUMENT).reader();
            let mut reader = Paced::new(limited, host_of(&full), self.opts.min_speed);
            let mut data = Vec::new();
            match std::io::Read::read_to_end(&mut reader, &mut data).map(|_| data) {
                Ok(body) => {
                    return Ok(Answer {
                        status,
                        headers: parts.headers,
                        body,
                    })
                }
                // The connection dropped mid-body: the whole request is
                // tried again, within the same bound as any other failure.
                Err(e) if attempt < self.opts.attempts.max(1) => {
                    attempt += 1;
                    progress(&Progress::Retrying {
                        what: format!("{method} {}", path_of(url)),
                        attempt,
                        reason: e.to_string(),
                    });
                    std::thread::sleep(self.opts.backoff * 2u32.saturating_pow(attempt - 2));
                }
                Err(e) => {
                    return Err(RegistryError::Connect {
                        registry: s.registry.clone(),
                        method,
                        url: full,
                        attempts: attempt,
                        source: Box::new(Transport::Io(e)),
                    })
                }
            }
        }
    }

    /// Answers the 401 `r` of the registry's own origin (its
    /// `WWW-Authenticate` challenge) so the request can be sent again.
    fn challenged(
        &self,
        s: &Session,
        r: Response<ureq::Body>,
        scopes: &[String],
        had_auth: bool,
    ) -> Result<(), RegistryError> {
        let header = r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let message = error_message(r);
        self.answer_challenge(s, &header, scopes, had_auth, &message)
    }

    fn answer_challenge(
        &self,
        s: &Session,
        header: &str,
        scopes: &[String],
        had_auth: bool,
        message: &str,
    ) -> Result<(), RegistryError> {
        let unauthorized = |reason: String| RegistryError::Unauthorized {
            registry: s.registry.clone(),
            reason,
        };
        match auth::parse_challenge(header) {
            Some(Challenge::Basic) => match &s.creds {
                Some(c) if !had_auth => {
                    s.set_auth("", c.basic_header());
                    Ok(())
                }
                Some(c) => Err(unauthorized(format!(
                    "user {:?} was refused ({message})",
                    c.username
                ))),
                None => Err(unauthorized(format!(
                    "the registry asks for a user name and password and none is stored; \
                     run `rbk login {}`",
                    s.registry
                ))),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut wanted: Vec<String> = scopes.to_vec();
                if wanted.is_empty() {
                    wanted.extend(scope);
                }
                let token = self.token(s, &realm, service.as_deref(), &wanted)?;
                s.set_auth(&scopes.join(" "), format!("Bearer {token}"));
                Ok(())
            }
            None => Err(unauthorized(format!(
                "unsupported authentication challenge {header:?} ({message})"
            ))),
        }
    }

    /// Asks the token endpoint for a bearer token for `scopes`.
    fn token(
        &self,
        s: &Session,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in service
            .map(|v| ("service", v))
            .into_iter()
            .chain(scopes.iter().map(|v| ("scope", v.as_str())))
        {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&query_escape(v));
            sep = '&';
        }
        let mut req = s.agent.get(&url);
        // Docker's rule, kept on purpose: the credentials stored for the
        // registry go to the token service its challenge names, even on
        // another host, because that realm is the registry's designated
        // auth server (registry-1.docker.io sends clients to
        // auth.docker.io). Only a challenge from the registry's own origin
        // gets here (`send` answers no 401 from elsewhere), and
        // credentials of a registry reached over HTTPS never go to a
        // plain-HTTP realm, where anyone on the way could read them.
        if let Some(c) = &s.creds {
            if transfer::is_plain_http(realm) && !transfer::is_plain_http(&s.base) {
                return Err(RegistryError::Unauthorized {
                    registry: s.registry.clone(),
                    reason: format!(
                        "its token service {realm} is plain HTTP while the registry speaks \
                         HTTPS; rbk will not send the credentials for {} there",
                        s.registry
                    ),
                });
            }
            req = req.header("Authorization", c.basic_header());
        }
        let unreachable = |e: ureq::Error| RegistryError::Connect {
            registry: s.registry.clone(),
            method: "GET",
            url: realm.to_string(),
            attempts: 1,
            source: Box::new(Transport::Http(e)),
        };
        let res = req.call().map_err(unreachable)?;
        if res.status() != 200 {
            return Err(RegistryError::Unauthorized {
                registry: s.registry.clone(),
                reason: format!(
                    "the token service {realm} answered {}: {}",
                    res.status().as_u16(),
                    refused_reason(s, res)
                ),
            });
        }
        self.read_token(s, realm, res)
    }

    /// The token in the token service's answer `res`.
    fn read_token(
        &self,
        s: &Session,
        realm: &str,
        res: Response<ureq::Body>,
    ) -> Result<String, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let limited = res
            .into_body()
            .into_with_config()
            .limit(MAX_DOCUMENT)
            .reader();
        let mut reader = Paced::new(limited, host_of(realm), self.opts.min_speed);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut data).map_err(|e| RegistryError::Connect {
            registry: s.registry.clone(),
            method: "GET",
            url: realm.to_string(),
            attempts: 1,
            source: Box::new(Transport::Io(e)),
        })?;
        let t: Token = serde_json::from_slice(&data).map_err(|e| RegistryError::Json {
            registry: s.registry.clone(),
            what: format!("token from {realm}"),
            source: e,
        })?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| RegistryError::Unauthorized {
                registry: s.registry.clone(),
                reason: format!("the token service {realm} sent no token"),
            })
    }
}

impl Session {
    /// An absolute URL for `path` (absolute URLs, as in `Location`, pass).
    pub(crate) fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    fn auth_header(&self, scopes: &[String]) -> Option<String> {
        let map = self.auth.lock().ok()?;
        map.get("").or_else(|| map.get(&scopes.join(" "))).cloned()
    }

    fn set_auth(&self, key: &str, value: String) {
        if let Ok(mut map) = self.auth.lock() {
            map.insert(key.to_string(), value);
        }
    }

    fn call(
        &self,
        floor: MinSpeed,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body<'_>,
        auth: Option<&str>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        match body {
            Body::Empty if method == "GET" || method == "HEAD" => self.agent.run(b.body(())?),
            // Registries want an explicit zero length on bodiless writes.
            Body::Empty => self.agent.run(b.body(&[][..])?),
            Body::Bytes(data) => self.agent.run(b.body(data.as_slice())?),
            Body::File(path, on_bytes) => {
                let f = File::open(path)?;
                // The length is set here, so the counting reader (whose
                // size ureq cannot know) is not sent chunked.
                let len = f.metadata()?.len();
                let mut r = Counting {
                    inner: Paced::new(f, host_of(url), floor),
                    reported: 0,
                    on_bytes: *on_bytes,
                };
                let b = b.header("Content-Length", len);
                self.agent.run(b.body(ureq::SendBody::from_reader(&mut r))?)
            }
            Body::Stream(slot) => {
                let taken = slot.lock().ok().and_then(|mut r| r.take());
                let Some(mut r) = taken else {
                    let once = "a streamed request body can be sent only once";
                    return Err(ureq::Error::Io(std::io::Error::other(once)));
                };
                self.agent.run(b.body(ureq::SendBody::from_reader(&mut r))?)
            }
        }
    }
}

/// The error for a 401 or 403 that is not answered: refused credentials,
/// or a request off the registry's origin asking for some (which it does
/// not get).
fn refused(s: &Session, url: &str, own: bool, r: Response<ureq::Body>) -> RegistryError {
    let reason = if own {
        refused_reason(s, r)
    } else {
        format!(
            "{} answered {} and it is not the registry's own address {}: rbk sends the \
             registry's credentials to no other host",
            path_and_host(url),
            r.status().as_u16(),
            s.base
        )
    };
    RegistryError::Unauthorized {
        registry: s.registry.clone(),
        reason,
    }
}

fn refused_reason(s: &Session, r: Response<ureq::Body>) -> String {
    let status = r.status().as_u16();
    let message = error_message(r);
    match (&s.creds, status) {
        (Some(c), 401) => format!("user {:?} was refused: {message}", c.username),
        (None, 401) => format!(
            "{message} (no credentials are stored for {}; run `rbk login {}`)",
            s.registry, s.registry
        ),
        _ => message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn credentials_of_an_https_registry_never_go_to_a_plain_http_realm() {
        let client = Client::new(RegistryOptions::default()).unwrap();
        let session = Session {
            registry: "r.example".to_string(),
            base: "https://r.example".to_string(),
            agent: client.verifying.clone(),
            creds: Some(Credentials {
                username: "alice".to_string(),
                password: "pw".to_string(),
            }),
            auth: Mutex::new(HashMap::new()),
            placed: Mutex::new(HashMap::new()),
        };
        // Refused before any connection (nothing listens on port 9).
        let err = client
            .token(&session, "http://127.0.0.1:9/token", None, &[])
            .unwrap_err();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(path_of("https://h:5000/v2/x/blobs/y"), "/v2/x/blobs/y");
    }
}
