//! The README's main path for nginx, the tutorial's way: make the Debian
//! base (debootstrap, its tarball cached between runs), fetch nginx's
//! upstream source tarball (checked, cached), build
//! `examples/debian/rbk.toml`'s nginx — ADD of the tarball, configure, make,
//! make install, then the slim stage — check `nginx -V` shows the
//! tutorial's configure arguments, run it, get HTTP 200 with its page, stop
//! it, and rebuild with no step run.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, ToSocketAddrs as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{bases_cache, cannot_run_containers, make_base, rbk, rbk_bin, repo_root, skip, stderr};

const TEST: &str = "debian_nginx_builds_serves_stops_and_rebuilds_from_cache";

/// Why the Debian base cannot be made here, if it cannot: no cached
/// tarball and no debootstrap or no route to the Debian archive.
fn cannot_make_debian() -> Option<String> {
    if bases_cache().join("debian-bookworm.tar").is_file() {
        return None;
    }
    if crate::on_path("debootstrap").is_none() && crate::on_path("apt-get").is_none() {
        return Some("no debootstrap (apt-get install debootstrap)".into());
    }
    let reachable = ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
    (!reachable)
        .then(|| "deb.debian.org:80 is unreachable (debootstrap needs the Debian archive)".into())
}

/// `GET /` on 127.0.0.1:port: the status line and the body.
fn http_get(port: u16) -> std::io::Result<(String, String)> {
    http_get_path(port, "/")
}

/// `GET path` on 127.0.0.1:port: the status line and the body.
fn http_get_path(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.lines().next().unwrap_or_default().to_string();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Kills the container's rbk if the test fails half-way.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn debian_nginx_builds_serves_stops_and_rebuilds_from_cache() {
    if let Some(why) = cannot_run_containers() {
        return skip(TEST, &why);
    }
    if let Some(why) = cannot_make_debian() {
        return skip(TEST, &why);
    }
    let store = TempDir::new().unwrap();
    let root = store.path();
    let started = Instant::now();
    // zstd: the test binary is a debug build, whose gzip is slow.
    let out = make_base(root, "debian", &[("RBK_IMPORT_COMPRESSION", "zstd")]);
    assert!(
        out.status.success(),
        "make-bases.sh debian: {}",
        stderr(&out)
    );
    eprintln!("debian base in {:.1?}", started.elapsed());

    let fetch = Command::new("sh")
        .arg(repo_root().join("examples/debian/nginx/fetch-source.sh"))
        .env("RBK_EXAMPLES_CACHE", bases_cache())
        .output()
        .unwrap();
    assert!(
        fetch.status.success(),
        "fetch-source.sh: {}",
        stderr(&fetch)
    );

    let toml = repo_root().join("examples/debian/rbk.toml");
    let toml = toml.to_str().unwrap();
    let build = [
        "build",
        "--progress",
        "plain",
        "--compression",
        "zstd",
        toml,
        "nginx",
    ];
    let t = Instant::now();
    let out = rbk(root, &build);
    assert!(out.status.success(), "build: {}", stderr(&out));
    eprintln!("nginx built in {:.1?}", t.elapsed());

    nginx_v_shows_the_tutorials_configure_arguments(root);

    // The container's own network, its port 80 published on a free port of
    // the host's loopback (port 80 may be taken where tests run).
    let port = free_port();
    let (mut child, status, body) = nginx_runs_until_it_answers(root, port);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains("Welcome to nginx!"), "{body}");
    assert!(body.contains("rbk"), "our COPY'd page: {body}");
    sigterm_stops_nginx(&mut child, port);

    // The rebuild is all cache.
    let out = rbk(root, &build);
    assert!(out.status.success(), "rebuild: {}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(": 0 steps run,"),
        "the rebuild ran steps:\n{err}"
    );
    assert!(err.contains("CACHED"), "{err}");
    eprintln!("whole nginx path in {:.1?}", started.elapsed());
}

