//! The build core on in-memory backends (see `fakes.rs`): cache keys, the
//! two passes, parallelism, cancellation, errors and `--explain`, with no
//! root, mounts or network. RUN steps run a tiny fake shell:
//! `write PATH TEXT`, `sleep MS`, `fail CODE`, `block` (until cancelled),
//! `readmount TARGET FILE PATH` (copies FILE of the bind mount at TARGET).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rbk_runtime::sandbox::{CancelToken, ExecSpec, Executor, SandboxError};
use rbk_scheduler::progress::{Finish, OutputStream, Reporter, Step};
use rbk_scheduler::step::from::BaseImages;
use rbk_scheduler::{BuildError, BuildOptions, BuildSession, BuildSummary, StepError};

use crate::fakes::Backends;

/// Runs the fake shell of the module's documentation.
#[derive(Default)]
struct FakeShell {
    runs: Mutex<Vec<String>>,
    cancelled: AtomicUsize,
    /// What the preflight says (`None`: it can run).
    refuse: Mutex<Option<String>>,
    preflights: AtomicUsize,
}

impl Executor for FakeShell {
    fn preflight(&self) -> Result<(), String> {
        self.preflights.fetch_add(1, Ordering::SeqCst);
        match self.refuse.lock().unwrap().clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn run(
        &self,
        rootfs: &Path,
        spec: &ExecSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
        cancel: &CancelToken,
    ) -> Result<i32, SandboxError> {
        let script = spec.args.last().cloned().unwrap_or_default();
        self.runs.lock().unwrap().push(script.clone());
        let words: Vec<&str> = script.split_whitespace().collect();
        match words.as_slice() {
            ["write", path, text @ ..] => {
                let p = rootfs.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text.join(" ")).unwrap();
            }
            ["readmount", target, file, path] => {
                let m = spec.mounts.iter().find(|m| m.target == *target).unwrap();
                let p = rootfs.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::copy(m.source.join(file), p).unwrap();
            }
            ["sleep", ms] => std::thread::sleep(Duration::from_millis(ms.parse().unwrap())),
            ["fail", code] => {
                output(OutputStream::Stderr, b"it broke\n");
                return Ok(code.parse().unwrap());
            }
            ["block"] => {
                while !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                return Err(SandboxError::Cancelled);
            }
            _ => panic!("the fake shell cannot run {script:?}"),
        }
        Ok(0)
    }
}

/// Events with their times, explanations and logs.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(&'static str, String, Instant)>>,
    explained: Mutex<Vec<(String, String)>>,
    logs: Mutex<String>,
}

impl Reporter for Recorder {
    fn on_start(&self, s: &Step) {
        let e = ("start", s.text.clone(), Instant::now());
        self.events.lock().unwrap().push(e);
    }
    fn on_log(&self, _: &Step, _: OutputStream, data: &[u8]) {
        self.logs
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(data));
    }
    fn on_finish(&self, s: &Step, f: &Finish) {
        let kind = if f.outcome == rbk_scheduler::progress::Outcome::Cached {
            "cached"
        } else {
            "finish"
        };
        self.events
            .lock()
            .unwrap()
            .push((kind, s.text.clone(), Instant::now()));
        if let Some(why) = &f.explain {
            self.explained
                .lock()
                .unwrap()
                .push((s.text.clone(), why.clone()));
        }
    }
}

/// A build context, fake backends sharing one cache and image list, and a
/// base image `base` of one file.
struct World {
    b: Backends,
    shell: FakeShell,
}

impl std::ops::Deref for World {
    type Target = Backends;
    fn deref(&self) -> &Backends {
        &self.b
    }
}

impl World {
    fn new() -> World {
        World {
            b: Backends::new(),
            shell: FakeShell::default(),
        }
    }

