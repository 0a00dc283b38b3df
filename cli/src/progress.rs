//! Drawing build progress: a live view on a terminal (indicatif), or plain
//! lines prefixed by their step for logs and CI.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbk_scheduler::progress::{Finish, Outcome, OutputStream, Reporter, Step};

/// `--progress auto|tty|plain|rawjson|quiet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// tty when stderr is a terminal, else plain.
    Auto,
    /// Live view.
    Tty,
    /// Plain lines.
    Plain,
    /// One JSON object per line on stderr for each step event, for programs.
    Rawjson,
    /// Nothing (errors are still printed).
    Quiet,
}

/// Plain output: `#N [label] text`, each output line as `#N 1.2s line`,
/// timed from the step's start (as BuildKit's plain output).
pub struct Plain {
    started: Mutex<HashMap<usize, Instant>>,
    lines: Mutex<HashMap<usize, Vec<u8>>>,
}

impl Plain {
    fn new() -> Self {
        Plain {
            started: Mutex::new(HashMap::new()),
            lines: Mutex::new(HashMap::new()),
        }
    }

    /// How long step `vertex` has run.
    fn elapsed(&self, vertex: usize) -> Duration {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&vertex)
            .map(Instant::elapsed)
            .unwrap_or_default()
    }

    fn emit(&self, s: &str) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{s}");
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Reporter for Plain {
    fn on_start(&self, step: &Step) {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.vertex, Instant::now());
        self.emit(&format!("#{} [{}] {}", step.vertex, step.label, step.text));
    }

    fn on_log(&self, step: &Step, _stream: OutputStream, data: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let buf = lines.entry(step.vertex).or_default();
        buf.extend_from_slice(data);
        let t = secs(self.elapsed(step.vertex));
        while let Some(pos) = buf.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            self.emit(&format!(
                "#{} {t} {}",
                step.vertex,
                String::from_utf8_lossy(&line[..line.len() - 1])
            ));
        }
    }

    fn on_finish(&self, step: &Step, f: &Finish) {
        if let Some(rest) = self
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&step.vertex)
        {
            if !rest.is_empty() {
                self.emit(&format!(
                    "#{} {}",
                    step.vertex,
                    String::from_utf8_lossy(&rest)
                ));
            }
        }
        if let Some(why) = &f.explain {
            self.emit(&format!("#{} cache miss: {why}", step.vertex));
        }
        let status = match f.outcome {
            Outcome::Cached => "CACHED".to_string(),
            Outcome::Failed => format!("ERROR after {}", secs(f.duration)),
            Outcome::Canceled => format!("CANCELED after {}", secs(f.duration)),
            Outcome::Ran => format!("DONE {}", secs(f.duration)),
        };
        self.emit(&format!("#{} {status}", step.vertex));
    }
}

/// The live view: one spinner per running step with its timer and last
/// output line; finished steps stay as one line each.
pub struct Live {
    multi: MultiProgress,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Live {
    fn new() -> Self {
        Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Reporter for Live {
    fn on_start(&self, step: &Step) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} [{prefix}] {msg} {elapsed:>4}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(step.label.clone());
        bar.set_message(step.text.chars().take(60).collect::<String>());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.vertex, bar);
    }

    fn on_log(&self, step: &Step, _stream: OutputStream, data: &[u8]) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.get(&step.vertex) {
            let text = String::from_utf8_lossy(data);
            if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                let head: String = step.text.chars().take(40).collect();
                let tail: String = last.trim().chars().take(50).collect();
                bar.set_message(format!("{head}  │ {tail}"));
            }
        }
    }

    fn on_finish(&self, step: &Step, f: &Finish) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&step.vertex);
        let status = match f.outcome {
            Outcome::Cached => "CACHED".to_string(),
            Outcome::Failed => "ERROR".to_string(),
            Outcome::Canceled => "CANCELED".to_string(),
            Outcome::Ran => secs(f.duration),
        };
        let line = format!(
            "{} [{}] {}",
            match f.outcome {
                Outcome::Failed => "✗",
                Outcome::Canceled => "-",
                Outcome::Ran | Outcome::Cached => "✓",
            },
            step.label,
            step.text.chars().take(60).collect::<String>()
        );
        let line = format!("{line}  {status}");
        // A finished step leaves the live area for good, printed above it
        // with its explanation: nothing redrawn later can erase them.
        if let Some(b) = bar {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
        let _ = self.multi.println(line);
        if let Some(why) = &f.explain {
            let _ = self.multi.println(format!("    cache miss: {why}"));
        }
    }
}

/// `--progress quiet`: nothing.
pub struct Quiet;

impl Reporter for Quiet {
    fn on_start(&self, _: &Step) {}
    fn on_log(&self, _: &Step, _: OutputStream, _: &[u8]) {}
    fn on_finish(&self, _: &Step, _: &Finish) {}
}

/// `--progress rawjson`: stderr carries only JSON lines, one per event —
/// `{"vertex":3,"name":"[app 2/4] RUN make","kind":"exec","status":"started"}`,
/// then `"log"` events with the output (`stream`, `data`) and one
/// `"done"`, `"cached"` or `"error"` event with `duration_ms` (and
/// `cache_miss` under `--explain`).
pub struct RawJson {
    start: Instant,
}

impl RawJson {
    fn emit(&self, step: &Step, status: &str, extra: serde_json::Value) {
        let mut v = serde_json::json!({
            "vertex": step.vertex,
            "name": format!("[{}] {}", step.label, step.text),
            "kind": step.kind,
            "status": status,
            "elapsed_ms": self.start.elapsed().as_millis() as u64,
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{v}");
    }
}

impl Reporter for RawJson {
    fn on_start(&self, step: &Step) {
        self.emit(step, "started", serde_json::json!({}));
    }

    fn on_log(&self, step: &Step, stream: OutputStream, data: &[u8]) {
        let stream = match stream {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        };
        self.emit(
            step,
            "log",
            serde_json::json!({ "stream": stream, "data": String::from_utf8_lossy(data) }),
        );
    }

    fn on_finish(&self, step: &Step, f: &Finish) {
        let status = match f.outcome {
            Outcome::Cached => "cached",
            Outcome::Failed => "error",
            Outcome::Canceled => "canceled",
            Outcome::Ran => "done",
        };
        let mut extra = serde_json::json!({ "duration_ms": f.duration.as_millis() as u64 });
        if let (Some(why), Some(obj)) = (&f.explain, extra.as_object_mut()) {
            obj.insert("cache_miss".into(), why.clone().into());
        }
        self.emit(step, status, extra);
    }
}

/// The reporter for `mode`.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    let tty = match mode {
        ProgressMode::Auto => std::io::stderr().is_terminal(),
        ProgressMode::Tty => true,
        ProgressMode::Plain => false,
        ProgressMode::Quiet => return Box::new(Quiet),
        ProgressMode::Rawjson => {
            return Box::new(RawJson {
                start: Instant::now(),
            })
        }
    };
    if tty {
        Box::new(Live::new())
    } else {
        Box::new(Plain::new())
    }
}
