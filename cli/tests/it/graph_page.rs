//! `rbk graph --format html` in a real browser: headless Chromium at the
//! 1400×900 the issue asks for. The page's script leaves what it did on
//! `<body>` (`data-rendered`, `data-fit-scale`, `data-fits`, …), which
//! `--dump-dom` shows; each test also keeps a screenshot under
//! `<target>/graph-screenshots/` and prints its path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::{rbk, succeed, write};

/// Debian's chromium, headless, or None (loudly).
pub(crate) fn chromium(test: &str) -> Option<&'static str> {
    let bin = "/usr/bin/chromium";
    if Path::new(bin).exists() {
        Some(bin)
    } else {
        crate::skip(
            test,
            &format!("{bin} is missing (scripts/test.sh installs chromium)"),
        );
        None
    }
}

/// Headless Chromium in the issue's window.
const BROWSER: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1400,900",
];

/// Runs `cmd` with its standard output in `out`; panics when it takes
/// longer than `limit` (after killing it) or fails.
fn within(mut cmd: Command, out: &Path, limit: Duration) {
    let file = std::fs::File::create(out).unwrap();
    let mut child = cmd.stdout(file).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{cmd:?}: {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Headless `bin` in the issue's window with a fresh profile in `dir`.
fn browser(bin: &str, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(BROWSER)
        .arg(format!("--user-data-dir={}", dir.join("profile").display()));
    c
}

/// The page as a real 1400×900 browser window leaves it after its script
/// ran, and a screenshot of it; each browser run within `limit`.
pub(crate) fn in_browser(bin: &str, page: &Path, limit: Duration) -> (String, Vec<u8>) {
    let url = format!("file://{}", page.display());
    let dom = dom_at(bin, &url, limit);
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let mut c = browser(bin, dir.path());
    c.arg(format!("--screenshot={}", shot.display())).arg(&url);
    within(c, &dir.path().join("shot.out"), limit);
    (dom, std::fs::read(&shot).unwrap())
}

/// The DOM a 1400×900 headless browser leaves at `url` once its scripts
/// ran, within `limit`.
fn dom_at(bin: &str, url: &str, limit: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dom = dir.path().join("dom.html");
    let mut c = browser(bin, dir.path());
    c.args(["--dump-dom", url]);
    within(c, &dom, limit);
    std::fs::read_to_string(&dom).unwrap()
}

/// Keeps `png` as `<target>/graph-screenshots/NAME.png` after checking it
/// is a real 1400×900 PNG of some substance; prints and returns the path.
pub(crate) fn keep_screenshot(name: &str, png: &[u8]) -> PathBuf {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (1400, 900), "the window's size");
    assert!(png.len() > 30_000, "{} bytes: an empty page?", png.len());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("graph-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

/// The value of `<body>`'s attribute `name` in a dumped DOM.
fn body_attr<'d>(dom: &'d str, name: &str) -> &'d str {
    let body = &dom[dom.find("<body").expect("a body")..];
    let body = &body[..body.find('>').unwrap()];
    let key = format!("{name}=\"");
    let at = body
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} on {body}"))
        + key.len();
    &body[at..at + body[at..].find('"').unwrap()]
}

/// Numbers of a space-separated attribute.
fn numbers(dom: &str, name: &str) -> Vec<f64> {
    body_attr(dom, name)
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect()
}

/// What every page must show after its script ran: all `vertices` and
/// `images` drawn, every edge going down, the whole drawing inside the
/// window after the fit.
fn check_fitted_top_down(dom: &str, vertices: usize, images: usize) {
    assert_eq!(body_attr(dom, "data-rendered"), vertices.to_string());
    assert_eq!(body_attr(dom, "data-images"), images.to_string());
    assert_eq!(
        body_attr(dom, "data-edges-down"),
        body_attr(dom, "data-edges"),
        "every edge goes downward"
    );
    assert_eq!(body_attr(dom, "data-fits"), "yes");
    let scale: f64 = body_attr(dom, "data-fit-scale").parse().unwrap();
    assert!(scale > 0.05 && scale <= 1.5, "fit scale {scale}");
    let (view, content) = (
        numbers(dom, "data-viewport"),
        numbers(dom, "data-content-box"),
    );
    assert!(
        content[0] >= view[0] - 1.0
            && content[1] >= view[1] - 1.0
            && content[2] <= view[2] + 1.0
            && content[3] <= view[3] + 1.0,
        "content {content:?} outside the viewport {view:?}"
    );
}