    fn file(&self, path: &str, text: &str) {
        let p = self.ctx.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn build_with(
        &self,
        dockerfile: &str,
        options: BuildOptions,
        rep: &Recorder,
        cancel: &CancelToken,
    ) -> Result<BuildSummary, BuildError> {
        let graph = self.graph(dockerfile, &["app:latest"]);
        let bases = BaseImages::new(&self.images);
        let services = self.services(&bases, &self.shell, rep);
        BuildSession::new(&graph, services, options)?.build(cancel)
    }

    fn build(&self, dockerfile: &str) -> (BuildSummary, Recorder) {
        let rep = Recorder::default();
        let opts = BuildOptions {
            explain: true,
            ..Default::default()
        };
        let s = self
            .build_with(dockerfile, opts, &rep, &CancelToken::new())
            .unwrap_or_else(|e| panic!("{}", rbk_scheduler::error_chain(&e)));
        (s, rep)
    }

    fn runs(&self) -> Vec<String> {
        std::mem::take(&mut *self.shell.runs.lock().unwrap())
    }
}

const TWO_STEPS: &str = "FROM base\nCOPY a.txt /a.txt\nRUN write /b.txt built\nCMD [\"/app\"]\n";

#[test]
fn a_rebuild_runs_nothing_and_gives_the_same_image() {
    let w = World::new();
    w.file("a.txt", "one");
    let (first, _) = w.build(TWO_STEPS);
    assert_eq!((first.ran, first.cached), (2, 0));
    let (again, rep) = w.build(TWO_STEPS);
    assert_eq!((again.ran, again.cached), (0, 2));
    assert_eq!(again.images[0].id, first.images[0].id);
    assert!(w.runs().len() == 1, "RUN ran once in two builds");
    assert!(rep.explained.lock().unwrap().is_empty());
    // The committed image holds the base's layer and both new ones.
    let committed = w.images.committed.lock().unwrap();
    assert_eq!(committed[0].1.len(), 3);
    assert_eq!(
        committed[0].2,
        vec!["docker.io/library/app:latest".to_string()]
    );
}

#[test]
fn a_changed_file_misses_from_its_copy_down_and_explain_says_why() {
    let w = World::new();
    w.file("a.txt", "one");
    let df = "FROM base\nRUN write /first.txt x\nCOPY a.txt /a.txt\nRUN write /b.txt built\n";
    w.build(df);
    w.runs();
    w.file("a.txt", "two");
    let (s, rep) = w.build(df);
    assert_eq!((s.ran, s.cached), (2, 1));
    assert_eq!(w.runs(), vec!["write /b.txt built".to_string()]);
    let why = rep.explained.lock().unwrap().clone();
    assert_eq!(
        why,
        vec![
            (
                "COPY a.txt /a.txt".to_string(),
                "file changed: a.txt".to_string()
            ),
            (
                "RUN write /b.txt built".to_string(),
                "the step before it changed".to_string()
            ),
        ]
    );
    // The new layer has the new content.
    let layers = w.layers.layers.lock().unwrap();
    assert!(layers
        .values()
        .any(|f| f.get("a.txt").map(|c| c.as_slice()) == Some(&b"two"[..])));
}

#[test]
fn a_served_copy_from_leaves_its_stage_alone() {
    let w = World::new();
    let df = "FROM base AS build\nRUN write /out built\nFROM base\nCOPY --from=build /out /out\n";
    w.build(df);
    assert_eq!(w.runs(), vec!["write /out built".to_string()]);
    // Forget the build stage's record (a `mode=min` cache has none): the
    // final COPY is still served, so the stage must not run.
    w.cache
        .records
        .lock()
        .unwrap()
        .retain(|_, r| r.inputs["step"] != "RUN write /out built");
    let (s, _) = w.build(df);
    assert_eq!(s.ran, 0);
    assert!(w.runs().is_empty(), "the build stage ran");
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let w = World::new();
    let mut df = String::new();
    for i in 0..3 {
        df.push_str(&format!(
            "FROM base AS s{i}\nRUN sleep 15{i}\nRUN write /s{i} {i}\n"
        ));
    }
    df.push_str(
        "FROM base\nCOPY --from=s0 /s0 /s0\nCOPY --from=s1 /s1 /s1\nCOPY --from=s2 /s2 /s2\n",
    );
    let rep = Recorder::default();
    let opts = BuildOptions {
        jobs: 4,
        ..Default::default()
    };
    w.build_with(&df, opts, &rep, &CancelToken::new()).unwrap();
    // Each stage sleeps 150 ms: run at once, every sleep starts before any
    // ends; one after another, the second would start after the first ended.
    let events = rep.events.lock().unwrap();
    let sleeps: Vec<_> = events
        .iter()
        .filter(|e| e.1.starts_with("RUN sleep"))
        .collect();
    assert_eq!(sleeps.iter().filter(|e| e.0 == "start").count(), 3);
    let last_start = sleeps
        .iter()
        .filter(|e| e.0 == "start")
        .map(|e| e.2)
        .max()
        .unwrap();
    let first_end = sleeps
        .iter()
        .filter(|e| e.0 == "finish")
        .map(|e| e.2)
        .min()
        .unwrap();
    assert!(
        last_start < first_end,
        "the three stages ran one after another"
    );
}

#[test]
fn a_failing_step_cancels_the_others_and_names_its_line() {
    let w = World::new();
    let df = "FROM base AS slow\nRUN block\nFROM base\nRUN sleep 20\nRUN fail 3\nCOPY --from=slow /x /x\n";
    let rep = Recorder::default();
    let err = w
        .build_with(df, BuildOptions::default(), &rep, &CancelToken::new())
        .unwrap_err();
    let BuildError::Step {
        file, line, error, ..
    } = &err
    else {
        panic!("{}", rbk_scheduler::error_chain(&err));
    };
    assert_eq!((file.as_str(), *line), ("Dockerfile", 5));
    match error.as_ref() {
        StepError::Exit { code, tail, .. } => {
            assert_eq!(*code, 3);
            assert_eq!(tail, &vec!["it broke".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.shell.cancelled.load(Ordering::SeqCst),
        1,
        "the other stage went on"
    );
    assert!(w.images.committed.lock().unwrap().is_empty());
}

#[test]
fn cancelling_stops_the_build_and_commits_nothing() {
    let w = World::new();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        c2.cancel();
    });
    let err = w
        .build_with(
            "FROM base\nRUN block\n",
            BuildOptions::default(),
            &Recorder::default(),
            &cancel,
        )
        .unwrap_err();
    t.join().unwrap();
    assert!(matches!(err, BuildError::Cancelled), "{err:?}");
    assert!(w.cache.records.lock().unwrap().is_empty());
    assert!(w.images.committed.lock().unwrap().is_empty());
    assert_eq!(*w.layers.commits.lock().unwrap(), 0);
}

#[test]
fn concurrent_builds_run_an_identical_step_once() {
    let w = World::new();
    let df = "FROM base\nRUN sleep 100\nRUN write /done yes\n";
    let ids: Vec<_> = std::thread::scope(|s| {
        let builds: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let rep = Recorder::default();
                    let out = w.build_with(df, BuildOptions::default(), &rep, &CancelToken::new());
                    let log = rep.logs.lock().unwrap().clone();
                    (out.unwrap().images[0].id.clone(), log)
                })
            })
            .collect();
        builds.into_iter().map(|b| b.join().unwrap()).collect()
    });
    assert_eq!(w.runs().len(), 2, "each RUN once across three builds");
    assert!(ids.iter().all(|(id, _)| id == &ids[0].0));
    assert!(ids
        .iter()
        .any(|(_, log)| log.contains("waiting for another rbk process")));
}

