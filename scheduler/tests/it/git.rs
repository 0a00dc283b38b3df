//! Git sources fetched from a `git daemon` on loopback: a ref, a
//! subdirectory, the commit reported, `.git` dropped unless kept.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use rbk_scheduler::fileop::git::{fetch, FetchOptions, GitSource};

fn git(dir: &Path, args: &[&str]) -> String {
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
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A daemon serving `base` on a free loopback port, killed on drop.
struct Daemon(Child, u16);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(base: &Path) -> Option<Daemon> {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("git")
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
            .ok()?;
        let d = Daemon(child, port);
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    None
}

#[test]
fn a_repository_is_fetched_at_its_ref_and_subdirectory() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!(
            "SKIPPED a_repository_is_fetched_at_its_ref_and_subdirectory: git is not installed"
        );
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let repo = base.path().join("app.git");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("sub/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(repo.join("README"), "v1\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "one"]);
    git(&repo, &["tag", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("README"), "v2\n").unwrap();
    git(&repo, &["commit", "-qam", "two"]);
    let v2 = git(&repo, &["rev-parse", "HEAD"]);
    let Some(d) = serve(base.path()) else {
        panic!("git daemon did not start on loopback");
    };
    let url = format!("git://127.0.0.1:{}/app.git", d.1);

    let out = tempfile::tempdir().unwrap();
    let src = GitSource::parse(&format!("{url}#v1:sub")).unwrap();
    let c = fetch(&src, out.path(), &FetchOptions::default()).unwrap();
    assert_eq!(c.commit, v1);
    assert!(c.dir.join("Dockerfile").is_file());
    assert!(
        !out.path().join(".git").exists(),
        ".git is dropped by default"
    );

    let out = tempfile::tempdir().unwrap();
    let keep = FetchOptions {
        keep_git_dir: true,
        ..FetchOptions::default()
    };
    let c = fetch(&GitSource::parse(&url).unwrap(), out.path(), &keep).unwrap();
    assert_eq!(c.commit, v2, "no ref: the default branch");
    assert_eq!(
        std::fs::read_to_string(c.dir.join("README")).unwrap(),
        "v2\n"
    );
    assert!(out.path().join(".git").is_dir());

    let out = tempfile::tempdir().unwrap();
    let c = fetch(
        &GitSource::parse(&format!("{url}#{v1}")).unwrap(),
        out.path(),
        &FetchOptions::default(),
    )
    .unwrap();
    assert_eq!(c.commit, v1, "a commit id as the ref");

    let out = tempfile::tempdir().unwrap();
    let e = fetch(
        &GitSource::parse(&format!("{url}#nope")).unwrap(),
        out.path(),
        &FetchOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}