/// nginx -V: compiled here, with the tutorial's options.
fn nginx_v_shows_the_tutorials_configure_arguments(root: &std::path::Path) {
    let v = rbk(
        root,
        &[
            "run",
            "--rm",
            "rbk-examples/nginx:debian",
            "/usr/local/nginx/sbin/nginx",
            "-V",
        ],
    );
    let v = stderr(&v);
    for arg in [
        "--prefix=/usr/local/nginx",
        "--user=nginx",
        "--group=nginx",
        "--with-http_ssl_module",
        "--with-stream",
        "--with-http_flv_module",
        "--with-http_stub_status_module",
        "--with-http_gzip_static_module",
        "--with-pcre",
        "--with-file-aio",
        "--with-http_secure_link_module",
        "--with-threads",
        "--http-client-body-temp-path=/var/tmp/nginx/client/",
        "--http-scgi-temp-path=/var/tmp/nginx/scgi/",
    ] {
        assert!(v.contains(arg), "nginx -V lacks {arg}:\n{v}");
    }
    assert!(v.contains("nginx version: nginx/1.22.1"), "{v}");
}

/// `rbk run` of the nginx image with its port 80 published on `port` of
/// the host's loopback, until `GET /` answers: the running rbk, the
/// status line and the body.
fn nginx_runs_until_it_answers(root: &std::path::Path, port: u16) -> (Child, String, String) {
    let publish = format!("127.0.0.1:{port}:80");
    let mut child = Child(
        Command::new(rbk_bin())
            .arg("--root")
            .arg(root)
            .args(["run", "--rm", "-p", &publish, "rbk-examples/nginx:debian"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        match http_get(port) {
            Ok(r) => break r,
            Err(e) => {
                if let Some(st) = child.0.try_wait().unwrap() {
                    let mut err = String::new();
                    let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("nginx exited ({st}) before answering: {err}");
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx never answered on port {port}: {e}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    (child, status, body)
}

/// Stop it as a user would (SIGTERM to rbk run, forwarded to nginx): it
/// exits 0 and `port` no longer answers.
fn sigterm_stops_nginx(child: &mut Child, port: u16) {
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "nginx ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "nginx's exit after SIGTERM");
    assert!(
        http_get(port).is_err(),
        "nginx still answers after stopping"
    );
}

/// A detached container, removed (`rbk rm -f`) when the test ends, passed
/// or failed, so no server outlives it.
struct Detached<'a> {
    root: &'a std::path::Path,
    name: &'static str,
}

impl<'a> Detached<'a> {
    fn start(root: &'a std::path::Path, name: &'static str, args: &[&str]) -> Self {
        let mut argv = vec!["run", "-d", "--name", name];
        argv.extend_from_slice(args);
        let out = rbk(root, &argv);
        assert!(out.status.success(), "rbk run -d {name}: {}", stderr(&out));
        Detached { root, name }
    }

    fn logs(&self) -> String {
        let out = rbk(self.root, &["logs", self.name]);
        format!("{}{}", crate::stdout(&out), stderr(&out))
    }

    /// `rbk stop` then `rbk rm`, as a user would; both must succeed.
    fn stop_and_remove(self) {
        let out = rbk(self.root, &["stop", self.name]);
        assert!(
            out.status.success(),
            "rbk stop {}: {}",
            self.name,
            stderr(&out)
        );
        let out = rbk(self.root, &["rm", self.name]);
        assert!(
            out.status.success(),
            "rbk rm {}: {}",
            self.name,
            stderr(&out)
        );
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        let _ = rbk(self.root, &["rm", "-f", self.name]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` until the server answers (a published port accepts before
/// the server inside listens: an empty answer means "not yet").
fn wait_http(c: &Detached, port: u16, path: &str, within: Duration) -> (String, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http_get_path(port, path) {
            if !r.0.is_empty() {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never answered on port {port}; its log:\n{}",
            c.name,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const TOMCAT_MARIADB: &str = "debian_tomcat_and_mariadb_run_as_the_tutorial_says";

/// Tomcat: JAVA_HOME, CATALINA_HOME, version.sh, the default page on 8080.
/// MariaDB: the password from MYSQL_ROOT_PASSWORD, a wrong one refused, the
/// data on `-v HOSTDIR:/var/lib/mysql` kept across a stop and a new start.
#[test]
fn debian_tomcat_and_mariadb_run_as_the_tutorial_says() {
    if let Some(why) = cannot_run_containers() {
        return skip(TOMCAT_MARIADB, &why);
    }
    if let Some(why) = cannot_make_debian() {
        return skip(TOMCAT_MARIADB, &why);
    }
    let store = TempDir::new().unwrap();
    let root = store.path();
    let out = make_base(root, "debian", &[("RBK_IMPORT_COMPRESSION", "zstd")]);
    assert!(out.status.success(), "make-bases.sh: {}", stderr(&out));
    let toml = repo_root().join("examples/debian/rbk.toml");
    let t = Instant::now();
    let out = rbk(
        root,
        &[
            "build",
            "--progress",
            "plain",
            "--compression",
            "zstd",
            toml.to_str().unwrap(),
            "tomcat",
            "mariadb",
        ],
    );
    assert!(out.status.success(), "build: {}", stderr(&out));
    eprintln!("tomcat and mariadb built in {:.1?}", t.elapsed());

    tomcat_has_its_jdk_and_serves_its_pages(root);
    mariadb_keeps_its_password_and_data_on_a_host_directory(root);
    the_sbom_lists_every_dpkg_package(root, "rbk-examples/mariadb:debian", "mariadb-server");
    the_sbom_lists_every_dpkg_package(root, "rbk-examples/tomcat:debian", "tomcat10");
}

/// `rbk sbom` of an example image lists every package `dpkg-query` reads
/// in the image's own dpkg database, with its version, and names a later
/// layer than the base's for `installed` (which a RUN installed).
fn the_sbom_lists_every_dpkg_package(root: &std::path::Path, image: &str, installed: &str) {
    let out = rbk(root, &["run", "--rm", image, "cat", "/var/lib/dpkg/status"]);
    assert!(out.status.success(), "cat status: {}", stderr(&out));
    let admin = TempDir::new().unwrap();
    std::fs::create_dir_all(admin.path().join("info")).unwrap();
    std::fs::create_dir_all(admin.path().join("updates")).unwrap();
    std::fs::write(admin.path().join("status"), &out.stdout).unwrap();
    let want = crate::sbom::dpkg_query(admin.path());
    let file = admin.path().join("sbom.json");
    let out = rbk(root, &["sbom", "-o", file.to_str().unwrap(), image]);
    assert!(out.status.success(), "sbom: {}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let packages = doc["packages"].as_array().unwrap();
    let got: std::collections::BTreeSet<(String, String)> = packages
        .iter()
        .skip(1) // the image itself
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap().to_string();
            (field("name"), field("versionInfo"))
        })
        .collect();
    assert!(
        want.len() > 100,
        "{image}: dpkg-query listed {}",
        want.len()
    );
    assert_eq!(got, want, "{image}");
    let layer_of = |name: &str| {
        let p = packages.iter().find(|p| p["name"] == name).unwrap();
        p["annotations"][0]["comment"].as_str().unwrap().to_string()
    };
    assert_ne!(
        layer_of(installed),
        layer_of("dpkg"),
        "{image}: {installed} came with the base"
    );
    crate::sbom::validated_by_spdx_tools(TOMCAT_MARIADB, &file);
}

/// Tomcat: JAVA_HOME, CATALINA_HOME, version.sh, the default page and
/// our JSP page on 8080, and nothing left after `rbk stop`.
fn tomcat_has_its_jdk_and_serves_its_pages(root: &std::path::Path) {
    let image = "rbk-examples/tomcat:debian";
    let out = rbk(
        root,
        &[
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            "echo JAVA_HOME=$JAVA_HOME CATALINA_HOME=$CATALINA_HOME; $CATALINA_HOME/bin/version.sh",
        ],
    );
    let text = format!("{}{}", crate::stdout(&out), stderr(&out));
    assert!(out.status.success(), "version.sh: {text}");
    assert!(
        text.contains("JAVA_HOME=/usr/local/jdk17 CATALINA_HOME=/usr/local/tomcat10"),
        "{text}"
    );
    assert!(text.contains("Server version: Apache Tomcat/10."), "{text}");
    assert!(text.contains("JVM Version:    17."), "{text}");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    let tomcat = Detached::start(root, "tomcat", &["-p", &publish, image]);
    let (status, body) = wait_http(&tomcat, port, "/", Duration::from_secs(120));
    assert!(status.contains(" 200"), "{status}\n{body}");
    assert!(body.contains("It works"), "Tomcat's default page: {body}");
    let (status, body) = wait_http(&tomcat, port, "/rbk.jsp", Duration::from_secs(60));
    assert!(status.contains(" 200"), "{status}\n{body}");
    assert!(body.contains("Apache Tomcat/10."), "our JSP page: {body}");
    tomcat.stop_and_remove();
    assert!(
        http_get_path(port, "/").is_err(),
        "Tomcat outlived rbk stop"
    );
}

/// The `mariadb` client of the MariaDB image, run on the host's network
/// against the server published on `port_arg`'s port.
struct MariaDbClient<'a> {
    root: &'a std::path::Path,
    image: &'a str,
    port_arg: String,
}

impl MariaDbClient<'_> {
    /// Runs `query` as root with `password`.
    fn sql(&self, password: &str, query: &str) -> std::process::Output {
        let pw = format!("-p{password}");
        rbk(
            self.root,
            &[
                "run",
                "--rm",
                "--network",
                "host",
                "--entrypoint",
                "mariadb",
                self.image,
                "--protocol=tcp",
                "-h127.0.0.1",
                &self.port_arg,
                "-uroot",
                &pw,
                "-N",
                "-e",
                query,
            ],
        )
    }

    /// Waits until root logs in with the tutorial's password.
    fn wait_login(&self, c: &Detached) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.sql("s3cret'pw", "SELECT 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "could not log in; the server's log:\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// MariaDB: the password from MYSQL_ROOT_PASSWORD, a wrong one refused,
/// the data on `-v HOSTDIR:/var/lib/mysql` kept across a stop and a new
/// start.
fn mariadb_keeps_its_password_and_data_on_a_host_directory(root: &std::path::Path) {
    let image = "rbk-examples/mariadb:debian";
    let data = TempDir::new().unwrap();
    let volume = format!("{}:/var/lib/mysql", data.path().display());
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:3306");
    let client = MariaDbClient {
        root,
        image,
        port_arg: format!("-P{port}"),
    };
    let db = Detached::start(
        root,
        "db",
        &[
            "-p",
            &publish,
            "-v",
            &volume,
            "-e",
            "MYSQL_ROOT_PASSWORD=s3cret'pw",
            image,
        ],
    );
    client.wait_login(&db);
    let out = client.sql(
        "s3cret'pw",
        "CREATE DATABASE shop; CREATE TABLE shop.t (v TEXT); INSERT INTO shop.t VALUES ('kept');",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = client.sql("wrong", "SELECT 1");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(
        stderr(&wrong).contains("Access denied"),
        "{}",
        stderr(&wrong)
    );
    db.stop_and_remove();
    assert!(
        data.path().join("shop").is_dir(),
        "the database is not in the host directory"
    );

    // A new container on the same directory: no password given this time,
    // the old one still works and the row is there.
    let db = Detached::start(root, "db", &["-p", &publish, "-v", &volume, image]);
    client.wait_login(&db);
    let out = client.sql("s3cret'pw", "SELECT v FROM shop.t");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(crate::stdout(&out).trim(), "kept");
    db.stop_and_remove();
}