#[test]
fn bases_resolve_once_and_a_missing_one_fails_before_any_step() {
    let w = World::new();
    let df = "FROM base AS a\nRUN write /a 1\nFROM base\nCOPY --from=a /a /a\n";
    w.build(df);
    assert_eq!(
        w.images.resolves.lock().unwrap().as_slice(),
        ["base:latest"]
    );
    w.runs();
    let err = w
        .build_with(
            "FROM base\nRUN write /x 1\nFROM nosuch\nRUN write /y 1\n",
            BuildOptions::default(),
            &Recorder::default(),
            &CancelToken::new(),
        )
        .unwrap_err();
    let msg = rbk_scheduler::error_chain(&err);
    assert!(msg.contains("base image nosuch"), "{msg}");
    assert!(matches!(&err, BuildError::Step { line: 3, .. }), "{msg}");
    assert!(
        w.runs().is_empty(),
        "a step ran before the bases were checked"
    );
}

#[test]
fn the_sandbox_is_asked_once_and_only_when_a_run_must_run() {
    let w = World::new();
    w.file("a.txt", "one");
    *w.shell.refuse.lock().unwrap() = Some("no namespaces here".into());
    let rep = Recorder::default();
    let err = w
        .build_with(
            TWO_STEPS,
            BuildOptions::default(),
            &rep,
            &CancelToken::new(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Sandbox(why) if why == "no namespaces here"),
        "{err}"
    );
    assert!(w.runs().is_empty());
    assert!(
        rep.events.lock().unwrap().is_empty(),
        "refused before any step started"
    );
    // Where it can run: asked once for the build.
    *w.shell.refuse.lock().unwrap() = None;
    w.shell.preflights.store(0, Ordering::SeqCst);
    w.build(TWO_STEPS);
    assert_eq!(w.shell.preflights.load(Ordering::SeqCst), 1);
    // Every RUN cached, or none at all: not asked.
    *w.shell.refuse.lock().unwrap() = Some("no namespaces here".into());
    let (again, _) = w.build(TWO_STEPS);
    assert_eq!((again.ran, again.cached), (0, 2));
    w.build("FROM base\nCOPY a.txt /copied.txt\n");
    assert_eq!(w.shell.preflights.load(Ordering::SeqCst), 1);
}

