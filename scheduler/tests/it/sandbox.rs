//! The namespace sandbox (needs root, namespaces and /bin/busybox).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbk_scheduler::sandbox::{
    sandbox_supported, BindMount, CancelToken, ExecSpec, Executor, NamespaceExecutor, NetworkMode,
    OutputStream, SandboxError,
};

const BUSYBOX: &str = "/bin/busybox";

/// A busybox rootfs in a temp dir, or `None` (with a loud SKIPPED) when the
/// machine cannot run the sandbox.
fn rootfs(test: &str) -> Option<tempfile::TempDir> {
    if let Err(why) = sandbox_supported() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("SKIPPED {test}: {BUSYBOX} is missing (apt-get install busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    Some(dir)
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..ExecSpec::default()
    }
}

/// Runs `spec`, returning (exit code, stdout, stderr).
fn run(root: &Path, spec: &ExecSpec) -> Result<(i32, String, String), SandboxError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = NamespaceExecutor.run(
        root,
        spec,
        &mut |stream, data| match stream {
            OutputStream::Stdout => out.extend_from_slice(data),
            OutputStream::Stderr => err.extend_from_slice(data),
        },
        &CancelToken::new(),
    )?;
    Ok((
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// Every path under `root`, sorted (to compare trees before and after).
fn tree(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.symlink_metadata().unwrap().is_dir() {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn echo_output_is_captured() {
    let Some(dir) = rootfs("echo_output_is_captured") else {
        return;
    };
    let (code, out, err) = run(dir.path(), &sh("echo hi; echo oops >&2")).unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (0, "hi\n", "oops\n"));
}
