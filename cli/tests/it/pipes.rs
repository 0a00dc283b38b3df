//! A reader that goes away early (`rbk … | head`) ends rbk quietly with
//! success: no panic, no error blaming the image.

use std::io::Read as _;
use std::process::{Command, Stdio};

/// Runs `rbk ARGS`, reads `n` bytes of its output, closes the pipe, and
/// returns its exit code and standard error.
fn read_then_close(args: &[&str], n: usize) -> (Option<i32>, String) {
    let mut child = Command::new(crate::rbk_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0; n];
    out.read_exact(&mut buf).unwrap();
    drop(out);
    let done = child.wait_with_output().unwrap();
    (
        done.status.code(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

/// The bash script (90 kB) outgrows a pipe's 64 KiB buffer, so rbk is
/// still writing when the pipe closes.
#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    let (code, err) = read_then_close(&["completions", "bash"], 8);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "");
}

/// `rbk save IMAGE | head -c 10` once said the image was broken.
#[test]
fn save_into_a_closed_pipe_ends_quietly_and_blames_no_image() {
    let test = "save_into_a_closed_pipe_ends_quietly_and_blames_no_image";
    let Some(dir) = crate::build::store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let store = store.to_string_lossy();
    let (code, err) = read_then_close(&["--root", &store, "save", "localhost/busybox:latest"], 10);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "");
    let check = crate::rbk(std::path::Path::new(&*store), &["system", "check"]);
    assert!(check.status.success(), "{}", crate::stdout(&check));
}
