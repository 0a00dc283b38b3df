//! `rbk build` end to end on a busybox base: real RUN, COPY and ADD, the
//! cache, parallel stages, failures, and the four bench cases (scaled down).
//! Needs root, namespaces and /bin/busybox; CI has them.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rbk_compiler::{Compiler, Input, NoResolver};
use rbk_runtime::sandbox::{sandbox_supported, CancelToken, NamespaceExecutor};
use rbk_scheduler::backend::store::StoreBackend;
use rbk_scheduler::progress::{Finish, OutputStream, Reporter, Step};
use rbk_scheduler::step::from::BaseImages;
use rbk_scheduler::{error_chain, BuildError, BuildOptions, BuildSession, BuildSummary, Services};
use rbk_store::images::Store;
use rbk_store::layer::{self, ApplyMode};
use rbk_store::reference::Reference;
use rbk_store::snapshot::{overlay_supported, CopySnapshotter, OverlaySnapshotter, Snapshotter};

const BUSYBOX: &str = "/bin/busybox";

/// A tar header with every numeric field set.
fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// Records every event with its time.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(String, usize, Instant, bool)>>,
    logs: Mutex<Vec<u8>>,
}

impl Reporter for Recorder {
    fn on_start(&self, s: &Step) {
        self.events
            .lock()
            .unwrap()
            .push(("start".into(), s.vertex, Instant::now(), false));
    }
    fn on_log(&self, _: &Step, _: OutputStream, data: &[u8]) {
        self.logs.lock().unwrap().extend_from_slice(data);
    }
    fn on_finish(&self, s: &Step, f: &Finish) {
        self.events.lock().unwrap().push((
            "finish".into(),
            s.vertex,
            Instant::now(),
            f.outcome == rbk_scheduler::progress::Outcome::Cached,
        ));
    }
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    snapshotter: Box<dyn Snapshotter>,
}

fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    dir("bin", 0o755);
    dir("etc", 0o755);
    dir("tmp", 0o1777);
    dir("root", 0o700);
    let data = std::fs::read(BUSYBOX).unwrap();
    let mut h = header();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "bin/busybox", &data[..]).unwrap();
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" {
            continue;
        }
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        ("etc/group", "root:x:0:\napp:x:1000:\n"),
    ] {
        let mut h = header();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A store with `localhost/busybox:latest`, or None (loudly) when this
/// machine cannot run build steps.
fn env(test: &str, copy: bool) -> Option<Env> {
    if let Err(why) = sandbox_supported() {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!("SKIPPED {test}: {BUSYBOX} is missing (apt-get install busybox-static)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Store::open(&root).unwrap();
    let r: Reference = "localhost/busybox:latest".parse().unwrap();
    rbk_store::archive::import(
        &store,
        &busybox_tar()[..],
        Some(&r),
        &["CMD [\"/bin/sh\"]".to_string()],
    )
    .unwrap();
    let snapshotter: Box<dyn Snapshotter> = if !copy && overlay_supported() {
        Box::new(OverlaySnapshotter::open(&root.join("snapshots")).unwrap())
    } else {
        if !copy {
            eprintln!("NOTE {test}: overlay unavailable, using the copy snapshotter");
        }
        Box::new(CopySnapshotter::open(&root.join("snapshots")).unwrap())
    };
    Some(Env {
        _dir: dir,
        root,
        store,
        snapshotter,
    })
}

/// A context directory with `files` (path → content).
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, c).unwrap();
    }
    d
}

fn input(name: &str, ctx: &Path, dockerfile: &str) -> Input {
    Input {
        name: name.to_string(),
        file: format!("{name}/Dockerfile"),
        source: dockerfile.to_string(),
        context: ctx.canonicalize().unwrap().display().to_string(),
        tags: vec![format!("{name}:latest")],
        ..Default::default()
    }
}

