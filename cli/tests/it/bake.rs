//! `rbk bake`, as `docker buildx bake`: the bake file found in the current
//! directory (or `-f FILE`), targets, and `rbk build`'s flags.
#![allow(clippy::unwrap_used)]

use crate::build::{busybox_and_context, cat, rbk};

#[test]
fn bake_finds_its_file_and_builds_the_named_targets() {
    let test = "bake_finds_its_file_and_builds_the_named_targets";
    let df = "FROM localhost/busybox:latest\nARG WHO=nobody\nRUN echo $WHO > /who\n";
    let files = [
        ("Dockerfile", df),
        (
            "docker-bake.hcl",
            "target \"a\" {\n  args = { WHO = \"hcl-a\" }\n  tags = [\"bake/a\"]\n}\n\
             target \"b\" {\n  args = { WHO = \"hcl-b\" }\n  tags = [\"bake/b\"]\n}\n",
        ),
        (
            "compose.yaml",
            "services:\n  web:\n    build:\n      context: .\n      args:\n        WHO: compose\n    image: bake/web\n",
        ),
    ];
    let Some((_dir, store, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    // docker-bake.hcl is preferred to compose.yaml; only target b.
    let out = rbk(&store)
        .args(["bake", "--progress", "plain", "b"])
        .current_dir(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("using docker-bake.hcl"), "{err}");
    assert_eq!(cat(&store, "bake/b", "/who"), "hcl-b\n");
    let missing = rbk(&store)
        .args(["run", "--rm", "bake/a", "true"])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "target a was built too");
    // -f names another file; build flags go through (--build-arg loses to
    // the file's args as in bake, so use --set).
    let out = rbk(&store)
        .args([
            "bake",
            "-f",
            "compose.yaml",
            "--set",
            "web.args.WHO=set",
            "--no-cache",
        ])
        .current_dir(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cat(&store, "bake/web", "/who"), "set\n");
    // No bake file: said, with what was looked for.
    let empty = ctx.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = rbk(&store)
        .arg("bake")
        .current_dir(&empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no bake file") && err.contains("docker-bake.hcl"),
        "{err}"
    );
}
