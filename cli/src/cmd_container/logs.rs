//! `rbk logs`: a detached container's output, as `docker logs` shows it:
//! all of it or the last lines (`--tail`), with the time of each line
//! (`-t`), following it while the container runs (`-f`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::LogsArgs;
use crate::log_relay::{read_times, relaying, stamp, NO_TIME};
use rbk_runtime::container;

/// How long `rbk logs` waits for the relay to write the last output of a
/// container that has stopped.
const RELAY_GRACE: Duration = Duration::from_secs(5);

pub(super) fn logs(root: &Path, a: &LogsArgs, out: &mut dyn Write) -> Result<i32> {
    let tail = parse_tail(a.tail.as_deref())?;
    let s = container::find(root, &a.container)?;
    let dir = container::path(root, &s.id);
    let path = dir.join("log");
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(_) if !s.detached => bail!(
            "container {} runs in the foreground: its output is on its own terminal",
            s.name
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let start = match tail {
        Some(n) => tail_offset(&f, n)?,
        None => 0,
    };
    f.seek(SeekFrom::Start(start))?;
    let mut lines = Lines {
        stamps: a.timestamps,
        times: Vec::new(),
        offset: start,
        at_line_start: true,
        dir: &dir,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            lines.emit(out, &buf[..n])?;
            continue;
        }
        out.flush()?;
        if !a.follow || !container::running(root, &s.id) {
            // What the relay still had of a stopped container's output.
            let deadline = Instant::now() + RELAY_GRACE;
            while !container::running(root, &s.id) && relaying(&dir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut rest = Vec::new();
            f.read_to_end(&mut rest)?;
            lines.emit(out, &rest)?;
            out.flush()?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--tail`: a number of lines, or `all` (`None`).
fn parse_tail(tail: Option<&str>) -> Result<Option<u64>> {
    match tail.map(str::trim) {
        None | Some("all") => Ok(None),
        Some(n) => match n.parse::<i64>() {
            // Docker shows everything for a negative number.
            Ok(n) => Ok(u64::try_from(n).ok()),
            Err(_) => bail!("--tail {n:?}: a number of lines, or all"),
        },
    }
}

/// Where the last `n` lines of `f` start (a last line without its newline
/// counts).
fn tail_offset(f: &File, n: u64) -> Result<u64> {
    let len = f.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    let mut seen = 0;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            let pos = start + i as u64;
            if *b == b'\n' && pos + 1 != len {
                seen += 1;
                if seen == n {
                    return Ok(pos + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// Writes log bytes, each line after its time when asked.
struct Lines<'a> {
    stamps: bool,
    /// The line times read so far (see [`crate::log_relay`]).
    times: Vec<(u64, i128)>,
    /// The log offset of the next byte.
    offset: u64,
    at_line_start: bool,
    dir: &'a Path,
}

impl Lines<'_> {
    fn emit(&mut self, out: &mut dyn Write, data: &[u8]) -> Result<()> {
        if !self.stamps {
            out.write_all(data)?;
            self.offset += data.len() as u64;
            return Ok(());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.at_line_start {
                let t = self.time_of(self.offset);
                write!(out, "{} ", t.map_or_else(|| NO_TIME.to_string(), stamp))?;
            }
            let end = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            out.write_all(&rest[..end])?;
            self.at_line_start = rest[end - 1] == b'\n';
            self.offset += end as u64;
            rest = &rest[end..];
        }
        Ok(())
    }

    /// The time of the line starting at `offset` (read again from the
    /// file when it is newer than those read).
    fn time_of(&mut self, offset: u64) -> Option<i128> {
        if self.times.last().is_none_or(|(o, _)| *o < offset) {
            self.times = read_times(self.dir);
        }
        let i = self.times.partition_point(|(o, _)| *o <= offset);
        i.checked_sub(1).map(|i| self.times[i].1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rbk_runtime::container::State;

    fn container(root: &Path, output: &[&'static [u8]]) {
        let s = State {
            id: "0123456789ab".into(),
            name: "web".into(),
            image: "busybox".into(),
            command: vec!["sh".into()],
            created: "2024-05-01T10:20:30Z".into(),
            ports: vec![],
            detached: true,
            stop_signal: "SIGTERM".into(),
            supervisor: 0,
            status: "exited".into(),
            exit_code: Some(0),
            finished: None,
            restarts: 0,
            run_args: Vec::new(),
            volumes: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            workdir: String::new(),
        };
        container::write(root, &s).unwrap();
        let mut t = 1_714_558_830_000_000_000;
        let mut clock = || {
            t += 1_000_000;
            t
        };
        let mut input: &[u8] = &output.concat();
        crate::log_relay::relay(&mut input, &container::path(root, &s.id), &mut clock).unwrap();
    }

    fn run(root: &Path, tail: Option<&str>, timestamps: bool) -> Result<String> {
        let a = LogsArgs {
            follow: false,
            tail: tail.map(String::from),
            timestamps,
            container: "web".into(),
        };
        let mut out = Vec::new();
        logs(root, &a, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn tail_and_timestamps() {
        let d = tempfile::tempdir().unwrap();
        container(d.path(), &[b"one\ntwo\nthree\n"]);
        assert_eq!(run(d.path(), None, false).unwrap(), "one\ntwo\nthree\n");
        assert_eq!(run(d.path(), Some("2"), false).unwrap(), "two\nthree\n");
        assert_eq!(run(d.path(), Some("0"), false).unwrap(), "");
        assert_eq!(
            run(d.path(), Some("9"), false).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            run(d.path(), Some("all"), false).unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            run(d.path(), Some("1"), true).unwrap(),
            "2024-05-01T10:20:30.001000000Z three\n"
        );
        let e = run(d.path(), Some("x"), false).unwrap_err();
        assert!(e.to_string().contains("--tail \"x\""), "{e}");
    }

    #[test]
    fn tail_counts_a_last_line_without_newline() {
        let d = tempfile::tempdir().unwrap();
        container(d.path(), &[b"one\ntwo\nthree"]);
        assert_eq!(run(d.path(), Some("2"), false).unwrap(), "two\nthree");
        assert_eq!(
            run(d.path(), Some("2"), true).unwrap(),
            "2024-05-01T10:20:30.001000000Z two\n2024-05-01T10:20:30.001000000Z three"
        );
    }
}