/// The number of vertices `rbk graph --format json` lists for `toml`.
fn vertex_count(toml: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let out = succeed(rbk(&dir.path().join("no-store")).args(["graph", "--format", "json", toml]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["vertices"].as_array().unwrap().len()
}

#[test]
fn the_graph_page_renders_in_a_real_browser() {
    let test = "the_graph_page_renders_in_a_real_browser";
    let Some(bin) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        &[
            ("a/Dockerfile", "FROM busybox\nRUN echo a > /a\nCOPY x /x\n"),
            (
                "b/Dockerfile",
                "FROM busybox\nRUN echo a > /a\nRUN echo '<b>'\n",
            ),
            ("a/x", "x"),
            (
                "rbk.toml",
                "[target.a]\ncontext = \"a\"\n[target.b]\ncontext = \"b\"\n",
            ),
        ],
    );
    let toml = d.join("rbk.toml").display().to_string();
    let out = succeed(rbk(&d.join("no-store")).args(["graph", "--format", "html", &toml]));
    let page = d.join("graph.html");
    std::fs::write(&page, &out.stdout).unwrap();
    let (dom, png) = in_browser(bin, &page, Duration::from_secs(60));
    // The script ran over every vertex (source shared, RUN shared, COPY,
    // RUN <b>: 4), the shared ones marked, the text escaped.
    check_fitted_top_down(&dom, 4, 2);
    assert_eq!(dom.matches("vertex base shared").count(), 1, "{dom}");
    assert!(dom.contains("2 images, 4 vertices (2 shared)"), "{dom}");
    assert!(
        dom.contains(r#"class="t">RUN echo '&lt;b&gt;'</text>"#),
        "{dom}"
    );
    keep_screenshot("two-images", &png);
    examples_page(bin, d);
}

/// The examples' page in the browser: fitted top-down, titled, boxed;
/// then searched and focused through its address.
fn examples_page(bin: &str, d: &Path) {
    // The examples' three Debian servers (no store: compiled without
    // their bases): titled by instruction, in a box per stage of each
    // image and one for each set of images sharing steps.
    let toml = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/debian/rbk.toml")
        .display()
        .to_string();
    let out = succeed(rbk(&d.join("no-store")).args(["graph", "--format", "html", &toml]));
    let page = d.join("debian.html");
    std::fs::write(&page, &out.stdout).unwrap();
    let (dom, png) = in_browser(bin, &page, Duration::from_secs(60));
    check_fitted_top_down(&dom, vertex_count(&toml), 4);
    for title in [
        r#"class="t">FROM localhost/debian:bookworm</text>"#,
        r#"class="t">RUN apt-get update</text>"#,
        r#"class="t">COPY index.html /usr/local/ngin…</text>"#,
        r#"class="t">image nginx</text>"#,
    ] {
        assert!(dom.contains(title), "{title}");
    }
    for cluster in [
        "nginx · stage 1",
        "tomcat · stage 0",
        "mariadb · stage 0",
        "shared by 2 images: nginx, nginx-onestage",
        "shared by 4 images: mariadb, nginx, nginx-onestage, tomcat",
    ] {
        assert!(
            dom.contains(&format!("data-label=\"{cluster}\"")),
            "{cluster}"
        );
    }
    // The details a hover shows: the hash, the Dockerfile and line.
    assert!(dom.contains("exec · blake3:"), "{dom}");
    assert!(dom.contains("examples/debian/tomcat/Dockerfile:"), "{dom}");
    keep_screenshot("examples-debian", &png);
    // A search dims all but the matches; picking an image lights it and
    // what it is built from (tomcat: its 12 steps and the image).
    let url = format!("file://{}", page.display());
    let dom = dom_at(
        bin,
        &format!("{url}#search=apt-get"),
        Duration::from_secs(60),
    );
    assert!(dom.contains(r#"data-box-h="40" class="focus""#), "dimmed");
    assert!(dom.contains(">4 matches<"), "the update and three installs");
    assert_eq!(body_attr(&dom, "data-highlighted"), "4");
    let dom = dom_at(bin, &format!("{url}#search=tomc"), Duration::from_secs(60));
    assert_eq!(
        body_attr(&dom, "data-highlighted"),
        "13",
        "tomcat's steps, its image"
    );
    let dom = dom_at(bin, &format!("{url}#image=tomcat"), Duration::from_secs(60));
    assert_eq!(
        body_attr(&dom, "data-highlighted"),
        "13",
        "12 steps and the image"
    );
    assert!(dom.contains("class=\"image picked hl\""), "{dom}");
}

/// `targets` Dockerfiles on three bases, each a build stage over a deps
/// stage its base's targets share (and a step shared by every seventh),
/// then a final stage copying from the build.
fn many_targets(dir: &Path, targets: usize) {
    let bases = ["busybox", "alpine:3", "debian:bookworm"];
    let mut toml = String::new();
    let mut files: Vec<(String, String)> = (0..5)
        .map(|f| (format!("ctx/f{f}"), format!("file {f}\n")))
        .collect();
    for i in 0..targets {
        let base = bases[i % 3];
        files.push((
            format!("ctx/t{i}.Dockerfile"),
            format!(
                "FROM {base} AS deps\nRUN echo deps-{d} > /deps\nRUN echo common-{c} > /common\n\
                 FROM deps AS build\nRUN echo build {i} > /b\nCOPY f{f} /f\n\
                 FROM {base}\nCOPY --from=build /b /b\nRUN echo final {i} > /final\nCMD [\"sh\"]\n",
                d = i % 3,
                c = i % 7,
                f = i % 5,
            ),
        ));
        toml.push_str(&format!(
            "[target.t{i}]\ncontext = \"ctx\"\ndockerfile = \"t{i}.Dockerfile\"\ntags = [\"example/t{i}:1\"]\n"
        ));
    }
    files.push(("rbk.toml".to_string(), toml));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    write(dir, &refs);
}

#[test]
fn a_graph_page_of_200_targets_renders_in_time() {
    let test = "a_graph_page_of_200_targets_renders_in_time";
    let Some(bin) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    many_targets(d, 200);
    let toml = d.join("rbk.toml").display().to_string();
    let started = Instant::now();
    let out = succeed(rbk(&d.join("no-store")).args(["graph", "--format", "html", &toml]));
    let rendered = started.elapsed();
    assert!(
        out.stdout.len() < 2_000_000,
        "{} bytes of page",
        out.stdout.len()
    );
    let page = d.join("graph.html");
    std::fs::write(&page, &out.stdout).unwrap();
    // A shared 2-core machine: generous, but a frozen page never ends.
    let started = Instant::now();
    let (dom, png) = in_browser(bin, &page, Duration::from_secs(90));
    let browsed = started.elapsed();
    let vertices = vertex_count(&toml);
    assert!(vertices > 800, "{vertices} vertices");
    check_fitted_top_down(&dom, vertices, 200);
    let path = keep_screenshot("200-targets", &png);
    eprintln!(
        "{vertices} vertices: page of {} KiB rendered in {rendered:?}, two browser runs in {browsed:?} ({})",
        out.stdout.len() / 1024,
        path.display()
    );
}

#[test]
fn graph_out_after_a_failed_build_shows_the_failure_and_what_stopped() {
    let test = "graph_out_after_a_failed_build_shows_the_failure_and_what_stopped";
    let Some(dir) = crate::build::store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    write(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/busybox:latest AS slow\nRUN sleep 3; echo slow > /s\n\
             FROM localhost/busybox:latest AS broken\nRUN echo ok > /ok\nRUN exit 3\n\
             FROM localhost/busybox:latest\nCOPY --from=slow /s /s\nCOPY --from=broken /ok /ok\n",
        )],
    );
    let page = dir.path().join("failed.html");
    let out = rbk(&store)
        .arg("build")
        .arg("--graph-out")
        .arg(&page)
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the build fails");
    let html = std::fs::read_to_string(&page).expect("a page after a failure");
    assert_eq!(
        html.matches("class=\"vertex failed\"").count(),
        1,
        "RUN exit 3"
    );
    assert!(
        html.contains("exit 3") && html.contains("failed in "),
        "why, how long"
    );
    // The copies never ran; the slow step was stopped or had finished.
    assert!(html.matches("class=\"vertex cancelled\"").count() >= 2);
    assert!(html.contains("not run: the build stopped first"));
    if let Some(bin) = chromium(test) {
        let (dom, png) = in_browser(bin, &page, Duration::from_secs(60));
        check_fitted_top_down(&dom, 6, 1);
        keep_screenshot("failed-build", &png);
    }
}

/// Drives the page as a user would — the zoom buttons, the wheel, a drag,
/// keys, a click on a step — and leaves the drawing's transform after each
/// on `<body data-harness>`, as JSON. Appended to a copy of the page: the
/// page itself has no test hooks beyond its data attributes.
const HARNESS: &str = r#"<script>
(function () {
  var w = document.getElementById('world'), svg = document.getElementById('canvas'), out = {};
  function t() { return w.getAttribute('transform'); }
  function key(k) { document.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true })); }
  out.fit = t();
  document.getElementById('zoom-in').click(); out.zoomIn = t();
  document.getElementById('fit').click(); out.refit = t();
  svg.dispatchEvent(new WheelEvent('wheel', { deltaY: -300, clientX: 700, clientY: 400, bubbles: true, cancelable: true }));
  out.wheel = t();
  key('0');
  svg.dispatchEvent(new PointerEvent('pointerdown', { clientX: 500, clientY: 500, bubbles: true }));
  window.dispatchEvent(new PointerEvent('pointermove', { clientX: 600, clientY: 550 }));
  window.dispatchEvent(new PointerEvent('pointerup', { clientX: 600, clientY: 550 }));
  out.drag = t();
  key('0'); key('ArrowDown'); out.arrow = t();
  var step = document.querySelector('g.vertex rect');
  step.dispatchEvent(new PointerEvent('pointerdown', { clientX: 1, clientY: 1, bubbles: true }));
  window.dispatchEvent(new PointerEvent('pointerup', { clientX: 1, clientY: 1 }));
  out.picked = document.querySelectorAll('.picked').length;
  out.details = document.getElementById('details').className;
  key('Escape');
  out.cleared = document.querySelectorAll('.picked, .hl').length;
  document.body.dataset.harness = JSON.stringify(out);
})();
</script>"#;