impl Env {
    fn build_with(
        &self,
        inputs: &[Input],
        opts: BuildOptions,
        rep: &Recorder,
    ) -> Result<BuildSummary, BuildError> {
        let mut c = Compiler::new(&NoResolver);
        for i in inputs {
            c.add(i).unwrap();
        }
        let graph = c.finish();
        let backend = StoreBackend::new(&self.store, self.snapshotter.as_ref());
        let bases = BaseImages::new(&self.store);
        let services = Services {
            bases: &bases,
            images: &self.store,
            layers: &backend,
            cache: &backend,
            executor: &NamespaceExecutor,
            reporter: rep,
            dirs: backend.work_dirs(),
        };
        BuildSession::new(&graph, services, opts)?.build(&CancelToken::new())
    }

    fn build(&self, inputs: &[Input]) -> BuildSummary {
        match self.build_with(inputs, BuildOptions::default(), &Recorder::default()) {
            Ok(s) => s,
            Err(e) => panic!("build failed: {}", error_chain(&e)),
        }
    }

    /// The image's file tree, unpacked from its layer blobs into a dir.
    fn tree(&self, name: &str) -> tempfile::TempDir {
        let img = self.store.resolve(name).unwrap();
        let out = tempfile::tempdir().unwrap();
        for l in &img.manifest.layers {
            let blob = self.store.content.open_blob(&l.digest).unwrap();
            let plain = rbk_store::compress::decompress(blob).unwrap();
            layer::apply(plain, out.path(), ApplyMode::Merge).unwrap();
        }
        out
    }

    fn config(&self, name: &str) -> rbk_store::oci::ContainerConfig {
        self.store
            .resolve(name)
            .unwrap()
            .config
            .config
            .clone()
            .unwrap()
    }
}

/// Mounts under `root` (other tests of this binary mount elsewhere at the
/// same time).
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&root))
        .map(String::from)
        .collect()
}

#[test]
fn single_image_runs_copies_and_caches() {
    for copy in [false, true] {
        let Some(env) = env("single_image_runs_copies_and_caches", copy) else {
            return;
        };
        let ctx = context(&[
            ("src/a.txt", "alpha\n"),
            ("src/skip.log", "ignored\n"),
            (".dockerignore", "**/*.log\n"),
            ("last/stamp.txt", "one\n"),
        ]);
        let df = "FROM localhost/busybox:latest\nENV APP_HOME=/app GREETING=hi\nWORKDIR $APP_HOME\nCOPY src/ /app/src/\nRUN echo \"$GREETING $(cat src/a.txt)\" > out.txt && rm /etc/group\nUSER app\nEXPOSE 8080\nCOPY last/ /app/last/\nCMD [\"/bin/sh\"]\n";
        let i = input("single", ctx.path(), df);
        let s = env.build(std::slice::from_ref(&i));
        // WORKDIR creates /app: a step of its own, as in BuildKit.
        assert_eq!((s.ran, s.cached), (4, 0), "copy={copy}");
        let tree = env.tree("single");
        let t = tree.path();
        assert_eq!(
            std::fs::read_to_string(t.join("app/out.txt")).unwrap(),
            "hi alpha\n"
        );
        assert!(t.join("app/src/a.txt").exists());
        assert!(!t.join("app/src/skip.log").exists(), ".dockerignore");
        assert!(!t.join("etc/group").exists(), "a RUN delete is a whiteout");
        assert!(t.join("etc/passwd").exists());
        let c = env.config("single");
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert!(c.env.unwrap().contains(&"GREETING=hi".to_string()));
        assert!(c.exposed_ports.unwrap().contains_key("8080/tcp"));
        let first = env.store.resolve("single").unwrap();

        // No-op rebuild: everything cached, same image.
        let s = env.build(std::slice::from_ref(&i));
        assert_eq!((s.ran, s.cached), (0, 4));
        assert_eq!(env.store.resolve("single").unwrap().id, first.id);

        // Change the file only the last COPY reads.
        std::fs::write(ctx.path().join("last/stamp.txt"), "two\n").unwrap();
        let rep = Recorder::default();
        let opts = BuildOptions {
            explain: true,
            ..Default::default()
        };
        let s = env
            .build_with(std::slice::from_ref(&i), opts, &rep)
            .unwrap();
        assert_eq!((s.ran, s.cached), (1, 3));
        let tree = env.tree("single");
        assert_eq!(
            std::fs::read_to_string(tree.path().join("app/last/stamp.txt")).unwrap(),
            "two\n"
        );
    }
}