#[test]
fn a_linked_copy_made_beside_a_failing_run_is_reported_finished() {
    let w = World::new();
    w.file("a.txt", "one");
    let rep = Recorder::default();
    // The linked layer is made while the first RUN sleeps; the second
    // fails, so the layer is never stacked.
    let df = "FROM base\nRUN sleep 200\nRUN fail 3\nCOPY --link a.txt /a.txt\n";
    let opts = BuildOptions {
        jobs: 2,
        ..Default::default()
    };
    let err = w
        .build_with(df, opts, &rep, &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, BuildError::Step { .. }), "{err}");
    let events = rep.events.lock().unwrap();
    let copy: Vec<&str> = events
        .iter()
        .filter(|(_, text, _)| text.starts_with("COPY --link"))
        .map(|(kind, _, _)| *kind)
        .collect();
    assert_eq!(copy, ["start", "finish"], "{events:?}");
    // Every step that started is reported finished.
    let starts = events.iter().filter(|e| e.0 == "start").count();
    let ends = events.iter().filter(|e| e.0 != "start").count();
    assert_eq!(starts, ends, "{events:?}");
}

#[test]
fn a_record_without_its_layer_serves_nothing_and_the_copy_runs_with_its_stage() {
    let w = World::new();
    let df = "FROM base AS b\nRUN write /x.txt made\nFROM base\nCOPY --from=b /x.txt /x.txt\n";
    w.build(df);
    assert_eq!(w.runs().len(), 1);
    // The COPY's record loses its layer (as a record of an older rbk, or a
    // half-written one, could): not a hit. The COPY runs, and with it the
    // stage it copies from is needed again (served from the cache).
    for rec in w.cache.records.lock().unwrap().values_mut() {
        if rec.inputs.to_string().contains("COPY --from") {
            rec.layer = None;
            rec.diff_id = None;
        }
    }
    let (s, _) = w.build(df);
    assert_eq!((s.ran, s.cached), (1, 1));
    assert!(w.runs().is_empty(), "the RUN came from the cache");
}

#[test]
fn early_hashed_contexts_fail_at_their_own_copy_line() {
    let w = World::new();
    w.file("a.txt", "a");
    let line_of = |df: &str| {
        let rep = Recorder::default();
        let err = w
            .build_with(df, BuildOptions::default(), &rep, &CancelToken::new())
            .unwrap_err();
        let BuildError::Step { line, error, .. } = &err else {
            panic!("{}", rbk_scheduler::error_chain(&err));
        };
        let why = rbk_scheduler::error_chain(error.as_ref());
        assert!(why.contains("missing.txt"), "{why}");
        *line
    };
    // Every context COPY is selected and hashed before the steps above it
    // are planned; a failure still belongs to its own step.
    assert_eq!(
        line_of("FROM base\nCOPY a.txt /a\nRUN write /b b\nCOPY missing.txt /m\n"),
        4
    );
    // Two failing: the first in the chain is the one reported.
    assert_eq!(
        line_of("FROM base\nCOPY missing.txt /m\nCOPY missing.txt.2 /n\n"),
        2
    );
    assert!(w.shell.runs.lock().unwrap().is_empty(), "nothing ran");
}

/// The files of the image last committed, merged bottom to top.
fn image_files(w: &World) -> crate::fakes::Files {
    let committed = w.images.committed.lock().unwrap();
    let layers = w.layers.layers.lock().unwrap();
    let mut out = crate::fakes::Files::new();
    for desc in &committed.last().unwrap().1 {
        out.extend(layers[&desc.digest].clone());
    }
    out
}