/// `translate(x,y) scale(k)` as (x, y, k).
fn transform(t: &serde_json::Value) -> (f64, f64, f64) {
    let t = t.as_str().unwrap();
    let n: Vec<f64> = t
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .filter(|s| !s.is_empty() && *s != "e")
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn the_graph_page_pans_zooms_and_picks_in_a_real_browser() {
    let test = "the_graph_page_pans_zooms_and_picks_in_a_real_browser";
    let Some(bin) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let toml = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/debian/rbk.toml")
        .display()
        .to_string();
    let out = succeed(rbk(&dir.path().join("no-store")).args(["graph", "--format", "html", &toml]));
    let page = String::from_utf8(out.stdout).unwrap();
    let driven = page.replace("</body>", &format!("{HARNESS}</body>"));
    let path = dir.path().join("driven.html");
    std::fs::write(&path, driven).unwrap();
    let dom = dom_at(
        bin,
        &format!("file://{}", path.display()),
        Duration::from_secs(60),
    );
    let json = body_attr(&dom, "data-harness").replace("&quot;", "\"");
    let got: serde_json::Value = serde_json::from_str(&json).unwrap();
    eprintln!("{got}");
    let fit = transform(&got["fit"]);
    let near = |a: f64, b: f64| (a - b).abs() < 0.01;
    assert!(near(transform(&got["zoomIn"]).2, fit.2 * 1.25), "{got}");
    assert_eq!(transform(&got["refit"]), fit, "{got}");
    assert!(
        transform(&got["wheel"]).2 > fit.2,
        "the wheel zooms in: {got}"
    );
    let drag = transform(&got["drag"]);
    assert!(
        near(drag.0, fit.0 + 100.0) && near(drag.1, fit.1 + 50.0),
        "{got}"
    );
    let arrow = transform(&got["arrow"]);
    assert!(near(arrow.1, fit.1 - 80.0), "{got}");
    assert_eq!(got["picked"], 1, "{got}");
    assert_eq!(got["details"], "shown", "{got}");
    assert_eq!(got["cleared"], 0, "{got}");
}

#[test]
fn graph_against_a_store_shows_what_the_next_build_would_take() {
    let test = "graph_against_a_store_shows_what_the_next_build_would_take";
    let Some(dir) = crate::build::store_with_busybox(test) else {
        return;
    };
    let store = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    let dockerfile = |env: &str| {
        format!("FROM localhost/busybox:latest\nENV A={env}\nRUN sleep 0.3; echo two > /two\n")
    };
    write(&ctx, &[("Dockerfile", &dockerfile("1"))]);
    succeed(rbk(&store).arg("build").arg(&ctx));
    // The ENV changes; the RUN after it runs again, as long as last time.
    write(&ctx, &[("Dockerfile", &dockerfile("2"))]);
    let graph = |format: &str| {
        let out = succeed(rbk(&store).args(["graph", "--format", format]).arg(&ctx));
        String::from_utf8(out.stdout).unwrap()
    };
    let html = graph("html");
    let runs = html.matches("class=\"vertex run\"").count();
    assert!(runs >= 1, "{html}");
    assert!(html.contains("s when it last ran"), "the RUN's duration");
    assert!(
        html.contains("· critical path 0."),
        "the next build's critical path"
    );
    // The other formats are as before: states, no durations.
    let json = graph("json");
    assert!(
        json.contains("\"state\": \"run\"") && !json.contains("\"seconds\""),
        "{json}"
    );
}