#[test]
fn independent_stages_run_in_parallel_and_copy_from_works() {
    let Some(env) = env("independent_stages_run_in_parallel", false) else {
        return;
    };
    let ctx = context(&[("last/stamp.txt", "x\n")]);
    let mut df = String::new();
    for s in 1..=4 {
        df.push_str(&format!(
            "FROM localhost/busybox:latest AS s{s}\nRUN sleep 1 && echo {s} > /s{s}.bin\n"
        ));
    }
    df.push_str("FROM localhost/busybox:latest\n");
    for s in 1..=4 {
        df.push_str(&format!("COPY --from=s{s} /s{s}.bin /out/s{s}.bin\n"));
    }
    df.push_str("COPY last/ /out/last/\n");
    let rep = Recorder::default();
    let opts = BuildOptions {
        jobs: 8,
        ..Default::default()
    };
    let s = env
        .build_with(&[input("multi", ctx.path(), &df)], opts, &rep)
        .unwrap();
    assert_eq!(s.ran, 9);
    // The four RUNs overlapped: all started before any finished.
    let events = rep.events.lock().unwrap();
    let logs_free: Vec<_> = events.iter().collect();
    let runs: Vec<usize> = logs_free
        .iter()
        .filter(|(k, _, _, _)| k == "start")
        .map(|(_, v, _, _)| *v)
        .take(4)
        .collect();
    let last_start = logs_free
        .iter()
        .filter(|(k, v, _, _)| k == "start" && runs.contains(v))
        .map(|(_, _, t, _)| *t)
        .max()
        .unwrap();
    let first_finish = logs_free
        .iter()
        .filter(|(k, v, _, _)| k == "finish" && runs.contains(v))
        .map(|(_, _, t, _)| *t)
        .min()
        .unwrap();
    assert!(last_start < first_finish, "stages ran one after another");
    let tree = env.tree("multi");
    for s in 1..=4 {
        assert_eq!(
            std::fs::read_to_string(tree.path().join(format!("out/s{s}.bin"))).unwrap(),
            format!("{s}\n")
        );
    }
}

#[test]
fn shared_steps_of_several_images_run_once() {
    let Some(env) = env("shared_steps_of_several_images_run_once", false) else {
        return;
    };
    let ctx = context(&[("f", "1")]);
    let common = "FROM localhost/busybox:latest\nRUN echo shared >> /log\n";
    let a = input("a", ctx.path(), &format!("{common}RUN echo a > /who\n"));
    let b = input("b", ctx.path(), &format!("{common}RUN echo b > /who\n"));
    let s = env.build(&[a, b]);
    assert_eq!(s.ran, 3, "the shared RUN ran once");
    for (name, who) in [("a", "a\n"), ("b", "b\n")] {
        let t = env.tree(name);
        assert_eq!(std::fs::read_to_string(t.path().join("who")).unwrap(), who);
        assert_eq!(
            std::fs::read_to_string(t.path().join("log")).unwrap(),
            "shared\n"
        );
    }
}

