//! `rbk build URL`: a context from a git repository (`git daemon` on
//! loopback) at a ref and subdirectory, and from a tarball served over
//! HTTP on loopback.
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::store_with_busybox;
use crate::cache::ok;
use crate::rbk;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `git daemon` serving the repositories under `base` on a free loopback
/// port, killed on drop.
fn git_daemon(base: &Path) -> (Server, u16) {
    let port = free_port();
    let daemon = Server(
        Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    (daemon, port)
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_git_url_is_the_context_at_its_ref_and_subdirectory() {
    let test = "remote_context::a_git_url_is_the_context_at_its_ref_and_subdirectory";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    if Command::new("git").arg("--version").output().is_err() {
        panic!("git is not installed: scripts/test.sh installs it");
    }
    let base = dir.path().join("repos");
    let repo = base.join("app.git");
    std::fs::create_dir_all(repo.join("img")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("img/Dockerfile"),
        "FROM localhost/busybox:latest\nCOPY msg /msg\nRUN test ! -e /.git\n",
    )
    .unwrap();
    std::fs::write(repo.join("img/msg"), "from git v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "one"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("img/msg"), "from git v2\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    let (_daemon, port) = git_daemon(&base);
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let url = format!("git://127.0.0.1:{port}/app.git#v1:img");
    let dest = format!("type=local,dest={}", out.display());
    let (_, stderr) = ok(rbk(&store, &["build", "-o", &dest, &url]));
    assert!(
        stderr.contains("at sha1:"),
        "the commit is reported: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("msg")).unwrap(),
        "from git v1\n"
    );

    let bad = rbk(
        &store,
        &["build", &format!("git://127.0.0.1:{port}/app.git#v1:../..")],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("subdirectory"));
}

#[test]
fn add_of_a_git_url_clones_it_and_rekeys_when_the_branch_moves() {
    let test = "remote_context::add_of_a_git_url_clones_it_and_rekeys_when_the_branch_moves";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let base = dir.path().join("repos");
    let repo = base.join("lib.git");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("src/version"), "1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "one"]);
    let (_daemon, port) = git_daemon(&base);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM localhost/busybox:latest\nADD git://127.0.0.1:{port}/lib.git#main /opt/lib\n"
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let ctx_s = ctx.display().to_string();
    ok(rbk(&store, &["build", "-o", &dest, &ctx_s]));
    assert_eq!(
        std::fs::read_to_string(out.join("opt/lib/src/version")).unwrap(),
        "1\n"
    );
    assert!(
        !out.join("opt/lib/.git").exists(),
        ".git is dropped without --keep-git-dir"
    );

    let (_, again) = ok(rbk(&store, &["build", &ctx_s]));
    assert!(
        again.contains("1 cached"),
        "the same commit hits the cache: {again}"
    );
    std::fs::write(repo.join("src/version"), "2\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    std::fs::remove_dir_all(&out).unwrap();
    ok(rbk(&store, &["build", "-o", &dest, &ctx_s]));
    assert_eq!(
        std::fs::read_to_string(out.join("opt/lib/src/version")).unwrap(),
        "2\n",
        "the branch moved: the ADD ran again"
    );
}

#[test]
fn a_tarball_url_is_the_context() {
    let test = "remote_context::a_tarball_url_is_the_context";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let site = dir.path().join("site");
    let ctx = dir.path().join("tarctx");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:latest\nCOPY msg /msg\n",
    )
    .unwrap();
    std::fs::write(ctx.join("msg"), "from a tarball\n").unwrap();
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(site.join("ctx.tar.gz"))
        .arg("-C")
        .arg(&ctx)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    std::fs::write(
        site.join("Dockerfile"),
        "FROM localhost/busybox:latest\nRUN echo plain > /plain\n",
    )
    .unwrap();
    let port = free_port();
    let _http = Server(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(&site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let url = format!("http://127.0.0.1:{port}/ctx.tar.gz");
    ok(rbk(&store, &["build", "-o", &dest, &url]));
    assert_eq!(
        std::fs::read_to_string(out.join("msg")).unwrap(),
        "from a tarball\n"
    );

    // A plain file is the Dockerfile, with an empty context.
    let out2 = dir.path().join("out2");
    let dest2 = format!("type=local,dest={}", out2.display());
    let url2 = format!("http://127.0.0.1:{port}/Dockerfile");
    ok(rbk(&store, &["build", "-o", &dest2, &url2]));
    assert_eq!(
        std::fs::read_to_string(out2.join("plain")).unwrap(),
        "plain\n"
    );
}
