//! A build context changed while a build runs: whatever the timing, the
//! cache never holds content under a key of other content. Racing, so
//! bounded: a few builds against a thread swapping a file's content, each
//! followed by a build of the context as it was, which must give it.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::build::{busybox_and_context, rbk, succeed};

/// Flips `ctx/f` between `texts` until `stop`, by rename (a new inode each
/// time, made outside the context) or rewritten in place.
fn swapper(
    (ctx, scratch): (&Path, &Path),
    texts: [String; 2],
    by_rename: bool,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (f, tmp) = (ctx.join("f"), scratch.join("f.next"));
    std::thread::spawn(move || {
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let text = &texts[(i + 1) % 2];
            if by_rename {
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &f).unwrap();
            } else {
                std::fs::write(&f, text).unwrap();
            }
            i += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    })
}

#[test]
fn a_context_changing_during_builds_never_poisons_the_cache() {
    let test = "a_context_changing_during_builds_never_poisons_the_cache";
    let df = "FROM localhost/busybox:latest\nCOPY . /ctx/\n";
    let files = [("Dockerfile", df), ("f", "")];
    let Some((dir, store, ctx)) = busybox_and_context(test, &files) else {
        return;
    };
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // New contents each round: a key cached right in an earlier round would
    // serve the raced build without copying anything.
    for round in 0..10 {
        let one = format!("one {round}\n");
        let texts = [one.clone(), format!("two {round}\n")];
        std::fs::write(ctx.join("f"), &one).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapping = swapper((&ctx, &scratch), texts, round % 2 == 0, stop.clone());
        // Fails ("changed while it was being …") or succeeds: both fine.
        let raced = rbk(&store)
            .args(["build", "--progress", "plain", "-t", "raced"])
            .arg(&ctx)
            .output()
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        swapping.join().unwrap();
        if !raced.status.success() {
            let err = String::from_utf8_lossy(&raced.stderr);
            assert!(err.contains("changed while it was being"), "{err}");
        }
        // The context as the first content, in a new file.
        std::fs::write(scratch.join("f.next"), &one).unwrap();
        std::fs::rename(scratch.join("f.next"), ctx.join("f")).unwrap();
        succeed(rbk(&store).args(["build", "-t", "clean"]).arg(&ctx));
        let out = succeed(rbk(&store).args(["run", "--rm", "clean", "cat", "/ctx/f"]));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            one,
            "round {round}: the image of the unchanged context holds another content"
        );
    }
}