#[test]
fn failing_step_is_reported_and_leaves_nothing_behind() {
    let Some(env) = env("failing_step_is_reported", false) else {
        return;
    };
    let ctx = context(&[("f", "1")]);
    let df = "FROM localhost/busybox:latest\nRUN echo ok > /a\nRUN echo about to fail && echo oops >&2 && exit 3\n";
    let err = env
        .build_with(
            &[input("bad", ctx.path(), df)],
            BuildOptions::default(),
            &Recorder::default(),
        )
        .unwrap_err();
    let msg = error_chain(&err);
    let BuildError::Step { file, line, .. } = &err else {
        panic!("not a step failure: {msg}");
    };
    assert_eq!((file.as_str(), *line), ("bad/Dockerfile", 3), "{msg}");
    assert!(msg.contains("exited with code 3"), "{msg}");
    assert!(
        msg.contains("about to fail") && msg.contains("oops"),
        "{msg}"
    );
    assert!(
        env.store.resolve("bad:latest").is_err(),
        "no image was tagged"
    );
    assert_eq!(
        mounts_under(&env.root),
        Vec::<String>::new(),
        "no mount left behind"
    );
    let leftovers: Vec<_> = env
        .snapshotter
        .list()
        .unwrap()
        .into_iter()
        .filter(|s| s.key.starts_with("active-") || s.key.starts_with("view-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let tmp: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn cache_mounts_persist_and_secrets_stay_out_of_layers() {
    let Some(env) = env("cache_mounts_persist", false) else {
        return;
    };
    let ctx = context(&[("f", "1")]);
    let secret = ctx.path().join("token");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    let df = "FROM localhost/busybox:latest\nARG N=1\nRUN --mount=type=cache,target=/cache echo $N >> /cache/runs && cat /cache/runs | wc -l > /count\nRUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /dev/null && test ! -e /leak\n";
    let mut opts = BuildOptions {
        secrets: BTreeMap::from([("tok".to_string(), secret.clone())]),
        ..Default::default()
    };
    let mut i = input("mounts", ctx.path(), df);
    env.build_with(std::slice::from_ref(&i), opts.clone(), &Recorder::default())
        .unwrap();
    i.build_args.insert("N".into(), "2".into());
    env.build_with(std::slice::from_ref(&i), opts.clone(), &Recorder::default())
        .unwrap();
    let t = env.tree("mounts");
    assert_eq!(
        std::fs::read_to_string(t.path().join("count"))
            .unwrap()
            .trim(),
        "2"
    );
    assert!(
        !t.path().join("cache").join("runs").exists(),
        "cache is not in a layer"
    );
    assert!(
        !t.path().join("run/secrets/tok").exists(),
        "secret is not in a layer"
    );
    // Without the secret, a required secret fails clearly.
    opts.secrets.clear();
    opts.no_cache = true;
    let err = env
        .build_with(&[i], opts, &Recorder::default())
        .unwrap_err();
    assert!(
        error_chain(&err).contains("secret \"tok\" is required"),
        "{err}"
    );
}

#[test]
fn add_unpacks_local_archives_and_chown_applies() {
    let Some(env) = env("add_unpacks_local_archives", false) else {
        return;
    };
    let ctx = context(&[("plain.txt", "p\n")]);
    // A gzip tarball in the context.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header();
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(&mut h, "pkg-1.0/README", &b"hi\n"[..])
        .unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    std::fs::write(ctx.path().join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();
    let df = "FROM localhost/busybox:latest\nADD pkg.tar.gz /opt/\nCOPY --chown=app:app --chmod=600 plain.txt /home/app/\n";
    env.build(&[input("add", ctx.path(), df)]);
    let t = env.tree("add");
    assert_eq!(
        std::fs::read_to_string(t.path().join("opt/pkg-1.0/README")).unwrap(),
        "hi\n"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(t.path().join("home/app/plain.txt")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (1000, 1000, 0o600));
}

/// The four cases of bench/cases, with their sizes scaled down so
/// the suite stays quick; the bench script runs them at full size.
#[test]
fn bench_cases_build() {
    let Some(env) = env("bench_cases_build", false) else {
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/cases");
    let read = |case: &str| {
        std::fs::read_to_string(dir.join(case).join("Dockerfile"))
            .unwrap_or_else(|e| panic!("bench case {case} missing: {e}"))
            .replace("count=200", "count=2")
            .replace("count=20 ", "count=1 ")
            .replace("sleep 2", "sleep 0.2")
    };
    // single
    let ctx = context(&[
        ("src/f1.txt", "1"),
        ("src/f2.txt", "2"),
        ("last/stamp.txt", "init"),
    ]);
    env.build(&[input("single", ctx.path(), &read("single"))]);
    let t = env.tree("single");
    assert_eq!(
        std::fs::metadata(t.path().join("app/blob.bin"))
            .unwrap()
            .len(),
        2 << 20
    );
    assert!(
        std::fs::read_to_string(t.path().join("app/etc/listing.txt"))
            .unwrap()
            .contains("f2.txt")
    );
    // multistage
    let ctx = context(&[("last/stamp.txt", "init")]);
    env.build(&[input("multistage", ctx.path(), &read("multistage"))]);
    let t = env.tree("multistage");
    for s in 1..=4 {
        assert_eq!(
            std::fs::metadata(t.path().join(format!("out/s{s}.bin")))
                .unwrap()
                .len(),
            1 << 20
        );
    }
    // wide: 2,000 small files and one 8 MiB file.
    let ctx = context(&[("last/stamp.txt", "init")]);
    for d in 0..20 {
        let p = ctx.path().join(format!("files/d{d:03}"));
        std::fs::create_dir_all(&p).unwrap();
        for f in 0..100 {
            std::fs::write(p.join(format!("f{f:03}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    std::fs::write(ctx.path().join("big.bin"), vec![7u8; 8 << 20]).unwrap();
    let i = input("wide", ctx.path(), &read("wide"));
    env.build(std::slice::from_ref(&i));
    let t = env.tree("wide");
    assert_eq!(
        std::fs::read_to_string(t.path().join("data/files/d019/f099.txt")).unwrap(),
        "19/99"
    );
    assert_eq!(
        std::fs::metadata(t.path().join("data/big.bin"))
            .unwrap()
            .len(),
        8 << 20
    );
    let s = env.build(&[i]);
    assert_eq!(s.ran, 0, "no-op rebuild of wide");
}

#[test]
fn workdir_creates_its_directory_owned_by_the_user() {
    let Some(env) = env("workdir_creates_its_directory_owned_by_the_user", false) else {
        return;
    };
    let ctx = context(&[("a.txt", "a\n")]);
    // /srv/data: made as root; /srv/data/www: as USER 33 (www-data); /tmp
    // exists already, so its WORKDIR adds no layer.
    let df =
        "FROM localhost/busybox:latest\nWORKDIR /srv/data\nUSER 33\nWORKDIR www\nWORKDIR /tmp\n";
    let i = input("wd", ctx.path(), df);
    let s = env.build(std::slice::from_ref(&i));
    assert_eq!((s.ran, s.cached), (3, 0));
    let tree = env.tree("wd");
    let meta = |p: &str| std::fs::metadata(tree.path().join(p)).unwrap();
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        (meta("srv/data").uid(), meta("srv/data").mode() & 0o7777),
        (0, 0o755)
    );
    assert_eq!(
        (meta("srv/data/www").uid(), meta("srv/data/www").gid()),
        (33, 33)
    );
    let base = env.store.resolve("localhost/busybox:latest").unwrap();
    let img = env.store.resolve("wd").unwrap();
    assert_eq!(img.manifest.layers.len(), base.manifest.layers.len() + 2);
    let history: Vec<(String, bool)> = img
        .config
        .history
        .iter()
        .skip(base.config.history.len())
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect();
    assert_eq!(
        history,
        [
            ("WORKDIR /srv/data".to_string(), false),
            ("USER 33".to_string(), true),
            ("WORKDIR /srv/data/www".to_string(), false),
            ("WORKDIR /tmp".to_string(), true),
        ]
    );
    assert_eq!(env.config("wd").working_dir.as_deref(), Some("/tmp"));
    // Cached the second time, the same image (the no-layer WORKDIR too).
    let s = env.build(std::slice::from_ref(&i));
    assert_eq!((s.ran, s.cached), (0, 3));
    assert_eq!(env.store.resolve("wd").unwrap().id, img.id);
}
