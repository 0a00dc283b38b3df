//! Drawing build progress: a live view on a terminal (indicatif), or plain
//! lines prefixed by their step for logs and CI.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbk_scheduler::progress::{Finish, OutputStream, Reporter, Step};

/// `--progress auto|tty|plain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// tty when stderr is a terminal, else plain.
    Auto,
    /// Live view.
    Tty,
    /// Plain lines.
    Plain,
}

/// Plain output: `#N [label] text`, each output line as `#N line`.
pub struct Plain {
    start: Instant,
    lines: Mutex<HashMap<usize, Vec<u8>>>,
}

impl Plain {
    fn new() -> Self {
        Plain {
            start: Instant::now(),
            lines: Mutex::new(HashMap::new()),
        }
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
        self.emit(&format!("#{} [{}] {}", step.vertex, step.label, step.text));
    }

    fn on_log(&self, step: &Step, _stream: OutputStream, data: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let buf = lines.entry(step.vertex).or_default();
        buf.extend_from_slice(data);
        let t = secs(self.start.elapsed());
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
        let status = if f.cached {
            "CACHED".to_string()
        } else if f.failed {
            format!("ERROR after {}", secs(f.duration))
        } else {
            format!("DONE {}", secs(f.duration))
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
        let status = if f.cached {
            "CACHED".to_string()
        } else if f.failed {
            "ERROR".to_string()
        } else {
            secs(f.duration)
        };
        let line = format!(
            "{} [{}] {}",
            if f.failed { "✗" } else { "✓" },
            step.label,
            step.text.chars().take(60).collect::<String>()
        );
        let line = format!("{line}  {status}");
        match bar {
            Some(b) => {
                b.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.finish_with_message(line);
            }
            None => {
                let _ = self.multi.println(line);
            }
        }
        if let Some(why) = &f.explain {
            let _ = self.multi.println(format!("    cache miss: {why}"));
        }
    }
}

/// The reporter for `mode`.
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    let tty = match mode {
        ProgressMode::Auto => std::io::stderr().is_terminal(),
        ProgressMode::Tty => true,
        ProgressMode::Plain => false,
    };
    if tty {
        Box::new(Live::new())
    } else {
        Box::new(Plain::new())
    }
}
