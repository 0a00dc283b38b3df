//! A detached container's log, with the time of each line.
//!
//! `rbk run -d` gives its supervisor a pipe for its output, and this relay
//! (a hidden `rbk __log-relay DIR`, detached too, so it outlives the `rbk
//! run -d` that started it) copies the pipe to `DIR/log` as it comes, byte
//! for byte, and appends to `DIR/log.times` one `OFFSET NANOS` line for
//! each line of the log: where it starts and when it came (nanoseconds
//! since the epoch). The time is written before the line, so a reader never
//! sees a line without its time. The relay holds `DIR/log.relay` locked
//! until the last byte is written: `rbk logs` waits for that before its
//! last read of a stopped container.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rbk_store::flock::{flock, FlockMode};

/// The file of line times beside a log.
pub const TIMES: &str = "log.times";
/// The file the relay holds locked while it runs.
pub const RELAY_LOCK: &str = "log.relay";

/// `rbk __log-relay DIR`: standard input to `DIR/log` until its end.
pub fn run(dir: &Path) -> Result<i32> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(RELAY_LOCK))
        .with_context(|| format!("cannot open {}", dir.join(RELAY_LOCK).display()))?;
    let _held = flock(lock, FlockMode::Exclusive)?;
    relay(&mut std::io::stdin().lock(), dir, &mut now_nanos)?;
    Ok(0)
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Copies `input` to `dir/log` and the times of its lines to
/// `dir/log.times`, `clock` telling the time.
pub fn relay(input: &mut dyn Read, dir: &Path, clock: &mut dyn FnMut() -> i128) -> Result<()> {
    let mut log = append(&dir.join("log"))?;
    let mut times = append(&dir.join(TIMES))?;
    let mut offset = log.metadata()?.len();
    let mut at_line_start = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read the container's output"),
        };
        let chunk = &buf[..n];
        let now = clock();
        let mut index = String::new();
        for (i, b) in chunk.iter().enumerate() {
            if at_line_start {
                index.push_str(&format!("{} {now}\n", offset + i as u64));
            }
            at_line_start = *b == b'\n';
        }
        times.write_all(index.as_bytes())?;
        log.write_all(chunk)?;
        offset += n as u64;
    }
}

/// The line times of the log in `dir`, by offset (empty when it has none:
/// a log written before rbk kept them). A torn last line is left out.
pub fn read_times(dir: &Path) -> Vec<(u64, i128)> {
    let text = std::fs::read_to_string(dir.join(TIMES)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (o, t) = l.split_once(' ')?;
            Some((o.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

/// Whether a relay is still writing the log in `dir`.
pub fn relaying(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(RELAY_LOCK)) else {
        return false;
    };
    matches!(flock(f, FlockMode::TryShared), Ok(None))
}

/// The time of a line that has none (Go's zero time, as Docker prints it).
pub const NO_TIME: &str = "0001-01-01T00:00:00.000000000Z";

/// Docker's `logs -t` time: RFC 3339 with nine digits of nanoseconds, UTC.
pub fn stamp(nanos: i128) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        ),
        Err(_) => NO_TIME.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Gives its chunks one read each.
    struct Chunks(Vec<&'static [u8]>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let c = self.0.remove(0);
            buf[..c.len()].copy_from_slice(c);
            Ok(c.len())
        }
    }

    #[test]
    fn each_line_gets_the_time_its_first_byte_came() {
        let d = tempfile::tempdir().unwrap();
        let mut t = 0;
        let mut clock = || {
            t += 1_000_000_000;
            t
        };
        let mut input = Chunks(vec![b"one\ntw", b"o\nthree\n", b"four"]);
        relay(&mut input, d.path(), &mut clock).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("log")).unwrap(),
            "one\ntwo\nthree\nfour"
        );
        assert_eq!(
            read_times(d.path()),
            vec![
                (0, 1_000_000_000),
                (4, 1_000_000_000),
                (8, 2_000_000_000),
                (14, 3_000_000_000)
            ]
        );
    }

    #[test]
    fn stamps_like_docker() {
        assert_eq!(
            stamp(1_714_558_830_000_000_042),
            "2024-05-01T10:20:30.000000042Z"
        );
    }
}