/// `change` runs after the build's keys are made and before its COPY
/// reads the context: the build must fail naming `f`, cache nothing, and a
/// build of the context as it was hashed must copy it afresh.
fn changed_during_copy(df: &str, change: impl Fn(&Path) + Send + 'static) {
    let w = World::new();
    w.file("f", "one");
    let ctx = w.ctx.path().to_path_buf();
    *w.layers.on_prepare.lock().unwrap() = Some(Box::new(move || change(&ctx)));
    let rep = Recorder::default();
    let err = w
        .build_with(df, BuildOptions::default(), &rep, &CancelToken::new())
        .unwrap_err();
    let why = rbk_scheduler::error_chain(&err);
    assert!(
        why.contains("context file f changed while it was being copied"),
        "{why}"
    );
    assert!(w.cache.records.lock().unwrap().is_empty(), "nothing cached");
    *w.layers.on_prepare.lock().unwrap() = None;
    // The context as it was hashed, by a new file of that content.
    std::fs::remove_file(w.ctx.path().join("f")).unwrap();
    w.file("f", "one");
    let (again, _) = w.build(df);
    assert_eq!((again.ran, again.cached), (1, 0));
    let files = image_files(&w);
    let copied = files.get("ctx/f").or(files.get("out/f"));
    assert_eq!(copied.map(Vec::as_slice), Some(&b"one"[..]));
}

#[test]
fn a_context_file_renamed_over_during_a_copy_is_not_cached() {
    for df in [
        "FROM base\nCOPY . /ctx/\n",
        "FROM base\nCOPY --link . /ctx/\n",
    ] {
        changed_during_copy(df, |ctx| {
            std::fs::write(ctx.join("f.new"), "two").unwrap();
            std::fs::rename(ctx.join("f.new"), ctx.join("f")).unwrap();
        });
    }
}

#[test]
fn a_context_file_rewritten_in_place_during_a_copy_is_not_cached() {
    for df in [
        "FROM base\nCOPY . /ctx/\n",
        "FROM base\nCOPY --link . /ctx/\n",
    ] {
        changed_during_copy(df, |ctx| std::fs::write(ctx.join("f"), "two").unwrap());
    }
}

const READS_BIND: &str =
    "FROM base\nRUN --mount=type=bind,source=src,target=/src readmount /src f /out\n";

#[test]
fn a_run_is_keyed_on_the_context_it_bind_mounts() {
    let w = World::new();
    w.file("src/f", "one");
    w.file("other", "x");
    let (first, _) = w.build(READS_BIND);
    assert_eq!((first.ran, first.cached), (1, 0));
    assert_eq!(image_files(&w)["out"], b"one");
    // Outside the mount: still a hit.
    w.file("other", "y");
    let (again, _) = w.build(READS_BIND);
    assert_eq!((again.ran, again.cached), (0, 1));
    w.file("src/f", "two");
    let (changed, _) = w.build(READS_BIND);
    assert_eq!((changed.ran, changed.cached), (1, 0));
    assert_eq!(image_files(&w)["out"], b"two");
}

#[test]
fn a_context_file_changed_while_a_run_mounts_it_is_not_cached() {
    let w = World::new();
    w.file("src/f", "one");
    let f = w.ctx.path().join("src/f");
    let next = w.work.path().join("f.next");
    // After the key is made, before the command reads the mount.
    *w.layers.on_prepare.lock().unwrap() = Some(Box::new(move || {
        std::fs::write(&next, "two").unwrap();
        std::fs::rename(&next, &f).unwrap();
    }));
    let rep = Recorder::default();
    let err = w
        .build_with(
            READS_BIND,
            BuildOptions::default(),
            &rep,
            &CancelToken::new(),
        )
        .unwrap_err();
    let why = rbk_scheduler::error_chain(&err);
    assert!(
        why.contains("context file src/f changed while a RUN step had it mounted"),
        "{why}"
    );
    assert!(w.cache.records.lock().unwrap().is_empty(), "nothing cached");
}

/// Answers every request on 127.0.0.1 with `body`; returns the base URL.
fn serve(body: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_add_with_a_url_beside_context_files_copies_those_keyed() {
    let url = serve(b"downloaded");
    let df = format!("FROM base\nADD {url}/x.txt f /out/\n");
    changed_during_copy(&df, |ctx| {
        std::fs::write(ctx.join("f.new"), "two").unwrap();
        std::fs::rename(ctx.join("f.new"), ctx.join("f")).unwrap();
    });
}
