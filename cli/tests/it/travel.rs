//! A cache that travels: keys made of content and definitions only, so the
//! same checkout at another path, by another user, at another time, on
//! another store hits every step, and gives the same image.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use crate::build::{busybox_and_context, rbk, store_with_busybox, succeed, write};

const DOCKERFILE: &str = "FROM localhost/busybox:latest\nCOPY . /app/\nRUN cat /app/a.txt > /copied\nCOPY --chown=7:7 b.txt /owned\n";

/// `rbk build` with a fixed SOURCE_DATE_EPOCH; its standard error.
fn build(store: &Path, ctx: &Path, extra: &[&str]) -> String {
    let out = succeed(
        rbk(store)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", "travel:1"])
            .args(extra)
            .arg(ctx),
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn image_id(store: &Path) -> String {
    let out = succeed(rbk(store).args(["inspect", "travel:1"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    v["Id"].as_str().unwrap().to_string()
}

/// Copies `from` to `to` as another checkout would: other owner, new
/// times (cp without -p).
fn checkout(from: &Path, to: &Path, uid: u32) {
    let ok = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn the_same_checkout_elsewhere_hits_every_step_and_gives_the_same_image() {
    let test = "the_same_checkout_elsewhere_hits_every_step_and_gives_the_same_image";
    let Some(dir) = store_with_busybox(test) else {
        return;
    };
    let d = dir.path();
    let store_a = d.join("store");
    // A second store with the same base, before anything is built.
    let store_b = d.join("store-b");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&store_a)
        .arg(&store_b)
        .status()
        .unwrap();
    assert!(ok.success());
    let first = d.join("checkout-1/app");
    write(
        &first,
        &[
            ("Dockerfile", DOCKERFILE),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let cache = d.join("ci-cache");
    let to = format!("type=local,dest={},mode=max", cache.display());
    let from = format!("type=local,src={}", cache.display());
    let err = build(&store_a, &first, &["--cache-to", &to]);
    assert!(err.contains("3 steps run"), "{err}");
    let id = image_id(&store_a);

    // Another path, another owner, later times: on the same store …
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = d.join("runner-2/builds/0/app");
    std::fs::create_dir_all(second.parent().unwrap()).unwrap();
    checkout(&first, &second, 1234);
    let err = build(&store_a, &second, &["--explain"]);
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    assert_eq!(image_id(&store_a), id);

    // … and on a fresh store through the cache.
    let err = build(&store_b, &second, &["--cache-from", &from]);
    assert!(err.contains("0 steps run, 3 cached"), "{err}");
    assert_eq!(image_id(&store_b), id);

    // What a COPY carries into the layer still counts: the mode.
    let a = second.join("a.txt");
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = build(&store_a, &second, &["--explain"]);
    assert!(err.contains("3 steps run"), "{err}");
    assert!(err.contains("a.txt"), "--explain names the file: {err}");
}

const THREE_STAGES: &str = "FROM localhost/busybox:latest AS build\n\
COPY src.txt /src/\n\
RUN mkdir /out && grep -v '^#' /src/src.txt > /out/app\n\
FROM localhost/busybox:latest AS mid\n\
COPY --from=build /out /out\n\
RUN cat /out/app /out/app > /mid\n\
FROM localhost/busybox:latest\n\
COPY --from=mid /mid /final\n\
RUN wc -c /final > /size\n";

/// Early cutoff: a comment change reruns the first stage, whose output is
/// the same; everything that copies from it is served from the cache, and
/// the image is the one of the first build.
#[test]
fn a_stage_that_reruns_to_the_same_files_reruns_nothing_after_it() {
    let test = "a_stage_that_reruns_to_the_same_files_reruns_nothing_after_it";
    let Some((_dir, store, ctx)) = busybox_and_context(
        test,
        &[
            ("Dockerfile", THREE_STAGES),
            ("src.txt", "# version 1\nprint hello\n"),
        ],
    ) else {
        return;
    };
    let plain = |extra: &[&str]| {
        let out = succeed(
            rbk(&store)
                .args(["build", "--progress", "plain", "-t", "travel:1"])
                .args(extra)
                .arg(&ctx),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = plain(&[]);
    assert!(err.contains("6 steps run"), "{err}");
    let id = image_id(&store);

    write(
        &ctx,
        &[("src.txt", "# version 2: a comment only\nprint hello\n")],
    );
    let err = plain(&["--explain"]);
    assert!(err.contains(": 2 steps run, 4 cached"), "{err}");
    assert_eq!(image_id(&store), id, "the same image");

    // The next build finds every step in its first pass.
    let err = plain(&[]);
    assert!(err.contains(": 0 steps run, 6 cached"), "{err}");

    // A real change still reruns what depends on it.
    write(
        &ctx,
        &[("src.txt", "# version 2: a comment only\nprint bye\n")],
    );
    let err = plain(&[]);
    assert!(err.contains(": 6 steps run, 0 cached"), "{err}");
    assert_ne!(image_id(&store), id);
}
