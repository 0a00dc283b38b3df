//! Standard output that may be closed early (`rbk save x | head -c 10`,
//! `rbk completions zsh | head -1`): a write that meets a closed pipe is
//! remembered, and the command then ends quietly with success, as
//! ripgrep and git do, instead of a panic or an error that blames the
//! image.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to standard output met a closed pipe.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Standard output, remembering a closed pipe.
pub struct Stdout(io::Stdout);

/// Standard output for a command's data.
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

fn note(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    e
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(note)
    }
}
